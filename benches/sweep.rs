//! Benchmarks of the policy engine and of one sweep (run with `cargo bench --bench sweep`;
//! figures are recorded in docs/benchmarks.md).
//!
//! 1. classify + plan over 1,000,000 handles, on one core: handles/s and CPU time, and the
//!    process's peak memory.
//! 2. an enforce sweep of 100,000 handles on the embedded handle service, end to end over HTTP
//!    on loopback: wall time, with the default cap (1,000 closes) and with a rename guard that
//!    condemns a 40,000-handle subtree closed by one wildcard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use share_hygiene::api::{HandlePolicySpec, Mode};
use share_hygiene::auth::{AccountKey, Credential};
use share_hygiene::handles::HandleService;
use share_hygiene::handles::client::{ClientOptions, Endpoint, HandleClient};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::policy::{
    ClusterFacts, Condemned, Facts, OrphanLedger, Verdict, classify, compile, plan,
};
use share_hygiene::protocol::{AccessRights, Handle, HandleId};
use share_hygiene::server::{HandleServer, ServerConfig};
use share_hygiene::sweep::{SweepInput, SweepOptions, never_stop, sweep};

const NOW: i64 = 1_790_000_000;

fn spec(yaml: &str) -> HandlePolicySpec {
    serde_saphyr::from_str(yaml).expect("bench spec parses")
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// 1,000,000 handles over 10,000 files in 100 directories, from 200 clients; a third are old,
/// a tenth come from clients unknown to the cluster, some are under a guarded directory.
fn handles(n: u64) -> Vec<Handle> {
    (0..n)
        .map(|i| {
            let dir = i % 100;
            let file = i % 10_000;
            let client = i % 200;
            let age = if i % 3 == 0 { 3 * 86_400 } else { 600 };
            Handle {
                handle_id: HandleId(i + 1),
                path: format!("dir{dir:03}/file{file:05}.dat"),
                file_id: 1_000_000 + file,
                parent_id: 1000 + dir,
                session_id: client,
                client_ip: format!(
                    "10.{}.{}.{}:445",
                    240 + client % 10,
                    client / 10,
                    client % 250
                ),
                client_name: Some(format!("node-{client:03}")),
                open_time: Timestamp::from_second(NOW - age).unwrap(),
                last_reconnect_time: None,
                access_rights: Some(if i % 2 == 0 {
                    AccessRights::READ
                } else {
                    AccessRights::READ.union(AccessRights::WRITE)
                }),
            }
        })
        .collect()
}

fn bench_classify_plan() {
    let n = 1_000_000;
    let hs = handles(n);
    let policy = compile(&spec(
        r#"
mode: Enforce
shares: [{ endpoint: "http://127.0.0.1:1/acct", share: bench, credentialsSecretRef: { name: s } }]
match: { exclude: ["dir099/**"] }
rules:
  stale: { openLongerThan: 24h }
  orphaned: { gracePeriod: 0s }
  renameGuard: { paths: [dir007] }
protect: { clientCIDRs: [10.249.0.0/16], clientNames: ["node-19*"] }
limits: { maxClosesPerSweep: 1000000, safetyValvePercent: 100 }
"#,
    ))
    .expect("bench policy compiles");
    // 90% of the clients are known to the cluster.
    let known: Vec<std::net::IpAddr> = hs
        .iter()
        .filter(|h| h.session_id % 10 != 0)
        .filter_map(Handle::client_addr)
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    let cluster = ClusterFacts::new(known, Vec::<String>::new());
    let ledger = OrphanLedger::default();
    let facts = Facts {
        cluster: Some(&cluster),
        orphans: &ledger,
    };
    let now = Timestamp::from_second(NOW).unwrap();

    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut condemned = Vec::new();
    for h in &hs {
        if let Verdict::Close(reason) = classify(h, &policy.rules, &facts, now) {
            condemned.push(Condemned {
                share: 0,
                id: h.handle_id,
                path: h.path.clone(),
                held_since: h.held_since(),
                reason,
            });
        }
    }
    let classify_wall = wall0.elapsed();
    let wall1 = Instant::now();
    let plan = plan(Mode::Enforce, n, &condemned, &[], policy.limits);
    let plan_wall = wall1.elapsed();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "classify+plan: {n} handles, {} condemned, {} planned closes",
        condemned.len(),
        plan.closes()
    );
    println!(
        "  classify {:.3}s wall = {:.0} handles/s; plan {:.3}s; CPU {:.2}s (one thread); peak RSS {:.0} MiB (includes the 1M input handles)",
        classify_wall.as_secs_f64(),
        n as f64 / classify_wall.as_secs_f64(),
        plan_wall.as_secs_f64(),
        cpu,
        peak_rss_mib()
    );
}

