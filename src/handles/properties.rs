//! What a store knows about one path: whether it is a file or a directory, and the SMB
//! properties Azure Files reports for it (Get File Properties / Get Directory Properties).

use jiff::Timestamp;

use crate::protocol::{ErrorCode, StorageError};

/// Whether a path is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A directory; the share root is one.
    Directory,
    /// A file (anything that is not a directory).
    File,
}

/// The properties of a file or directory, as the store holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathProperties {
    /// File or directory.
    pub kind: PathKind,
    /// The path's id (`x-ms-file-id`); 0 for the share root, as in List Handles.
    pub file_id: u64,
    /// Its parent directory's id (`x-ms-file-parent-id`); 0 below the share root.
    pub parent_id: u64,
    /// Bytes in a file; 0 for a directory.
    pub size: u64,
    /// When it was created.
    pub created: Timestamp,
    /// When its content was last written.
    pub last_write: Timestamp,
    /// When its content or attributes last changed.
    pub changed: Timestamp,
    /// Whether it is read-only (the `ReadOnly` attribute).
    pub read_only: bool,
}

/// The error of a store that cannot tell what a path is: a 400 `FeatureNotSupported` that says
/// so, rather than a guess that would make a client treat every path as missing.
pub fn properties_not_supported() -> StorageError {
    StorageError::new(
        400,
        ErrorCode::FeatureNotSupported,
        "This store cannot tell whether a path exists or is a file or a directory: Get File Properties and Get Directory Properties are not supported on it.",
    )
}
