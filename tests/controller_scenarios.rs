//! Reconcile scenarios against a scripted Kubernetes API (tower-test, in the style of
//! kube-rs controller-rs' ApiServerVerifier) and a real handle service over HTTP.
//!
//! Each test scripts the API calls one reconcile makes, in order, asserting method, URL and
//! body, and fails if the reconcile makes a call it should not.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use base64::Engine;
use http::{Request, Response};
use jiff::Timestamp;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use share_hygiene::api::HandlePolicy;
use share_hygiene::auth::AccountKey;
use share_hygiene::controller::{
    AlwaysLeader, Context, FOLLOWER_RECHECK, Leadership, NeverLeader, StaticFacts, reconcile,
};
use share_hygiene::handles::client::{ClientOptions, ClientPool, DEFAULT_IDLE_AFTER};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::metrics::ControllerMetrics;
use share_hygiene::protocol::AccessRights;
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};
use share_hygiene::sweep::SweepOptions;

type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "storage";
const NAME: &str = "team-files";
const ACCOUNT: &str = "acct";
/// The pinned controller clock.
const NOW: i64 = 1_790_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

/// A handle service over a memory store with `stale` handles held for two days and `fresh`
/// ones held for a minute, on share `projects`.
async fn service(stale: u32, fresh: u32) -> (RunningServer, Arc<MemoryStore>, AccountKey) {
    let (running, store, key, _) = service_with_server(stale, fresh).await;
    (running, store, key)
}

/// [`service`], also returning the server (for its own metrics).
async fn service_with_server(
    stale: u32,
    fresh: u32,
) -> (
    RunningServer,
    Arc<MemoryStore>,
    AccountKey,
    Arc<HandleServer>,
) {
    let store = Arc::new(MemoryStore::default());
    store.create_share("projects").unwrap();
    let open = |age_secs: i64, count: u32, client: &str| OpenSpec {
        client_ip: format!("{client}:445"),
        client_name: Some("node-a".into()),
        session_id: None,
        open_time: Timestamp::from_second(NOW - age_secs).unwrap(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count,
        fail_close: false,
    };
    if stale > 0 {
        store
            .open(
                "projects",
                "logs/old.log",
                &open(2 * 86_400, stale, "10.0.0.1"),
            )
            .unwrap();
    }
    if fresh > 0 {
        store
            .open("projects", "data/new.bin", &open(60, fresh, "10.0.0.2"))
            .unwrap();
    }
    let key = AccountKey::random();
    let server = Arc::new(HandleServer::memory(
        ServerConfig::new(ACCOUNT, key.clone()),
        store.clone(),
    ));
    let running = server
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (running, store, key, server)
}

fn policy_json(endpoint: &str, mode: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "mode": mode,
        "interval": "5m",
        "shares": [{ "endpoint": endpoint, "share": "projects", "credentialsSecretRef": { "name": "acct-key" } }],
        "rules": { "stale": { "openLongerThan": "24h" } },
        "limits": { "maxClosesPerSweep": 1000, "safetyValvePercent": 50 }
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "sharehygiene.io/v1alpha1",
        "kind": "HandlePolicy",
        "metadata": { "name": NAME, "namespace": NS, "uid": "uid-1", "generation": 3, "resourceVersion": "100" },
        "spec": spec
    })
}

fn guard(v: &Value) -> Arc<DeserializeGuard<HandlePolicy>> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

fn context(client: kube::Client, leader: Arc<dyn Leadership>) -> Arc<Context> {
    let reporter = Reporter {
        controller: "share-hygiene".into(),
        instance: Some("test-0".into()),
    };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics: ControllerMetrics::new(),
        leader,
        facts: Arc::new(StaticFacts(None)),
        sweep_options: SweepOptions::default(),
        clients: ClientPool::new(
            ClientOptions {
                retry_budget: 0,
                ..ClientOptions::default()
            },
            DEFAULT_IDLE_AFTER,
        ),
        shutdown: Arc::new(AtomicBool::new(false)),
        sweep_slots: tokio::sync::Semaphore::new(8),
        credentials_changed: Default::default(),
        api_errors: Default::default(),
        applied: Default::default(),
        clock: now,
    })
}

