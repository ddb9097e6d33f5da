//! `HandlePolicy` status: conditions, the last sweep, a summary per share, and the orphan
//! first-seen times that must survive controller restarts.
//!
//! Unlike the spec, these types accept unknown fields. The status is the operator's own
//! report, not an instruction: during an upgrade an older replica may read a status a newer
//! one wrote (with the newer CRD keeping its new fields), and refusing it would turn the
//! policy `Degraded` over a field that weakens nothing. An unknown spec field is the opposite
//! case: it may be a protection the reader cannot honour, so the spec refuses it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Counts, Mode};

/// Condition type: the last sweep completed on every share.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: something needs attention (a share failed, the safety valve tripped, the
/// spec is invalid).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// The annotation that asks for a sweep now: any new value (a token, e.g. a timestamp) makes
/// the controller sweep the policy once, and `status.lastRequest.token` echoes it afterwards.
pub const SWEEP_REQUESTED_ANNOTATION: &str = "sharehygiene.io/sweep-requested";

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandlePolicyStatus {
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sweep: Option<LastSweep>,
    /// One entry per share of the spec, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareStatus>,
    /// Clients unknown to the cluster and since when (for the orphaned rule's grace period),
    /// sorted by client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<OrphanRecord>,
    /// Consecutive sweeps in which a share failed (0, left out, after a good one); the retry
    /// backoff doubles with each, and a new leader reads it here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: i64,
    /// The last on-demand request (the `sharehygiene.io/sweep-requested` annotation) handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<LastRequest>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An on-demand sweep request that was handled, and how it ended.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRequest {
    /// The annotation's value.
    pub token: String,
    /// How the sweep it asked for ended.
    pub outcome: RequestOutcome,
    /// When that sweep started (RFC 3339); absent when none ran (`InvalidSpec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_time: Option<String>,
}

/// How a requested sweep ended.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RequestOutcome {
    /// Every share was swept.
    Succeeded,
    /// A share failed (see `shares[]`).
    Failed,
    /// The safety valve tripped: nothing was closed.
    SafetyValveTripped,
    /// The spec cannot be used: nothing was swept.
    InvalidSpec,
}

/// The last sweep, totalled over its shares.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSweep {
    /// When it started (RFC 3339).
    pub start_time: String,
    /// How long it took, in milliseconds.
    pub duration_millis: i64,
    /// The mode it ran in.
    pub mode: Option<Mode>,
    /// Handles observed.
    pub seen: i64,
    /// Handles condemned, by reason (`Stale`, `Orphaned`, `RenameBlocking`).
    #[serde(default)]
    pub condemned: Counts,
    /// Handles closed.
    pub closed: i64,
    /// Handles the service failed to close.
    pub failed: i64,
    /// Condemned handles not closed, by cause (`DryRun`, `Limit`, `SafetyValve`, `ShareError`).
    #[serde(default)]
    pub skipped: Counts,
}

/// One share's part of the last sweep.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareStatus {
    /// The endpoint.
    pub endpoint: String,
    /// The share.
    pub share: String,
    /// Handles observed.
    pub seen: i64,
    /// Handles condemned.
    pub condemned: i64,
    /// Handles closed.
    pub closed: i64,
    /// Handles the service failed to close.
    pub failed: i64,
    /// The error category of the last sweep's failure on this share, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
    /// The last sweep's error on this share, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A client the cluster does not know, and when that was first seen.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrphanRecord {
    /// The client's address.
    pub client: String,
    /// When a sweep first saw it unknown (RFC 3339).
    pub first_seen: String,
}
