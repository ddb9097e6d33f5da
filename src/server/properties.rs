//! Get Directory Properties (`GET|HEAD …?restype=directory`) and Get File Properties
//! (`HEAD …`, no `restype`): whether a path exists and is a file or a directory, with the
//! headers Azure Files answers them with.
//!
//! Clients ask these before they touch handles: `az storage share list-handle --path` and
//! `close-handle --path` probe the path as a directory first and fall back to a file client
//! on a 404, and the SDKs' `exists()` is built on them. So a path of the other kind is a 404
//! `ResourceNotFound`, exactly as Azure answers.

use http::{HeaderValue, Method, Response, header};
use jiff::Timestamp;

use crate::handles::{PathKind, PathProperties};
use crate::protocol::{ErrorCode, StorageError};

use super::request;
use super::respond::{self, Body};

/// Which properties a request without `comp` asks for: `restype=directory` a directory's,
/// no `restype` a file's. `None` when the request is not a properties request at all (another
/// verb without `restype`, or the share root without `restype`), so the caller answers as for
/// any request without `comp`.
pub fn requested(
    method: &Method,
    query: &[(String, String)],
    path: &str,
) -> Result<Option<PathKind>, StorageError> {
    let read = method == Method::GET || method == Method::HEAD;
    match request::query(query, "restype") {
        Some("directory") if read => Ok(Some(PathKind::Directory)),
        Some("directory") => Err(StorageError::new(
            405,
            ErrorCode::UnsupportedHttpVerb,
            format!(
                "The resource doesn't support the specified HTTP verb {method}: this service serves only Get Directory Properties (GET or HEAD) on directories."
            ),
        )),
        Some(other) => Err(StorageError::invalid_query(
            "restype",
            other,
            "This service serves restype=directory (Get Directory Properties) only.",
        )),
        // The share root is a directory, never a file; share-level operations need
        // `restype=share` or a `comp`, which the caller's answer names.
        None if read && !path.is_empty() => Ok(Some(PathKind::File)),
        None => Ok(None),
    }
}

/// The answer to a properties request for `asked` on a path whose properties are `props`:
/// 404 `ResourceNotFound` when the path is of the other kind, 400 for a `GET` of a file (a
/// download: the stores hold no content), else 200 with the properties' headers.
pub fn answer(
    method: &Method,
    asked: PathKind,
    props: &PathProperties,
) -> Result<Response<Body>, StorageError> {
    if props.kind != asked {
        return Err(StorageError::resource_not_found());
    }
    if asked == PathKind::File && method == Method::GET {
        return Err(StorageError::new(
            400,
            ErrorCode::FeatureNotSupported,
            "This service holds no file content, so Get File (a download) is not supported; Get File Properties is a HEAD.",
        ));
    }
    let mut resp = respond::empty();
    let h = resp.headers_mut();
    let last_modified = props.changed.max(props.last_write);
    h.insert(header::ETAG, ascii(&etag(props)));
    h.insert(
        header::LAST_MODIFIED,
        ascii(&crate::protocol::format_rfc1123(last_modified)),
    );
    h.insert("x-ms-server-encrypted", HeaderValue::from_static("false"));
    h.insert(
        "x-ms-file-permission-key",
        HeaderValue::from_static(PERMISSION_KEY),
    );
    h.insert("x-ms-file-attributes", ascii(&attributes(props)));
    h.insert("x-ms-file-creation-time", ascii(&iso7(props.created)));
    h.insert("x-ms-file-last-write-time", ascii(&iso7(props.last_write)));
    h.insert("x-ms-file-change-time", ascii(&iso7(props.changed)));
    h.insert("x-ms-file-id", props.file_id.into());
    h.insert("x-ms-file-parent-id", props.parent_id.into());
    if asked == PathKind::File {
        h.insert("x-ms-type", HeaderValue::from_static("File"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert("x-ms-lease-state", HeaderValue::from_static("available"));
        h.insert("x-ms-lease-status", HeaderValue::from_static("unlocked"));
        // A HEAD answer carries the length of the body a GET would send, and no body.
        h.insert(header::CONTENT_LENGTH, props.size.into());
    }
    Ok(resp)
}

/// The permission key every path reports: the stores hold no security descriptors, so all
/// paths share one (Azure's keys have the same `number*number` shape).
pub const PERMISSION_KEY: &str = "0*0";

/// An ETag that changes whenever the path's id, times or size do, in Azure's quoted
/// `"0x…"` form.
fn etag(p: &PathProperties) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        p.file_id,
        p.size,
        p.last_write.as_nanosecond() as u64,
        p.changed.as_nanosecond() as u64,
    ];
    for b in parts.iter().flat_map(|v| v.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"0x{h:016X}\"")
}

