//! The controller's pure parts: status building, the orphan ledger in status,
//! and cluster facts from Nodes and Pods.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus, Pod, PodIP, PodStatus};
use share_hygiene::api::{HandlePolicyStatus, LastRequest, Mode, RequestOutcome};
use share_hygiene::controller::{after_sweep, facts_of, invalid_spec, ledger_of};
use share_hygiene::handles::ErrorCategory;
use share_hygiene::policy::OrphanLedger;
use share_hygiene::protocol::Handle;
use share_hygiene::sweep::{ShareFailure, ShareReport, SweepReport};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn report(started: i64, failed: bool, orphans: &[(&str, i64)]) -> SweepReport {
    let mut share = ShareReport {
        endpoint: "https://a.file.core.windows.net".into(),
        share: "s".into(),
        seen: 10,
        ..ShareReport::default()
    };
    share.condemned.insert("Stale", 2);
    share.closed.insert("Stale", 2);
    if failed {
        share.error = Some(ShareFailure {
            category: ErrorCategory::Throttled,
            message: "503 ServerBusy".into(),
        });
    }
    SweepReport {
        mode: Mode::Enforce,
        started: t(started),
        duration: Duration::from_millis(7),
        shares: vec![share],
        decisions: Vec::new(),
        wildcards: Vec::new(),
        safety_valve: None,
        orphans: OrphanLedger(
            orphans
                .iter()
                .map(|(k, s)| ((*k).to_owned(), t(*s)))
                .collect::<BTreeMap<_, _>>(),
        ),
        interrupted: false,
    }
}

#[test]
fn the_same_outcome_gives_the_same_status() {
    let prev = HandlePolicyStatus::default();
    let first = after_sweep(
        &prev,
        &report(1000, false, &[("10.0.0.9", 900), ("10.0.0.3", 950)]),
        Some(2),
        t(1001),
        None,
    );
    let again = after_sweep(
        &first,
        &report(1000, false, &[("10.0.0.3", 950), ("10.0.0.9", 900)]),
        Some(2),
        t(1001),
        None,
    );
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&again).unwrap()
    );
    let clients: Vec<_> = first.orphans.iter().map(|o| o.client.as_str()).collect();
    assert_eq!(
        clients,
        ["10.0.0.3", "10.0.0.9"],
        "sorted, whatever the input order"
    );
}

#[test]
fn conditions_keep_their_transition_time_until_they_change() {
    let ok1 = after_sweep(
        &HandlePolicyStatus::default(),
        &report(1000, false, &[]),
        Some(1),
        t(1000),
        None,
    );
    let ok2 = after_sweep(&ok1, &report(2000, false, &[]), Some(1), t(2000), None);
    let ready = |s: &HandlePolicyStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        ready(&ok2).last_transition_time,
        ready(&ok1).last_transition_time
    );
    let bad = after_sweep(&ok2, &report(3000, true, &[]), Some(1), t(3000), None);
    assert_eq!(ready(&bad).status, "False");
    assert_eq!(ready(&bad).reason, "Throttled");
    assert_eq!(ready(&bad).last_transition_time.0, t(3000));
    let degraded = bad
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "Throttled")
    );
    assert_eq!(bad.shares[0].error_category.as_deref(), Some("Throttled"));
    assert_eq!(bad.last_sweep.as_ref().unwrap().duration_millis, 0);
}

#[test]
fn invalid_spec_keeps_the_last_sweep() {
    let ok = after_sweep(
        &HandlePolicyStatus::default(),
        &report(1000, false, &[]),
        Some(1),
        t(1004),
        None,
    );
    let invalid = invalid_spec(
        &ok,
        "spec.interval: \"1s\": must be at least 30s",
        Some(2),
        t(2000),
        None,
    );
    assert_eq!(invalid.last_sweep, ok.last_sweep);
    assert_eq!(invalid.observed_generation, Some(2));
    assert!(invalid.conditions.iter().all(|c| c.reason == "InvalidSpec"));
    assert_eq!(ok.last_sweep.unwrap().duration_millis, 4000);
}

