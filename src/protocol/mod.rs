//! The Azure Files handle protocol's wire model: List Handles and Force Close Handles,
//! both paged by an opaque marker.
//!
//! No HTTP types live here: the client and the server map these values to requests and
//! responses. See `docs/handle-service.md` for what the service sends and how we match Azure Files.

mod error;
mod handle;
mod time;
mod version;
mod xml;

pub use error::{ErrorCode, StorageError, encode_error, strip_message_trailer};
pub use handle::{
    AccessRights, Handle, HandleId, HandleSelector, InvalidHandleSelector, parse_client_ip,
};
pub use time::{format_rfc1123, parse_rfc1123, write_rfc1123};
pub use version::{InvalidVersion, ServiceVersion, VersionSupport};
pub use xml::{XmlError, decode_error, decode_list, encode_handle, encode_list};

use std::fmt;

/// The most handles one List Handles page holds, and the default page size.
pub const MAX_RESULTS_LIMIT: u32 = 5000;

/// An opaque continuation token: `NextMarker` of List Handles, `x-ms-marker` of Force Close
/// Handles. Only the service that minted it can read it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Marker(String);

impl Marker {
    /// Wraps a marker string as received.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The marker as sent on the wire (before URL encoding).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Marker({:?})", self.0)
    }
}

/// A decoded List Handles body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandleList {
    /// The request's marker, when the service echoed it.
    pub marker: Option<String>,
    /// The request's page size, when the service echoed it.
    pub max_results: Option<u32>,
    /// The handles of this page.
    pub handles: Vec<Handle>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<Marker>,
}

/// The file, directory or share root an operation addresses, and how far below it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The share's name.
    pub share: String,
    /// Path below the share root, `/`-separated, no leading `/`; empty for the root.
    pub path: String,
    /// `x-ms-recursive`: `None` sends no header (files, or a handle's own resource when closing
    /// by id); `Some` is for directories.
    pub recursive: Option<bool>,
}

impl Target {
    /// A directory (or the share root when `path` is empty), with or without its subtree.
    pub fn directory(share: impl Into<String>, path: impl Into<String>, recursive: bool) -> Self {
        Self {
            share: share.into(),
            path: path.into(),
            recursive: Some(recursive),
        }
    }

    /// A file, or a resource whose kind the caller does not know: no `x-ms-recursive`.
    pub fn resource(share: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            share: share.into(),
            path: path.into(),
            recursive: None,
        }
    }

    /// Whether the operation covers the subtree below the path.
    pub fn is_recursive(&self) -> bool {
        self.recursive == Some(true)
    }
}

/// One List Handles call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// What to list.
    pub target: Target,
    /// Where to resume (a previous page's `NextMarker`).
    pub marker: Option<Marker>,
    /// The page size, 1..=5000; `None` lets the service choose (5,000).
    pub max_results: Option<u32>,
}

/// One page of List Handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The handles of this page.
    pub handles: Vec<Handle>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<Marker>,
}

/// One Force Close Handles call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// Where to close.
    pub target: Target,
    /// One handle or all (`*`).
    pub handles: HandleSelector,
    /// Where to resume (a previous call's `x-ms-marker`).
    pub marker: Option<Marker>,
}

/// The outcome of one Force Close Handles call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosePage {
    /// Handles this call closed.
    pub closed: u64,
    /// Handles this call could not close.
    pub failed: u64,
    /// `x-ms-marker`: present while more remain to close.
    pub next_marker: Option<Marker>,
}

/// Azure's share naming rule: 3 to 63 lowercase letters, digits and single hyphens, starting
/// and ending with a letter or digit.
pub fn validate_share_name(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "share name {name:?} is not 3 to 63 lowercase letters, digits and single hyphens starting and ending with a letter or digit"
        ))
    }
}
