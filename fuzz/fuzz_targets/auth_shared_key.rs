//! Shared Key verification of a request: the `Authorization` header, the date headers and the
//! string-to-sign over every header and query parameter.
//!
//! Input, one item a line: `signed` or anything else; the method; the raw path; the raw query;
//! then `name: value` headers. With `signed`, the harness signs the request with the account
//! key first, so the fuzzer reaches past the signature check, and checks that a correctly
//! signed request is never refused for its signature (only, say, for its date).
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use share_hygiene::auth::{
    AccountKey, RequestView, parse_query, shared_key_string_to_sign, sign, verify_shared_key,
};

const ACCOUNT: &str = "devstoreaccount1";
/// 2027-01-15T08:00:00Z, `Fri, 15 Jan 2027 08:00:00 GMT` in the seeds' date headers.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let signed = lines.next() == Some("signed");
    let method = lines.next().unwrap_or("GET");
    let raw_path = lines.next().unwrap_or("/");
    let Ok(query) = parse_query(lines.next().unwrap_or("")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim().as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let key = AccountKey::from_base64("a2V5LWZvci1mdXp6aW5nLW9ubHk=").unwrap();
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    if signed {
        headers.remove(http::header::AUTHORIZATION);
        let view = RequestView {
            method,
            raw_path,
            query: &query,
            headers: &headers,
        };
        let sig = sign(&key, &shared_key_string_to_sign(&view, ACCOUNT, raw_path));
        let value = HeaderValue::from_str(&format!("SharedKey {ACCOUNT}:{sig}")).unwrap();
        headers.insert(http::header::AUTHORIZATION, value);
    }
    let view = RequestView {
        method,
        raw_path,
        query: &query,
        headers: &headers,
    };
    for debug in [false, true] {
        let result = verify_shared_key(&view, ACCOUNT, &key, now, debug);
        if signed && let Err(e) = &result {
            // Not `{e}`: with `debug` the detail holds the whole string-to-sign.
            assert!(
                !e.detail.starts_with("The MAC signature"),
                "a correctly signed request failed its signature check"
            );
        }
    }
});
