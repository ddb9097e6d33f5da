//! TLS for a listener: a PEM certificate chain and private key, reloaded when the files
//! change (Kubernetes rotates a mounted Secret by swapping the files under the mount).
//!
//! The files are checked (one `stat` each) on every new connection; when either changed, the
//! pair is read again. A pair that fails to load (half-written, mismatched) leaves the last
//! good one in use and logs a warning once per change.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where a listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("reading the TLS {what} {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("the TLS certificate {path} holds no usable PEM certificate: {detail}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
    /// The key file holds no PEM private key, or a broken one.
    #[error("the TLS key {path} holds no usable PEM private key: {detail}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key's text).
        detail: &'static str,
    },
    /// rustls refused the pair (for example, the key does not match the certificate).
    #[error("the TLS certificate {cert} and key {key} do not make a server identity: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// What identifies one version of a file: replaced or rewritten files differ in one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    /// The stamp of `path` (following symlinks, as a Secret mount's are).
    fn of(path: &Path) -> Option<Self> {
        let m = fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// The server identity in use and the file versions it came from.
struct Loaded {
    stamps: (Option<Stamp>, Option<Stamp>),
    config: Arc<ServerConfig>,
    /// The stamps of a pair that failed to load (warned about once).
    failed: Option<(Option<Stamp>, Option<Stamp>)>,
}

/// A TLS server identity that follows its files.
pub struct CertReloader {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertReloader {
    /// Loads the pair; an error when it cannot serve (the service then does not start).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = (Stamp::of(&files.cert), Stamp::of(&files.key));
        let config = server_config(&files)?;
        Ok(Self {
            files,
            loaded: Mutex::new(Loaded {
                stamps,
                config,
                failed: None,
            }),
        })
    }

    /// The identity to greet a new connection with: the files' current pair, or the last good
    /// one while the files do not make a pair.
    pub fn current(&self) -> Arc<ServerConfig> {
        let stamps = (Stamp::of(&self.files.cert), Stamp::of(&self.files.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if stamps == loaded.stamps || loaded.failed == Some(stamps) {
            return loaded.config.clone();
        }
        match server_config(&self.files) {
            Ok(config) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                *loaded = Loaded {
                    stamps,
                    config,
                    failed: None,
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous certificate");
                loaded.failed = Some(stamps);
            }
        }
        loaded.config.clone()
    }
}

/// Reads the pair into a rustls server configuration (ring, HTTP/1.1 over ALPN).
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |what, path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: files.cert.clone(),
            detail: pem_problem(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: files.cert.clone(),
            detail: "no CERTIFICATE block",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        detail: pem_problem(&e),
    })?;
    let config_error = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What is wrong with a PEM file, in words that quote none of its text (a key file's lines
/// are secret).
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section's base64 is broken",
        Error::NoItemsFound => "no block of the expected kind",
        Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be read as PEM",
    }
}
