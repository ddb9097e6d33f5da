//! One sweep over a policy's shares: observe (paged, with bounded concurrency across shares),
//! classify, plan over all shares at once (the safety valve and the cap are per policy), act,
//! and report.
//!
//! Memory holds one page per share being listed plus the condemned handles, never a whole
//! share. A share that fails is reported and closes nothing; the others go on.

mod act;
mod give_up;
mod observe;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use futures::StreamExt;
use jiff::Timestamp;

pub use report::{
    Decision, HotPath, NotClosed, Outcome, ShareFailure, ShareReport, SweepReport, WildcardReport,
    format_counts,
};

use crate::handles::{Error, HandleService};
use crate::policy::{ClusterFacts, Disposition, OrphanLedger, Policy, plan};
use observe::{Classifier, Observation, observe};
use report::bump;

/// Whether a sweep should stop (shutdown, lost leadership).
pub type StopSignal = Arc<dyn Fn() -> bool + Send + Sync>;

/// A stop signal that never fires.
pub fn never_stop() -> StopSignal {
    Arc::new(|| false)
}

/// A stop signal that fires when `flag` is set.
pub fn stop_on(flag: Arc<AtomicBool>) -> StopSignal {
    Arc::new(move || flag.load(std::sync::atomic::Ordering::Relaxed))
}

/// Told how a long sweep is going (the CLI prints it on stderr).
pub trait Progress: Send + Sync {
    /// A page of `share` was listed; `seen` handles so far on it.
    fn listed(&self, share: &str, seen: u64);
}

/// How a sweep runs.
#[derive(Clone)]
pub struct SweepOptions {
    /// Handles per List Handles page.
    pub page_size: u32,
    /// Shares observed or acted on at once.
    pub share_concurrency: usize,
    /// Close-by-id requests offered at once per share. How many are really in flight is
    /// decided per endpoint by the client's adaptive limiter (see docs/sweep.md), so this only
    /// needs to be large enough to keep that limit busy.
    pub close_concurrency: usize,
    /// Progress reports, if wanted.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            page_size: 5000,
            share_concurrency: 4,
            close_concurrency: 128,
            progress: None,
        }
    }
}

/// What a sweep needs besides the policy.
pub struct SweepInput<'a> {
    /// The compiled policy.
    pub policy: &'a Policy,
    /// One service per share of the policy, in order; `Err` for a share that could not be set
    /// up (a missing Secret), which is reported as failed.
    pub services: Vec<Result<Arc<dyn HandleService>, Error>>,
    /// The cluster's nodes and pods (`None` outside a cluster: the orphaned rule is idle).
    pub cluster: Option<&'a ClusterFacts>,
    /// Unknown clients' first-seen times from the previous sweep.
    pub orphans: OrphanLedger,
    /// The sweep's notion of now (classification never reads the clock).
    pub now: Timestamp,
    /// Asked before every close request: when it says stop, closes not yet sent are skipped
    /// with cause `Interrupted` (the request in flight finishes).
    pub stop: StopSignal,
}

