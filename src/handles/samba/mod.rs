//! The Samba store: the open handles of a real Samba server on this host, listed from
//! `smbstatus` and closed with MS-SRVS NetFileClose, behind the same [`HandleService`] as the
//! memory store, so `az`, the Azure SDKs and our own client manage Samba shares like Azure
//! Files.
//!
//! One request takes one fresh look at the server (see [`snapshot`]):
//!
//! - `smbstatus -L -f` (text) lists every open: pid, access mask, path, open time, and the
//!   disconnected durable opens (`-f` skips the "is the process alive" check that hides them).
//!   Its JSON form is avoided on purpose: it is quadratic in Samba 4.17.
//! - `smbstatus -p --json` lists sessions: who is behind each smbd process.
//! - `net rpc file` (NetFileEnum) gives each live open's 32-bit srvsvc file id, the id
//!   NetFileClose takes and the low half of our [`HandleId`](crate::protocol::HandleId).
//! - `stat` on the share's directory gives FileId and ParentId (inodes) for the handles of
//!   the page, and tells missing paths apart.
//!
//! Handles are listed in ascending id order (oldest open first) and paged with the shared
//! [`MarkerCodec`], exactly like the memory store. Force Close closes one open per
//! NetFileClose, only when its fid is unique among live opens (see [`close`]).

mod close;
mod credentials;
#[cfg(test)]
mod fixtures;
mod fsinfo;
mod handle_id;
mod locks;
mod netfile;
mod sessions;
mod shares;
mod snapshot;
mod tools;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;

use super::{Error, HandleService, MarkerCodec, MarkerKind, PathProperties, describe};
use crate::protocol::{
    ClosePage, CloseRequest, Handle, HandleId, ListPage, ListRequest, MAX_RESULTS_LIMIT,
    StorageError, Target,
};

pub use credentials::{Credentials, CredentialsError};
pub use handle_id::{
    DISCONNECTED as DISCONNECTED_HANDLE_BIT, is_disconnected as is_disconnected_handle,
};
pub use shares::{Share, ShareSet};
pub use tools::{ToolError, ToolPaths};

use fsinfo::{Inodes, Kind, LookupError};
use snapshot::{Open, Snapshot};

/// The `ClientName` a disconnected durable open is listed with (its `ClientIp` is
/// `0.0.0.0:0` and its `SessionId` 0): the client is gone, only its open remains.
pub const DISCONNECTED_CLIENT_NAME: &str = "disconnected-durable-handle";

/// How to reach the Samba server and how hard to drive it.
#[derive(Debug, Clone)]
pub struct SambaConfig {
    /// The server's smb.conf; every tool gets it with `-s`.
    pub smb_conf: PathBuf,
    /// The login for NetFileEnum and NetFileClose (a BUILTIN\Administrators member).
    pub credentials: Credentials,
    /// The address `net rpc` dials (port 445, smbd's `smb ports` must include it).
    pub rpc_host: String,
    /// The most handles one Force Close Handles call closes before answering with a marker.
    pub close_batch: usize,
    /// NetFileClose calls in flight at once (each is one `net` process and SMB login).
    pub close_parallelism: usize,
    /// How long one Force Close Handles call may keep starting closes before it answers
    /// with a marker (clients time calls out; the Azure SDK after about a minute).
    pub close_time_budget: Duration,
    /// How long one tool run may take before it is stopped.
    pub tool_timeout: Duration,
    /// Where the tools are.
    pub tools: ToolPaths,
}

