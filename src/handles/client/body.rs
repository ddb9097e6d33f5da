//! Reading answer bodies within a limit: a List Handles page holds at most 5,000 handles, a
//! Force Close answer and an error body are small, so a service (or a proxy in front of it)
//! that sends more is refused before it can fill the client's memory.

use bytes::{Bytes, BytesMut};

/// The most a List Handles body may hold, 40 MiB: 5,000 handles (the most one page holds) of
/// about 8 KiB each (a path of 2,048 characters, percent-encoded, with every other field).
pub const MAX_LIST_BODY: usize = 40 << 20;

/// The most a Force Close Handles answer (empty on the wire) or an error body may hold.
pub const MAX_SMALL_BODY: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// It is longer than the limit (by its `Content-Length`, or by what arrived).
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The connection failed while reading it.
    Transport(reqwest::Error),
}

/// Reads `resp`'s body, refusing one longer than `limit` bytes without reading past it.
pub(super) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Why an answer of more than `limit` bytes was refused.
pub(super) fn too_large(limit: usize) -> String {
    let why = if limit == MAX_LIST_BODY {
        "the most a List Handles page of 5,000 handles takes"
    } else {
        "a Force Close Handles answer is empty"
    };
    format!(
        "the answer is larger than {} ({why}); it was not read",
        size(limit)
    )
}

/// A byte count for messages: `40 MiB`, `64 KiB`, `512 bytes`.
pub(super) fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(MAX_SMALL_BODY), "64 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(MAX_LIST_BODY), "40 MiB");
        assert_eq!(size(100), "100 bytes");
    }
}
