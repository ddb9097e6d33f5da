//! Reading a request: where it goes (path-style or host-style, handles or admin) and its
//! parameters, each refused with the right 4xx when malformed.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::protocol::{HandleSelector, MAX_RESULTS_LIMIT, Marker, ServiceVersion, StorageError};

/// The path prefix of the admin endpoint. Account and share names cannot contain `_`, so it
/// cannot collide with either.
pub const ADMIN_SEGMENT: &str = "_admin";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The handle APIs on a share, directory or file.
    Handles {
        /// The share.
        share: String,
        /// The decoded path below the share, `/`-separated.
        path: String,
    },
    /// The admin endpoint; the decoded segments after `_admin`.
    Admin(Vec<String>),
}

/// Routes a request path. Host-style when the `Host` starts with `{account}.`; otherwise
/// path-style, whose first segment must be the account.
pub fn route(raw_path: &str, host: Option<&str>, account: &str) -> Result<Route, StorageError> {
    let mut segments = Vec::new();
    for raw in raw_path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode_str(raw).decode_utf8().map_err(|_| {
            StorageError::new(
                400,
                crate::protocol::ErrorCode::InvalidUri,
                format!(
                    "The request URI is invalid: path segment {raw:?} is not percent-encoded UTF-8."
                ),
            )
        })?;
        segments.push(seg.into_owned());
    }
    let host_style = host
        .map(|h| h.split(':').next().unwrap_or(h))
        .and_then(|h| h.split_once('.'))
        .is_some_and(|(first, _)| first == account);
    if !host_style {
        if segments.first().map(String::as_str) != Some(account) {
            return Err(StorageError::new(
                400,
                crate::protocol::ErrorCode::InvalidUri,
                format!(
                    "The request URI is invalid: path-style requests start with /{account}/ (this service serves account {account:?})."
                ),
            ));
        }
        segments.remove(0);
    }
    let mut rest = segments.into_iter();
    match rest.next() {
        Some(first) if first == ADMIN_SEGMENT => Ok(Route::Admin(rest.collect())),
        Some(share) => Ok(Route::Handles {
            share,
            path: rest.collect::<Vec<_>>().join("/"),
        }),
        None => Err(StorageError::new(
            400,
            crate::protocol::ErrorCode::InvalidUri,
            "The request URI is invalid: it names no share.",
        )),
    }
}

/// A header's value as text, or a 400 naming it when it is not visible ASCII.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, StorageError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            StorageError::invalid_header(
                name,
                &String::from_utf8_lossy(v.as_bytes()),
                "The value is not ASCII.",
            )
        }),
    }
}

/// `x-ms-version`: required, `YYYY-MM-DD`, 2018-11-09 or later.
pub fn version(headers: &HeaderMap) -> Result<ServiceVersion, StorageError> {
    let Some(raw) = header(headers, "x-ms-version")? else {
        return Err(StorageError::missing_header("x-ms-version"));
    };
    let v: ServiceVersion = raw.parse().map_err(|e: crate::protocol::InvalidVersion| {
        StorageError::invalid_header("x-ms-version", raw, &e.to_string())
    })?;
    if v < ServiceVersion::V2018_11_09 {
        return Err(StorageError::invalid_header(
            "x-ms-version",
            raw,
            "List Handles and Force Close Handles exist from version 2018-11-09 on.",
        ));
    }
    Ok(v)
}

/// A boolean header (`true`/`false`, any case), `None` when absent.
pub fn bool_header(headers: &HeaderMap, name: &str) -> Result<Option<bool>, StorageError> {
    match header(headers, name)? {
        None => Ok(None),
        Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(StorageError::invalid_header(
            name,
            v,
            "Expected true or false.",
        )),
    }
}

/// `x-ms-handle-id`: required for Force Close Handles.
pub fn handle_selector(headers: &HeaderMap) -> Result<HandleSelector, StorageError> {
    let Some(raw) = header(headers, "x-ms-handle-id")? else {
        return Err(StorageError::missing_header("x-ms-handle-id"));
    };
    raw.parse()
        .map_err(|e: crate::protocol::InvalidHandleSelector| {
            StorageError::invalid_header("x-ms-handle-id", raw, &e.to_string())
        })
}

