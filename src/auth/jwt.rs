//! OAuth bearer tokens as Azure Storage verifies them: RS256 JSON Web Tokens signed by a key
//! of the issuer's JWKS, for the storage audience, from the configured issuer and tenant,
//! within their lifetime.
//!
//! Pure: the key set is fetched elsewhere (the server's OAuth module); this module only
//! parses and checks. Errors name the claim that failed and, for the non-secret claims
//! (`aud`, `iss`, `tid`), its value; never the token or its signature.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;

/// How far `exp` and `nbf` may be from the server's clock (Azure allows five minutes).
pub const TOKEN_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The largest token accepted; Entra access tokens are a few KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a bearer token was refused. The `Display` text is the `AuthenticationErrorDetail`
/// Azure sends for the same fault, where we know it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or a claim of the wrong type.
    #[error("The bearer token is malformed: {0}.")]
    Malformed(String),
    /// An `alg` other than RS256 (`none` and HS256 included: no key confusion).
    #[error(
        "Signature validation failed. The token's algorithm {0:?} is not accepted; only RS256 is."
    )]
    Algorithm(String),
    /// No key of the issuer's set has the token's `kid`.
    #[error("Signature validation failed. Signature key not found (kid {0:?}).")]
    UnknownKey(String),
    /// The signature does not verify with the key its `kid` names.
    #[error("Signature validation failed. The signature does not match the key.")]
    Signature,
    /// `exp` is past (beyond the skew).
    #[error("Lifetime validation failed. The token is expired.")]
    Expired,
    /// `nbf` is in the future (beyond the skew).
    #[error("Lifetime validation failed. The token is not yet valid.")]
    NotYetValid,
    /// A claim the service needs is missing.
    #[error("The token has no {0} claim.")]
    MissingClaim(&'static str),
    /// `aud` names none of the accepted audiences.
    #[error("Audience validation failed. Audience did not match (aud {0:?}).")]
    Audience(String),
    /// `iss` is not the configured issuer.
    #[error("Issuer validation failed. Issuer did not match (iss {0:?}).")]
    Issuer(String),
    /// `tid` is not the configured tenant.
    #[error("Tenant validation failed. The token is for tenant {0:?}, not this account's.")]
    Tenant(String),
}

/// One RSA public key of an issuer's JWKS.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    /// The key id tokens name in their header.
    pub kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jwk({:?}, RSA {} bits)", self.kid, self.n.len() * 8)
    }
}

/// An issuer's signing keys (its `jwks_uri` document), RSA signing keys only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl JwkSet {
    /// Parses a JWKS document. Keys that are not RSA signing keys with a `kid` are skipped
    /// (an issuer may publish others); a key with undecodable `n`/`e` is an error.
    pub fn from_json(json: &[u8]) -> Result<Self, JwtError> {
        let raw: RawJwks = serde_json::from_slice(json)
            .map_err(|e| JwtError::Malformed(format!("the JWKS is not a key set: {e}")))?;
        let mut keys = Vec::new();
        for k in raw.keys {
            if k.kty != "RSA" || k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            let decode = |field: &str, v: &str| {
                URL_SAFE_NO_PAD
                    .decode(v.trim_end_matches('='))
                    .map_err(|_| JwtError::Malformed(format!("JWKS key {kid:?} has a bad {field}")))
            };
            let n = decode("n", &n)?;
            let e = decode("e", &e)?;
            keys.push(Jwk { kid, n, e });
        }
        Ok(Self { keys })
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// Accepted `iss` values (compared exactly, but a trailing `/` is ignored).
    pub issuers: Vec<String>,
    /// The tenant `tid` must name (compared case-insensitively: it is a GUID).
    pub tenant: String,
    /// Accepted `aud` values (a trailing `/` is ignored).
    pub audiences: Vec<String>,
    /// Allowed clock difference for `exp` and `nbf`.
    pub skew: Duration,
}

/// The header fields we read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenHeader {
    /// The signing algorithm.
    pub alg: String,
    /// The signing key's id.
    pub kid: Option<String>,
}

