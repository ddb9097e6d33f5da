//! Status, pure: from the previous status and a sweep report to the next status (whether a
//! sweep is due is [`super::due`]'s). Deterministic (sorted maps, conditions that keep their transition time
//! while unchanged), so applying the same outcome twice is a no-op for the API server.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    CONDITION_DEGRADED, CONDITION_READY, Counts, HandlePolicyStatus, LastRequest, LastSweep,
    OrphanRecord, RequestOutcome, ShareStatus,
};
use crate::policy::OrphanLedger;
use crate::sweep::SweepReport;
use crate::text::truncate;

/// The most orphan records kept in status (the oldest first-seen times win).
pub const MAX_ORPHAN_RECORDS: usize = 1000;

/// A condition, keeping the previous transition time while its status is unchanged.
fn condition(
    prev: &HandlePolicyStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let since = prev
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn to_counts(map: &std::collections::BTreeMap<&'static str, u64>) -> Counts {
    map.iter()
        .map(|(k, v)| ((*k).to_owned(), i64::try_from(*v).unwrap_or(i64::MAX)))
        .collect()
}

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The status after a sweep that started at `report.started` and ended at `ended` (both from
/// the controller's clock, so the status is a function of its inputs). `request` is the
/// on-demand token the sweep answers, echoed with its outcome; without one the last request
/// handled is kept.
pub fn after_sweep(
    prev: &HandlePolicyStatus,
    report: &SweepReport,
    generation: Option<i64>,
    ended: Timestamp,
    request: Option<&str>,
) -> HandlePolicyStatus {
    let now = report.started;
    let failed: Vec<_> = report.shares.iter().filter(|s| s.error.is_some()).collect();
    let (ready, ready_reason, ready_message) = match failed.first() {
        None => (
            true,
            "SweepSucceeded",
            format!(
                "swept {} share(s): {} handle(s) seen, {} closed",
                report.shares.len(),
                report.seen(),
                report.closed()
            ),
        ),
        Some(s) => {
            let e = s.error.as_ref().expect("filtered on errors");
            (
                false,
                e.category.as_str(),
                format!(
                    "{} of {} share(s) failed; {}: {}",
                    failed.len(),
                    report.shares.len(),
                    s.share,
                    e.message
                ),
            )
        }
    };
    let (degraded, degraded_reason, degraded_message) = if let Some(first) = failed.first() {
        (
            true,
            first.error.as_ref().expect("filtered").category.as_str(),
            ready_message.clone(),
        )
    } else if let Some(v) = &report.safety_valve {
        (
            true,
            "SafetyValve",
            format!(
                "{} of {} observed handles would close, above the {}% safety valve; none were closed",
                v.condemned, v.observed, v.limit_percent
            ),
        )
    } else {
        (false, "AsExpected", String::new())
    };
    HandlePolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                prev,
                CONDITION_DEGRADED,
                degraded,
                degraded_reason,
                degraded_message,
                generation,
                now,
            ),
            condition(
                prev,
                CONDITION_READY,
                ready,
                ready_reason,
                ready_message,
                generation,
                now,
            ),
        ],
        last_sweep: Some(LastSweep {
            start_time: report.started.to_string(),
            duration_millis: i64::try_from(ended.duration_since(report.started).as_millis().max(0))
                .unwrap_or(i64::MAX),
            mode: Some(report.mode),
            seen: n(report.seen()),
            condemned: to_counts(&report.condemned()),
            closed: n(report.closed()),
            failed: n(report.failed()),
            skipped: to_counts(&report.not_closed()),
        }),
        shares: report
            .shares
            .iter()
            .map(|s| ShareStatus {
                endpoint: s.endpoint.clone(),
                share: s.share.clone(),
                seen: n(s.seen),
                condemned: n(s.condemned_total()),
                closed: n(s.closed_total()),
                failed: n(s.failed_total()),
                error_category: s.error.as_ref().map(|e| e.category.as_str().to_owned()),
                last_error: s.error.as_ref().map(|e| truncate(&e.message, 512)),
            })
            .collect(),
        orphans: orphan_records(&report.orphans),
        consecutive_failures: if failed.is_empty() {
            0
        } else {
            prev.consecutive_failures.saturating_add(1).max(1)
        },
        last_request: match request {
            Some(token) => Some(LastRequest {
                token: token.to_owned(),
                outcome: if !failed.is_empty() {
                    RequestOutcome::Failed
                } else if report.safety_valve.is_some() {
                    RequestOutcome::SafetyValveTripped
                } else {
                    RequestOutcome::Succeeded
                },
                sweep_time: Some(report.started.to_string()),
            }),
            None => prev.last_request.clone(),
        },
    }
}

/// The status of a policy whose spec is invalid: not ready, degraded with `InvalidSpec`, the
/// last sweep kept as it was. A pending on-demand `request` is answered with `InvalidSpec`, so
/// whoever waits for it is not left waiting.
pub fn invalid_spec(
    prev: &HandlePolicyStatus,
    error: &str,
    generation: Option<i64>,
    now: Timestamp,
    request: Option<&str>,
) -> HandlePolicyStatus {
    let message = truncate(error, 1024);
    HandlePolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                prev,
                CONDITION_DEGRADED,
                true,
                "InvalidSpec",
                message.clone(),
                generation,
                now,
            ),
            condition(
                prev,
                CONDITION_READY,
                false,
                "InvalidSpec",
                message,
                generation,
                now,
            ),
        ],
        last_request: match request {
            Some(token) => Some(LastRequest {
                token: token.to_owned(),
                outcome: RequestOutcome::InvalidSpec,
                sweep_time: None,
            }),
            None => prev.last_request.clone(),
        },
        ..prev.clone()
    }
}

/// The ledger a sweep starts from, out of the status.
pub fn ledger_of(status: &HandlePolicyStatus) -> OrphanLedger {
    OrphanLedger(
        status
            .orphans
            .iter()
            .filter_map(|r| {
                r.first_seen
                    .parse::<Timestamp>()
                    .ok()
                    .map(|t| (r.client.clone(), t))
            })
            .collect(),
    )
}

fn orphan_records(ledger: &OrphanLedger) -> Vec<OrphanRecord> {
    let mut records: Vec<(Timestamp, &String)> = ledger.0.iter().map(|(k, t)| (*t, k)).collect();
    records.sort();
    records.truncate(MAX_ORPHAN_RECORDS);
    let mut out: Vec<OrphanRecord> = records
        .into_iter()
        .map(|(t, k)| OrphanRecord {
            client: k.clone(),
            first_seen: t.to_string(),
        })
        .collect();
    out.sort();
    out
}
