//! Helpers shared by the policy and sweep tests: spec builders, fixed times, handles, an
//! independent reference model of classification, and a recording `HandleService`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};

use share_hygiene::api::{
    AccessRight, HandlePolicySpec, LimitsSpec, MatchSpec, Mode, OrphanedRule, ProtectSpec,
    RenameGuardRule, RulesSpec, SecretRef, ShareSpec, StaleRule,
};
use share_hygiene::handles::memory::MemoryStore;
use share_hygiene::handles::{Error, HandleService};
use share_hygiene::protocol::{
    AccessRights, ClosePage, CloseRequest, Handle, HandleId, ListPage, ListRequest, StorageError,
};

/// A fixed, arbitrary "now" (2024-06-01T12:00:00Z), never the wall clock.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_717_243_200).unwrap()
}

/// `t0()` plus `secs` seconds (negative: before).
pub fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

/// A share entry of a spec.
pub fn share(name: &str) -> ShareSpec {
    ShareSpec {
        endpoint: "https://acct.file.core.windows.net".into(),
        share: name.into(),
        credentials_secret_ref: Some(SecretRef {
            name: "creds".into(),
        }),
        identity: None,
        paths: Vec::new(),
    }
}

/// A valid spec over one share with the given rules and nothing else.
pub fn spec_with(rules: RulesSpec) -> HandlePolicySpec {
    HandlePolicySpec {
        mode: Mode::Enforce,
        interval: "5m".into(),
        shares: vec![share("data")],
        match_: MatchSpec::default(),
        rules,
        protect: ProtectSpec::default(),
        limits: LimitsSpec {
            max_closes_per_sweep: 1_000_000,
            safety_valve_percent: 100,
        },
    }
}

pub fn stale(d: &str) -> Option<StaleRule> {
    Some(StaleRule {
        open_longer_than: d.into(),
    })
}

pub fn orphaned(d: &str) -> Option<OrphanedRule> {
    Some(OrphanedRule {
        grace_period: d.into(),
    })
}

pub fn guard(paths: &[&str]) -> Option<RenameGuardRule> {
    Some(RenameGuardRule {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

pub fn rights(list: &[AccessRight]) -> AccessRights {
    list.iter().fold(AccessRights::NONE, |acc, r| {
        acc.union(match r {
            AccessRight::Read => AccessRights::READ,
            AccessRight::Write => AccessRights::WRITE,
            AccessRight::Delete => AccessRights::DELETE,
        })
    })
}

/// A handle opened at `open` by `client_ip`, holding Read and Write.
pub fn handle(id: u64, path: &str, client_ip: &str, open: Timestamp) -> Handle {
    Handle {
        handle_id: HandleId(id),
        path: path.into(),
        file_id: id,
        parent_id: 0,
        session_id: 1,
        client_ip: client_ip.into(),
        client_name: None,
        open_time: open,
        last_reconnect_time: None,
        access_rights: Some(AccessRights::READ.union(AccessRights::WRITE)),
    }
}

// ---------------------------------------------------------------------------------------------
// A reference model, written independently of the library: globs by recursion over chars,
// CIDRs by bit masks, times by plain arithmetic on seconds.
// ---------------------------------------------------------------------------------------------

/// `*` any run of characters, `?` exactly one character; `fold` folds ASCII case.
pub fn ref_wild(pattern: &[char], text: &[char], fold: bool) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|k| ref_wild(rest, &text[k..], fold)),
        Some(('?', rest)) => !text.is_empty() && ref_wild(rest, &text[1..], fold),
        Some((c, rest)) => match text.split_first() {
            Some((t, tail)) => {
                let eq = if fold {
                    c.eq_ignore_ascii_case(t)
                } else {
                    c == t
                };
                eq && ref_wild(rest, tail, fold)
            }
            None => false,
        },
    }
}

fn segs(s: &str) -> Vec<&str> {
    s.split('/').filter(|x| !x.is_empty()).collect()
}

fn ref_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|k| ref_segments(rest, &path[k..])),
        Some((p, rest)) => match path.split_first() {
            Some((s, tail)) => {
                let pc: Vec<char> = p.chars().collect();
                let sc: Vec<char> = s.chars().collect();
                ref_wild(&pc, &sc, false) && ref_segments(rest, tail)
            }
            None => false,
        },
    }
}

