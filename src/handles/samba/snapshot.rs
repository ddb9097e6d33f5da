//! One consistent-enough view of a server's opens: smbstatus lines joined with NetFileEnum
//! entries (for the srvsvc file id) and sessions (for who holds them).
//!
//! The join key is the open's NetFileEnum path plus its pid: the fid's upper half is the pid
//! (exactly, until the process's `share_file_id` passes 65,535 and ORs into those bits). Both
//! smbstatus and NetFileEnum walk the lock database with `share_entry_forall`, so several
//! opens of one file by one process come out in the same order in both and pair up in order.
//! The two tools run at slightly different moments: a line with no entry (opened or closed in
//! between, or a dead process only `-f` shows) is left out of this view, and counted.

use std::collections::HashMap;

use jiff::Timestamp;

use super::handle_id;
use super::locks::{Holder, LockRow};
use super::netfile::{FileEntry, enum_path};
use super::sessions::Session;
use crate::protocol::{AccessRights, HandleId};

/// One open as this store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Its protocol id (see [`handle_id`]).
    pub id: HandleId,
    /// Its srvsvc file id; `None` for a disconnected durable open.
    pub fid: Option<u32>,
    /// The smbd process holding it; `None` when disconnected.
    pub pid: Option<u32>,
    /// The share directory it was opened through.
    pub service_path: String,
    /// Its path below the share, `/`-separated, empty for the share root.
    pub path: String,
    /// The NT access mask.
    pub access_mask: u32,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// The session of its connection, when smbstatus listed one.
    pub session: Option<Session>,
}

impl Open {
    /// Whether this is a disconnected durable open.
    pub fn is_disconnected(&self) -> bool {
        self.pid.is_none()
    }
}

/// All opens, ascending by id, and how often each srvsvc fid occurs among live opens.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Ascending by id.
    pub opens: Vec<Open>,
    /// Every fid NetFileEnum listed (all shares), with its count: a NetFileClose reaches every
    /// live open with that fid, so only a count of 1 is safe to close.
    pub fid_counts: HashMap<u32, u32>,
    /// smbstatus lines of live processes with no NetFileEnum entry (left out).
    pub unmatched_lines: usize,
}

impl Snapshot {
    /// Joins the three listings.
    pub fn join(
        rows: Vec<LockRow>,
        entries: &[FileEntry],
        sessions: &HashMap<u32, Session>,
    ) -> Self {
        let mut fid_counts: HashMap<u32, u32> = HashMap::with_capacity(entries.len());
        let mut by_path: HashMap<&str, Vec<(u32, bool)>> = HashMap::with_capacity(entries.len());
        for e in entries {
            *fid_counts.entry(e.fid).or_default() += 1;
            by_path
                .entry(e.path.as_str())
                .or_default()
                .push((e.fid, false));
        }
        let mut opens = Vec::with_capacity(rows.len());
        let mut unmatched_lines = 0;
        for row in rows {
            let path = if row.name == "." {
                String::new()
            } else {
                row.name.clone()
            };
            match row.holder {
                Holder::Disconnected => {
                    let id = handle_id::disconnected(
                        row.opened_at,
                        &row.service_path,
                        &row.name,
                        row.access_mask,
                    );
                    opens.push(Open {
                        id,
                        fid: None,
                        pid: None,
                        service_path: row.service_path,
                        path,
                        access_mask: row.access_mask,
                        opened_at: row.opened_at,
                        session: None,
                    });
                }
                Holder::Pid(pid) => {
                    let key = enum_path(&row.service_path, &row.name);
                    let Some(fid) = by_path.get_mut(key.as_str()).and_then(|c| take_fid(c, pid))
                    else {
                        unmatched_lines += 1;
                        continue;
                    };
                    opens.push(Open {
                        id: handle_id::live(row.opened_at, fid),
                        fid: Some(fid),
                        pid: Some(pid),
                        service_path: row.service_path,
                        path,
                        access_mask: row.access_mask,
                        opened_at: row.opened_at,
                        session: sessions.get(&pid).cloned(),
                    });
                }
            }
        }
        opens.sort_by_key(|o| o.id);
        // Two opens share an id only when they share a fid (a collision) and an open second,
        // or two disconnected opens look alike. Keep ids unique so markers stay exact; the
        // close guard looks at the fid, not the id, so a bumped id is never closed wrongly.
        for i in 1..opens.len() {
            if opens[i].id <= opens[i - 1].id {
                opens[i].id = HandleId(opens[i - 1].id.0 + 1);
            }
        }
        Self {
            opens,
            fid_counts,
            unmatched_lines,
        }
    }

