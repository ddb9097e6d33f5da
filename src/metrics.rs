//! Prometheus metrics: one registry per process, text exposition at `/metrics`.
//!
//! Names follow Prometheus practice (prefix `share_hygiene_`, base units, `_total` on
//! counters). Labels are bounded: namespace, policy and share (bounded by the HandlePolicies),
//! and fixed enums (classification, reason, cause, category, operation, status class). Never a
//! path, a handle id, an address or error text.

use std::collections::HashMap;
use std::time::Duration;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::handles::client::RequestObserver;
use crate::sweep::SweepReport;

/// One metric of the catalog: name, type and label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// Full name (counters include `_total`).
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Label names.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

const POLICY: &[&str] = &["namespace", "policy"];
const SHARE: &[&str] = &["namespace", "policy", "share"];

// The connection metrics of an HTTP port, in both catalogs: both processes serve HTTP.
const HTTP_CONNECTIONS_OPEN: MetricDef = MetricDef {
    name: "share_hygiene_http_connections_open",
    kind: "gauge",
    labels: &[],
    help: "HTTP connections open on this process's port.",
};
const HTTP_CONNECTIONS_REFUSED: MetricDef = MetricDef {
    name: "share_hygiene_http_connections_refused_total",
    kind: "counter",
    labels: &["reason"],
    help: "HTTP connections closed at accept, by reason (connection_limit).",
};
const HTTP_CONNECTIONS_TIMED_OUT: MetricDef = MetricDef {
    name: "share_hygiene_http_connections_timed_out_total",
    kind: "counter",
    labels: &["phase"],
    help: "HTTP connections cut by a deadline, by phase (request: a request's head, body or TLS handshake arrived too slowly; idle: nothing sent between requests; write: the client stopped reading the answer).",
};

/// Every metric the controller exports.
pub const CONTROLLER_METRICS: &[MetricDef] = &[
    MetricDef {
        name: "share_hygiene_handles_observed",
        kind: "gauge",
        labels: &["namespace", "policy", "share", "classification"],
        help: "Handles seen by the last sweep of a share, by classification (NotCondemned, Protected, OutOfScope, AccessRights, Stale, Orphaned, RenameBlocking).",
    },
    MetricDef {
        name: "share_hygiene_handles_closed_total",
        kind: "counter",
        labels: &["namespace", "policy", "share", "reason"],
        help: "Handles force-closed, by reason.",
    },
    MetricDef {
        name: "share_hygiene_handles_close_failed_total",
        kind: "counter",
        labels: &["namespace", "policy", "share", "reason"],
        help: "Handles the service failed to close, by reason.",
    },
    MetricDef {
        name: "share_hygiene_handles_not_closed",
        kind: "gauge",
        labels: &["namespace", "policy", "share", "cause"],
        help: "Condemned handles the last sweep did not close, by cause (DryRun, Limit, SafetyValve, ShareError, Interrupted).",
    },
    MetricDef {
        name: "share_hygiene_oldest_handle_age_seconds",
        kind: "gauge",
        labels: SHARE,
        help: "Age of the oldest handle the last sweep saw on a share (from its open or last reconnect).",
    },
    MetricDef {
        name: "share_hygiene_max_handles_per_path",
        kind: "gauge",
        labels: SHARE,
        help: "The most handles open on one file or directory of a share at the last sweep (Azure Files allows 2,000).",
    },
    MetricDef {
        name: "share_hygiene_share_up",
        kind: "gauge",
        labels: SHARE,
        help: "1 when the last sweep of the share succeeded, 0 when it failed.",
    },
    MetricDef {
        name: "share_hygiene_sweep_duration_seconds",
        kind: "histogram",
        labels: POLICY,
        help: "Duration of sweeps.",
    },
    MetricDef {
        name: "share_hygiene_sweeps_total",
        kind: "counter",
        labels: &["namespace", "policy", "result"],
        help: "Sweeps, by result (Success, ShareError, SafetyValve).",
    },
    MetricDef {
        name: "share_hygiene_last_successful_sweep_timestamp_seconds",
        kind: "gauge",
        labels: POLICY,
        help: "When the last sweep without errors ended (Unix seconds).",
    },
    MetricDef {
        name: "share_hygiene_sweep_interval_seconds",
        kind: "gauge",
        labels: POLICY,
        help: "The policy's sweep interval.",
    },
    MetricDef {
        name: "share_hygiene_safety_valve_trips_total",
        kind: "counter",
        labels: POLICY,
        help: "Sweeps that closed nothing because the safety valve tripped.",
    },
    MetricDef {
        name: "share_hygiene_reconcile_errors_total",
        kind: "counter",
        labels: &["namespace", "policy", "category"],
        help: "Reconcile and sweep errors, by category.",
    },
    MetricDef {
        name: "share_hygiene_backend_requests_total",
        kind: "counter",
        labels: &["operation", "status_class"],
        help: "Requests to file services, by operation and status class (2xx, 4xx, 5xx, error).",
    },
    MetricDef {
        name: "share_hygiene_backend_request_duration_seconds",
        kind: "histogram",
        labels: &["operation"],
        help: "Latency of requests to file services.",
    },
    MetricDef {
        name: "share_hygiene_backend_retries_total",
        kind: "counter",
        labels: &["operation"],
        help: "Requests to file services that were retried.",
    },
    MetricDef {
        name: "share_hygiene_backend_throttled_total",
        kind: "counter",
        labels: &["operation"],
        help: "Answers from file services that were throttling (429, 503).",
    },
    MetricDef {
        name: "share_hygiene_leader",
        kind: "gauge",
        labels: &[],
        help: "1 when this replica holds the leader lease (only the leader sweeps).",
    },
    HTTP_CONNECTIONS_OPEN,
    HTTP_CONNECTIONS_REFUSED,
    HTTP_CONNECTIONS_TIMED_OUT,
    MetricDef {
        name: "share_hygiene_build_info",
        kind: "gauge",
        labels: &["version"],
        help: "Build information; always 1.",
    },
];

