//! A bearer token kept in a file (workload identity projects a fresh one there), re-read
//! when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

/// The token file and the last token read from it (in a secret box: zeroed on drop, never
/// printed).
pub struct BearerFile {
    path: PathBuf,
    cached: Mutex<Option<(Option<SystemTime>, u64, SecretString)>>,
}

impl BearerFile {
    /// Watches `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            cached: Mutex::new(None),
        }
    }

    /// The current token: the cached one while the file's modification time and size are
    /// unchanged, else the file's content, trimmed. A token that cannot travel in a header (a
    /// control character, a space, a non-ASCII byte) is refused by its position only: no part
    /// of it reaches the message.
    pub fn token(&self) -> Result<SecretString, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("reading the bearer token file {}: {e}", self.path.display()))?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().expect("lock poisoned");
        if let Some((modified, len, token)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(token.clone());
        }
        let raw =
            SecretString::from(std::fs::read_to_string(&self.path).map_err(|e| {
                format!("reading the bearer token file {}: {e}", self.path.display())
            })?);
        let token = raw.expose_secret().trim();
        if token.is_empty() {
            return Err(format!(
                "the bearer token file {} is empty",
                self.path.display()
            ));
        }
        // RFC 6750's token68 is visible ASCII; anything else would not fit the header.
        if let Some(at) = token.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "the bearer token in {} holds a byte that cannot be sent in a header (a control character, space or non-ASCII byte) at offset {at}; the token is not shown",
                self.path.display()
            ));
        }
        let token = SecretString::from(token);
        *cached = Some((stamp.0, stamp.1, token.clone()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("bearer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let file = BearerFile::new(&path);
        assert_eq!(file.token().unwrap().expose_secret(), "first");
        std::fs::write(&path, "second-token").unwrap(); // Different size: seen even within one mtime tick.
        assert_eq!(file.token().unwrap().expose_secret(), "second-token");
        std::fs::write(&path, "eyJhbGciOi\u{1}JSUzI1NiJ9").unwrap();
        let err = file.token().unwrap_err();
        assert!(err.contains("offset 10"), "{err}");
        assert!(!err.contains("eyJ") && !err.contains("JSUz"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(file.token().unwrap_err().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(file.token().is_err());
    }
}
