//! One verdict per handle: keep (and why) or close (and why). Pure: no IO, no clock.

use std::fmt;

use jiff::Timestamp;

use super::compile::{Rules, is_within};
use super::facts::{ClusterFacts, OrphanLedger, client_key};
use crate::protocol::Handle;

/// Why a handle is condemned, in priority order (the first that applies is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// It is on or below a rename-guarded path.
    RenameBlocking,
    /// Its client has been unknown to the cluster for the grace period.
    Orphaned,
    /// It has been held longer than the policy allows.
    Stale,
}

impl Reason {
    /// The reason as a metric label value, status key and Event text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RenameBlocking => "RenameBlocking",
            Self::Orphaned => "Orphaned",
            Self::Stale => "Stale",
        }
    }

    /// Every reason, in priority order.
    pub const ALL: [Reason; 3] = [Self::RenameBlocking, Self::Orphaned, Self::Stale];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a handle is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Keep {
    /// Its path is excluded, or not included, by `match`.
    OutOfScope,
    /// Its client is protected.
    Protected,
    /// It holds none of the rights the policy targets.
    AccessRights,
    /// No rule condemns it.
    NotCondemned,
}

impl Keep {
    /// The reason as a label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfScope => "OutOfScope",
            Self::Protected => "Protected",
            Self::AccessRights => "AccessRights",
            Self::NotCondemned => "NotCondemned",
        }
    }
}

/// The verdict on one handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Leave it open.
    Keep(Keep),
    /// Close it.
    Close(Reason),
}

/// What classification knows besides the rules: the cluster's clients (`None` outside a
/// cluster, where the orphaned rule condemns nothing) and when unknown clients were first seen.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Nodes and pods of the cluster.
    pub cluster: Option<&'a ClusterFacts>,
    /// First-seen times of unknown clients.
    pub orphans: &'a OrphanLedger,
}

/// Whether the handle's client is protected by address or name.
pub fn is_protected(h: &Handle, rules: &Rules) -> bool {
    h.client_addr()
        .is_some_and(|ip| rules.protect_cidrs.iter().any(|n| n.contains(&ip)))
        || h.client_name
            .as_deref()
            .is_some_and(|n| rules.protect_names.iter().any(|g| g.matches(n)))
}

/// Whether the path is in scope of `match` (roots are the sweep's business).
pub fn in_scope(path: &str, rules: &Rules) -> bool {
    (rules.include.is_empty() || rules.include.iter().any(|g| g.matches(path)))
        && !rules.exclude.iter().any(|g| g.matches(path))
}

/// The verdict on `h` at time `now`.
pub fn classify(h: &Handle, rules: &Rules, facts: &Facts<'_>, now: Timestamp) -> Verdict {
    if !in_scope(&h.path, rules) {
        return Verdict::Keep(Keep::OutOfScope);
    }
    if is_protected(h, rules) {
        return Verdict::Keep(Keep::Protected);
    }
    if let Some(wanted) = rules.access {
        // A handle whose rights were not reported (service versions before 2023-01-03) is not
        // known to hold them, so it is kept: the filter narrows, it never widens.
        if !h.access_rights.is_some_and(|r| r.intersects(wanted)) {
            return Verdict::Keep(Keep::AccessRights);
        }
    }
    if rules.rename_guard.iter().any(|g| is_within(&h.path, g)) {
        return Verdict::Close(Reason::RenameBlocking);
    }
    if let (Some(grace), Some(cluster)) = (rules.orphaned, facts.cluster)
        && !cluster.knows(h)
    {
        let since = facts.orphans.first_seen(&client_key(h)).unwrap_or(now);
        if held_at_least(since, now, grace) {
            return Verdict::Close(Reason::Orphaned);
        }
    }
    if let Some(limit) = rules.stale
        && held_longer_than(h.held_since(), now, limit)
    {
        return Verdict::Close(Reason::Stale);
    }
    Verdict::Keep(Keep::NotCondemned)
}

/// Whether `now - since >= limit` (a `since` in the future never qualifies).
fn held_at_least(since: Timestamp, now: Timestamp, limit: std::time::Duration) -> bool {
    let held = now.duration_since(since);
    !held.is_negative() && held.unsigned_abs() >= limit
}

/// Whether `now - since > limit`.
fn held_longer_than(since: Timestamp, now: Timestamp, limit: std::time::Duration) -> bool {
    let held = now.duration_since(since);
    !held.is_negative() && held.unsigned_abs() > limit
}
