//! The real `share-hygiene controller` binary against a stateful fake Kubernetes API
//! (`common_fake_api::api`) and an in-process handle service with leaked handles.
//!
//! These tests run the whole loop as in a cluster: kubeconfig, CRD check, reflectors, the
//! kube-runtime Controller (list, watch, bookmarks), Secret reads, sweeps over HTTP, status by
//! server-side apply, Events, /metrics /healthz /readyz, leader election through a Lease, and
//! SIGTERM. They need `promtool` (Debian's prometheus package; `scripts/setup.sh` installs it).

#[path = "common_fake_api/mod.rs"]
mod common_fake_api;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common_fake_api::api::FakeApi;
use common_fake_api::process::{
    Controller, HandleService, eventually, http_get, node, pod, promtool_check_metrics, sample,
    scratch_dir, stale_policy,
};
use jiff::SignedDuration;
use serde_json::{Value, json};

const NS: &str = "storage";
const POLICY: &str = "team-files";
const SECRET: &str = "acct-key";
const SHARE: &str = "projects";
const LEASE_NS: &str = "share-hygiene";

/// The age of a stale handle (the policy condemns those held longer than 24h).
fn two_days() -> SignedDuration {
    SignedDuration::from_hours(48)
}

/// The age of a fresh handle.
fn a_minute() -> SignedDuration {
    SignedDuration::from_mins(1)
}

/// A fake cluster with the policy (Enforce, stale 24h, every 5m) on the service's share, its
/// Secret, 3 Nodes and 5 Pods; BOOKMARKs every 500 ms so that watches see them.
async fn cluster(svc: &HandleService) -> FakeApi {
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    api.create(svc.secret(NS, SECRET));
    api.create(stale_policy(
        NS,
        POLICY,
        &svc.endpoint(),
        SHARE,
        SECRET,
        "5m",
    ));
    for i in 0..3 {
        api.create(node(i));
    }
    for i in 0..5 {
        api.create(pod(i, 3));
    }
    api
}

fn kubeconfig(api: &FakeApi, test: &str) -> std::path::PathBuf {
    let path = scratch_dir(test).join("kubeconfig");
    api.write_kubeconfig(&path);
    path
}

/// The first status apply whose `lastSweep.closed` is `closed` and whose observed generation
/// is `generation`.
async fn status_apply_closing(api: &FakeApi, closed: u64, generation: i64) -> Value {
    let what = format!("a status apply closing {closed} at generation {generation}");
    eventually(Duration::from_secs(15), &what, || {
        let applies = api.status_applies(POLICY);
        let found = applies
            .into_iter()
            .map(|r| r.body["status"].clone())
            .find(|s| s["lastSweep"]["closed"] == closed && s["observedGeneration"] == generation);
        std::future::ready(found)
    })
    .await
}

/// The stored Event with `reason` whose note contains `needle`.
async fn event(api: &FakeApi, reason: &str, needle: &str) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("a {reason} Event"),
        || {
            let events = api.list("events");
            let found = events.into_iter().find(|e| {
                e["reason"] == reason && e["note"].as_str().is_some_and(|n| n.contains(needle))
            });
            std::future::ready(found)
        },
    )
    .await
}

async fn metrics(addr: SocketAddr) -> String {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "GET /metrics");
    body
}

