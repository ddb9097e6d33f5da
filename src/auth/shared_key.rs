//! Shared Key: the string-to-sign, signing, and verification on the server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use super::{AccountKey, AuthError, CLOCK_SKEW, RequestView};

/// The standard headers whose values fill the fixed slots of the string-to-sign, in order.
const FIXED_SLOTS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The Shared Key string-to-sign of `req` for `account`.
///
/// `resource_path` is the URL path that follows `/{account}` in the canonicalized resource:
/// the raw request path as sent. For path-style endpoints (`/{account}/{share}/...`) this gives
/// the doubled form `/{account}/{account}/{share}/...` that every official SDK signs.
pub fn shared_key_string_to_sign(
    req: &RequestView<'_>,
    account: &str,
    resource_path: &str,
) -> String {
    let mut sts = String::with_capacity(256);
    sts.push_str(req.method);
    sts.push('\n');
    for slot in FIXED_SLOTS {
        let value = req.header(slot).unwrap_or("").trim();
        // Since 2015-02-21 a zero Content-Length is signed as empty.
        if !(slot == "content-length" && value == "0") {
            sts.push_str(value);
        }
        sts.push('\n');
    }
    let mut ms_headers: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers {
        let name = name.as_str(); // `http` keeps header names lowercase.
        if !name.starts_with("x-ms-") {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
        match ms_headers.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => ms_headers.push((name.to_owned(), value)),
        }
    }
    ms_headers.sort();
    for (name, value) in &ms_headers {
        sts.push_str(name);
        sts.push(':');
        sts.push_str(value);
        sts.push('\n');
    }
    sts.push('/');
    sts.push_str(account);
    sts.push_str(resource_path);
    let mut params: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in req.query {
        let name = name.to_ascii_lowercase();
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => params.push((name, vec![value])),
        }
    }
    params.sort();
    for (name, mut values) in params {
        values.sort_unstable();
        sts.push('\n');
        sts.push_str(&name);
        sts.push(':');
        sts.push_str(&values.join(","));
    }
    sts
}

/// The base64 HMAC-SHA256 of `string_to_sign` under `key`.
pub fn sign(key: &AccountKey, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn signature_matches(key: &AccountKey, string_to_sign: &str, signature: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(signature).is_ok()
}

/// Verifies a `SharedKey` `Authorization` header for `account` and `key` at time `now`.
///
/// The signature must cover exactly one canonicalized resource: `/{account}{raw path}`, what
/// every SDK signs, host-style or path-style (for path-style endpoints the doubled
/// `/{account}/{account}/{share}/...`). No other form is tried: accepting a second one would let
/// a signature made for one path reach the resource of another (`/demo/projects/x`, signed as
/// `/demo/demo/projects/x`, would also authorize the path `/demo/demo/projects/x` read as the
/// single-account form). The caller routes the raw path by the service's one addressing style,
/// so the signed path names one resource. With `debug`, a signature mismatch reports the
/// server's string-to-sign.
pub fn verify_shared_key(
    req: &RequestView<'_>,
    account: &str,
    key: &AccountKey,
    now: Timestamp,
    debug: bool,
) -> Result<(), AuthError> {
    let auth = req.header("authorization").unwrap_or("");
    let Some(credential) = auth.strip_prefix("SharedKey ") else {
        return Err(AuthError::authentication(
            "The Authorization header is not of the form 'SharedKey account:signature'.",
        ));
    };
    let (claimed_account, signature) = credential.trim().split_once(':').unwrap_or(("", ""));
    if claimed_account != account {
        return Err(AuthError::authentication(format!(
            "The account {claimed_account:?} in the Authorization header is not this service's account."
        )));
    }
    let Ok(signature_bytes) = STANDARD.decode(signature) else {
        return Err(AuthError::authentication(
            "The signature in the Authorization header is not valid base64.",
        ));
    };
    check_request_date(req, now)?;

    let string_to_sign = shared_key_string_to_sign(req, account, req.raw_path);
    if signature_matches(key, &string_to_sign, &signature_bytes) {
        return Ok(());
    }
    let mut detail = format!(
        "The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature."
    );
    if debug {
        detail.push_str(&format!(
            " Server used following string to sign: '{string_to_sign}'."
        ));
    }
    Err(AuthError::authentication(detail))
}

/// Shared Key requests must carry `x-ms-date` (or `Date`) within the clock-skew window.
fn check_request_date(req: &RequestView<'_>, now: Timestamp) -> Result<(), AuthError> {
    let Some(raw) = req.header("x-ms-date").or_else(|| req.header("date")) else {
        return Err(AuthError::authentication(
            "Request date header not specified (x-ms-date or Date is required with Shared Key).",
        ));
    };
    let Ok(st) = httpdate::parse_http_date(raw) else {
        return Err(AuthError::authentication(format!(
            "The request date {raw:?} is not an RFC 1123 date."
        )));
    };
    let Ok(date) = Timestamp::try_from(st) else {
        return Err(AuthError::authentication(format!(
            "The request date {raw:?} is out of range."
        )));
    };
    let skew = now.duration_since(date).unsigned_abs();
    if skew > CLOCK_SKEW {
        return Err(AuthError::authentication(format!(
            "Request date header too old or too far in the future: '{raw}' (the server's time is {}; at most 15 minutes apart).",
            httpdate::fmt_http_date(std::time::SystemTime::from(now))
        )));
    }
    Ok(())
}
