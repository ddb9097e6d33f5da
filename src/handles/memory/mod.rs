//! The memory store: an in-process table of shares, directories, files and open handles.
//!
//! It is the embedded default (demos, the quickstart, tests and benchmarks run on it), loaded
//! from a seed file ([`Seed`]) and changed through [`MemoryStore::open`] and friends, which the
//! handle service exposes on its admin endpoint so tests can act as SMB clients.
//!
//! Listing and closing walk handles in handle-id order. Ids are handed out ascending and never
//! reused, so a marker that records the last id returned resumes exactly where a page ended,
//! however many handles open or close in between.

mod seed;
mod share;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Serialize;

use super::{Error, HandleService, MarkerCodec, MarkerKind, PathProperties};
use crate::protocol::{
    AccessRights, ClosePage, CloseRequest, HandleId, HandleSelector, ListPage, ListRequest,
    MAX_RESULTS_LIMIT, StorageError, Target, validate_share_name,
};

pub use seed::{Seed, SeedError, SeedHandle, SeedShare};
pub use share::{MAX_PATH_CHARS, NodeKind};
use share::{NodeIx, OpenHandle, Share};

/// The default number of handles one Force Close Handles call closes.
pub const DEFAULT_CLOSE_BATCH: usize = 1000;

/// The most handles one open creates (a seed entry's or an admin request's `count`).
pub const MAX_OPEN_COUNT: u32 = 1_000_000;
/// The most handles a store holds open at once (about 100 bytes each: 1 GiB at the bound).
pub const MAX_STORE_HANDLES: u64 = 10_000_000;
/// The most shares a store holds.
pub const MAX_SHARES: usize = 10_000;
/// The most files and directories a store holds, over all its shares.
pub const MAX_NODES: u64 = 1_000_000;
/// The longest client name, in characters (a DNS name is at most 253).
pub const MAX_CLIENT_NAME_CHARS: usize = 255;

/// An in-memory handle store.
pub struct MemoryStore {
    shares: RwLock<BTreeMap<String, Arc<RwLock<Share>>>>,
    next_handle: AtomicU64,
    /// Handles open now, over all shares (bounded by [`MAX_STORE_HANDLES`]).
    open_handles: AtomicU64,
    /// Counts the nodes ever created (never removed), from 1.
    next_file: AtomicU64,
    markers: MarkerCodec,
    close_batch: usize,
}

/// What to open: one or more identical handles from one client.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    /// `ip:port` of the client.
    pub client_ip: String,
    /// The client's machine name.
    pub client_name: Option<String>,
    /// The SMB session; derived from the client when `None`.
    pub session_id: Option<u64>,
    /// When the handles were opened.
    pub open_time: Timestamp,
    /// When the client last reconnected them.
    pub last_reconnect_time: Option<Timestamp>,
    /// The rights the handles hold.
    pub access_rights: AccessRights,
    /// Whether the path is a directory (created as one when missing).
    pub directory: bool,
    /// How many identical handles to open.
    pub count: u32,
    /// The store refuses to force-close these handles (counted as failed).
    pub fail_close: bool,
}

/// Sizes of the store, for metrics and the admin endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    /// Shares.
    pub shares: usize,
    /// Directories (share roots not counted).
    pub directories: usize,
    /// Files.
    pub files: usize,
    /// Open handles.
    pub handles: usize,
}

/// Why an admin operation on the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The share does not exist.
    #[error("share {0:?} does not exist")]
    NoSuchShare(String),
    /// The request is invalid (a bad name, a path that is a file where a directory is needed).
    #[error("{0}")]
    Invalid(String),
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_CLOSE_BATCH)
    }
}

impl MemoryStore {
    /// An empty store whose Force Close Handles calls close at most `close_batch` handles each.
    pub fn new(close_batch: usize) -> Self {
        Self {
            shares: RwLock::new(BTreeMap::new()),
            next_handle: AtomicU64::new(1),
            open_handles: AtomicU64::new(0),
            next_file: AtomicU64::new(1),
            markers: MarkerCodec::new(),
            close_batch: close_batch.max(1),
        }
    }

    /// A store loaded from a seed, with `age:` entries measured back from `now`.
    pub fn from_seed(seed: &Seed, now: Timestamp, close_batch: usize) -> Result<Self, SeedError> {
        let store = Self::new(close_batch);
        seed.apply(&store, now)?;
        Ok(store)
    }

    fn share(&self, name: &str) -> Option<Arc<RwLock<Share>>> {
        self.shares
            .read()
            .expect("lock poisoned")
            .get(name)
            .cloned()
    }

