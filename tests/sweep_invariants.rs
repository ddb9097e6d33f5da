//! Sweep invariants over real in-process stores: a `MemoryStore` behind a recording
//! `HandleService` that counts list and force-close calls and records every close request.
//!
//! 1. Only condemned, in-scope, unprotected, admitted handles are closed, and only in Enforce.
//! 2. DryRun sends no force-close request, ever.
//! 3. A wildcard close is used exactly where a rename guard condemns a whole, fully observed
//!    subtree with nothing kept under it; per-handle closes otherwise.
//! 4. When the safety valve trips, nothing closes and the report says why.
//!
//! Plus: share failures are isolated and categorized, a failing close stops its share and
//! leaves a true report, the orphan ledger carries first-seen times across sweeps, paging is
//! honoured and does not change results, and report totals equal the sums of decisions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use jiff::Timestamp;
use proptest::prelude::*;

use common::scenario::*;
use common::*;
use share_hygiene::api::{AccessRight, HandlePolicySpec, Mode, RulesSpec};
use share_hygiene::handles::memory::{MemoryStore, NodeKind, OpenSpec};
use share_hygiene::handles::{Error, ErrorCategory, HandleService, pages};
use share_hygiene::policy::{
    ClusterFacts, OrphanLedger, Policy, Reason, SkipCause, compile, is_within,
};
use share_hygiene::protocol::{AccessRights, HandleId, HandleSelector, Target};
use share_hygiene::sweep::{
    NotClosed, Outcome, SweepInput, SweepOptions, SweepReport, never_stop, sweep,
};

// ----- fixtures -----------------------------------------------------------------------------

fn store(shares: &[&str]) -> Arc<MemoryStore> {
    store_batch(shares, 1000)
}

fn store_batch(shares: &[&str], close_batch: usize) -> Arc<MemoryStore> {
    let s = Arc::new(MemoryStore::new(close_batch));
    for name in shares {
        s.create_share(name).unwrap();
    }
    s
}

/// What to open, with defaults: a file, Read+Write, one handle, opened two days ago.
#[derive(Clone)]
struct Open {
    ip: String,
    name: Option<String>,
    open: Timestamp,
    reconnect: Option<Timestamp>,
    rights: AccessRights,
    dir: bool,
    fail_close: bool,
}

fn from(ip: &str) -> Open {
    Open {
        ip: ip.into(),
        name: None,
        open: at(-2 * 86_400),
        reconnect: None,
        rights: AccessRights::READ.union(AccessRights::WRITE),
        dir: false,
        fail_close: false,
    }
}

impl Open {
    fn opened(mut self, t: Timestamp) -> Self {
        self.open = t;
        self
    }
    fn named(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    fn rights(mut self, r: AccessRights) -> Self {
        self.rights = r;
        self
    }
    fn dir(mut self) -> Self {
        self.dir = true;
        self
    }
    fn failing(mut self) -> Self {
        self.fail_close = true;
        self
    }
}

fn open(store: &MemoryStore, share: &str, path: &str, o: &Open) -> u64 {
    open_n(store, share, path, o, 1)[0]
}

fn open_n(store: &MemoryStore, share: &str, path: &str, o: &Open, count: u32) -> Vec<u64> {
    let spec = OpenSpec {
        client_ip: o.ip.clone(),
        client_name: o.name.clone(),
        session_id: None,
        open_time: o.open,
        last_reconnect_time: o.reconnect,
        access_rights: o.rights,
        directory: o.dir,
        count,
        fail_close: o.fail_close,
    };
    store
        .open(share, path, &spec)
        .unwrap_or_else(|e| panic!("open {share}/{path}: {e}"))
        .into_iter()
        .map(|HandleId(id)| id)
        .collect()
}

/// Every handle id open on a share, listed through the service itself.
async fn open_ids(svc: &dyn HandleService, share: &str) -> BTreeSet<u64> {
    let stream = pages(svc, Target::directory(share, "", true), Some(5000));
    let all: Vec<_> = stream.try_collect().await.unwrap();
    all.into_iter()
        .flat_map(|p| p.handles)
        .map(|h| h.handle_id.0)
        .collect()
}

fn policy(spec: &HandlePolicySpec) -> Policy {
    compile(spec).unwrap_or_else(|e| panic!("{e}"))
}

/// A spec over the given shares of one endpoint.
fn spec_over(shares: &[&str], rules: RulesSpec) -> HandlePolicySpec {
    let mut spec = spec_with(rules);
    spec.shares = shares.iter().map(|s| share(s)).collect();
    spec
}

type Svc = Result<Arc<dyn HandleService>, Error>;

fn svc(r: &Arc<Recording>) -> Svc {
    Ok(r.clone() as Arc<dyn HandleService>)
}

struct Run<'a> {
    policy: &'a Policy,
    services: Vec<Svc>,
    cluster: Option<&'a ClusterFacts>,
    orphans: OrphanLedger,
    now: Timestamp,
    options: SweepOptions,
}

impl<'a> Run<'a> {
    fn new(policy: &'a Policy, services: Vec<Svc>) -> Self {
        Self {
            policy,
            services,
            cluster: None,
            orphans: OrphanLedger::default(),
            now: t0(),
            options: SweepOptions::default(),
        }
    }

    async fn go(self) -> SweepReport {
        let input = SweepInput {
            policy: self.policy,
            services: self.services,
            cluster: self.cluster,
            orphans: self.orphans,
            now: self.now,
            stop: never_stop(),
        };
        let report = sweep(input, &self.options).await;
        check_totals(&report);
        report
    }
}

