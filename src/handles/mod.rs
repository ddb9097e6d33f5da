//! The `HandleService` trait, one page of List Handles or Force Close Handles at a time, and
//! the stores that implement it.
//!
//! Every caller (the HTTP server, the sweep, the CLI) reaches handles through this trait,
//! so a memory store, a Samba server and Azure Files are interchangeable.

mod marker;
pub mod memory;

use futures::future::BoxFuture;

use crate::protocol::{ClosePage, CloseRequest, ListPage, ListRequest, StorageError, Target};

pub use marker::{MarkerCodec, MarkerKind};

/// A source of open handles that can list them and force-close them, a page at a time.
pub trait HandleService: Send + Sync {
    /// Lists one page of handles on the target.
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>>;

    /// Force-closes one batch of handles on the target; `next_marker` says whether more remain.
    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>>;
}

/// Why a handle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with a storage error.
    #[error("{target}: {error}{}", request_id_suffix(.request_id))]
    Service {
        /// `share/path` the request addressed.
        target: String,
        /// The service's `x-ms-request-id`, when it sent one.
        request_id: Option<String>,
        /// What the service said.
        error: StorageError,
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
            error,
        }
    }

    /// The storage error, when the service sent one.
    pub fn storage_error(&self) -> Option<&StorageError> {
        match self {
            Self::Service { error, .. } => Some(error),
            Self::Backend { .. } => None,
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
