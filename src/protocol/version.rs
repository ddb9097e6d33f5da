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

    /// Every published Azure Storage service version from 2018-11-09 (the first with the handle
    /// APIs) on, oldest first. Sources: the version lists of the Azure Storage SDKs and Azurite,
    /// and the stable API specifications of the file and blob services.
    pub const PUBLISHED: [Self; 36] = [
        Self::new(2018, 11, 9),
        Self::new(2019, 2, 2),
        Self::new(2019, 7, 7),
        Self::new(2019, 10, 10),
        Self::new(2019, 12, 12),
        Self::new(2020, 2, 10),
        Self::new(2020, 4, 8),
        Self::new(2020, 6, 12),
        Self::new(2020, 8, 4),
        Self::new(2020, 10, 2),
        Self::new(2020, 12, 6),
        Self::new(2021, 2, 12),
        Self::new(2021, 4, 10),
        Self::new(2021, 6, 8),
        Self::new(2021, 8, 6),
        Self::new(2021, 10, 4),
        Self::new(2021, 12, 2),
        Self::new(2022, 11, 2),
        Self::new(2023, 1, 3),
        Self::new(2023, 5, 3),
        Self::new(2023, 8, 3),
        Self::new(2023, 11, 3),
        Self::new(2024, 2, 4),
        Self::new(2024, 5, 4),
        Self::new(2024, 8, 4),
        Self::new(2024, 11, 4),
        Self::new(2025, 1, 5),
        Self::new(2025, 5, 5),
        Self::new(2025, 7, 5),
        Self::new(2025, 11, 5),
        Self::new(2026, 2, 6),
        Self::new(2026, 4, 6),
        Self::new(2026, 6, 6),
        Self::new(2026, 10, 6),
        Self::new(2026, 12, 6),
        Self::new(2027, 3, 7),
    ];

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

    /// How this service treats a request for this version (see [`VersionSupport`]).
    pub fn support(self) -> VersionSupport {
        let newest = Self::PUBLISHED[Self::PUBLISHED.len() - 1];
        if self < Self::V2018_11_09 {
            VersionSupport::TooOld
        } else if self > newest {
            VersionSupport::Newer
        } else if Self::PUBLISHED.binary_search(&self).is_ok() {
            VersionSupport::Published
        } else {
            VersionSupport::Unpublished
        }
    }
}

/// How the service treats a well-formed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSupport {
    /// Before 2018-11-09: the handle APIs did not exist yet.
    TooOld,
    /// One of [`ServiceVersion::PUBLISHED`].
    Published,
    /// A date between two published versions that is none of them: a typo, or a version that
    /// was never released.
    Unpublished,
    /// After the newest version this build knows: served as the newest known one, so that a
    /// newer SDK keeps working (the handle APIs have not changed since 2024-02-04).
    Newer,
}

/// A string that is not a `YYYY-MM-DD` service version (a real calendar date).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-ms-version {0:?} is not a service version: a calendar date of the form YYYY-MM-DD")]
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
        let (Ok(y), Ok(m), Ok(d)) = (i16::try_from(year), i8::try_from(month), i8::try_from(day))
        else {
            return Err(bad());
        };
        // A real calendar date: `2025-02-30` is no version.
        if jiff::civil::Date::new(y, m, d).is_err() {
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
            "2025-02-30",
            "2025-02-29",
            "2023-04-31",
        ] {
            assert!(bad.parse::<ServiceVersion>().is_err(), "{bad}");
        }
        let leap: ServiceVersion = "2024-02-29".parse().unwrap();
        assert_eq!(leap.to_string(), "2024-02-29");
    }

    #[test]
    fn published_versions_are_sorted_dates_from_2018_11_09() {
        let list = ServiceVersion::PUBLISHED;
        assert_eq!(list[0], ServiceVersion::V2018_11_09);
        assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        for v in list {
            assert_eq!(v.to_string().parse::<ServiceVersion>(), Ok(v));
            assert_eq!(v.support(), VersionSupport::Published, "{v}");
        }
        for gated in [
            ServiceVersion::V2019_07_07,
            ServiceVersion::V2021_12_02,
            ServiceVersion::V2022_11_02,
            ServiceVersion::V2023_01_03,
            ServiceVersion::V2024_02_04,
            ServiceVersion::DEFAULT,
        ] {
            assert_eq!(gated.support(), VersionSupport::Published, "{gated}");
        }
    }

    #[test]
    fn support_of_versions() {
        let support = |s: &str| s.parse::<ServiceVersion>().unwrap().support();
        assert_eq!(support("2017-11-09"), VersionSupport::TooOld);
        assert_eq!(support("2026-10-06"), VersionSupport::Published);
        assert_eq!(support("2025-11-06"), VersionSupport::Unpublished);
        assert_eq!(support("2019-01-01"), VersionSupport::Unpublished);
        assert_eq!(support("2031-01-01"), VersionSupport::Newer);
    }
}