async fn leads(addr: SocketAddr) -> bool {
    sample(&metrics(addr).await, "share_hygiene_leader") == Some(1.0)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conditions = status["conditions"].as_array().expect("conditions");
    conditions
        .iter()
        .find(|c| c["type"] == type_)
        .expect("the condition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_sweeps_reports_and_stops_on_sigterm() {
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 5);
    svc.open(SHARE, "data/new.bin", "10.0.0.2", a_minute(), 3);
    let api = cluster(&svc).await;
    api.hold_lists("pods", true);
    let kubeconfig = kubeconfig(&api, "sweeps");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let addr = ctl.addr().await;

    // Alive, and not ready while the Pod reflector has not listed (that it turns ready
    // afterwards is `readyz_turns_200_once_the_watches_have_listed`).
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        503,
        "ready before the Pods were listed"
    );
    api.hold_lists("pods", false);

    // The sweep closed the 5 stale handles, for real, and said so in status and an Event.
    let status = status_apply_closing(&api, 5, 1).await;
    let apply = &api.status_applies(POLICY)[0];
    assert!(
        apply.query.contains("fieldManager=share-hygiene") && apply.query.contains("force=true"),
        "{}",
        apply.query
    );
    assert_eq!(apply.body["apiVersion"], "sharehygiene.io/v1alpha1");
    assert_eq!(apply.body["kind"], "HandlePolicy");
    assert_eq!(status["lastSweep"]["seen"], 8);
    assert_eq!(status["lastSweep"]["condemned"]["Stale"], 5);
    assert_eq!(status["shares"][0]["closed"], 5);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "SweepSucceeded");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    let stored = api
        .get("handlepolicies", Some(NS), POLICY)
        .expect("the policy");
    assert_eq!(stored["status"], status, "the fake stored what was applied");
    let closed = event(&api, "HandlesClosed", "closed 5 handle(s) (Stale 5)").await;
    assert_eq!(closed["type"], "Normal");
    assert_eq!(closed["regarding"]["kind"], "HandlePolicy");
    assert_eq!(closed["regarding"]["name"], POLICY);
    assert_eq!(closed["reportingController"], "share-hygiene");
    assert!(
        closed["note"]
            .as_str()
            .unwrap()
            .contains("projects/logs/old.log")
    );
    event(&api, "SweepSucceeded", "8 handle(s) seen, 5 closed").await;
    assert_eq!(
        svc.handles(),
        3,
        "the service still holds only the fresh handles"
    );

    // Both /metrics expositions are valid, with the sweep's figures.
    let scraped = metrics(addr).await;
    let closed_series = r#"share_hygiene_handles_closed_total{namespace="storage",policy="team-files",reason="Stale",share="projects"}"#;
    assert_eq!(sample(&scraped, closed_series), Some(5.0), "{scraped}");
    let sweeps =
        r#"share_hygiene_sweeps_total{namespace="storage",policy="team-files",result="Success"}"#;
    assert_eq!(sample(&scraped, sweeps), Some(1.0), "{scraped}");
    assert_eq!(sample(&scraped, "share_hygiene_leader"), Some(1.0));
    for name in [
        "share_hygiene_handles_observed",
        "share_hygiene_sweep_duration_seconds_bucket",
    ] {
        assert!(scraped.contains(name), "{name} missing:\n{scraped}");
    }
    promtool_check_metrics("the controller's /metrics", &scraped);
    let (code, served) = http_get(svc.running.addr, "/metrics").await;
    assert_eq!(code, 200);
    let service_closed = sample(&served, "share_hygiene_service_handles_closed_total");
    assert_eq!(service_closed, Some(5.0), "{served}");
    promtool_check_metrics("the handle service's /metrics", &served);

    // Our own status write triggers a reconcile that finds nothing due: no second sweep.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.status_applies(POLICY).len(),
        1,
        "swept again before the interval"
    );

    // A spec change is swept at once.
    svc.open(SHARE, "logs/older.log", "10.0.0.1", two_days(), 2);
    api.patch(
        "handlepolicies",
        Some(NS),
        POLICY,
        false,
        json!({ "spec": { "interval": "10m" } }),
    );
    let status = status_apply_closing(&api, 2, 2).await;
    assert_eq!(status["lastSweep"]["seen"], 5);
    assert_eq!(svc.handles(), 3);

    // SIGTERM: a prompt, clean exit.
    let asked = Instant::now();
    ctl.terminate();
    let exit = ctl.wait_exit(Duration::from_secs(10)).await;
    let exit = exit.unwrap_or_else(|| panic!("still running 10s after SIGTERM:\n{}", ctl.logs()));
    assert_eq!(exit.code(), Some(0), "exit after SIGTERM:\n{}", ctl.logs());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_exits_nonzero_saying_how_to_install_it() {
    let api = FakeApi::start().await;
    api.set_missing("handlepolicies", true);
    let kubeconfig = kubeconfig(&api, "no-crd");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let exit = ctl
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("it exits");
    let logs = ctl.logs();
    assert_eq!(exit.code(), Some(1), "exit with the CRD missing:\n{logs}");
    assert!(
        logs.contains("handlepolicies.sharehygiene.io) is not installed")
            && logs.contains("share-hygiene crd | kubectl apply -f -"),
        "{logs}"
    );
    let probed = api.count(|r| r.path.ends_with("/handlepolicies") && r.status == 404);
    assert!(probed >= 1, "the controller never asked for HandlePolicies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_sweeps_and_a_follower_takes_over_within_the_lease() {
    const LEASE_SECS: u64 = 3;
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 4);
    svc.open(SHARE, "data/new.bin", "10.0.0.2", a_minute(), 4);
    let api = cluster(&svc).await;
    let kubeconfig = kubeconfig(&api, "leader");
    let args = ["--listen", "127.0.0.1:0", "--lease-duration", "3"];
    let replica = |name: &'static str| {
        let env = [("POD_NAME", name), ("POD_NAMESPACE", LEASE_NS)];
        Controller::spawn(&kubeconfig, &args, &env)
    };

    let mut a = replica("replica-a");
    let a_addr = a.addr().await;
    eventually(
        Duration::from_secs(10),
        "replica-a to lead",
        || async move { leads(a_addr).await.then_some(()) },
    )
    .await;
    // Its first reconcile may have come before it held the Lease, and then it looks again
    // only 15 s later: a spec change makes the policy due at once.
    api.patch(
        "handlepolicies",
        Some(NS),
        POLICY,
        false,
        json!({ "spec": { "interval": "6m" } }),
    );
    eventually(Duration::from_secs(10), "replica-a to sweep", || {
        let swept = api
            .status_applies(POLICY)
            .iter()
            .any(|r| r.body["status"]["observedGeneration"] == 2);
        std::future::ready((swept && svc.handles() == 4).then_some(()))
    })
    .await;
    let sweeps = api.status_applies(POLICY).len();

    // A second replica follows: for longer than a lease it never leads and never sweeps.
    let mut b = replica("replica-b");
    let b_addr = b.addr().await;
    let policy_watches =
        || api.count(|r| r.path.ends_with("/handlepolicies") && r.query.contains("watch=true"));
    eventually(
        Duration::from_secs(10),
        "replica-b to watch the policies",
        || std::future::ready((policy_watches() >= 2).then_some(())),
    )
    .await;
    let watch_until = Instant::now() + Duration::from_secs(LEASE_SECS + 1);
    while Instant::now() < watch_until {
        assert!(leads(a_addr).await, "replica-a lost the lease while alive");
        assert!(
            !leads(b_addr).await,
            "replica-b leads while replica-a renews"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        api.status_applies(POLICY).len(),
        sweeps,
        "a sweep while replica-a leads"
    );
    let b_metrics = metrics(b_addr).await;
    assert!(
        !b_metrics.contains("share_hygiene_sweeps_total{"),
        "{b_metrics}"
    );
    let instances: Vec<Value> = api
        .list("events")
        .iter()
        .map(|e| e["reportingInstance"].clone())
        .collect();
    assert!(instances.iter().all(|i| i == "replica-a"), "{instances:?}");

    // The leader dies without releasing the Lease: the follower takes over when it expires.
    svc.open(SHARE, "logs/older.log", "10.0.0.1", two_days(), 3);
    let killed = Instant::now();
    a.kill();
    let limit = Duration::from_secs(LEASE_SECS + 5);
    eventually(limit, "replica-b to lead", || async {
        leads(b_addr).await.then_some(())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("replica-b took the lease {took:?} after replica-a was killed");
    assert!(
        took <= Duration::from_millis(LEASE_SECS * 1000 + 1500),
        "took {took:?}"
    );
    let lease = api
        .get("leases", Some(LEASE_NS), "share-hygiene")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");

    // The new leader sweeps (a spec change makes the policy due at once).
    api.patch(
        "handlepolicies",
        Some(NS),
        POLICY,
        false,
        json!({ "spec": { "interval": "10m" } }),
    );
    status_apply_closing(&api, 3, 3).await;
    let closed = event(&api, "HandlesClosed", "closed 3 handle(s)").await;
    assert_eq!(closed["reportingInstance"], "replica-b");
    assert_eq!(svc.handles(), 4);
    drop(b);
}

/// Regression (was a bug): `/readyz` never answered 200, so a Deployment with the readiness probe on it
/// never becomes ready.
///
/// `controller::run` waits for readiness with `Store::wait_until_ready` on the Controller's
/// store while kube-runtime's Controller waits on the same store ("applier runner held until
/// store is ready"). In kube-runtime 5.0.0 that future wraps one `futures` oneshot receiver,
/// which remembers only the last waker: of two tasks waiting at once, one is never woken
/// (`store_readiness_wakes_every_waiter` shows it on its own). The Controller's wait wins, so
/// sweeps happen but "watches synced; ready" is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_200_once_the_watches_have_listed() {
    let svc = HandleService::start(&[SHARE]).await;
    let api = cluster(&svc).await;
    api.hold_lists("pods", true);
    let kubeconfig = kubeconfig(&api, "readyz");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let addr = ctl.addr().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        503,
        "ready before the Pods were listed"
    );
    api.hold_lists("pods", false);
    eventually(Duration::from_secs(10), "/readyz to answer 200", || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(ctl.logged("watches synced; ready").len(), 1);
}

/// The root cause of the `/readyz` bug, in kube-runtime 5.0.0 alone: two tasks wait for one
/// reflector `Store` to become ready; only one of them is ever woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "BUG (kube-runtime 5.0.0): Store::wait_until_ready wakes one waiter; run with --ignored"]
async fn store_readiness_wakes_every_waiter() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    share_hygiene::install_crypto_provider();
    let api = FakeApi::start().await;
    api.create(node(0));
    api.hold_lists("nodes", true);
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let (store, writer) = reflector::store::<Node>();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.wait_until_ready().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await; // both are waiting
    let nodes = watcher(kube::Api::<Node>::all(client), watcher::Config::default());
    tokio::spawn(
        nodes
            .reflect(writer)
            .applied_objects()
            .for_each(|_| async {}),
    );
    api.hold_lists("nodes", false);
    store.wait_until_ready().await.unwrap();
    for (i, waiter) in waiters.into_iter().enumerate() {
        let woken = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert!(
            woken.is_ok(),
            "waiter {i} was never woken although the store is ready"
        );
    }
}