/// Report totals equal the sums of its decisions and wildcard closes, share by share.
fn check_totals(r: &SweepReport) {
    let mut all_kept = BTreeMap::new();
    for sh in &r.shares {
        let ds: Vec<_> = r.decisions.iter().filter(|d| d.share == sh.share).collect();
        let ws: Vec<_> = r.wildcards.iter().filter(|w| w.share == sh.share).collect();
        let count =
            |f: &dyn Fn(&Outcome) -> bool| ds.iter().filter(|d| f(&d.outcome)).count() as u64;
        assert_eq!(
            sh.condemned_total(),
            ds.len() as u64,
            "{}: condemned",
            sh.share
        );
        for reason in Reason::ALL {
            let n = ds.iter().filter(|d| d.reason == reason).count() as u64;
            assert_eq!(
                sh.condemned.get(reason.as_str()).copied().unwrap_or(0),
                n,
                "{}: condemned {reason}",
                sh.share
            );
        }
        assert_eq!(
            sh.seen,
            sh.kept.values().sum::<u64>() + sh.condemned_total(),
            "{}: seen = kept + condemned",
            sh.share
        );
        assert_eq!(
            sh.closed_total(),
            count(&|o| *o == Outcome::Closed) + ws.iter().map(|w| w.closed).sum::<u64>(),
            "{}: closed",
            sh.share
        );
        // Failed: by id, plus what wildcards reported. Members of a wildcard may also carry
        // their own Failed outcome; count them at most once more.
        let failed_by_id = ds
            .iter()
            .filter(|d| d.outcome == Outcome::Failed)
            .filter(|d| !ws.iter().any(|w| is_within(&d.path, &w.path)))
            .count() as u64;
        let failed_members = count(&|o| *o == Outcome::Failed) - failed_by_id;
        let wild_failed: u64 = ws.iter().map(|w| w.failed).sum();
        let base = failed_by_id + wild_failed;
        assert!(
            sh.failed_total() == base || sh.failed_total() == base + failed_members,
            "{}: failed {} vs {} by id + {} by wildcard",
            sh.share,
            sh.failed_total(),
            failed_by_id,
            wild_failed
        );
        assert_eq!(
            sh.gone,
            count(&|o| *o == Outcome::Gone),
            "{}: gone",
            sh.share
        );
        let mut not_closed: BTreeMap<&str, u64> = BTreeMap::new();
        for d in &ds {
            if let Outcome::NotClosed(c) = d.outcome {
                *not_closed.entry(c.as_str()).or_default() += 1;
            }
        }
        assert_eq!(sh.not_closed, not_closed, "{}: not closed", sh.share);
        for (k, v) in &sh.kept {
            *all_kept.entry(*k).or_insert(0u64) += v;
        }
        // Wildcard members: every decision under a wildcard's path, and only those.
        let covered: u64 = ws.iter().map(|w| w.covers).sum();
        let under = ds
            .iter()
            .filter(|d| ws.iter().any(|w| is_within(&d.path, &w.path)))
            .count() as u64;
        assert_eq!(covered, under, "{}: wildcard covers", sh.share);
        assert!(
            ds.iter()
                .filter(|d| d.outcome == Outcome::ClosedByWildcard)
                .all(|d| ws.iter().any(|w| is_within(&d.path, &w.path))),
            "{}: ClosedByWildcard outside every wildcard",
            sh.share
        );
    }
    assert_eq!(r.kept(), all_kept);
    assert_eq!(r.seen(), r.shares.iter().map(|s| s.seen).sum::<u64>());
    assert_eq!(
        r.condemned().values().sum::<u64>(),
        r.decisions.len() as u64
    );
    if let Some(v) = r.safety_valve {
        assert_eq!(r.closed(), 0, "the valve tripped, yet something closed");
        assert!(r.wildcards.is_empty());
        assert_eq!(v.condemned, r.decisions.len() as u64);
        assert!(
            r.decisions.iter().all(
                |d| d.outcome == Outcome::NotClosed(NotClosed::Skipped(SkipCause::SafetyValve))
            )
        );
    }
    if r.mode == Mode::DryRun {
        assert_eq!(r.closed(), 0);
        assert!(r.wildcards.is_empty());
    }
}

fn id_requests(rec: &Recording) -> Vec<(u64, Target)> {
    rec.close_calls()
        .into_iter()
        .filter_map(|c| match c.request.handles {
            HandleSelector::Id(HandleId(id)) => Some((id, c.request.target)),
            HandleSelector::All => None,
        })
        .collect()
}

/// First requests of every wildcard close: (path, x-ms-recursive).
fn wildcard_requests(rec: &Recording) -> Vec<(String, Option<bool>)> {
    rec.close_calls()
        .into_iter()
        .filter(|c| c.request.handles == HandleSelector::All && c.request.marker.is_none())
        .map(|c| (c.request.target.path, c.request.target.recursive))
        .collect()
}

fn outcomes(r: &SweepReport) -> BTreeMap<u64, Outcome> {
    r.decisions
        .iter()
        .map(|d| (d.handle_id.0, d.outcome))
        .collect()
}

fn relaxed(spec: &mut HandlePolicySpec) {
    spec.limits.max_closes_per_sweep = 1_000_000;
    spec.limits.safety_valve_percent = 100;
}

// ----- invariant 2: dry run ---------------------------------------------------------------------

#[tokio::test]
async fn dry_run_sends_no_force_close_even_when_everything_is_condemned() {
    let st = store(&["alpha", "beta"]);
    let mut ids = Vec::new();
    for share in ["alpha", "beta"] {
        ids.extend(open_n(
            &st,
            share,
            "releases/v4/app.bin",
            &from("10.9.9.9:1"),
            3,
        ));
        ids.extend(open_n(
            &st,
            share,
            "releases/v4",
            &from("10.9.9.9:1").dir(),
            2,
        ));
        ids.extend(open_n(&st, share, "old/data.db", &from("[fd00::9]:445"), 4));
        ids.push(open(&st, share, "", &from("10.9.9.8")));
    }
    let mut spec = spec_over(
        &["alpha", "beta"],
        RulesSpec {
            stale: stale("0s"),
            orphaned: orphaned("0s"),
            rename_guard: guard(&["releases/v4"]),
            ..RulesSpec::default()
        },
    );
    spec.mode = Mode::DryRun;
    relaxed(&mut spec);
    let p = policy(&spec);
    let facts = ClusterFacts::new([], []);
    for page_size in [1, 3, 5000] {
        let a = Recording::new(st.clone(), Fault::None);
        let b = Recording::new(st.clone(), Fault::None);
        let mut run = Run::new(&p, vec![svc(&a), svc(&b)]);
        run.cluster = Some(&facts);
        run.options.page_size = page_size;
        let report = run.go().await;
        assert_eq!(
            a.close_count() + b.close_count(),
            0,
            "DryRun sent a force close"
        );
        assert_eq!(report.decisions.len(), ids.len());
        assert!(report.decisions.iter().all(|d| {
            d.outcome == Outcome::NotClosed(NotClosed::Skipped(SkipCause::DryRun))
                && d.outcome.as_str() == "WouldClose"
        }));
        assert!(report.wildcards.is_empty() && report.safety_valve.is_none());
        assert!(a.list_count() > 0 && b.list_count() > 0);
    }
    let mut still_open = open_ids(st.as_ref(), "alpha").await;
    still_open.extend(open_ids(st.as_ref(), "beta").await);
    assert_eq!(still_open, ids.iter().copied().collect());
}

// ----- invariant 1: exactly the condemned, in scope, unprotected, admitted --------------------

