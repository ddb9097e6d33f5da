//! A service principal's client certificate: the client assertion Entra ID accepts instead of
//! a secret, a JWT signed (RS256) with the certificate's RSA key and naming the certificate by
//! its SHA-1 thumbprint (`x5t`).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;

use crate::auth::CredentialError;

/// How long an assertion is valid: one is signed per exchange, so a short life costs nothing
/// and limits what a leaked assertion is worth (the Azure SDKs use 10 minutes too).
const ASSERTION_LIFETIME_SECS: i64 = 10 * 60;

/// A certificate and its RSA private key. The key is never shown.
#[derive(Clone)]
pub struct ClientCertificate {
    key: Arc<RsaKeyPair>,
    /// `x5t`: base64url of the SHA-1 of the certificate's DER.
    thumbprint: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.thumbprint)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientCertificate {
    /// Reads PEM holding the certificate (the first one, when there is a chain) and its RSA
    /// private key (PKCS#8 or PKCS#1). Errors say what is missing, never quote the PEM.
    pub fn from_pem(pem: &str) -> Result<Self, CredentialError> {
        let invalid = |what: String| CredentialError::Invalid(format!("clientCertificate: {what}"));
        let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| invalid("no CERTIFICATE block".into()))?
            .map_err(|_| invalid("the CERTIFICATE block is not valid PEM".into()))?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| invalid("no PRIVATE KEY or RSA PRIVATE KEY block".into()))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(invalid(
                    "the private key is not RSA (Entra ID client assertions are RS256)".into(),
                ));
            }
        }
        .map_err(|e| invalid(format!("the private key is not a usable RSA key ({e})")))?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        Ok(Self {
            key: Arc::new(key),
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// The certificate's `x5t` thumbprint.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A client assertion for `client_id` at the token endpoint `audience`, valid from `now`
    /// (Unix seconds) for 10 minutes; `jti` makes it unique.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
        jti: &str,
    ) -> Result<SecretString, CredentialError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CredentialError::Invalid("signing the client assertion failed".into()))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt.into())
    }

    /// The public key (DER `RSAPublicKey`), to check signatures with.
    pub fn public_key(&self) -> &[u8] {
        self.key.public().as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const PEM: &str = include_str!("../../../tests/fixtures/entra-client-certificate.pem");

    #[test]
    fn signs_an_rs256_assertion_naming_the_certificate() {
        let cert = ClientCertificate::from_pem(PEM).unwrap();
        // `openssl x509 -outform DER | openssl dgst -sha1 -binary | base64url`.
        assert_eq!(cert.thumbprint(), "rSWrQM5I7CVKR3TmehDH_he0d4k");
        assert!(!format!("{cert:?}").contains("MII"));
        let jwt = cert
            .assertion(
                "client-1",
                "https://login.example/t/oauth2/v2.0/token",
                1_800_000_000,
                "j-1",
            )
            .unwrap();
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let json = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        assert_eq!(
            json(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": "rSWrQM5I7CVKR3TmehDH_he0d4k"})
        );
        let claims = json(parts[1]);
        assert_eq!(claims["aud"], "https://login.example/t/oauth2/v2.0/token");
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("client-1"), Some("client-1"))
        );
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
            600
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            cert.public_key(),
        )
        .verify(signed.as_bytes(), &signature)
        .expect("the signature verifies with the certificate's key");
    }

    #[test]
    fn refuses_pem_without_a_certificate_or_key_without_quoting_it() {
        let key_only: String = PEM
            .lines()
            .skip_while(|l| !l.contains("PRIVATE KEY"))
            .collect::<Vec<_>>()
            .join("\n");
        let cert_only: String = PEM
            .lines()
            .take_while(|l| !l.contains("PRIVATE KEY"))
            .collect::<Vec<_>>()
            .join("\n");
        for (pem, want) in [
            (key_only.as_str(), "no CERTIFICATE"),
            (cert_only.as_str(), "no PRIVATE KEY"),
            ("garbage", "no CERTIFICATE"),
        ] {
            let err = ClientCertificate::from_pem(pem).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("MII"), "{err}");
        }
    }
}