/// Every metric the handle service exports.
pub const SERVICE_METRICS: &[MetricDef] = &[
    MetricDef {
        name: "share_hygiene_service_requests_total",
        kind: "counter",
        labels: &["operation", "status_class"],
        help: "Requests served, by operation (list_handles, force_close, admin, other) and status class.",
    },
    MetricDef {
        name: "share_hygiene_service_request_duration_seconds",
        kind: "histogram",
        labels: &["operation"],
        help: "Latency of requests served.",
    },
    MetricDef {
        name: "share_hygiene_service_handles_closed_total",
        kind: "counter",
        labels: &[],
        help: "Handles force-closed through the service.",
    },
    MetricDef {
        name: "share_hygiene_service_store_handles",
        kind: "gauge",
        labels: &[],
        help: "Open handles in the store.",
    },
    MetricDef {
        name: "share_hygiene_service_store_shares",
        kind: "gauge",
        labels: &[],
        help: "Shares in the store.",
    },
    HTTP_CONNECTIONS_OPEN,
    HTTP_CONNECTIONS_REFUSED,
    HTTP_CONNECTIONS_TIMED_OUT,
    MetricDef {
        name: "share_hygiene_build_info",
        kind: "gauge",
        labels: &["version"],
        help: "Build information; always 1.",
    },
];

fn def(name: &str) -> &'static MetricDef {
    CONTROLLER_METRICS
        .iter()
        .chain(SERVICE_METRICS)
        .find(|d| d.name == name)
        .expect("metric is in the catalog")
}