    /// How many live opens share `fid`.
    pub fn fid_count(&self, fid: u32) -> u32 {
        self.fid_counts.get(&fid).copied().unwrap_or(0)
    }

    /// The opens on `service_path` at `path` (and below it when `recursive`), ascending by id,
    /// after `after`.
    pub fn scope<'a>(
        &'a self,
        service_path: &'a str,
        path: &'a str,
        recursive: bool,
        after: Option<HandleId>,
    ) -> impl Iterator<Item = &'a Open> + 'a {
        let start = after.map_or(0, |a| self.opens.partition_point(|o| o.id <= a));
        self.opens[start..]
            .iter()
            .filter(move |o| o.service_path == service_path && covers(path, recursive, &o.path))
    }

    /// Whether any open is at exactly `path` or below it.
    pub fn has_path(&self, service_path: &str, path: &str) -> (bool, bool) {
        let mut exact = false;
        let mut below = false;
        for o in self.opens.iter().filter(|o| o.service_path == service_path) {
            exact |= o.path == path;
            below |= is_below(path, &o.path);
        }
        (exact, below)
    }
}

/// Whether an operation on `target` (recursive or not) reaches an open at `path`.
pub fn covers(target: &str, recursive: bool, path: &str) -> bool {
    path == target || (recursive && is_below(target, path))
}

/// Whether `path` lies strictly below directory `dir` (everything lies below the root).
fn is_below(dir: &str, path: &str) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Pairs a line of `pid` with the first unused entry of its path whose fid carries that pid:
/// exactly first, then with extra bits (a `share_file_id` past 65,535 ORs into the pid half).
fn take_fid(candidates: &mut [(u32, bool)], pid: u32) -> Option<u32> {
    let p = pid & 0xFFFF;
    let exact = candidates
        .iter()
        .position(|&(f, used)| !used && f >> 16 == p);
    let loose = || {
        candidates
            .iter()
            .position(|&(f, used)| !used && (f >> 16) & p == p)
    };
    let i = exact.or_else(loose)?;
    candidates[i].1 = true;
    Some(candidates[i].0)
}

