//! Human durations as Kubernetes users write them: `30s`, `5m`, `1h30m`, `2d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written as a sequence of `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// A string that is not a duration, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration like 30s, 5m, 1h30m or 2d: {reason}")]
pub struct InvalidDuration {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for HumanDuration {
    type Err = InvalidDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidDuration {
            input: s.to_owned(),
            reason,
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut total: u64 = 0; // milliseconds
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad("the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let per_unit: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(bad("a number has no unit (ms, s, m, h or d)")),
                _ => return Err(bad("the unit is not one of ms, s, m, h, d")),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(per_unit)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(|| bad("the duration is too large"))?;
        }
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (input, secs, printed) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("1h30m", 5400, "1h30m"),
            ("2d", 172_800, "2d"),
            ("90m", 5400, "1h30m"),
            ("0s", 0, "0s"),
        ] {
            let d: HumanDuration = input.parse().unwrap();
            assert_eq!(d.0, Duration::from_secs(secs), "{input}");
            assert_eq!(d.to_string(), printed);
        }
        assert_eq!(
            "1500ms".parse::<HumanDuration>().unwrap().to_string(),
            "1s500ms"
        );
    }

    #[test]
    fn rejects_with_a_reason() {
        for (input, reason) in [
            ("", "it is empty"),
            ("5", "a number has no unit (ms, s, m, h or d)"),
            ("5y", "the unit is not one of ms, s, m, h, d"),
            ("m5", "expected a number"),
            ("-5m", "expected a number"),
            ("99999999999999999999s", "the number is too large"),
        ] {
            let err = input.parse::<HumanDuration>().unwrap_err();
            assert_eq!(err.reason, reason, "{input}");
            assert!(err.to_string().contains(&format!("{input:?}")));
        }
    }
}
