//! OAuth tokens from Microsoft Entra ID for the storage data plane: which identity asks, the
//! token request it makes, the answer or error it gets back, and when a cached token is due
//! for a refresh. Nothing here does IO: `handles::client` sends the requests, reads the
//! federated token file and keeps the cache.
//!
//! Three identities, as AKS and Azure VMs give them:
//! - workload identity: the projected service-account token (a JWT issued by the cluster) is
//!   exchanged as a client assertion for an Entra token (client credentials grant);
//! - managed identity: the instance metadata service (IMDS) hands out tokens for the VM's or
//!   node pool's identity, a user-assigned one chosen by its client id;
//! - a service principal with a client secret or a client certificate ([`ClientCertificate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::CredentialError;

mod certificate;

pub use certificate::ClientCertificate;

/// The scope of Azure Storage's data plane.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Entra ID's public-cloud authority, used when `AZURE_AUTHORITY_HOST` is not set.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// The instance metadata service's token endpoint (managed identity).
pub const IMDS_TOKEN_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The IMDS API version asked for.
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A cached token is refreshed this long before it expires (or at half its lifetime, for
/// tokens shorter than twice this).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The environment variables the AKS workload identity webhook injects.
pub mod env {
    /// The client id of the identity federated with the pod's service account.
    pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
    /// The tenant of that identity.
    pub const TENANT_ID: &str = "AZURE_TENANT_ID";
    /// The projected service-account token, rotated by the kubelet.
    pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
    /// The Entra authority (`https://login.microsoftonline.com/` in the public cloud).
    pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
    /// A service principal's client secret (the Azure SDKs' name for it).
    pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
    /// A PEM file with a service principal's certificate and key (the Azure SDKs' name).
    pub const CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
}

/// Who asks Entra ID for tokens. A client secret is boxed: never in `Debug`, zeroed on drop.
#[derive(Clone)]
pub enum Identity {
    /// Workload identity: a federated service-account token exchanged as a client assertion.
    Workload {
        /// The authority host, with a trailing `/`.
        authority: String,
        /// The tenant (a GUID or a domain).
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The projected service-account token, re-read at every exchange (it rotates).
        token_file: PathBuf,
    },
    /// A managed identity through the instance metadata service.
    Managed {
        /// The token endpoint: [`IMDS_TOKEN_ENDPOINT`] in production.
        endpoint: String,
        /// A user-assigned identity's client id (`None`: the system-assigned one).
        client_id: Option<String>,
    },
    /// A service principal with a client secret or certificate.
    ServicePrincipal {
        /// The authority host, with a trailing `/`.
        authority: String,
        /// The tenant.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// How it proves who it is.
        credential: ClientCredential,
    },
}

/// How a service principal proves who it is.
#[derive(Clone)]
pub enum ClientCredential {
    /// A client secret.
    Secret(SecretString),
    /// A certificate: each token request carries an assertion signed with its key.
    Certificate(ClientCertificate),
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(<redacted>)"),
            Self::Certificate(c) => c.fmt(f),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workload {
                authority,
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("Workload")
                .field("authority", authority)
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Self::Managed {
                endpoint,
                client_id,
            } => f
                .debug_struct("Managed")
                .field("endpoint", endpoint)
                .field("client_id", client_id)
                .finish(),
            Self::ServicePrincipal {
                authority,
                tenant_id,
                client_id,
                credential,
            } => f
                .debug_struct("ServicePrincipal")
                .field("authority", authority)
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("credential", credential)
                .finish(),
        }
    }
}

