//! The admin endpoint of the memory store, so tests and demos can act as SMB clients:
//!
//! | request | does |
//! |---|---|
//! | `GET /_admin` | store sizes and share names |
//! | `PUT /_admin/{share}` | creates a share |
//! | `PUT /_admin/{share}/{path}?kind=file\|directory` | creates a file or directory |
//! | `POST /_admin/{share}/{path}?comp=open` + JSON | opens handles, returns their ids |
//! | `POST /_admin/{share}?comp=release` + `{"handleIds": [...]}` | closes them client-side |
//!
//! Paths are prefixed by `/{account}` on path-style endpoints. Requests are signed with the
//! service's Shared Key like any other. Bodies refuse unknown fields, and the store's bounds
//! (handles per open, handles in the store, shares, files and directories) answer 400.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::request::query;
use super::respond::{self, Body};
use crate::document::from_json;
use crate::handles::memory::{AdminError, MemoryStore, NodeKind, SeedHandle};
use crate::protocol::{ErrorCode, HandleId, StorageError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Release {
    handle_ids: Vec<HandleId>,
}

/// Answers one admin request.
pub fn handle(
    store: &MemoryStore,
    method: &Method,
    segments: &[String],
    q: &[(String, String)],
    body: &Bytes,
) -> Result<Response<Body>, StorageError> {
    let (share, path) = match segments.split_first() {
        None => return stats(store, method),
        Some((share, rest)) => (share.as_str(), rest.join("/")),
    };
    match (method, query(q, "comp")) {
        (&Method::PUT, None) if path.is_empty() => {
            store.create_share(share).map_err(admin_error)?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "share": share }),
            ))
        }
        (&Method::PUT, None) => {
            let kind = match query(q, "kind") {
                None | Some("file") => NodeKind::File,
                Some("directory") => NodeKind::Directory,
                Some(other) => {
                    return Err(StorageError::invalid_query(
                        "kind",
                        other,
                        "Expected file or directory.",
                    ));
                }
            };
            store.create(share, &path, kind).map_err(admin_error)?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "share": share, "path": path }),
            ))
        }
        (&Method::POST, Some("open")) => {
            let spec: SeedHandle = parse_json(body)?;
            if !spec.path.is_empty() {
                return Err(invalid(
                    "path",
                    &spec.path,
                    "Give the path in the URL, not in the body.",
                ));
            }
            let spec = spec
                .to_spec(Timestamp::now())
                .map_err(|reason| invalid("body", "", &reason))?;
            let ids = store.open(share, &path, &spec).map_err(admin_error)?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "handleIds": ids }),
            ))
        }
        (&Method::POST, Some("release")) => {
            let release: Release = parse_json(body)?;
            let released = store
                .release(share, &release.handle_ids)
                .map_err(admin_error)?;
            Ok(respond::json(
                StatusCode::OK,
                &json!({ "released": released }),
            ))
        }
        _ => Err(StorageError::new(
            400,
            ErrorCode::InvalidInput,
            format!(
                "The admin endpoint has no {method} with these parameters; see the admin endpoint's documentation."
            ),
        )),
    }
}

fn stats(store: &MemoryStore, method: &Method) -> Result<Response<Body>, StorageError> {
    if method != Method::GET {
        return Err(StorageError::new(
            405,
            ErrorCode::UnsupportedHttpVerb,
            "GET /_admin reports the store; use GET.",
        ));
    }
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "stats": store.stats(), "shares": store.share_names() }),
    ))
}

/// The JSON body as `T`, strictly: an unknown field is a 400 naming it and the allowed ones.
fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, StorageError> {
    from_json(body, "the request body").map_err(|e| {
        let field = if e.path.is_empty() { "body" } else { &e.path };
        invalid(field, "", &format!("The JSON body is invalid: {e}."))
    })
}

fn invalid(field: &str, value: &str, reason: &str) -> StorageError {
    StorageError::new(400, ErrorCode::InvalidInput, reason.to_owned())
        .with_detail("Field", field)
        .with_detail("Value", value)
}

fn admin_error(e: AdminError) -> StorageError {
    match e {
        AdminError::NoSuchShare(_) => StorageError::share_not_found(),
        AdminError::Invalid(reason) => StorageError::new(400, ErrorCode::InvalidInput, reason),
    }
}
