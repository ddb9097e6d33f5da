//! Reading a request's parameters, each refused with the right 4xx when malformed.

use http::HeaderMap;

use crate::protocol::{
    HandleSelector, MAX_RESULTS_LIMIT, Marker, ServiceVersion, StorageError, VersionSupport,
};

/// A header's value as text, or a 400 naming it when it is not visible ASCII or is repeated
/// (a signature covers the repeated values joined by commas, which the service would not read
/// the way it was signed).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, StorageError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        let joined: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        return Err(StorageError::invalid_header(
            name,
            &joined.join(","),
            "The header is sent more than once; send it once.",
        ));
    }
    match first {
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

/// `x-ms-version`: required; a published service version from 2018-11-09 on, or one newer
/// than every version this build knows (see [`VersionSupport`]).
pub fn version(headers: &HeaderMap) -> Result<ServiceVersion, StorageError> {
    let Some(raw) = header(headers, "x-ms-version")? else {
        return Err(StorageError::missing_header("x-ms-version"));
    };
    let v: ServiceVersion = raw.parse().map_err(|e: crate::protocol::InvalidVersion| {
        StorageError::invalid_header("x-ms-version", raw, &e.to_string())
    })?;
    match v.support() {
        VersionSupport::Published | VersionSupport::Newer => Ok(v),
        VersionSupport::TooOld => Err(StorageError::invalid_header(
            "x-ms-version",
            raw,
            "List Handles and Force Close Handles exist from version 2018-11-09 on.",
        )),
        VersionSupport::Unpublished => Err(StorageError::invalid_header(
            "x-ms-version",
            raw,
            "This is not a published service version.",
        )),
    }
}

/// Refuses a query that names a parameter twice (names compare case-insensitively): a Shared
/// Key signature covers the values sorted, so their order, which decides the one the service
/// reads, is not signed.
pub fn check_unique_query(q: &[(String, String)]) -> Result<(), StorageError> {
    for (i, (name, _)) in q.iter().enumerate() {
        if q[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            // The value is left out: it may be a SAS signature.
            return Err(StorageError::new(
                400,
                crate::protocol::ErrorCode::InvalidQueryParameterValue,
                "Value for one of the query parameters specified in the request URI is invalid. The query parameter is sent more than once; send it once.",
            )
            .with_detail("QueryParameterName", name));
        }
    }
    Ok(())
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
    fn versions_published_or_newer() {
        let mut h = HeaderMap::new();
        for ok in [
            "2018-11-09",
            "2019-02-02",
            "2025-11-05",
            "2026-10-06",
            "2031-01-01",
        ] {
            h.insert("x-ms-version", ok.parse().unwrap());
            assert_eq!(version(&h).unwrap().to_string(), ok);
        }
        for bad in [
            "2025-02-30",
            "2025-11-06",
            "2018-03-28",
            "yesterday",
            "2025-1-05",
        ] {
            h.insert("x-ms-version", bad.parse().unwrap());
            let err = version(&h).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidHeaderValue"),
                "{bad}"
            );
            assert_eq!(err.detail("HeaderName"), Some("x-ms-version"));
            assert_eq!(err.detail("HeaderValue"), Some(bad));
        }
        h.remove("x-ms-version");
        assert_eq!(
            version(&h).unwrap_err().code.as_str(),
            "MissingRequiredHeader"
        );
    }

    #[test]
    fn repeated_headers_and_parameters_are_refused() {
        let mut h = HeaderMap::new();
        h.append("x-ms-handle-id", "*".parse().unwrap());
        assert_eq!(header(&h, "x-ms-handle-id").unwrap(), Some("*"));
        h.append("x-ms-handle-id", "5".parse().unwrap());
        let err = header(&h, "x-ms-handle-id").unwrap_err();
        assert_eq!(err.detail("HeaderValue"), Some("*,5"));
        assert!(check_unique_query(&q("comp=listhandles&marker=a")).is_ok());
        let err = check_unique_query(&q("marker=a&comp=listhandles&MARKER=b")).unwrap_err();
        assert_eq!(err.detail("QueryParameterName"), Some("MARKER"));
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