impl Identity {
    /// Workload identity from the webhook's environment (`get` looks a variable up); a
    /// `client_id` given here wins over `AZURE_CLIENT_ID` (one service account may be
    /// federated with several identities).
    pub fn workload_from_env(
        get: impl Fn(&str) -> Option<String>,
        client_id: Option<&str>,
    ) -> Result<Self, CredentialError> {
        let need = |name: &str| {
            get(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                CredentialError::Invalid(format!(
                    "workload identity needs {name} in the environment (the AKS workload identity webhook sets it on pods labelled azure.workload.identity/use=\"true\")"
                ))
            })
        };
        let client_id = match client_id {
            Some(id) => id.to_owned(),
            None => need(env::CLIENT_ID)?,
        };
        let identity = Self::Workload {
            authority: authority_host(get(env::AUTHORITY_HOST).as_deref())?,
            tenant_id: need(env::TENANT_ID)?.trim().to_owned(),
            client_id: client_id.trim().to_owned(),
            token_file: need(env::FEDERATED_TOKEN_FILE)?.into(),
        };
        identity.validate()?;
        Ok(identity)
    }

    /// A managed identity through IMDS: the system-assigned one, or a user-assigned one.
    pub fn managed(client_id: Option<&str>) -> Result<Self, CredentialError> {
        let identity = Self::Managed {
            endpoint: IMDS_TOKEN_ENDPOINT.to_owned(),
            client_id: client_id.map(|c| c.trim().to_owned()),
        };
        identity.validate()?;
        Ok(identity)
    }

    /// The keys a service principal's Secret holds.
    pub const SECRET_KEYS: [&str; 5] = [
        "tenantId",
        "clientId",
        "clientSecret",
        "clientCertificate",
        "authorityHost",
    ];

    /// A service principal from a Secret's keys: `tenantId`, `clientId`, `clientSecret` or
    /// `clientCertificate` (PEM: the certificate and its RSA key), and optionally
    /// `authorityHost` (else `default_authority`, else the public cloud).
    pub fn service_principal_from_keys(
        data: &BTreeMap<String, String>,
        default_authority: Option<&str>,
    ) -> Result<Self, CredentialError> {
        if let Some(unknown) = data
            .keys()
            .find(|k| !Self::SECRET_KEYS.contains(&k.as_str()))
        {
            return Err(CredentialError::Invalid(format!(
                "unknown key {unknown:?} (a service principal's Secret holds tenantId, clientId, clientSecret or clientCertificate, and optionally authorityHost)"
            )));
        }
        let get = |k: &str| data.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let need = |k: &str| {
            get(k).ok_or_else(|| {
                CredentialError::Invalid(format!("a service principal needs the key {k:?}"))
            })
        };
        let tenant_id = need("tenantId")?.to_owned();
        let client_id = need("clientId")?.to_owned();
        let credential = match (get("clientSecret"), get("clientCertificate")) {
            (Some(secret), None) => ClientCredential::Secret(secret.into()),
            (None, Some(pem)) => ClientCredential::Certificate(ClientCertificate::from_pem(pem)?),
            (None, None) => {
                return Err(CredentialError::Invalid(
                    "a service principal needs the key \"clientSecret\" or \"clientCertificate\""
                        .into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(CredentialError::Invalid(
                    "give one of \"clientSecret\" and \"clientCertificate\", not both".into(),
                ));
            }
        };
        let identity = Self::ServicePrincipal {
            authority: authority_host(get("authorityHost").or(default_authority))?,
            tenant_id,
            client_id,
            credential,
        };
        identity.validate()?;
        Ok(identity)
    }

    /// Checks the ids: they go into URLs and forms, so only the characters ids have.
    fn validate(&self) -> Result<(), CredentialError> {
        let check = |what: &str, value: &str| {
            let ok = !value.is_empty()
                && value.len() <= 128
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if ok {
                Ok(())
            } else {
                Err(CredentialError::Invalid(format!(
                    "{what} {value:?} is not an id (letters, digits, '-', '.', '_')"
                )))
            }
        };
        match self {
            Self::Workload {
                tenant_id,
                client_id,
                ..
            }
            | Self::ServicePrincipal {
                tenant_id,
                client_id,
                ..
            } => {
                check("the tenant id", tenant_id)?;
                check("the client id", client_id)
            }
            Self::Managed { client_id, .. } => client_id
                .as_deref()
                .map_or(Ok(()), |c| check("the client id", c)),
        }
    }

    /// A key naming this identity for a token cache: kind, authority, tenant, client and a
    /// digest of the secret (a rotated secret gets a cache entry of its own). Holds no secret.
    pub fn cache_key(&self, scope: &str) -> String {
        match self {
            Self::Workload {
                authority,
                tenant_id,
                client_id,
                token_file,
            } => format!(
                "workload|{authority}|{tenant_id}|{client_id}|{}|{scope}",
                token_file.display()
            ),
            Self::Managed {
                endpoint,
                client_id,
            } => format!(
                "managed|{endpoint}|{}|{scope}",
                client_id.as_deref().unwrap_or("")
            ),
            Self::ServicePrincipal {
                authority,
                tenant_id,
                client_id,
                credential,
            } => {
                let proof = match credential {
                    ClientCredential::Secret(secret) => {
                        let digest = Sha256::digest(secret.expose_secret().as_bytes());
                        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
                    }
                    ClientCredential::Certificate(c) => format!("x5t:{}", c.thumbprint()),
                };
                format!("sp|{authority}|{tenant_id}|{client_id}|{proof}|{scope}")
            }
        }
    }

    /// A short description for errors and logs: kind and client id, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Self::Workload { client_id, .. } => format!("workload identity {client_id}"),
            Self::Managed {
                client_id: Some(c), ..
            } => format!("managed identity {c}"),
            Self::Managed {
                client_id: None, ..
            } => "the system-assigned managed identity".into(),
            Self::ServicePrincipal { client_id, .. } => format!("service principal {client_id}"),
        }
    }

    /// The client assertion a certificate signs for a request at `now` (Unix seconds), for a
    /// service principal with a certificate; `None` for every other identity.
    pub fn signed_assertion(
        &self,
        now: i64,
        jti: &str,
    ) -> Option<Result<SecretString, CredentialError>> {
        match self {
            Self::ServicePrincipal {
                authority,
                tenant_id,
                client_id,
                credential: ClientCredential::Certificate(cert),
            } => Some(cert.assertion(client_id, &token_url(authority, tenant_id), now, jti)),
            _ => None,
        }
    }

    /// The request for a token of `scope`. `assertion` is the federated token read from the
    /// file (workload identity) or the certificate's signed assertion.
    pub fn token_request(&self, scope: &str, assertion: Option<&SecretString>) -> TokenRequest {
        match self {
            Self::Workload {
                authority,
                tenant_id,
                client_id,
                ..
            } => {
                let assertion = assertion.map_or("", |a| a.expose_secret());
                TokenRequest::Form {
                    url: token_url(authority, tenant_id),
                    body: form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("scope", scope),
                        ("client_assertion_type", JWT_BEARER_ASSERTION),
                        ("client_assertion", assertion),
                    ]),
                }
            }
            Self::ServicePrincipal {
                authority,
                tenant_id,
                client_id,
                credential,
            } => {
                let proof = match credential {
                    ClientCredential::Secret(secret) => ("client_secret", secret.expose_secret()),
                    ClientCredential::Certificate(_) => (
                        "client_assertion",
                        assertion.map_or("", |a| a.expose_secret()),
                    ),
                };
                let mut fields = vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", scope),
                ];
                if proof.0 == "client_assertion" {
                    fields.push(("client_assertion_type", JWT_BEARER_ASSERTION));
                }
                fields.push(proof);
                TokenRequest::Form {
                    url: token_url(authority, tenant_id),
                    body: form(&fields),
                }
            }
            Self::Managed {
                endpoint,
                client_id,
            } => {
                // IMDS speaks the v1 protocol: a resource, not a scope.
                let resource = scope.strip_suffix(".default").unwrap_or(scope);
                let mut url = format!(
                    "{endpoint}?api-version={IMDS_API_VERSION}&resource={}",
                    utf8_percent_encode(resource, NON_ALPHANUMERIC)
                );
                if let Some(id) = client_id {
                    url.push_str("&client_id=");
                    url.extend(utf8_percent_encode(id, NON_ALPHANUMERIC));
                }
                TokenRequest::Metadata { url }
            }
        }
    }

    /// The secrets a request of this identity carries, to cut out of anything echoed back.
    pub fn secret(&self) -> Option<&SecretString> {
        match self {
            Self::ServicePrincipal {
                credential: ClientCredential::Secret(secret),
                ..
            } => Some(secret),
            _ => None,
        }
    }
}