/// Regression (was a bug): a degraded policy was swept again at once after each of its own status writes,
/// in a loop, instead of after its backoff (5 s after a first failure).
///
/// The old due check made a degraded policy always due ("the requeue delay is the backoff"),
/// but every sweep writes a new `lastSweep.startTime`, so the status apply changes the object,
/// the watch delivers it, and the Controller reconciled at once; the requeue never mattered.
/// Now the watch does not pass status writes, and `controller::due` reads the backoff from
/// status.
/// Any degraded outcome loops: here a tripped safety valve and a missing Secret. Each loop
/// lists the share, applies status and publishes Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_policy_waits_for_its_backoff() {
    let svc = HandleService::start(&[SHARE, "other"]).await;
    // Every handle is stale: 100% would close, above the 90% safety valve.
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 5);
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    api.create(svc.secret(NS, SECRET));
    api.create(stale_policy(
        NS,
        "valve",
        &svc.endpoint(),
        SHARE,
        SECRET,
        "5m",
    ));
    api.create(stale_policy(
        NS,
        "no-secret",
        &svc.endpoint(),
        "other",
        "missing",
        "5m",
    ));
    let kubeconfig = kubeconfig(&api, "degraded");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    ctl.addr().await;
    eventually(
        Duration::from_secs(10),
        "both policies' first status",
        || {
            let first = !api.status_applies("valve").is_empty()
                && !api.status_applies("no-secret").is_empty();
            std::future::ready(first.then_some(()))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (valve, no_secret) = (api.status_applies("valve"), api.status_applies("no-secret"));
    let stored = api.get("handlepolicies", Some(NS), "valve").unwrap();
    assert_eq!(
        condition(&stored["status"], "Degraded")["reason"],
        "SafetyValve"
    );
    let events = api.count(|r| r.path.ends_with("/events"));
    assert!(
        valve.len() <= 1 && no_secret.len() <= 1,
        "within ~3 s: {} sweeps of the safety-valve policy, {} of the policy without its Secret, \
         {events} Event writes (the backoff after a first failure is 5 s)",
        valve.len(),
        no_secret.len()
    );
}

/// Regression (was a bug): both replicas took the Lease when they tried at the same moment.
///
/// Every replica writes the Lease with the same field manager (`share-hygiene`, set in
/// `controller/leader.rs`), while kube-lease-manager needs one per replica: it takes a free
/// Lease with a server-side apply of `holderIdentity` without `force`, and counts on the API
/// server refusing (409 Conflict) the second of two racing replicas because another manager
/// owns the field. With one shared manager both applies succeed. Here the fake API holds each
/// Lease apply for 2 s (one at a time), so both replicas read a free Lease before either
/// apply lands; then both report themselves leader until the first one's next renewal
/// (duration minus grace: 10 s at the default 15 s), and both sweep a policy that comes due.
/// `racing_lease_managers_with_their_own_field_managers_never_both_lead` shows the fix: drop
/// `.with_field_manager("share-hygiene")` (kube-lease-manager's default is one per replica)
/// or make it `share-hygiene-{identity}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_never_both_lead() {
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(SHARE, "data/new.bin", "10.0.0.2", a_minute(), 3);
    let api = cluster(&svc).await;
    api.delay_applies("leases", Duration::from_secs(2));
    let kubeconfig = kubeconfig(&api, "race");
    let args = ["--listen", "127.0.0.1:0", "--lease-duration", "15"];
    let replica = |name: &'static str| {
        let env = [("POD_NAME", name), ("POD_NAMESPACE", LEASE_NS)];
        Controller::spawn(&kubeconfig, &args, &env)
    };
    let (mut a, mut b) = (replica("replica-a"), replica("replica-b"));
    let (a_addr, b_addr) = (a.addr().await, b.addr().await);

    let until = Instant::now() + Duration::from_secs(9);
    let mut both = false;
    while Instant::now() < until && !both {
        both = leads(a_addr).await && leads(b_addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sweeps_at_once = 0;
    if both {
        // Make the policy due while both believe they lead.
        svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 2);
        api.patch(
            "handlepolicies",
            Some(NS),
            POLICY,
            false,
            json!({ "spec": { "interval": "7m" } }),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let applies = api.status_applies(POLICY);
        sweeps_at_once = applies
            .iter()
            .filter(|r| r.body["status"]["observedGeneration"] == 2)
            .count();
    }
    let managers: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.contains("/leases/")
                && r.content_type.as_deref() == Some("application/apply-patch+yaml")
        })
        .filter_map(|r| r.field_manager)
        .collect();
    assert!(
        !both,
        "split brain: both replicas report share_hygiene_leader 1 at once; {sweeps_at_once} \
         sweep(s) of generation 2 (status applies); Lease applies used field managers {managers:?}"
    );
    drop((a, b));
}

