//! RFC 1123 dates (`Fri, 06 Dec 2019 00:14:36 GMT`) as the protocol writes them.

use jiff::Timestamp;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `t` as an RFC 1123 date to `out`, at second precision.
///
/// Written by hand because List Handles formats one or two dates per handle and pages hold
/// up to 5,000 handles: this does no allocation and no formatting machinery.
pub fn write_rfc1123(out: &mut Vec<u8>, t: Timestamp) {
    let secs = t.as_second();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    out.extend_from_slice(WEEKDAYS[weekday].as_bytes());
    out.extend_from_slice(b", ");
    push2(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    out.push(b' ');
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(year).as_bytes());
    out.push(b' ');
    push2(out, (rem / 3600) as u32);
    out.push(b':');
    push2(out, (rem % 3600 / 60) as u32);
    out.push(b':');
    push2(out, (rem % 60) as u32);
    out.extend_from_slice(b" GMT");
}

/// `t` as an RFC 1123 date string.
pub fn format_rfc1123(t: Timestamp) -> String {
    let mut out = Vec::with_capacity(29);
    write_rfc1123(&mut out, t);
    String::from_utf8(out).expect("RFC 1123 dates are ASCII")
}

/// Parses an RFC 1123 date (also the obsolete RFC 850 and asctime forms HTTP allows).
pub fn parse_rfc1123(s: &str) -> Option<Timestamp> {
    let st = httpdate::parse_http_date(s.trim()).ok()?;
    Timestamp::try_from(st).ok()
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (1_575_591_276, "Fri, 06 Dec 2019 00:14:36 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            let t = Timestamp::from_second(secs).unwrap();
            assert_eq!(format_rfc1123(t), want);
            assert_eq!(parse_rfc1123(want), Some(t));
        }
    }

    #[test]
    fn agrees_with_httpdate_over_a_range() {
        // Every 7,777,777 s from 1970 to 2100 hits all weekdays, months and leap years.
        let mut secs = 0i64;
        while secs < 4_102_444_800 {
            let t = Timestamp::from_second(secs).unwrap();
            let want = httpdate::fmt_http_date(std::time::SystemTime::from(t));
            assert_eq!(format_rfc1123(t), want);
            secs += 7_777_777;
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_rfc1123("yesterday"), None);
        assert_eq!(parse_rfc1123(""), None);
    }
}
