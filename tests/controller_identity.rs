//! The real `share-hygiene controller` with a keyless policy (`identity: {type: Workload}`)
//! against the fake Kubernetes API: with the environment the AKS workload identity webhook
//! injects, it exchanges the projected token at the (loopback) token endpoint and sweeps with
//! the Entra token as a bearer and a backup intent. No Secret exists.

#[path = "common_fake_api/mod.rs"]
mod common_fake_api;
#[path = "common_token_endpoint/mod.rs"]
mod common_token_endpoint;

use std::time::Duration;

use common_fake_api::api::FakeApi;
use common_fake_api::process::{Controller, eventually, scratch_dir};
use common_token_endpoint::TokenServer;
use serde_json::json;

const NS: &str = "storage";
const POLICY: &str = "keyless";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_policy_sweeps_with_a_workload_identity_token() {
    let entra = TokenServer::start().await;
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    api.create(json!({
        "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy",
        "metadata": { "name": POLICY, "namespace": NS },
        "spec": {
            "mode": "DryRun",
            "interval": "5m",
            "shares": [{
                "endpoint": format!("http://{}/acct", entra.addr),
                "share": "projects",
                "identity": { "type": "Workload" }
            }],
            "rules": { "stale": { "openLongerThan": "24h" } }
        }
    }));
    let dir = scratch_dir("controller-identity");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.sa-token.sig").unwrap();
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let authority = entra.authority();
    let token_path = token_file.display().to_string();
    let ctl = Controller::spawn(
        &kubeconfig,
        &["--listen", "127.0.0.1:0", "--no-leader-election"],
        &[
            ("AZURE_CLIENT_ID", "22222222-3333-4444-5555-666666666666"),
            ("AZURE_TENANT_ID", "tenant-wi"),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_path),
            ("AZURE_AUTHORITY_HOST", &authority),
        ],
    );

    let status = eventually(
        Duration::from_secs(20),
        "a status apply after a sweep",
        || {
            let found = api
                .status_applies(POLICY)
                .into_iter()
                .map(|r| r.body["status"].clone())
                .find(|s| s.get("lastSweep").is_some());
            std::future::ready(found)
        },
    )
    .await;
    let seen = entra.take();
    let exchanges: Vec<_> = seen.iter().filter(|s| s.path.contains("oauth2")).collect();
    let lists: Vec<_> = seen.iter().filter(|s| s.path == "/acct/projects").collect();
    assert_eq!(exchanges.len(), 1, "{seen:?}\n{}", ctl.logs());
    assert_eq!(exchanges[0].path, "/tenant-wi/oauth2/v2.0/token");
    assert_eq!(
        exchanges[0].form["client_assertion"],
        "eyJhbGciOiJSUzI1NiJ9.sa-token.sig"
    );
    assert!(!lists.is_empty(), "{seen:?}");
    for list in lists {
        assert_eq!(list.header("authorization"), Some("Bearer token-1"));
        assert_eq!(list.header("x-ms-file-request-intent"), Some("backup"));
    }
    assert_eq!(status["lastSweep"]["seen"], 0, "{status}");
    let logs = ctl.logs();
    assert!(
        !logs.contains("sa-token") && !logs.contains("token-1"),
        "{logs}"
    );
}