#[tokio::test]
async fn enforce_closes_exactly_the_condemned_in_scope_unprotected_handles() {
    let st = store(&["data"]);
    let old = at(-3 * 3600);
    let young = at(-600);
    // Condemned (stale).
    let stale_ids = [
        open(
            &st,
            "data",
            "app/a.log",
            &from("10.9.0.1:50000").opened(old),
        ),
        open(
            &st,
            "data",
            "app/b.log",
            &from("[2001:db8::1]:445").opened(old),
        ),
        open(&st, "data", "app", &from("10.9.0.2").opened(old).dir()),
    ];
    // Kept, one reason each.
    let kept = [
        open(&st, "data", "app/c.log", &from("10.9.0.1:1").opened(young)), // not stale
        open(&st, "data", "app/tmp/x", &from("10.9.0.1:1").opened(old)),   // excluded
        open(&st, "data", "other/y", &from("10.9.0.1:1").opened(old)),     // not included
        open(&st, "data", "app/d.log", &from("10.1.2.3:445").opened(old)), // protected CIDR
        open(&st, "data", "app/e.log", &from("[fd00::5]:1").opened(old)),  // protected v6 CIDR
        open(
            &st,
            "data",
            "app/f.log",
            &from("10.9.0.3:1").named("BACKUP-7").opened(old),
        ), // name
        open(
            &st,
            "data",
            "app/g.log",
            &from("10.9.0.4:1").opened(old).rights(AccessRights::NONE),
        ), // no targeted rights
        // Reconnected recently: not stale although opened long ago.
        {
            let mut o = from("10.9.0.5:1").opened(at(-86_400));
            o.reconnect = Some(young);
            open(&st, "data", "app/h.log", &o)
        },
    ];
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        access_rights: vec![AccessRight::Read, AccessRight::Write],
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    spec.match_.include = vec!["app/**".into()];
    spec.match_.exclude = vec!["app/tmp/**".into()];
    spec.protect.client_cidrs = vec!["10.1.0.0/16".into(), "fd00::/8".into()];
    spec.protect.client_names = vec!["backup-*".into()];
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;

    let requested: BTreeSet<u64> = id_requests(&rec).iter().map(|(id, _)| *id).collect();
    let expected: BTreeSet<u64> = stale_ids.iter().copied().collect();
    assert_eq!(
        requested, expected,
        "close requests went to exactly the condemned"
    );
    assert!(wildcard_requests(&rec).is_empty());
    let remaining = open_ids(st.as_ref(), "data").await;
    assert_eq!(
        remaining,
        kept.iter().copied().collect(),
        "exactly the kept stay open"
    );
    // Each close went through the handle's own path, without x-ms-recursive.
    for (id, target) in id_requests(&rec) {
        let d = report
            .decisions
            .iter()
            .find(|d| d.handle_id.0 == id)
            .unwrap();
        assert_eq!(target.path, d.path);
        assert_eq!(target.recursive, None);
        assert_eq!(d.outcome, Outcome::Closed);
    }
    let sh = &report.shares[0];
    assert_eq!(sh.seen, 11);
    assert_eq!(sh.closed_total(), 3);
    let kept_counts: Vec<(&str, u64)> = sh.kept.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        kept_counts,
        [
            ("AccessRights", 1),
            ("NotCondemned", 2),
            ("OutOfScope", 2),
            ("Protected", 3)
        ]
    );
}

#[tokio::test]
async fn cap_admits_the_most_urgent_first_and_the_rest_wait() {
    let st = store(&["data"]);
    // Five stale handles of different ages, and one under a rename guard (most urgent).
    let ages: [i64; 5] = [5, 3, 9, 1, 7];
    let stale_ids: Vec<u64> = ages
        .iter()
        .enumerate()
        .map(|(i, h)| {
            open(
                &st,
                "data",
                &format!("f{i}"),
                &from("10.9.0.1:1").opened(at(-h * 3600 - 7200)),
            )
        })
        .collect();
    let guarded = open(
        &st,
        "data",
        "locked/file",
        &from("10.9.0.1:1").opened(at(-60)),
    );
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        rename_guard: guard(&["locked"]),
        ..RulesSpec::default()
    });
    spec.limits.max_closes_per_sweep = 2;
    spec.limits.safety_valve_percent = 100;
    let p = policy(&spec);
    let all: BTreeSet<u64> = stale_ids.iter().copied().chain([guarded]).collect();
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    // Rename-blocking first (by wildcard: it is alone under its guard), then the oldest stale
    // one (9h + 2h).
    let left = open_ids(st.as_ref(), "data").await;
    let closed: BTreeSet<u64> = all.difference(&left).copied().collect();
    assert_eq!(closed, BTreeSet::from([guarded, stale_ids[2]]));
    assert_eq!(wildcard_requests(&rec), [("locked".to_owned(), Some(true))]);
    assert_eq!(report.not_closed().get("Limit"), Some(&4));
    // The next sweep takes the next two oldest.
    let rec2 = Recording::new(st.clone(), Fault::None);
    Run::new(&p, vec![svc(&rec2)]).go().await;
    let closed2: BTreeSet<u64> = id_requests(&rec2).iter().map(|(id, _)| *id).collect();
    assert_eq!(closed2, BTreeSet::from([stale_ids[4], stale_ids[0]]));
}

// ----- invariant 3: wildcards ---------------------------------------------------------------------

