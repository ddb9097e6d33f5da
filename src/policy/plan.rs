//! From the condemned handles of a sweep to what it closes: the safety valve, the cap, the
//! dry run, and wildcard closes where a rename guard condemns a whole subtree. Pure.

use std::collections::BTreeMap;
use std::fmt;

use super::classify::Reason;
use super::compile::{Limits, is_within};
use crate::api::Mode;
use jiff::Timestamp;

use crate::protocol::HandleId;

/// One condemned handle, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condemned {
    /// Index of the share in the policy.
    pub share: usize,
    /// The handle's id.
    pub id: HandleId,
    /// The handle's path.
    pub path: String,
    /// Since when it has been held (older ones are closed first under a cap).
    pub held_since: Timestamp,
    /// Why it is condemned.
    pub reason: Reason,
}

/// What a sweep saw under one rename-guarded path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardStat {
    /// Index of the share.
    pub share: usize,
    /// The guarded path.
    pub path: String,
    /// Whether the sweep listed the whole subtree (the path lies within a swept root).
    pub fully_observed: bool,
    /// Whether the path is known to be a directory (a handle was seen below it).
    pub directory: bool,
    /// Handles under it that were kept, for any reason (protected, out of scope, ...).
    pub kept: u64,
}

/// Why a condemned handle is not closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipCause {
    /// The policy is in dry-run mode.
    DryRun,
    /// The sweep's cap was reached.
    Limit,
    /// More than the safety valve allows would close, so none do.
    SafetyValve,
}

impl SkipCause {
    /// The cause as a label value and status key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DryRun => "DryRun",
            Self::Limit => "Limit",
            Self::SafetyValve => "SafetyValve",
        }
    }
}

impl fmt::Display for SkipCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to one condemned handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Closed by id, through its own path.
    Close,
    /// Closed by the wildcard close with this index in [`ClosePlan::wildcards`].
    Wildcard(usize),
    /// Not closed.
    Skip(SkipCause),
}

/// One `*` close of a whole guarded subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    /// Index of the share.
    pub share: usize,
    /// The guarded path.
    pub path: String,
    /// Whether to send `x-ms-recursive: true` (a directory) or no header (a file, or a path
    /// only seen with handles on itself).
    pub recursive: bool,
    /// How many observed handles it covers.
    pub covers: u64,
}

/// The safety valve tripped: how many would have closed out of how many observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValveTrip {
    /// Handles condemned.
    pub condemned: u64,
    /// Handles observed.
    pub observed: u64,
    /// The policy's limit, in percent.
    pub limit_percent: u8,
}

/// The plan: one disposition per condemned handle (same order as the input), and the
/// wildcard closes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosePlan {
    /// One per condemned handle.
    pub dispositions: Vec<Disposition>,
    /// Wildcard closes.
    pub wildcards: Vec<Wildcard>,
    /// Set when the safety valve tripped.
    pub valve: Option<ValveTrip>,
}

impl ClosePlan {
    /// Condemned handles not closed, by cause.
    pub fn skipped(&self) -> BTreeMap<SkipCause, u64> {
        let mut out = BTreeMap::new();
        for d in &self.dispositions {
            if let Disposition::Skip(c) = d {
                *out.entry(*c).or_default() += 1;
            }
        }
        out
    }

    /// How many handles the plan closes (by id or by wildcard).
    pub fn closes(&self) -> u64 {
        self.dispositions
            .iter()
            .filter(|d| !matches!(d, Disposition::Skip(_)))
            .count() as u64
    }
}

/// Plans a sweep's closes.
///
/// 1. Safety valve: if more than `safety_valve_percent` of the `observed` handles are
///    condemned, nothing closes.
/// 2. Cap: at most `max_closes`, rename-blocking first, then orphaned, then stale; oldest first.
/// 3. Dry run: what would close is skipped with cause `DryRun`.
/// 4. Wildcards (enforce only): a guarded path whose subtree was fully observed, with nothing
///    kept under it and every condemned handle under it admitted, is closed with one `*`.
pub fn plan(
    mode: Mode,
    observed: u64,
    condemned: &[Condemned],
    guards: &[GuardStat],
    limits: Limits,
) -> ClosePlan {
    let n = condemned.len() as u64;
    if n == 0 {
        return ClosePlan::default();
    }
    if n.saturating_mul(100) > observed.saturating_mul(u64::from(limits.safety_valve_percent)) {
        return ClosePlan {
            dispositions: vec![Disposition::Skip(SkipCause::SafetyValve); condemned.len()],
            wildcards: Vec::new(),
            valve: Some(ValveTrip {
                condemned: n,
                observed,
                limit_percent: limits.safety_valve_percent,
            }),
        };
    }
    let mut order: Vec<usize> = (0..condemned.len()).collect();
    order.sort_by_key(|&i| {
        (
            condemned[i].reason,
            condemned[i].held_since,
            condemned[i].id,
        )
    });
    let admitted_cause = if mode == Mode::DryRun {
        Disposition::Skip(SkipCause::DryRun)
    } else {
        Disposition::Close
    };
    let mut dispositions = vec![Disposition::Skip(SkipCause::Limit); condemned.len()];
    for &i in order
        .iter()
        .take(usize::try_from(limits.max_closes).unwrap_or(usize::MAX))
    {
        dispositions[i] = admitted_cause;
    }
    let mut plan = ClosePlan {
        dispositions,
        wildcards: Vec::new(),
        valve: None,
    };
    if mode == Mode::Enforce {
        plan_wildcards(&mut plan, condemned, guards);
    }
    plan
}

fn plan_wildcards(plan: &mut ClosePlan, condemned: &[Condemned], guards: &[GuardStat]) {
    // Outer guards first, so a subtree is closed by the widest qualifying wildcard.
    let mut guards: Vec<&GuardStat> = guards
        .iter()
        .filter(|g| g.fully_observed && g.kept == 0)
        .collect();
    guards.sort_by_key(|g| (g.share, g.path.matches('/').count(), g.path.clone()));
    for g in guards {
        let members: Vec<usize> = (0..condemned.len())
            .filter(|&i| condemned[i].share == g.share && is_within(&condemned[i].path, &g.path))
            .filter(|&i| !matches!(plan.dispositions[i], Disposition::Wildcard(_)))
            .collect();
        let all_rename_blocking = members
            .iter()
            .all(|&i| condemned[i].reason == Reason::RenameBlocking);
        let all_admitted = members
            .iter()
            .all(|&i| plan.dispositions[i] == Disposition::Close);
        if members.is_empty() || !all_admitted || !all_rename_blocking {
            continue;
        }
        let index = plan.wildcards.len();
        plan.wildcards.push(Wildcard {
            share: g.share,
            path: g.path.clone(),
            recursive: g.directory,
            covers: members.len() as u64,
        });
        for i in members {
            plan.dispositions[i] = Disposition::Wildcard(index);
        }
    }
}