/// Runs one sweep.
pub async fn sweep(input: SweepInput<'_>, options: &SweepOptions) -> SweepReport {
    let started = Instant::now();
    let policy = input.policy;
    let classifier = Classifier {
        rules: &policy.rules,
        cluster: input.cluster,
        ledger: &input.orphans,
        now: input.now,
    };

    // Shares of one endpoint are given up on together when it stops answering.
    let endpoints: Vec<&str> = policy.shares.iter().map(|s| s.endpoint.as_str()).collect();
    let (services, given_up) = give_up::guard(input.services, &endpoints);

    // Observe every share (bounded concurrency), keeping only counts and condemned handles.
    let observations: Vec<Result<Observation, Error>> =
        futures::stream::iter(0..policy.shares.len())
            .map(|i| observe_share(i, policy, &services, &classifier, options))
            .buffered(options.share_concurrency.max(1))
            .collect()
            .await;

    let mut shares: Vec<ShareReport> = policy
        .shares
        .iter()
        .map(|s| ShareReport {
            endpoint: s.endpoint.clone(),
            share: s.share.clone(),
            ..ShareReport::default()
        })
        .collect();
    let mut condemned = Vec::new();
    let mut handles = Vec::new();
    let mut guards = Vec::new();
    let mut unknown = std::collections::BTreeSet::new();
    let mut any_failed = false;
    let mut observed = 0u64;
    for (i, obs) in observations.into_iter().enumerate() {
        match obs {
            Ok(obs) => {
                let r = &mut shares[i];
                r.seen = obs.seen;
                r.kept = obs.kept;
                r.oldest_held_since = obs.oldest;
                r.hottest = obs.hottest;
                observed += obs.seen;
                for (c, h) in obs.condemned {
                    bump(&mut r.condemned, c.reason.as_str(), 1);
                    condemned.push(c);
                    handles.push(h);
                }
                guards.extend(obs.guards);
                unknown.extend(obs.unknown_clients);
            }
            Err(e) => {
                any_failed = true;
                shares[i].error = Some(ShareFailure {
                    category: e.category(),
                    message: e.to_string(),
                });
            }
        }
    }

    let close_plan = plan(policy.mode, observed, &condemned, &guards, policy.limits);

    // Act, share by share (bounded concurrency across shares).
    let acted: Vec<(usize, act::Acted, Vec<usize>, Vec<usize>)> =
        futures::stream::iter((0..shares.len()).map(|s| {
            let close_plan = &close_plan;
            let condemned = &condemned;
            let services = &services;
            let given_up = &given_up;
            let stop = &input.stop;
            async move {
                let by_id: Vec<usize> = (0..condemned.len())
                    .filter(|&i| {
                        condemned[i].share == s && close_plan.dispositions[i] == Disposition::Close
                    })
                    .collect();
                let wild: Vec<usize> = (0..close_plan.wildcards.len())
                    .filter(|&w| close_plan.wildcards[w].share == s)
                    .collect();
                let has_work = !by_id.is_empty() || !wild.is_empty();
                let acted = match services.get(s) {
                    // Its endpoint stopped answering while other shares were observed or
                    // acted on: nothing is sent, and nothing is claimed.
                    Some(Ok(_)) if has_work && given_up.share(s) => act::Acted {
                        outcomes: Vec::new(),
                        wildcards: wild.iter().map(|_| None).collect(),
                        error: Some(give_up::not_attempted(&policy.shares[s].share)),
                    },
                    Some(Ok(svc)) if has_work => {
                        let items: Vec<_> = by_id.iter().map(|&i| &condemned[i]).collect();
                        let ws: Vec<_> = wild.iter().map(|&w| &close_plan.wildcards[w]).collect();
                        act::act(
                            &policy.shares[s].share,
                            svc.as_ref(),
                            &items,
                            &ws,
                            options.close_concurrency,
                            stop,
                        )
                        .await
                    }
                    _ => act::Acted::default(),
                };
                (s, acted, by_id, wild)
            }
        }))
        .buffered(options.share_concurrency.max(1))
        .collect()
        .await;

    let mut outcomes: Vec<Outcome> = close_plan
        .dispositions
        .iter()
        .map(|d| match d {
            Disposition::Skip(cause) => Outcome::NotClosed(NotClosed::Skipped(*cause)),
            Disposition::Wildcard(_) => Outcome::ClosedByWildcard,
            Disposition::Close => Outcome::NotClosed(NotClosed::ShareError),
        })
        .collect();
    let mut wildcards: Vec<WildcardReport> = close_plan
        .wildcards
        .iter()
        .map(|w| WildcardReport {
            share: policy.shares[w.share].share.clone(),
            path: w.path.clone(),
            covers: w.covers,
            closed: 0,
            failed: 0,
        })
        .collect();
    for (s, acted, by_id, wild) in acted {
        for (&i, outcome) in by_id.iter().zip(acted.outcomes) {
            outcomes[i] = outcome;
        }
        for (&w, run) in wild.iter().zip(acted.wildcards) {
            settle_wildcard_members(
                &mut outcomes,
                &close_plan.dispositions,
                &condemned,
                w,
                run.as_ref(),
                (input.stop)(),
            );
            if let Some(run) = run {
                wildcards[w].closed = run.closed;
                wildcards[w].failed = run.failed;
                let reason = crate::policy::Reason::RenameBlocking.as_str();
                bump(&mut shares[s].closed, reason, run.closed);
                if run.failed > 0 {
                    bump(&mut shares[s].failed, reason, run.failed);
                }
            }
        }
        if let Some(e) = acted.error {
            shares[s].error = Some(ShareFailure {
                category: e.category(),
                message: e.to_string(),
            });
        }
    }

    let mut decisions = Vec::with_capacity(condemned.len());
    for (((c, h), outcome), disposition) in condemned
        .iter()
        .zip(handles)
        .zip(&outcomes)
        .zip(&close_plan.dispositions)
    {
        let r = &mut shares[c.share];
        // A wildcard's closed and failed counts are its own, counted above.
        let by_wildcard = matches!(disposition, Disposition::Wildcard(_));
        match outcome {
            Outcome::Closed => bump(&mut r.closed, c.reason.as_str(), 1),
            Outcome::Failed if by_wildcard => {}
            Outcome::Failed => bump(&mut r.failed, c.reason.as_str(), 1),
            Outcome::Gone => r.gone += 1,
            Outcome::ClosedByWildcard => {}
            Outcome::NotClosed(cause) => bump(&mut r.not_closed, cause.as_str(), 1),
        }
        decisions.push(Decision {
            share: r.share.clone(),
            handle_id: h.handle_id,
            path: h.path,
            client_ip: h.client_ip,
            client_name: h.client_name,
            held_since: c.held_since,
            reason: c.reason,
            outcome: *outcome,
        });
    }

    SweepReport {
        mode: policy.mode,
        started: input.now,
        duration: started.elapsed(),
        shares,
        decisions,
        wildcards,
        safety_valve: close_plan.valve,
        orphans: next_ledger(&input.orphans, &unknown, input.now, any_failed),
        interrupted: (input.stop)(),
    }
}

