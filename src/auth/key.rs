//! The storage account key: decoded once, never printed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A storage account key (the decoded bytes of its base64 form). `Debug` and `Display` show
/// only that a key is there.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKey(Vec<u8>);

/// A key that is not valid base64; the key itself is not repeated in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account key is not valid base64 ({0})")]
pub struct InvalidAccountKey(String);

impl AccountKey {
    /// Decodes a base64 account key.
    pub fn from_base64(s: &str) -> Result<Self, InvalidAccountKey> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|e| InvalidAccountKey(e.to_string()))?;
        if bytes.is_empty() {
            return Err(InvalidAccountKey("it is empty".into()));
        }
        Ok(Self(bytes))
    }

    /// A fresh random 64-byte key (what Azure issues), for embedded services.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key in its base64 form, for handing to a client that must sign.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_key() {
        let key = AccountKey::from_base64("c2VjcmV0LWtleS1ieXRlcw==").unwrap();
        assert!(!format!("{key:?} {key}").contains("c2VjcmV0"));
        assert_eq!(key.to_base64(), "c2VjcmV0LWtleS1ieXRlcw==");
    }

    #[test]
    fn rejects_bad_base64_without_echoing_it() {
        let err = AccountKey::from_base64("not base64!!").unwrap_err();
        assert!(!err.to_string().contains("not base64!!"), "{err}");
        assert!(AccountKey::from_base64("").is_err());
    }
}
