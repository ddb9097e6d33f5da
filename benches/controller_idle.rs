//! What the controller costs while idle: RSS and CPU of a `share-hygiene controller` process
//! (this build's binary, release profile under `cargo bench`) after it has swept every
//! policy once, against the fake Kubernetes API of the tests (`tests/common_fake_api`) and
//! one in-process handle service.
//!
//! ```text
//! scripts/bench-controller.sh                       # the scenarios below, 30 s idle windows
//! cargo bench --bench controller_idle -- --idle 60 --scenario 100:1000:20000
//! ```
//!
//! A scenario `P:N:Q` has P policies (spread over 10 namespaces, each with one share of its
//! own on the handle service: 2 stale and 8 fresh handles, interval 5m, stale rule 24h), N
//! Nodes and Q Pods (shaped like a cloud provider's: labels, annotations, container specs,
//! statuses; `--minimal-objects` keeps only names and addresses). The bench
//! 1. starts the controller and waits until every policy's status shows its first sweep (2
//!    closes) and the Node and Pod reflectors have listed;
//! 2. runs one sweep round with the facts known, as each interval brings: a spec change makes
//!    every policy due at once (2 new stale handles each);
//! 3. after `--settle` seconds, reads `/proc/PID/status` (VmRSS, RssAnon, VmHWM, Threads) and
//!    `/proc/PID/stat` (utime + stime) around an idle window of `--idle` seconds, and counts
//!    the requests the controller made to the API and to the handle service in that window.
//!
//! The fake API sends a BOOKMARK on every watch each 5 s (a real API server about once a
//! minute), so the idle CPU is if anything pessimistic. `--env KEY=VALUE` passes environment
//! to the controller (allocator experiments: `MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_`).
//!
//! Not a test: it prints a Markdown table for docs/benchmarks.md.

#[path = "../tests/common_fake_api/mod.rs"]
mod common_fake_api;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common_fake_api::api::FakeApi;
use common_fake_api::process::{
    Controller, HandleService, http_get, node, pod, scratch_dir, stale_policy,
};
use jiff::SignedDuration;

const NAMESPACES: usize = 10;
const SECRET: &str = "acct-key";

struct Args {
    scenarios: Vec<(usize, usize, usize)>,
    idle: u64,
    settle: u64,
    interval: String,
    bin: PathBuf,
    minimal_objects: bool,
    env: Vec<(String, String)>,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "controller_idle bench: {why}\nflags: --scenario POLICIES:NODES:PODS (repeatable) \
         --idle SECONDS --settle SECONDS --interval 5m --bin PATH --minimal-objects \
         --env KEY=VALUE (repeatable, for the controller)"
    );
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("{s:?} is not a number")))
}

impl Args {
    fn parse() -> Self {
        let mut a = Args {
            scenarios: Vec::new(),
            idle: 30,
            settle: 5,
            interval: "5m".into(),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_share-hygiene")),
            minimal_objects: false,
            env: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--bench" => {} // cargo bench passes it
                "--scenario" => {
                    let v = value();
                    let parts: Vec<usize> = v.split(':').map(num).collect();
                    let [p, n, q] = parts[..] else {
                        usage(&format!("bad scenario {v}"))
                    };
                    a.scenarios.push((p, n, q));
                }
                "--idle" => a.idle = num(&value()),
                "--settle" => a.settle = num(&value()),
                "--interval" => a.interval = value(),
                "--bin" => a.bin = value().into(),
                "--minimal-objects" => a.minimal_objects = true,
                "--env" => {
                    let v = value();
                    let (k, val) = v
                        .split_once('=')
                        .unwrap_or_else(|| usage("--env KEY=VALUE"));
                    a.env.push((k.to_owned(), val.to_owned()));
                }
                other => usage(&format!("unknown flag {other}")),
            }
        }
        if a.scenarios.is_empty() {
            a.scenarios = vec![(100, 3, 5), (100, 1000, 20_000), (0, 1000, 20_000)];
        }
        a
    }
}