/// Observes share `i` with its service, or reports why it has none.
async fn observe_share(
    i: usize,
    policy: &Policy,
    services: &[Result<Arc<dyn HandleService>, Error>],
    classifier: &Classifier<'_>,
    options: &SweepOptions,
) -> Result<Observation, Error> {
    let scope = &policy.shares[i];
    match services.get(i) {
        Some(Ok(svc)) => {
            observe(
                i,
                scope,
                svc.as_ref(),
                classifier,
                options.page_size,
                options.progress.as_deref(),
            )
            .await
        }
        Some(Err(e)) => Err(e.clone()),
        None => Err(Error::Backend {
            target: scope.share.clone(),
            message: "no service for this share".into(),
        }),
    }
}

/// The outcome of each member of wildcard `w`. After it ran: closed unless still open; a
/// member still open is `Failed` (the service refused it) or, after an error, not closed
/// because of the share error; when that cannot be checked, not closed either. When it did
/// not run (`None`): not closed, because the sweep was stopped or the share had failed.
fn settle_wildcard_members(
    outcomes: &mut [Outcome],
    dispositions: &[Disposition],
    condemned: &[crate::policy::Condemned],
    w: usize,
    run: Option<&act::WildcardRun>,
    stopped: bool,
) {
    for ((o, d), c) in outcomes.iter_mut().zip(dispositions).zip(condemned) {
        if *d != Disposition::Wildcard(w) {
            continue;
        }
        *o = match run.map(|r| (&r.still_open, r.errored)) {
            Some((Some(open), _)) if !open.contains(&c.id) => Outcome::ClosedByWildcard,
            Some((Some(_), false)) => Outcome::Failed,
            None if stopped => Outcome::NotClosed(NotClosed::Interrupted),
            _ => Outcome::NotClosed(NotClosed::ShareError),
        };
    }
}

/// The ledger for the next sweep: clients seen unknown keep their first-seen time (or get
/// `now`); others are forgotten, unless a share failed, in which case old entries are kept
/// (the failed share's clients were not re-checked).
fn next_ledger(
    old: &OrphanLedger,
    unknown: &std::collections::BTreeSet<String>,
    now: Timestamp,
    keep_old: bool,
) -> OrphanLedger {
    let mut next: BTreeMap<String, Timestamp> = if keep_old {
        old.0.clone()
    } else {
        BTreeMap::new()
    };
    for key in unknown {
        next.insert(key.clone(), old.first_seen(key).unwrap_or(now));
    }
    OrphanLedger(next)
}
