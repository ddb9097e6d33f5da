//! Shared Key and SAS against vectors the official Azure Files Python SDK computed
//! (`tests/fixtures/signing/vectors.json`, written by `make_vectors.py` beside it).
//!
//! * Shared Key: our string-to-sign and signature equal the SDK's for every request it sent
//!   (path-style and host-style endpoints, GET and PUT, marker/maxresults/timeout/sharesnapshot,
//!   x-ms-recursive/x-ms-handle-id/x-ms-file-request-intent, percent-encoded non-ASCII paths);
//!   `verify_shared_key` accepts each request within the clock skew and refuses it once a header,
//!   the query, the path, the key or the date is off.
//! * SAS: `verify_sas` accepts each SDK token for exactly the operations its permissions allow
//!   and refuses expired, early, tampered and misapplied tokens.
//! * Secrets: no error detail holds the key or a SAS signature; the string-to-sign shows only
//!   in debug mode.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use share_hygiene::auth::{
    AccountKey, AuthError, AuthErrorKind, CLOCK_SKEW, Operation, RequestView, SasResource,
    is_sas_request, parse_query, shared_key_string_to_sign, sign, verify_sas, verify_shared_key,
};
use share_hygiene::protocol::parse_rfc1123;

const VECTORS: &str = include_str!("fixtures/signing/vectors.json");

#[derive(Deserialize)]
struct Vectors {
    sdk: std::collections::BTreeMap<String, String>,
    account: String,
    account_key_base64: String,
    sas_start: String,
    sas_expiry: String,
    shared_key: Vec<SharedKeyVector>,
    sas: Vec<SasVector>,
}

#[derive(Deserialize)]
struct SharedKeyVector {
    name: String,
    endpoint_style: String,
    method: String,
    url: String,
    raw_path: String,
    raw_query: String,
    headers: Vec<(String, String)>,
    string_to_sign: String,
    authorization: String,
}

#[derive(Deserialize)]
struct SasVector {
    name: String,
    kind: String,
    token: String,
    string_to_sign: String,
    share: String,
    path: String,
    allows: Vec<String>,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("vectors.json parses")
}

fn key(v: &Vectors) -> AccountKey {
    AccountKey::from_base64(&v.account_key_base64).unwrap()
}

/// Another valid key: the emulator key with its first byte changed.
fn wrong_key(v: &Vectors) -> AccountKey {
    let mut b64 = v.account_key_base64.clone().into_bytes();
    b64[0] = if b64[0] == b'A' { b'B' } else { b'A' };
    AccountKey::from_base64(std::str::from_utf8(&b64).unwrap()).unwrap()
}

/// A request as a server sees it: headers, the raw path, the decoded query.
struct Request {
    method: String,
    raw_path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

impl Request {
    fn from_vector(v: &SharedKeyVector) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &v.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Self {
            method: v.method.clone(),
            raw_path: v.raw_path.clone(),
            query: parse_query(&v.raw_query).unwrap(),
            headers,
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            raw_path: &self.raw_path,
            query: &self.query,
            headers: &self.headers,
        }
    }

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
    }

    fn date(&self) -> Timestamp {
        let raw = self.headers["x-ms-date"].to_str().unwrap();
        parse_rfc1123(raw).unwrap()
    }
}

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

