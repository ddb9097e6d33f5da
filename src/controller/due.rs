//! When to sweep, decided in one place and purely: from the spec's generation, the last sweep
//! (in status), the interval, the failure backoff, a pending on-demand request and leadership
//! to "sweep now, because ..." or "look again at T".
//!
//! The policy watch is filtered (see [`trigger`]) so our own status writes do not wake the
//! reconciler; every reconcile that does run asks [`due`], and nothing else decides.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Resource;

use crate::api::{CONDITION_READY, HandlePolicyStatus, SWEEP_REQUESTED_ANNOTATION};

/// How long a replica that does not lead waits before looking again (it also reconciles every
/// policy at once when it becomes leader).
pub const FOLLOWER_RECHECK: Duration = Duration::from_secs(15);

/// The first retry after a failure; it doubles with each consecutive one.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// What [`due`] decides from.
#[derive(Debug, Clone)]
pub struct DueInput<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The policy's status as last written.
    pub status: &'a HandlePolicyStatus,
    /// The policy's interval.
    pub interval: Duration,
    /// The `sharehygiene.io/sweep-requested` annotation's value, if any.
    pub requested: Option<&'a str>,
    /// When a Secret the policy names last changed, as far as this replica saw.
    pub credentials_changed: Option<Timestamp>,
    /// Whether this replica holds the Lease.
    pub leader: bool,
    /// Now.
    pub now: Timestamp,
}

/// Why a sweep runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The policy was never swept.
    FirstSweep,
    /// The spec changed since the last sweep.
    SpecChanged,
    /// The annotation carries a token not handled yet.
    Requested(String),
    /// A share failed, and a Secret the policy names changed since.
    CredentialsChanged,
    /// A share failed, and the backoff is over.
    Retry,
    /// The interval passed.
    IntervalPassed,
}

/// What is awaited until the next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// The interval since the last sweep.
    Interval,
    /// The backoff after a failed sweep.
    Backoff,
    /// Leadership: a sweep is due, but another replica sweeps.
    Leadership,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Sweep now.
    Now(Reason),
    /// Reconcile again at `at` (or earlier, when the spec, the annotation or a Secret changes).
    Later {
        /// When.
        at: Timestamp,
        /// For what.
        awaiting: Awaiting,
    },
}

impl Due {
    /// The wait until the next look, from `now` (zero for [`Due::Now`]).
    pub fn wait(&self, now: Timestamp) -> Duration {
        match self {
            Self::Now(_) => Duration::ZERO,
            Self::Later { at, .. } => {
                let left = now.duration_until(*at);
                if left.is_positive() {
                    left.unsigned_abs()
                } else {
                    Duration::ZERO
                }
            }
        }
    }
}

/// Decides whether to sweep now.
///
/// In order: a pending request, the first sweep and a spec change sweep at once; a failed
/// sweep is retried after its backoff (5 s doubling per consecutive failure, at most the
/// interval) or as soon as a Secret changes; otherwise the interval since the last start. A
/// tripped safety valve is not a failure: only the interval, a spec change or a request can
/// change its outcome. A replica that does not lead never sweeps; it looks again after
/// [`FOLLOWER_RECHECK`] when a sweep is due.
pub fn due(input: &DueInput<'_>) -> Due {
    let decision = decide(input);
    match decision {
        Due::Now(_) if !input.leader => Due::Later {
            at: after(input.now, FOLLOWER_RECHECK),
            awaiting: Awaiting::Leadership,
        },
        other => other,
    }
}

fn decide(input: &DueInput<'_>) -> Due {
    let status = input.status;
    if let Some(token) = pending_request(status, input.requested) {
        return Due::Now(Reason::Requested(token.to_owned()));
    }
    let Some(started) = status
        .last_sweep
        .as_ref()
        .and_then(|s| s.start_time.parse::<Timestamp>().ok())
    else {
        return Due::Now(Reason::FirstSweep);
    };
    if status.observed_generation != input.generation {
        return Due::Now(Reason::SpecChanged);
    }
    // A clock that went back: count from now rather than waiting past the interval.
    let started = started.min(input.now);
    let failures = consecutive_failures(status);
    if failures > 0 {
        if input.credentials_changed.is_some_and(|t| t > started) {
            return Due::Now(Reason::CredentialsChanged);
        }
        let duration = status.last_sweep.as_ref().map_or(0, |s| s.duration_millis);
        let ended = started
            .checked_add(SignedDuration::from_millis(duration.max(0)))
            .unwrap_or(started)
            .min(input.now);
        let retry = after(ended, backoff(failures, input.interval));
        return if input.now >= retry {
            Due::Now(Reason::Retry)
        } else {
            Due::Later {
                at: retry,
                awaiting: Awaiting::Backoff,
            }
        };
    }
    let next = after(started, input.interval);
    if input.now >= next {
        Due::Now(Reason::IntervalPassed)
    } else {
        Due::Later {
            at: next,
            awaiting: Awaiting::Interval,
        }
    }
}