/// `x-ms-file-attributes`: Azure's names joined with ` | `.
fn attributes(p: &PathProperties) -> String {
    let kind = match p.kind {
        PathKind::Directory => "Directory",
        PathKind::File => "Archive",
    };
    if p.read_only {
        format!("ReadOnly | {kind}")
    } else {
        kind.to_owned()
    }
}

/// ISO 8601 in UTC with seven fractional digits (`2017-05-10T17:52:33.9551861Z`), the form
/// Azure sends and the SDKs parse.
fn iso7(t: Timestamp) -> String {
    format!(
        "{}.{:07}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond() / 100
    )
}

fn ascii(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("formatted ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn props(kind: PathKind) -> PathProperties {
        let t: Timestamp = "2026-12-06T10:20:30.123456789Z".parse().unwrap();
        PathProperties {
            kind,
            file_id: 42,
            parent_id: 7,
            size: 1234,
            created: t,
            last_write: t,
            changed: t,
            read_only: false,
        }
    }

    #[test]
    fn which_properties_a_request_asks_for() {
        let dir = q(&[("restype", "directory")]);
        assert_eq!(
            requested(&Method::GET, &dir, "d").unwrap(),
            Some(PathKind::Directory)
        );
        assert_eq!(
            requested(&Method::HEAD, &dir, "").unwrap(),
            Some(PathKind::Directory)
        );
        assert_eq!(
            requested(&Method::HEAD, &[], "f").unwrap(),
            Some(PathKind::File)
        );
        assert_eq!(requested(&Method::GET, &[], "").unwrap(), None);
        assert_eq!(requested(&Method::PUT, &[], "f").unwrap(), None);
        assert_eq!(requested(&Method::PUT, &dir, "d").unwrap_err().status, 405);
        let share = q(&[("restype", "share")]);
        let err = requested(&Method::GET, &share, "").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidQueryParameterValue);
    }

    #[test]
    fn headers_of_a_file_and_a_directory() {
        let resp = answer(&Method::HEAD, PathKind::File, &props(PathKind::File)).unwrap();
        let get = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
        assert_eq!(get("x-ms-type"), "File");
        assert_eq!(get("content-length"), "1234");
        assert_eq!(get("x-ms-file-attributes"), "Archive");
        assert_eq!(
            get("x-ms-file-creation-time"),
            "2026-12-06T10:20:30.1234567Z"
        );
        assert_eq!(get("x-ms-file-id"), "42");
        assert_eq!(get("x-ms-file-parent-id"), "7");
        assert_eq!(get("last-modified"), "Sun, 06 Dec 2026 10:20:30 GMT");
        assert!(get("etag").starts_with("\"0x"));

        let mut ro = props(PathKind::Directory);
        ro.read_only = true;
        let resp = answer(&Method::GET, PathKind::Directory, &ro).unwrap();
        assert_eq!(
            resp.headers()["x-ms-file-attributes"],
            "ReadOnly | Directory"
        );
        assert!(resp.headers().get("x-ms-type").is_none());
        let mut touched = props(PathKind::File);
        touched.changed += jiff::SignedDuration::from_millis(1);
        assert_ne!(
            etag(&touched),
            etag(&props(PathKind::File)),
            "a change changes the ETag"
        );
    }

    #[test]
    fn the_other_kind_is_missing_and_a_file_download_is_refused() {
        let err = answer(&Method::GET, PathKind::Directory, &props(PathKind::File)).unwrap_err();
        assert_eq!((err.status, err.code), (404, ErrorCode::ResourceNotFound));
        let err = answer(&Method::HEAD, PathKind::File, &props(PathKind::Directory)).unwrap_err();
        assert_eq!((err.status, err.code), (404, ErrorCode::ResourceNotFound));
        let err = answer(&Method::GET, PathKind::File, &props(PathKind::File)).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (400, ErrorCode::FeatureNotSupported)
        );
    }
}