#[tokio::test]
async fn wildcard_closes_a_fully_condemned_guarded_directory() {
    let st = store_batch(&["data"], 2); // small close batches: the wildcard follows markers
    let young = at(-5);
    let under: Vec<u64> = [
        open_n(
            &st,
            "data",
            "releases/v4",
            &from("10.9.0.1:1").opened(young).dir(),
            2,
        ),
        open_n(
            &st,
            "data",
            "releases/v4/app.bin",
            &from("10.9.0.2:1").opened(young),
            2,
        ),
        open_n(
            &st,
            "data",
            "releases/v4/lib/x.so",
            &from("[fd00::1]:1").opened(young),
            1,
        ),
    ]
    .concat();
    let near_miss = open(
        &st,
        "data",
        "releases/v42/app.bin",
        &from("10.9.0.1:1").opened(young),
    );
    let parent = open(
        &st,
        "data",
        "releases",
        &from("10.9.0.1:1").opened(young).dir(),
    );
    let mut spec = spec_with(RulesSpec {
        rename_guard: guard(&["releases/v4/"]),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;

    assert_eq!(
        wildcard_requests(&rec),
        [("releases/v4".to_owned(), Some(true))],
        "one recursive * close of the guarded directory"
    );
    assert!(id_requests(&rec).is_empty(), "no per-handle closes");
    assert_eq!(report.wildcards.len(), 1);
    let w = &report.wildcards[0];
    assert_eq!(
        (w.path.as_str(), w.covers, w.closed, w.failed),
        ("releases/v4", 5, 5, 0)
    );
    let o = outcomes(&report);
    assert!(under.iter().all(|id| o[id] == Outcome::ClosedByWildcard));
    assert_eq!(
        open_ids(st.as_ref(), "data").await,
        BTreeSet::from([near_miss, parent])
    );
    assert_eq!(report.shares[0].closed.get("RenameBlocking"), Some(&5));
}

#[tokio::test]
async fn wildcard_on_a_guarded_file_sends_no_recursive_header() {
    let st = store(&["data"]);
    let ids = open_n(&st, "data", "cfg/app.yaml", &from("10.9.0.1:1"), 3);
    let sibling = open(&st, "data", "cfg/app.yaml.swp", &from("10.9.0.1:1"));
    let mut spec = spec_with(RulesSpec {
        rename_guard: guard(&["cfg/app.yaml"]),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    assert_eq!(wildcard_requests(&rec), [("cfg/app.yaml".to_owned(), None)]);
    assert_eq!(report.wildcards[0].closed, 3);
    assert!(
        ids.iter()
            .all(|id| outcomes(&report)[id] == Outcome::ClosedByWildcard)
    );
    assert_eq!(
        open_ids(st.as_ref(), "data").await,
        BTreeSet::from([sibling])
    );
}

/// Anything kept under the guard (protected, out of scope, lacking the targeted rights), a
/// guard outside the swept roots, or a cap that does not admit every member: per-handle
/// closes of exactly the condemned, and the kept handle stays open.
#[tokio::test]
async fn no_wildcard_when_anything_under_the_guard_is_kept() {
    #[derive(Debug, Clone, Copy)]
    enum Case {
        Protected,
        Excluded,
        Rights,
        NotFullyObserved,
        Capped,
    }
    for case in [
        Case::Protected,
        Case::Excluded,
        Case::Rights,
        Case::NotFullyObserved,
        Case::Capped,
    ] {
        let st = store(&["data"]);
        let members = [
            open(&st, "data", "rel/v4/a", &from("10.9.0.1:1")),
            open(&st, "data", "rel/v4/sub/b", &from("10.9.0.2:1")),
            open(&st, "data", "rel/v4/sub/c", &from("10.9.0.2:1")),
        ];
        let mut spec = spec_with(RulesSpec {
            rename_guard: guard(&["rel/v4"]),
            ..RulesSpec::default()
        });
        relaxed(&mut spec);
        let mut keep = None;
        match case {
            Case::Protected => {
                keep = Some(open(&st, "data", "rel/v4/sub/p", &from("10.1.0.7:1")));
                spec.protect.client_cidrs = vec!["10.1.0.0/16".into()];
            }
            Case::Excluded => {
                keep = Some(open(&st, "data", "rel/v4/cache/x", &from("10.9.0.1:1")));
                spec.match_.exclude = vec!["**/cache/**".into()];
            }
            Case::Rights => {
                keep = Some(open(
                    &st,
                    "data",
                    "rel/v4/ro",
                    &from("10.9.0.1:1").rights(AccessRights::READ),
                ));
                spec.rules.access_rights = vec![AccessRight::Write, AccessRight::Delete];
            }
            Case::NotFullyObserved => {
                spec.shares[0].paths = vec!["rel/v4/sub".into()];
            }
            Case::Capped => {
                spec.limits.max_closes_per_sweep = 2;
            }
        }
        let p = policy(&spec);
        let rec = Recording::new(st.clone(), Fault::None);
        let report = Run::new(&p, vec![svc(&rec)]).go().await;
        assert!(
            wildcard_requests(&rec).is_empty(),
            "{case:?}: no * close when something under the guard is kept"
        );
        assert!(report.wildcards.is_empty(), "{case:?}");
        let requested: BTreeSet<u64> = id_requests(&rec).iter().map(|(id, _)| *id).collect();
        let expected: BTreeSet<u64> = match case {
            Case::NotFullyObserved => members[1..].iter().copied().collect(),
            Case::Capped => requested.clone(),
            _ => members.iter().copied().collect(),
        };
        assert_eq!(requested, expected, "{case:?}");
        if let Case::Capped = case {
            assert_eq!(requested.len(), 2);
            assert!(requested.iter().all(|id| members.contains(id)));
        }
        let remaining = open_ids(st.as_ref(), "data").await;
        if let Some(k) = keep {
            assert!(
                remaining.contains(&k),
                "{case:?}: the kept handle was closed"
            );
            assert_eq!(remaining.len(), 1, "{case:?}");
        }
    }
}

// ----- invariant 4: the safety valve ----------------------------------------------------------

#[tokio::test]
async fn safety_valve_trips_closes_none_and_says_why() {
    let st = store(&["data"]);
    open_n(
        &st,
        "data",
        "old",
        &from("10.9.0.1:1").opened(at(-86_400)),
        6,
    );
    open_n(&st, "data", "new", &from("10.9.0.1:1").opened(at(-60)), 4);
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    spec.limits.safety_valve_percent = 50;
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    assert_eq!(
        rec.close_count(),
        0,
        "the valve tripped, yet a close was sent"
    );
    let v = report
        .safety_valve
        .expect("the report says the valve tripped");
    assert_eq!((v.condemned, v.observed, v.limit_percent), (6, 10, 50));
    assert_eq!(report.not_closed().get("SafetyValve"), Some(&6));
    assert_eq!(open_ids(st.as_ref(), "data").await.len(), 10);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["safetyValve"]["condemned"], 6);
    assert_eq!(json["safetyValve"]["limitPercent"], 50);

    // Exactly at the limit (5 of 10): closes.
    let st = store(&["data"]);
    open_n(
        &st,
        "data",
        "old",
        &from("10.9.0.1:1").opened(at(-86_400)),
        5,
    );
    open_n(&st, "data", "new", &from("10.9.0.1:1").opened(at(-60)), 5);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    assert!(report.safety_valve.is_none());
    assert_eq!(report.closed(), 5);
}

#[tokio::test]
async fn safety_valve_is_per_policy_across_shares() {
    // Share a: 6 of 6 condemned; share b: 0 of 10. 6 of 16 is under 50%: closes go ahead.
    let st = store(&["alpha", "beta"]);
    open_n(
        &st,
        "alpha",
        "old",
        &from("10.9.0.1:1").opened(at(-86_400)),
        6,
    );
    open_n(&st, "beta", "new", &from("10.9.0.1:1").opened(at(-60)), 10);
    let mut spec = spec_over(
        &["alpha", "beta"],
        RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        },
    );
    spec.limits.safety_valve_percent = 50;
    let p = policy(&spec);
    let a = Recording::new(st.clone(), Fault::None);
    let b = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&a), svc(&b)]).go().await;
    assert!(report.safety_valve.is_none());
    assert_eq!(report.shares[0].closed_total(), 6);
    assert_eq!(b.close_count(), 0);

    // A failing share's handles do not count as observed: 6 of 6 trips the valve.
    let st = store(&["alpha", "beta"]);
    open_n(
        &st,
        "alpha",
        "old",
        &from("10.9.0.1:1").opened(at(-86_400)),
        6,
    );
    open_n(&st, "beta", "new", &from("10.9.0.1:1").opened(at(-60)), 10);
    let a = Recording::new(st.clone(), Fault::None);
    let b = Recording::new(st.clone(), Fault::ListFails);
    let report = Run::new(&p, vec![svc(&a), svc(&b)]).go().await;
    assert_eq!(a.close_count(), 0);
    let v = report.safety_valve.expect("valve");
    assert_eq!((v.condemned, v.observed), (6, 6));
}

