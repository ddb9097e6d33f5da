//! Parsing `smbstatus -L -f` text: one line per open (share-mode entry).
//!
//! We read the text form, not `--json`: in Samba 4.17 the JSON printer copies the whole
//! `open_files` object once per open, so it is quadratic (5,000 opens: 2.5 to 6.6 s and 1.5 GB
//! of memory on a 2-core machine) while the text form stays linear (0.08 s). The text line is
//! `printf("%-11s  %-9s  %-10s 0x%-8x  %-10s %-14s   %s   %s   %s")` of pid, uid, deny mode,
//! access mask, R/W, oplock, service path, file name, open time.

use jiff::Timestamp;
use jiff::civil::date;

/// Which process holds an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A live smbd process (one per client connection).
    Pid(u32),
    /// A durable open whose client connection dropped; smbd keeps it for a reconnect until its
    /// timeout. Only `-f` shows these.
    Disconnected,
}

/// One open, as one `smbstatus -L` line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    /// The process holding it.
    pub holder: Holder,
    /// The unix uid of the session that opened it.
    pub uid: String,
    /// The NT access mask the open was granted.
    pub access_mask: u32,
    /// The oplock or lease, as smbstatus names it (`NONE`, `BATCH`, `LEASE(RWH)`, ...).
    pub oplock: String,
    /// The share's directory (the service path), without a trailing `/`.
    pub service_path: String,
    /// The path below the service path; `.` for the share root.
    pub name: String,
    /// When it was opened (smbstatus prints whole seconds).
    pub opened_at: Timestamp,
}

/// A line that is not a header and could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the tool's output.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The start of the line, bounded.
    pub excerpt: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: {} ({:?})",
            self.line, self.reason, self.excerpt
        )
    }
}

/// Parses the whole output. `service_paths` are the shares' directories, longest first: they
/// split `service path   name` where either could contain three spaces.
pub fn parse(text: &str, service_paths: &[String]) -> (Vec<LockRow>, Vec<BadLine>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty()
            || trimmed.starts_with("Locked files")
            || trimmed.starts_with("No locked files")
            || (trimmed.starts_with("Pid") && trimmed.contains("DenyMode"))
            || trimmed.bytes().all(|b| b == b'-')
        {
            continue;
        }
        match parse_line(line, service_paths) {
            Ok(row) => rows.push(row),
            Err(reason) => bad.push(BadLine {
                line: i + 1,
                reason,
                excerpt: crate::text::truncate(line, 120),
            }),
        }
    }
    (rows, bad)
}

/// Whether `c` separates columns. smbstatus pads its columns with ASCII spaces only; other
/// whitespace (U+3000, U+00A0, ...) belongs to a name. Being one byte, a separator's index
/// plus one is always a character boundary, so slicing around it never panics.
fn is_sep(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// Splits off the next separator-delimited token.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(is_sep);
    if s.is_empty() {
        return None;
    }
    let end = s.find(is_sep).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn parse_line(line: &str, service_paths: &[String]) -> Result<LockRow, &'static str> {
    let (pid, rest) = token(line).ok_or("empty line")?;
    let holder = parse_holder(pid).ok_or("the pid is neither a number nor `disconnected`")?;
    let (uid, rest) = token(rest).ok_or("no uid")?;
    let (_deny, rest) = token(rest).ok_or("no deny mode")?;
    let (access, rest) = token(rest).ok_or("no access mask")?;
    let access_mask = access
        .strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("the access mask is not hexadecimal")?;
    let (_rw, rest) = token(rest).ok_or("no R/W column")?;
    let rest = rest.trim_start_matches(is_sep);
    // Oplock names: NONE, BATCH, EXCLUSIVE, LEVEL_II, `LEASE(RWH)` (letters absent when not
    // held), and `LEASE STATE UNKNOWN`, the only one with inner spaces.
    let oplock_len = if rest.starts_with("LEASE STATE UNKNOWN") {
        "LEASE STATE UNKNOWN".len()
    } else if rest.starts_with("LEASE(") {
        rest.find(')').ok_or("unterminated LEASE(...)")? + 1
    } else {
        rest.find(is_sep).ok_or("no oplock column")?
    };
    let (oplock, rest) = rest.split_at(oplock_len);
    let rest = rest.trim_start_matches(is_sep);

    // The open time is the last five tokens: `Sat Nov 21 05:46:51 2026` (day space-padded).
    let (left, opened_at) = split_time(rest).ok_or("no open time at the end of the line")?;
    let (service_path, name) =
        split_path(left, service_paths).ok_or("no `service path   name` pair")?;
    if name.is_empty() {
        return Err("empty file name");
    }
    Ok(LockRow {
        holder,
        uid: uid.to_owned(),
        access_mask,
        oplock: oplock.trim_end().to_owned(),
        service_path: service_path.trim_end_matches('/').to_owned(),
        name: name.to_owned(),
        opened_at,
    })
}

