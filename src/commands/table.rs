//! Aligned columns for the people-facing outputs.

use std::time::Duration;

use jiff::Timestamp;
use share_hygiene::duration::HumanDuration;

/// Rows (the first is the header) as left-aligned columns two spaces apart, each line
/// prefixed with `indent`, without trailing spaces.
pub fn render<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(indent);
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// How long since `since`, to the second (`3d`, `1h30m`).
pub fn held(now: Timestamp, since: Timestamp) -> String {
    HumanDuration(Duration::from_secs(
        now.duration_since(since).unsigned_abs().as_secs(),
    ))
    .to_string()
}