/// The fix for `racing_replicas_never_both_lead`, checked on kube-lease-manager alone: with a
/// field manager per replica (its default, `kube-lease-manager-IDENTITY`), the second of two
/// racing applies of `holderIdentity` is refused (409) and only one replica leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lease_managers_with_their_own_field_managers_never_both_lead() {
    use kube_lease_manager::LeaseManagerBuilder;
    share_hygiene::install_crypto_provider();
    let api = FakeApi::start().await;
    api.delay_applies("leases", Duration::from_secs(1));
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b"] {
        let builder = LeaseManagerBuilder::new(client.clone(), "share-hygiene");
        let builder = builder.with_namespace(LEASE_NS).with_identity(identity);
        let manager = builder
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .unwrap();
        replicas.push(manager.watch().await);
    }
    let until = Instant::now() + Duration::from_secs(4);
    let mut led = [false, false];
    while Instant::now() < until {
        let leading: Vec<bool> = replicas.iter().map(|(rx, _)| *rx.borrow()).collect();
        assert!(!(leading[0] && leading[1]), "both lead");
        led = [led[0] || leading[0], led[1] || leading[1]];
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(led[0] ^ led[1], "exactly one replica led: {led:?}");
    let refused = api.count(|r| r.path.contains("/leases/") && r.status == 409);
    assert!(refused >= 1, "no apply was refused");
}