impl SambaConfig {
    /// Defaults for everything but the smb.conf and the login: RPC to 127.0.0.1, batches of
    /// 1,000, 4 closes in flight, 20 s of closing per call, 60 s per tool run.
    pub fn new(smb_conf: impl Into<PathBuf>, credentials: Credentials) -> Self {
        Self {
            smb_conf: smb_conf.into(),
            credentials,
            rpc_host: "127.0.0.1".to_owned(),
            close_batch: super::memory::DEFAULT_CLOSE_BATCH,
            close_parallelism: 4,
            close_time_budget: Duration::from_secs(20),
            tool_timeout: Duration::from_secs(60),
            tools: ToolPaths::default(),
        }
    }
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum SambaError {
    /// testparm could not read the smb.conf.
    #[error("reading the shares of {path}: {source}")]
    Shares {
        /// The smb.conf.
        path: String,
        /// What went wrong.
        source: ToolError,
    },
    /// The smb.conf exports no share this store can serve.
    #[error("{path} exports no disk share with a fixed absolute path")]
    NoShares {
        /// The smb.conf.
        path: String,
    },
}

/// The shares as last read, and the smb.conf's modification time then.
struct ShareCache {
    set: Arc<ShareSet>,
    mtime: Option<SystemTime>,
}

/// A [`HandleService`] over a Samba server on this host.
pub struct SambaStore {
    config: SambaConfig,
    shares: RwLock<ShareCache>,
    markers: MarkerCodec,
    /// Opens on the server at the last look ([`NOT_LOOKED_YET`] before the first): the
    /// store's size, as of the last listing or close, since counting costs a look.
    opens_seen: std::sync::atomic::AtomicUsize,
}

/// `opens_seen` before the first look at the server.
const NOT_LOOKED_YET: usize = usize::MAX;

/// Tool timings of one look at the server, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    locks: Duration,
    sessions: Duration,
    netfile: Duration,
    parse: Duration,
}

impl SambaStore {
    /// A store over the server `config.smb_conf` describes; reads its shares now.
    pub async fn open(config: SambaConfig) -> Result<Self, SambaError> {
        let set = read_shares(&config).await?;
        if set.shares.is_empty() {
            return Err(SambaError::NoShares {
                path: config.smb_conf.display().to_string(),
            });
        }
        for (name, why) in &set.skipped {
            tracing::info!(section = %name, reason = why, "smb.conf section not served");
        }
        let mtime = mtime(&config.smb_conf);
        Ok(Self {
            shares: RwLock::new(ShareCache {
                set: Arc::new(set),
                mtime,
            }),
            config,
            markers: MarkerCodec::new(),
            opens_seen: std::sync::atomic::AtomicUsize::new(NOT_LOOKED_YET),
        })
    }

    /// The shares served now.
    pub fn shares(&self) -> Arc<ShareSet> {
        self.shares.read().expect("lock poisoned").set.clone()
    }