/// A path glob, by the documented semantics: case-insensitive, as Azure Files names are.
pub fn ref_path_glob(glob: &str, path: &str) -> bool {
    let (glob, path) = (glob.to_lowercase(), path.to_lowercase());
    ref_segments(&segs(&glob), &segs(&path))
}

/// A name glob: the whole name, case folded.
pub fn ref_name_glob(glob: &str, name: &str) -> bool {
    let g: Vec<char> = glob.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    ref_wild(&g, &n, false)
}

/// Whether `ip` lies in `net/prefix` (same family only).
pub fn ref_cidr(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Whether `path` is `root` or below it, case-insensitively.
pub fn ref_within(path: &str, root: &str) -> bool {
    let (path, root) = (path.to_lowercase(), root.to_lowercase());
    root.is_empty() || path == root || path.starts_with(&format!("{root}/"))
}

/// What the reference model knows about one handle's client.
#[derive(Debug, Clone)]
pub struct RefClient {
    /// The address, when the client field holds one.
    pub ip: Option<IpAddr>,
    /// The raw `ClientIp` field.
    pub raw: String,
    /// The machine name.
    pub name: Option<String>,
}

impl RefClient {
    /// The ledger key: the address, else the lowercased name, else the raw field.
    pub fn key(&self) -> String {
        match (&self.ip, &self.name) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(n)) if !n.is_empty() => n.to_ascii_lowercase(),
            _ => self.raw.clone(),
        }
    }
}

/// A rule set as the reference model reads it (raw spec values, already valid).
#[derive(Debug, Clone, Default)]
pub struct RefRules {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub stale_secs: Option<i64>,
    pub orphan_secs: Option<i64>,
    /// Normalized guard paths.
    pub guards: Vec<String>,
    pub access: Option<u8>,
    pub cidrs: Vec<(IpAddr, u8)>,
    pub names: Vec<String>,
}

/// The cluster as the reference model reads it.
#[derive(Debug, Clone, Default)]
pub struct RefCluster {
    pub ips: BTreeSet<IpAddr>,
    /// Names as given (matched case-insensitively).
    pub names: Vec<String>,
}

/// One handle as the reference model reads it (times in Unix seconds).
#[derive(Debug, Clone)]
pub struct RefHandle {
    pub path: String,
    pub client: RefClient,
    pub open: i64,
    pub reconnect: Option<i64>,
    /// Rights bits (Read 1, Write 2, Delete 4); `None` when not reported.
    pub access: Option<u8>,
}

/// The reference verdict: `Ok(reason)` closes, `Err(keep)` keeps (labels as strings).
pub fn ref_classify(
    h: &RefHandle,
    rules: &RefRules,
    cluster: Option<&RefCluster>,
    ledger: &BTreeMap<String, i64>,
    now: i64,
) -> Result<&'static str, &'static str> {
    let (path, client) = (h.path.as_str(), &h.client);
    let (open, reconnect, access) = (h.open, h.reconnect, h.access);
    let included = rules.include.is_empty() || rules.include.iter().any(|g| ref_path_glob(g, path));
    let excluded = rules.exclude.iter().any(|g| ref_path_glob(g, path));
    if !included || excluded {
        return Err("OutOfScope");
    }
    let by_ip = client
        .ip
        .is_some_and(|ip| rules.cidrs.iter().any(|&(n, p)| ref_cidr(n, p, ip)));
    let by_name = client
        .name
        .as_deref()
        .is_some_and(|n| rules.names.iter().any(|g| ref_name_glob(g, n)));
    if by_ip || by_name {
        return Err("Protected");
    }
    if let Some(want) = rules.access
        && access.is_none_or(|a| a & want == 0)
    {
        return Err("AccessRights");
    }
    if rules.guards.iter().any(|g| ref_within(path, g)) {
        return Ok("RenameBlocking");
    }
    if let (Some(grace), Some(cluster)) = (rules.orphan_secs, cluster) {
        let known = client.ip.is_some_and(|ip| cluster.ips.contains(&ip))
            || client
                .name
                .as_deref()
                .is_some_and(|n| cluster.names.iter().any(|c| c.eq_ignore_ascii_case(n)));
        if !known {
            let since = ledger.get(&client.key()).copied().unwrap_or(now);
            if now - since >= grace {
                return Ok("Orphaned");
            }
        }
    }
    if let Some(limit) = rules.stale_secs {
        let held = match reconnect {
            Some(r) if r > open => r,
            _ => open,
        };
        if now - held > limit {
            return Ok("Stale");
        }
    }
    Err("NotCondemned")
}

