//! The chart's alerts and dashboard on a live Prometheus, fed by the real processes.
//!
//! A real `prometheus` server (Debian's package; on PATH) scrapes, every second, the real
//! `share-hygiene controller` binary (running against the stateful fake Kubernetes API of
//! `common_fake_api`) and a handle service over a memory store. Its rules are the chart's
//! PrometheusRule as Helm renders it, with only the `for:` durations shortened through the
//! chart's own per-alert overrides. The run goes through phases:
//!
//! 1. clean: two healthy policies (Enforce and DryRun) are swept; no alert goes pending or
//!    fires, and every rule evaluates without error;
//! 2. trouble: policies whose share is missing or throttled (503), whose safety valve trips,
//!    and a share with unclosable handles and a file with 1,700 handles; the alerts for each go
//!    pending, then firing, with the expected labels;
//! 3. the dashboard: every panel's queries, with Grafana's variables filled in as Grafana fills
//!    them, return series (a per-panel table is printed);
//! 4. a share is removed from a policy, then the policy is deleted: its series leave
//!    Prometheus and `ShareHygieneSweepStale` cannot fire for it;
//! 5. the controller dies (`ShareHygieneControllerDown`), then comes back without the leader
//!    Lease, which another holder keeps (`ShareHygieneNoLeader`).
//!
//! Every process it starts is killed when the test ends, also when it fails.

#[path = "common_dashboard/mod.rs"]
mod common_dashboard;
#[path = "common_fake_api/mod.rs"]
mod common_fake_api;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common_dashboard::{CHART, dashboard, targets, variable_queries};
use common_fake_api::api::FakeApi;
use common_fake_api::process::{Controller, HandleService, eventually, http_get, scratch_dir};
use jiff::SignedDuration;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

/// Prometheus' scrape and rule evaluation interval, in seconds.
const SCRAPE_SECS: u64 = 1;
/// The `for:` of every alert that has one, through the chart's overrides.
const FOR: &str = "2s";
/// The controller's scrape job: the chart's ServiceMonitor names it after the Service's
/// `app.kubernetes.io/name`, and the alerts and the dashboard select it.
const JOB: &str = "share-hygiene";
const SECRET: &str = "acct-key";
const CLEAN: &str = "clean";
const TROUBLE: &str = "storage";
const LEASE_NS: &str = "share-hygiene";

fn two_days() -> SignedDuration {
    SignedDuration::from_hours(48)
}

fn a_minute() -> SignedDuration {
    SignedDuration::from_mins(1)
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// A running Prometheus server with a temporary data directory, killed when dropped (its log
/// printed when dropped by a failing test).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- prometheus log (last lines) ---\n{}", tail.join("\n"));
        }
    }
}

/// A free loopback port (bound, then released for the process that takes it).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr")
}

impl Prometheus {
    /// Starts `prometheus` with `rules`, scraping the controller at `controller` (as the chart's
    /// ServiceMonitor would: job `share-hygiene`, honor_labels, pod and namespace target labels)
    /// and the handle service at `service`.
    fn start(dir: &Path, rules: &Path, controller: SocketAddr, service: SocketAddr) -> Self {
        let config = json!({
            "global": { "scrape_interval": format!("{SCRAPE_SECS}s"), "evaluation_interval": format!("{SCRAPE_SECS}s") },
            "rule_files": [rules],
            "scrape_configs": [
                { "job_name": JOB, "honor_labels": true,
                  "static_configs": [{ "targets": [controller.to_string()],
                                       "labels": { "pod": "share-hygiene-7d9f8c6b5-abcde", "namespace": LEASE_NS } }] },
                { "job_name": "share-hygiene-handle-service",
                  "static_configs": [{ "targets": [service.to_string()] }] }
            ]
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write prometheus.yml");
        let addr = free_port();
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "the `prometheus` server binary is not on PATH: install Debian's prometheus \
                 package (scripts/setup.sh does; it is in scripts/apt-packages.txt)"
            ),
            Err(e) => panic!("starting prometheus: {e}"),
        };
        Self { child, addr, log }
    }

