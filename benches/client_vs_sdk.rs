//! Our client's side of the client-vs-Python-SDK comparison; `scripts/bench-client-vs-sdk.sh`
//! runs it (and `scripts/bench/sdk_bench.py`, the SDK's side) against one handle service.
//!
//! ```text
//! BENCH_ACCOUNT_KEY=... client_vs_sdk MODE --url http://127.0.0.1:PORT/ACCOUNT/SHARE
//!     [--concurrency N] [--page-size N]
//! ```
//!
//! Modes: `list` (every handle below the share root, recursive), `close-each` (list untimed,
//! then close every handle by id through its own path, N in flight), `close-all` (`*`
//! recursive on the root, following markers). Prints one JSON line: wall time, requests sent,
//! and this process's user and system CPU for the timed part.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use share_hygiene::auth::{AccountKey, Credential};
use share_hygiene::handles::client::{ClientOptions, HandleClient, ShareUrl};
use share_hygiene::handles::{close_all, pages};
use share_hygiene::protocol::{Handle, HandleSelector, ListPage, Target};

fn usage(why: &str) -> ! {
    eprintln!(
        "client_vs_sdk: {why}\nusage: BENCH_ACCOUNT_KEY=KEY client_vs_sdk list|close-each|close-all \
         --url http://HOST:PORT/ACCOUNT/SHARE [--concurrency N] [--page-size N]"
    );
    std::process::exit(2)
}

/// User and system CPU of this process so far.
fn cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let secs = |s: &str| Duration::from_secs_f64(s.parse::<f64>().unwrap() / ticks);
    (secs(f[11]), secs(f[12]))
}

async fn list(client: &HandleClient, share: &str, page_size: u32) -> Vec<Handle> {
    let target = Target::directory(share, "", true);
    let pages: Vec<ListPage> = pages(client, target, Some(page_size))
        .try_collect()
        .await
        .expect("listing");
    pages.into_iter().flat_map(|p| p.handles).collect()
}

/// The timed part of a mode: handles closed or listed, and handles that failed to close.
async fn timed(
    mode: String,
    client: Arc<HandleClient>,
    share: String,
    to_close: Vec<Handle>,
    concurrency: usize,
    page_size: u32,
) -> (u64, u64) {
    let client = &*client;
    let share = share.as_str();
    match mode.as_str() {
        "list" => (list(client, share, page_size).await.len() as u64, 0),
        "close-each" => {
            let outcomes: Vec<_> = futures::stream::iter(to_close)
                .map(|h: Handle| {
                    close_all(
                        client,
                        Target::resource(share, h.path),
                        HandleSelector::Id(h.handle_id),
                    )
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            let mut closed = 0;
            let mut failed = 0;
            for out in outcomes {
                if let Some(e) = out.error {
                    panic!("closing a handle: {e}");
                }
                closed += out.closed;
                failed += out.failed;
            }
            (closed, failed)
        }
        "close-all" => {
            let out = close_all(
                client,
                Target::directory(share, "", true),
                HandleSelector::All,
            )
            .await;
            if let Some(e) = out.error {
                panic!("closing: {e}");
            }
            (out.closed, out.failed)
        }
        other => usage(&format!("unknown mode {other}")),
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mode = args.next().unwrap_or_else(|| usage("no mode"));
    let (mut url, mut concurrency, mut page_size) = (None, 16usize, 5000u32);
    let mut runtime = String::from("multi");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" => url = Some(value),
            "--concurrency" => concurrency = value.parse().unwrap_or_else(|_| usage(&value)),
            "--page-size" => page_size = value.parse().unwrap_or_else(|_| usage(&value)),
            "--runtime" => runtime = value,
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let url = ShareUrl::parse(&url.unwrap_or_else(|| usage("no --url"))).expect("--url");
    let key = std::env::var("BENCH_ACCOUNT_KEY").unwrap_or_else(|_| usage("no BENCH_ACCOUNT_KEY"));
    let credential = Credential::SharedKey {
        account: url.endpoint.account().to_owned(),
        key: AccountKey::from_base64(&key).expect("BENCH_ACCOUNT_KEY"),
    };
    let client = Arc::new(
        HandleClient::new(url.endpoint.clone(), credential, ClientOptions::default())
            .expect("a client"),
    );
    let share = url.share.as_str();
    // `multi` (default): the work runs in a task on the multi-thread runtime, as the
    // operator's sweep does; `current`: a single-threaded runtime; `block-on`: the work runs
    // on the main thread via block_on while connections run on the workers (as the CLI does).
    let rt = match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread(),
        "multi" | "block-on" => tokio::runtime::Builder::new_multi_thread(),
        other => usage(&format!("unknown --runtime {other}")),
    }
    .enable_all()
    .build()
    .unwrap();

    // Untimed preparation: the handles to close one by one.
    let to_close = (mode == "close-each").then(|| rt.block_on(list(&client, share, page_size)));
    let requests_before = client.stats().requests.load(Ordering::Relaxed);
    let (user0, sys0) = cpu();
    let started = Instant::now();
    let work = timed(
        mode.clone(),
        client.clone(),
        share.to_owned(),
        to_close.unwrap_or_default(),
        concurrency,
        page_size,
    );
    let (handles, failed) = if runtime == "block-on" {
        rt.block_on(work)
    } else {
        rt.block_on(async { tokio::spawn(work).await.expect("the timed task") })
    };
    let wall = started.elapsed();
    let (user1, sys1) = cpu();
    let line = serde_json::json!({
        "client": "share-hygiene (Rust)",
        "mode": mode,
        "concurrency": if mode == "close-each" { concurrency } else { 1 },
        "runtime": runtime,
        "handles": handles,
        "failed": failed,
        "wall_s": wall.as_secs_f64(),
        "requests": client.stats().requests.load(Ordering::Relaxed) - requests_before,
        "retries": client.stats().retries.load(Ordering::Relaxed),
        "cpu_user_s": (user1 - user0).as_secs_f64(),
        "cpu_sys_s": (sys1 - sys0).as_secs_f64(),
    });
    println!("{line}");
}