    /// Re-reads the shares when smb.conf changed since the last read (a reload that fails
    /// keeps the old list and says so).
    async fn current_shares(&self) -> Arc<ShareSet> {
        let now = mtime(&self.config.smb_conf);
        let (set, stale) = {
            let cache = self.shares.read().expect("lock poisoned");
            (cache.set.clone(), cache.mtime != now)
        };
        if !stale {
            return set;
        }
        match read_shares(&self.config).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                let mut cache = self.shares.write().expect("lock poisoned");
                cache.set = fresh.clone();
                cache.mtime = now;
                tracing::info!(
                    shares = fresh.shares.len(),
                    "smb.conf changed; shares re-read"
                );
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "smb.conf changed but could not be re-read; serving the shares read before");
                set
            }
        }
    }

    async fn share_of(&self, target: &Target) -> Result<Share, Error> {
        let shares = self.current_shares().await;
        shares
            .get(&target.share)
            .cloned()
            .ok_or_else(|| Error::storage(target, StorageError::share_not_found()))
    }

    /// One fresh look at the server: smbstatus lines, sessions and NetFileEnum, joined.
    async fn observe(&self, target: &Target) -> Result<Snapshot, Error> {
        let backend = |message: String| Error::Backend {
            target: describe(target),
            message,
        };
        let shares = self.current_shares().await;
        let conf = self.config.smb_conf.display().to_string();
        let timeout = self.config.tool_timeout;
        let locks = tools::Run {
            label: "smbstatus -L -f",
            program: &self.config.tools.smbstatus,
            args: vec!["-s".into(), conf.clone(), "-L".into(), "-f".into()],
            env: vec![],
            timeout,
        };
        let sessions = tools::Run {
            label: "smbstatus -p --json",
            program: &self.config.tools.smbstatus,
            args: vec!["-s".into(), conf.clone(), "-p".into(), "--json".into()],
            env: vec![],
            timeout,
        };
        let netfile = self.net_run("net rpc file", vec!["rpc".into(), "file".into()]);
        let (locks, sessions, netfile) =
            tokio::join!(locks.success(), sessions.success(), netfile.success());
        let tool_error = |e: ToolError| backend(hint(e));
        let (locks, sessions, netfile) = (
            locks.map_err(tool_error)?,
            sessions.map_err(tool_error)?,
            netfile.map_err(tool_error)?,
        );
        let parse_started = Instant::now();
        let Listings {
            snap,
            netfile_entries,
            bad_rows,
            bad_entries,
        } = parse_listings(
            &shares.paths_longest_first(),
            &locks.stdout,
            &netfile.stdout,
            &sessions.stdout,
        )
        .map_err(backend)?;
        self.opens_seen
            .store(snap.opens.len(), std::sync::atomic::Ordering::Relaxed);
        for (tool, bad) in [
            ("smbstatus -L -f", &bad_rows),
            ("net rpc file", &bad_entries),
        ] {
            if let Some(first) = bad.first() {
                tracing::warn!(tool, skipped = bad.len(), first = %first, "unparsable output lines skipped");
            }
        }
        let timings = Timings {
            locks: locks.elapsed,
            sessions: sessions.elapsed,
            netfile: netfile.elapsed,
            parse: parse_started.elapsed(),
        };
        tracing::debug!(
            opens = snap.opens.len(),
            netfile_entries,
            unmatched_lines = snap.unmatched_lines,
            smbstatus_locks_ms = ms(timings.locks),
            smbstatus_sessions_ms = ms(timings.sessions),
            net_rpc_file_ms = ms(timings.netfile),
            parse_ms = ms(timings.parse),
            "samba: observed opens"
        );
        Ok(snap)
    }

    /// A `net` run with the login in its environment.
    fn net_run(&self, label: &'static str, mut args: Vec<String>) -> tools::Run<'_> {
        let mut full = vec!["-s".into(), self.config.smb_conf.display().to_string()];
        full.append(&mut args);
        full.extend(["-S".into(), self.config.rpc_host.clone()]);
        tools::Run {
            label,
            program: &self.config.tools.net,
            args: full,
            env: self.config.credentials.child_env(),
            timeout: self.config.tool_timeout,
        }
    }

    /// Checks the target path: 404s for missing paths, 400 for `x-ms-recursive` on a file.
    /// A path gone from disk but still held open (deleted while open) counts as present.
    async fn check_target(
        &self,
        share: &Share,
        target: &Target,
        snap: Option<&Snapshot>,
    ) -> Result<Option<Kind>, Error> {
        let root = share.path.clone();
        let rel = target.path.clone();
        let looked = tokio::task::spawn_blocking(move || fsinfo::lookup(&root, &rel))
            .await
            .map_err(|e| Error::Backend {
                target: describe(target),
                message: format!("path lookup task failed: {e}"),
            })?;
        let kind = match looked {
            Ok(kind) => Some(kind),
            Err(LookupError::Io(message)) => {
                return Err(Error::Backend {
                    target: describe(target),
                    message,
                });
            }
            Err(LookupError::NotFound(err)) => {
                let sp = share.path.to_string_lossy();
                match snap.map(|s| s.has_path(&sp, &target.path)) {
                    Some((_, true)) => Some(Kind::Directory),
                    Some((true, false)) => Some(Kind::File),
                    // Not known yet: the caller looks again with a snapshot.
                    None => None,
                    Some((false, false)) => return Err(Error::storage(target, err)),
                }
            }
        };
        if target.is_recursive() && kind == Some(Kind::File) {
            let err = StorageError::invalid_header(
                "x-ms-recursive",
                "true",
                "x-ms-recursive applies to directories only, and the path is a file.",
            );
            return Err(Error::storage(target, err));
        }
        Ok(kind)
    }

    /// Share, target check and snapshot, in the order that costs least when the target is
    /// wrong.
    async fn prepare(&self, target: &Target) -> Result<(Share, Snapshot), Error> {
        let share = self.share_of(target).await?;
        let known = self.check_target(&share, target, None).await?;
        let snap = self.observe(target).await?;
        if known.is_none() {
            self.check_target(&share, target, Some(&snap)).await?;
        }
        Ok((share, snap))
    }

    fn open_marker(
        &self,
        kind: MarkerKind,
        target: &Target,
        marker: Option<&crate::protocol::Marker>,
    ) -> Result<Option<HandleId>, StorageError> {
        marker
            .map(|m| self.markers.open(kind, target, m))
            .transpose()
    }

    async fn list_page(&self, req: &ListRequest) -> Result<ListPage, Error> {
        let target = &req.target;
        let after = self
            .open_marker(MarkerKind::List, target, req.marker.as_ref())
            .map_err(|e| Error::storage(target, e))?;
        let (share, snap) = self.prepare(target).await?;
        let limit = req
            .max_results
            .unwrap_or(MAX_RESULTS_LIMIT)
            .clamp(1, MAX_RESULTS_LIMIT) as usize;
        let sp = share.path.to_string_lossy().into_owned();
        let mut page: Vec<Open> = snap
            .scope(&sp, &target.path, target.is_recursive(), after)
            .take(limit + 1)
            .cloned()
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next_marker = more.then(|| {
            let last = page.last().expect("a full page is not empty").id;
            self.markers.mint(MarkerKind::List, target, last)
        });
        let root = share.path.clone();
        let handles = tokio::task::spawn_blocking(move || {
            let mut inodes = Inodes::new(&root);
            page.iter()
                .map(|o| to_handle(o, &mut inodes))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Backend {
            target: describe(target),
            message: format!("inode lookup task failed: {e}"),
        })?;
        Ok(ListPage {
            handles,
            next_marker,
        })
    }
}

/// One look at the server, parsed: the joined snapshot and the lines that did not parse.
struct Listings {
    snap: Snapshot,
    netfile_entries: usize,
    bad_rows: Vec<locks::BadLine>,
    bad_entries: Vec<locks::BadLine>,
}

/// Parses and joins the three tools' raw output (`smbstatus -L -f`, `net rpc file`,
/// `smbstatus -p --json`); `paths` are the shares' service paths, longest first. Fails only
/// when the sessions are not readable; a bad line of the other two is skipped and returned.
fn parse_listings(
    paths: &[String],
    locks_out: &[u8],
    netfile_out: &[u8],
    sessions_out: &[u8],
) -> Result<Listings, String> {
    let (rows, bad_rows) = locks::parse(&String::from_utf8_lossy(locks_out), paths);
    let (entries, bad_entries) = netfile::parse_enum(&String::from_utf8_lossy(netfile_out));
    let sessions_by_pid = sessions::parse(sessions_out)?;
    Ok(Listings {
        snap: Snapshot::join(rows, &entries, &sessions_by_pid),
        netfile_entries: entries.len(),
        bad_rows,
        bad_entries,
    })
}

/// Entry points for the fuzz targets in `fuzz/`: the parsers of the tools' output are
/// private to this store, and fuzzing must reach them as `observe` calls them. Not a
/// supported API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `testparm -s` output into the served shares; returns how many there are.
    pub fn testparm(text: &str) -> usize {
        super::shares::parse_testparm(text).shares.len()
    }

    /// Parses one look at the server as `observe` does, with the shares of `testparm`, and
    /// walks the snapshot as a listing would. Returns the number of opens.
    pub fn listings(
        testparm: &str,
        locks_out: &[u8],
        netfile_out: &[u8],
        sessions_out: &[u8],
    ) -> Result<usize, String> {
        let shares = super::shares::parse_testparm(testparm);
        let listings = super::parse_listings(
            &shares.paths_longest_first(),
            locks_out,
            netfile_out,
            sessions_out,
        )?;
        let snap = &listings.snap;
        for open in &snap.opens {
            let _ = super::snapshot::access_rights(open.access_mask);
            let _ = super::close::guard(open, snap);
            let _ = snap.has_path(&open.service_path, &open.path);
            let _ = snap
                .scope(&open.service_path, &open.path, true, Some(open.id))
                .count();
        }
        Ok(snap.opens.len())
    }
}

