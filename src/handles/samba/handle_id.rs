//! How a Samba open becomes a protocol `HandleId`.
//!
//! ```text
//!  63  62 ........................ 32  31 ......................... 0
//! [D] [ open time: seconds since 2020 ] [ srvsvc fid, or a hash when D ]
//! ```
//!
//! - The low 32 bits of a live open are its MS-SRVS file id, `(pid << 16) | share_file_id`
//!   cut to 32 bits: Samba's own id for the open, so it is derived from the smbd pid and the
//!   per-process `share_file_id`, and it is what NetFileClose takes.
//! - The open time (whole seconds; 31 bits reach 2088) makes the id never come back: a pid
//!   that is reused, or a `share_file_id` that passes 65,535 and wraps into the pid bits,
//!   yields the same fid only for an open made later, which has a later time. The id is
//!   stable while the open lives because both parts are fixed at open.
//! - `D` (bit 63) marks a disconnected durable open. It has no fid (NetFileEnum cannot see
//!   it), so its low bits are a hash of its service path, name, access mask and open time.
//!
//! Ascending ids are oldest-first, so a listing resumes after a marker's id like the memory
//! store's, and handles opened during a paged walk sort after it unless they share its second.

use jiff::Timestamp;

use crate::protocol::HandleId;

/// 2020-01-01T00:00:00Z: open times count from here so 31 bits last until 2088.
const EPOCH: i64 = 1_577_836_800;
/// The disconnected-durable flag.
pub const DISCONNECTED: u64 = 1 << 63;
const TIME_MAX: u64 = (1 << 31) - 1;

fn time_bits(opened_at: Timestamp) -> u64 {
    let secs = opened_at.as_second().saturating_sub(EPOCH).max(0) as u64;
    secs.min(TIME_MAX) << 32
}

/// The id of a live open.
pub fn live(opened_at: Timestamp, fid: u32) -> HandleId {
    HandleId(time_bits(opened_at) | u64::from(fid))
}

/// The id of a disconnected durable open.
pub fn disconnected(
    opened_at: Timestamp,
    service_path: &str,
    name: &str,
    access_mask: u32,
) -> HandleId {
    // FNV-1a: stable across runs and builds (std's hasher is seeded per process).
    let mut h: u32 = 0x811c_9dc5;
    let fields = [
        service_path.as_bytes(),
        &[0],
        name.as_bytes(),
        &[0],
        &access_mask.to_be_bytes(),
        &opened_at.as_second().to_be_bytes(),
    ];
    for b in fields.iter().flat_map(|f| f.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    HandleId(DISCONNECTED | time_bits(opened_at) | u64::from(h))
}

/// Whether an id names a disconnected durable open.
pub fn is_disconnected(id: HandleId) -> bool {
    id.0 & DISCONNECTED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let t: Timestamp = "2026-11-21T05:46:03Z".parse().unwrap();
        let id = live(t, 698_155_016);
        assert_eq!(id.0 as u32, 698_155_016, "low bits are the fid");
        assert_eq!((id.0 >> 32) as i64 + EPOCH, t.as_second());
        assert!(!is_disconnected(id));
        let later = live(
            t.checked_add(jiff::SignedDuration::from_secs(1)).unwrap(),
            1,
        );
        assert!(later > id, "later opens sort after earlier ones");

        let d = disconnected(t, "/srv/data", "durable.txt", 0x12019f);
        assert!(is_disconnected(d));
        assert_eq!(d, disconnected(t, "/srv/data", "durable.txt", 0x12019f));
        assert_ne!(d, disconnected(t, "/srv/data", "durable2.txt", 0x12019f));

        // Times before the epoch or past 2088 clamp instead of overflowing into the flag.
        assert_eq!(live(Timestamp::UNIX_EPOCH, 7).0, 7);
        assert!(!is_disconnected(live(Timestamp::MAX, 7)));
    }
}