/// Fields of `/proc/PID/status`, in kB (Threads as a count).
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")));
    let value = line.and_then(|l| l.split_whitespace().nth(1));
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// utime + stime of `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its closing parenthesis.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12) // utime, stime: fields 14 and 15 of the line
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    text.ok().and_then(|t| t.parse().ok()).unwrap_or(100.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// Requests the handle service answered, from its own metrics.
fn service_requests(svc: &HandleService) -> f64 {
    let text = share_hygiene::metrics::render(&svc.server.metrics().registry);
    let lines = text
        .lines()
        .filter(|l| l.starts_with("share_hygiene_service_requests_total{"));
    lines
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Row {
    scenario: String,
    first_sweeps: Duration,
    round: Duration,
    rss_first: u64,
    rss_idle_start: u64,
    rss_idle_end: u64,
    rss_anon: u64,
    hwm: u64,
    threads: u64,
    cpu_percent: f64,
    cpu_seconds_startup: f64,
    api_requests_idle: usize,
    service_requests_idle: f64,
    status_applies_idle: usize,
}

/// A Node or Pod with only what the facts use (for `--minimal-objects`).
fn minimal(object: serde_json::Value) -> serde_json::Value {
    let meta = &object["metadata"];
    let status = &object["status"];
    serde_json::json!({
        "apiVersion": "v1", "kind": object["kind"],
        "metadata": { "name": meta["name"], "namespace": meta["namespace"] },
        "status": { "addresses": status["addresses"], "podIPs": status["podIPs"], "hostIP": status["hostIP"] }
    })
}

fn all_swept(api: &FakeApi, generation: i64) -> usize {
    let done = |p: &serde_json::Value| {
        let status = &p["status"];
        status["lastSweep"]["closed"] == 2 && status["observedGeneration"] == generation
    };
    api.list("handlepolicies")
        .iter()
        .filter(|p| done(p))
        .count()
}

async fn wait_swept(api: &FakeApi, policies: usize, generation: i64) -> Duration {
    let started = Instant::now();
    loop {
        let done = all_swept(api, generation);
        if done == policies {
            return started.elapsed();
        }
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(300),
            "{done}/{policies} swept after {waited:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(a: &Args, (policies, nodes, pods): (usize, usize, usize)) -> Row {
    let scenario = format!("{policies} policies, {nodes} nodes, {pods} pods");
    eprintln!("== {scenario}");
    let shares: Vec<String> = (0..policies).map(|i| format!("share-{i:03}")).collect();
    let share_refs: Vec<&str> = shares.iter().map(String::as_str).collect();
    let svc = HandleService::start(&share_refs).await;
    let (old, fresh) = (SignedDuration::from_hours(48), SignedDuration::from_mins(1));
    for share in &shares {
        svc.open(share, "logs/old.log", "10.0.0.1", old, 2);
        svc.open(share, "data/new.bin", "10.244.0.2", fresh, 8);
    }
    let api = FakeApi::start().await;
    for n in 0..NAMESPACES {
        api.create(svc.secret(&format!("bench-{n}"), SECRET));
    }
    let endpoint = svc.endpoint();
    let name = |i: usize| {
        (
            format!("bench-{}", i % NAMESPACES),
            format!("policy-{i:03}"),
        )
    };
    for (i, share) in shares.iter().enumerate() {
        let (ns, name) = name(i);
        api.create(stale_policy(
            &ns,
            &name,
            &endpoint,
            share,
            SECRET,
            &a.interval,
        ));
    }
    let shape = |o| if a.minimal_objects { minimal(o) } else { o };
    for i in 0..nodes {
        api.create(shape(node(i)));
    }
    for i in 0..pods {
        api.create(shape(pod(i, nodes)));
    }
    let kubeconfig = scratch_dir("bench-controller").join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);

    // Start; every policy swept once, and the Node and Pod reflectors listed.
    let started = Instant::now();
    let args = ["--listen", "127.0.0.1:0", "--no-leader-election"];
    let env: Vec<(&str, &str)> = a
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut ctl = Controller::spawn_bin(&a.bin, &kubeconfig, &args, &env);
    let pid = ctl.child.id();
    let addr = ctl.addr().await;
    wait_swept(&api, policies, 1).await;
    let watching = |p: &str| api.count(|r| r.path == p && r.query.contains("watch=true")) > 0;
    while !(watching("/api/v1/nodes") && watching("/api/v1/pods")) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_sweeps = started.elapsed();
    let tck = clock_ticks_per_second();
    let cpu_seconds_startup = cpu_ticks(pid) as f64 / tck;
    let rss_first = proc_status(pid, "VmRSS");

    // A sweep round with the facts known, as every interval brings: a spec change makes every
    // policy due at once (2 new stale handles each, so the round closes again).
    for share in &shares {
        svc.open(share, "logs/older.log", "10.0.0.1", old, 2);
    }
    for i in 0..policies {
        let (ns, name) = name(i);
        let patch = serde_json::json!({ "spec": { "interval": "6m" } });
        api.patch("handlepolicies", Some(&ns), &name, false, patch);
    }
    let round = wait_swept(&api, policies, 2).await;
    let is_degraded = |p: &serde_json::Value| {
        let conditions = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "Degraded" && c["status"] == "True")
    };
    let degraded = api
        .list("handlepolicies")
        .into_iter()
        .filter(is_degraded)
        .count();
    assert_eq!(degraded, 0, "a degraded policy would be re-swept in a loop");
    tokio::time::sleep(Duration::from_secs(a.settle)).await;

    // The idle window.
    let rss_idle_start = proc_status(pid, "VmRSS");
    let (cpu0, api0, svc0) = (cpu_ticks(pid), api.requests().len(), service_requests(&svc));
    let applies0 = api.count(|r| r.path.ends_with("/status"));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.idle)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_percent = (cpu_ticks(pid) - cpu0) as f64 / tck / elapsed * 100.0;
    let row = Row {
        scenario,
        first_sweeps,
        round,
        rss_first,
        rss_idle_start,
        rss_idle_end: proc_status(pid, "VmRSS"),
        rss_anon: proc_status(pid, "RssAnon"),
        hwm: proc_status(pid, "VmHWM"),
        threads: proc_status(pid, "Threads"),
        cpu_percent,
        cpu_seconds_startup,
        api_requests_idle: api.requests().len() - api0,
        service_requests_idle: service_requests(&svc) - svc0,
        status_applies_idle: api.count(|r| r.path.ends_with("/status")) - applies0,
    };
    let (_, metrics) = http_get(addr, "/metrics").await;
    eprintln!(
        "   /metrics: {} lines, {} bytes",
        metrics.lines().count(),
        metrics.len()
    );
    ctl.kill();
    svc.running.shutdown().await;
    row
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Args::parse();
    eprintln!("binary: {}", a.bin.display());
    let mut rows = Vec::new();
    for s in a.scenarios.clone() {
        let r = run(&a, s).await;
        let (first, idle, end) = (mib(r.rss_first), mib(r.rss_idle_start), mib(r.rss_idle_end));
        eprintln!(
            "   RSS {first} after the first sweeps, {idle} -> {end} idle; HWM {}",
            mib(r.hwm)
        );
        rows.push(r);
    }
    let env: Vec<String> = a.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let objects = if a.minimal_objects { "minimal" } else { "full" };
    println!(
        "\nidle {} s, {objects} Node/Pod objects, env [{}]\n",
        a.idle,
        env.join(" ")
    );
    println!(
        "| scenario | first sweeps + facts listed | CPU until then | sweep round with facts | \
         VmRSS after first sweeps | VmRSS idle (start → end) | RssAnon | VmHWM | threads | \
         CPU idle | API / service requests idle | status writes idle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.2} s | {:.2} s | {} | {} → {} | {} | {} | {} | {:.2} % | {} / {} | {} |",
            r.scenario,
            r.first_sweeps.as_secs_f64(),
            r.cpu_seconds_startup,
            r.round.as_secs_f64(),
            mib(r.rss_first),
            mib(r.rss_idle_start),
            mib(r.rss_idle_end),
            mib(r.rss_anon),
            mib(r.hwm),
            r.threads,
            r.cpu_percent,
            r.api_requests_idle,
            r.service_requests_idle,
            r.status_applies_idle
        );
    }
}