#[track_caller]
fn assert_no_secret(err: &AuthError, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !err.detail.contains(s) && !err.to_string().contains(s),
            "error detail leaks a secret: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The vector file itself.
// ---------------------------------------------------------------------------------------------

#[test]
fn vector_file_covers_what_it_promises() {
    let v = vectors();
    assert_eq!(v.sdk["azure-storage-file-share"], "12.27.1");
    assert_eq!(v.account, "devstoreaccount1");
    let sk = &v.shared_key;
    let has = |f: &dyn Fn(&SharedKeyVector) -> bool| sk.iter().any(f);
    let header = |s: &SharedKeyVector, name: &str| {
        s.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert!(has(
        &|s| s.endpoint_style == "path" && s.raw_path.starts_with("/devstoreaccount1/")
    ));
    assert!(has(&|s| s.endpoint_style == "host"
        && s.url.starts_with(
            "https://devstoreaccount1.file.core.windows.net/"
        )));
    for param in ["marker=", "maxresults=", "timeout=", "sharesnapshot="] {
        assert!(has(&|s| s.raw_query.contains(param)), "{param}");
    }
    for name in [
        "x-ms-recursive",
        "x-ms-handle-id",
        "x-ms-file-request-intent",
    ] {
        assert!(has(&|s| header(s, name).is_some()), "{name}");
    }
    assert!(has(&|s| s.method == "GET"));
    assert!(has(
        &|s| s.method == "PUT" && header(s, "content-length").as_deref() == Some("0")
    ));
    assert!(has(
        &|s| s.raw_path.contains("%20") && s.raw_path.contains("%C3%")
    ));
    for kind in ["share", "file", "account"] {
        assert!(v.sas.iter().any(|s| s.kind == kind), "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Shared Key.
// ---------------------------------------------------------------------------------------------

#[test]
fn string_to_sign_and_signature_match_the_sdk() {
    let v = vectors();
    let key = key(&v);
    for vec in &v.shared_key {
        let mut req = Request::from_vector(vec);
        // The client signs before it has an Authorization header.
        req.headers.remove("authorization");
        let sts = shared_key_string_to_sign(&req.view(), &v.account, &vec.raw_path);
        assert_eq!(sts, vec.string_to_sign, "{}", vec.name);
        let auth = format!("SharedKey {}:{}", v.account, sign(&key, &sts));
        assert_eq!(auth, vec.authorization, "{}", vec.name);
        // The canonicalized resource is /{account} + the path exactly as sent; for path-style
        // endpoints that names the account twice.
        let resource = format!("\n/{}{}", v.account, vec.raw_path);
        assert!(vec.string_to_sign.contains(&resource), "{}", vec.name);
        if vec.endpoint_style == "path" {
            assert!(
                vec.string_to_sign
                    .contains(&format!("\n/{0}/{0}/", v.account)),
                "{}",
                vec.name
            );
        }
    }
}

#[test]
fn signing_ignores_header_order_and_name_case() {
    let v = vectors();
    for vec in &v.shared_key {
        let mut reversed = HeaderMap::new();
        for (name, value) in vec.headers.iter().rev() {
            reversed.append(
                HeaderName::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let req = Request::from_vector(vec);
        let view = RequestView {
            headers: &reversed,
            ..req.view()
        };
        assert_eq!(
            shared_key_string_to_sign(&view, &v.account, &vec.raw_path),
            vec.string_to_sign,
            "{}",
            vec.name
        );
    }
}

#[test]
fn verify_accepts_every_vector_within_the_clock_skew() {
    let v = vectors();
    let key = key(&v);
    let skew = SignedDuration::try_from(CLOCK_SKEW).unwrap();
    for vec in &v.shared_key {
        let req = Request::from_vector(vec);
        let date = req.date();
        for now in [
            date,
            date + minutes(1),
            date - minutes(1),
            date + minutes(14),
            date - minutes(14),
            date + skew,
            date - skew,
        ] {
            for debug in [false, true] {
                verify_shared_key(&req.view(), &v.account, &key, now, debug)
                    .unwrap_or_else(|e| panic!("{} at {now}: {e}", vec.name));
            }
        }
    }
}

#[test]
fn verify_refuses_a_date_more_than_15_minutes_off() {
    let v = vectors();
    let key = key(&v);
    let skew = SignedDuration::try_from(CLOCK_SKEW).unwrap();
    for vec in &v.shared_key {
        let req = Request::from_vector(vec);
        let date = req.date();
        for now in [
            date + skew + SignedDuration::from_secs(1),
            date - skew - SignedDuration::from_secs(1),
            date + minutes(60 * 24),
            date - minutes(60 * 24 * 365),
        ] {
            let err = verify_shared_key(&req.view(), &v.account, &key, now, true)
                .expect_err(&format!("{} at {now}", vec.name));
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
            assert!(err.detail.contains("15 minutes"), "{err}");
            assert_no_secret(&err, &[&v.account_key_base64]);
        }
    }
}

#[test]
fn verify_refuses_a_missing_or_malformed_date() {
    let v = vectors();
    let key = key(&v);
    let vec = &v.shared_key[0];
    let mut req = Request::from_vector(vec);
    let now = req.date();
    req.headers.remove("x-ms-date");
    let err = verify_shared_key(&req.view(), &v.account, &key, now, false).unwrap_err();
    assert_eq!(err.kind, AuthErrorKind::Authentication);
    req.set("x-ms-date", "2025-03-16T14:07:31Z");
    let err = verify_shared_key(&req.view(), &v.account, &key, now, false).unwrap_err();
    assert!(err.detail.contains("2025-03-16T14:07:31Z"), "{err}");
}

/// A named change to a signed request.
type Tampering = (&'static str, fn(&mut Request));

/// Ways to change a signed request after signing, each of which must void the signature.
fn tamperings() -> Vec<Tampering> {
    vec![
        ("changed x-ms-client-request-id", |r| {
            let id = r.headers["x-ms-client-request-id"].to_str().unwrap();
            let changed = format!("{}0", &id[..id.len() - 1]);
            r.set("x-ms-client-request-id", &changed);
        }),
        ("x-ms-date one second later", |r| {
            let later = r.date() + SignedDuration::from_secs(1);
            r.set("x-ms-date", &share_hygiene::protocol::format_rfc1123(later));
        }),
        ("changed x-ms-version", |r| {
            r.set("x-ms-version", "2019-07-07")
        }),
        ("flipped or added x-ms-recursive", |r| {
            let flipped = match r.headers.get("x-ms-recursive").map(|v| v.as_bytes()) {
                Some(b"true") => "false",
                _ => "true",
            };
            r.set("x-ms-recursive", flipped);
        }),
        ("changed or added x-ms-handle-id", |r| {
            let other = match r.headers.get("x-ms-handle-id").map(|v| v.as_bytes()) {
                Some(b"*") => "1",
                _ => "*",
            };
            r.set("x-ms-handle-id", other);
        }),
        ("added x-ms-file-request-intent or changed it", |r| {
            let other = match r.headers.get("x-ms-file-request-intent") {
                Some(_) => "none",
                None => "backup",
            };
            r.set("x-ms-file-request-intent", other);
        }),
        ("added Content-Type", |r| {
            r.set("content-type", "application/xml")
        }),
        ("non-zero Content-Length", |r| r.set("content-length", "1")),
        ("added Date", |r| {
            r.set("date", "Sun, 16 Mar 2025 14:07:31 GMT")
        }),
        ("added Range", |r| r.set("range", "bytes=0-1")),
        ("changed method", |r| {
            r.method = if r.method == "GET" { "PUT" } else { "GET" }.into();
        }),
        ("changed query value", |r| {
            let (_, v) = r
                .query
                .iter_mut()
                .find(|(n, _)| n == "comp")
                .expect("every vector has comp");
            v.push('x');
        }),
        ("added query parameter", |r| {
            r.query.push(("maxresults".into(), "4999".into()));
        }),
        ("removed query parameter", |r| {
            r.query.retain(|(n, _)| n != "comp");
        }),
        ("changed path", |r| r.raw_path.push_str("%20")),
        ("path decoded", |r| {
            r.raw_path = percent_encoding::percent_decode_str(&r.raw_path)
                .decode_utf8()
                .unwrap()
                .into_owned();
            if !r.raw_path.contains(' ') && !r.raw_path.contains('é') {
                r.raw_path.push('x');
            }
        }),
    ]
}

#[test]
fn verify_refuses_tampered_requests() {
    let v = vectors();
    let key = key(&v);
    for vec in &v.shared_key {
        for (what, tamper) in tamperings() {
            let mut req = Request::from_vector(vec);
            let now = req.date();
            tamper(&mut req);
            let err = verify_shared_key(&req.view(), &v.account, &key, now, false)
                .expect_err(&format!("{}: {what}", vec.name));
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{what}");
            assert_no_secret(&err, &[&v.account_key_base64]);
        }
    }
}

#[test]
fn verify_refuses_a_wrong_key_account_or_scheme() {
    let v = vectors();
    let key = key(&v);
    let wrong = wrong_key(&v);
    for vec in &v.shared_key {
        let mut req = Request::from_vector(vec);
        let now = req.date();
        let err =
            verify_shared_key(&req.view(), &v.account, &wrong, now, false).expect_err(&vec.name);
        assert_eq!(err.kind, AuthErrorKind::Authentication);
        assert_no_secret(&err, &[&v.account_key_base64, &wrong.to_base64()]);
        // Another account name, in the header or on the server.
        let err = verify_shared_key(&req.view(), "otheraccount", &key, now, false).unwrap_err();
        assert_eq!(err.kind, AuthErrorKind::Authentication);
        let signature = vec.authorization.rsplit_once(':').unwrap().1;
        req.set("authorization", &format!("SharedKey other:{signature}"));
        assert!(verify_shared_key(&req.view(), &v.account, &key, now, false).is_err());
        req.set("authorization", &format!("Bearer {signature}"));
        assert!(verify_shared_key(&req.view(), &v.account, &key, now, false).is_err());
        req.set(
            "authorization",
            &format!("SharedKey {}:not base64!", v.account),
        );
        assert!(verify_shared_key(&req.view(), &v.account, &key, now, false).is_err());
        req.headers.remove("authorization");
        assert!(verify_shared_key(&req.view(), &v.account, &key, now, false).is_err());
    }
}

/// One canonicalized resource per request: the single-account form (`/{account}/{share}/...`
/// for a path-style request) is refused, because it is the doubled form of another path: a
/// signature for `/acct/share/x` would otherwise authorize `/acct/acct/share/x`, share `acct`.
#[test]
fn path_style_requests_sign_only_the_doubled_form() {
    let v = vectors();
    let key = key(&v);
    let prefix = format!("/{}", v.account);
    for vec in v.shared_key.iter().filter(|s| s.endpoint_style == "path") {
        let mut req = Request::from_vector(vec);
        let now = req.date();
        let rest = vec.raw_path.strip_prefix(&prefix).unwrap();
        req.headers.remove("authorization");
        let sts = shared_key_string_to_sign(&req.view(), &v.account, rest);
        let auth = format!("SharedKey {}:{}", v.account, sign(&key, &sts));
        req.set("authorization", &auth);
        let err =
            verify_shared_key(&req.view(), &v.account, &key, now, false).expect_err(&vec.name);
        assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
    }
}

#[test]
fn debug_mode_alone_reports_the_string_to_sign() {
    let v = vectors();
    let key = key(&v);
    for vec in &v.shared_key {
        let mut req = Request::from_vector(vec);
        let now = req.date();
        req.set(
            "x-ms-client-request-id",
            "00000000-0000-0000-0000-000000000000",
        );
        let server_sts = shared_key_string_to_sign(&req.view(), &v.account, &vec.raw_path);

        let quiet = verify_shared_key(&req.view(), &v.account, &key, now, false).unwrap_err();
        assert!(!quiet.detail.contains(&server_sts), "{quiet}");
        assert!(!quiet.detail.contains("x-ms-client-request-id"), "{quiet}");
        assert!(!quiet.detail.contains(&vec.raw_path), "{quiet}");

        let loud = verify_shared_key(&req.view(), &v.account, &key, now, true).unwrap_err();
        assert!(
            loud.detail.contains(&format!("'{server_sts}'")),
            "debug detail lacks the string-to-sign: {loud}"
        );
        for err in [&quiet, &loud] {
            assert_eq!(err.kind, AuthErrorKind::Authentication);
            assert_no_secret(err, &[&v.account_key_base64]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SAS.
// ---------------------------------------------------------------------------------------------

fn query_of(token: &str) -> Vec<(String, String)> {
    // A SAS request carries the token plus the operation's own parameters.
    parse_query(&format!("{token}&comp=listhandles")).unwrap()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A request to `token`'s resource, as the server sees it.
struct SasCase<'a> {
    vec: &'a SasVector,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    share: String,
    path: String,
    https: bool,
    client_ip: Option<IpAddr>,
}

impl<'a> SasCase<'a> {
    fn new(vec: &'a SasVector) -> Self {
        let query = query_of(&vec.token);
        let share = if vec.share.is_empty() {
            "any-share".to_owned()
        } else {
            vec.share.clone()
        };
        let path = match vec.kind.as_str() {
            "file" => vec.path.clone(),
            _ => "some dir/below".to_owned(),
        };
        let https = param(&query, "spr") == Some("https");
        let client_ip = match param(&query, "sip") {
            Some(sip) => Some(sip.split('-').next().unwrap().parse().unwrap()),
            None => Some("192.0.2.1".parse().unwrap()),
        };
        Self {
            vec,
            query,
            headers: HeaderMap::new(),
            share,
            path,
            https,
            client_ip,
        }
    }

    fn verify(
        &self,
        v: &Vectors,
        key: &AccountKey,
        op: Operation,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let view = RequestView {
            method: match op {
                Operation::List | Operation::Read => "GET",
                Operation::Close => "PUT",
            },
            raw_path: "/ignored",
            query: &self.query,
            headers: &self.headers,
        };
        assert!(is_sas_request(&view));
        let res = SasResource {
            account: &v.account,
            share: &self.share,
            path: &self.path,
            https: self.https,
            client_ip: self.client_ip,
        };
        let result = verify_sas(&view, &res, key, op, now);
        if let Err(e) = &result {
            let sig = param(&self.query, "sig").unwrap();
            let raw_sig = self
                .vec
                .token
                .split('&')
                .find_map(|p| p.strip_prefix("sig="))
                .unwrap();
            assert_no_secret(e, &[sig, raw_sig, &v.account_key_base64]);
        }
        result
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.query.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.query.push((name.to_owned(), value.to_owned())),
        }
    }
}

fn valid_now(v: &Vectors) -> Timestamp {
    let start: Timestamp = v.sas_start.parse().unwrap();
    start + minutes(90)
}

fn ops() -> [(Operation, &'static str); 2] {
    [(Operation::List, "list"), (Operation::Close, "close")]
}

#[test]
fn sas_signatures_match_the_sdk_string_to_sign() {
    let v = vectors();
    let key = key(&v);
    for vec in &v.sas {
        let q = query_of(&vec.token);
        assert_eq!(
            sign(&key, &vec.string_to_sign),
            param(&q, "sig").unwrap(),
            "{}",
            vec.name
        );
    }
}

#[test]
fn sas_allows_exactly_the_permitted_operations() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    for vec in &v.sas {
        let case = SasCase::new(vec);
        let sp = param(&case.query, "sp").unwrap().to_owned();
        let account_scope_ok = vec.kind != "account"
            || (param(&case.query, "ss").unwrap().contains('f')
                && param(&case.query, "srt").unwrap().contains(['c', 'o']));
        for (op, name) in ops() {
            let result = case.verify(&v, &key, op, now);
            if vec.allows.iter().any(|a| a == name) {
                result.unwrap_or_else(|e| panic!("{} should allow {name}: {e}", vec.name));
            } else {
                let err = result.expect_err(&format!("{} should refuse {name}", vec.name));
                if account_scope_ok {
                    assert_eq!(err.kind, AuthErrorKind::PermissionMismatch, "{}", vec.name);
                    assert!(err.detail.contains(&format!("sp={sp}")), "{err}");
                }
            }
        }
        // The permission rules themselves: list needs r or l, close needs w.
        if account_scope_ok {
            let list_ok = sp.contains('r') || sp.contains('l');
            let close_ok = sp.contains('w');
            assert_eq!(
                vec.allows.iter().any(|a| a == "list"),
                list_ok,
                "{}",
                vec.name
            );
            assert_eq!(
                vec.allows.iter().any(|a| a == "close"),
                close_ok,
                "{}",
                vec.name
            );
        }
    }
}

#[test]
fn sas_refuses_expired_tokens() {
    let v = vectors();
    let key = key(&v);
    let expiry: Timestamp = v.sas_expiry.parse().unwrap();
    for vec in v.sas.iter().filter(|s| !s.allows.is_empty()) {
        let case = SasCase::new(vec);
        let op = if vec.allows[0] == "list" {
            Operation::List
        } else {
            Operation::Close
        };
        case.verify(&v, &key, op, expiry)
            .unwrap_or_else(|e| panic!("{} at its expiry: {e}", vec.name));
        for late in [
            SignedDuration::from_secs(1),
            minutes(16),
            minutes(60 * 24 * 400),
        ] {
            let err = case
                .verify(&v, &key, op, expiry + late)
                .expect_err(&vec.name);
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
            assert!(err.detail.contains("time frame"), "{err}");
        }
    }
}

#[test]
fn sas_refuses_tokens_not_yet_valid() {
    let v = vectors();
    let key = key(&v);
    let start: Timestamp = v.sas_start.parse().unwrap();
    let skew = SignedDuration::try_from(CLOCK_SKEW).unwrap();
    let mut checked = 0;
    for vec in v.sas.iter().filter(|s| !s.allows.is_empty()) {
        let case = SasCase::new(vec);
        if param(&case.query, "st").is_none() {
            continue;
        }
        checked += 1;
        let op = if vec.allows[0] == "list" {
            Operation::List
        } else {
            Operation::Close
        };
        // Within the clock skew of the start: accepted.
        case.verify(&v, &key, op, start - skew)
            .unwrap_or_else(|e| panic!("{}: {e}", vec.name));
        for early in [skew + SignedDuration::from_secs(1), minutes(60 * 24)] {
            let err = case
                .verify(&v, &key, op, start - early)
                .expect_err(&vec.name);
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
            assert!(err.detail.contains("time frame"), "{err}");
        }
    }
    assert!(checked >= 3, "vectors with a start time: {checked}");
}

#[test]
fn sas_refuses_tampered_signatures_and_fields() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    for vec in v.sas.iter().filter(|s| !s.allows.is_empty()) {
        let op = if vec.allows[0] == "list" {
            Operation::List
        } else {
            Operation::Close
        };
        let sig = param(&query_of(&vec.token), "sig").unwrap().to_owned();
        let mut flipped = sig.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let tampered: Vec<(&str, String)> = vec![
            ("sig", flipped),
            ("sig", sig[..sig.len() - 4].to_owned()),
            ("sig", "not base64!".to_owned()),
            ("sp", "rwdl".to_owned()),
            ("se", "2099-12-31T00:00:00Z".to_owned()),
            ("st", "2000-01-01T00:00:00Z".to_owned()),
            ("sv", "2025-01-05".to_owned()),
            ("sip", "0.0.0.0-255.255.255.255".to_owned()),
            ("spr", "https,http".to_owned()),
        ];
        for (field, value) in tampered {
            let mut case = SasCase::new(vec);
            case.https = true;
            case.set(field, &value);
            let err = case
                .verify(&v, &key, op, now)
                .expect_err(&format!("{}: {field}={value}", vec.name));
            assert_eq!(
                err.kind,
                AuthErrorKind::Authentication,
                "{}: {field}",
                vec.name
            );
        }
        // Signed by another key.
        let case = SasCase::new(vec);
        let err = case.verify(&v, &wrong_key(&v), op, now).unwrap_err();
        assert_eq!(err.kind, AuthErrorKind::Authentication);
    }
}

#[test]
fn share_sas_is_bound_to_its_share() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    for vec in v.sas.iter().filter(|s| s.kind == "share") {
        let op = if vec.allows[0] == "list" {
            Operation::List
        } else {
            Operation::Close
        };
        let mut case = SasCase::new(vec);
        // Any path in the share is covered, including the root.
        for path in ["", "a", "deep/er/still.txt"] {
            case.path = path.into();
            case.verify(&v, &key, op, now)
                .unwrap_or_else(|e| panic!("{} on {path:?}: {e}", vec.name));
        }
        for other in [
            "other-share",
            &format!("{}x", vec.share),
            &vec.share.to_uppercase(),
        ] {
            case.share = other.to_owned();
            let err = case.verify(&v, &key, op, now).expect_err(other);
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
        }
    }
}

#[test]
fn file_sas_is_bound_to_its_file() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    for vec in v.sas.iter().filter(|s| s.kind == "file") {
        let op = if vec.allows[0] == "list" {
            Operation::List
        } else {
            Operation::Close
        };
        let case = SasCase::new(vec);
        case.verify(&v, &key, op, now).unwrap();
        let parent = vec.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        for other in [
            format!("{}.bak", vec.path),
            parent.to_owned(),
            String::new(),
            vec.path.to_uppercase(),
            vec.path.replace(' ', "%20"),
        ] {
            if other == vec.path {
                continue;
            }
            let mut case = SasCase::new(vec);
            case.path = other.clone();
            let err = case.verify(&v, &key, op, now).expect_err(&other);
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
        }
        // The same path in another share.
        let mut case = SasCase::new(vec);
        case.share = "other-share".into();
        assert!(case.verify(&v, &key, op, now).is_err());
    }
}

#[test]
fn account_sas_needs_the_file_service_and_container_or_object_scope() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    let mut seen = (false, false, false);
    for vec in v.sas.iter().filter(|s| s.kind == "account") {
        let case = SasCase::new(vec);
        let ss = param(&case.query, "ss").unwrap();
        let srt = param(&case.query, "srt").unwrap();
        for (op, _) in ops() {
            let result = case.verify(&v, &key, op, now);
            if !ss.contains('f') {
                seen.0 = true;
                assert_eq!(result.unwrap_err().kind, AuthErrorKind::ServiceMismatch);
            } else if !srt.contains(['c', 'o']) {
                seen.1 = true;
                assert_eq!(
                    result.unwrap_err().kind,
                    AuthErrorKind::ResourceTypeMismatch
                );
            } else {
                seen.2 = true;
                // Valid in any share and path of the account.
                let mut elsewhere = SasCase::new(vec);
                elsewhere.share = "zz-other".into();
                elsewhere.path = String::new();
                assert_eq!(
                    result.is_ok(),
                    elsewhere.verify(&v, &key, op, now).is_ok(),
                    "{}",
                    vec.name
                );
            }
        }
        // Widening the scope by hand voids the signature.
        if !ss.contains('f') || !srt.contains(['c', 'o']) {
            let mut widened = SasCase::new(vec);
            widened.set("ss", "bf");
            widened.set("srt", "sco");
            let err = widened.verify(&v, &key, Operation::List, now).unwrap_err();
            assert_eq!(err.kind, AuthErrorKind::Authentication, "{}", vec.name);
        }
    }
    assert_eq!(seen, (true, true, true));
}

#[test]
fn sas_protocol_and_source_address_restrictions() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    let https_only = v
        .sas
        .iter()
        .find(|s| s.token.contains("spr=https&") || s.token.ends_with("spr=https"))
        .expect("a vector with spr=https");
    let mut case = SasCase::new(https_only);
    case.verify(&v, &key, Operation::List, now).unwrap();
    case.https = false;
    let err = case.verify(&v, &key, Operation::List, now).unwrap_err();
    assert_eq!(err.kind, AuthErrorKind::ProtocolMismatch);
    case.https = true;
    case.client_ip = Some("127.0.0.2".parse().unwrap());
    let err = case.verify(&v, &key, Operation::List, now).unwrap_err();
    assert_eq!(err.kind, AuthErrorKind::SourceIpMismatch);
    case.client_ip = None;
    assert!(case.verify(&v, &key, Operation::List, now).is_err());

    let ranged = v
        .sas
        .iter()
        .find(|s| s.token.contains("sip=10.20.0.0-10.20.255.255"))
        .expect("a vector with an address range");
    let mut case = SasCase::new(ranged);
    for inside in ["10.20.0.0", "10.20.128.7", "10.20.255.255"] {
        case.client_ip = Some(inside.parse().unwrap());
        case.verify(&v, &key, Operation::List, now)
            .unwrap_or_else(|e| panic!("{inside}: {e}"));
    }
    for outside in ["10.19.255.255", "10.21.0.0", "192.0.2.1", "::1"] {
        case.client_ip = Some(outside.parse().unwrap());
        let err = case
            .verify(&v, &key, Operation::List, now)
            .expect_err(outside);
        assert_eq!(err.kind, AuthErrorKind::SourceIpMismatch, "{outside}");
    }
}

#[test]
fn sas_without_required_parameters_is_refused() {
    let v = vectors();
    let key = key(&v);
    let now = valid_now(&v);
    let vec = &v.sas[0];
    for missing in ["sv", "se", "sig", "sr"] {
        let mut case = SasCase::new(vec);
        case.query.retain(|(n, _)| n != missing);
        if missing == "sig" {
            let view = RequestView {
                method: "GET",
                raw_path: "/",
                query: &case.query,
                headers: &case.headers,
            };
            assert!(!is_sas_request(&view));
            continue;
        }
        let err = case
            .verify(&v, &key, Operation::List, now)
            .expect_err(missing);
        assert_eq!(err.kind, AuthErrorKind::Authentication, "{missing}");
    }
    // A stored access policy is not supported.
    let mut case = SasCase::new(vec);
    case.set("si", "policy-1");
    assert!(case.verify(&v, &key, Operation::List, now).is_err());
}
