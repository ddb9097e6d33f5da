//! How requests name the account and the share, and where a request goes.
//!
//! A Shared Key signature covers `/{account}{raw path}`, never the `Host` header. The same raw
//! path means different resources in the two addressing styles: `/demo/projects/x` is share
//! `projects`, directory `x` path-style, and share `demo`, directory `projects/x` host-style.
//! So the style is a property of the service (its configuration), never of a request: one
//! service serves exactly one style, and a raw path reaches exactly one resource.

use percent_encoding::percent_decode_str;

use crate::protocol::{ErrorCode, StorageError};

/// The path prefix of the admin endpoint. Account and share names cannot contain `_`, so it
/// cannot collide with either.
pub const ADMIN_SEGMENT: &str = "_admin";

/// How the service is addressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Addressing {
    /// `http://host:port/{account}/{share}/...`, whatever the `Host` (the default; what the
    /// SDKs do for an account URL with the account in its path).
    #[default]
    PathStyle,
    /// `http://{host name}/{share}/...` for the configured host names only (lowercase, no
    /// port); a request naming any other host is refused.
    HostStyle(Vec<String>),
}

/// A `--host-name` that cannot be served host-style, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host name {name:?} cannot be served host-style: {reason}")]
pub struct InvalidHostName {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Addressing {
    /// Host-style addressing for `names`, each a DNS name whose first label is `account` (as
    /// every client derives the account from a host-style URL).
    pub fn host_style<I, S>(names: I, account: &str) -> Result<Self, InvalidHostName>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut served = Vec::new();
        for name in names {
            let name = name.as_ref();
            let invalid = |reason: &str| InvalidHostName {
                name: name.to_owned(),
                reason: reason.to_owned(),
            };
            let lower = name.to_ascii_lowercase();
            let labels: Vec<&str> = lower.split('.').collect();
            let label_ok = |l: &&str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if labels.len() < 2 || !labels.iter().all(label_ok) || lower.len() > 253 {
                return Err(invalid(
                    "expected a DNS name such as ACCOUNT.file.core.windows.net, without scheme, port or path",
                ));
            }
            if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
                return Err(invalid(
                    "an IP address is served path-style, not host-style",
                ));
            }
            if !labels[0].eq_ignore_ascii_case(account) {
                return Err(invalid(&format!(
                    "its first label must be the account {account:?}, from which clients take the account name"
                )));
            }
            if !served.contains(&lower) {
                served.push(lower);
            }
        }
        if served.is_empty() {
            return Err(InvalidHostName {
                name: String::new(),
                reason: "host-style addressing needs at least one host name".into(),
            });
        }
        Ok(Self::HostStyle(served))
    }

    /// Whether requests are path-style.
    pub fn is_path_style(&self) -> bool {
        matches!(self, Self::PathStyle)
    }
}

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

/// The hosts a request names: its `Host` header and the authority of an absolute-form
/// request target. Both are unsigned, so they can only ever refuse a request, never reroute it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHosts<'a> {
    /// The `Host` header.
    pub header: HostHeader<'a>,
    /// The host of an absolute-form request target.
    pub target: Option<&'a str>,
}

/// A request's `Host` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostHeader<'a> {
    /// No `Host` header.
    #[default]
    Absent,
    /// Sent more than once, or not visible ASCII.
    Unreadable,
    /// The one value sent.
    Value(&'a str),
}

impl<'a> RequestHosts<'a> {
    /// The hosts `parts` names.
    pub fn of(parts: &'a http::request::Parts) -> Self {
        let mut values = parts.headers.get_all(http::header::HOST).iter();
        let header = match (values.next(), values.next()) {
            (None, _) => HostHeader::Absent,
            (Some(v), None) => v.to_str().map_or(HostHeader::Unreadable, HostHeader::Value),
            (Some(_), Some(_)) => HostHeader::Unreadable,
        };
        Self {
            header,
            target: parts.uri.host(),
        }
    }
}

/// Routes a request by the service's `addressing`: path-style ignores the hosts; host-style
/// refuses a host it does not serve.
pub fn route(
    raw_path: &str,
    hosts: RequestHosts<'_>,
    account: &str,
    addressing: &Addressing,
) -> Result<Route, StorageError> {
    let mut segments = decode_segments(raw_path)?;
    match addressing {
        Addressing::PathStyle => {
            if segments.first().map(String::as_str) != Some(account) {
                return Err(invalid_uri(format!(
                    "path-style requests start with /{account}/ (this service serves account {account:?} path-style)."
                )));
            }
            segments.remove(0);
        }
        Addressing::HostStyle(names) => {
            check_hosts(hosts, names)?;
            // `/{account}/...` is the path-style address of another resource under the same
            // signature: a share named like the account is not served host-style, so a
            // path-style signature can never act on this service.
            if segments
                .first()
                .is_some_and(|s| s.eq_ignore_ascii_case(account))
            {
                return Err(invalid_uri(format!(
                    "this service is addressed host-style and its paths start with the share; a share named like the account {account:?} is not served host-style, because /{account}/... is also the path-style address of another share."
                )));
            }
        }
    }
    let mut rest = segments.into_iter();
    match rest.next() {
        Some(first) if first == ADMIN_SEGMENT => Ok(Route::Admin(rest.collect())),
        Some(share) if share.contains('/') => Err(invalid_uri(format!(
            "the share name {share:?} contains '/'."
        ))),
        Some(share) => Ok(Route::Handles {
            share,
            path: rest.collect::<Vec<_>>().join("/"),
        }),
        None => Err(invalid_uri("it names no share.".into())),
    }
}

