//! The real controller against a real cluster (kind, k3d, minikube...), opt-in:
//!
//! ```text
//! kind create cluster --name share-hygiene
//! KUBECONFIG=$(mktemp) kind export kubeconfig --name share-hygiene --kubeconfig "$KUBECONFIG"
//! KUBECONFIG=... cargo test --test e2e_cluster -- --ignored --test-threads 1
//! ```
//!
//! Each test installs (server-side applies) the HandlePolicy CRD, creates a namespace of its
//! own with a credentials Secret and a HandlePolicy whose share is on an in-process handle
//! service on this host (the controller runs on this host too, so `127.0.0.1` reaches it),
//! runs `share-hygiene controller` with the KUBECONFIG, waits for the status to show the
//! closes, and deletes the namespace (the CRD stays). Nothing runs without KUBECONFIG set: the
//! tests refuse to use a default or in-cluster configuration, so they never touch a cluster by
//! accident. See docs/controller.md.

#[path = "common_fake_api/mod.rs"]
mod common_fake_api;

use std::time::Duration;

use common_fake_api::process::{Controller, HandleService, eventually, stale_policy};
use futures::FutureExt;
use jiff::SignedDuration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use share_hygiene::api::HandlePolicy;

const SHARE: &str = "projects";
const SECRET: &str = "acct-key";
const POLICY: &str = "team-files";

/// The cluster the tests may use: only the one KUBECONFIG names.
async fn client() -> (kube::Client, std::path::PathBuf) {
    let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) else {
        panic!("set KUBECONFIG to a test cluster (for example kind's) to run the e2e tests")
    };
    share_hygiene::install_crypto_provider();
    let config = kube::Config::infer().await.expect("a usable KUBECONFIG");
    (
        kube::Client::try_from(config).expect("a client"),
        path.into(),
    )
}

/// Server-side applies the CRD of this build and waits until it is established.
async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = HandlePolicy::crd();
    let name = crd.name_any();
    let params = PatchParams::apply("share-hygiene-e2e").force();
    crds.patch(&name, &params, &Patch::Apply(&crd))
        .await
        .expect("apply the CRD");
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("the CRD established within 30 s")
        .expect("watching the CRD");
}

/// A namespace of the test's own, deleted afterwards whatever happened.
async fn in_namespace<F, Fut>(client: &kube::Client, test: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let ns = format!("sh-e2e-{test}-{}", &suffix[..6]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object = serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create the namespace");
    let outcome = std::panic::AssertUnwindSafe(body(ns.clone()))
        .catch_unwind()
        .await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The handle service with 5 stale and 3 fresh handles, and its Secret and policy in `ns`.
async fn service_and_policy(client: &kube::Client, ns: &str) -> HandleService {
    let svc = HandleService::start(&[SHARE]).await;
    svc.open(
        SHARE,
        "logs/old.log",
        "10.0.0.1",
        SignedDuration::from_hours(48),
        5,
    );
    svc.open(
        SHARE,
        "data/new.bin",
        "10.0.0.2",
        SignedDuration::from_mins(1),
        3,
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = serde_json::from_value(svc.secret(ns, SECRET)).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
    let policies: Api<HandlePolicy> = Api::namespaced(client.clone(), ns);
    let policy = stale_policy(ns, POLICY, &svc.endpoint(), SHARE, SECRET, "5m");
    let policy = serde_json::from_value(policy).expect("a valid HandlePolicy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the HandlePolicy");
    svc
}

/// The policy's status once its last sweep closed `closed` handles.
async fn status_closing(client: &kube::Client, ns: &str, closed: i64) -> Value {
    let policies: Api<HandlePolicy> = Api::namespaced(client.clone(), ns);
    let what = format!("status.lastSweep.closed = {closed}");
    eventually(Duration::from_secs(60), &what, || {
        let policies = policies.clone();
        async move {
            let policy = policies.get(POLICY).await.ok()?;
            let status = serde_json::to_value(policy.status?).ok()?;
            (status["lastSweep"]["closed"] == closed).then_some(status)
        }
    })
    .await
}

async fn events(client: &kube::Client, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list Events")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn the_controller_closes_stale_handles_in_a_cluster() {
    let (client, kubeconfig) = client().await;
    install_crd(&client).await;
    let kube = client.clone();
    in_namespace(&kube, "sweep", |ns| async move {
        let svc = service_and_policy(&client, &ns).await;
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--no-leader-election",
            "--namespace",
            &ns,
        ];
        let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
        ctl.addr().await;

        let status = status_closing(&client, &ns, 5).await;
        assert_eq!(status["lastSweep"]["seen"], 8);
        assert_eq!(status["lastSweep"]["condemned"]["Stale"], 5);
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready");
        assert_eq!(ready.unwrap()["status"], "True", "{status}");
        assert_eq!(svc.handles(), 3, "the stale handles are closed");
        let note = eventually(Duration::from_secs(10), "a HandlesClosed Event", || async {
            let all = events(&client, &ns).await;
            let closed = all
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("HandlesClosed"));
            closed.and_then(|e| e.note)
        })
        .await;
        assert!(note.contains("closed 5 handle(s) (Stale 5)"), "{note:?}");

        // The status write itself is idempotent: no second sweep within the interval.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let policies: Api<HandlePolicy> = Api::namespaced(client.clone(), &ns);
        let again = policies.get(POLICY).await.unwrap();
        let start = again
            .status
            .and_then(|s| s.last_sweep)
            .map(|l| l.start_time);
        assert_eq!(start.as_deref(), status["lastSweep"]["startTime"].as_str());

        ctl.terminate();
        let exit = ctl
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits on SIGTERM");
        assert_eq!(exit.code(), Some(0), "{}", ctl.logs());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn the_leader_holds_a_lease_and_sweeps_in_a_cluster() {
    let (client, kubeconfig) = client().await;
    install_crd(&client).await;
    let kube = client.clone();
    in_namespace(&kube, "lease", |ns| async move {
        let svc = service_and_policy(&client, &ns).await;
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            &ns,
            "--lease-duration",
            "6",
        ];
        let env = [("POD_NAME", "e2e-0"), ("POD_NAMESPACE", ns.as_str())];
        let mut ctl = Controller::spawn(&kubeconfig, &args, &env);
        ctl.addr().await;

        status_closing(&client, &ns, 5).await;
        assert_eq!(svc.handles(), 3);
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let lease = leases.get("share-hygiene").await.expect("the Lease");
        let holder = lease.spec.and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some("e2e-0"));
        let reported = events(&client, &ns).await;
        assert!(
            reported
                .iter()
                .all(|e| e.reporting_instance.as_deref() == Some("e2e-0")),
            "Events from another instance: {reported:?}"
        );
        ctl.terminate();
        ctl.wait_exit(Duration::from_secs(10))
            .await
            .expect("exits on SIGTERM");
    })
    .await;
}
