//! Where a share lives: host-style Azure endpoints (`https://{account}.file.core.windows.net`)
//! and path-style ones (`http://host:port/{account}`, our handle service and emulators).

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use secrecy::SecretString;

/// What stays unencoded in a path segment: RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A file service endpoint: scheme and authority, and for path-style endpoints the account
/// as the first path segment.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`.
    origin: String,
    /// The storage account.
    account: String,
    /// Whether the account is the first path segment.
    path_style: bool,
}

/// A URL that is not a file service endpoint or share URL, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a {what} URL: {reason}")]
pub struct InvalidUrl {
    /// The URL given (without its query, which may hold a SAS).
    pub url: String,
    /// What was expected.
    pub what: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A share URL split into its endpoint, share and path.
#[derive(Debug, Clone)]
pub struct ShareUrl {
    /// The account's endpoint.
    pub endpoint: Endpoint,
    /// The share.
    pub share: String,
    /// The decoded path below the share (empty for the root).
    pub path: String,
    /// A SAS token found in the URL's query, if any (`Debug` shows `[REDACTED]`).
    pub sas: Option<SecretString>,
}

impl Endpoint {
    /// The account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether requests carry the account as the first path segment.
    pub fn is_path_style(&self) -> bool {
        self.path_style
    }

    /// The endpoint URL as a user writes it.
    pub fn url(&self) -> String {
        if self.path_style {
            format!("{}/{}", self.origin, self.account)
        } else {
            self.origin.clone()
        }
    }

    /// The request URL of `path` in `share`, segments percent-encoded, no query.
    pub fn resource_url(&self, share: &str, path: &str) -> String {
        let mut url = self.url();
        for seg in std::iter::once(share).chain(path.split('/').filter(|s| !s.is_empty())) {
            url.push('/');
            url.extend(utf8_percent_encode(seg, SEGMENT));
        }
        url
    }

    /// Parses an endpoint URL: host-style when the host is an Azure Files name
    /// (`{account}.file.core.windows.net` or another cloud's suffix), whose first label is the
    /// account; path-style for any other host (an address, `localhost`, a cluster DNS name),
    /// whose first path segment is the account.
    pub fn parse(url: &str) -> Result<Self, InvalidUrl> {
        let split = split_url(url, "file service endpoint")?;
        if !split.rest.is_empty() {
            let what = if split.endpoint.path_style {
                "the account"
            } else {
                "nothing"
            };
            return Err(invalid(
                url,
                "file service endpoint",
                format!("the path holds more than {what}"),
            ));
        }
        Ok(split.endpoint)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.url())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl ShareUrl {
    /// Parses `https://acct.file.core.windows.net/share[/path]` or
    /// `http://127.0.0.1:PORT/acct/share[/path]`, with an optional SAS query.
    pub fn parse(url: &str) -> Result<Self, InvalidUrl> {
        let split = split_url(url, "share")?;
        let mut rest = split.rest.into_iter();
        let share = rest
            .next()
            .ok_or_else(|| invalid(url, "share", "it names no share".into()))?;
        Ok(Self {
            endpoint: split.endpoint,
            share,
            path: rest.collect::<Vec<_>>().join("/"),
            sas: split
                .query
                .filter(|q| !q.is_empty())
                .map(SecretString::from),
        })
    }
}

struct Split {
    endpoint: Endpoint,
    rest: Vec<String>,
    query: Option<String>,
}

fn invalid(url: &str, what: &'static str, reason: String) -> InvalidUrl {
    let url = url.split('?').next().unwrap_or(url).to_owned();
    InvalidUrl { url, what, reason }
}

fn split_url(url: &str, what: &'static str) -> Result<Split, InvalidUrl> {
    let (without_query, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q.to_owned())),
        None => (url, None),
    };
    let (scheme, rest) = without_query
        .split_once("://")
        .ok_or_else(|| invalid(url, what, "it has no scheme (http:// or https://)".into()))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(invalid(
            url,
            what,
            format!("the scheme {scheme:?} is not http or https"),
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid(
            url,
            what,
            "it has no host (or carries user info)".into(),
        ));
    }
    let host = host_of(authority);
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode_str(raw).decode_utf8().map_err(|_| {
            invalid(
                url,
                what,
                format!("path segment {raw:?} is not percent-encoded UTF-8"),
            )
        })?;
        segments.push(seg.into_owned());
    }
    let path_style = !is_file_service_host(host);
    let account = if path_style {
        if segments.is_empty() {
            return Err(invalid(
                url,
                what,
                "a path-style URL starts with the account (http://host:port/account)".into(),
            ));
        }
        segments.remove(0)
    } else {
        host.split('.').next().unwrap_or_default().to_owned()
    };
    if account.is_empty() {
        return Err(invalid(url, what, "it names no account".into()));
    }
    let endpoint = Endpoint {
        origin: format!("{scheme}://{authority}"),
        account,
        path_style,
    };
    Ok(Split {
        endpoint,
        rest: segments,
        query,
    })
}