fn mock() -> (kube::Client, ApiHandle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, NS), handle)
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
    let resp = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(resp);
}

/// Expects `GET` of the credentials Secret and answers with `key` (or 404 when `None`).
async fn expect_secret(handle: &mut ApiHandle, key: Option<&AccountKey>) {
    let (req, send) = handle
        .next_request()
        .await
        .expect("a request for the Secret");
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri().path(),
        format!("/api/v1/namespaces/{NS}/secrets/acct-key")
    );
    match key {
        Some(key) => {
            let data = base64::engine::general_purpose::STANDARD.encode(key.to_base64());
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "acct-key", "namespace": NS },
                "data": { "accountKey": data }
            });
            respond(send, 200, &secret);
        }
        None => respond(
            send,
            404,
            &json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": "secrets \"acct-key\" not found" }),
        ),
    }
}

/// Expects the server-side apply of the status; returns the applied status.
async fn expect_status_apply(handle: &mut ApiHandle, policy: &Value) -> Value {
    let (req, send) = handle.next_request().await.expect("a status apply");
    assert_eq!(req.method(), http::Method::PATCH);
    assert_eq!(
        req.uri().path(),
        format!("/apis/sharehygiene.io/v1alpha1/namespaces/{NS}/handlepolicies/{NAME}/status")
    );
    let query = req.uri().query().unwrap_or("");
    assert!(
        query.contains("fieldManager=share-hygiene") && query.contains("force=true"),
        "{query}"
    );
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = body_json(req).await;
    assert_eq!(body["apiVersion"], "sharehygiene.io/v1alpha1");
    assert_eq!(body["kind"], "HandlePolicy");
    let mut answer = policy.clone();
    answer["status"] = body["status"].clone();
    respond(send, 200, &answer);
    body["status"].clone()
}

/// Expects an Event; returns (type, reason, note).
async fn expect_event(handle: &mut ApiHandle) -> (String, String, String) {
    let (req, send) = handle.next_request().await.expect("an Event");
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.uri().path(),
        format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
    );
    let body = body_json(req).await;
    assert_eq!(body["regarding"]["name"], NAME);
    assert_eq!(body["regarding"]["kind"], "HandlePolicy");
    assert_eq!(body["reportingController"], "share-hygiene");
    let out = (
        body["type"].as_str().unwrap_or_default().to_owned(),
        body["reason"].as_str().unwrap_or_default().to_owned(),
        body["note"].as_str().unwrap_or_default().to_owned(),
    );
    respond(send, 201, &body);
    out
}

/// Fails if the reconcile made any further API call.
async fn expect_no_more(handle: &mut ApiHandle) {
    let next = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    assert!(
        matches!(next, Err(_) | Ok(None)),
        "unexpected API call after the scripted ones"
    );
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .expect("condition present")
}

