//! One open handle as List Handles reports it, and the types its fields use.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The service's handle id (XSMB handle id), a decimal `u64` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HandleId(pub u64);

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which handles a Force Close Handles call names in `x-ms-handle-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleSelector {
    /// One handle by id.
    Id(HandleId),
    /// `*`: every handle on the resource (and below it, with `x-ms-recursive: true`).
    All,
}

/// An `x-ms-handle-id` value that is neither `*` nor a decimal `u64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-ms-handle-id {0:?} is neither '*' nor a decimal handle id")]
pub struct InvalidHandleSelector(pub String);

impl FromStr for HandleSelector {
    type Err = InvalidHandleSelector;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Self::All);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidHandleSelector(s.to_owned()));
        }
        s.parse()
            .map(|id| Self::Id(HandleId(id)))
            .map_err(|_| InvalidHandleSelector(s.to_owned()))
    }
}

impl fmt::Display for HandleSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::All => f.write_str("*"),
        }
    }
}

/// The rights a handle holds (`AccessRightList`, from 2023-01-03).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AccessRights(u8);

impl AccessRights {
    /// No rights listed.
    pub const NONE: Self = Self(0);
    /// `Read`.
    pub const READ: Self = Self(1);
    /// `Write`.
    pub const WRITE: Self = Self(2);
    /// `Delete`.
    pub const DELETE: Self = Self(4);
    /// Every right the protocol knows, in wire order.
    pub const ALL: [(Self, &'static str); 3] = [
        (Self::READ, "Read"),
        (Self::WRITE, "Write"),
        (Self::DELETE, "Delete"),
    ];

    /// The rights of both.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every right of `other` is held.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any right of `other` is held.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no right is held.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits (Read 1, Write 2, Delete 4).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From raw bits; unknown bits are dropped.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 7)
    }

    /// The wire names of the rights held, in wire order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(r, _)| self.contains(*r))
            .map(|(_, n)| n)
    }

    /// One right by its wire name (`Read`, `Write`, `Delete`; case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(r, _)| r)
    }
}

impl Serialize for AccessRights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for AccessRights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().try_fold(Self::NONE, |acc, n| {
            Self::from_name(n).map(|r| acc.union(r)).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown access right {n:?} (expected Read, Write or Delete)"
                ))
            })
        })
    }
}

/// One open handle, as List Handles reports it.
///
/// Optional fields are `None` when the service version predates them or the service left
/// them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handle {
    /// The service's handle id.
    pub handle_id: HandleId,
    /// Path relative to the share root with `/` separators; empty for the root directory.
    pub path: String,
    /// The file or directory id (0 for the share root).
    pub file_id: u64,
    /// The parent directory's id (0 when the parent is the share root).
    pub parent_id: u64,
    /// The SMB session the handle belongs to.
    pub session_id: u64,
    /// The client's address as sent, usually `ip:port`.
    pub client_ip: String,
    /// The client's machine name (from 2024-02-04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// When the handle was opened.
    pub open_time: Timestamp,
    /// When the client last reconnected the handle, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconnect_time: Option<Timestamp>,
    /// The rights the handle holds (from 2023-01-03).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_rights: Option<AccessRights>,
}

impl Handle {
    /// The client's IP address without the port: accepts `ip:port`, `[v6]:port`, and a bare
    /// IPv4 or IPv6 address. `None` when the field holds no address.
    pub fn client_addr(&self) -> Option<IpAddr> {
        parse_client_ip(&self.client_ip)
    }

    /// The time the handle has been held since: the last reconnect when it is newer than the
    /// open, else the open.
    pub fn held_since(&self) -> Timestamp {
        match self.last_reconnect_time {
            Some(t) if t > self.open_time => t,
            _ => self.open_time,
        }
    }
}

/// Parses the address part of a `ClientIp` value (see [`Handle::client_addr`]). IPv4-mapped
/// IPv6 addresses (`::ffff:10.1.2.3`, as dual-stack servers report IPv4 clients) come back as
/// the IPv4 address they are, so IPv4 networks and cluster addresses match them.
pub fn parse_client_ip(s: &str) -> Option<IpAddr> {
    parse_client_ip_raw(s).map(|ip| ip.to_canonical())
}

fn parse_client_ip_raw(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    // `ip:port` for IPv4, or an unbracketed IPv6 with a trailing `:port`.
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parses_star_and_ids_only() {
        assert_eq!("*".parse(), Ok(HandleSelector::All));
        assert_eq!("42".parse(), Ok(HandleSelector::Id(HandleId(42))));
        for bad in ["", "-1", "1.0", "0x10", "18446744073709551616", " 1", "**"] {
            assert!(bad.parse::<HandleSelector>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn access_rights_names_round_trip() {
        let rw = AccessRights::READ.union(AccessRights::WRITE);
        assert_eq!(rw.names().collect::<Vec<_>>(), ["Read", "Write"]);
        assert!(rw.contains(AccessRights::READ) && !rw.contains(AccessRights::DELETE));
        assert!(rw.intersects(AccessRights::WRITE.union(AccessRights::DELETE)));
        let json = serde_json::to_string(&rw).unwrap();
        assert_eq!(json, r#"["Read","Write"]"#);
        assert_eq!(serde_json::from_str::<AccessRights>(&json).unwrap(), rw);
        assert!(serde_json::from_str::<AccessRights>(r#"["Execute"]"#).is_err());
    }

    #[test]
    fn client_ip_forms() {
        let cases = [
            ("167.220.2.5:3263", Some("167.220.2.5")),
            ("10.0.0.1", Some("10.0.0.1")),
            ("[fd00::1]:445", Some("fd00::1")),
            ("fd00::1", Some("fd00::1")),
            ("fd00::1:445", Some("fd00::1:445")),
            ("nonsense", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_client_ip(input);
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{input}");
        }
    }
}
