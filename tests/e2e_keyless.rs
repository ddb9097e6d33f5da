//! Keyless end to end, every part real and over HTTP: a handle service that refuses Shared Key
//! (as an account with key access disabled does) and trusts a local Entra ID; a policy whose
//! share uses workload identity; `share-hygiene sweep` exchanging the projected
//! service-account token (a JWT from the "cluster's" issuer) for a storage token, and closing
//! the condemned handles with it.

mod common_entra;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common_entra::{ASSERTION_AUDIENCE, Entra, SigningKey, now};
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
const CLIENT_ID: &str = "5a2e8c1e-0000-4000-8000-000000000002";
const OID: &str = "share-hygiene-oid";
const CLUSTER_ISSUER: &str = "https://oidc.cluster.test/abc";
const SUBJECT: &str = "system:serviceaccount:share-hygiene:share-hygiene";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_share-hygiene")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sh-e2e-keyless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The handle service as a process; killed on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// A service over a memory store with `stale` handles held for three days and one held
    /// for five minutes.
    fn start(dir: &Path, entra: &Entra, stale: u32) -> Self {
        let seed = dir.join("seed.yaml");
        std::fs::write(
            &seed,
            format!("shares:\n  - name: projects\n    handles:\n      - {{path: logs/app.log, client: \"10.240.0.9:50001\", age: 3d, count: {stale}}}\n      - {{path: logs/new.log, client: \"10.240.0.9:50001\", age: 5m}}\n"),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin())
            .args(["handle-service", "--seed"])
            .arg(&seed)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--account",
                "demo",
            ])
            .args(["--oauth-issuer", &entra.issuer(), "--oauth-tenant", TENANT])
            .args(["--oauth-contributor", OID, "--no-shared-key"])
            .env(
                "SHARE_HYGIENE_ACCOUNT_KEY",
                "a2V5LWZvci10aGUtYWRtaW4tZW5kcG9pbnQtb25seQ==",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the handle service did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/demo", self.port)
    }
}

