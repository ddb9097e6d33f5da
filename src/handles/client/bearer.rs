//! A bearer token kept in a file (workload identity projects a fresh one there), re-read
//! when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The token file and the last token read from it.
pub struct BearerFile {
    path: PathBuf,
    cached: Mutex<Option<(Option<SystemTime>, u64, String)>>,
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
    /// unchanged, else the file's content, trimmed.
    pub fn token(&self) -> Result<String, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("reading the bearer token file {}: {e}", self.path.display()))?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().expect("lock poisoned");
        if let Some((modified, len, token)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(token.clone());
        }
        let token = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("reading the bearer token file {}: {e}", self.path.display()))?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(format!(
                "the bearer token file {} is empty",
                self.path.display()
            ));
        }
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
        assert_eq!(file.token().unwrap(), "first");
        std::fs::write(&path, "second-token").unwrap(); // Different size: seen even within one mtime tick.
        assert_eq!(file.token().unwrap(), "second-token");
        std::fs::write(&path, "").unwrap();
        assert!(file.token().unwrap_err().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(file.token().is_err());
    }
}
