//! The shares a Samba server exports, read from `testparm -s` (the effective smb.conf with
//! includes resolved and values normalised), so we never reimplement smb.conf's grammar.

use std::path::PathBuf;

/// One disk share: its name and the directory it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The share's name as smb.conf spells it.
    pub name: String,
    /// The exported directory, without a trailing `/` (as smbstatus prints it).
    pub path: PathBuf,
}

/// The disk shares of one smb.conf, and the sections we skipped (with why), for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareSet {
    /// Disk shares, in smb.conf order.
    pub shares: Vec<Share>,
    /// `(section, reason)` for sections that are not servable disk shares.
    pub skipped: Vec<(String, &'static str)>,
}

impl ShareSet {
    /// The share named `name`; share names are case-insensitive in SMB.
    pub fn get(&self, name: &str) -> Option<&Share> {
        self.shares
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The service paths of all shares, longest first (how smbstatus lines are split).
    pub fn paths_longest_first(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .shares
            .iter()
            .map(|s| s.path.to_string_lossy().into_owned())
            .collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        paths.dedup();
        paths
    }
}

/// Parses `testparm -s` output: `[section]` headers and tab-indented `key = value` lines.
pub fn parse_testparm(text: &str) -> ShareSet {
    let mut set = ShareSet::default();
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some((key, value)), Some((_, params))) =
            (line.split_once('='), sections.last_mut())
        {
            params.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        // Anything else (testparm's own chatter goes to stderr) is ignored.
    }
    for (name, params) in sections {
        let get = |k: &str| {
            params
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let yes = |k: &str| {
            get(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1"))
        };
        let no = |k: &str| {
            get(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "no" | "false" | "0"))
        };
        let lower = name.to_ascii_lowercase();
        let skip = if lower == "global" {
            Some("global section")
        } else if lower == "homes" || lower == "printers" {
            Some("special section")
        } else if yes("printable") || yes("print ok") {
            Some("printer share")
        } else if no("available") {
            Some("available = no")
        } else {
            match get("path") {
                None | Some("") => Some("no path"),
                Some(p) if p.contains('%') => Some("path uses % substitutions"),
                Some(p) if !p.starts_with('/') => Some("path is not absolute"),
                Some(_) => None,
            }
        };
        if let Some(why) = skip {
            if lower != "global" {
                set.skipped.push((name, why));
            }
            continue;
        }
        let path = get("path").unwrap_or_default();
        // smbstatus prints the service path without a trailing slash; match that.
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        set.shares.push(Share {
            name,
            path: PathBuf::from(path),
        });
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_disk_shares_and_says_why_others_are_skipped() {
        let text = "# Global parameters\n[global]\n\tworkgroup = WG\n\tpath = /nope\n\n\
                    [data]\n\tpath = /srv/data/\n\tread only = No\n\n\
                    [homes]\n\tbrowseable = No\n\n\
                    [printers]\n\tpath = /var/spool\n\tprintable = Yes\n\n\
                    [pdf]\n\tpath = /var/pdf\n\tprintable = Yes\n\n\
                    [off]\n\tpath = /srv/off\n\tavailable = No\n\n\
                    [user]\n\tpath = /home/%U\n\n\
                    [Root]\n\tpath = /\n\n\
                    [Other Share]\n\tpath = /srv/other share\n";
        let set = parse_testparm(text);
        let names: Vec<_> = set
            .shares
            .iter()
            .map(|s| (s.name.as_str(), s.path.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("data", "/srv/data"),
                ("Root", "/"),
                ("Other Share", "/srv/other share")
            ]
        );
        assert_eq!(set.skipped.len(), 5);
        assert!(
            set.skipped
                .contains(&("user".into(), "path uses % substitutions"))
        );
        assert_eq!(set.get("DATA").unwrap().name, "data");
        assert_eq!(set.get("root").unwrap().path, PathBuf::from("/"));
        assert!(set.get("missing").is_none());
        assert_eq!(set.paths_longest_first()[0], "/srv/other share");
    }
}