/// The first value of a query parameter.
pub fn query<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `maxresults`: a whole number from 1 to 5,000.
pub fn max_results(q: &[(String, String)]) -> Result<Option<u32>, StorageError> {
    let Some(raw) = query(q, "maxresults") else {
        return Ok(None);
    };
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StorageError::invalid_query(
            "maxresults",
            raw,
            "Expected a whole number from 1 to 5000.",
        ));
    }
    match raw.parse::<i64>() {
        Ok(n) if (1..=i64::from(MAX_RESULTS_LIMIT)).contains(&n) => Ok(Some(n as u32)),
        _ => Err(StorageError::out_of_range_query(
            "maxresults",
            raw,
            1,
            MAX_RESULTS_LIMIT,
        )),
    }
}

/// `marker`: absent or empty means the first page.
pub fn marker(q: &[(String, String)]) -> Option<Marker> {
    query(q, "marker")
        .filter(|m| !m.is_empty())
        .map(Marker::new)
}

/// `timeout`: seconds, a whole number when present. We answer well within any timeout, so the
/// value is only checked.
pub fn check_timeout(q: &[(String, String)]) -> Result<(), StorageError> {
    match query(q, "timeout") {
        Some(raw) if raw.parse::<u32>().is_err() => Err(StorageError::invalid_query(
            "timeout",
            raw,
            "Expected a whole number of seconds.",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        crate::auth::parse_query(s).unwrap()
    }

    #[test]
    fn routes_path_and_host_style() {
        assert_eq!(
            route(
                "/acct/share/dir%201/f%C3%A9.txt",
                Some("127.0.0.1:1"),
                "acct"
            )
            .unwrap(),
            Route::Handles {
                share: "share".into(),
                path: "dir 1/fé.txt".into()
            }
        );
        assert_eq!(
            route("/share", Some("acct.file.core.windows.net"), "acct").unwrap(),
            Route::Handles {
                share: "share".into(),
                path: String::new()
            }
        );
        assert_eq!(
            route("/acct/_admin/x", None, "acct").unwrap(),
            Route::Admin(vec!["x".into()])
        );
        for bad in ["/other/share", "/acct", "/acct/share/%FF"] {
            let err = route(bad, None, "acct").unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidUri"),
                "{bad}"
            );
        }
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(max_results(&q("maxresults=1")).unwrap(), Some(1));
        assert_eq!(max_results(&q("maxresults=5000")).unwrap(), Some(5000));
        assert_eq!(max_results(&q("")).unwrap(), None);
        for (raw, code) in [
            ("0", "OutOfRangeQueryParameterValue"),
            ("5001", "OutOfRangeQueryParameterValue"),
            ("-3", "OutOfRangeQueryParameterValue"),
            ("99999999999999999999", "OutOfRangeQueryParameterValue"),
            ("ten", "InvalidQueryParameterValue"),
            ("", "InvalidQueryParameterValue"),
            ("1.5", "InvalidQueryParameterValue"),
        ] {
            let err = max_results(&q(&format!("maxresults={raw}"))).unwrap_err();
            assert_eq!(err.code.as_str(), code, "{raw}");
            assert_eq!(err.detail("QueryParameterName"), Some("maxresults"));
        }
    }

    #[test]
    fn booleans_any_case() {
        let mut h = HeaderMap::new();
        h.insert("x-ms-recursive", "True".parse().unwrap());
        assert_eq!(bool_header(&h, "x-ms-recursive").unwrap(), Some(true));
        h.insert("x-ms-recursive", "yes".parse().unwrap());
        let err = bool_header(&h, "x-ms-recursive").unwrap_err();
        assert_eq!(err.detail("HeaderName"), Some("x-ms-recursive"));
        assert_eq!(err.detail("HeaderValue"), Some("yes"));
    }
}
