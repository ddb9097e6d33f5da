//! `x-ms-version`: the service version a request asks for, and the fields it gates.

use std::fmt;
use std::str::FromStr;

/// A storage service version such as `2024-05-04`, ordered by date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceVersion {
    year: u16,
    month: u8,
    day: u8,
}

impl ServiceVersion {
    /// The first version with List Handles and Force Close Handles.
    pub const V2018_11_09: Self = Self::new(2018, 11, 9);
    /// Force Close Handles reports `x-ms-number-of-handles-failed` from this version on.
    pub const V2019_07_07: Self = Self::new(2019, 7, 7);
    /// `Path Encoded="true"` for paths with XML-invalid characters.
    pub const V2021_12_02: Self = Self::new(2021, 12, 2);
    /// OAuth on the file data plane (with `x-ms-file-request-intent`).
    pub const V2022_11_02: Self = Self::new(2022, 11, 2);
    /// `AccessRightList` in List Handles.
    pub const V2023_01_03: Self = Self::new(2023, 1, 3);
    /// `ClientName` in List Handles.
    pub const V2024_02_04: Self = Self::new(2024, 2, 4);
    /// The version our client sends unless told otherwise.
    pub const DEFAULT: Self = Self::new(2025, 11, 5);

    const fn new(year: u16, month: u8, day: u8) -> Self {
        Self { year, month, day }
    }

    /// Whether List Handles carries `AccessRightList` at this version.
    pub fn has_access_rights(self) -> bool {
        self >= Self::V2023_01_03
    }

    /// Whether List Handles carries `ClientName` at this version.
    pub fn has_client_name(self) -> bool {
        self >= Self::V2024_02_04
    }

    /// Whether paths with XML-invalid characters are sent percent-encoded with `Encoded="true"`.
    pub fn has_encoded_paths(self) -> bool {
        self >= Self::V2021_12_02
    }

    /// Whether Force Close Handles reports the failed count.
    pub fn has_failed_count(self) -> bool {
        self >= Self::V2019_07_07
    }

    /// Whether bearer (OAuth) requests are accepted at this version.
    pub fn allows_oauth(self) -> bool {
        self >= Self::V2022_11_02
    }
}

/// A string that is not a `YYYY-MM-DD` service version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-ms-version {0:?} is not a service version of the form YYYY-MM-DD")]
pub struct InvalidVersion(pub String);

impl FromStr for ServiceVersion {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidVersion(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16, InvalidVersion> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(bad());
        }
        Ok(Self::new(year, month as u8, day as u8))
    }
}

impl fmt::Display for ServiceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_prints() {
        let v: ServiceVersion = "2023-01-03".parse().unwrap();
        assert_eq!(v, ServiceVersion::V2023_01_03);
        assert_eq!(v.to_string(), "2023-01-03");
        assert!(ServiceVersion::V2018_11_09 < v && v < ServiceVersion::V2024_02_04);
        assert!(v.has_access_rights() && !v.has_client_name() && v.has_encoded_paths());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2023-1-03",
            "2023-13-01",
            "2023-01-00",
            "20a3-01-01",
            "2023/01/03",
            "+023-01-03",
        ] {
            assert!(bad.parse::<ServiceVersion>().is_err(), "{bad}");
        }
    }
}
