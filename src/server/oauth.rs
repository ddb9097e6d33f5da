//! OAuth bearer tokens on the handle service, as Azure Files takes them: the issuer's OpenID
//! configuration and signing keys (fetched and cached here; the checks themselves are the
//! pure [`crate::auth::verify_jwt`]), and who may list and who may close.
//!
//! Keys are fetched on the first bearer request, again when a day old, and again when a token
//! names a key the cache does not hold (an issuer rotating keys), at most once per
//! [`OAuthConfig::jwks_refresh_interval`] so that tokens with made-up key ids cannot make the
//! service hammer the issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use reqwest::Url;
use tokio::sync::Mutex;

use crate::auth::{self, JwkSet, JwtError, Operation, Principal, TOKEN_CLOCK_SKEW, TokenRules};
use crate::protocol::{ErrorCode, StorageError};

/// The audience Azure Storage tokens are issued for.
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";

/// How long fetched keys are used before they are fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest OpenID configuration or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// How long after a failed fetch the next one is tried (bearer requests meanwhile use the
/// keys they have, or get 500 when there are none).
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(10);

/// How long one fetch from the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where tokens come from and what they allow.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer; its OpenID configuration is read from
    /// `{issuer}/.well-known/openid-configuration`. https, or http on a loopback host.
    pub issuer: Url,
    /// The tenant (`tid`) tokens must be issued in; also named in `WWW-Authenticate`.
    pub tenant: String,
    /// Accepted audiences besides the account's own `https://{account}.file.core.windows.net`.
    pub audiences: Vec<String>,
    /// Principals (object id `oid` or client id `appid`/`azp`; `role:NAME` for any token
    /// whose `roles` claim holds NAME) that may list handles: the analogue of the "Storage
    /// File Data Privileged Reader" role.
    pub readers: Vec<String>,
    /// Principals (as for `readers`) that may list and force-close handles: the analogue of
    /// the "Storage File Data Privileged Contributor" role.
    pub contributors: Vec<String>,
    /// The least time between two key fetches caused by unknown key ids.
    pub jwks_refresh_interval: Duration,
}

/// An issuer URL that cannot serve as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the OAuth issuer {url:?} is not usable: {reason}")]
pub struct InvalidIssuer {
    url: String,
    reason: &'static str,
}

impl OAuthConfig {
    /// Defaults for `issuer` and `tenant`: the storage audience, nobody allowed, keys
    /// refreshed for unknown key ids at most every five minutes.
    pub fn new(issuer: &str, tenant: impl Into<String>) -> Result<Self, InvalidIssuer> {
        let issuer = checked_url(issuer)?;
        Ok(Self {
            issuer,
            tenant: tenant.into(),
            audiences: vec![STORAGE_AUDIENCE.to_owned()],
            readers: Vec::new(),
            contributors: Vec::new(),
            jwks_refresh_interval: Duration::from_secs(5 * 60),
        })
    }

    /// `WWW-Authenticate` for a refused token, as Azure Storage sends it: where to get a
    /// token, and for which resource.
    pub fn challenge(&self) -> String {
        format!(
            "Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize resource_id={STORAGE_AUDIENCE}",
            self.tenant
        )
    }
}

/// A URL the service may fetch keys from: https, or plain http to a loopback host (a test
/// issuer), so that keys cannot be swapped on the network path.
fn checked_url(s: &str) -> Result<Url, InvalidIssuer> {
    let bad = |reason| InvalidIssuer {
        url: s.to_owned(),
        reason,
    };
    let url = Url::parse(s).map_err(|_| bad("it is not an absolute URL"))?;
    let Some(host) = url.host_str() else {
        return Err(bad("it has no host"));
    };
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(bad(
            "plain http is accepted only on a loopback host; use https",
        )),
        _ => Err(bad("it is neither https nor http")),
    }
}

/// The issuer's keys as last fetched.
struct Keys {
    set: Arc<JwkSet>,
    /// The `issuer` of the OpenID configuration.
    issuer: String,
}