/// `{authority}{tenant}/oauth2/v2.0/token`.
fn token_url(authority: &str, tenant_id: &str) -> String {
    format!("{authority}{tenant_id}/oauth2/v2.0/token")
}

/// An authority host as given (or the public cloud's), checked and with a trailing `/`.
pub fn authority_host(given: Option<&str>) -> Result<String, CredentialError> {
    let host = given
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(PUBLIC_AUTHORITY);
    let rest = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.contains(['?', '#', ' '])
                && !rest.trim_end_matches('/').contains('/') =>
        {
            Ok(format!("{}/", host.trim_end_matches('/')))
        }
        _ => Err(CredentialError::Invalid(format!(
            "the authority host {host:?} is not a URL such as {PUBLIC_AUTHORITY}"
        ))),
    }
}

/// `application/x-www-form-urlencoded`, boxed: the body holds the assertion or the secret.
fn form(fields: &[(&str, &str)]) -> SecretString {
    let mut body = String::new();
    for (name, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(name);
        body.push('=');
        body.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    }
    body.into()
}

/// One token request.
pub enum TokenRequest {
    /// `POST url` with a form body (`Content-Type: application/x-www-form-urlencoded`).
    Form {
        /// The token endpoint.
        url: String,
        /// The form, secrets included.
        body: SecretString,
    },
    /// `GET url` with `Metadata: true` (IMDS).
    Metadata {
        /// The endpoint with its query.
        url: String,
    },
}