/// The annotation's token when it is set and not the last one handled.
pub fn pending_request<'a>(
    status: &HandlePolicyStatus,
    requested: Option<&'a str>,
) -> Option<&'a str> {
    let token = requested.filter(|t| !t.is_empty())?;
    let handled = status.last_request.as_ref().map(|r| r.token.as_str());
    (handled != Some(token)).then_some(token)
}

/// Consecutive failed sweeps, from status; a status written before the count existed says so
/// only through `Ready=False`.
fn consecutive_failures(status: &HandlePolicyStatus) -> u32 {
    let ready_false = status
        .conditions
        .iter()
        .any(|c| c.type_ == CONDITION_READY && c.status == "False");
    let counted = u32::try_from(status.consecutive_failures.max(0)).unwrap_or(u32::MAX);
    counted.max(u32::from(ready_false))
}

/// The wait after `failures` consecutive failures: 5 s doubling with each, at most `cap`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(cap)
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The watch predicate: what of a policy may make a sweep due. The spec's generation (which
/// status writes do not move) and the on-demand annotation (whose edits do not move the
/// generation either). An object without a generation passes every time.
pub fn trigger<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let generation = meta.generation?;
    let requested = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SWEEP_REQUESTED_ANNOTATION));
    let mut hasher = DefaultHasher::new();
    (generation, requested).hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use crate::api::{LastRequest, LastSweep, RequestOutcome};

    const INTERVAL: Duration = Duration::from_secs(300);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// A status after a sweep at `t(0)` of generation 1 that took 2 s.
    fn swept(ready: bool, failures: i64, request: Option<&str>) -> HandlePolicyStatus {
        HandlePolicyStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: CONDITION_READY.into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: "x".into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(t(0)),
            }],
            last_sweep: Some(LastSweep {
                start_time: t(0).to_string(),
                duration_millis: 2000,
                ..LastSweep::default()
            }),
            consecutive_failures: failures,
            last_request: request.map(|token| LastRequest {
                token: token.into(),
                outcome: RequestOutcome::Succeeded,
                sweep_time: Some(t(0).to_string()),
            }),
            ..HandlePolicyStatus::default()
        }
    }

    /// case, status, generation, annotation, Secret change, leader, now, decision.
    type Row<'a> = (
        &'a str,
        &'a HandlePolicyStatus,
        i64,
        Option<&'a str>,
        Option<i64>,
        bool,
        i64,
        Due,
    );

    fn later(at: i64, awaiting: Awaiting) -> Due {
        Due::Later {
            at: t(at),
            awaiting,
        }
    }

    #[test]
    fn every_case_decides_once() {
        let never = HandlePolicyStatus::default();
        let ok = swept(true, 0, None);
        let failed_once = swept(false, 1, None);
        let failed_thrice = swept(false, 3, None);
        // The valve leaves Ready=True and sets Degraded=True (SafetyValve): not a failure.
        let mut valve = swept(true, 0, None);
        let mut degraded = valve.conditions[0].clone();
        (degraded.type_, degraded.status, degraded.reason) =
            ("Degraded".into(), "True".into(), "SafetyValve".into());
        valve.conditions.push(degraded);
        let handled = swept(true, 0, Some("1700"));
        let legacy_failed = swept(false, 0, None);
        let requested = |r| Due::Now(Reason::Requested(String::from(r)));
        #[rustfmt::skip]
        let rows: Vec<Row<'_>> = vec![
            // case                          status          gen token         secret    leader now   decision
            ("first sweep",                  &never,         1, None,          None,     true,  0,    Due::Now(Reason::FirstSweep)),
            ("spec changed",                 &ok,            2, None,          None,     true,  10,   Due::Now(Reason::SpecChanged)),
            ("interval not passed",          &ok,            1, None,          None,     true,  60,   later(300, Awaiting::Interval)),
            ("interval passed",              &ok,            1, None,          None,     true,  300,  Due::Now(Reason::IntervalPassed)),
            ("clock went back",              &ok,            1, None,          None,     true,  -50,  later(250, Awaiting::Interval)),
            ("failed once: backoff 5 s",     &failed_once,   1, None,          None,     true,  4,    later(7, Awaiting::Backoff)),
            ("failed once: backoff over",    &failed_once,   1, None,          None,     true,  7,    Due::Now(Reason::Retry)),
            ("failed thrice: backoff 20 s",  &failed_thrice, 1, None,          None,     true,  10,   later(22, Awaiting::Backoff)),
            ("failed: Secret changed",       &failed_thrice, 1, None,          Some(3),  true,  10,   Due::Now(Reason::CredentialsChanged)),
            ("failed: Secret older",         &failed_thrice, 1, None,          Some(-9), true,  10,   later(22, Awaiting::Backoff)),
            ("failed before the count",      &legacy_failed, 1, None,          None,     true,  4,    later(7, Awaiting::Backoff)),
            ("ok: Secret changed",           &ok,            1, None,          Some(3),  true,  10,   later(300, Awaiting::Interval)),
            ("safety valve tripped",         &valve,         1, None,          None,     true,  10,   later(300, Awaiting::Interval)),
            ("pending token",                &ok,            1, Some("1700"),  None,     true,  10,   requested("1700")),
            ("pending token, backoff",       &failed_once,   1, Some("1700"),  None,     true,  3,    requested("1700")),
            ("pending token, never swept",   &never,         1, Some("1700"),  None,     true,  0,    requested("1700")),
            ("token already handled",        &handled,       1, Some("1700"),  None,     true,  10,   later(300, Awaiting::Interval)),
            ("a new token",                  &handled,       1, Some("1701"),  None,     true,  10,   requested("1701")),
            ("empty token",                  &ok,            1, Some(""),      None,     true,  10,   later(300, Awaiting::Interval)),
            ("follower, due",                &ok,            1, None,          None,     false, 300,  later(315, Awaiting::Leadership)),
            ("follower, pending token",      &ok,            1, Some("1700"),  None,     false, 10,   later(25, Awaiting::Leadership)),
            ("follower, not due",            &ok,            1, None,          None,     false, 60,   later(300, Awaiting::Interval)),
        ];
        for (case, status, generation, requested, secret, leader, now, expected) in rows {
            let input = DueInput {
                generation: Some(generation),
                status,
                interval: INTERVAL,
                requested,
                credentials_changed: secret.map(t),
                leader,
                now: t(now),
            };
            assert_eq!(due(&input), expected, "{case}");
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_the_interval() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, INTERVAL).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX, INTERVAL), INTERVAL);
    }

    #[test]
    fn the_trigger_sees_the_generation_and_the_annotation_only() {
        use crate::api::HandlePolicy;
        use kube::core::DeserializeGuard;
        let object = |generation: Option<i64>, rv: &str, token: Option<&str>, closed: i64| {
            let mut meta =
                serde_json::json!({ "name": "p", "namespace": "ns", "resourceVersion": rv });
            if let Some(g) = generation {
                meta["generation"] = g.into();
            }
            if let Some(token) = token {
                meta["annotations"] = serde_json::json!({ SWEEP_REQUESTED_ANNOTATION: token });
            }
            let value = serde_json::json!({
                "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy",
                "metadata": meta,
                "spec": { "mode": "DryRun", "interval": "5m", "shares": [] },
                "status": { "lastSweep": { "startTime": "2027-01-15T08:00:00Z", "durationMillis": 1, "closed": closed, "seen": 0, "failed": 0 } }
            });
            trigger(&serde_json::from_value::<DeserializeGuard<HandlePolicy>>(value).unwrap())
        };
        let first = object(Some(1), "1", None, 0);
        assert_eq!(object(Some(1), "2", None, 5), first, "a status write");
        let requested = object(Some(1), "3", Some("1700"), 5);
        assert_ne!(requested, first, "a request");
        assert_ne!(
            object(Some(1), "4", Some("1701"), 5),
            requested,
            "a new request"
        );
        assert_ne!(
            object(Some(2), "5", Some("1700"), 5),
            requested,
            "a spec change"
        );
        assert_eq!(
            object(None, "6", None, 0),
            None,
            "no generation: always passes"
        );
    }
}
