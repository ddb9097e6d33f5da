//! Force Close Handles on Samba: one NetFileClose per open, guarded.
//!
//! The guard: Samba's srvsvc fid is `(pid << 16) | share_file_id` cut to 32 bits, and
//! NetFileClose closes *every* live open whose fid matches. Once a connection has made about
//! 16k to 30k opens, its `share_file_id` passes 65,535, spills into the pid bits, and two live
//! opens can share a fid. So an open is closed only when its fid is unique in the fresh
//! NetFileEnum taken for this very call; otherwise it counts as failed and a warning says why.
//!
//! Disconnected durable opens count as failed too: NetFileEnum cannot see them and
//! NetFileClose cannot reach them (Samba skips entries whose process is gone). They go when
//! their client reconnects and closes them, when another client opens the file, when their
//! durable timeout passes (the scavenger), or when smbd restarts.

use futures::StreamExt;

use super::netfile::CloseOutcome;
use super::snapshot::{Open, Snapshot, covers};
use super::{MarkerKind, SambaStore, tools};
use crate::handles::{Error, describe};
use crate::protocol::{ClosePage, CloseRequest, HandleSelector, Target};

/// Individual warnings logged per call before they are only counted.
const WARN_LIMIT: usize = 5;

/// Why one open was not closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A disconnected durable open.
    Disconnected,
    /// Its fid is shared by this many live opens.
    FidCollision(u32),
    /// `net rpc file close` failed for it.
    Rpc(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disconnected => f.write_str(
                "disconnected durable open: NetFileClose cannot reach an open whose smbd process is gone; it ends when the client reclaims it, another client opens the file, or its durable timeout passes",
            ),
            Self::FidCollision(n) => write!(
                f,
                "its 32-bit srvsvc file id is shared by {n} live opens (share_file_id overflowed into the pid bits); NetFileClose would close them all"
            ),
            Self::Rpc(why) => write!(f, "NetFileClose failed: {why}"),
        }
    }
}

/// What became of one open.
enum Outcome {
    Closed,
    /// It was already gone (its client closed it between our look and our close).
    Gone,
    Failed(Refusal),
}

/// Whether an open may be closed by fid at all.
pub(super) fn guard(open: &Open, snap: &Snapshot) -> Result<u32, Refusal> {
    let Some(fid) = open.fid else {
        return Err(Refusal::Disconnected);
    };
    match snap.fid_count(fid) {
        1 => Ok(fid),
        n => Err(Refusal::FidCollision(n)),
    }
}