    fn lookup(&self, target: &Target) -> Result<Arc<RwLock<Share>>, Error> {
        self.share(&target.share)
            .ok_or_else(|| Error::storage(target, StorageError::share_not_found()))
    }

    /// A file id for a new node, within the store's bound of [`MAX_NODES`].
    fn new_node(&self) -> Result<u64, String> {
        let n = self
            .next_file
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n <= MAX_NODES).then_some(n + 1)
            })
            .map_err(|_| format!("the store holds {MAX_NODES} files and directories, its bound"))?;
        // A bijection of a counter: unique, never 0 (the root's id), and as opaque as Azure's.
        Ok(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Reserves room for `count` more open handles, within [`MAX_STORE_HANDLES`].
    fn reserve_handles(&self, count: u32) -> Result<(), AdminError> {
        if count > MAX_OPEN_COUNT {
            return Err(AdminError::Invalid(format!(
                "count {count} is above the bound of {MAX_OPEN_COUNT} handles per open"
            )));
        }
        self.open_handles
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                n.checked_add(u64::from(count))
                    .filter(|&total| total <= MAX_STORE_HANDLES)
            })
            .map(drop)
            .map_err(|open| {
                AdminError::Invalid(format!(
                    "count {count}: the store holds {open} open handles, and its bound is {MAX_STORE_HANDLES}"
                ))
            })
    }

    /// Forgets an open handle of `share`; returns whether it was open.
    fn forget(&self, share: &mut Share, id: u64) -> bool {
        let gone = share.remove(id);
        if gone {
            self.open_handles.fetch_sub(1, Ordering::Relaxed);
        }
        gone
    }

    /// The share names, sorted.
    pub fn share_names(&self) -> Vec<String> {
        self.shares
            .read()
            .expect("lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Creates a share; creating an existing one is not an error.
    pub fn create_share(&self, name: &str) -> Result<(), AdminError> {
        validate_share_name(name).map_err(AdminError::Invalid)?;
        let mut shares = self.shares.write().expect("lock poisoned");
        if shares.len() >= MAX_SHARES && !shares.contains_key(name) {
            return Err(AdminError::Invalid(format!(
                "share {name:?}: the store holds {MAX_SHARES} shares, its bound"
            )));
        }
        shares
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(RwLock::new(Share::new())));
        Ok(())
    }

    /// Creates a file or directory (and its missing parents).
    pub fn create(&self, share: &str, path: &str, kind: NodeKind) -> Result<(), AdminError> {
        let share = self
            .share(share)
            .ok_or_else(|| AdminError::NoSuchShare(share.to_owned()))?;
        let mut share = share.write().expect("lock poisoned");
        share
            .create(path, kind, &mut || self.new_node())
            .map_err(AdminError::Invalid)?;
        Ok(())
    }

    /// Opens handles as an SMB client would; the path (and its parents) is created when missing.
    pub fn open(
        &self,
        share: &str,
        path: &str,
        spec: &OpenSpec,
    ) -> Result<Vec<HandleId>, AdminError> {
        let share = self
            .share(share)
            .ok_or_else(|| AdminError::NoSuchShare(share.to_owned()))?;
        let mut share = share.write().expect("lock poisoned");
        let kind = if spec.directory {
            NodeKind::Directory
        } else {
            NodeKind::File
        };
        // Room is reserved first: a huge count is refused before anything is created or
        // allocated, and given back if the path cannot be created.
        self.reserve_handles(spec.count)?;
        let node: NodeIx = match share.resolve(path) {
            Ok(n) => n,
            Err(_) => share
                .create(path, kind, &mut || self.new_node())
                .map_err(|e| {
                    self.open_handles
                        .fetch_sub(u64::from(spec.count), Ordering::Relaxed);
                    AdminError::Invalid(e)
                })?,
        };
        let client = share.client(&spec.client_ip, spec.client_name.as_deref());
        let session_id = spec
            .session_id
            .unwrap_or_else(|| session_of(&spec.client_ip, spec.client_name.as_deref()));
        let handle = OpenHandle {
            node,
            client,
            session_id,
            open_time: spec.open_time.as_second(),
            reconnect_time: spec.last_reconnect_time.map_or(i64::MIN, |t| t.as_second()),
            rights: spec.access_rights.bits(),
            fail_close: spec.fail_close,
        };
        let first = self
            .next_handle
            .fetch_add(u64::from(spec.count), Ordering::Relaxed);
        let ids: Vec<HandleId> = (first..first + u64::from(spec.count))
            .map(HandleId)
            .collect();
        for id in &ids {
            share.open(id.0, handle);
        }
        Ok(ids)
    }

    /// Closes handles from the client side (the SMB client closed them); returns how many
    /// were open.
    pub fn release(&self, share: &str, ids: &[HandleId]) -> Result<usize, AdminError> {
        let share = self
            .share(share)
            .ok_or_else(|| AdminError::NoSuchShare(share.to_owned()))?;
        let mut share = share.write().expect("lock poisoned");
        Ok(ids
            .iter()
            .filter(|id| self.forget(&mut share, id.0))
            .count())
    }

    /// Counts of shares, nodes and handles.
    pub fn stats(&self) -> StoreStats {
        let shares = self.shares.read().expect("lock poisoned");
        let mut stats = StoreStats {
            shares: shares.len(),
            ..StoreStats::default()
        };
        for share in shares.values() {
            let share = share.read().expect("lock poisoned");
            let (dirs, files) = share.node_counts();
            stats.directories += dirs;
            stats.files += files;
            stats.handles += share.handles.len();
        }
        stats
    }

    /// The node a target names, and whether the operation reaches below it. `x-ms-recursive:
    /// true` on a file is a 400.
    fn scope_of(share: &Share, target: &Target) -> Result<(NodeIx, bool), Error> {
        let node = share
            .resolve(&target.path)
            .map_err(|e| Error::storage(target, e))?;
        let recursive = target.is_recursive();
        if recursive && !share.nodes[node as usize].is_dir() {
            let err = StorageError::invalid_header(
                "x-ms-recursive",
                "true",
                "x-ms-recursive applies to directories only, and the path is a file.",
            );
            return Err(Error::storage(target, err));
        }
        Ok((node, recursive))
    }

    fn list_page(&self, req: &ListRequest) -> Result<ListPage, Error> {
        let target = &req.target;
        let share = self.lookup(target)?;
        let share = share.read().expect("lock poisoned");
        let (node, recursive) = Self::scope_of(&share, target)?;
        let after = match &req.marker {
            Some(m) => {
                self.markers
                    .open(MarkerKind::List, target, m)
                    .map_err(|e| Error::storage(target, e))?
                    .0
            }
            None => 0,
        };
        let limit = req
            .max_results
            .unwrap_or(MAX_RESULTS_LIMIT)
            .clamp(1, MAX_RESULTS_LIMIT) as usize;
        let mut handles = Vec::with_capacity(limit.min(share.handles.len()));
        let mut more = false;
        for (id, h) in share.scope(node, recursive, after) {
            if handles.len() == limit {
                more = true;
                break;
            }
            handles.push(share.to_handle(id, h));
        }
        let next_marker = more.then(|| {
            let last = handles.last().expect("a full page is not empty").handle_id;
            self.markers.mint(MarkerKind::List, target, last)
        });
        Ok(ListPage {
            handles,
            next_marker,
        })
    }

    fn close_page(&self, req: &CloseRequest) -> Result<ClosePage, Error> {
        let target = &req.target;
        let share = self.lookup(target)?;
        let mut share = share.write().expect("lock poisoned");
        let (node, recursive) = Self::scope_of(&share, target)?;
        match req.handles {
            HandleSelector::Id(id) => {
                // A handle is closed through its own path, or (our documented extension) through
                // an ancestor directory with x-ms-recursive: true. Elsewhere: 200, closed 0.
                let in_scope = share.handles.get(&id.0).map(|h| {
                    let reachable = h.node == node || (recursive && share.is_under(h.node, node));
                    (reachable, h.fail_close)
                });
                let mut page = ClosePage::default();
                match in_scope {
                    Some((true, true)) => page.failed = 1,
                    Some((true, false)) => page.closed = u64::from(self.forget(&mut share, id.0)),
                    _ => {}
                }
                Ok(page)
            }
            HandleSelector::All => {
                let after = match &req.marker {
                    Some(m) => {
                        self.markers
                            .open(MarkerKind::Close, target, m)
                            .map_err(|e| Error::storage(target, e))?
                            .0
                    }
                    None => 0,
                };
                let mut batch = Vec::with_capacity(self.close_batch.min(share.handles.len()));
                let mut more = false;
                for (id, h) in share.scope(node, recursive, after) {
                    if batch.len() == self.close_batch {
                        more = true;
                        break;
                    }
                    batch.push((id, h.fail_close));
                }
                let mut page = ClosePage::default();
                for &(id, fail) in &batch {
                    if fail {
                        page.failed += 1;
                    } else if self.forget(&mut share, id) {
                        page.closed += 1;
                    }
                }
                if more {
                    let last = HandleId(batch.last().expect("a full batch is not empty").0);
                    page.next_marker = Some(self.markers.mint(MarkerKind::Close, target, last));
                }
                Ok(page)
            }
        }
    }
}

