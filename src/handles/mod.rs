//! The `HandleService` trait, one page of List Handles or Force Close Handles at a time, and
//! the stores that implement it.
//!
//! Every caller (the HTTP server, the sweep, the CLI) reaches handles through this trait,
//! so a memory store, a Samba server and Azure Files are interchangeable.

pub mod client;
mod marker;
pub mod memory;
mod paging;
mod properties;
pub mod samba;

use futures::future::BoxFuture;

use crate::protocol::{ClosePage, CloseRequest, ListPage, ListRequest, StorageError, Target};

pub use marker::{MarkerCodec, MarkerKind};
pub use paging::{CloseOutcome, close_all, pages};
pub use properties::{PathKind, PathProperties, properties_not_supported};

/// A source of open handles that can list them and force-close them, a page at a time.
pub trait HandleService: Send + Sync {
    /// Lists one page of handles on the target.
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>>;

    /// Force-closes one batch of handles on the target; `next_marker` says whether more remain.
    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>>;

    /// Whether `target`'s path exists and is a file or a directory, with its properties (Get
    /// File Properties / Get Directory Properties). Errors as for the handle operations: 404
    /// `ShareNotFound`, `ParentNotFound` or `ResourceNotFound`. A store that cannot tell
    /// answers 400 `FeatureNotSupported` ([`properties_not_supported`]), the default.
    fn path_properties<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<PathProperties, Error>> {
        Box::pin(async move { Err(Error::storage(target, properties_not_supported())) })
    }

    /// What the store holds, as far as it knows without listing (for the service's metrics).
    fn size(&self) -> StoreSize {
        StoreSize::default()
    }
}

/// A store's size; `None` where the store cannot tell cheaply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSize {
    /// Shares served.
    pub shares: Option<usize>,
    /// Open handles.
    pub handles: Option<usize>,
}

/// Why a handle operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The service answered with a storage error.
    #[error("{target}: {error}{}", request_id_suffix(.request_id))]
    Service {
        /// `share/path` the request addressed.
        target: String,
        /// The service's `x-ms-request-id`, when it sent one.
        request_id: Option<String>,
        /// What the service said (boxed: it is the largest variant).
        error: Box<StorageError>,
    },
    /// No answer: the connection failed, broke, or a request timed out, on every try.
    #[error("{target}: no answer from the service: {message}")]
    Transport {
        /// `share/path` the request addressed.
        target: String,
        /// What went wrong (never a URL, which may carry a SAS).
        message: String,
    },
    /// The call did not finish within its time limit, retries included.
    #[error("{target}: gave up after {after:?}")]
    Timeout {
        /// `share/path` the request addressed.
        target: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// The answer could not be understood.
    #[error("{target}: unexpected answer: {message}")]
    Protocol {
        /// `share/path` the request addressed.
        target: String,
        /// What was wrong with it.
        message: String,
    },
    /// The credential could not be used (a token file that cannot be read).
    #[error("credential: {message}")]
    Credential {
        /// What is wrong (never the secret).
        message: String,
    },
    /// A store's own machinery failed (a tool it runs, a file it reads).
    #[error("{target}: {message}")]
    Backend {
        /// `share/path` the request addressed.
        target: String,
        /// What failed, without secrets.
        message: String,
    },
}

/// The bounded set of error categories, used as metric labels and Event reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// The credential was refused or lacks permission (403, 401).
    AuthenticationFailed,
    /// The share does not exist.
    ShareNotFound,
    /// A path does not exist.
    PathNotFound,
    /// The service throttled us (429, 503) until retries ran out.
    Throttled,
    /// The service failed (5xx).
    ServiceError,
    /// The request was refused as invalid (other 4xx).
    InvalidRequest,
    /// No answer, or no answer in time.
    Unreachable,
    /// The answer made no sense.
    Protocol,
    /// The credential could not be read.
    Credential,
    /// The store's own machinery failed.
    Backend,
}

impl ErrorCategory {
    /// The category as a metric label value / Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::ShareNotFound => "ShareNotFound",
            Self::PathNotFound => "PathNotFound",
            Self::Throttled => "Throttled",
            Self::ServiceError => "ServiceError",
            Self::InvalidRequest => "InvalidRequest",
            Self::Unreachable => "Unreachable",
            Self::Protocol => "ProtocolError",
            Self::Credential => "CredentialError",
            Self::Backend => "BackendError",
        }
    }
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

impl Error {
    /// A storage error for `target`, as a store reports it.
    pub fn storage(target: &Target, error: StorageError) -> Self {
        Self::Service {
            target: describe(target),
            request_id: None,
            error: Box::new(error),
        }
    }

    /// The storage error, when the service sent one.
    pub fn storage_error(&self) -> Option<&StorageError> {
        match self {
            Self::Service { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Which of the fixed categories this error falls in.
    pub fn category(&self) -> ErrorCategory {
        use crate::protocol::ErrorCode as C;
        match self {
            Self::Service { error, .. } => match (&error.code, error.status) {
                (C::ShareNotFound, _) => ErrorCategory::ShareNotFound,
                (C::ResourceNotFound | C::ParentNotFound, _) => ErrorCategory::PathNotFound,
                (_, 401 | 403) => ErrorCategory::AuthenticationFailed,
                (_, 429 | 503) => ErrorCategory::Throttled,
                (_, 404) => ErrorCategory::PathNotFound,
                (_, s) if s >= 500 => ErrorCategory::ServiceError,
                _ => ErrorCategory::InvalidRequest,
            },
            Self::Transport { .. } | Self::Timeout { .. } => ErrorCategory::Unreachable,
            Self::Protocol { .. } => ErrorCategory::Protocol,
            Self::Credential { .. } => ErrorCategory::Credential,
            Self::Backend { .. } => ErrorCategory::Backend,
        }
    }
}

/// `share/path` (or just `share` for the root), for messages.
pub fn describe(target: &Target) -> String {
    if target.path.is_empty() {
        target.share.clone()
    } else {
        format!("{}/{}", target.share, target.path)
    }
}
