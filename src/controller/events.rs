//! Which Events a sweep deserves, pure: condition transitions, closes in enforce mode (with
//! counts by reason and the first few paths), what a dry run would close, a safety-valve trip,
//! and share errors.

use kube::runtime::events::{Event, EventType};

use crate::api::{CONDITION_READY, HandlePolicyStatus, Mode};
use crate::sweep::{Outcome, SweepReport, format_counts};
use crate::text::truncate;

/// How many paths an Event names.
const PATHS_IN_EVENT: usize = 5;

fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    // Notes are limited to 1 KiB by the API.
    let note = truncate(&note, 1000);
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    }
}

fn ready(status: &HandlePolicyStatus) -> Option<(&str, &str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// The Events for one sweep, given the status before and after it.
pub fn for_sweep(
    prev: &HandlePolicyStatus,
    next: &HandlePolicyStatus,
    report: &SweepReport,
) -> Vec<Event> {
    let mut out = Vec::new();
    // A recovery gets its own Event; a failure is told by the share-error or safety-valve
    // Events below (one Event with the same reason would only be aggregated into them).
    if let Some(("True", reason)) = ready(next)
        && ready(prev).map(|(s, _)| s) != Some("True")
    {
        let message = next
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        out.push(event(EventType::Normal, reason, "Sweep", message));
    }
    for s in report.shares.iter().filter(|s| s.error.is_some()) {
        let e = s.error.as_ref().expect("filtered");
        out.push(event(
            EventType::Warning,
            e.category.as_str(),
            "Sweep",
            format!("share {}: {}", s.share, e.message),
        ));
    }
    if let Some(v) = &report.safety_valve {
        out.push(event(
            EventType::Warning,
            "SafetyValve",
            "Plan",
            format!(
                "{} of {} observed handles would close, above the policy's {}% safety valve; closed none",
                v.condemned, v.observed, v.limit_percent
            ),
        ));
    }
    let closed = report.closed();
    if report.mode == Mode::Enforce && closed > 0 {
        let mut by_reason = std::collections::BTreeMap::new();
        for s in &report.shares {
            for (k, v) in &s.closed {
                *by_reason.entry(*k).or_insert(0u64) += v;
            }
        }
        let paths = first_paths(report, |o| {
            matches!(o, Outcome::Closed | Outcome::ClosedByWildcard)
        });
        out.push(event(
            EventType::Normal,
            "HandlesClosed",
            "ForceClose",
            format!(
                "closed {closed} handle(s) ({}); {} failed; paths: {paths}",
                format_counts(&by_reason),
                report.failed()
            ),
        ));
    }
    if report.mode == Mode::DryRun && report.safety_valve.is_none() {
        let would = report
            .decisions
            .iter()
            .filter(|d| d.outcome.as_str() == "WouldClose")
            .count();
        if would > 0 {
            let paths = first_paths(report, |o| o.as_str() == "WouldClose");
            out.push(event(
                EventType::Normal,
                "WouldClose",
                "DryRun",
                format!(
                    "dry run: {would} handle(s) would close ({}); paths: {paths}",
                    format_counts(&report.condemned())
                ),
            ));
        }
    }
    out
}

/// The first few distinct paths of decisions with a matching outcome.
fn first_paths(report: &SweepReport, pick: impl Fn(Outcome) -> bool) -> String {
    let mut paths: Vec<String> = Vec::new();
    for d in report.decisions.iter().filter(|d| pick(d.outcome)) {
        let p = format!("{}/{}", d.share, d.path);
        if !paths.contains(&p) {
            paths.push(p);
        }
        if paths.len() == PATHS_IN_EVENT {
            paths.push("…".into());
            break;
        }
    }
    paths.join(", ")
}

/// The Event for a spec that cannot be used.
pub fn invalid_spec(error: &str) -> Event {
    event(
        EventType::Warning,
        "InvalidSpec",
        "Validate",
        error.to_owned(),
    )
}

/// The Event for a reconcile error.
pub fn reconcile_error(category: &str, error: &str) -> Event {
    event(EventType::Warning, category, "Reconcile", error.to_owned())
}
