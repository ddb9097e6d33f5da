//! The storage account key: decoded once, kept in a secret box (zeroed on drop), never
//! printed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretSlice};

/// A storage account key (the decoded bytes of its base64 form). `Debug` and `Display` show
/// only that a key is there; the bytes are zeroed when the key is dropped.
#[derive(Clone)]
pub struct AccountKey(SecretSlice<u8>);

/// A key that is not valid base64. The message says what kind of fault it is and where,
/// never which characters the key holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account key is not valid base64 ({0})")]
pub struct InvalidAccountKey(String);

impl AccountKey {
    /// Decodes a base64 account key.
    pub fn from_base64(s: &str) -> Result<Self, InvalidAccountKey> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|e| InvalidAccountKey(describe_decode_error(&e)))?;
        if bytes.is_empty() {
            return Err(InvalidAccountKey("it is empty".into()));
        }
        Ok(Self(bytes.into()))
    }

    /// A fresh random 64-byte key (what Azure issues), for embedded services.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes.into())
    }

    /// The key in its base64 form, for handing to a client that must sign.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.expose_secret())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// What is wrong with a base64 text, without the offending character (the decoder's own
/// message names it, and it is a character of the key).
fn describe_decode_error(e: &base64::DecodeError) -> String {
    use base64::DecodeError as D;
    match e {
        D::InvalidByte(offset, _) => format!("a character that is not base64 at offset {offset}"),
        D::InvalidLength(len) => format!("{len} base64 characters is not a valid length"),
        D::InvalidLastSymbol(offset, _) => {
            format!("the last character, at offset {offset}, is not valid there")
        }
        D::InvalidPadding => "its padding is wrong".into(),
    }
}

impl PartialEq for AccountKey {
    /// Compares in time that depends only on the lengths.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.bytes(), other.bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for AccountKey {}

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
        assert_eq!(
            key,
            AccountKey::from_base64("c2VjcmV0LWtleS1ieXRlcw==").unwrap()
        );
        assert_ne!(key, AccountKey::random());
    }

    #[test]
    fn rejects_bad_base64_without_echoing_any_of_it() {
        // Each of these carries characters of the key that the decoder's own message names
        // (`Invalid symbol 95`, `Invalid last symbol 72`): none may reach the error.
        for (bad, want) in [
            ("c2VjcmV0_2V5", "offset 8"),
            ("c2VjcmV0LWtleS1ieXRlcH==", "offset"),
            ("c2VjcmV0L", "length"),
            ("c2Vj!!cmV0", "not base64 at offset 4"),
        ] {
            let err = AccountKey::from_base64(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
            for (i, c) in bad.char_indices() {
                let part: String = bad[i..].chars().take(3).collect();
                assert!(
                    part.len() < 3 || !err.contains(&part),
                    "{err} echoes {part:?} ({c})"
                );
                let code = format!("symbol {}", c as u32);
                assert!(!err.contains(&code), "{err} names a character of the key");
            }
        }
        assert!(AccountKey::from_base64("").is_err());
    }
}