// ----- share failures ---------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_share_is_reported_and_the_others_go_on() {
    let st = store(&["good", "paged", "listfail", "other"]);
    // "missing" does not exist in the store.
    let old = from("10.9.0.1:1").opened(at(-86_400));
    let good = open_n(&st, "good", "a/b", &old, 3);
    let paged = open_n(&st, "paged", "a/b", &old, 5);
    let listfail = open_n(&st, "listfail", "a/b", &old, 2);
    let other = open_n(&st, "other", "c", &old, 2);
    let mut spec = spec_over(
        &["good", "missing", "listfail", "paged", "creds", "other"],
        RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        },
    );
    relaxed(&mut spec);
    let p = policy(&spec);
    let r_good = Recording::new(st.clone(), Fault::None);
    let r_missing = Recording::new(st.clone(), Fault::None);
    let r_listfail = Recording::new(st.clone(), Fault::ListFails);
    // Lists fine for one page, then fails: the first page's condemned must not be closed.
    let r_paged = Recording::new(st.clone(), Fault::ListFailsAt(1));
    let r_other = Recording::new(st.clone(), Fault::None);
    let setup_error = Error::Credential {
        message: "Secret creds has no accountKey".into(),
    };
    let mut run = Run::new(
        &p,
        vec![
            svc(&r_good),
            svc(&r_missing),
            svc(&r_listfail),
            svc(&r_paged),
            Err(setup_error),
            svc(&r_other),
        ],
    );
    run.options.page_size = 2;
    let report = run.go().await;

    let category = |i: usize| report.shares[i].error.as_ref().map(|e| e.category);
    assert_eq!(category(0), None);
    assert_eq!(category(1), Some(ErrorCategory::ShareNotFound));
    assert_eq!(category(2), Some(ErrorCategory::ServiceError));
    assert_eq!(category(3), Some(ErrorCategory::ServiceError));
    assert_eq!(category(4), Some(ErrorCategory::Credential));
    assert_eq!(category(5), None);
    assert!(!report.all_shares_ok());
    // The healthy shares were swept and closed.
    assert_eq!(report.shares[0].closed_total(), 3);
    assert_eq!(report.shares[5].closed_total(), 2);
    assert!(open_ids(st.as_ref(), "good").await.is_empty());
    assert!(open_ids(st.as_ref(), "other").await.is_empty());
    // The failed ones closed nothing and report nothing condemned.
    for r in [&r_missing, &r_listfail, &r_paged] {
        assert_eq!(r.close_count(), 0);
    }
    assert_eq!(r_paged.list_count(), 2, "one good page, then the failure");
    assert_eq!(
        open_ids(st.as_ref(), "paged").await,
        paged.iter().copied().collect()
    );
    assert_eq!(
        open_ids(st.as_ref(), "listfail").await,
        listfail.iter().copied().collect()
    );
    for i in 1..=4 {
        assert_eq!(report.shares[i].condemned_total(), 0, "share {i}");
        assert_eq!(report.shares[i].closed_total(), 0, "share {i}");
    }
    assert_eq!(report.decisions.len(), good.len() + other.len());
    // Messages say which share, and no secret.
    let msg = &report.shares[1].error.as_ref().unwrap().message;
    assert!(msg.contains("missing"), "{msg}");
}

/// A setup error (the share's service could not be built) keeps its category: an unreachable
/// endpoint is `Unreachable`, a timeout is `Unreachable`, a malformed answer is a protocol
/// error; the metric label and Event reason must not turn into `BackendError`.
#[tokio::test]
async fn setup_errors_keep_their_category() {
    let p = policy(&spec_over(
        &["aaa", "bbb", "ccc"],
        RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        },
    ));
    let report = Run::new(
        &p,
        vec![
            Err(Error::Transport {
                target: "aaa".into(),
                message: "connection refused".into(),
            }),
            Err(Error::Timeout {
                target: "bbb".into(),
                after: std::time::Duration::from_secs(30),
            }),
            Err(Error::Protocol {
                target: "ccc".into(),
                message: "not XML".into(),
            }),
        ],
    )
    .go()
    .await;
    let got: Vec<_> = report
        .shares
        .iter()
        .map(|s| s.error.as_ref().map(|e| e.category))
        .collect();
    assert_eq!(
        got,
        [
            Some(ErrorCategory::Unreachable),
            Some(ErrorCategory::Unreachable),
            Some(ErrorCategory::Protocol)
        ]
    );
}

