//! SAS verification: service SAS (share, file) and account SAS, their times, address ranges,
//! protocols and permissions.
//!
//! Input, one item a line: `signed` or anything else (with ` https` when the request came over
//! TLS); the share; the path; the client's address; the raw query. With `signed`, the harness
//! signs the SAS with the account key (the string-to-sign as Azure documents it, written out
//! again here as an independent check), so the fuzzer reaches the checks after the signature,
//! and a correctly signed SAS must never fail on its signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::auth::{
    AccountKey, Operation, RequestView, SasResource, parse_query, sign, verify_sas,
};

const ACCOUNT: &str = "devstoreaccount1";
/// 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mode = lines.next().unwrap_or("");
    let signed = mode.starts_with("signed");
    let https = mode.ends_with(" https");
    let share = lines.next().unwrap_or("share");
    let path = lines.next().unwrap_or("");
    let client_ip = lines.next().and_then(|ip| ip.parse().ok());
    let Ok(mut query) = parse_query(lines.next().unwrap_or("")) else {
        return;
    };
    let key = AccountKey::from_base64("a2V5LWZvci1mdXp6aW5nLW9ubHk=").unwrap();
    if signed {
        query.retain(|(n, _)| !n.eq_ignore_ascii_case("sig"));
        let sig = sign(&key, &string_to_sign(&query, share, path));
        query.push(("sig".to_owned(), sig));
    }
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: "GET",
        raw_path: "/",
        query: &query,
        headers: &headers,
    };
    let res = SasResource {
        account: ACCOUNT,
        share,
        path,
        https,
        client_ip,
    };
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    for op in [Operation::List, Operation::Close] {
        if let Err(e) = verify_sas(&view, &res, &key, op, now) {
            assert!(
                !(signed && e.detail.starts_with("Signature did not match")),
                "a correctly signed SAS failed its signature check"
            );
        }
    }
});

/// The SAS string-to-sign (service SAS for `sr=s`/`sr=f`, account SAS when `ss` is present).
fn string_to_sign(query: &[(String, String)], share: &str, path: &str) -> String {
    let q = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    };
    let has = |name: &str| query.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if has("ss") {
        let mut fields = vec![
            ACCOUNT,
            q("sp"),
            q("ss"),
            q("srt"),
            q("st"),
            q("se"),
            q("sip"),
        ];
        fields.extend([q("spr"), q("sv"), ""]);
        if q("sv") >= "2020-12-06" {
            fields.pop();
            fields.extend([q("ses"), ""]);
        }
        return fields.join("\n");
    }
    let resource = if q("sr") == "f" {
        format!("/file/{ACCOUNT}/{share}/{path}")
    } else {
        format!("/file/{ACCOUNT}/{share}")
    };
    [
        q("sp"),
        q("st"),
        q("se"),
        &resource,
        q("si"),
        q("sip"),
        q("spr"),
        q("sv"),
        q("rscc"),
        q("rscd"),
        q("rsce"),
        q("rscl"),
        q("rsct"),
    ]
    .join("\n")
}