/// The projected service-account token the AKS webhook mounts: a JWT from the cluster's
/// issuer for the token-exchange audience.
fn projected_token(cluster_key: &SigningKey) -> String {
    let now = now();
    cluster_key.sign(&json!({
        "iss": CLUSTER_ISSUER,
        "sub": SUBJECT,
        "aud": [ASSERTION_AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }))
}

fn policy(dir: &Path, endpoint: &str, mode: &str) -> PathBuf {
    let path = dir.join(format!("policy-{mode}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: sharehygiene.io/v1alpha1\nkind: HandlePolicy\nmetadata:\n  name: keyless\n  namespace: storage\nspec:\n  mode: {mode}\n  shares:\n    - endpoint: {endpoint}\n      share: projects\n      identity:\n        type: Workload\n  rules:\n    stale:\n      openLongerThan: 24h\n  limits:\n    safetyValvePercent: 100\n    maxClosesPerSweep: 100000\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `sweep -f POLICY -o json` as the controller's pod would, with the webhook's variables.
fn sweep(policy: &Path, entra: &Entra, token_file: &Path) -> (i32, Value, String) {
    let out = Command::new(bin())
        .args(["sweep", "-f"])
        .arg(policy)
        .args(["-o", "json"])
        .env_remove("AZURE_STORAGE_KEY")
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_FEDERATED_TOKEN_FILE", token_file)
        .env("AZURE_AUTHORITY_HOST", &entra.base)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Every number under a field named `key` anywhere in the report (a count, or counts by
/// reason), added up.
fn total(report: &Value, key: &str) -> u64 {
    fn numbers(v: &Value) -> u64 {
        match v {
            Value::Number(n) => n.as_u64().unwrap_or(0),
            Value::Object(map) => map.values().map(numbers).sum(),
            Value::Array(items) => items.iter().map(numbers).sum(),
            _ => 0,
        }
    }
    match report {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| if k == key { numbers(v) } else { total(v, key) })
            .sum(),
        Value::Array(items) => items.iter().map(|v| total(v, key)).sum(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_policy_sweeps_through_workload_identity_against_a_service_refusing_shared_key() {
    let entra = Entra::start(TENANT).await;
    let cluster_key = std::sync::Arc::new(SigningKey::generate("cluster-1"));
    entra.add_federated_app(CLIENT_ID, OID, CLUSTER_ISSUER, SUBJECT, cluster_key.clone());
    let dir = temp_dir("sweep");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, projected_token(&cluster_key)).unwrap();
    let service = Service::start(&dir, &entra, 3);

    // A key is refused outright: this service is an account with key access disabled.
    let keyed = Command::new(bin())
        .args(["handles", "list", "--share-url"])
        .arg(format!("{}/projects", service.endpoint()))
        .args([
            "--account-key",
            "a2V5LWZvci10aGUtYWRtaW4tZW5kcG9pbnQtb25seQ==",
        ])
        .output()
        .unwrap();
    let keyed_err = String::from_utf8_lossy(&keyed.stderr);
    assert_eq!(keyed.status.code(), Some(3), "{keyed_err}");
    assert!(
        keyed_err.contains("KeyBasedAuthenticationNotPermitted"),
        "{keyed_err}"
    );

    // The sweep: federated token file -> token endpoint -> bearer -> our service -> closed.
    let enforce = policy(&dir, &service.endpoint(), "Enforce");
    let (code, report, stderr) = sweep(&enforce, &entra, &token_file);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(total(&report, "closed"), 3, "{report:#}");
    assert!(entra.tokens_issued() >= 1, "no token was issued");
    assert!(
        !stderr.contains(&token) && !report.to_string().contains(&token),
        "the projected token leaked"
    );

    // What is left: the young handle only, seen with a fresh token on a new process.
    let dry = policy(&dir, &service.endpoint(), "DryRun");
    let (code, report, stderr) = sweep(&dry, &entra, &token_file);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(total(&report, "seen"), 1, "{report:#}");
    assert_eq!(total(&report, "closed"), 0, "{report:#}");

    // A principal the service does not trust as a contributor closes nothing: the token
    // endpoint issues a token, the service refuses the close.
    entra.add_federated_app(
        "00000000-0000-4000-8000-00000000dead",
        "stranger-oid",
        CLUSTER_ISSUER,
        SUBJECT,
        cluster_key.clone(),
    );
    let out = Command::new(bin())
        .args(["sweep", "-f"])
        .arg(&enforce)
        .args(["-o", "json"])
        .env("AZURE_CLIENT_ID", "00000000-0000-4000-8000-00000000dead")
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_FEDERATED_TOKEN_FILE", &token_file)
        .env("AZURE_AUTHORITY_HOST", &entra.base)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("AuthorizationPermissionMismatch"), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_expires_mid_sweep_is_refreshed() {
    let entra = Entra::start(TENANT).await;
    // Tokens live one second, so the client refreshes them every half second (half their
    // lifetime) while the sweep closes twenty thousand handles one by one.
    entra.set_token_lifetime(1);
    let cluster_key = std::sync::Arc::new(SigningKey::generate("cluster-1"));
    entra.add_federated_app(CLIENT_ID, OID, CLUSTER_ISSUER, SUBJECT, cluster_key.clone());
    let dir = temp_dir("refresh");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, projected_token(&cluster_key)).unwrap();
    let service = Service::start(&dir, &entra, 20_000);

    let enforce = policy(&dir, &service.endpoint(), "Enforce");
    let (code, report, stderr) = sweep(&enforce, &entra, &token_file);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(total(&report, "closed"), 20_000, "{stderr}");
    assert_eq!(total(&report, "failed"), 0, "{stderr}");
    let took = report["duration"].as_f64().unwrap_or(0.0);
    // The premise, not a speed target: the sweep must outlive its first token to test this.
    assert!(
        took > 0.6,
        "the sweep took {took} s, too short to outlive a token: raise the handle count"
    );
    assert!(
        entra.tokens_issued() >= 2,
        "one token served a {took} s sweep: it was never refreshed"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
