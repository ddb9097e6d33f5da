//! Globs for paths (`releases/**/*.bin`) and names (`backup-*`).
//!
//! Path globs match `/`-separated paths segment by segment: `*` and `?` stay inside a segment,
//! and a `**` segment matches any number of segments, none included (so `logs/**` matches
//! `logs` itself and everything below it). Both kinds match case-insensitively: Azure Files
//! and SMB names are case-insensitive (`Scratch/x` is in `scratch/**`), and so are client and
//! machine names. Matching takes time linear in the pattern times the path, whatever the
//! pattern (no exponential backtracking over `**` or `*`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::text::fold;

/// A path glob.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PathGlob {
    text: String,
    segments: Vec<String>,
}

/// A glob that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("glob {glob:?} is invalid: {reason}")]
pub struct InvalidGlob {
    /// The glob.
    pub glob: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FromStr for PathGlob {
    type Err = InvalidGlob;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let segments: Vec<String> = s
            .split('/')
            .filter(|seg| !seg.is_empty())
            .map(str::to_lowercase)
            .collect();
        if segments.is_empty() {
            return Err(InvalidGlob {
                glob: s.to_owned(),
                reason: "it is empty (use ** for everything)",
            });
        }
        if segments.iter().any(|seg| seg.contains("**") && seg != "**") {
            return Err(InvalidGlob {
                glob: s.to_owned(),
                reason: "** must be a whole path segment, as in a/**/b",
            });
        }
        Ok(Self {
            text: s.to_owned(),
            segments,
        })
    }
}

impl PathGlob {
    /// Whether `path` (relative, `/`-separated) matches, case-insensitively.
    pub fn matches(&self, path: &str) -> bool {
        let folded = fold(path);
        let parts: Vec<&str> = folded.split('/').filter(|p| !p.is_empty()).collect();
        match_segments(&self.segments, &parts)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Segment-level glob matching with `**` as the wildcard: the classic greedy algorithm that
/// remembers only the last `**` to backtrack to, which is enough when every other segment
/// matches exactly one segment.
fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < path.len() {
        if p < pattern.len() && pattern[p] == "**" {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && wildcard(pattern[p].as_bytes(), path[t].as_bytes()) {
            p += 1;
            t += 1;
        } else if let Some((bp, bt)) = backtrack {
            p = bp + 1;
            t = bt + 1;
            backtrack = Some((bp, t));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|seg| seg == "**")
}

/// `*` (any run) and `?` (one character) over bytes of UTF-8 (callers fold case first); `?`
/// consumes one whole character.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'?' {
            p += 1;
            t += utf8_len(text[t]);
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((bp, bt)) = backtrack {
            p = bp + 1;
            t = bt + utf8_len(text[bt]);
            backtrack = Some((bp, t));
        } else {
            return false;
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*') && t == text.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    }
}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathGlob({:?})", self.text)
    }
}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A name glob, matched case-insensitively against a whole name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NameGlob {
    text: String,
    folded: String,
}

impl FromStr for NameGlob {
    type Err = InvalidGlob;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(InvalidGlob {
                glob: s.to_owned(),
                reason: "it is empty",
            });
        }
        Ok(Self {
            text: s.to_owned(),
            folded: s.to_lowercase(),
        })
    }
}

impl NameGlob {
    /// Whether `name` matches, case-insensitively.
    pub fn matches(&self, name: &str) -> bool {
        wildcard(self.folded.as_bytes(), fold(name).as_bytes())
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for NameGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameGlob({:?})", self.text)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(PathGlob);
serde_via_str!(NameGlob);

#[cfg(test)]
mod tests {
    use super::*;

    fn path(glob: &str, p: &str) -> bool {
        glob.parse::<PathGlob>().unwrap().matches(p)
    }

    #[test]
    fn path_globs() {
        let cases = [
            ("releases/**", "releases", true),
            ("releases/**", "releases/v1/app.bin", true),
            ("releases/**", "releases-old/x", false),
            ("**", "", true),
            ("**", "a/b/c", true),
            ("**/*.log", "a.log", true),
            ("**/*.log", "x/y/a.log", true),
            ("**/*.log", "x/y/a.log.gz", false),
            ("a/*/c", "a/b/c", true),
            ("a/*/c", "a/b/x/c", false),
            ("a/**/c", "a/c", true),
            ("a/**/c", "a/b/x/c", true),
            ("*.tmp", "dir/x.tmp", false),
            ("dir/?.txt", "dir/é.txt", true),
            ("dir/?.txt", "dir/ab.txt", false),
            ("/scratch/*", "scratch/x", true),
            ("Data/*", "data/x", true),
            ("scratch/**", "Scratch/Build/x.o", true),
            ("**/*.LOG", "x/App.log", true),
        ];
        for (g, p, want) in cases {
            assert_eq!(path(g, p), want, "{g} vs {p}");
        }
    }

    #[test]
    fn many_double_stars_stay_linear() {
        let glob: PathGlob = "**/a/**/a/**/a/**/a/**/a/**/a/z".parse().unwrap();
        let path = vec!["a"; 200].join("/");
        let started = std::time::Instant::now();
        assert!(!glob.matches(&path));
        assert!(glob.matches(&format!("{path}/z")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn invalid_path_globs() {
        for g in ["", "/", "a/b**"] {
            assert!(g.parse::<PathGlob>().is_err(), "{g:?}");
        }
    }

    #[test]
    fn name_globs_fold_case() {
        let g: NameGlob = "backup-*".parse().unwrap();
        assert!(g.matches("BACKUP-01") && g.matches("backup-") && !g.matches("xbackup-1"));
        let g: NameGlob = "*-node-?".parse().unwrap();
        assert!(g.matches("aks-node-1") && !g.matches("aks-node-12"));
        assert!("*a*b*".parse::<NameGlob>().unwrap().matches("xxaxxbxx"));
    }
}
