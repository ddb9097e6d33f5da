//! Running the real `share-hygiene controller` binary, reading its logs and its HTTP port, a
//! handle service with leaked handles, the objects a policy needs, and `promtool`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::protocol::AccessRights;
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The storage account the handle service poses as.
pub const ACCOUNT: &str = "acct";

/// A fresh directory for one test's files (kubeconfig), under Cargo's scratch directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{nanos}"));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// A running `share-hygiene controller`, killed when dropped. Its stderr (JSON logs) is kept.
pub struct Controller {
    pub child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `logs` until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Controller {
    /// Starts this build's binary with `args` after `controller`, JSON logs, and `env`.
    pub fn spawn(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_bin(
            Path::new(env!("CARGO_BIN_EXE_share-hygiene")),
            kubeconfig,
            args,
            env,
        )
    }

    /// [`Controller::spawn`] with another binary.
    pub fn spawn_bin(bin: &Path, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["--log-format", "json", "controller"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start share-hygiene controller");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            logs,
            reader: Some(reader),
        }
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The log lines whose message starts with `prefix`, parsed.
    pub fn logged(&self, prefix: &str) -> Vec<Value> {
        let logs = self.logs.lock().unwrap();
        let parsed = logs
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        let matching = parsed.filter(|v| {
            let message = v["fields"]["message"].as_str().unwrap_or_default();
            message.starts_with(prefix)
        });
        matching.collect()
    }

    /// The address of its /metrics, /healthz and /readyz (it logs it once bound).
    pub async fn addr(&mut self) -> SocketAddr {
        let start = Instant::now();
        loop {
            let line = self.logged("serving /metrics").into_iter().next();
            if let Some(addr) = line.and_then(|l| l["fields"]["addr"].as_str()?.parse().ok()) {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the controller exited ({status}):\n{}", self.logs());
            }
            let waited = start.elapsed();
            assert!(
                waited < Duration::from_secs(15),
                "not listening after {waited:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the exit, then for the last log lines (the reader may lag behind the exit).
    async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
                }
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.exited()).await.ok()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let pid = self.child.id();
            eprintln!("--- controller {pid} logs ---\n{}\n---", self.logs());
        }
    }
}

/// Polls `f` every 50 ms until it gives a value; panics after `timeout`, saying what it waited
/// for.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` over plain HTTP/1.1: status and body, de-chunked (`(0, "")` when the connection
/// fails).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_end(&mut raw).await.is_err()
    {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    match chunked {
        true => (status, dechunk(body)),
        false => (status, body.to_owned()),
    }
}

/// The payload of a `Transfer-Encoding: chunked` body (as much as is well formed).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// The value of the sample `name{labels}` (exact label set as rendered), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
    line?.rsplit(' ').next()?.parse().ok()
}

/// Runs `promtool check metrics` on an exposition; fails the test with promtool's findings.
/// Without promtool the test fails: it is a test dependency (`scripts/setup.sh` installs it).
pub fn promtool_check_metrics(what: &str, exposition: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool not found: run scripts/setup.sh (it installs Debian's prometheus package, \
             listed in scripts/apt-packages.txt)"
        ),
        Err(e) => panic!("running promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool ran");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics on {what} failed ({}):\n{findings}\n--- exposition ---\n{exposition}",
        out.status
    );
}

/// An in-process handle service over a memory store, on a loopback port.
pub struct HandleService {
    pub running: RunningServer,
    pub store: Arc<MemoryStore>,
    pub key: AccountKey,
    pub server: Arc<HandleServer>,
}

impl HandleService {
    /// A service with the given (empty) shares.
    pub async fn start(shares: &[&str]) -> Self {
        let store = Arc::new(MemoryStore::default());
        for share in shares {
            store.create_share(share).expect("create the share");
        }
        let key = AccountKey::random();
        let config = ServerConfig::new(ACCOUNT, key.clone());
        let server = Arc::new(HandleServer::memory(config, store.clone()));
        let addr = "127.0.0.1:0".parse().expect("an address");
        let running = server
            .clone()
            .spawn(addr)
            .await
            .expect("start the handle service");
        Self {
            running,
            store,
            key,
            server,
        }
    }