/// Whether `host` is an Azure Files service name, `{account}.file.{suffix}` (any cloud's
/// suffix; also `{account}.privatelink.file.{suffix}`), which carries the account in its first
/// label. Every other host (an address, `localhost`, a cluster DNS name such as
/// `samba-handles.samba.svc`) is path-style: the account is the first path segment, as for
/// emulators and our handle service.
fn is_file_service_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let service = match labels.get(1) {
        Some(l) if l.eq_ignore_ascii_case("privatelink") => labels.get(2),
        other => other,
    };
    host.parse::<std::net::IpAddr>().is_err()
        && labels.len() >= 3
        && service.is_some_and(|l| l.eq_ignore_ascii_case("file"))
}

/// The host of an authority, without port or IPv6 brackets.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_style() {
        for (url, account) in [
            ("https://acct.FILE.core.chinacloudapi.cn/share", "acct"),
            (
                "https://acct.privatelink.file.core.windows.net/share",
                "acct",
            ),
        ] {
            let u = ShareUrl::parse(url).unwrap();
            assert_eq!(
                (
                    u.endpoint.account(),
                    u.endpoint.is_path_style(),
                    u.share.as_str()
                ),
                (account, false, "share"),
                "{url}"
            );
        }
        let u = ShareUrl::parse("https://acct.file.core.windows.net/share/dir/a%20b.txt").unwrap();
        assert_eq!(
            (u.endpoint.account(), u.endpoint.is_path_style()),
            ("acct", false)
        );
        assert_eq!(
            (u.share.as_str(), u.path.as_str()),
            ("share", "dir/a b.txt")
        );
        assert_eq!(
            u.endpoint.resource_url("share", "dir/a b.txt"),
            "https://acct.file.core.windows.net/share/dir/a%20b.txt"
        );
    }

    #[test]
    fn path_style() {
        for url in [
            "http://127.0.0.1:10004/acct/share",
            "http://localhost:10004/acct/share/",
            "http://[::1]:1/acct/share",
            // A cluster DNS name is not a file service name: the Samba sidecar's Service.
            "http://samba-handles.samba.svc:10004/acct/share",
            "http://handles.example.com/acct/share",
            "http://file.example.com/acct/share",
        ] {
            let u = ShareUrl::parse(url).unwrap();
            assert_eq!(
                (u.endpoint.account(), u.endpoint.is_path_style()),
                ("acct", true),
                "{url}"
            );
            assert_eq!((u.share.as_str(), u.path.as_str()), ("share", ""));
        }
        let e = Endpoint::parse("http://127.0.0.1:10004/acct").unwrap();
        assert_eq!(
            e.resource_url("s", "é/x y"),
            "http://127.0.0.1:10004/acct/s/%C3%A9/x%20y"
        );
    }

    #[test]
    fn sas_in_url_is_kept_but_never_in_errors() {
        let u =
            ShareUrl::parse("https://acct.file.core.windows.net/share?sv=1&sig=SECRET").unwrap();
        assert_eq!(
            u.sas.as_ref().map(secrecy::ExposeSecret::expose_secret),
            Some("sv=1&sig=SECRET")
        );
        assert!(!format!("{u:?}").contains("SECRET"), "{u:?}");
        let err = ShareUrl::parse("ftp://acct.file.core.windows.net/share?sig=SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn refuses_non_share_urls() {
        for url in [
            "acct.file.core.windows.net/share",
            "https://acct.file.core.windows.net",
            "http://127.0.0.1:1/acct",
            "http://127.0.0.1:1/",
            "https://u@acct.file.core.windows.net/s",
        ] {
            assert!(ShareUrl::parse(url).is_err(), "{url}");
        }
    }
}