/// A token and how long it lives.
pub struct AccessToken {
    /// The token.
    pub token: SecretString,
    /// Its lifetime from when it was received.
    pub expires_in: Duration,
}

/// Reads a successful token answer: `access_token` and `expires_in` (a number from Entra, a
/// string from IMDS). The error never holds the token.
pub fn parse_token_answer(body: &[u8]) -> Result<AccessToken, String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<SecretString>,
        expires_in: Option<Seconds>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the token answer is not JSON with access_token and expires_in (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let token = answer
        .access_token
        .ok_or("the token answer has no access_token")?;
    if token.expose_secret().is_empty() {
        return Err("the token answer's access_token is empty".into());
    }
    if let Some(at) = token
        .expose_secret()
        .bytes()
        .position(|b| !b.is_ascii_graphic())
    {
        return Err(format!(
            "the access_token holds a byte that cannot be sent in a header at offset {at}; the token is not shown"
        ));
    }
    let secs = match answer.expires_in {
        Some(Seconds::Number(n)) => n,
        Some(Seconds::Text(t)) => t
            .trim()
            .parse()
            .map_err(|_| format!("the token answer's expires_in {t:?} is not a number"))?,
        None => return Err("the token answer has no expires_in".into()),
    };
    Ok(AccessToken {
        token,
        expires_in: Duration::from_secs(secs),
    })
}

/// An error answer of the token endpoint, as Entra (and IMDS) shape them: `error`,
/// `error_description`, `error_codes` (the `AADSTS` numbers), `correlation_id`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct EntraError {
    /// The HTTP status.
    pub status: u16,
    /// `error`, e.g. `invalid_client` (`HttpNNN` when the body has none).
    pub error: String,
    /// `error_codes`, e.g. 700024.
    pub codes: Vec<u64>,
    /// The first line of `error_description`, at most 300 characters, secrets cut out.
    pub description: Option<String>,
    /// `correlation_id`, for a support request.
    pub correlation_id: Option<String>,
}

impl EntraError {
    /// Parses an error answer; `secrets` are cut out of the description should the endpoint
    /// echo one.
    pub fn parse(status: u16, body: &[u8], secrets: &[&str]) -> Self {
        #[derive(serde::Deserialize, Default)]
        struct Body {
            error: Option<String>,
            error_description: Option<String>,
            #[serde(default)]
            error_codes: Vec<u64>,
            correlation_id: Option<String>,
        }
        let parsed: Body = serde_json::from_slice(body).unwrap_or_default();
        let clean = |text: &str| {
            let mut text: String = text.chars().take(300).collect();
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                text = text.replace(secret, "<redacted>");
            }
            text
        };
        let short = |v: Option<String>| {
            v.map(|v| {
                v.chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty())
        };
        Self {
            status,
            error: short(parsed.error).unwrap_or_else(|| format!("Http{status}")),
            codes: parsed.error_codes,
            description: parsed
                .error_description
                .as_deref()
                .and_then(|d| d.lines().next())
                .map(clean)
                .filter(|d| !d.is_empty()),
            correlation_id: short(parsed.correlation_id),
        }
    }