fn decode_segments(raw_path: &str) -> Result<Vec<String>, StorageError> {
    raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|raw| {
            percent_decode_str(raw)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| {
                    invalid_uri(format!(
                        "path segment {raw:?} is not percent-encoded UTF-8."
                    ))
                })
        })
        .collect()
}

/// Host-style: every host the request names is one this service serves.
fn check_hosts(hosts: RequestHosts<'_>, names: &[String]) -> Result<(), StorageError> {
    let served = |host: &str| {
        let name = host_name(host).to_ascii_lowercase();
        names.contains(&name)
    };
    let refused = |value: &str| {
        StorageError::invalid_header(
            "Host",
            value,
            &format!(
                "This service is addressed host-style and serves only {}.",
                names.join(", ")
            ),
        )
    };
    match hosts.header {
        HostHeader::Absent => return Err(StorageError::missing_header("Host")),
        HostHeader::Unreadable => return Err(refused("(repeated or not visible ASCII)")),
        HostHeader::Value(h) if !served(h) => return Err(refused(h)),
        HostHeader::Value(_) => {}
    }
    match hosts.target {
        Some(t) if !served(t) => Err(refused(t)),
        _ => Ok(()),
    }
}

/// The host of a `Host` value: without the port and a trailing root dot.
fn host_name(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.strip_suffix('.').unwrap_or(host)
}

fn invalid_uri(reason: String) -> StorageError {
    StorageError::new(
        400,
        ErrorCode::InvalidUri,
        format!("The request URI is invalid: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> RequestHosts<'_> {
        RequestHosts {
            header: HostHeader::Value(h),
            target: None,
        }
    }

    fn handles(share: &str, path: &str) -> Route {
        Route::Handles {
            share: share.into(),
            path: path.into(),
        }
    }

    fn host_style() -> Addressing {
        Addressing::host_style(["Acct.File.Core.Windows.Net"], "acct").unwrap()
    }

    #[test]
    fn path_style_ignores_the_host() {
        for h in ["127.0.0.1:1", "acct.file.core.windows.net", "other.example"] {
            let path_style = Addressing::PathStyle;
            assert_eq!(
                route(
                    "/acct/share/dir%201/f%C3%A9.txt",
                    host(h),
                    "acct",
                    &path_style
                )
                .unwrap(),
                handles("share", "dir 1/fé.txt"),
                "{h}"
            );
            // The account-name collision: the path-style address of share `acct`.
            assert_eq!(
                route("/acct/acct/projects/x", host(h), "acct", &path_style).unwrap(),
                handles("acct", "projects/x")
            );
            let err = route("/share/x", host(h), "acct", &path_style).unwrap_err();
            assert_eq!((err.status, err.code.as_str()), (400, "InvalidUri"), "{h}");
        }
        assert_eq!(
            route(
                "/acct/_admin/x",
                RequestHosts::default(),
                "acct",
                &Addressing::PathStyle
            )
            .unwrap(),
            Route::Admin(vec!["x".into()])
        );
        for bad in ["/other/share", "/acct", "/acct/share/%FF", "/acct/a%2Fb/c"] {
            let err =
                route(bad, RequestHosts::default(), "acct", &Addressing::PathStyle).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidUri"),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_style_serves_its_names_only() {
        let hs = host_style();
        for h in [
            "acct.file.core.windows.net",
            "ACCT.file.core.windows.net:443",
            "acct.file.core.windows.net.",
        ] {
            assert_eq!(
                route("/projects/x", host(h), "acct", &hs).unwrap(),
                handles("projects", "x"),
                "{h}"
            );
        }
        assert_eq!(
            route("/_admin", host("acct.file.core.windows.net"), "acct", &hs).unwrap(),
            Route::Admin(vec![])
        );
        for h in [
            "127.0.0.1:10004",
            "other.file.core.windows.net",
            "acct.file.core.windows.net.evil",
            "",
        ] {
            let err = route("/projects/x", host(h), "acct", &hs).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidHeaderValue"),
                "{h}"
            );
            assert_eq!(err.detail("HeaderName"), Some("Host"));
        }
        let err = route("/projects/x", RequestHosts::default(), "acct", &hs).unwrap_err();
        assert_eq!(err.code.as_str(), "MissingRequiredHeader");
        // An absolute-form target must name a served host too.
        let both = RequestHosts {
            header: HostHeader::Value("acct.file.core.windows.net"),
            target: Some("127.0.0.1"),
        };
        assert_eq!(
            route("/projects/x", both, "acct", &hs)
                .unwrap_err()
                .code
                .as_str(),
            "InvalidHeaderValue"
        );
    }

    #[test]
    fn host_style_refuses_paths_that_are_path_style_addresses() {
        let hs = host_style();
        for path in ["/acct/projects/x", "/ACCT/projects", "/%61cct/x", "/acct"] {
            let err = route(path, host("acct.file.core.windows.net"), "acct", &hs).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidUri"),
                "{path}"
            );
        }
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(
            Addressing::host_style(["acct.file.core.windows.net", "ACCT.svc.local"], "acct"),
            Ok(Addressing::HostStyle(vec![
                "acct.file.core.windows.net".into(),
                "acct.svc.local".into()
            ]))
        );
        for bad in [
            "other.file.core.windows.net",
            "acct",
            "acct.file.core.windows.net:443",
            "http://acct.file.core.windows.net",
            "acct..net",
            "127.0.0.1",
            "acct.-x.net",
        ] {
            let err = Addressing::host_style([bad], "acct").unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(Addressing::host_style(Vec::<String>::new(), "acct").is_err());
    }
}