/// The wire form of an open.
fn to_handle(o: &Open, inodes: &mut Inodes<'_>) -> Handle {
    let (file_id, parent_id) = inodes.ids(&o.path);
    let (session_id, client_ip, client_name) = match (&o.session, o.is_disconnected()) {
        (_, true) => (
            0,
            "0.0.0.0:0".to_owned(),
            Some(DISCONNECTED_CLIENT_NAME.to_owned()),
        ),
        (Some(s), false) => (s.session_id, s.client_ip.clone(), s.client_name.clone()),
        // A live process smbstatus -p did not list (it just connected or is going away).
        (None, false) => (0, "0.0.0.0:0".to_owned(), None),
    };
    Handle {
        handle_id: o.id,
        path: o.path.clone(),
        file_id,
        parent_id,
        session_id,
        client_ip,
        client_name,
        open_time: o.opened_at,
        last_reconnect_time: None,
        access_rights: Some(snapshot::access_rights(o.access_mask)),
    }
}

impl HandleService for SambaStore {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(self.list_page(req))
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(self.close_page(req))
    }

    /// From the share's directory on disk (see [`fsinfo::properties`]): a file deleted while
    /// open is not found here, as Azure answers for a file whose delete is pending.
    fn path_properties<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<PathProperties, Error>> {
        Box::pin(async move {
            let share = self.share_of(target).await?;
            let root = share.path.clone();
            let rel = target.path.clone();
            let looked = tokio::task::spawn_blocking(move || fsinfo::properties(&root, &rel))
                .await
                .map_err(|e| Error::Backend {
                    target: describe(target),
                    message: format!("path lookup task failed: {e}"),
                })?;
            looked.map_err(|e| match e {
                LookupError::NotFound(err) => Error::storage(target, err),
                LookupError::Io(message) => Error::Backend {
                    target: describe(target),
                    message,
                },
            })
        })
    }

    /// The shares of smb.conf; the open handles are only known by listing them.
    fn size(&self) -> crate::handles::StoreSize {
        crate::handles::StoreSize {
            shares: Some(self.shares().shares.len()),
            handles: match self.opens_seen.load(std::sync::atomic::Ordering::Relaxed) {
                NOT_LOOKED_YET => None,
                n => Some(n),
            },
        }
    }
}

async fn read_shares(config: &SambaConfig) -> Result<ShareSet, SambaError> {
    let out = tools::Run {
        label: "testparm -s",
        program: &config.tools.testparm,
        args: vec!["-s".into(), config.smb_conf.display().to_string()],
        env: vec![],
        timeout: config.tool_timeout,
    }
    .success()
    .await
    .map_err(|source| SambaError::Shares {
        path: config.smb_conf.display().to_string(),
        source,
    })?;
    Ok(shares::parse_testparm(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// A tool error with a hint for the failures an operator can fix.
fn hint(e: ToolError) -> String {
    let text = e.to_string();
    let extra = if text.contains("LOGON_FAILURE") {
        " (the RPC login was refused: check the Samba credentials)"
    } else if text.starts_with("net rpc file failed (exit code 5)") {
        " (NetFileEnum needs a member of BUILTIN\\Administrators)"
    } else if text.starts_with("net rpc file failed") {
        " (net rpc dials port 445 of the RPC host: is smbd listening there, and is the login valid?)"
    } else if text.starts_with("smbstatus") && text.contains("failed") {
        " (smbstatus must run as root with the server's smb.conf)"
    } else {
        ""
    };
    format!("{text}{extra}")
}