impl HandleService for MemoryStore {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(async move { self.list_page(req) })
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(async move { self.close_page(req) })
    }

    fn path_properties<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<PathProperties, Error>> {
        Box::pin(async move {
            let share = self.lookup(target)?;
            let share = share.read().expect("lock poisoned");
            share
                .properties(&target.path)
                .map_err(|e| Error::storage(target, e))
        })
    }

    fn size(&self) -> super::StoreSize {
        let stats = self.stats();
        super::StoreSize {
            shares: Some(stats.shares),
            handles: Some(stats.handles),
        }
    }
}

/// A stable session id for a client, so handles of one client share a session as on a real
/// server (FNV-1a of the address and name).
fn session_of(ip: &str, name: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ip.bytes().chain([0]).chain(name.unwrap_or("").bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(count: u32) -> OpenSpec {
        OpenSpec {
            client_ip: "10.0.0.1:445".into(),
            client_name: None,
            session_id: None,
            open_time: Timestamp::UNIX_EPOCH,
            last_reconnect_time: None,
            access_rights: AccessRights::READ,
            directory: false,
            count,
            fail_close: false,
        }
    }

    fn store() -> MemoryStore {
        let store = MemoryStore::default();
        store.create_share("share").unwrap();
        store
    }

    #[test]
    fn a_huge_count_is_refused_naming_the_bound_not_allocated() {
        let store = store();
        let err = store.open("share", "f", &spec(u32::MAX)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "count 4294967295 is above the bound of 1000000 handles per open"
        );
        assert_eq!(
            store.stats(),
            StoreStats {
                shares: 1,
                ..StoreStats::default()
            },
            "nothing created"
        );
        // A path that cannot be created gives its reservation back.
        store.open("share", "bad|name", &spec(5)).unwrap_err();
        assert_eq!(store.open_handles.load(Ordering::Relaxed), 0);
        let ids = store.open("share", "f", &spec(MAX_OPEN_COUNT)).unwrap();
        assert_eq!(ids.len(), MAX_OPEN_COUNT as usize);
    }

    #[test]
    fn the_store_holds_at_most_its_bound_of_handles_and_closes_make_room() {
        let store = store();
        // Stand in for 9,999,998 handles opened earlier, without spending a gigabyte on them.
        store
            .open_handles
            .store(MAX_STORE_HANDLES - 2, Ordering::Relaxed);
        let ids = store.open("share", "f", &spec(2)).unwrap();
        let err = store.open("share", "f", &spec(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "count 1: the store holds 10000000 open handles, and its bound is 10000000"
        );
        assert_eq!(store.release("share", &ids[..1]).unwrap(), 1);
        store.open("share", "f", &spec(1)).unwrap();
        // A close through the protocol makes room too.
        let target = Target {
            share: "share".into(),
            path: "f".into(),
            recursive: None,
        };
        let closed = store
            .close_page(&CloseRequest {
                target,
                handles: HandleSelector::All,
                marker: None,
            })
            .unwrap();
        assert_eq!(closed.closed, 2);
        assert_eq!(
            store.open_handles.load(Ordering::Relaxed),
            MAX_STORE_HANDLES - 2
        );
    }

    #[test]
    fn shares_and_nodes_are_bounded() {
        let store = MemoryStore::default();
        for i in 0..MAX_SHARES {
            store.create_share(&format!("share{i:05}")).unwrap();
        }
        store
            .create_share("share00000")
            .expect("an existing share is no new one");
        let err = store.create_share("onemore").unwrap_err();
        assert_eq!(
            err.to_string(),
            "share \"onemore\": the store holds 10000 shares, its bound"
        );

        store.next_file.store(MAX_NODES, Ordering::Relaxed);
        store.create("share00000", "last", NodeKind::File).unwrap();
        let err = store
            .create("share00000", "dir/file", NodeKind::File)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "path \"dir/file\": the store holds 1000000 files and directories, its bound"
        );
        let err = store
            .create("share00000", &"a/".repeat(1025), NodeKind::File)
            .unwrap_err();
        assert!(err.to_string().contains("bound of 2048"), "{err}");
    }
}
