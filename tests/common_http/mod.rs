//! Raw HTTP/1.1 over real sockets for the handle service's tests: Shared Key signed request
//! bytes, and a blocking exchange that returns the status and the raw answer.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use share_hygiene::auth::{AccountKey, RequestView, shared_key_string_to_sign, sign};

/// The account the tests' services pose as.
pub const ACCOUNT: &str = "acct";

/// The status code of a raw answer (0 when there is none).
pub fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Sends raw bytes and returns the status line's code and the raw answer.
pub fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    (status(&text), text)
}

/// A signed request for `method` and `target` with extra headers, as raw bytes.
pub fn signed(
    key: &AccountKey,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-ms-date", date.parse().unwrap());
    headers.insert("x-ms-version", "2025-11-05".parse().unwrap());
    for (k, v) in extra {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
    if !body.is_empty() {
        headers.insert("content-length", body.len().to_string().parse().unwrap());
    }
    let decoded = share_hygiene::auth::parse_query(query).unwrap_or_default();
    let view = RequestView {
        method,
        raw_path: path,
        query: &decoded,
        headers: &headers,
    };
    let sts = shared_key_string_to_sign(&view, ACCOUNT, path);
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n")
        .into_bytes();
    for (k, v) in &headers {
        out.extend_from_slice(format!("{k}: {}\r\n", v.to_str().unwrap()).as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Authorization: SharedKey {ACCOUNT}:{}\r\n\r\n",
            sign(key, &sts)
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}
