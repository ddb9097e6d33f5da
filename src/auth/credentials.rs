//! Credentials as users hold them: an account name and key, a SAS token, a connection string,
//! a bearer token in a file, or an Entra ID identity that tokens are asked for. Every secret is redacted in `Debug` and `Display`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::AccountKey;

/// A SAS token (the query string without a leading `?`), kept in a secret box: never in
/// `Debug`, `Display` or errors, zeroed on drop.
#[derive(Clone)]
pub struct SasToken(SecretString);

impl SasToken {
    /// Wraps a token, dropping a leading `?`. Refuses one without `sig`.
    pub fn new(token: &str) -> Result<Self, CredentialError> {
        let token = token.trim().trim_start_matches('?');
        let has_sig = token.split('&').any(|p| p.starts_with("sig="));
        if !has_sig {
            return Err(CredentialError::Invalid(
                "the SAS token has no 'sig' parameter (expected a query string like sv=...&sig=...)".into(),
            ));
        }
        Ok(Self(token.into()))
    }

    /// The token as a query string, for appending to a request URL.
    pub fn query(&self) -> &str {
        self.0.expose_secret()
    }

    /// The value of its `sig` parameter (percent-encoded, as in the token).
    pub fn signature(&self) -> &str {
        self.query()
            .split('&')
            .find_map(|p| p.strip_prefix("sig="))
            .unwrap_or_default()
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasToken(<redacted>)")
    }
}

/// How a client authenticates.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Shared Key with the account's key.
    SharedKey {
        /// The account name.
        account: String,
        /// The account key.
        key: AccountKey,
    },
    /// A SAS token in the query string.
    Sas(SasToken),
    /// An OAuth bearer token read from a file, re-read when the file changes (workload
    /// identity projects a fresh token there).
    BearerTokenFile(PathBuf),
    /// OAuth bearer tokens asked of Microsoft Entra ID for this identity (workload identity,
    /// managed identity, a service principal), cached and refreshed before they expire.
    Entra(super::entra::Identity),
}

/// A credential that cannot be used, saying which part is wrong (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A part is missing or malformed.
    #[error("{0}")]
    Invalid(String),
}

/// A parsed Azure Storage connection string: the file endpoint it names (when it does) and
/// its credential.
#[derive(Debug, Clone)]
pub struct ConnectionString {
    /// `FileEndpoint`, or one built from `DefaultEndpointsProtocol`, `AccountName` and
    /// `EndpointSuffix`.
    pub file_endpoint: Option<String>,
    /// The account name, when given.
    pub account: Option<String>,
    /// The credential it carries.
    pub credential: Credential,
}