#[derive(Default)]
struct Cache {
    keys: Option<Keys>,
    /// When the keys are due to be fetched (again): a day after a fetch, shortly after a
    /// failed one. `None`: never fetched.
    due: Option<Instant>,
    /// When an unknown key id last caused a fetch.
    last_unknown_kid_fetch: Option<Instant>,
}

/// Verifies bearer tokens against the configured issuer and decides what they allow.
pub(crate) struct OAuth {
    config: OAuthConfig,
    audiences: Vec<String>,
    cache: Mutex<Cache>,
}

impl OAuth {
    /// A verifier for the service posing as `account`.
    pub(crate) fn new(config: OAuthConfig, account: &str) -> Self {
        let mut audiences = config.audiences.clone();
        audiences.push(format!("https://{account}.file.core.windows.net"));
        Self {
            config,
            audiences,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Verifies `token` and checks that its principal may perform `op`.
    pub(crate) async fn authorize(&self, token: &str, op: Operation) -> Result<(), StorageError> {
        let kid = auth::jwt_header(token)
            .map_err(invalid_token)?
            .kid
            .unwrap_or_default();
        let (keys, issuer) = self.keys_for(&kid).await?;
        let rules = TokenRules {
            issuers: self.accepted_issuers(&issuer),
            tenant: self.config.tenant.clone(),
            audiences: self.audiences.clone(),
            skew: TOKEN_CLOCK_SKEW,
        };
        let principal =
            auth::verify_jwt(token, &keys, &rules, Timestamp::now()).map_err(invalid_token)?;
        self.check_permission(&principal, op)
    }

    /// The issuers a token may name: the configured one, the one its OpenID configuration
    /// names (with Entra's `{tenantid}` placeholder filled in), and, for Entra, the v1
    /// issuer that storage tokens carry.
    fn accepted_issuers(&self, discovered: &str) -> Vec<String> {
        let tenant = &self.config.tenant;
        let mut issuers = vec![
            self.config.issuer.as_str().to_owned(),
            discovered.replace("{tenantid}", tenant),
        ];
        if self.config.issuer.host_str() == Some("login.microsoftonline.com") {
            issuers.push(format!("https://sts.windows.net/{tenant}/"));
        }
        issuers
    }

    fn check_permission(&self, who: &Principal, op: Operation) -> Result<(), StorageError> {
        let listed = |list: &[String]| {
            list.iter().any(|entry| match entry.strip_prefix("role:") {
                Some(role) => who.roles.iter().any(|r| r == role),
                None => [&who.oid, &who.appid]
                    .into_iter()
                    .flatten()
                    .any(|claim| claim.eq_ignore_ascii_case(entry)),
            })
        };
        let allowed = match op {
            Operation::List | Operation::Read => {
                listed(&self.config.readers) || listed(&self.config.contributors)
            }
            Operation::Close => listed(&self.config.contributors),
        };
        if allowed {
            return Ok(());
        }
        let (right, role) = match op {
            Operation::List => ("list handles", "reader or contributor"),
            Operation::Read => ("read file or directory properties", "reader or contributor"),
            Operation::Close => ("force-close handles", "contributor"),
        };
        Err(StorageError::permission_mismatch(format!(
            "The principal (oid {}, appid {}) may not {right}: it is no {role} of this service (--oauth-reader, --oauth-contributor).",
            who.oid.as_deref().unwrap_or("none"),
            who.appid.as_deref().unwrap_or("none"),
        )))
    }

    /// The current keys, fetched first when there are none or they are old, or when `kid` is
    /// unknown and the last such fetch is long enough ago.
    async fn keys_for(&self, kid: &str) -> Result<(Arc<JwkSet>, String), StorageError> {
        // Held across a fetch, so that concurrent requests wait for it rather than each
        // fetching again.
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let stale = cache.due.is_none_or(|due| now >= due);
        let unknown = cache
            .keys
            .as_ref()
            .is_some_and(|k| !kid.is_empty() && k.set.get(kid).is_none());
        let may_refresh = cache
            .last_unknown_kid_fetch
            .is_none_or(|t| now.duration_since(t) >= self.config.jwks_refresh_interval);
        if stale || (unknown && may_refresh) {
            if unknown && !stale {
                cache.last_unknown_kid_fetch = Some(now);
                tracing::info!(%kid, "a token names a key the issuer's cached set lacks; fetching the keys again");
            }
            match self.fetch().await {
                Ok(keys) => {
                    cache.keys = Some(keys);
                    cache.due = Some(now + KEYS_MAX_AGE);
                }
                Err(e) => {
                    // Keys a day old still verify tokens better than none; try again soon.
                    tracing::warn!(issuer = %self.config.issuer, error = %e, "fetching the OAuth issuer's keys failed");
                    cache.due = Some(now + FAILED_FETCH_BACKOFF);
                }
            }
        }
        match &cache.keys {
            Some(keys) => Ok((keys.set.clone(), keys.issuer.clone())),
            None => Err(StorageError::internal(
                "The service could not fetch the signing keys of its OAuth issuer; it retries shortly.",
            )),
        }
    }

    /// Reads the OpenID configuration, then the key set it points to.
    async fn fetch(&self) -> Result<Keys, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("share-hygiene/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let base = self.config.issuer.as_str().trim_end_matches('/');
        let config_url = format!("{base}/.well-known/openid-configuration");
        #[derive(serde::Deserialize)]
        struct OpenIdConfiguration {
            issuer: String,
            jwks_uri: String,
        }
        let doc: OpenIdConfiguration = serde_json::from_slice(&get(&http, &config_url).await?)
            .map_err(|e| format!("{config_url} is not an OpenID configuration: {e}"))?;
        let jwks_uri = checked_url(&doc.jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let set = JwkSet::from_json(&get(&http, jwks_uri.as_str()).await?)
            .map_err(|e| format!("{jwks_uri}: {e}"))?;
        tracing::info!(issuer = %doc.issuer, keys = set.len(), "fetched the OAuth issuer's signing keys");
        Ok(Keys {
            set: Arc::new(set),
            issuer: doc.issuer,
        })
    }
}

/// GETs `url`, at most [`MAX_DOCUMENT_BYTES`] of it.
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// 401 `InvalidAuthenticationInfo`, as Azure Storage refuses a token it cannot accept (the
/// server adds the `WWW-Authenticate` challenge).
fn invalid_token(e: JwtError) -> StorageError {
    StorageError::new(
        401,
        ErrorCode::Other(INVALID_AUTHENTICATION_INFO.into()),
        "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
    )
    .with_detail("AuthenticationErrorDetail", e.to_string())
}

/// The code of a refused bearer token.
pub(crate) const INVALID_AUTHENTICATION_INFO: &str = "InvalidAuthenticationInfo";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_must_be_https_or_loopback_http() {
        assert!(OAuthConfig::new("https://login.microsoftonline.com/t/v2.0", "t").is_ok());
        assert!(OAuthConfig::new("http://127.0.0.1:8080/t", "t").is_ok());
        assert!(OAuthConfig::new("http://[::1]:8080/t", "t").is_ok());
        assert!(OAuthConfig::new("http://localhost/t", "t").is_ok());
        assert!(OAuthConfig::new("http://idp.example/t", "t").is_err());
        assert!(OAuthConfig::new("ftp://idp.example/t", "t").is_err());
        assert!(OAuthConfig::new("/t", "t").is_err());
    }

    #[test]
    fn entra_issuers_include_the_v1_issuer_of_storage_tokens() {
        let config =
            OAuthConfig::new("https://login.microsoftonline.com/tid1/v2.0", "tid1").unwrap();
        let oauth = OAuth::new(config, "acct");
        let issuers = oauth.accepted_issuers("https://login.microsoftonline.com/{tenantid}/v2.0");
        assert!(issuers.contains(&"https://sts.windows.net/tid1/".to_owned()));
        assert!(issuers.contains(&"https://login.microsoftonline.com/tid1/v2.0".to_owned()));
        assert!(
            oauth
                .audiences
                .contains(&"https://acct.file.core.windows.net".to_owned())
        );
    }
}
