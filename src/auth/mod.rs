//! Authentication for the handle APIs: Shared Key signing and verification, SAS
//! verification, OAuth bearer token (JWT) verification, the account key type that keeps
//! secrets out of logs, and the requests and token cache rules for OAuth tokens from
//! Microsoft Entra ID ([`entra`]).
//!
//! Everything here works on a neutral [`RequestView`] so that the client (signing) and the
//! server (verifying) share one implementation of the string-to-sign.

mod credentials;
pub mod entra;
mod jwt;
mod key;
mod sas;
mod shared_key;

pub use credentials::{
    ConnectionString, Credential, CredentialError, SECRET_KEYS, SasToken, credential_from_keys,
};
pub use jwt::{
    Jwk, JwkSet, JwtError, Principal, TOKEN_CLOCK_SKEW, TokenHeader, TokenRules,
    header as jwt_header, verify as verify_jwt,
};
pub use key::{AccountKey, InvalidAccountKey};
pub use sas::{Operation, SasResource, is_sas_request, verify_sas};
pub use shared_key::{shared_key_string_to_sign, sign, verify_shared_key};

use http::HeaderMap;
use std::time::Duration;

/// How far a request's date or a SAS start time may be from the server's clock.
pub const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an HTTP request that signatures cover.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The URL path exactly as sent on the wire, still percent-encoded.
    pub raw_path: &'a str,
    /// The query parameters, percent-decoded, in the order sent.
    pub query: &'a [(String, String)],
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl RequestView<'_> {
    /// The first value of a query parameter (names compared case-insensitively).
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header's value as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request was refused. Each kind maps to one storage error code; `detail` becomes the
/// `AuthenticationErrorDetail` and never holds a key, a SAS signature or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct AuthError {
    /// What kind of refusal.
    pub kind: AuthErrorKind,
    /// What exactly was wrong.
    pub detail: String,
}

/// The kinds of [`AuthError`], after the storage error codes they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// `AuthenticationFailed`: no valid signature, a stale date, an expired SAS.
    Authentication,
    /// `AuthorizationPermissionMismatch`: the SAS lacks the permission the operation needs.
    PermissionMismatch,
    /// `AuthorizationResourceTypeMismatch`: an account SAS without the resource type.
    ResourceTypeMismatch,
    /// `AuthorizationServiceMismatch`: an account SAS not valid for the file service.
    ServiceMismatch,
    /// `AuthorizationProtocolMismatch`: an https-only SAS over http.
    ProtocolMismatch,
    /// `AuthorizationSourceIPMismatch`: the client's address is outside the SAS's range.
    SourceIpMismatch,
}

impl AuthErrorKind {
    /// The storage error code this kind is answered with.
    pub fn code(self) -> &'static str {
        match self {
            Self::Authentication => "AuthenticationFailed",
            Self::PermissionMismatch => "AuthorizationPermissionMismatch",
            Self::ResourceTypeMismatch => "AuthorizationResourceTypeMismatch",
            Self::ServiceMismatch => "AuthorizationServiceMismatch",
            Self::ProtocolMismatch => "AuthorizationProtocolMismatch",
            Self::SourceIpMismatch => "AuthorizationSourceIPMismatch",
        }
    }
}

impl AuthError {
    pub(crate) fn new(kind: AuthErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn authentication(detail: impl Into<String>) -> Self {
        Self::new(AuthErrorKind::Authentication, detail)
    }
}

/// Splits a raw query string into percent-decoded pairs. `+` is a space, as in Azure Storage.
/// Returns the offending parameter when a value is not UTF-8 after decoding.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                let s = s.replace('+', "%20");
                percent_encoding::percent_decode_str(&s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| pair.to_owned())
            };
            Ok((decode(n)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q =
            parse_query("marker=1%2140%21YQ-&maxresults=1&comp=listhandles&a+b=c+d&flag").unwrap();
        assert_eq!(
            q,
            [
                ("marker".into(), "1!40!YQ-".into()),
                ("maxresults".into(), "1".into()),
                ("comp".into(), "listhandles".into()),
                ("a b".into(), "c d".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert!(parse_query("x=%FF").is_err());
    }
}