impl ConnectionString {
    /// Parses `Key=Value;Key=Value` (keys case-insensitive; values may contain `=`).
    pub fn parse(s: &str) -> Result<Self, CredentialError> {
        let mut parts = BTreeMap::new();
        let items: Vec<&str> = s
            .split(';')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        for (n, item) in items.iter().enumerate() {
            let Some((k, v)) = item.split_once('=') else {
                // Not the part itself: it may be a key or a signature that lost its name.
                return Err(CredentialError::Invalid(format!(
                    "connection string part {} of {} is not Key=Value",
                    n + 1,
                    items.len()
                )));
            };
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let account = parts.get("accountname").cloned();
        let credential = match (parts.get("accountkey"), parts.get("sharedaccesssignature")) {
            (Some(key), _) => {
                let account = account.clone().ok_or_else(|| {
                    CredentialError::Invalid(
                        "connection string has AccountKey but no AccountName".into(),
                    )
                })?;
                let key = AccountKey::from_base64(key).map_err(|e| {
                    CredentialError::Invalid(format!("connection string AccountKey: {e}"))
                })?;
                Credential::SharedKey { account, key }
            }
            (None, Some(sas)) => Credential::Sas(SasToken::new(sas)?),
            (None, None) => {
                return Err(CredentialError::Invalid(
                    "connection string has neither AccountKey nor SharedAccessSignature".into(),
                ));
            }
        };
        let file_endpoint = parts.get("fileendpoint").cloned().or_else(|| {
            let account = account.as_ref()?;
            let protocol = parts
                .get("defaultendpointsprotocol")
                .map_or("https", String::as_str);
            let suffix = parts
                .get("endpointsuffix")
                .map_or("core.windows.net", String::as_str);
            Some(format!("{protocol}://{account}.file.{suffix}"))
        });
        Ok(Self {
            file_endpoint,
            account,
            credential,
        })
    }
}

/// The keys a credentials Secret (or file) may hold.
pub const SECRET_KEYS: [&str; 4] = ["accountName", "accountKey", "sasToken", "connectionString"];

/// A credential from the keys of a Kubernetes Secret or a credentials file: `accountName` +
/// `accountKey`, or `sasToken`, or `connectionString`. Returns the credential and the
/// connection string's file endpoint, when it names one.
pub fn credential_from_keys(
    data: &BTreeMap<String, String>,
    endpoint_account: &str,
) -> Result<(Credential, Option<String>), CredentialError> {
    let get = |k: &str| data.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(unknown) = data.keys().find(|k| !SECRET_KEYS.contains(&k.as_str())) {
        return Err(CredentialError::Invalid(format!(
            "unknown key {unknown:?} (expected accountName + accountKey, sasToken, or connectionString)"
        )));
    }
    match (get("accountKey"), get("sasToken"), get("connectionString")) {
        (Some(key), None, None) => {
            let account = get("accountName").unwrap_or(endpoint_account).to_owned();
            let key = AccountKey::from_base64(key)
                .map_err(|e| CredentialError::Invalid(format!("accountKey: {e}")))?;
            Ok((Credential::SharedKey { account, key }, None))
        }
        (None, Some(sas), None) => Ok((Credential::Sas(SasToken::new(sas)?), None)),
        (None, None, Some(cs)) => {
            let cs = ConnectionString::parse(cs)?;
            Ok((cs.credential, cs.file_endpoint))
        }
        (None, None, None) => Err(CredentialError::Invalid(
            "no credential: give accountName + accountKey, sasToken, or connectionString".into(),
        )),
        _ => Err(CredentialError::Invalid(
            "more than one credential: give only one of accountKey, sasToken, connectionString"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

    #[test]
    fn keys_of_a_secret() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let (c, _) = credential_from_keys(&map(&[("accountKey", KEY)]), "acct").unwrap();
        assert!(matches!(c, Credential::SharedKey { ref account, .. } if account == "acct"));
        let (c, _) = credential_from_keys(&map(&[("sasToken", "?sv=1&sig=x")]), "acct").unwrap();
        assert!(matches!(c, Credential::Sas(_)));
        for (pairs, want) in [
            (&[][..], "no credential"),
            (
                &[("accountKey", KEY), ("sasToken", "sig=x")][..],
                "more than one",
            ),
            (&[("password", "x")][..], "unknown key \"password\""),
        ] {
            let err = credential_from_keys(&map(pairs), "acct")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn key_connection_string() {
        let cs = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
        ))
        .unwrap();
        assert_eq!(
            cs.file_endpoint.as_deref(),
            Some("https://acct.file.core.windows.net")
        );
        assert!(
            matches!(cs.credential, Credential::SharedKey { ref account, .. } if account == "acct")
        );
        assert!(!format!("{cs:?}").contains(KEY));
    }

    #[test]
    fn sas_connection_string_with_file_endpoint() {
        let cs = ConnectionString::parse(
            "FileEndpoint=http://127.0.0.1:10004/acct;SharedAccessSignature=sv=2026-10-06&sp=rl&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(
            cs.file_endpoint.as_deref(),
            Some("http://127.0.0.1:10004/acct")
        );
        let Credential::Sas(sas) = &cs.credential else {
            panic!("expected a SAS")
        };
        assert_eq!(sas.query(), "sv=2026-10-06&sp=rl&sig=abc%3D");
        assert!(!format!("{cs:?}").contains("abc%3D"));
    }

    #[test]
    fn refuses_incomplete_ones_without_echoing_secrets() {
        for (cs, want) in [
            (
                "AccountName=acct",
                "neither AccountKey nor SharedAccessSignature",
            ),
            (&format!("AccountKey={KEY}") as &str, "no AccountName"),
            ("AccountName=a;AccountKey=!!", "AccountKey"),
            ("AccountName=a;garbage", "part 2 of 2 is not Key=Value"),
            (
                "AccountName=a;c2VjcmV0LWtleS1ieXRlcw",
                "part 2 of 2 is not Key=Value",
            ),
            ("SharedAccessSignature=sv=1&sp=r", "no 'sig'"),
        ] {
            let err = ConnectionString::parse(cs).unwrap_err().to_string();
            assert!(err.contains(want), "{cs}: {err}");
            assert!(!err.contains("!!") && !err.contains(&KEY[..8]), "{err}");
            assert!(!err.contains("garbage") && !err.contains("sp=r"), "{err}");
        }
    }
}