fn parse_holder(s: &str) -> Option<Holder> {
    if s == "disconnected" {
        return Some(Holder::Disconnected);
    }
    // server_id_str_buf prints `pid`, `pid.task` when a task id is set, and `vnn:pid` in a
    // cluster; the pid is what matters on one host.
    let s = s.rsplit_once(':').map_or(s, |(_, p)| p);
    let s = s.split_once('.').map_or(s, |(p, _)| p);
    s.parse().ok().map(Holder::Pid)
}

/// Splits `…   Sat Nov 21 05:46:51 2026` into what precedes the three-space separator and the
/// time.
fn split_time(s: &str) -> Option<(&str, Timestamp)> {
    let s = s.trim_end_matches(is_sep);
    let mut end = s.len();
    let mut tokens = [""; 5];
    for t in &mut tokens {
        let head = s[..end].trim_end_matches(is_sep);
        // `+ 1` steps over a one-byte separator (see `is_sep`).
        let start = head.rfind(is_sep).map_or(0, |i| i + 1);
        *t = &head[start..];
        end = start;
    }
    let [year, hms, day, month, _weekday] = tokens;
    let left = s[..end].strip_suffix("   ")?;
    let month = match month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let mut hms = hms.split(':').map(|p| p.parse::<i8>().ok());
    let (Some(Some(h)), Some(Some(m)), Some(Some(sec)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    let year: i16 = year.parse().ok()?;
    let day: i8 = day.parse().ok()?;
    // jiff's constructors panic on out-of-range parts; check them first.
    let valid = (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&m)
        && (0..61).contains(&sec)
        && (1970..=9999).contains(&year);
    if !valid {
        return None;
    }
    let dt = date(year, month, 1)
        .checked_add(jiff::Span::new().days(i64::from(day - 1)))
        .ok()
        .filter(|d| d.month() == month)?
        .at(h, m, sec.min(59), 0);
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some((left, ts))
}

/// Splits `service path   name`, preferring a known service path so that three spaces inside
/// either part do not mislead us.
fn split_path<'a>(s: &'a str, service_paths: &[String]) -> Option<(&'a str, &'a str)> {
    for p in service_paths {
        if let Some(rest) = s.strip_prefix(p.as_str())
            && let Some(name) = rest.strip_prefix("   ")
        {
            return Some((&s[..p.len()], name));
        }
    }
    s.split_once("   ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_live_disconnected_lease_and_odd_names() {
        let text = "\nLocked files:\n\
Pid          User(ID)   DenyMode   Access      R/W        Oplock           SharePath   Name   Time\n\
--------------------------------------------------------------------------------------------------\n\
disconnected  1001       DENY_NONE  0x12019f    RDWR       BATCH            /srv/data   durable.txt   Sat Nov 21 05:50:09 2026\n\
10881        1001       DENY_NONE  0x81        RDONLY     NONE             /srv/data   k4   Sat Nov  1 05:46:47 2026\n\
16476        1001       DENY_NONE  0x120089    RDONLY     LEASE(RWH)       /srv/data   sp   ace é.txt   Sat Nov 21 05:50:09 2026\n\
16476        1001       DENY_ALL   0x130089    RDONLY     LEASE(R)         /srv/da   ta   .   Sat Nov 21 05:50:09 2026\n\
1:2345.7     0          DENY_NONE  0x1         RDONLY     LEASE STATE UNKNOWN   /srv/data   a/b   Thu Feb 29 23:59:59 2024\n";
        let paths = vec!["/srv/da   ta".to_owned(), "/srv/data".to_owned()];
        let (rows, bad) = parse(text, &paths);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].holder, Holder::Disconnected);
        assert_eq!(rows[0].oplock, "BATCH");
        assert_eq!(rows[0].access_mask, 0x12019f);
        assert_eq!(rows[0].opened_at, ts("2026-11-21T05:50:09Z"));
        assert_eq!(rows[1].holder, Holder::Pid(10881));
        assert_eq!(rows[1].name, "k4");
        assert_eq!(rows[1].opened_at, ts("2026-11-01T05:46:47Z"));
        assert_eq!(rows[2].name, "sp   ace é.txt");
        assert_eq!(rows[2].oplock, "LEASE(RWH)");
        assert_eq!(
            (rows[3].service_path.as_str(), rows[3].name.as_str()),
            ("/srv/da   ta", ".")
        );
        assert_eq!(rows[4].holder, Holder::Pid(2345));
        assert_eq!(rows[4].oplock, "LEASE STATE UNKNOWN");
        assert_eq!(rows[4].opened_at, ts("2024-02-29T23:59:59Z"));
    }

    #[test]
    fn reports_malformed_lines_without_panicking() {
        let text = "garbage\n\
12 1001 DENY_NONE 0xZZ RDWR NONE   /srv/data   a   Sat Nov 21 05:50:09 2026\n\
12 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   a   Sat Foo 21 05:50:09 2026\n\
12 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   a   Sat Feb 30 05:50:09 2026\n\
12 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   a   Sat Feb 3 25:50:09 2026\n\
12 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   a   Sat Feb 3 05:50:09 99999\n\
12 1001 DENY_NONE 0x1 RDWR LEASE(RW   /srv/data   a   Sat Nov 21 05:50:09 2026\n\
12 1001\n\
é\n\
12 1001 DENY_NONE 0x1 RDWR NONE /srv/data a Sat Nov 21 05:50:09 2026\n";
        let (rows, bad) = parse(text, &["/srv/data".to_owned()]);
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!(bad.len(), 10, "{bad:#?}");
        assert_eq!(bad[1].reason, "the access mask is not hexadecimal");
        assert_eq!(
            bad[0].to_string(),
            "line 1: the pid is neither a number nor `disconnected` (\"garbage\")"
        );
    }

    #[test]
    fn multibyte_whitespace_in_a_split_name_is_a_bad_line_not_a_panic() {
        // A file name holding a newline splits its open over two lines; the first then ends
        // in the name's own text. Unicode whitespace there (U+3000 is three bytes, U+00A0
        // two) once made the time splitter slice inside a character and panic, which broke
        // listing for the whole server.
        let paths = ["/srv/data".to_owned()];
        for ws in ['\u{3000}', '\u{a0}', '\u{2028}', '\u{85}'] {
            let text = format!(
                "12 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   a{ws}b\n\
                 c   Sat Nov 21 05:50:09 2026\n\
                 13 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   ok{ws}   Sat Nov 21 05:50:09 2026\n\
                 14 1001 DENY_NONE 0x1 RDWR NONE   /srv/data   x{ws}Sat{ws}Nov{ws}21{ws}05:50:09{ws}2026\n"
            );
            let (rows, bad) = parse(&text, &paths);
            assert_eq!(bad.len(), 3, "{ws:?}: {bad:#?}");
            assert_eq!(bad[0].line, 1);
            assert_eq!(bad[0].reason, "no open time at the end of the line");
            assert_eq!(rows.len(), 1, "{ws:?}: the next open still parses");
            assert_eq!(rows[0].name, format!("ok{ws}"));
        }
    }

    #[test]
    fn fuzzish_inputs_never_panic() {
        let samples = [
            "0 0 0 0x0 0 LEASE(",
            "1 2 3 0x4 5 6      ",
            "   \t ",
            "1 2 3 0x4 5 6   a   b   c d e f g",
        ];
        for s in samples {
            let _ = parse(s, &[]);
            for cut in 0..s.len() {
                if s.is_char_boundary(cut) {
                    let _ = parse(&s[..cut], &["a".to_owned()]);
                }
            }
        }
    }
}