// ---------------------------------------------------------------------------------------------
// A recording HandleService: counts and records every call, and can be told to fail.
// ---------------------------------------------------------------------------------------------

/// How a [`Recording`] service misbehaves.
#[derive(Clone, Default)]
pub enum Fault {
    /// Passes everything through.
    #[default]
    None,
    /// Every List Handles call fails with 500 InternalError.
    ListFails,
    /// The n-th (0-based) List Handles call fails with 500 InternalError.
    ListFailsAt(usize),
    /// The n-th (0-based) Force Close Handles call fails with 500 InternalError; later ones
    /// pass through.
    CloseFailsAt(usize),
    /// Before the first Force Close Handles call, the client releases this handle itself.
    ReleaseBeforeClose(Arc<MemoryStore>, String, u64),
}

/// One force-close call and what it returned.
#[derive(Debug, Clone)]
pub struct CloseCall {
    pub request: CloseRequest,
    /// `Ok(page)` or the error's text.
    pub result: Result<ClosePage, String>,
}

/// Wraps a service and records every call made through it.
pub struct Recording {
    inner: Arc<dyn HandleService>,
    fault: Fault,
    list_calls: AtomicUsize,
    close_calls: AtomicUsize,
    pub lists: Mutex<Vec<(ListRequest, usize)>>,
    pub closes: Mutex<Vec<CloseCall>>,
}

impl Recording {
    pub fn new(inner: Arc<dyn HandleService>, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fault,
            list_calls: AtomicUsize::new(0),
            close_calls: AtomicUsize::new(0),
            lists: Mutex::new(Vec::new()),
            closes: Mutex::new(Vec::new()),
        })
    }

    /// How many List Handles calls were made.
    pub fn list_count(&self) -> usize {
        self.list_calls.load(Ordering::SeqCst)
    }

    /// How many Force Close Handles calls were made.
    pub fn close_count(&self) -> usize {
        self.close_calls.load(Ordering::SeqCst)
    }

    /// Every close call so far.
    pub fn close_calls(&self) -> Vec<CloseCall> {
        self.closes.lock().unwrap().clone()
    }

    /// Handles the service reported closed over all answered calls.
    pub fn closed_total(&self) -> u64 {
        self.close_calls()
            .iter()
            .filter_map(|c| c.result.as_ref().ok())
            .map(|p| p.closed)
            .sum()
    }

    /// Every list call with the number of handles its page returned.
    pub fn list_calls(&self) -> Vec<(ListRequest, usize)> {
        self.lists.lock().unwrap().clone()
    }
}

fn injected(target: &share_hygiene::protocol::Target) -> Error {
    Error::storage(target, StorageError::internal("injected failure"))
}

impl HandleService for Recording {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(async move {
            let n = self.list_calls.fetch_add(1, Ordering::SeqCst);
            let fail = match self.fault {
                Fault::ListFails => true,
                Fault::ListFailsAt(k) => n == k,
                _ => false,
            };
            if fail {
                self.lists.lock().unwrap().push((req.clone(), 0));
                return Err(injected(&req.target));
            }
            let res = self.inner.list_handles(req).await;
            let n = res.as_ref().map_or(0, |p| p.handles.len());
            self.lists.lock().unwrap().push((req.clone(), n));
            res
        })
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(async move {
            let n = self.close_calls.fetch_add(1, Ordering::SeqCst);
            if let Fault::ReleaseBeforeClose(store, share, id) = &self.fault
                && n == 0
            {
                store.release(share, &[HandleId(*id)]).unwrap();
            }
            let res = match self.fault {
                Fault::CloseFailsAt(k) if k == n => Err(injected(&req.target)),
                _ => self.inner.force_close(req).await,
            };
            self.closes.lock().unwrap().push(CloseCall {
                request: req.clone(),
                result: res.clone().map_err(|e| e.to_string()),
            });
            res
        })
    }
}

pub mod scenario;
