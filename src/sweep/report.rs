//! `SweepReport`: everything one sweep saw and did. The CLI prints it; the controller turns
//! it into status, Events and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::api::Mode;
use crate::handles::ErrorCategory;
use crate::policy::{OrphanLedger, Reason, SkipCause, ValveTrip};
use crate::protocol::HandleId;

/// Why a condemned handle was not closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotClosed {
    /// The plan skipped it.
    Skipped(SkipCause),
    /// Its share failed before or while closing.
    ShareError,
    /// The sweep was asked to stop.
    Interrupted,
}

impl NotClosed {
    /// The cause as a label value and status key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skipped(c) => c.as_str(),
            Self::ShareError => "ShareError",
            Self::Interrupted => "Interrupted",
        }
    }
}

/// What became of one condemned handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Closed by id.
    Closed,
    /// Covered by a wildcard close (see the report's wildcards for its counts).
    ClosedByWildcard,
    /// The service could not close it.
    Failed,
    /// It was gone already (the client closed it first).
    Gone,
    /// Not closed.
    NotClosed(NotClosed),
}

impl Outcome {
    /// The outcome as text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "Closed",
            Self::ClosedByWildcard => "ClosedByWildcard",
            Self::Failed => "Failed",
            Self::Gone => "Gone",
            Self::NotClosed(NotClosed::Skipped(SkipCause::DryRun)) => "WouldClose",
            Self::NotClosed(c) => c.as_str(),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One condemned handle and what became of it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The share's name.
    pub share: String,
    /// The handle.
    pub handle_id: HandleId,
    /// Its path.
    pub path: String,
    /// Its client's address.
    pub client_ip: String,
    /// Its client's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Since when it has been held.
    pub held_since: Timestamp,
    /// Why it was condemned.
    #[serde(serialize_with = "ser_reason")]
    pub reason: Reason,
    /// What became of it.
    pub outcome: Outcome,
}

fn ser_reason<S: serde::Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// One wildcard close and its counts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WildcardReport {
    /// The share's name.
    pub share: String,
    /// The guarded path closed with `*`.
    pub path: String,
    /// Observed handles it covered.
    pub covers: u64,
    /// Handles the service closed (may exceed `covers` if handles opened since observation).
    pub closed: u64,
    /// Handles the service failed to close.
    pub failed: u64,
}

/// A share's failure: a bounded category and the message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareFailure {
    /// The category (metric label, Event reason).
    #[serde(serialize_with = "ser_category")]
    pub category: ErrorCategory,
    /// What went wrong.
    pub message: String,
}

fn ser_category<S: serde::Serializer>(c: &ErrorCategory, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

/// The path with the most handles on one share (toward Azure's 2,000 per file limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HotPath {
    /// Its path.
    pub path: String,
    /// Handles open on it.
    pub handles: u64,
}

/// One share's part of a sweep.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareReport {
    /// The endpoint.
    pub endpoint: String,
    /// The share.
    pub share: String,
    /// Handles observed.
    pub seen: u64,
    /// Handles kept, by why.
    pub kept: BTreeMap<&'static str, u64>,
    /// Handles condemned, by reason.
    pub condemned: BTreeMap<&'static str, u64>,
    /// Handles closed, by reason (wildcard closes count as reported by the service).
    pub closed: BTreeMap<&'static str, u64>,
    /// Handles the service failed to close, by reason.
    pub failed: BTreeMap<&'static str, u64>,
    /// Condemned handles already gone when closed.
    pub gone: u64,
    /// Condemned handles not closed, by cause.
    pub not_closed: BTreeMap<&'static str, u64>,
    /// Since when the oldest handle has been held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_held_since: Option<Timestamp>,
    /// The path with the most handles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hottest: Option<HotPath>,
    /// Why the share failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ShareFailure>,
}

impl ShareReport {
    /// Total closed.
    pub fn closed_total(&self) -> u64 {
        self.closed.values().sum()
    }

    /// Total failed.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Total condemned.
    pub fn condemned_total(&self) -> u64 {
        self.condemned.values().sum()
    }
}

/// Everything one sweep saw and did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// The mode it ran in.
    pub mode: Mode,
    /// When it started.
    pub started: Timestamp,
    /// How long it took.
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Per share, in policy order.
    pub shares: Vec<ShareReport>,
    /// Every condemned handle and what became of it.
    pub decisions: Vec<Decision>,
    /// Wildcard closes.
    pub wildcards: Vec<WildcardReport>,
    /// Set when the safety valve tripped.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_valve")]
    pub safety_valve: Option<ValveTrip>,
    /// Unknown clients' first-seen times, to carry into the next sweep.
    pub orphans: OrphanLedger,
    /// Whether the sweep was stopped early.
    pub interrupted: bool,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_valve<S: serde::Serializer>(v: &Option<ValveTrip>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some(v) => {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(3))?;
            m.serialize_entry("condemned", &v.condemned)?;
            m.serialize_entry("observed", &v.observed)?;
            m.serialize_entry("limitPercent", &v.limit_percent)?;
            m.end()
        }
    }
}

impl SweepReport {
    /// Handles observed over all shares.
    pub fn seen(&self) -> u64 {
        self.shares.iter().map(|s| s.seen).sum()
    }

    /// Handles closed over all shares.
    pub fn closed(&self) -> u64 {
        self.shares.iter().map(ShareReport::closed_total).sum()
    }

    /// Handles that failed to close over all shares.
    pub fn failed(&self) -> u64 {
        self.shares.iter().map(ShareReport::failed_total).sum()
    }

    /// Condemned handles by reason over all shares.
    pub fn condemned(&self) -> BTreeMap<&'static str, u64> {
        sum_maps(self.shares.iter().map(|s| &s.condemned))
    }

    /// Not-closed handles by cause over all shares.
    pub fn not_closed(&self) -> BTreeMap<&'static str, u64> {
        sum_maps(self.shares.iter().map(|s| &s.not_closed))
    }

    /// Kept handles by why over all shares.
    pub fn kept(&self) -> BTreeMap<&'static str, u64> {
        sum_maps(self.shares.iter().map(|s| &s.kept))
    }

    /// Whether every share was observed (and acted on) without error.
    pub fn all_shares_ok(&self) -> bool {
        self.shares.iter().all(|s| s.error.is_none())
    }
}

fn sum_maps<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<&'static str, u64>>,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            *out.entry(*k).or_default() += v;
        }
    }
    out
}

/// Counts as `Key n, Key n` (in key order), or `none`.
pub fn format_counts(map: &BTreeMap<&'static str, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds one to a counter map.
pub(super) fn bump(map: &mut BTreeMap<&'static str, u64>, key: &'static str, by: u64) {
    *map.entry(key).or_default() += by;
}