async fn sweep_once(total: u32, guarded: u32, yaml: &str, label: &str) {
    let store = Arc::new(MemoryStore::default());
    store.create_share("bench").unwrap();
    let spec_of = |age: i64, count: u32, client: &str| OpenSpec {
        client_ip: client.into(),
        client_name: Some("node".into()),
        session_id: None,
        open_time: Timestamp::from_second(Timestamp::now().as_second() - age).unwrap(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count,
        fail_close: false,
    };
    let rest = total - guarded;
    // 100 files of fresh handles, 10 files of stale ones, and the guarded subtree.
    for f in 0..100 {
        store
            .open(
                "bench",
                &format!("data/f{f}.bin"),
                &spec_of(60, rest * 9 / 10 / 100, "10.0.0.1:445"),
            )
            .unwrap();
    }
    for f in 0..10 {
        store
            .open(
                "bench",
                &format!("logs/f{f}.log"),
                &spec_of(3 * 86_400, rest / 10 / 10, "10.0.0.2:445"),
            )
            .unwrap();
    }
    if guarded > 0 {
        for f in 0..40 {
            store
                .open(
                    "bench",
                    &format!("release/v1/f{f}.bin"),
                    &spec_of(60, guarded / 40, "10.0.0.3:445"),
                )
                .unwrap();
        }
    }
    let seen = store.stats().handles;
    let key = AccountKey::random();
    let server = Arc::new(HandleServer::memory(
        ServerConfig::new("acct", key.clone()),
        store.clone(),
    ));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let endpoint = Endpoint::parse(&format!("http://{}/acct", running.addr)).unwrap();
    let client: Arc<dyn HandleService> = Arc::new(
        HandleClient::new(
            endpoint,
            Credential::SharedKey {
                account: "acct".into(),
                key,
            },
            ClientOptions::default(),
        )
        .unwrap(),
    );
    let policy = compile(&spec(
        &yaml.replace("ENDPOINT", &format!("http://{}/acct", running.addr)),
    ))
    .unwrap();
    let started = Instant::now();
    let report = sweep(
        SweepInput {
            policy: &policy,
            services: vec![Ok(client)],
            cluster: None,
            orphans: OrphanLedger::default(),
            now: Timestamp::now(),
            stop: never_stop(),
        },
        &SweepOptions::default(),
    )
    .await;
    let wall = started.elapsed();
    println!(
        "enforce sweep ({label}): {seen} handles seen, {} condemned, {} closed ({} wildcard), {} left open, {:.3}s wall",
        report.condemned().values().sum::<u64>(),
        report.closed(),
        report.wildcards.iter().map(|w| w.closed).sum::<u64>(),
        store.stats().handles,
        wall.as_secs_f64()
    );
    assert!(report.all_shares_ok());
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn main() {
    bench_classify_plan();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sweep_once(
            100_000,
            0,
            "mode: Enforce\nshares: [{ endpoint: ENDPOINT, share: bench, credentialsSecretRef: { name: s } }]\nrules: { stale: { openLongerThan: 24h } }\n",
            "stale rule, default cap of 1,000 closes",
        )
        .await;
        sweep_once(
            100_000,
            0,
            "mode: Enforce\nshares: [{ endpoint: ENDPOINT, share: bench, credentialsSecretRef: { name: s } }]\nrules: { stale: { openLongerThan: 24h } }\nlimits: { maxClosesPerSweep: 1000000 }\n",
            "stale rule, every stale handle closed by id",
        )
        .await;
        sweep_once(
            100_000,
            40_000,
            "mode: Enforce\nshares: [{ endpoint: ENDPOINT, share: bench, credentialsSecretRef: { name: s } }]\nrules: { stale: { openLongerThan: 24h }, renameGuard: { paths: [release/v1] } }\nlimits: { maxClosesPerSweep: 1000000, safetyValvePercent: 60 }\n",
            "rename guard over 40,000 handles, one wildcard close",
        )
        .await;
    });
}
