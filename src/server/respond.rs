//! Building responses: the headers every answer carries, success bodies, and error bodies.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use jiff::Timestamp;

use crate::protocol::{ServiceVersion, StorageError, encode_error};

/// The response body type of the service.
pub type Body = Full<Bytes>;

/// What the service names itself in `Server`.
pub const SERVER: &str = concat!(
    "share-hygiene/",
    env!("CARGO_PKG_VERSION"),
    " (Azure Files handle API)"
);

/// Per-request values echoed into every response.
pub struct Echo {
    /// Our `x-ms-request-id`.
    pub request_id: String,
    /// The client's `x-ms-client-request-id`, echoed.
    pub client_request_id: Option<HeaderValue>,
    /// The version to answer with: the request's, or our default when it sent none or a bad one.
    pub version: ServiceVersion,
}

/// Adds `x-ms-request-id`, `x-ms-version`, `x-ms-client-request-id`, `Date` and `Server`.
pub fn standard_headers(resp: &mut Response<Body>, echo: &Echo) {
    let h = resp.headers_mut();
    h.insert(
        "x-ms-request-id",
        HeaderValue::from_str(&echo.request_id).expect("uuid is ASCII"),
    );
    h.insert(
        "x-ms-version",
        HeaderValue::from_str(&echo.version.to_string()).expect("ASCII"),
    );
    if let Some(id) = &echo.client_request_id {
        h.insert("x-ms-client-request-id", id.clone());
    }
    let date = crate::protocol::format_rfc1123(Timestamp::now());
    h.insert(header::DATE, HeaderValue::from_str(&date).expect("ASCII"));
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
}

/// A 200 with an XML body.
pub fn xml(body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// A response with a JSON body.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).expect("plain data serializes");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 with an empty body.
pub fn empty() -> Response<Body> {
    Response::new(Full::new(Bytes::new()))
}

/// The error response the service sends: status, `x-ms-error-code`, the message as the
/// reason phrase, and the XML `Error` body.
pub fn error(err: &StorageError, request_id: &str) -> Response<Body> {
    let body = encode_error(err, request_id, Timestamp::now());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(code) = HeaderValue::from_str(err.code.as_str()) {
        h.insert("x-ms-error-code", code);
    }
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason_phrase(&err.message)) {
        resp.extensions_mut().insert(reason);
    }
    resp
}

/// The message as a valid reason phrase: visible ASCII and spaces only.
fn reason_phrase(message: &str) -> Vec<u8> {
    message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c as u8
            } else {
                b' '
            }
        })
        .take(512)
        .collect()
}