fn counter(reg: &Registry, name: &str) -> IntCounterVec {
    let d = def(name);
    let c = IntCounterVec::new(Opts::new(d.name, d.help), d.labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(reg: &Registry, name: &str) -> GaugeVec {
    let d = def(name);
    let g = GaugeVec::new(Opts::new(d.name, d.help), d.labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(reg: &Registry, name: &str, buckets: Vec<f64>) -> HistogramVec {
    let d = def(name);
    let h = HistogramVec::new(
        HistogramOpts::new(d.name, d.help).buckets(buckets),
        d.labels,
    )
    .expect("valid metric");
    reg.register(Box::new(h.clone())).expect("registered once");
    h
}

fn build_info(reg: &Registry) {
    let g = gauge(reg, "share_hygiene_build_info");
    g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
}

/// Renders a registry in the text exposition format.
pub fn render(reg: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("exposition is UTF-8")
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status class of an HTTP status, or `error` when no response came.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

/// The controller's metrics.
#[derive(Clone)]
pub struct ControllerMetrics {
    /// The registry holding them.
    pub registry: Registry,
    observed: GaugeVec,
    closed: IntCounterVec,
    close_failed: IntCounterVec,
    not_closed: GaugeVec,
    oldest: GaugeVec,
    max_per_path: GaugeVec,
    share_up: GaugeVec,
    sweep_duration: HistogramVec,
    sweeps: IntCounterVec,
    last_success: GaugeVec,
    interval: GaugeVec,
    valve_trips: IntCounterVec,
    reconcile_errors: IntCounterVec,
    backend_requests: IntCounterVec,
    backend_latency: HistogramVec,
    backend_retries: IntCounterVec,
    backend_throttled: IntCounterVec,
    leader: GaugeVec,
    /// The ops port's connections.
    pub connections: ConnectionMetrics,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// A fresh registry with every controller metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            observed: gauge(&r, "share_hygiene_handles_observed"),
            closed: counter(&r, "share_hygiene_handles_closed_total"),
            close_failed: counter(&r, "share_hygiene_handles_close_failed_total"),
            not_closed: gauge(&r, "share_hygiene_handles_not_closed"),
            oldest: gauge(&r, "share_hygiene_oldest_handle_age_seconds"),
            max_per_path: gauge(&r, "share_hygiene_max_handles_per_path"),
            share_up: gauge(&r, "share_hygiene_share_up"),
            sweep_duration: histogram(
                &r,
                "share_hygiene_sweep_duration_seconds",
                vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ],
            ),
            sweeps: counter(&r, "share_hygiene_sweeps_total"),
            last_success: gauge(&r, "share_hygiene_last_successful_sweep_timestamp_seconds"),
            interval: gauge(&r, "share_hygiene_sweep_interval_seconds"),
            valve_trips: counter(&r, "share_hygiene_safety_valve_trips_total"),
            reconcile_errors: counter(&r, "share_hygiene_reconcile_errors_total"),
            backend_requests: counter(&r, "share_hygiene_backend_requests_total"),
            backend_latency: histogram(
                &r,
                "share_hygiene_backend_request_duration_seconds",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            backend_retries: counter(&r, "share_hygiene_backend_retries_total"),
            backend_throttled: counter(&r, "share_hygiene_backend_throttled_total"),
            leader: gauge(&r, "share_hygiene_leader"),
            connections: ConnectionMetrics::register(&r),
            registry: r,
        };
        build_info(&m.registry);
        m.leader.with_label_values(&[] as &[&str]).set(0.0);
        m
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader
            .with_label_values(&[] as &[&str])
            .set(if leader { 1.0 } else { 0.0 });
    }

    /// Records a reconcile error of `category`.
    pub fn reconcile_error(&self, namespace: &str, policy: &str, category: &str) {
        self.reconcile_errors
            .with_label_values(&[namespace, policy, category])
            .inc();
    }

    /// Records a policy's interval.
    pub fn set_interval(&self, namespace: &str, policy: &str, interval: Duration) {
        self.interval
            .with_label_values(&[namespace, policy])
            .set(interval.as_secs_f64());
    }

    /// Records what a sweep saw and did.
    pub fn record_sweep(
        &self,
        namespace: &str,
        policy: &str,
        report: &SweepReport,
        ended: jiff::Timestamp,
    ) {
        let p = [namespace, policy];
        self.sweep_duration
            .with_label_values(&p)
            .observe(report.duration.as_secs_f64());
        let result = if !report.all_shares_ok() {
            "ShareError"
        } else if report.safety_valve.is_some() {
            "SafetyValve"
        } else {
            "Success"
        };
        // Counters start at 0 at a policy's first sweep, for every label value: Prometheus'
        // increase() and rate() count nothing for a series that appears with its first value,
        // so a first failure or a first close of a reason would otherwise go unseen by the
        // alerts and the dashboard.
        for r in ["Success", "ShareError", "SafetyValve"] {
            let n = u64::from(r == result);
            self.sweeps
                .with_label_values(&[namespace, policy, r])
                .inc_by(n);
        }
        let trips = u64::from(report.safety_valve.is_some());
        self.valve_trips.with_label_values(&p).inc_by(trips);
        if report.all_shares_ok() {
            self.last_success
                .with_label_values(&p)
                .set(ended.as_second() as f64);
        }
        for s in &report.shares {
            let labels = [namespace, policy, s.share.as_str()];
            self.share_up
                .with_label_values(&labels)
                .set(if s.error.is_none() { 1.0 } else { 0.0 });
            if s.error.is_some() {
                continue; // Keep the last good observation's gauges.
            }
            for class in ["NotCondemned", "Protected", "OutOfScope", "AccessRights"] {
                let v = s.kept.get(class).copied().unwrap_or(0);
                self.observed
                    .with_label_values(&[namespace, policy, &s.share, class])
                    .set(v as f64);
            }
            for reason in crate::policy::Reason::ALL {
                let r = reason.as_str();
                let v = s.condemned.get(r).copied().unwrap_or(0);
                self.observed
                    .with_label_values(&[namespace, policy, &s.share, r])
                    .set(v as f64);
                let closed = s.closed.get(r).copied().unwrap_or(0);
                self.closed
                    .with_label_values(&[namespace, policy, &s.share, r])
                    .inc_by(closed);
                let failed = s.failed.get(r).copied().unwrap_or(0);
                self.close_failed
                    .with_label_values(&[namespace, policy, &s.share, r])
                    .inc_by(failed);
            }
            for cause in [
                "DryRun",
                "Limit",
                "SafetyValve",
                "ShareError",
                "Interrupted",
            ] {
                let v = s.not_closed.get(cause).copied().unwrap_or(0);
                self.not_closed
                    .with_label_values(&[namespace, policy, &s.share, cause])
                    .set(v as f64);
            }
            let age = s
                .oldest_held_since
                .map_or(0.0, |t| ended.duration_since(t).as_secs_f64().max(0.0));
            self.oldest.with_label_values(&labels).set(age);
            self.max_per_path
                .with_label_values(&labels)
                .set(s.hottest.as_ref().map_or(0.0, |h| h.handles as f64));
        }
    }

    /// Drops every series of a policy (it was deleted), counters and histograms included, so
    /// that dashboards and alerts (`ShareHygieneSweepStale`) do not show a policy that no
    /// longer exists.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        self.remove_where(|l| {
            l.get("namespace") == Some(&namespace) && l.get("policy") == Some(&policy)
        });
    }

    /// Drops the series of a policy's shares that are not in `shares` (they were removed from
    /// its spec); the policy's own series stay.
    pub fn forget_shares_except(&self, namespace: &str, policy: &str, shares: &[&str]) {
        self.remove_where(|l| {
            l.get("namespace") == Some(&namespace)
                && l.get("policy") == Some(&policy)
                && l.get("share").is_some_and(|s| !shares.contains(s))
        });
    }

    /// Removes the series, of every metric labelled by policy, whose labels `drop` selects.
    fn remove_where(&self, drop: impl Fn(&HashMap<&str, &str>) -> bool) {
        for vec in [
            &self.observed,
            &self.not_closed,
            &self.oldest,
            &self.max_per_path,
            &self.share_up,
            &self.last_success,
            &self.interval,
        ] {
            remove_series(vec, &drop);
        }
        for vec in [
            &self.closed,
            &self.close_failed,
            &self.sweeps,
            &self.valve_trips,
            &self.reconcile_errors,
        ] {
            remove_series(vec, &drop);
        }
        remove_series(&self.sweep_duration, &drop);
    }
}