#[tokio::test]
async fn first_reconcile_applies_the_exact_status() {
    let (running, _store, key) = service(0, 3).await;
    let endpoint = format!("http://{}/{ACCOUNT}", running.addr);
    let policy = policy_json(&endpoint, "Enforce", json!({}));
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = {
        let policy = policy.clone();
        tokio::spawn(async move {
            expect_secret(&mut handle, Some(&key)).await;
            let status = expect_status_apply(&mut handle, &policy).await;
            let event = expect_event(&mut handle).await;
            expect_no_more(&mut handle).await;
            (status, event)
        })
    };
    let action = reconcile(guard(&policy), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let (status, event) = verifier.await.unwrap();
    let t = "2026-09-21T14:13:20Z";
    let expected = json!({
        "observedGeneration": 3,
        "conditions": [
            { "type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "observedGeneration": 3, "lastTransitionTime": t },
            { "type": "Ready", "status": "True", "reason": "SweepSucceeded",
              "message": "swept 1 share(s): 3 handle(s) seen, 0 closed", "observedGeneration": 3, "lastTransitionTime": t }
        ],
        "lastSweep": { "startTime": t, "durationMillis": 0, "mode": "Enforce", "seen": 3, "condemned": {}, "closed": 0, "failed": 0, "skipped": {} },
        "shares": [{ "endpoint": endpoint, "share": "projects", "seen": 3, "condemned": 0, "closed": 0, "failed": 0 }]
    });
    assert_eq!(status, expected);
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Normal", "SweepSucceeded")
    );
    running.shutdown().await;
}

#[tokio::test]
async fn enforce_sweep_closes_stale_handles_and_says_so() {
    let (running, store, key) = service(4, 6).await;
    let policy = policy_json(
        &format!("http://{}/{ACCOUNT}", running.addr),
        "Enforce",
        json!({}),
    );
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = {
        let policy = policy.clone();
        tokio::spawn(async move {
            expect_secret(&mut handle, Some(&key)).await;
            let status = expect_status_apply(&mut handle, &policy).await;
            let ready = expect_event(&mut handle).await;
            let closed = expect_event(&mut handle).await;
            expect_no_more(&mut handle).await;
            (status, ready, closed)
        })
    };
    reconcile(guard(&policy), ctx.clone()).await.unwrap();
    let (status, ready, closed) = verifier.await.unwrap();
    assert_eq!(status["lastSweep"]["closed"], 4);
    assert_eq!(status["lastSweep"]["condemned"]["Stale"], 4);
    assert_eq!(ready.1, "SweepSucceeded");
    assert_eq!(
        (closed.0.as_str(), closed.1.as_str()),
        ("Normal", "HandlesClosed")
    );
    assert!(
        closed.2.contains("closed 4 handle(s) (Stale 4)")
            && closed.2.contains("projects/logs/old.log"),
        "{}",
        closed.2
    );
    assert_eq!(
        store.stats().handles,
        6,
        "only the stale handles were closed"
    );
    let metrics = share_hygiene::metrics::render(&ctx.metrics.registry);
    assert!(metrics.contains(r#"share_hygiene_handles_closed_total{namespace="storage",policy="team-files",reason="Stale",share="projects"} 4"#), "{metrics}");
    running.shutdown().await;
}

#[tokio::test]
async fn missing_secret_degrades_without_sweeping() {
    let (running, store, _key, server) = service_with_server(4, 6).await;
    let policy = policy_json(
        &format!("http://{}/{ACCOUNT}", running.addr),
        "Enforce",
        json!({}),
    );
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = {
        let policy = policy.clone();
        tokio::spawn(async move {
            expect_secret(&mut handle, None).await;
            let status = expect_status_apply(&mut handle, &policy).await;
            let share_error = expect_event(&mut handle).await;
            expect_no_more(&mut handle).await;
            (status, share_error)
        })
    };
    let action = reconcile(guard(&policy), ctx).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "first failure backs off 5s"
    );
    let (status, share_error) = verifier.await.unwrap();
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "CredentialError");
    assert_eq!(condition(&status, "Degraded")["status"], "True");
    assert_eq!(status["shares"][0]["errorCategory"], "CredentialError");
    assert!(
        status["shares"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("Secret storage/acct-key not found")
    );
    assert_eq!(
        (share_error.0.as_str(), share_error.1.as_str()),
        ("Warning", "CredentialError")
    );
    assert_eq!(store.stats().handles, 10, "nothing was closed");
    let served = share_hygiene::metrics::render(&server.metrics().registry);
    assert!(
        !served.contains("share_hygiene_service_requests_total{"),
        "no request reached the handle service:\n{served}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn safety_valve_closes_nothing_and_says_why() {
    let (running, store, key) = service(8, 2).await;
    let policy = policy_json(
        &format!("http://{}/{ACCOUNT}", running.addr),
        "Enforce",
        json!({}),
    );
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = {
        let policy = policy.clone();
        tokio::spawn(async move {
            expect_secret(&mut handle, Some(&key)).await;
            let status = expect_status_apply(&mut handle, &policy).await;
            let ready = expect_event(&mut handle).await;
            let valve = expect_event(&mut handle).await;
            expect_no_more(&mut handle).await;
            (status, ready, valve)
        })
    };
    reconcile(guard(&policy), ctx.clone()).await.unwrap();
    let (status, ready, valve) = verifier.await.unwrap();
    assert_eq!(
        ready.1, "SweepSucceeded",
        "the sweep itself worked; the valve is the warning"
    );
    assert_eq!(store.stats().handles, 10, "nothing was closed");
    assert_eq!(status["lastSweep"]["closed"], 0);
    assert_eq!(status["lastSweep"]["skipped"]["SafetyValve"], 8);
    assert_eq!(condition(&status, "Degraded")["reason"], "SafetyValve");
    assert_eq!(
        (valve.0.as_str(), valve.1.as_str()),
        ("Warning", "SafetyValve")
    );
    assert!(valve.2.contains("8 of 10 observed handles"), "{}", valve.2);
    let metrics = share_hygiene::metrics::render(&ctx.metrics.registry);
    assert!(
        metrics.contains(
            r#"share_hygiene_safety_valve_trips_total{namespace="storage",policy="team-files"} 1"#
        ),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_follower_does_not_sweep() {
    let (running, store, _key) = service(4, 0).await;
    let policy = policy_json(
        &format!("http://{}/{ACCOUNT}", running.addr),
        "Enforce",
        json!({}),
    );
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(NeverLeader));
    let verifier = tokio::spawn(async move { expect_no_more(&mut handle).await });
    let action = reconcile(guard(&policy), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(FOLLOWER_RECHECK));
    verifier.await.unwrap();
    assert_eq!(store.stats().handles, 4);
    running.shutdown().await;
}

#[tokio::test]
async fn malformed_policy_is_degraded_and_waits_for_a_change() {
    for (spec, needle) in [
        (json!({ "mode": "Turbo" }), "Unknown variant Turbo"),
        (
            json!({ "rules": { "stale": { "openLongerThan": "12x" } } }),
            "spec.rules.stale.openLongerThan",
        ),
        // A field the API server did not prune (a CRD newer than this controller, or one that
        // keeps unknown fields) may be a protection this controller cannot honour: refused.
        (
            json!({ "protect": { "clientCidrs": ["10.50.0.0/24"] } }),
            "Unknown field clientCidrs. Expected one of clientCIDRs, clientNames",
        ),
    ] {
        let policy = policy_json("http://127.0.0.1:9/acct", "DryRun", spec);
        let (client, mut handle) = mock();
        let ctx = context(client, Arc::new(AlwaysLeader));
        let verifier = {
            let policy = policy.clone();
            tokio::spawn(async move {
                let status = expect_status_apply(&mut handle, &policy).await;
                let event = expect_event(&mut handle).await;
                expect_no_more(&mut handle).await;
                (status, event)
            })
        };
        let action = reconcile(guard(&policy), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let (status, event) = verifier.await.unwrap();
        assert_eq!(condition(&status, "Degraded")["reason"], "InvalidSpec");
        assert_eq!(condition(&status, "Ready")["status"], "False");
        let message = condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(needle), "{message}");
        assert_eq!(
            (event.0.as_str(), event.1.as_str()),
            ("Warning", "InvalidSpec")
        );
        assert!(event.2.contains(needle), "{}", event.2);
    }
}

#[tokio::test]
async fn a_swept_policy_is_not_swept_again_before_its_interval() {
    let mut policy = policy_json("http://127.0.0.1:9/acct", "Enforce", json!({}));
    policy["status"] = json!({
        "observedGeneration": 3,
        "conditions": [{ "type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "lastTransitionTime": "2026-09-21T14:00:00Z" }],
        "lastSweep": { "startTime": "2026-09-21T14:12:20Z", "durationMillis": 5, "mode": "Enforce", "seen": 1, "closed": 0, "failed": 0, "fieldOfANewerRelease": 1 },
        "fieldOfANewerRelease": {}
    });
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = tokio::spawn(async move { expect_no_more(&mut handle).await });
    let action = reconcile(guard(&policy), ctx).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(240)),
        "60s of the 5m interval have passed"
    );
    verifier.await.unwrap();
}

/// The watch may bring a policy's new status to the store only after the next reconcile read
/// the object: that reconcile, handed the object without the status just applied, must not
/// sweep the policy a second time.
#[tokio::test]
async fn a_reconcile_that_reads_the_status_before_it_was_written_does_not_sweep_again() {
    let (running, store, key) = service(4, 6).await;
    let policy = policy_json(
        &format!("http://{}/{ACCOUNT}", running.addr),
        "Enforce",
        json!({}),
    );
    let (client, mut handle) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    let verifier = {
        let policy = policy.clone();
        tokio::spawn(async move {
            expect_secret(&mut handle, Some(&key)).await;
            expect_status_apply(&mut handle, &policy).await;
            expect_event(&mut handle).await;
            expect_event(&mut handle).await;
            // The second reconcile: no Secret read, no status, no Event.
            expect_no_more(&mut handle).await;
        })
    };
    reconcile(guard(&policy), ctx.clone()).await.unwrap();
    assert_eq!(store.stats().handles, 6);
    let action = reconcile(guard(&policy), ctx).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(300)),
        "the stale copy in the store is not a first sweep"
    );
    verifier.await.unwrap();
    running.shutdown().await;
}

/// A deleted policy is forgotten: what was kept about it and its metric series go, another
/// policy's stay.
#[tokio::test]
async fn forgetting_a_policy_drops_its_backoff_and_its_series() {
    let (client, _api) = mock();
    let ctx = context(client, Arc::new(AlwaysLeader));
    for name in ["team-files", "other"] {
        ctx.credentials_changed(&format!("{NS}/{name}"), now());
        ctx.api_errors
            .lock()
            .unwrap()
            .insert(format!("{NS}/{name}"), 3);
        ctx.metrics.set_interval(NS, name, Duration::from_secs(300));
        ctx.metrics.reconcile_error(NS, name, "ShareNotFound");
    }
    ctx.forget(NS, "team-files");
    let changed = ctx.credentials_changed.lock().unwrap();
    assert_eq!(changed.keys().collect::<Vec<_>>(), ["storage/other"]);
    let errors = ctx.api_errors.lock().unwrap();
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["storage/other"]);
    let text = share_hygiene::metrics::render(&ctx.metrics.registry);
    assert!(!text.contains(r#"policy="team-files""#), "{text}");
    assert!(text.contains(r#"policy="other""#), "{text}");
}

/// A sweep requested on a policy whose spec is invalid is answered at once with
/// `InvalidSpec`, so a pipeline waiting for the token is not left waiting; a follower leaves
/// the answer to the leader.
#[tokio::test]
async fn a_request_on_an_invalid_spec_is_answered_by_the_leader() {
    let mut policy = policy_json("http://127.0.0.1:9/acct", "Turbo", json!({}));
    policy["metadata"]["annotations"] = json!({ "sharehygiene.io/sweep-requested": "1700" });
    for leader in [true, false] {
        let (client, mut handle) = mock();
        let leadership: Arc<dyn Leadership> = match leader {
            true => Arc::new(AlwaysLeader),
            false => Arc::new(NeverLeader),
        };
        let ctx = context(client, leadership);
        let verifier = {
            let policy = policy.clone();
            tokio::spawn(async move {
                let status = expect_status_apply(&mut handle, &policy).await;
                expect_event(&mut handle).await;
                expect_no_more(&mut handle).await;
                status
            })
        };
        let action = reconcile(guard(&policy), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let status = verifier.await.unwrap();
        let answer = &status["lastRequest"];
        match leader {
            true => assert_eq!(
                *answer,
                json!({ "token": "1700", "outcome": "InvalidSpec" }),
                "{status}"
            ),
            false => assert!(answer.is_null(), "a follower answered: {status}"),
        }
    }
}