/// The fake answers kube-rs as a real API server would, for the calls the controller makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_api_behaves_for_kube_clients() {
    use futures::StreamExt;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::{Api, ListParams, Patch, PatchParams};
    use kube::core::{DeserializeGuard, PartialObjectMeta};
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    use share_hygiene::api::HandlePolicy;

    share_hygiene::install_crypto_provider();
    let api = FakeApi::start_with(Duration::from_millis(200)).await;
    let config = kube::Config::new(api.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    for i in 0..5 {
        api.create(pod(i, 2));
    }

    // A paged list and a watch, through kube's reflector.
    let (store, writer) = reflector::store::<Pod>();
    let pods = Api::<Pod>::all(client.clone());
    let stream = watcher(pods, watcher::Config::default().page_size(2)).reflect(writer);
    tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 5);
    assert!(
        api.count(|r| r.query.contains("continue=")) >= 2,
        "the list was not paged"
    );
    api.create(pod(5, 2));
    let gone = pod(0, 2);
    let ns = gone["metadata"]["namespace"].as_str().unwrap();
    assert!(api.delete("pods", Some(ns), gone["metadata"]["name"].as_str().unwrap()));
    eventually(Duration::from_secs(5), "the watch to deliver", || {
        let names: Vec<String> = store
            .state()
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let done = names.len() == 5 && names.iter().any(|n| n.ends_with("00005"));
        std::future::ready(done.then_some(()))
    })
    .await;

    // Metadata-only lists; 404 as a Status kube understands.
    api.create(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s", "namespace": NS }, "data": { "k": "dg==" } }));
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), NS);
    let listed = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("s"));
    let policies: Api<DeserializeGuard<HandlePolicy>> = Api::namespaced(client.clone(), NS);
    assert!(policies.get_opt("absent").await.unwrap().is_none());

    // Status by server-side apply: fields a manager drops go; the same apply changes nothing.
    let svc_endpoint = "http://127.0.0.1:9/acct";
    api.create(stale_policy(NS, POLICY, svc_endpoint, SHARE, SECRET, "5m"));
    let apply = |status: Value| {
        let body = json!({ "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy", "status": status });
        let policies = policies.clone();
        async move {
            let params = PatchParams::apply("share-hygiene").force();
            policies
                .patch_status(POLICY, &params, &Patch::Apply(body))
                .await
                .unwrap();
        }
    };
    apply(json!({ "observedGeneration": 1, "shares": [{ "share": "x" }], "orphans": [] })).await;
    apply(json!({ "observedGeneration": 1, "shares": [{ "share": "x" }] })).await;
    let stored = api.get("handlepolicies", Some(NS), POLICY).unwrap();
    assert!(stored["status"].get("orphans").is_none(), "{stored}");
    let rv = api.resource_version();
    apply(json!({ "observedGeneration": 1, "shares": [{ "share": "x" }] })).await;
    assert_eq!(
        api.resource_version(),
        rv,
        "a no-op apply moved resourceVersion"
    );
    assert_eq!(
        stored["metadata"]["generation"], 1,
        "a status write bumped generation"
    );

    // Apply conflicts between managers, as kube-lease-manager relies on.
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NS);
    let lease = |holder: &str| {
        Patch::Apply(
            json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": { "holderIdentity": holder } }),
        )
    };
    leases
        .patch("l", &PatchParams::apply("mgr-a"), &lease("a"))
        .await
        .unwrap();
    let refused = leases
        .patch("l", &PatchParams::apply("mgr-b"), &lease("b"))
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(s)) if s.code == 409),
        "no conflict"
    );
    leases
        .patch("l", &PatchParams::apply("mgr-a"), &lease("c"))
        .await
        .unwrap();
    leases
        .patch("l", &PatchParams::apply("mgr-b").force(), &lease("b"))
        .await
        .unwrap();
}