    /// The endpoint a policy names: `http://HOST:PORT/ACCOUNT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{ACCOUNT}", self.running.addr)
    }

    /// Opens `count` handles on `share/path` from `client_ip`, opened `age` ago.
    pub fn open(&self, share: &str, path: &str, client_ip: &str, age: SignedDuration, count: u32) {
        self.open_with(share, path, client_ip, age, count, false);
    }

    /// [`HandleService::open`] with handles that the store fails to close (`fail_close`).
    pub fn open_unclosable(
        &self,
        share: &str,
        path: &str,
        client_ip: &str,
        age: SignedDuration,
        count: u32,
    ) {
        self.open_with(share, path, client_ip, age, count, true);
    }

    fn open_with(
        &self,
        share: &str,
        path: &str,
        client_ip: &str,
        age: SignedDuration,
        count: u32,
        fail_close: bool,
    ) {
        let spec = OpenSpec {
            client_ip: format!("{client_ip}:445"),
            client_name: Some("node-a".into()),
            session_id: None,
            open_time: Timestamp::now() - age,
            last_reconnect_time: None,
            access_rights: AccessRights::READ,
            directory: false,
            count,
            fail_close,
        };
        self.store.open(share, path, &spec).expect("open handles");
    }

    /// Open handles on the whole store.
    pub fn handles(&self) -> usize {
        self.store.stats().handles
    }

    /// The Secret with this service's key, as the policy's shares reference it.
    pub fn secret(&self, namespace: &str, name: &str) -> Value {
        let data = base64::engine::general_purpose::STANDARD.encode(self.key.to_base64());
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": name, "namespace": namespace },
            "data": { "accountKey": data }
        })
    }
}

/// A HandlePolicy in Enforce mode with the stale rule (24h) on one share.
pub fn stale_policy(
    namespace: &str,
    name: &str,
    endpoint: &str,
    share: &str,
    secret: &str,
    interval: &str,
) -> Value {
    json!({
        "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "mode": "Enforce",
            "interval": interval,
            "shares": [{ "endpoint": endpoint, "share": share, "credentialsSecretRef": { "name": secret } }],
            "rules": { "stale": { "openLongerThan": "24h" } },
            "limits": { "maxClosesPerSweep": 1000, "safetyValvePercent": 90 }
        }
    })
}

/// A Node much like a cloud provider's (labels, taints, capacity, images, conditions).
pub fn node(i: usize) -> Value {
    let name = format!("aks-pool-{i:05}");
    let ip = format!("10.240.{}.{}", i / 250, i % 250 + 4);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                        "node.kubernetes.io/instance-type": "Standard_D4s_v5", "agentpool": "pool",
                        "topology.kubernetes.io/zone": format!("westeurope-{}", i % 3 + 1) },
            "annotations": { "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true" }
        },
        "spec": { "podCIDR": format!("10.244.{}.0/24", i % 250), "providerID": format!("azure:///subscriptions/x/vmss/{i}") },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": ip }, { "type": "Hostname", "address": name }],
            "capacity": { "cpu": "4", "memory": "16393872Ki", "pods": "110" },
            "allocatable": { "cpu": "3860m", "memory": "12899472Ki", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                             "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
            "nodeInfo": { "kubeletVersion": "v1.33.2", "osImage": "Ubuntu 22.04.5 LTS", "containerRuntimeVersion": "containerd://1.7.27",
                          "kernelVersion": "5.15.0-1089-azure", "architecture": "amd64", "operatingSystem": "linux",
                          "machineID": "m", "systemUUID": "s", "bootID": "b", "kubeProxyVersion": "" },
            "images": [{ "names": ["mcr.microsoft.com/oss/kubernetes/pause:3.6"], "sizeBytes": 253243 }]
        }
    })
}

/// A running Pod much like a Deployment's (labels, owner, one container with env and mounts).
pub fn pod(i: usize, nodes: usize) -> Value {
    let name = format!("web-{:05}-7d9f8c6b5-{:05}", i / 10, i);
    let node = i % nodes.max(1);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": format!("team-{}", i % 20),
            "labels": { "app": "web", "pod-template-hash": "7d9f8c6b5" },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5", "uid": "u", "controller": true }]
        },
        "spec": {
            "nodeName": format!("aks-pool-{node:05}"),
            "containers": [{
                "name": "web", "image": "registry.example.com/team/web:1.2.3",
                "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                "env": [{ "name": "LOG_LEVEL", "value": "info" }, { "name": "SHARE", "value": "/mnt/share" }],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "memory": "256Mi" } },
                "volumeMounts": [{ "name": "share", "mountPath": "/mnt/share" }]
            }],
            "volumes": [{ "name": "share", "csi": { "driver": "file.csi.azure.com", "volumeAttributes": { "shareName": "projects" } } }]
        },
        "status": {
            "phase": "Running",
            "hostIP": format!("10.240.{}.{}", node / 250, node % 250 + 4),
            "podIP": format!("10.244.{}.{}", i / 250 % 250, i % 250 + 2),
            "podIPs": [{ "ip": format!("10.244.{}.{}", i / 250 % 250, i % 250 + 2) }],
            "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
            "containerStatuses": [{ "name": "web", "ready": true, "restartCount": 0, "image": "registry.example.com/team/web:1.2.3",
                                    "imageID": "sha256:abc", "containerID": "containerd://abc", "started": true,
                                    "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } } }],
            "startTime": "2026-01-01T00:00:00Z"
        }
    })
}