/// Who the token speaks for: the claims authorization looks at. None is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's object id (`oid`).
    pub oid: Option<String>,
    /// The client application's id (`appid` in v1 tokens, `azp` in v2).
    pub appid: Option<String>,
    /// The tenant (`tid`).
    pub tenant: String,
    /// App roles granted (`roles`).
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    aud: Option<Audience>,
    iss: Option<String>,
    tid: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    oid: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The three parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed(format!(
            "it is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok(Parts {
            header,
            payload,
            signature,
        }),
        _ => Err(JwtError::Malformed(
            "it is not three dot-separated parts".into(),
        )),
    }
}

fn decode_part(part: &str, name: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("its {name} is not base64url")))
}

/// The token's header, read before verification to find which key signed it.
pub fn header(token: &str) -> Result<TokenHeader, JwtError> {
    let parts = split(token)?;
    serde_json::from_slice(&decode_part(parts.header, "header")?)
        .map_err(|_| JwtError::Malformed("its header is not a JSON object with alg".into()))
}

/// Verifies `token` against `keys` and `rules` at `now`, and returns its principal.
/// The checks run in Azure's order: algorithm, signature, lifetime, audience, issuer, tenant.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    rules: &TokenRules,
    now: Timestamp,
) -> Result<Principal, JwtError> {
    let parts = split(token)?;
    let head = header(token)?;
    if head.alg != "RS256" {
        return Err(JwtError::Algorithm(head.alg));
    }
    let kid = head.kid.ok_or(JwtError::MissingClaim("kid (header)"))?;
    let key = keys.get(&kid).ok_or(JwtError::UnknownKey(kid))?;
    let signature = decode_part(parts.signature, "signature")?;
    let signed = &token[..parts.header.len() + 1 + parts.payload.len()];
    RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    }
    .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
    .map_err(|_| JwtError::Signature)?;

    let claims: RawClaims = serde_json::from_slice(&decode_part(parts.payload, "payload")?)
        // serde's message may quote a claim's value; say where, not what.
        .map_err(|e| {
            JwtError::Malformed(format!(
                "its claims are not a JSON object of the expected types (column {})",
                e.column()
            ))
        })?;
    check_lifetime(&claims, now, rules.skew)?;
    check_audience(claims.aud.as_ref(), &rules.audiences)?;
    let iss = claims.iss.ok_or(JwtError::MissingClaim("iss"))?;
    if !rules.issuers.iter().any(|i| same_url(i, &iss)) {
        return Err(JwtError::Issuer(iss));
    }
    let tid = claims.tid.ok_or(JwtError::MissingClaim("tid"))?;
    if !tid.eq_ignore_ascii_case(&rules.tenant) {
        return Err(JwtError::Tenant(tid));
    }
    Ok(Principal {
        oid: claims.oid,
        appid: claims.appid.or(claims.azp),
        tenant: tid,
        roles: claims.roles,
    })
}