/// The series of `/metrics` (sample lines) that carry `label`, e.g. `policy="doomed"`.
fn series_with(metrics: &str, label: &str) -> Vec<String> {
    let samples = metrics.lines().filter(|l| !l.starts_with('#'));
    samples
        .filter(|l| l.contains(&format!("{label},")) || l.contains(&format!("{label}}}")))
        .map(str::to_owned)
        .collect()
}

/// Regression (was a bug): a deleted HandlePolicy, or a share removed from one, kept its metric
/// series until the controller restarted (`Metrics::forget_policy` had no caller), so
/// `ShareHygieneSweepStale` fired for a policy that no longer existed and the dashboard listed
/// it. Now the share's series go when the spec drops it, and the policy's (counters and
/// histograms included) when it is deleted; another policy's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_policy_and_a_removed_share_leave_no_series() {
    let svc = HandleService::start(&[SHARE, "media"]).await;
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 2);
    svc.open(SHARE, "data/new.bin", "10.0.0.2", a_minute(), 8);
    svc.open("media", "data/new.bin", "10.0.0.2", a_minute(), 3);
    let api = cluster(&svc).await;
    let mut doomed = stale_policy(NS, "doomed", &svc.endpoint(), SHARE, SECRET, "5m");
    let media = json!({ "endpoint": svc.endpoint(), "share": "media", "credentialsSecretRef": { "name": SECRET } });
    doomed["spec"]["shares"].as_array_mut().unwrap().push(media);
    api.create(doomed);
    let kubeconfig = kubeconfig(&api, "forget");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let addr = ctl.addr().await;
    let scraped = eventually(Duration::from_secs(15), "both policies swept", || async {
        let m = metrics(addr).await;
        let swept = |p: &str| m.contains(&format!("share_hygiene_sweeps_total{{namespace=\"storage\",policy=\"{p}\",result=\"Success\"}} 1"));
        (swept("doomed") && swept(POLICY)).then_some(m)
    })
    .await;
    let media_series = series_with(&scraped, r#"share="media""#);
    assert!(media_series.len() >= 10, "{scraped}");
    let kept = series_with(&scraped, &format!("policy=\"{POLICY}\""));

    // The share leaves the spec: its series go at the sweep that follows, the other share's stay.
    let only_projects = json!([{ "endpoint": svc.endpoint(), "share": SHARE, "credentialsSecretRef": { "name": SECRET } }]);
    api.patch(
        "handlepolicies",
        Some(NS),
        "doomed",
        false,
        json!({ "spec": { "shares": only_projects } }),
    );
    let scraped = eventually(Duration::from_secs(15), "the second sweep", || async {
        let m = metrics(addr).await;
        let swept = m.contains(
            r#"share_hygiene_sweeps_total{namespace="storage",policy="doomed",result="Success"} 2"#,
        );
        swept.then_some(m)
    })
    .await;
    assert_eq!(
        series_with(&scraped, r#"share="media""#),
        Vec::<String>::new(),
        "the removed share's series are still there"
    );
    assert!(!series_with(&scraped, r#"policy="doomed""#).is_empty());

    // The policy is deleted: all its series go; the other policy's are untouched.
    assert!(api.delete("handlepolicies", Some(NS), "doomed"));
    let scraped = eventually(
        Duration::from_secs(10),
        "the deleted policy's series to go",
        || async {
            let m = metrics(addr).await;
            series_with(&m, r#"policy="doomed""#)
                .is_empty()
                .then_some(m)
        },
    )
    .await;
    assert_eq!(series_with(&scraped, &format!("policy=\"{POLICY}\"")), kept);
    promtool_check_metrics("the controller's /metrics after a deletion", &scraped);
}

/// The status applies to the policy `name` whose `lastRequest.token` is `token`.
fn answers(api: &FakeApi, name: &str, token: &str) -> Vec<Value> {
    let applies = api.status_applies(name).into_iter();
    let statuses = applies.map(|r| r.body["status"].clone());
    statuses
        .filter(|s| s["lastRequest"]["token"] == token)
        .collect()
}

/// A request to sweep now (`sharehygiene.io/sweep-requested`) is answered by one sweep, even in
/// DryRun and between intervals, and `status.lastRequest` echoes its token with the outcome.
/// The same token again, another annotation and a status write by someone else sweep nothing;
/// a new token sweeps again. Before the annotation existed, a request was never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_sweep_runs_once_and_its_token_is_echoed() {
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 5);
    svc.open(SHARE, "data/new.bin", "10.0.0.2", a_minute(), 5);
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    api.create(svc.secret(NS, SECRET));
    let mut policy = stale_policy(NS, POLICY, &svc.endpoint(), SHARE, SECRET, "1h");
    policy["spec"]["mode"] = json!("DryRun");
    api.create(policy);
    let kubeconfig = kubeconfig(&api, "requested");
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    ctl.addr().await;
    eventually(Duration::from_secs(15), "the first sweep", || {
        std::future::ready((!api.status_applies(POLICY).is_empty()).then_some(()))
    })
    .await;

    let request = |token: &str| {
        let patch =
            json!({ "metadata": { "annotations": { "sharehygiene.io/sweep-requested": token } } });
        api.patch("handlepolicies", Some(NS), POLICY, false, patch);
    };
    request("1700");
    let answer = eventually(Duration::from_secs(15), "the answer to 1700", || {
        std::future::ready(answers(&api, POLICY, "1700").into_iter().next())
    })
    .await;
    assert_eq!(answer["lastRequest"]["outcome"], "Succeeded", "{answer}");
    assert_eq!(
        answer["lastRequest"]["sweepTime"],
        answer["lastSweep"]["startTime"]
    );
    assert_eq!(answer["lastSweep"]["skipped"]["DryRun"], 5, "{answer}");
    assert_eq!(svc.handles(), 10, "DryRun closed nothing");
    assert_eq!(
        api.status_applies(POLICY).len(),
        2,
        "one sweep for the request"
    );

    // Nothing of this asks for a sweep: the same token, another annotation, a status write.
    request("1700");
    let other = json!({ "metadata": { "annotations": { "example.com/owner": "storage-team" } } });
    api.patch("handlepolicies", Some(NS), POLICY, false, other);
    let status_write = json!({ "status": { "orphans": [{ "client": "10.9.9.9", "firstSeen": "2026-01-01T00:00:00Z" }] } });
    api.patch("handlepolicies", Some(NS), POLICY, true, status_write);
    // No event to wait for when nothing happens: give the watch three bookmarks' time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.status_applies(POLICY).len(),
        2,
        "swept again without a new token:\n{:#?}",
        api.status_applies(POLICY)
    );

    request("1701");
    eventually(Duration::from_secs(15), "the answer to 1701", || {
        std::future::ready(answers(&api, POLICY, "1701").into_iter().next())
    })
    .await;
    assert_eq!(api.status_applies(POLICY).len(), 3);
    assert_eq!(answers(&api, POLICY, "1700").len(), 1, "1700 answered once");
}

/// With `--max-concurrent-sweeps 1`, two policies due at the same moment are swept one after
/// the other: the second reads its Secret (the start of its sweep) only after the first wrote
/// its status (the end of its sweep). Secret reads are slowed to 1 s so that two sweeps
/// running together would overlap for certain. Before the limit, both started together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_sweep_slot_two_due_policies_never_sweep_at_once() {
    let svc = HandleService::start(&["share-a", "share-b"]).await;
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    for (policy, share, secret) in [("pa", "share-a", "key-a"), ("pb", "share-b", "key-b")] {
        svc.open(share, "logs/old.log", "10.0.0.1", two_days(), 1);
        svc.open(share, "data/new.bin", "10.0.0.2", a_minute(), 3);
        api.create(svc.secret(NS, secret));
        api.create(stale_policy(
            NS,
            policy,
            &svc.endpoint(),
            share,
            secret,
            "1h",
        ));
    }
    api.delay_gets("secrets", Duration::from_secs(1));
    let kubeconfig = kubeconfig(&api, "slots");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--no-leader-election",
        "--max-concurrent-sweeps",
        "1",
    ];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    ctl.addr().await;
    eventually(Duration::from_secs(20), "both sweeps", || {
        let both = !api.status_applies("pa").is_empty() && !api.status_applies("pb").is_empty();
        std::future::ready(both.then_some(()))
    })
    .await;

    // Each sweep from its Secret read to its status apply, as positions in the request log.
    let requests = api.requests();
    let span = |policy: &str, secret: &str| {
        let read = requests
            .iter()
            .position(|r| r.method == "GET" && r.path.ends_with(&format!("/secrets/{secret}")));
        let written = requests.iter().position(|r| {
            r.path
                .ends_with(&format!("/handlepolicies/{policy}/status"))
                && r.method == "PATCH"
        });
        (
            read.expect("a Secret read"),
            written.expect("a status apply"),
        )
    };
    let (a, b) = (span("pa", "key-a"), span("pb", "key-b"));
    let log: Vec<String> = requests.iter().map(ToString::to_string).collect();
    assert!(
        a.1 < b.0 || b.1 < a.0,
        "the sweeps overlapped: pa {a:?}, pb {b:?}\n{}",
        log.join("\n")
    );
}

