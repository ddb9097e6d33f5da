//! Shared access signatures: service SAS (share or file) and account SAS, verified on the
//! server.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use super::{AccountKey, AuthError, AuthErrorKind, CLOCK_SKEW, RequestView};

/// The operation a SAS must permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// List Handles: needs `r` or `l`.
    List,
    /// Force Close Handles: needs `w`.
    Close,
    /// Get File / Directory Properties: needs `r`.
    Read,
}

/// What the request addresses, for the SAS's canonicalized resource.
#[derive(Debug, Clone, Copy)]
pub struct SasResource<'a> {
    /// The account the service serves.
    pub account: &'a str,
    /// The share the request addresses.
    pub share: &'a str,
    /// The decoded path below the share (empty for the root).
    pub path: &'a str,
    /// Whether the request arrived over TLS.
    pub https: bool,
    /// The client's address, for `sip`.
    pub client_ip: Option<IpAddr>,
}

/// Whether the request authenticates with a SAS (it carries `sig`).
pub fn is_sas_request(req: &RequestView<'_>) -> bool {
    req.query_value("sig").is_some()
}

/// Verifies the SAS in the request's query for `op` on `res`, at time `now`.
pub fn verify_sas(
    req: &RequestView<'_>,
    res: &SasResource<'_>,
    key: &AccountKey,
    op: Operation,
    now: Timestamp,
) -> Result<(), AuthError> {
    let q = |name: &str| req.query_value(name).unwrap_or("");
    let required = |name: &str| {
        req.query_value(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AuthError::authentication(format!("The SAS has no '{name}' parameter.")))
    };
    let sv = required("sv")?;
    let sig = required("sig")?;
    if !q("si").is_empty() {
        return Err(AuthError::authentication(
            "The SAS names a stored access policy ('si'); this service does not support stored access policies.",
        ));
    }
    let se = required("se")?;
    if sv < "2015-04-05" {
        return Err(AuthError::authentication(format!(
            "The SAS version sv={sv} is older than 2015-04-05, which this service does not support."
        )));
    }

    let account_sas = req.query_value("ss").is_some();
    let string_to_sign = if account_sas {
        if !q("ss").contains('f') {
            return Err(AuthError::new(
                AuthErrorKind::ServiceMismatch,
                format!(
                    "The account SAS is not valid for the file service (ss={}).",
                    q("ss")
                ),
            ));
        }
        if !q("srt").contains('c') && !q("srt").contains('o') {
            return Err(AuthError::new(
                AuthErrorKind::ResourceTypeMismatch,
                format!(
                    "The account SAS does not cover containers or objects (srt={}).",
                    q("srt")
                ),
            ));
        }
        let mut sts = [
            res.account,
            q("sp"),
            q("ss"),
            q("srt"),
            q("st"),
            se,
            q("sip"),
            q("spr"),
            sv,
        ]
        .join("\n");
        sts.push('\n');
        if sv >= "2020-12-06" {
            sts.push_str(q("ses"));
            sts.push('\n');
        }
        sts
    } else {
        let resource = match q("sr") {
            "s" => format!("/file/{}/{}", res.account, res.share),
            "f" => format!("/file/{}/{}/{}", res.account, res.share, res.path),
            other => {
                return Err(AuthError::authentication(format!(
                    "The SAS resource sr={other:?} is not 's' (share) or 'f' (file)."
                )));
            }
        };
        [
            q("sp"),
            q("st"),
            se,
            &resource,
            q("si"),
            q("sip"),
            q("spr"),
            sv,
            q("rscc"),
            q("rscd"),
            q("rsce"),
            q("rscl"),
            q("rsct"),
        ]
        .join("\n")
    };

    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    let valid = STANDARD
        .decode(sig)
        .is_ok_and(|s| mac.verify_slice(&s).is_ok());
    if !valid {
        return Err(AuthError::authentication(
            "Signature did not match. The SAS was not signed by this account's key for this resource.",
        ));
    }

    check_time_window(q("st"), se, now)?;
    if q("spr") == "https" && !res.https {
        return Err(AuthError::new(
            AuthErrorKind::ProtocolMismatch,
            "The SAS allows https only (spr=https) and the request came over http.",
        ));
    }
    check_source_ip(q("sip"), res.client_ip)?;

    let sp = q("sp");
    let permitted = match op {
        Operation::List => sp.contains('r') || sp.contains('l'),
        Operation::Close => sp.contains('w'),
        Operation::Read => sp.contains('r'),
    };
    if !permitted {
        let need = match op {
            Operation::List => "'r' or 'l' (List Handles)",
            Operation::Close => "'w' (Force Close Handles)",
            Operation::Read => "'r' (Get File or Directory Properties)",
        };
        return Err(AuthError::new(
            AuthErrorKind::PermissionMismatch,
            format!("The SAS permissions sp={sp} lack {need}."),
        ));
    }
    Ok(())
}

fn parse_sas_time(field: &str, value: &str) -> Result<Timestamp, AuthError> {
    let parsed = value.parse::<Timestamp>().ok().or_else(|| {
        value
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    });
    parsed.ok_or_else(|| {
        AuthError::authentication(format!(
            "The SAS time {field}={value:?} is not an ISO 8601 UTC time."
        ))
    })
}

fn check_time_window(st: &str, se: &str, now: Timestamp) -> Result<(), AuthError> {
    let expiry = parse_sas_time("se", se)?;
    let start = if st.is_empty() {
        None
    } else {
        Some(parse_sas_time("st", st)?)
    };
    let skew = jiff::SignedDuration::try_from(CLOCK_SKEW).expect("15 minutes fits");
    let early = start.is_some_and(|s| now.checked_add(skew).is_ok_and(|n| n < s));
    if now > expiry || early {
        return Err(AuthError::authentication(format!(
            "Signature not valid in the specified time frame: Start [{}] - Expiry [{se}] - Current [{now}]",
            if st.is_empty() { "(none)" } else { st },
        )));
    }
    Ok(())
}

fn check_source_ip(sip: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
    if sip.is_empty() {
        return Ok(());
    }
    let (lo, hi) = sip.split_once('-').unwrap_or((sip, sip));
    let range = lo
        .trim()
        .parse::<IpAddr>()
        .ok()
        .zip(hi.trim().parse::<IpAddr>().ok());
    let Some((lo, hi)) = range else {
        return Err(AuthError::authentication(format!(
            "The SAS address range sip={sip:?} is not an address or 'from-to' range."
        )));
    };
    if client.is_some_and(|c| lo <= c && c <= hi) {
        return Ok(());
    }
    Err(AuthError::new(
        AuthErrorKind::SourceIpMismatch,
        format!("The request's source address is outside the SAS address range sip={sip}."),
    ))
}