fn check_lifetime(claims: &RawClaims, now: Timestamp, skew: Duration) -> Result<(), JwtError> {
    let now = now.as_second();
    let skew = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
    if now > exp.saturating_add(skew) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && now < nbf.saturating_sub(skew)
    {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

fn check_audience(aud: Option<&Audience>, accepted: &[String]) -> Result<(), JwtError> {
    let given: Vec<&str> = match aud {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Audience::One(a)) => vec![a.as_str()],
        Some(Audience::Many(a)) => a.iter().map(String::as_str).collect(),
    };
    if given
        .iter()
        .any(|g| accepted.iter().any(|a| same_url(a, g)))
    {
        Ok(())
    } else {
        Err(JwtError::Audience(given.join(" ")))
    }
}

/// Whether two URLs are equal but for a trailing `/` (Entra writes `https://storage.azure.com/`
/// in v1 tokens and `https://storage.azure.com` in v2).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn rules() -> TokenRules {
        TokenRules {
            issuers: vec!["https://sts.example/t1/".into()],
            tenant: "t1".into(),
            audiences: vec!["https://storage.azure.com".into()],
            skew: TOKEN_CLOCK_SKEW,
        }
    }

    #[test]
    fn refuses_alg_none_and_hmac_before_looking_at_keys() {
        let payload = b64(r#"{"aud":"https://storage.azure.com","exp":9999999999}"#);
        for alg in ["none", "HS256", "RS512"] {
            let token = format!("{}.{payload}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)));
            let err = verify(&token, &JwkSet::default(), &rules(), Timestamp::UNIX_EPOCH);
            assert_eq!(err, Err(JwtError::Algorithm(alg.into())));
        }
    }

    #[test]
    fn malformed_tokens_are_errors_that_do_not_echo_the_token() {
        for token in ["", "a.b", "a.b.c.d", "!!!.e30.e30", &"x".repeat(20_000)] {
            let err = verify(token, &JwkSet::default(), &rules(), Timestamp::UNIX_EPOCH)
                .expect_err("malformed");
            assert!(matches!(err, JwtError::Malformed(_)), "{err:?}");
            if !token.is_empty() {
                assert!(!err.to_string().contains(token), "{err}");
            }
        }
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed_without_quoting_them() {
        use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
        // The refusal of a claim's type must come after the signature check, so sign for real.
        let der = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("running openssl");
        let pair = RsaKeyPair::from_der(&der.stdout).unwrap();
        let public = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let keys = JwkSet {
            keys: vec![Jwk {
                kid: "k".into(),
                n: public.n,
                e: public.e,
            }],
        };
        let signed = format!(
            "{}.{}",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"exp":"secret-looking-value"}"#)
        );
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
        let err = verify(&token, &keys, &rules(), Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(matches!(err, JwtError::Malformed(_)), "{err:?}");
        assert!(!err.to_string().contains("secret-looking-value"), "{err}");
    }

    #[test]
    fn audiences_match_with_or_without_trailing_slash() {
        let accepted = vec!["https://storage.azure.com".to_owned()];
        let one = |s: &str| Audience::One(s.into());
        assert!(check_audience(Some(&one("https://storage.azure.com/")), &accepted).is_ok());
        assert!(check_audience(Some(&one("https://storage.azure.com")), &accepted).is_ok());
        assert_eq!(
            check_audience(Some(&one("https://vault.azure.net")), &accepted),
            Err(JwtError::Audience("https://vault.azure.net".into()))
        );
        let many = Audience::Many(vec!["x".into(), "https://storage.azure.com/".into()]);
        assert!(check_audience(Some(&many), &accepted).is_ok());
    }

    #[test]
    fn lifetime_allows_the_skew_and_no_more() {
        let claims = |exp, nbf| RawClaims {
            aud: None,
            iss: None,
            tid: None,
            exp: Some(exp),
            nbf,
            oid: None,
            appid: None,
            azp: None,
            roles: vec![],
        };
        let now = Timestamp::from_second(1_000_000).unwrap();
        let skew = TOKEN_CLOCK_SKEW;
        assert!(check_lifetime(&claims(1_000_000 - 300, None), now, skew).is_ok());
        assert_eq!(
            check_lifetime(&claims(1_000_000 - 301, None), now, skew),
            Err(JwtError::Expired)
        );
        assert!(check_lifetime(&claims(2_000_000, Some(1_000_300)), now, skew).is_ok());
        assert_eq!(
            check_lifetime(&claims(2_000_000, Some(1_000_301)), now, skew),
            Err(JwtError::NotYetValid)
        );
    }

    #[test]
    fn jwks_skips_keys_it_cannot_use() {
        let json = br#"{"keys":[
            {"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"k1","use":"sig","n":"AQAB","e":"AQAB"}]}"#;
        let set = JwkSet::from_json(json).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.get("k1").is_some());
        assert!(
            JwkSet::from_json(br#"{"keys":[{"kty":"RSA","kid":"k","n":"!","e":"AQAB"}]}"#).is_err()
        );
    }
}