#[tokio::test]
async fn a_failing_force_close_stops_its_share_and_the_report_stays_true() {
    for concurrency in [1, 8] {
        let st = store(&["alpha", "beta"]);
        let old = from("10.9.0.1:1").opened(at(-86_400));
        let a_ids: Vec<u64> = (0..6)
            .map(|i| open(&st, "alpha", &format!("f{i}"), &old))
            .collect();
        let b_ids = open_n(&st, "beta", "g", &old, 3);
        let mut spec = spec_over(
            &["alpha", "beta"],
            RulesSpec {
                stale: stale("1h"),
                ..RulesSpec::default()
            },
        );
        relaxed(&mut spec);
        let p = policy(&spec);
        // The third close on alpha fails with a 500.
        let a = Recording::new(st.clone(), Fault::CloseFailsAt(2));
        let b = Recording::new(st.clone(), Fault::None);
        let mut run = Run::new(&p, vec![svc(&a), svc(&b)]);
        run.options.close_concurrency = concurrency;
        let report = run.go().await;

        let remaining: BTreeSet<u64> = open_ids(st.as_ref(), "alpha").await;
        let really_closed = a_ids.iter().filter(|id| !remaining.contains(id)).count() as u64;
        let sh = &report.shares[0];
        assert_eq!(
            sh.closed_total(),
            really_closed,
            "closed count matches the store"
        );
        assert_eq!(
            sh.closed_total(),
            a.closed_total(),
            "and what the service said"
        );
        assert_eq!(
            sh.error.as_ref().map(|e| e.category),
            Some(ErrorCategory::ServiceError)
        );
        assert_eq!(sh.failed_total(), 1);
        let o = outcomes(&report);
        for id in &a_ids {
            match o[id] {
                Outcome::Closed => assert!(!remaining.contains(id)),
                Outcome::Failed | Outcome::NotClosed(NotClosed::ShareError) => {
                    assert!(remaining.contains(id))
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        if concurrency == 1 {
            // Nothing more was sent to alpha after the failure.
            assert_eq!(a.close_count(), 3);
            assert_eq!(really_closed, 2);
            assert_eq!(sh.not_closed.get("ShareError"), Some(&3));
        } else {
            assert!(a.close_count() <= 2 + concurrency);
        }
        // The other share was not affected.
        assert!(report.shares[1].error.is_none());
        assert_eq!(report.shares[1].closed_total(), b_ids.len() as u64);
        assert!(open_ids(st.as_ref(), "beta").await.is_empty());
    }
}

#[tokio::test]
async fn a_wildcard_failing_midway_reports_what_really_closed() {
    // Close batches of 2 over 5 handles: 3 calls; the second fails.
    let st = store_batch(&["data"], 2);
    let ids = open_n(&st, "data", "locked/f", &from("10.9.0.1:1"), 5);
    let mut spec = spec_with(RulesSpec {
        rename_guard: guard(&["locked"]),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::CloseFailsAt(1));
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    let remaining = open_ids(st.as_ref(), "data").await;
    let really_closed = ids.iter().filter(|id| !remaining.contains(id)).count() as u64;
    assert_eq!(really_closed, 2);
    assert_eq!(report.closed(), really_closed);
    assert_eq!(report.wildcards[0].closed, really_closed);
    assert_eq!(
        report.shares[0].error.as_ref().map(|e| e.category),
        Some(ErrorCategory::ServiceError)
    );
    // Decisions must not claim handles the service never closed were closed.
    let claimed = report
        .decisions
        .iter()
        .filter(|d| d.outcome == Outcome::ClosedByWildcard)
        .count() as u64;
    assert!(
        claimed <= really_closed,
        "{claimed} decisions say ClosedByWildcard but only {really_closed} handles were closed; \
         {} are still open",
        remaining.len()
    );
}

#[tokio::test]
async fn a_handle_the_store_refuses_to_close_is_failed_and_closes_go_on() {
    let st = store(&["data"]);
    let old = from("10.9.0.1:1").opened(at(-86_400));
    let ok1 = open(&st, "data", "a", &old);
    let bad = open(&st, "data", "b", &old.clone().failing());
    let ok2 = open(&st, "data", "c", &old);
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let mut run = Run::new(&p, vec![svc(&rec)]);
    run.options.close_concurrency = 1;
    let report = run.go().await;
    assert_eq!(rec.close_count(), 3);
    let o = outcomes(&report);
    assert_eq!(
        (o[&ok1], o[&bad], o[&ok2]),
        (Outcome::Closed, Outcome::Failed, Outcome::Closed)
    );
    assert_eq!(report.closed(), 2);
    assert_eq!(report.failed(), 1);
    assert!(report.all_shares_ok());
    assert_eq!(open_ids(st.as_ref(), "data").await, BTreeSet::from([bad]));
}

#[tokio::test]
async fn a_handle_gone_before_its_close_is_reported_gone() {
    let st = store(&["data"]);
    let old = from("10.9.0.1:1").opened(at(-86_400));
    let ids = open_n(&st, "data", "a", &old, 2);
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    // The client releases the first handle between observe and act.
    let rec = Recording::new(
        st.clone(),
        Fault::ReleaseBeforeClose(st.clone(), "data".into(), ids[0]),
    );
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    let o = outcomes(&report);
    assert_eq!(o[&ids[0]], Outcome::Gone);
    assert_eq!(o[&ids[1]], Outcome::Closed);
    assert_eq!(report.shares[0].gone, 1);
    assert_eq!(report.closed(), 1);
}

// ----- stop -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stop_request_skips_the_closes_not_yet_sent() {
    let st = store(&["data"]);
    let old = from("10.9.0.1:1").opened(at(-86_400));
    let ids: Vec<u64> = (0..5)
        .map(|i| open(&st, "data", &format!("f{i}"), &old))
        .collect();
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let counter = rec.clone();
    let input = SweepInput {
        policy: &p,
        services: vec![svc(&rec)],
        cluster: None,
        orphans: OrphanLedger::default(),
        now: t0(),
        stop: Arc::new(move || counter.close_count() >= 2),
    };
    let options = SweepOptions {
        close_concurrency: 1,
        ..SweepOptions::default()
    };
    let report = sweep(input, &options).await;
    check_totals(&report);
    assert_eq!(rec.close_count(), 2);
    assert!(report.interrupted);
    assert_eq!(report.closed(), 2);
    assert_eq!(report.not_closed().get("Interrupted"), Some(&3));
    assert_eq!(open_ids(st.as_ref(), "data").await.len(), ids.len() - 2);
}

// ----- the orphan ledger across sweeps --------------------------------------------------------

#[tokio::test]
async fn orphan_grace_is_measured_across_sweeps_and_known_clients_are_forgotten() {
    let st = store(&["data"]);
    let fresh = from("10.9.9.9:50000").opened(at(-60));
    let orphan = open(&st, "data", "o", &fresh);
    let node = open(&st, "data", "n", &from("10.0.0.1:1").opened(at(-60)));
    let flapper = open(&st, "data", "f", &from("[fd00::8]:445").opened(at(-60)));
    let mut spec = spec_with(RulesSpec {
        orphaned: orphaned("10m"),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let cluster_a = ClusterFacts::new(["10.0.0.1".parse().unwrap()], []);
    let cluster_b = ClusterFacts::new(
        ["10.0.0.1".parse().unwrap(), "fd00::8".parse().unwrap()],
        [],
    );

    // Sweep 1 at t0: both unknown clients are first seen now; nothing is closed.
    let rec = Recording::new(st.clone(), Fault::None);
    let mut run = Run::new(&p, vec![svc(&rec)]);
    run.cluster = Some(&cluster_a);
    let r1 = run.go().await;
    assert_eq!(rec.close_count(), 0);
    assert_eq!(
        r1.orphans,
        OrphanLedger(BTreeMap::from([
            ("10.9.9.9".to_owned(), t0()),
            ("fd00::8".to_owned(), t0()),
        ]))
    );

    // Sweep 2 at t0+5m: still within grace; first-seen times carried, not reset. The
    // flapping client is known now, so it is forgotten.
    let rec = Recording::new(st.clone(), Fault::None);
    let mut run = Run::new(&p, vec![svc(&rec)]);
    run.cluster = Some(&cluster_b);
    run.orphans = r1.orphans.clone();
    run.now = at(300);
    let r2 = run.go().await;
    assert_eq!(rec.close_count(), 0);
    assert_eq!(
        r2.orphans,
        OrphanLedger(BTreeMap::from([("10.9.9.9".to_owned(), t0())]))
    );

    // Sweep 3 at t0+10m: the grace period has passed for 10.9.9.9 (at least 10m); the flapper
    // is unknown again and starts over.
    let rec = Recording::new(st.clone(), Fault::None);
    let mut run = Run::new(&p, vec![svc(&rec)]);
    run.cluster = Some(&cluster_a);
    run.orphans = r2.orphans.clone();
    run.now = at(600);
    let r3 = run.go().await;
    let closed: BTreeSet<u64> = id_requests(&rec).iter().map(|(id, _)| *id).collect();
    assert_eq!(closed, BTreeSet::from([orphan]));
    assert_eq!(outcomes(&r3)[&orphan], Outcome::Closed);
    assert_eq!(r3.decisions[0].reason, Reason::Orphaned);
    assert_eq!(r3.orphans.first_seen("10.9.9.9"), Some(t0()));
    assert_eq!(r3.orphans.first_seen("fd00::8"), Some(at(600)));
    assert_eq!(
        open_ids(st.as_ref(), "data").await,
        BTreeSet::from([node, flapper])
    );
    // The ledger survives serialization the way the CLI's state file keeps it.
    let json = serde_json::to_string(&r3.orphans).unwrap();
    assert_eq!(
        serde_json::from_str::<OrphanLedger>(&json).unwrap(),
        r3.orphans
    );
}

// ----- paging and memory --------------------------------------------------------------------------

/// Builds the same share twice, sweeps it with each page size, and compares everything.
#[tokio::test]
async fn page_size_is_honoured_and_does_not_change_the_result() {
    fn populate(st: &MemoryStore) {
        for i in 0..150i64 {
            let ip = format!("10.9.{}.{}:445", i % 7, i % 5);
            let age = if i % 3 == 0 { 86_400 } else { 60 };
            let path = if i % 10 == 0 {
                format!("locked/d{}/f{i}", i % 4)
            } else {
                format!("dir{}/f{i}", i % 6)
            };
            open(st, "data", &path, &from(&ip).opened(at(-age)));
        }
    }
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        rename_guard: guard(&["locked"]),
        ..RulesSpec::default()
    });
    spec.shares[0].paths = vec!["dir1".into(), "dir2".into(), "locked".into(), "dir3".into()];
    spec.limits.max_closes_per_sweep = 30;
    spec.limits.safety_valve_percent = 100;
    let p = policy(&spec);

    let mut summaries = Vec::new();
    for page_size in [1u32, 7, 5000] {
        let st = store(&["data"]);
        populate(&st);
        let rec = Recording::new(st.clone(), Fault::None);
        let mut run = Run::new(&p, vec![svc(&rec)]);
        run.options.page_size = page_size;
        let report = run.go().await;
        let lists = rec.list_calls();
        assert!(
            lists
                .iter()
                .all(|(req, _)| req.max_results == Some(page_size)),
            "every List Handles asks for the page size"
        );
        assert!(
            lists.iter().all(|(_, n)| *n as u32 <= page_size),
            "no page holds more than the page size"
        );
        let seen = report.seen();
        assert_eq!(lists.iter().map(|(_, n)| *n as u64).sum::<u64>(), seen);
        if page_size == 1 {
            // One call per handle: the sweep never asked for more than one at a time.
            assert_eq!(lists.len() as u64, seen);
        }
        if page_size == 5000 {
            assert_eq!(lists.len(), 4, "one page per root");
        }
        let mut decisions: Vec<_> = report
            .decisions
            .iter()
            .map(|d| (d.handle_id.0, d.path.clone(), d.reason, d.outcome))
            .collect();
        decisions.sort_by_key(|d| d.0);
        let wildcards: Vec<_> = report
            .wildcards
            .iter()
            .map(|w| (w.path.clone(), w.covers, w.closed))
            .collect();
        summaries.push((
            seen,
            report.kept(),
            report.condemned(),
            report.closed(),
            report.not_closed(),
            decisions,
            wildcards,
            open_ids(st.as_ref(), "data").await,
        ));
    }
    assert_eq!(
        summaries[0].0,
        15 + 25 + 20 + 25,
        "locked, dir1, dir2 (less five in locked), dir3"
    );
    assert!(summaries[0].3 > 0 && !summaries[0].6.is_empty());
    assert_eq!(summaries[0], summaries[1]);
    assert_eq!(summaries[0], summaries[2]);
}

// ----- the whole pipeline against the reference model --------------------------------------

/// Every scenario from the policy properties, in a real store and through a real sweep: what
/// closes is exactly what the reference model condemns (up to the cap), only in Enforce, never
/// past the valve, with wildcards exactly where the model says.
fn sweep_matches_model(
    s: Scenario,
    page_size: u32,
    close_batch: usize,
) -> Result<(), TestCaseError> {
    // The store folds case like Azure Files; keep the tree's names distinct under folding
    // (the case-sensitivity of path globs is covered by the policy properties).
    let mut s = s;
    s.tree = s
        .tree
        .iter()
        .map(|p| {
            p.split('/')
                .map(|seg| if seg == "Data" { "Dáta" } else { seg })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let mut m = model(&s);
    let st = store_batch(&["data"], close_batch);
    // The whole tree exists, whether or not handles are open on it.
    for node in m.nodes.iter().filter(|n| !n.is_empty()) {
        let kind = if is_dir(&m.nodes, node) {
            NodeKind::Directory
        } else {
            NodeKind::File
        };
        st.create("data", node, kind).unwrap();
    }
    let mut ids = Vec::new();
    for (g, r) in s.handles.iter().zip(m.refs.iter_mut()) {
        // The memory store always reports rights.
        r.access = Some(g.access.unwrap_or(0));
        let o = Open {
            ip: r.client.raw.clone(),
            name: r.client.name.clone(),
            open: ts(r.open),
            reconnect: r.reconnect.map(ts),
            rights: AccessRights::from_bits(r.access.unwrap()),
            dir: is_dir(&m.nodes, &r.path),
            fail_close: false,
        };
        ids.push(open(&st, "data", &r.path, &o));
    }
    let n = ids.len();
    let observed: Vec<usize> = (0..n).filter(|&i| m.observed(i)).collect();
    let condemned: Vec<usize> = observed
        .iter()
        .copied()
        .filter(|&i| m.expected(i).is_ok())
        .collect();
    let cond_ids: BTreeSet<u64> = condemned.iter().map(|&i| ids[i]).collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rec = Recording::new(st.clone(), Fault::None);
    let report = rt.block_on(async {
        let mut run = Run::new(&m.policy, vec![svc(&rec)]);
        run.cluster = m.cluster.as_ref();
        run.orphans = m.ledger.clone();
        run.now = m.now;
        run.options.page_size = page_size;
        run.go().await
    });
    let remaining = rt.block_on(open_ids(st.as_ref(), "data"));
    let closed: BTreeSet<u64> = ids
        .iter()
        .copied()
        .filter(|id| !remaining.contains(id))
        .collect();

    // Observation and classification.
    prop_assert_eq!(report.seen(), observed.len() as u64);
    let mut want_kept: BTreeMap<&str, u64> = BTreeMap::new();
    for &i in &observed {
        if let Err(k) = m.expected(i) {
            *want_kept.entry(k).or_default() += 1;
        }
    }
    prop_assert_eq!(report.kept(), want_kept);
    let decided: BTreeSet<u64> = report.decisions.iter().map(|d| d.handle_id.0).collect();
    prop_assert_eq!(&decided, &cond_ids);
    for d in &report.decisions {
        let i = ids.iter().position(|id| *id == d.handle_id.0).unwrap();
        prop_assert_eq!(Ok(d.reason.as_str()), m.expected(i));
    }

    // Invariant 1: nothing outside the condemned set closes, by id or by wildcard.
    prop_assert!(
        closed.is_subset(&cond_ids),
        "closed {:?} not condemned",
        closed.difference(&cond_ids).collect::<Vec<_>>()
    );
    for (id, _) in id_requests(&rec) {
        prop_assert!(cond_ids.contains(&id));
    }
    prop_assert_eq!(report.closed(), closed.len() as u64);

    // Page size honoured.
    for (req, got) in rec.list_calls() {
        prop_assert_eq!(req.max_results, Some(page_size));
        prop_assert!(got as u32 <= page_size);
    }

    // The ledger: unknown observed clients keep their first-seen time or get now.
    let mut want_ledger = BTreeMap::new();
    if let Some(c) = &m.ref_cluster {
        for &i in &observed {
            let client = &m.refs[i].client;
            let known = client.ip.is_some_and(|ip| c.ips.contains(&ip))
                || client
                    .name
                    .as_deref()
                    .is_some_and(|n| c.names.iter().any(|x| x.eq_ignore_ascii_case(n)));
            if !known {
                let key = client.key();
                let first = m.ledger.first_seen(&key).unwrap_or(m.now);
                want_ledger.insert(key, first);
            }
        }
    }
    prop_assert_eq!(&report.orphans.0, &want_ledger);

    let k = cond_ids.len() as u64;
    let seen = observed.len() as u64;
    let trips = k * 100 > seen * u64::from(m.policy.limits.safety_valve_percent);
    if s.mode == Mode::DryRun {
        // Invariant 2.
        prop_assert_eq!(rec.close_count(), 0);
        prop_assert!(closed.is_empty());
        return Ok(());
    }
    if trips {
        // Invariant 4.
        prop_assert_eq!(rec.close_count(), 0);
        prop_assert!(closed.is_empty());
        prop_assert!(report.safety_valve.is_some());
        return Ok(());
    }
    prop_assert!(report.safety_valve.is_none());
    prop_assert_eq!(closed.len() as u64, k.min(m.policy.limits.max_closes));
    if k > m.policy.limits.max_closes {
        return Ok(());
    }
    prop_assert_eq!(&closed, &cond_ids);

    // Invariant 3: wildcards exactly at the outermost guards whose fully observed subtree
    // holds condemned handles and nothing kept.
    let within = |i: usize, g: &str| ref_within(&m.refs[i].path, g);
    let qualifies = |g: &String| {
        m.fully_observed(g)
            && observed
                .iter()
                .all(|&i| !within(i, g) || m.expected(i).is_ok())
            && observed.iter().any(|&i| within(i, g))
    };
    let qualifying: BTreeSet<String> = m
        .ref_rules
        .guards
        .iter()
        .filter(|g| qualifies(g))
        .cloned()
        .collect();
    let chosen: BTreeSet<(String, Option<bool>)> = qualifying
        .iter()
        .filter(|g| !qualifying.iter().any(|o| o != *g && ref_within(g, o)))
        .map(|g| {
            let below = observed
                .iter()
                .any(|&i| m.refs[i].path.len() > g.len() && within(i, g));
            (g.clone(), below.then_some(true))
        })
        .collect();
    let sent: BTreeSet<(String, Option<bool>)> = wildcard_requests(&rec).into_iter().collect();
    prop_assert_eq!(
        wildcard_requests(&rec).len(),
        sent.len(),
        "one * close per guard"
    );
    prop_assert_eq!(&sent, &chosen);
    let by_id: BTreeSet<u64> = id_requests(&rec).iter().map(|(id, _)| *id).collect();
    let want_by_id: BTreeSet<u64> = condemned
        .iter()
        .filter(|&&i| !chosen.iter().any(|(g, _)| within(i, g)))
        .map(|&i| ids[i])
        .collect();
    prop_assert_eq!(by_id, want_by_id);
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    /// The knobs make cases where much is condemned more common (everything in scope, nothing
    /// protected, the whole share, roomy limits in Enforce), so wildcards and closes are
    /// exercised, not only keeps.
    #[test]
    fn sweep_closes_exactly_what_the_model_condemns(
        mut s in arb_scenario(),
        knobs in (any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.6)),
        page_size in prop_oneof![Just(1u32), 2u32..6, Just(5000)],
        close_batch in prop_oneof![Just(1usize), Just(2), Just(1000)],
    ) {
        let (all_in_scope, unprotected, whole_share, roomy) = knobs;
        if all_in_scope {
            s.rules.include.clear();
            s.rules.exclude.clear();
        }
        if unprotected {
            s.rules.cidrs.clear();
            s.rules.names.clear();
            s.rules.access.clear();
        }
        if whole_share {
            s.roots.clear();
        }
        if roomy {
            s.mode = Mode::Enforce;
            s.max_closes = 1_000_000;
            s.valve = 100;
        }
        sweep_matches_model(s, page_size, close_batch)?;
    }
}

/// A wildcard close where the store refuses some handles: those are counted as failed, and
/// their decisions must not say they were closed.
#[tokio::test]
async fn a_wildcard_with_refused_handles_does_not_claim_them_closed() {
    let st = store(&["data"]);
    let ok = open_n(&st, "data", "locked/a", &from("10.9.0.1:1"), 2);
    let refused = open(&st, "data", "locked/b", &from("10.9.0.2:1").failing());
    let mut spec = spec_with(RulesSpec {
        rename_guard: guard(&["locked"]),
        ..RulesSpec::default()
    });
    relaxed(&mut spec);
    let p = policy(&spec);
    let rec = Recording::new(st.clone(), Fault::None);
    let report = Run::new(&p, vec![svc(&rec)]).go().await;
    assert_eq!(report.wildcards[0].closed, 2);
    assert_eq!(report.wildcards[0].failed, 1);
    assert_eq!(report.failed(), 1);
    assert_eq!(
        open_ids(st.as_ref(), "data").await,
        BTreeSet::from([refused])
    );
    let o = outcomes(&report);
    assert!(ok.iter().all(|id| o[id] == Outcome::ClosedByWildcard));
    assert_ne!(
        o[&refused],
        Outcome::ClosedByWildcard,
        "the refused handle is still open but its decision says ClosedByWildcard"
    );
}