    async fn ready(&mut self) {
        let start = Instant::now();
        while http_get(self.addr, "/-/ready").await.0 != 200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}); see its log below");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready after 30s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/{path}`; the `data` of a successful answer.
    async fn api(&self, path: &str) -> Value {
        let (code, body) = http_get(self.addr, &format!("/api/v1/{path}")).await;
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {code}, not JSON ({e}): {body}"));
        assert!(
            code == 200 && answer["status"] == "success",
            "GET /api/v1/{path}: {code} {answer}"
        );
        answer["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("query?query={}", encode(expr))).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// A range query's result matrix, `range` back from now in steps of `step`.
    async fn query_range(&self, expr: &str, range: Duration, step: Duration) -> Vec<Value> {
        let end = jiff::Timestamp::now().as_second();
        let start = end - range.as_secs() as i64;
        let path = format!(
            "query_range?query={}&start={start}&end={end}&step={}",
            encode(expr),
            step.as_secs()
        );
        let data = self.api(&path).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts pending or firing now.
    async fn alerts(&self) -> Vec<Value> {
        let data = self.api("alerts").await;
        data["alerts"].as_array().cloned().unwrap_or_default()
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// An alert and the labels that tell its instances apart, e.g.
/// `ShareHygieneSweepErrors{namespace=storage,policy=broken}`.
fn alert_key(alert: &Value) -> String {
    let labels = &alert["labels"];
    let name = labels["alertname"].as_str().unwrap_or("?");
    let parts: Vec<String> = [
        "namespace",
        "policy",
        "share",
        "reason",
        "category",
        "operation",
    ]
    .iter()
    .filter_map(|l| Some(format!("{l}={}", labels[*l].as_str()?)))
    .collect();
    format!("{name}{{{}}}", parts.join(","))
}

/// Every alert instance seen so far and the states it was seen in (`pending`, `firing`).
#[derive(Default)]
struct AlertLog(BTreeMap<String, BTreeSet<String>>);

impl AlertLog {
    /// Polls the alerts every 200 ms until `key` has been seen firing.
    async fn until_firing(&mut self, prom: &Prometheus, key: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            for a in prom.alerts().await {
                let state = a["state"].as_str().unwrap_or("?").to_owned();
                self.0.entry(alert_key(&a)).or_default().insert(state);
            }
            if self.0.get(key).is_some_and(|s| s.contains("firing")) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{key} not firing after {timeout:?}; seen: {:#?}",
                self.0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Adds what Prometheus recorded itself since `since`: each evaluation of an active alert
    /// writes an `ALERTS{alertname, alertstate, ...}` sample, so a pending phase shorter than
    /// a poll is not missed.
    async fn add_history(&mut self, prom: &Prometheus, since: Instant) {
        let window = since.elapsed().as_secs() + 1;
        let expr = format!("count_over_time(ALERTS[{window}s])");
        for s in prom.query(&expr).await {
            let state = s["metric"]["alertstate"].as_str().unwrap_or("?").to_owned();
            let key = alert_key(&json!({ "labels": s["metric"] }));
            self.0.entry(key).or_default().insert(state);
        }
    }

    fn states(&self, key: &str) -> Vec<&str> {
        self.0
            .get(key)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The rules, as the chart renders them
// ---------------------------------------------------------------------------------------------

/// The chart's PrometheusRule rendered by Helm with every `for:` shortened to [`FOR`] through
/// `metrics.prometheusRules.overrides`; written to `dir` as a rule file. Returns its path and
/// its rules by alert name, after checking that they are the shipped rules but for `for:`.
fn render_rules(dir: &Path) -> (PathBuf, BTreeMap<String, Value>) {
    let shipped: Value = {
        let path = format!("{CHART}/files/prometheusrules.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let shipped = rules_by_alert(&shipped);
    let mut overrides = serde_json::Map::new();
    for (name, rule) in &shipped {
        if rule.get("for").is_some() {
            overrides.insert(name.clone(), json!({ "for": FOR }));
        }
    }
    let values =
        json!({ "metrics": { "prometheusRules": { "enabled": true, "overrides": overrides } } });
    let values_path = dir.join("values.json");
    std::fs::write(&values_path, values.to_string()).expect("write the values");

    let root = env!("CARGO_MANIFEST_DIR");
    let setup = Command::new("scripts/setup-helm.sh")
        .current_dir(root)
        .output();
    let setup = setup.expect("run scripts/setup-helm.sh");
    assert!(
        setup.status.success(),
        "scripts/setup-helm.sh could not provide helm: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let helm = Path::new(root).join(String::from_utf8_lossy(&setup.stdout).trim());
    let out = Command::new(&helm)
        .args(["template", "share-hygiene", CHART, "-f"])
        .arg(&values_path)
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = rendered
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|d| d["kind"] == "PrometheusRule")
        .collect();
    assert_eq!(docs.len(), 1, "PrometheusRules in the render:\n{rendered}");
    let spec = &docs[0]["spec"];
    let rules = rules_by_alert(spec);
    assert_eq!(
        rules.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>(),
        "the render has other alerts than the rules file"
    );
    for (name, rule) in &rules {
        let mut unshortened = rule.clone();
        if let Some(f) = shipped[name].get("for") {
            assert_eq!(
                rule["for"], FOR,
                "{name}: the override of for: was not applied"
            );
            unshortened["for"] = f.clone();
        }
        assert_eq!(&unshortened, &shipped[name], "{name}: rendered differently");
    }
    let path = dir.join("rules.json");
    std::fs::write(&path, spec.to_string()).expect("write the rule file");
    (path, rules)
}

fn rules_by_alert(groups: &Value) -> BTreeMap<String, Value> {
    let groups = groups["groups"].as_array().expect("groups");
    let rules = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"));
    rules
        .map(|r| (r["alert"].as_str().expect("an alert").to_owned(), r.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

/// A HandlePolicy with the stale rule (24h) over `shares` (endpoint, share), every 30 s.
fn policy(namespace: &str, name: &str, mode: &str, shares: &[(&str, &str)]) -> Value {
    let shares: Vec<Value> = shares
        .iter()
        .map(|(endpoint, share)| json!({ "endpoint": endpoint, "share": share, "credentialsSecretRef": { "name": SECRET } }))
        .collect();
    json!({
        "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "mode": mode, "interval": "30s", "shares": shares,
            "rules": { "stale": { "openLongerThan": "24h" } },
            "limits": { "maxClosesPerSweep": 1000, "safetyValvePercent": 90 }
        }
    })
}

/// A file service that answers every request with 503 ServerBusy, as a throttling Azure Files
/// does; on a loopback port until the test ends.
async fn busy_service() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>";
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nx-ms-error-code: ServerBusy\r\n\
                     content-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// A Lease another replica holds (renewed just now, for an hour).
fn lease_held_elsewhere() -> Value {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .expect("a timestamp rounds")
        .to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "share-hygiene", "namespace": LEASE_NS },
        "spec": { "holderIdentity": "share-hygiene-elsewhere", "leaseDurationSeconds": 3600,
                  "acquireTime": now, "renewTime": now, "leaseTransitions": 0 }
    })
}

/// Waits until the instant query `expr` returns at least `n` series.
async fn until_series(prom: &Prometheus, expr: &str, n: usize, timeout: Duration) -> Vec<Value> {
    eventually(timeout, &format!("{n} series of {expr}"), || async {
        let result = prom.query(expr).await;
        (result.len() >= n).then_some(result)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The dashboard, as Grafana queries it
// ---------------------------------------------------------------------------------------------

/// The values Grafana gives its built-in and dashboard variables: `$__interval` is the
/// datasource's scrape interval (the floor Grafana applies at a short range),
/// `$__rate_interval` is max(`$__interval` + scrape interval, 4 × scrape interval),
/// `$__range` the dashboard's time range, and a multi-value variable becomes a regex
/// alternation (`(a|b)`), All its `allValue` (`.*`).
fn fill(expr: &str, range: Duration, namespace: &str, policy: &str) -> String {
    let interval = SCRAPE_SECS;
    let rate_interval = (interval + SCRAPE_SECS).max(4 * SCRAPE_SECS);
    let filled = expr
        .replace("$__rate_interval", &format!("{rate_interval}s"))
        .replace("$__interval", &format!("{interval}s"))
        .replace("$__range", &format!("{}s", range.as_secs()))
        .replace("$job", JOB)
        .replace("$namespace", namespace)
        .replace("$policy", policy);
    assert!(!filled.contains('$'), "a variable is left in {filled}");
    filled
}

/// One row of the per-panel table.
struct PanelResult {
    panel: String,
    target: String,
    /// Series of the instant query with All selected, and their values.
    all: usize,
    all_values: String,
    /// The largest value of the range query over the run (as a time series panel draws it).
    run_max: Option<f64>,
    /// Series with namespace `storage` and two policies selected.
    selected: usize,
}

/// A short view of a result's values: the number of series, min..max of the finite ones.
fn value_span(result: &[Value]) -> String {
    let values: Vec<f64> = result
        .iter()
        .filter_map(|s| s["value"][1].as_str()?.parse().ok())
        .collect();
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v: &f64| v.is_finite())
        .collect();
    match (finite.first(), values.len()) {
        (_, 0) => "-".into(),
        (None, _) => "NaN".into(),
        (Some(_), _) => {
            let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if min == max {
                format!("{}", round(min))
            } else {
                format!("{}..{}", round(min), round(max))
            }
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Runs every panel target of the dashboard: once with All selected (every target must return
/// series), once with namespace `storage` and policies `enforce` and `dry-run` selected (every
/// series with a policy label must be one of them). Prints the per-panel table.
async fn check_dashboard(prom: &Prometheus, range: Duration) -> Vec<PanelResult> {
    let dash = dashboard();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let selected_policies = ["enforce", "dry-run"];
    for t in targets(&dash) {
        let all_expr = fill(&t.expr, range, ".*", ".*");
        let all = prom.query(&all_expr).await;
        let step = Duration::from_secs(SCRAPE_SECS);
        let over_run = prom.query_range(&all_expr, range, step).await;
        let run_max = over_run
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v[1].as_str()?.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .reduce(f64::max);
        let picked = format!("({})", selected_policies.join("|"));
        let selected = prom.query(&fill(&t.expr, range, TROUBLE, &picked)).await;
        let place = format!("panel {} {:?} target {}", t.panel_id, t.title, t.ref_id);
        if all.is_empty() {
            problems.push(format!(
                "{place}: no series with All selected\n    {}",
                t.expr
            ));
        }
        if run_max.is_none_or(|m| m <= 0.0) {
            problems.push(format!(
                "{place}: nothing above 0 over the run\n    {}",
                t.expr
            ));
        }
        for s in &selected {
            let p = s["metric"]["policy"].as_str();
            if p.is_some_and(|p| !selected_policies.contains(&p)) {
                problems.push(format!("{place}: policy {p:?} is not selected: {s}"));
            }
        }
        rows.push(PanelResult {
            panel: format!("{} {}", t.panel_id, t.title),
            target: t.ref_id.clone(),
            all: all.len(),
            all_values: value_span(&all),
            run_max,
            selected: selected.len(),
        });
    }
    // The variables' own queries: label_values(SELECTOR, LABEL), as Grafana's Prometheus
    // datasource runs them (/api/v1/label/LABEL/values?match[]=SELECTOR).
    for (name, query) in variable_queries(&dash) {
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let selector = fill(selector, range, ".*", ".*");
        let path = format!(
            "label/{}/values?match[]={}",
            label.trim(),
            encode(&selector)
        );
        let values = prom.api(&path).await;
        let values: Vec<&str> = values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let want: &[&str] = match name.as_str() {
            "namespace" => &[CLEAN, TROUBLE],
            _ => &[
                "broken",
                "clean-dry-run",
                "clean-enforce",
                "doomed",
                "dry-run",
                "enforce",
                "valve",
            ],
        };
        if values != want {
            problems.push(format!("variable {name}: {values:?}, expected {want:?}"));
        }
    }
    let width = rows.iter().map(|r| r.panel.len()).max().unwrap_or(10);
    println!(
        "\n{:width$}  target  series  values now          max over run  series (storage; enforce|dry-run)",
        "panel (All selected)"
    );
    for r in &rows {
        let max = r.run_max.map_or("-".into(), |m| round(m).to_string());
        println!(
            "{:width$}  {:6}  {:>6}  {:<18}  {:>12}  {:>6}",
            r.panel, r.target, r.all, r.all_values, max, r.selected
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    rows
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(60);

/// What the phases share. Dropping it stops Prometheus, the fake API and the handle services.
struct Run {
    began: Instant,
    rules: BTreeMap<String, Value>,
    svc: HandleService,
    /// The memory store's endpoint, and the one of the service that answers only 503.
    ep: String,
    busy: String,
    api: FakeApi,
    kubeconfig: PathBuf,
    /// The controller's address (fixed, so that a restarted controller is scraped too).
    listen: String,
    prom: Prometheus,
}

/// The file services, the fake cluster with the clean policies, the controller, and
/// Prometheus scraping both.
async fn start() -> (Run, Controller) {
    let began = Instant::now();
    let dir = scratch_dir("prometheus-live");
    let (rules_path, rules) = render_rules(&dir);
    let shares = [
        "home", "team", "projects", "media", "archive", "scratch", "tmp",
    ];
    let svc = HandleService::start(&shares).await;
    let busy = format!("http://{}/acct", busy_service().await);
    let ep = svc.endpoint();
    svc.open("home", "data/new.bin", "10.0.0.2", a_minute(), 4);
    svc.open("team", "logs/old.log", "10.0.0.1", two_days(), 2);
    svc.open("team", "data/new.bin", "10.0.0.2", a_minute(), 6);
    let api = FakeApi::start_with(Duration::from_millis(500)).await;
    for ns in [CLEAN, TROUBLE] {
        api.create(svc.secret(ns, SECRET));
    }
    api.create(policy(CLEAN, "clean-enforce", "Enforce", &[(&ep, "home")]));
    api.create(policy(CLEAN, "clean-dry-run", "DryRun", &[(&ep, "team")]));
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let listen = free_port().to_string();
    let args = ["--listen", listen.as_str(), "--no-leader-election"];
    let mut ctl = Controller::spawn(&kubeconfig, &args, &[]);
    let ctl_addr = ctl.addr().await;
    let mut prom = Prometheus::start(&dir, &rules_path, ctl_addr, svc.running.addr);
    prom.ready().await;
    let run = Run {
        began,
        rules,
        svc,
        ep,
        busy,
        api,
        kubeconfig,
        listen,
        prom,
    };
    (run, ctl)
}

/// Phase 1: the clean policies raise nothing, and every rule evaluates without error.
async fn clean(run: &Run) {
    let swept =
        r#"share_hygiene_sweeps_total{job="share-hygiene", namespace="clean", result="Success"}"#;
    until_series(&run.prom, swept, 2, WAIT).await;
    // A second sweep of the Enforce policy, which closes what went stale since: its counters
    // grow in Prometheus (they exist at 0 since the first sweep).
    run.svc
        .open("home", "logs/old.log", "10.0.0.1", two_days(), 3);
    run.api.patch(
        "handlepolicies",
        Some(CLEAN),
        "clean-enforce",
        false,
        json!({ "spec": { "interval": "31s" } }),
    );
    until_series(&run.prom, &format!("{swept} == 2"), 1, WAIT).await;
    let quiet_until = Instant::now() + Duration::from_secs(2 * SCRAPE_SECS + 4);
    while Instant::now() < quiet_until {
        let alerts: Vec<String> = run.prom.alerts().await.iter().map(alert_key).collect();
        assert!(
            alerts.is_empty(),
            "alerts in the clean scenario: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let groups = run.prom.api("rules").await;
    let mut evaluated = Vec::new();
    for g in groups["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            assert_eq!(
                r["health"], "ok",
                "rule {} evaluates with an error: {r}",
                r["name"]
            );
            assert_eq!(
                r["state"], "inactive",
                "rule {} in the clean scenario: {r}",
                r["name"]
            );
            evaluated.push(r["name"].as_str().unwrap_or("?").to_owned());
        }
    }
    assert_eq!(
        evaluated.iter().collect::<BTreeSet<_>>(),
        run.rules.keys().collect::<BTreeSet<_>>()
    );
    println!(
        "clean: {} rules loaded, all healthy and inactive ({:?} in)",
        evaluated.len(),
        run.began.elapsed()
    );
}

/// Phase 2: trouble; each alert goes pending (if it has a `for:`), then fires. Returns what
/// was seen.
async fn trouble(run: &Run) -> AlertLog {
    // `enforce` closes stale handles but two refuse to close, and one file holds 1,700
    // handles; `dry-run` would close; `broken` has a missing share and a throttled one;
    // `valve` is healthy at first; `doomed` is healthy until phase 4.
    let trouble = Instant::now();
    run.svc
        .open("projects", "logs/old.log", "10.0.0.1", two_days(), 5);
    run.svc
        .open_unclosable("projects", "logs/locked.log", "10.0.0.1", two_days(), 2);
    run.svc
        .open("projects", "db/index.db", "10.0.0.3", a_minute(), 1700);
    run.svc
        .open("media", "old/clip.mov", "10.0.0.1", two_days(), 4);
    run.svc
        .open("media", "new/clip.mov", "10.0.0.2", a_minute(), 4);
    run.svc
        .open("archive", "2025/tape.img", "10.0.0.2", a_minute(), 1);
    run.svc.open("scratch", "a.tmp", "10.0.0.2", a_minute(), 2);
    run.svc.open("tmp", "b.tmp", "10.0.0.2", a_minute(), 2);
    run.api.create(policy(
        TROUBLE,
        "enforce",
        "Enforce",
        &[(&run.ep, "projects")],
    ));
    run.api
        .create(policy(TROUBLE, "dry-run", "DryRun", &[(&run.ep, "media")]));
    run.api.create(policy(
        TROUBLE,
        "broken",
        "Enforce",
        &[(&run.ep, "gone"), (&run.busy, "busy")],
    ));
    run.api
        .create(policy(TROUBLE, "valve", "Enforce", &[(&run.ep, "archive")]));
    run.api.create(policy(
        TROUBLE,
        "doomed",
        "Enforce",
        &[(&run.ep, "scratch"), (&run.ep, "tmp")],
    ));
    let swept = r#"share_hygiene_sweeps_total{job="share-hygiene", namespace="storage"}"#;
    until_series(&run.prom, swept, 5, WAIT).await;
    // A second sweep of `enforce`: its unclosable handles fail again, so the failure counter
    // grows in Prometheus (`broken` sweeps again after its 5 s backoff). Meanwhile 20 handles
    // on `valve`'s share went stale: 95% would close, above its 90% valve, so its second sweep
    // trips it (a first sweep that trips would leave the trips counter born at 1, which
    // increase() does not count).
    run.svc
        .open("archive", "2019/tape.img", "10.0.0.1", two_days(), 20);
    for name in ["enforce", "valve"] {
        let slower = json!({ "spec": { "interval": "31s" } });
        run.api
            .patch("handlepolicies", Some(TROUBLE), name, false, slower);
    }
    let mut log = AlertLog::default();
    let expected = [
        "ShareHygieneSafetyValveTripped{namespace=storage,policy=valve}",
        "ShareHygieneCloseFailures{namespace=storage,policy=enforce,share=projects,reason=Stale}",
        "ShareHygieneHandleLimitNear{namespace=storage,policy=enforce,share=projects}",
        "ShareHygieneSweepErrors{namespace=storage,policy=broken}",
        "ShareHygieneReconcileErrors{namespace=storage,policy=broken,category=ShareNotFound}",
        "ShareHygieneReconcileErrors{namespace=storage,policy=broken,category=Throttled}",
        "ShareHygieneBackendThrottled{operation=list_handles}",
    ];
    for key in expected {
        log.until_firing(&run.prom, key, WAIT).await;
    }
    log.add_history(&run.prom, trouble).await;
    for key in expected {
        let want: &[&str] = match run.rules[key.split('{').next().unwrap()].get("for") {
            Some(_) => &["firing", "pending"],
            None => &["firing"],
        };
        assert_eq!(log.states(key), want, "{key}: states seen");
    }
    let clean: Vec<&String> = log
        .0
        .keys()
        .filter(|k| k.contains("namespace=clean"))
        .collect();
    assert!(clean.is_empty(), "alerts for the clean policies: {clean:?}");
    println!(
        "trouble: alerts seen {:#?} ({:?} in)",
        log.0,
        run.began.elapsed()
    );
    log
}

/// Phase 4: a removed share and a deleted policy leave Prometheus.
async fn deletion(run: &Run) {
    // Phase 4: a share leaves `doomed`, then `doomed` is deleted. Its series leave Prometheus,
    // and ShareHygieneSweepStale's expression, even with its threshold at 0 instead of
    // 3 intervals, finds nothing for it (it found `doomed` while it existed).
    let of = |labels: &str| {
        format!(r#"{{__name__=~"share_hygiene_.+", job="share-hygiene", {labels}}}"#)
    };
    until_series(&run.prom, &of(r#"policy="doomed", share="tmp""#), 1, WAIT).await;
    let only_scratch = json!([{ "endpoint": run.ep, "share": "scratch", "credentialsSecretRef": { "name": SECRET } }]);
    run.api.patch(
        "handlepolicies",
        Some(TROUBLE),
        "doomed",
        false,
        json!({ "spec": { "shares": only_scratch } }),
    );
    until_series(
        &run.prom,
        &format!("absent({})", of(r#"policy="doomed", share="tmp""#)),
        1,
        WAIT,
    )
    .await;
    assert!(
        !run.prom
            .query(&of(r#"policy="doomed", share="scratch""#))
            .await
            .is_empty()
    );
    let stale_expr = run.rules["ShareHygieneSweepStale"]["expr"]
        .as_str()
        .expect("expr");
    let at_once = stale_expr.replace("> 3 *", "> 0 *");
    assert_ne!(
        at_once, stale_expr,
        "the SweepStale threshold is no longer `> 3 * interval`"
    );
    let stale_for = |result: Vec<Value>| result.iter().any(|s| s["metric"]["policy"] == "doomed");
    assert!(
        stale_for(run.prom.query(&at_once).await),
        "the stale expression never saw doomed"
    );
    assert!(run.api.delete("handlepolicies", Some(TROUBLE), "doomed"));
    until_series(
        &run.prom,
        &format!("absent({})", of(r#"policy="doomed""#)),
        1,
        WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2 * SCRAPE_SECS)).await;
    assert!(
        !stale_for(run.prom.query(&at_once).await),
        "SweepStale's expression still finds doomed"
    );
    let doomed: Vec<String> = run
        .prom
        .alerts()
        .await
        .iter()
        .map(alert_key)
        .filter(|k| k.contains("doomed"))
        .collect();
    assert!(doomed.is_empty(), "{doomed:?}");
    assert!(
        !run.prom.query(&of(r#"policy="enforce""#)).await.is_empty(),
        "other policies' series went too"
    );
    println!(
        "deletion: doomed's series gone ({:?} in)",
        run.began.elapsed()
    );
}

/// Phase 5: the controller dies, then a replica comes back without the Lease. Returns what
/// was seen.
async fn outage(run: &Run, mut ctl: Controller) -> AlertLog {
    // Phase 5: the controller dies, then comes back without the Lease. (A new log: Prometheus
    // itself raised ShareHygieneControllerDown for a moment when it started, as it applies
    // new scrape targets only after up to 5 s, longer than the shortened `for:`.)
    let mut outage = AlertLog::default();
    let killed = Instant::now();
    ctl.kill();
    outage
        .until_firing(&run.prom, "ShareHygieneControllerDown{}", WAIT)
        .await;
    run.api.create(lease_held_elsewhere());
    let env = [
        ("POD_NAME", "share-hygiene-7d9f8c6b5-abcde"),
        ("POD_NAMESPACE", LEASE_NS),
    ];
    let args = ["--listen", run.listen.as_str(), "--lease-duration", "15"];
    let follower = Controller::spawn(&run.kubeconfig, &args, &env);
    outage
        .until_firing(&run.prom, "ShareHygieneNoLeader{}", WAIT)
        .await;
    outage.add_history(&run.prom, killed).await;
    for key in ["ShareHygieneControllerDown{}", "ShareHygieneNoLeader{}"] {
        assert_eq!(
            outage.states(key),
            ["firing", "pending"],
            "{key}: states seen"
        );
    }
    let down = run
        .prom
        .alerts()
        .await
        .iter()
        .any(|a| a["labels"]["alertname"] == "ShareHygieneControllerDown");
    assert!(
        !down,
        "ShareHygieneControllerDown still active with a controller up"
    );
    drop(follower);
    outage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_on_a_live_prometheus() {
    let (run, ctl) = start().await;
    clean(&run).await;
    let log = trouble(&run).await;
    // Phase 3: every panel of the dashboard.
    let rows = check_dashboard(&run.prom, run.began.elapsed() + Duration::from_secs(1)).await;
    println!(
        "dashboard: {} targets, all with series ({:?} in)",
        rows.len(),
        run.began.elapsed()
    );
    deletion(&run).await;
    let outage = outage(&run, ctl).await;

    let seen = log.0.keys().chain(outage.0.keys());
    let fired: BTreeSet<&str> = seen.map(|k| k.split('{').next().unwrap()).collect();
    let silent: Vec<&String> = run
        .rules
        .keys()
        .filter(|a| !fired.contains(a.as_str()))
        .collect();
    println!(
        "alerts seen firing: {fired:?}; not fired: {silent:?}; wall time {:?}",
        run.began.elapsed()
    );
}