    fn render(&self) -> String {
        let mut out = format!("the token endpoint answered {} {}", self.status, self.error);
        if !self.codes.is_empty() {
            let codes: Vec<String> = self.codes.iter().map(|c| format!("AADSTS{c}")).collect();
            out.push_str(&format!(" ({})", codes.join(", ")));
        }
        if let Some(d) = &self.description {
            out.push_str(": ");
            out.push_str(d);
        }
        if let Some(c) = &self.correlation_id {
            out.push_str(&format!(" [correlation id {c}]"));
        }
        out
    }
}

/// A token in a cache, with when to refresh it and when it stops working.
pub struct CachedToken {
    /// The token.
    pub token: SecretString,
    /// From here on a new one is asked for.
    pub refresh_at: Instant,
    /// From here on it is not used at all.
    pub expires_at: Instant,
}

impl CachedToken {
    /// A token received at `now` that lives `lifetime`: refreshed [`REFRESH_MARGIN`] before it
    /// expires, or at half its lifetime when that comes first.
    pub fn new(token: SecretString, lifetime: Duration, now: Instant) -> Self {
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Self {
            token,
            refresh_at: now + (lifetime - margin),
            expires_at: now + lifetime,
        }
    }

    /// Whether it is still fresh (no refresh due).
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    /// Whether it still works (a failed refresh may fall back on it).
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn workload_identity_from_the_webhooks_environment() {
        let full = [
            (env::CLIENT_ID, "11111111-2222-3333-4444-555555555555"),
            (env::TENANT_ID, "contoso.onmicrosoft.com"),
            (
                env::FEDERATED_TOKEN_FILE,
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            (env::AUTHORITY_HOST, "https://login.microsoftonline.com/"),
        ];
        let id = Identity::workload_from_env(vars(&full), None).unwrap();
        let TokenRequest::Form { url, body } =
            id.token_request(STORAGE_SCOPE, Some(&"eyJ.a.b".into()))
        else {
            panic!("workload identity posts a form")
        };
        assert_eq!(
            url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            body.expose_secret(),
            "grant_type=client%5Fcredentials&client_id=11111111%2D2222%2D3333%2D4444%2D555555555555&scope=https%3A%2F%2Fstorage%2Eazure%2Ecom%2F%2Edefault&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient%2Dassertion%2Dtype%3Ajwt%2Dbearer&client_assertion=eyJ%2Ea%2Eb"
        );
        let other = Identity::workload_from_env(vars(&full), Some("other-client")).unwrap();
        assert!(
            matches!(other, Identity::Workload { ref client_id, .. } if client_id == "other-client")
        );

        for missing in [env::CLIENT_ID, env::TENANT_ID, env::FEDERATED_TOKEN_FILE] {
            let rest: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Identity::workload_from_env(vars(&rest), None).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
        let mut bad = full;
        bad[1].1 = "contoso/../x";
        let err = Identity::workload_from_env(vars(&bad), None).unwrap_err();
        assert!(err.to_string().contains("tenant id"), "{err}");
        bad = full;
        bad[3].1 = "login.microsoftonline.com";
        let err = Identity::workload_from_env(vars(&bad), None).unwrap_err();
        assert!(err.to_string().contains("authority host"), "{err}");
    }

    #[test]
    fn managed_identity_asks_imds_for_the_storage_resource() {
        let TokenRequest::Metadata { url } = Identity::managed(None)
            .unwrap()
            .token_request(STORAGE_SCOPE, None)
        else {
            panic!("IMDS is a GET")
        };
        assert_eq!(
            url,
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage%2Eazure%2Ecom%2F"
        );
        let TokenRequest::Metadata { url } = Identity::managed(Some("abc-1"))
            .unwrap()
            .token_request(STORAGE_SCOPE, None)
        else {
            panic!("IMDS is a GET")
        };
        assert!(url.ends_with("&client_id=abc%2D1"), "{url}");
    }

    #[test]
    fn service_principal_keys_and_redaction() {
        let keys = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let id = Identity::service_principal_from_keys(
            &keys(&[
                ("tenantId", "t1"),
                ("clientId", "c1"),
                ("clientSecret", "s3cr3t~value"),
            ]),
            None,
        )
        .unwrap();
        assert!(!format!("{id:?}").contains("s3cr3t"));
        assert!(!id.cache_key(STORAGE_SCOPE).contains("s3cr3t"));
        let TokenRequest::Form { url, body } = id.token_request(STORAGE_SCOPE, None) else {
            panic!("a form")
        };
        assert_eq!(
            url,
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert!(
            body.expose_secret()
                .ends_with("&client_secret=s3cr3t%7Evalue")
        );
        for (pairs, want) in [
            (
                &[("tenantId", "t1"), ("clientId", "c1")][..],
                "\"clientSecret\"",
            ),
            (
                &[("clientSecret", "x"), ("clientId", "c1")][..],
                "\"tenantId\"",
            ),
            (&[("password", "x")][..], "unknown key \"password\""),
        ] {
            let err = Identity::service_principal_from_keys(&keys(pairs), None).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn token_answers_from_entra_and_imds() {
        let t = parse_token_answer(
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#,
        )
        .unwrap();
        assert_eq!(
            (t.token.expose_secret(), t.expires_in),
            ("eyJ0", Duration::from_secs(3599))
        );
        let t = parse_token_answer(br#"{"access_token":"eyJ1","expires_in":"86399","expires_on":"1700000000","resource":"https://storage.azure.com/"}"#).unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(86399));
        for (body, want) in [
            (&br#"{"expires_in":1}"#[..], "no access_token"),
            (br#"{"access_token":"eyJ-secret"}"#, "no expires_in"),
            (
                br#"{"access_token":"eyJ secret","expires_in":1}"#,
                "offset 3",
            ),
            (
                br#"{"access_token":"eyJ-secret","expires_in":"soon"}"#,
                "\"soon\"",
            ),
            (b"<html>", "not JSON"),
        ] {
            let err = parse_token_answer(body).err().unwrap();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn entra_errors_keep_their_codes_and_lose_secrets() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent is the client secret value s3cr3t-value.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215],"timestamp":"2026-12-06 16:00:00Z","trace_id":"1","correlation_id":"c0ffee"}"#;
        let err = EntraError::parse(401, body, &["s3cr3t-value"]);
        assert_eq!(err.error, "invalid_client");
        assert_eq!(err.codes, [7000215]);
        let text = err.to_string();
        assert!(
            text.contains(
                "401 invalid_client (AADSTS7000215): AADSTS7000215: Invalid client secret"
            ),
            "{text}"
        );
        assert!(text.contains("[correlation id c0ffee]"), "{text}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("Trace ID"),
            "{text}"
        );
        let err = EntraError::parse(502, b"<html>bad gateway</html>", &[]);
        assert_eq!(err.to_string(), "the token endpoint answered 502 Http502");
    }

    #[test]
    fn refresh_five_minutes_early_or_at_half_life() {
        let t0 = Instant::now();
        let hour = CachedToken::new("t".into(), Duration::from_secs(3600), t0);
        assert!(hour.is_fresh(t0 + Duration::from_secs(3299)));
        assert!(!hour.is_fresh(t0 + Duration::from_secs(3300)));
        assert!(hour.is_valid(t0 + Duration::from_secs(3599)));
        assert!(!hour.is_valid(t0 + Duration::from_secs(3600)));
        let short = CachedToken::new("t".into(), Duration::from_secs(120), t0);
        assert!(short.is_fresh(t0 + Duration::from_secs(59)));
        assert!(!short.is_fresh(t0 + Duration::from_secs(60)));
        let none = CachedToken::new("t".into(), Duration::ZERO, t0);
        assert!(!none.is_fresh(t0) && !none.is_valid(t0));
    }
}
