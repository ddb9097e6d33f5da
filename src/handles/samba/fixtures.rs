//! Captured (and anonymised) output of the real Samba 4.17 tools, parsed and joined end to
//! end: the files in `tests/fixtures/samba/` come from one server holding a directory, two
//! files in it, two opens of one file by one process, the share root, and a disconnected
//! durable open.

use super::snapshot::{Snapshot, access_rights};
use super::{locks, netfile, sessions, shares};
use crate::protocol::AccessRights;

const TESTPARM: &str = include_str!("../../../tests/fixtures/samba/testparm-s.txt");
const LOCKS: &str = include_str!("../../../tests/fixtures/samba/smbstatus-L-f.txt");
const SESSIONS: &str = include_str!("../../../tests/fixtures/samba/smbstatus-p.json");
const NETFILE: &str = include_str!("../../../tests/fixtures/samba/net-rpc-file.txt");

#[test]
fn captured_outputs_join_into_handles() {
    let set = shares::parse_testparm(TESTPARM);
    let names: Vec<_> = set.shares.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["data", "other"]);

    let (rows, bad) = locks::parse(LOCKS, &set.paths_longest_first());
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(rows.len(), 7);
    let (entries, bad) = netfile::parse_enum(NETFILE);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        entries.len(),
        6,
        "NetFileEnum does not see the disconnected open"
    );
    let by_pid = sessions::parse(SESSIONS.as_bytes()).unwrap();
    assert_eq!(by_pid.len(), 2);

    let snap = Snapshot::join(rows, &entries, &by_pid);
    assert_eq!(snap.unmatched_lines, 0);
    assert!(snap.fid_counts.values().all(|&n| n == 1));
    let listed: Vec<_> = snap
        .opens
        .iter()
        .map(|o| (o.path.as_str(), o.fid, o.pid))
        .collect();
    assert_eq!(
        listed,
        [
            ("held dir", Some(1572274181), Some(23991)),
            ("held dir/f00000.txt", Some(1572274184), Some(23991)),
            ("held dir/f00001.txt", Some(1572274187), Some(23991)),
            ("", Some(1572798467), Some(23999)),
            ("sp   ace é.txt", Some(1572798469), Some(23999)),
            ("sp   ace é.txt", Some(1572798471), Some(23999)),
            ("durable.txt", None, None),
        ],
        "oldest first; within a second by fid; disconnected last"
    );
    // Two opens of one file by one process pair up in walk order: the line printed first
    // (GENERIC_READ only) goes with the entry printed first.
    let sp: Vec<_> = snap
        .opens
        .iter()
        .filter(|o| o.path.starts_with("sp"))
        .collect();
    assert_eq!((sp[1].fid, sp[1].access_mask), (Some(1572798471), 0x120089));
    assert_eq!(
        access_rights(sp[0].access_mask),
        AccessRights::READ.union(AccessRights::DELETE)
    );
    let s = snap.opens[0].session.as_ref().unwrap();
    assert_eq!(
        (s.session_id, s.client_ip.as_str()),
        (96349579, "127.0.0.1:50366")
    );
    assert_eq!(
        snap.opens[0].opened_at,
        "2026-11-21T06:01:40Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert!(snap.opens[6].is_disconnected() && snap.opens[6].session.is_none());
    assert_eq!(
        snap.scope("/srv/samba/data", "held dir", true, None)
            .count(),
        3
    );
}