/// The protocol's rights for an NT access mask (generic rights are already mapped by smbd;
/// they are checked anyway).
pub fn access_rights(mask: u32) -> AccessRights {
    const READ_DATA: u32 = 0x1;
    const WRITE_DATA: u32 = 0x2;
    const APPEND_DATA: u32 = 0x4;
    const DELETE: u32 = 0x1_0000;
    const GENERIC_ALL: u32 = 0x1000_0000;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const GENERIC_READ: u32 = 0x8000_0000;
    let mut r = AccessRights::NONE;
    if mask & (READ_DATA | GENERIC_READ | GENERIC_ALL) != 0 {
        r = r.union(AccessRights::READ);
    }
    if mask & (WRITE_DATA | APPEND_DATA | GENERIC_WRITE | GENERIC_ALL) != 0 {
        r = r.union(AccessRights::WRITE);
    }
    if mask & (DELETE | GENERIC_ALL) != 0 {
        r = r.union(AccessRights::DELETE);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(holder: Holder, name: &str, secs: i64, mask: u32) -> LockRow {
        LockRow {
            holder,
            uid: "1001".into(),
            access_mask: mask,
            oplock: "NONE".into(),
            service_path: "/srv/data".into(),
            name: name.into(),
            opened_at: Timestamp::from_second(1_800_000_000 + secs).unwrap(),
        }
    }

    fn entry(fid: u32, path: &str) -> FileEntry {
        FileEntry {
            fid,
            user: "u".into(),
            path: path.into(),
        }
    }

    #[test]
    fn joins_by_path_and_pid_in_order() {
        let pid = 16476u32;
        let f = |sfid: u32| (pid << 16) | sfid;
        let rows = vec![
            row(Holder::Pid(pid), "sp   ace.txt", 5, 0x120089),
            row(Holder::Pid(pid), "sp   ace.txt", 5, 0x130089),
            row(Holder::Pid(pid), ".", 1, 0x81),
            row(Holder::Pid(7), "a/b.txt", 2, 0x12019f),
            row(Holder::Pid(8), "gone.txt", 3, 0x1),
            row(Holder::Disconnected, "durable.txt", 4, 0x12019f),
        ];
        let entries = vec![
            entry(f(9), "C:\\srv\\data\\sp   ace.txt"),
            entry(f(7), "C:\\srv\\data\\sp   ace.txt"),
            entry(f(3), "C:\\srv\\data"),
            // pid 7 with share_file_id 0x1_0005: the overflow ORs 1 into the pid half.
            entry((7 << 16) | 0x1_0005, "C:\\srv\\data\\a\\b.txt"),
            entry(f(9), "C:\\other\\x"),
        ];
        let mut sessions = HashMap::new();
        sessions.insert(
            pid,
            Session {
                session_id: 77,
                client_ip: "127.0.0.1:1".into(),
                client_name: None,
            },
        );
        let snap = Snapshot::join(rows, &entries, &sessions);
        assert_eq!(snap.unmatched_lines, 1, "gone.txt has no entry");
        let by_name: Vec<_> = snap
            .opens
            .iter()
            .map(|o| (o.path.as_str(), o.fid, o.access_mask))
            .collect();
        assert_eq!(
            by_name,
            [
                ("", Some(f(3)), 0x81),
                ("a/b.txt", Some((7 << 16) | 0x1_0005), 0x12019f),
                ("sp   ace.txt", Some(f(7)), 0x130089),
                ("sp   ace.txt", Some(f(9)), 0x120089),
                // Disconnected opens carry the top bit, so they sort last.
                ("durable.txt", None, 0x12019f),
            ]
        );
        assert_eq!(
            snap.fid_count(f(9)),
            2,
            "the same fid in another share counts"
        );
        assert_eq!(snap.fid_count(f(3)), 1);
        assert_eq!(snap.opens[0].session.as_ref().unwrap().session_id, 77);
        assert!(snap.opens[4].is_disconnected());

        let all: Vec<_> = snap
            .scope("/srv/data", "", true, None)
            .map(|o| o.path.as_str())
            .collect();
        assert_eq!(all.len(), 5);
        let root_only: Vec<_> = snap
            .scope("/srv/data", "", false, None)
            .map(|o| o.path.as_str())
            .collect();
        assert_eq!(root_only, [""]);
        let after = snap.opens[1].id;
        assert_eq!(snap.scope("/srv/data", "", true, Some(after)).count(), 3);
        assert_eq!(snap.scope("/srv/data", "a", true, None).count(), 1);
        assert_eq!(snap.scope("/srv/data", "a", false, None).count(), 0);
        assert_eq!(snap.has_path("/srv/data", "a"), (false, true));
        assert_eq!(snap.has_path("/srv/data", "a/b.txt"), (true, false));
    }

    #[test]
    fn ids_stay_unique() {
        let rows = vec![
            row(Holder::Disconnected, "d.txt", 4, 1),
            row(Holder::Disconnected, "d.txt", 4, 1),
        ];
        let snap = Snapshot::join(rows, &[], &HashMap::new());
        assert_eq!(snap.opens[1].id.0, snap.opens[0].id.0 + 1);
    }

    #[test]
    fn subtree_matching() {
        assert!(covers("a", true, "a/b"));
        assert!(!covers("a", true, "ab/c"));
        assert!(!covers("a", false, "a/b"));
        assert!(covers("", true, "x"));
        assert!(covers("", false, ""));
    }

    #[test]
    fn rights() {
        assert_eq!(
            access_rights(0x12019f),
            AccessRights::READ.union(AccessRights::WRITE)
        );
        assert_eq!(access_rights(0x81), AccessRights::READ);
        assert_eq!(
            access_rights(0x130089),
            AccessRights::READ.union(AccessRights::DELETE)
        );
        assert_eq!(access_rights(0x1000_0000).bits(), 7);
        assert!(access_rights(0x80).is_empty());
    }
}