#[test]
fn the_orphan_ledger_survives_a_round_trip_through_status() {
    let status = after_sweep(
        &HandlePolicyStatus::default(),
        &report(1000, false, &[("10.0.0.7", 500), ("node-x", 700)]),
        Some(1),
        t(1000),
        None,
    );
    let ledger = ledger_of(&status);
    assert_eq!(ledger.first_seen("10.0.0.7"), Some(t(500)));
    assert_eq!(ledger.first_seen("node-x"), Some(t(700)));
    assert_eq!(ledger.0.len(), 2);
}

#[test]
fn facts_come_from_node_addresses_and_names_and_pod_ips() {
    let node = Node {
        metadata: kube::core::ObjectMeta {
            name: Some("aks-node-0".into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "10.240.0.4".into(),
                },
                NodeAddress {
                    type_: "ExternalIP".into(),
                    address: "20.1.2.3".into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: "aks-node-0-host".into(),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = Pod {
        metadata: kube::core::ObjectMeta {
            name: Some("web-1".into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            pod_ips: Some(vec![
                PodIP {
                    ip: "10.244.1.5".into(),
                },
                PodIP {
                    ip: "fd00::5".into(),
                },
            ]),
            host_ip: Some("10.240.0.4".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let facts = facts_of([&node], [&pod]);
    let h = |ip: &str, name: Option<&str>| Handle {
        handle_id: share_hygiene::protocol::HandleId(1),
        path: String::new(),
        file_id: 0,
        parent_id: 0,
        session_id: 0,
        client_ip: ip.into(),
        client_name: name.map(Into::into),
        open_time: t(0),
        last_reconnect_time: None,
        access_rights: None,
    };
    for known in [
        h("10.240.0.4:445", None),
        h("20.1.2.3:1", None),
        h("[fd00::5]:445", None),
        h("10.244.1.5:1", None),
    ] {
        assert!(facts.knows(&known), "{}", known.client_ip);
    }
    assert!(
        facts.knows(&h("0.0.0.0:0", Some("AKS-NODE-0-HOST"))),
        "names match case-insensitively"
    );
    assert!(facts.knows(&h("0.0.0.0:0", Some("web-1"))));
    assert!(!facts.knows(&h("10.240.0.99:445", Some("gone-node"))));
}

#[test]
fn failures_are_counted_and_a_request_is_echoed_with_its_outcome() {
    let ok = after_sweep(
        &HandlePolicyStatus::default(),
        &report(1000, false, &[]),
        Some(1),
        t(1000),
        Some("1700"),
    );
    assert_eq!(ok.consecutive_failures, 0);
    let echoed = LastRequest {
        token: "1700".into(),
        outcome: RequestOutcome::Succeeded,
        sweep_time: Some(t(1000).to_string()),
    };
    assert_eq!(ok.last_request.as_ref(), Some(&echoed));
    let bad1 = after_sweep(&ok, &report(2000, true, &[]), Some(1), t(2000), None);
    assert_eq!(bad1.consecutive_failures, 1);
    assert_eq!(
        bad1.last_request.as_ref(),
        Some(&echoed),
        "kept without a new request"
    );
    let bad2 = after_sweep(
        &bad1,
        &report(3000, true, &[]),
        Some(1),
        t(3000),
        Some("1701"),
    );
    assert_eq!(bad2.consecutive_failures, 2);
    assert_eq!(
        bad2.last_request
            .as_ref()
            .map(|r| (r.token.as_str(), r.outcome)),
        Some(("1701", RequestOutcome::Failed))
    );
    let good = after_sweep(&bad2, &report(4000, false, &[]), Some(1), t(4000), None);
    assert_eq!(
        good.consecutive_failures, 0,
        "a good sweep resets the count"
    );
    let invalid = invalid_spec(
        &good,
        "spec.mode: \"Turbo\"",
        Some(2),
        t(5000),
        Some("1702"),
    );
    assert_eq!(
        invalid.last_request,
        Some(LastRequest {
            token: "1702".into(),
            outcome: RequestOutcome::InvalidSpec,
            sweep_time: None,
        })
    );
}