/// Removes the series of `vec` whose labels `drop` selects. The prometheus crate removes only
/// by a full label set, so the series present are listed first.
fn remove_series<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    drop: &impl Fn(&HashMap<&str, &str>) -> bool,
) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if drop(&labels) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

impl RequestObserver for ControllerMetrics {
    fn observe(&self, operation: &'static str, status: Option<u16>, elapsed: Duration) {
        self.backend_requests
            .with_label_values(&[operation, status_class(status)])
            .inc();
        self.backend_latency
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
        if matches!(status, Some(429 | 503)) {
            self.backend_throttled.with_label_values(&[operation]).inc();
        }
    }

    fn retried(&self, operation: &'static str) {
        self.backend_retries.with_label_values(&[operation]).inc();
    }
}

/// The metrics of an HTTP port (the handle service's, the controller's ops port): open
/// connections, connections refused at accept, connections cut by a deadline.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    timed_out: IntCounterVec,
}

impl ConnectionMetrics {
    /// Registers the connection metrics in `reg`.
    fn register(reg: &Registry) -> Self {
        let d = def("share_hygiene_http_connections_open");
        let open = IntGauge::new(d.name, d.help).expect("valid metric");
        reg.register(Box::new(open.clone()))
            .expect("registered once");
        Self {
            open,
            refused: counter(reg, "share_hygiene_http_connections_refused_total"),
            timed_out: counter(reg, "share_hygiene_http_connections_timed_out_total"),
        }
    }

    /// A connection was accepted and is being served.
    pub fn opened(&self) {
        self.open.inc();
    }

    /// A served connection ended.
    pub fn closed(&self) {
        self.open.dec();
    }