impl SambaStore {
    pub(super) async fn close_page(&self, req: &CloseRequest) -> Result<ClosePage, Error> {
        let target = &req.target;
        let after = match req.handles {
            HandleSelector::All => self
                .open_marker(MarkerKind::Close, target, req.marker.as_ref())
                .map_err(|e| Error::storage(target, e))?,
            HandleSelector::Id(_) => None,
        };
        let (share, snap) = self.prepare(target).await?;
        let sp = share.path.to_string_lossy().into_owned();
        let recursive = target.is_recursive();
        let (batch, more): (Vec<&Open>, bool) = match req.handles {
            HandleSelector::Id(id) => {
                // Closed through its own path, or through an ancestor directory with
                // x-ms-recursive: true (as the memory store). Elsewhere: 200, closed 0.
                let found = snap
                    .opens
                    .binary_search_by_key(&id, |o| o.id)
                    .ok()
                    .map(|i| &snap.opens[i])
                    .filter(|o| o.service_path == sp && covers(&target.path, recursive, &o.path));
                (found.into_iter().collect(), false)
            }
            HandleSelector::All => {
                let batch_size = self.config.close_batch.max(1);
                let mut batch: Vec<&Open> = snap
                    .scope(&sp, &target.path, recursive, after)
                    .take(batch_size + 1)
                    .collect();
                let more = batch.len() > batch_size;
                batch.truncate(batch_size);
                (batch, more)
            }
        };
        let started = std::time::Instant::now();
        let deadline = started + self.config.close_time_budget;
        let parallel = self.config.close_parallelism.max(1);
        // Closes start in id order, at most `parallel` at a time, and none starts after the
        // time budget: a call must answer before clients give up (the Azure SDK retries a
        // call it timed out, and a dropped call's closes go uncounted). Closes in flight when
        // the budget runs out finish; the marker then points after the last one started.
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut launched = 0usize;
        let mut page = ClosePage::default();
        let mut warned = 0usize;
        let mut gone = 0u64;
        loop {
            while in_flight.len() < parallel
                && launched < batch.len()
                && (launched == 0 || std::time::Instant::now() < deadline)
            {
                in_flight.push_back(self.close_one(batch[launched], &snap, target));
                launched += 1;
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            match result? {
                (_, Outcome::Closed) => page.closed += 1,
                (_, Outcome::Gone) => gone += 1,
                (open, Outcome::Failed(why)) => {
                    page.failed += 1;
                    if warned < WARN_LIMIT {
                        warned += 1;
                        tracing::warn!(
                            share = %share.name,
                            handle_id = %open.id,
                            fid = open.fid,
                            path = %crate::text::truncate(&open.path, 200),
                            reason = %why,
                            "handle not closed"
                        );
                    }
                }
            }
        }
        let out_of_time = launched < batch.len();
        let more = more || out_of_time;
        if page.failed as usize > warned {
            tracing::warn!(
                share = %share.name,
                failed = page.failed,
                logged = warned,
                "more handles were not closed than logged individually"
            );
        }
        if more {
            let last = batch[launched - 1].id;
            page.next_marker = Some(self.markers.mint(MarkerKind::Close, target, last));
        }
        tracing::debug!(
            share = %share.name,
            closed = page.closed,
            failed = page.failed,
            already_gone = gone,
            more,
            out_of_time,
            net_rpc_file_close_ms = super::ms(started.elapsed()),
            "samba: force close batch"
        );
        Ok(page)
    }

    /// Closes one open after the guard; an access-denied answer fails the whole call, since
    /// no other close can succeed with the same login either.
    async fn close_one<'o>(
        &self,
        open: &'o Open,
        snap: &Snapshot,
        target: &Target,
    ) -> Result<(&'o Open, Outcome), Error> {
        let fid = match guard(open, snap) {
            Ok(fid) => fid,
            Err(why) => return Ok((open, Outcome::Failed(why))),
        };
        let run = self.net_run(
            "net rpc file close",
            vec!["rpc".into(), "file".into(), "close".into(), fid.to_string()],
        );
        let out = match run.output().await {
            Ok(out) => out,
            Err(e) => return Ok((open, Outcome::Failed(Refusal::Rpc(e.to_string())))),
        };
        let outcome = match CloseOutcome::from_code(out.code) {
            CloseOutcome::Closed => Outcome::Closed,
            CloseOutcome::Gone => Outcome::Gone,
            CloseOutcome::AccessDenied => {
                return Err(Error::Backend {
                    target: describe(target),
                    message: "NetFileClose was refused (WERR_ACCESS_DENIED): the Samba login needs SeDiskOperatorPrivilege, which members of BUILTIN\\Administrators hold".to_owned(),
                });
            }
            CloseOutcome::Other(code) => {
                let mut why = tools::status_text(code);
                let stderr = out.stderr_excerpt();
                if !stderr.is_empty() {
                    why = format!("{why}: {stderr}");
                }
                Outcome::Failed(Refusal::Rpc(why))
            }
        };
        Ok((open, outcome))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::handles::samba::locks::{Holder, LockRow};
    use crate::handles::samba::netfile::FileEntry;

    #[test]
    fn the_guard_refuses_shared_fids_and_disconnected_opens() {
        let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let row = |holder, name: &str| LockRow {
            holder,
            uid: "0".into(),
            access_mask: 1,
            oplock: "NONE".into(),
            service_path: "/s".into(),
            name: name.into(),
            opened_at: t,
        };
        // pid 3 with share_file_id 0x1_0011 and pid 1 with 0x11 (0x1_0011 ORs 1 into the pid
        // half: 3 | 1 = 3): both report fid 0x0003_0011.
        let shared = (3 << 16) | 0x11;
        let rows = vec![
            row(Holder::Pid(3), "a"),
            row(Holder::Pid(3), "b"),
            row(Holder::Pid(9), "c"),
            row(Holder::Disconnected, "d"),
        ];
        let entries = vec![
            FileEntry {
                fid: shared,
                user: "u".into(),
                path: "C:\\s\\a".into(),
            },
            FileEntry {
                fid: shared,
                user: "u".into(),
                path: "C:\\s\\b".into(),
            },
            FileEntry {
                fid: (9 << 16) | 4,
                user: "u".into(),
                path: "C:\\s\\c".into(),
            },
        ];
        let snap = Snapshot::join(rows, &entries, &HashMap::new());
        let by = |name: &str| snap.opens.iter().find(|o| o.path == name).unwrap();
        assert_eq!(guard(by("a"), &snap), Err(Refusal::FidCollision(2)));
        assert_eq!(guard(by("b"), &snap), Err(Refusal::FidCollision(2)));
        assert_eq!(guard(by("c"), &snap), Ok((9 << 16) | 4));
        assert_eq!(guard(by("d"), &snap), Err(Refusal::Disconnected));
        assert!(
            Refusal::FidCollision(2)
                .to_string()
                .contains("shared by 2 live opens")
        );
    }
}