/// `--policy-selector` reaches the policy watches (the Controller's and the metadata one) as
/// a `labelSelector`, and only the selected policy is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_selector_reaches_the_watch() {
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(SHARE, "logs/old.log", "10.0.0.1", two_days(), 1);
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    api.create(svc.secret(NS, SECRET));
    let mut mine = stale_policy(NS, "mine", &svc.endpoint(), SHARE, SECRET, "1h");
    mine["metadata"]["labels"] = json!({ "sharehygiene.io/shard": "a" });
    api.create(mine);
    let mut theirs = stale_policy(NS, "theirs", &svc.endpoint(), SHARE, SECRET, "1h");
    theirs["metadata"]["labels"] = json!({ "sharehygiene.io/shard": "b" });
    api.create(theirs);
    api.create(stale_policy(
        NS,
        "unlabelled",
        &svc.endpoint(),
        SHARE,
        SECRET,
        "1h",
    ));
    let kubeconfig = kubeconfig(&api, "selector");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--no-leader-election",
        "--policy-selector",
        "sharehygiene.io/shard=a",
    ];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let addr = ctl.addr().await;
    eventually(Duration::from_secs(15), "ready", || async move {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the selected policy's sweep",
        || std::future::ready((!api.status_applies("mine").is_empty()).then_some(())),
    )
    .await;

    let policy_reads: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/handlepolicies"))
        .collect();
    assert!(!policy_reads.is_empty());
    for r in &policy_reads {
        assert!(
            r.query
                .contains("labelSelector=sharehygiene.io%2Fshard%3Da"),
            "a policy list or watch without the selector: {r}"
        );
    }
    // Both watches (the Controller's, full objects; the metadata one) carry it.
    assert!(policy_reads.iter().any(|r| r.query.contains("watch=true")));
    assert!(api.status_applies("theirs").is_empty());
    assert!(api.status_applies("unlabelled").is_empty());
    let text = metrics(addr).await;
    assert!(!text.contains(r#"policy="theirs""#), "{text}");
    assert!(text.contains(r#"policy="mine""#), "{text}");
}

/// A `--policy-selector` the API server refuses stops the controller at once, naming the flag
/// and the value, instead of a watch that fails and retries forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_policy_selector_exits_naming_it() {
    let api = FakeApi::start().await;
    let kubeconfig = kubeconfig(&api, "bad-selector");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--no-leader-election",
        "--policy-selector",
        "=a",
    ];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let exit = ctl
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("it exits");
    let logs = ctl.logs();
    assert_eq!(exit.code(), Some(1), "{logs}");
    assert!(
        logs.contains(
            r#"--policy-selector "=a": the API server refused it: unable to parse requirement"#
        ),
        "{logs}"
    );
}