    /// A connection was closed at accept; `reason` is a fixed word (`connection_limit`).
    pub fn refused(&self, reason: &'static str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// A connection was cut by a deadline; `phase` is `request`, `idle` or `write`.
    pub fn timed_out(&self, phase: &'static str) {
        self.timed_out.with_label_values(&[phase]).inc();
    }
}

/// The handle service's metrics.
#[derive(Clone)]
pub struct ServiceMetrics {
    /// The registry holding them.
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    closed: IntCounterVec,
    /// Open handles in the store.
    pub store_handles: IntGauge,
    /// Shares in the store.
    pub store_shares: IntGauge,
    /// Its port's connections.
    pub connections: ConnectionMetrics,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    /// A fresh registry with every service metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let store_handles = IntGauge::new(
            "share_hygiene_service_store_handles",
            def("share_hygiene_service_store_handles").help,
        )
        .expect("valid");
        let store_shares = IntGauge::new(
            "share_hygiene_service_store_shares",
            def("share_hygiene_service_store_shares").help,
        )
        .expect("valid");
        r.register(Box::new(store_handles.clone()))
            .expect("registered once");
        r.register(Box::new(store_shares.clone()))
            .expect("registered once");
        let m = Self {
            requests: counter(&r, "share_hygiene_service_requests_total"),
            latency: histogram(
                &r,
                "share_hygiene_service_request_duration_seconds",
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            closed: counter(&r, "share_hygiene_service_handles_closed_total"),
            store_handles,
            store_shares,
            connections: ConnectionMetrics::register(&r),
            registry: r,
        };
        build_info(&m.registry);
        m
    }

    /// Records one request served.
    pub fn request(&self, operation: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[operation, status_class(Some(status))])
            .inc();
        self.latency
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }

    /// Records handles force-closed.
    pub fn closed(&self, n: u64) {
        self.closed.with_label_values(&[] as &[&str]).inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Mode;
    use crate::policy::OrphanLedger;
    use crate::sweep::ShareReport;

    fn report(shares: &[&str], closed: u64) -> SweepReport {
        let shares = shares.iter().map(|s| ShareReport {
            share: (*s).to_owned(),
            closed: [("Stale", closed)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            ..ShareReport::default()
        });
        SweepReport {
            mode: Mode::Enforce,
            started: jiff::Timestamp::UNIX_EPOCH,
            duration: Duration::from_millis(5),
            shares: shares.collect(),
            decisions: Vec::new(),
            wildcards: Vec::new(),
            safety_valve: None,
            orphans: OrphanLedger::default(),
            interrupted: false,
        }
    }

    fn lines_with(m: &ControllerMetrics, needle: &str) -> Vec<String> {
        let text = render(&m.registry);
        let samples = text.lines().filter(|l| !l.starts_with('#'));
        samples
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// A counter that appears with its first value counts nothing in increase() or rate(): a
    /// policy's counters exist at 0 from its first sweep on, for every label value.
    #[test]
    fn counters_start_at_zero_for_every_label_value() {
        let m = ControllerMetrics::new();
        m.record_sweep("ns", "p", &report(&["s"], 0), jiff::Timestamp::UNIX_EPOCH);
        for series in [
            r#"share_hygiene_sweeps_total{namespace="ns",policy="p",result="ShareError"} 0"#,
            r#"share_hygiene_sweeps_total{namespace="ns",policy="p",result="Success"} 1"#,
            r#"share_hygiene_safety_valve_trips_total{namespace="ns",policy="p"} 0"#,
            r#"share_hygiene_handles_closed_total{namespace="ns",policy="p",reason="Stale",share="s"} 0"#,
            r#"share_hygiene_handles_close_failed_total{namespace="ns",policy="p",reason="Orphaned",share="s"} 0"#,
        ] {
            assert_eq!(lines_with(&m, series), [series], "{}", render(&m.registry));
        }
    }

    #[test]
    fn forgetting_a_share_or_a_policy_drops_exactly_its_series() {
        let m = ControllerMetrics::new();
        m.set_interval("ns", "p", Duration::from_secs(60));
        m.reconcile_error("ns", "p", "ShareNotFound");
        m.record_sweep(
            "ns",
            "p",
            &report(&["a", "b"], 2),
            jiff::Timestamp::UNIX_EPOCH,
        );
        m.record_sweep("ns", "q", &report(&["b"], 1), jiff::Timestamp::UNIX_EPOCH);
        let q_before = lines_with(&m, r#"policy="q""#);

        m.forget_shares_except("ns", "p", &["a"]);
        assert!(lines_with(&m, r#"policy="p",share="b""#).is_empty());
        assert!(!lines_with(&m, r#"policy="p",share="a""#).is_empty());
        assert!(!lines_with(&m, r#"policy="p",result="Success""#).is_empty());

        m.forget_policy("ns", "p");
        assert_eq!(lines_with(&m, r#"policy="p""#), Vec::<String>::new());
        assert_eq!(lines_with(&m, r#"policy="q""#), q_before);
    }
}
