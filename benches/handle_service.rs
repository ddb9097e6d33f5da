//! Handle service throughput and memory: a separate `share-hygiene handle-service` process
//! holding 1,000,000 handles (10 shares x 10 directories x 100 files x 100 handles), listed in
//! 5,000-handle pages and closed with recursive `*` by our client, with the server's RSS read
//! from /proc.
//!
//! ```text
//! cargo build --release --bin share-hygiene
//! cargo bench --bench handle_service                      # everything, defaults below
//! cargo bench --bench handle_service -- --close-batch 1000,5000 --list-runs 3
//! cargo bench --bench handle_service -- --perf target/bench-perf   # perf record each phase
//! ```
//!
//! Not a test: it prints measurements (and a Markdown table) for docs/benchmarks.md.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use share_hygiene::auth::{AccountKey, Credential};
use share_hygiene::handles::client::{ClientOptions, Endpoint, HandleClient};
use share_hygiene::handles::{close_all, pages};
use share_hygiene::protocol::{HandleSelector, ListPage, Target};

const ACCOUNT: &str = "benchacct";

struct Args {
    shares: u32,
    dirs: u32,
    files_per_dir: u32,
    per_file: u32,
    page_size: u32,
    close_batches: Vec<usize>,
    list_runs: u32,
    bin: PathBuf,
    work: PathBuf,
    perf: Option<PathBuf>,
}

impl Args {
    fn parse() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut a = Args {
            shares: 10,
            dirs: 10,
            files_per_dir: 100,
            per_file: 100,
            page_size: 5000,
            close_batches: vec![1000, 5000],
            list_runs: 3,
            bin: std::env::var_os("SHARE_HYGIENE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/share-hygiene")),
            work: root.join("target/bench-handle-service"),
            perf: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--bench" => {} // cargo bench passes it
                "--shares" => a.shares = num(&value()),
                "--dirs" => a.dirs = num(&value()),
                "--files-per-dir" => a.files_per_dir = num(&value()),
                "--per-file" => a.per_file = num(&value()),
                "--page-size" => a.page_size = num(&value()),
                "--list-runs" => a.list_runs = num(&value()),
                "--close-batch" => a.close_batches = value().split(',').map(num).collect(),
                "--bin" => a.bin = value().into(),
                "--work" => a.work = value().into(),
                "--perf" => a.perf = Some(value().into()),
                other => usage(&format!("unknown flag {other}")),
            }
        }
        a
    }

    fn handles(&self) -> u64 {
        u64::from(self.shares)
            * u64::from(self.dirs)
            * u64::from(self.files_per_dir)
            * u64::from(self.per_file)
    }
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("{s:?} is not a number")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "handle_service bench: {why}\nflags: --shares N --dirs N --files-per-dir N --per-file N \
         --page-size N --list-runs N --close-batch N[,N...] --bin PATH --work DIR --perf DIR"
    );
    std::process::exit(2)
}

fn share_name(i: u32) -> String {
    format!("bench-{i:02}")
}

/// The seed: `shares` shares; with `full`, every file has `per_file` handles from one of 50
/// clients.
fn write_seed(a: &Args, path: &Path, full: bool) {
    let mut out = String::with_capacity(if full { 12 << 20 } else { 1024 });
    out.push_str("shares:\n");
    let mut n = 0u32;
    for s in 0..a.shares {
        out.push_str(&format!("  - name: {}\n", share_name(s)));
        if !full {
            continue;
        }
        out.push_str("    handles:\n");
        for d in 0..a.dirs {
            for f in 0..a.files_per_dir {
                let c = n % 50;
                n += 1;
                out.push_str(&format!(
                    "      - path: dir{d:02}/file{f:03}.dat\n        client: \"10.244.{}.{}:{}\"\n        clientName: node-{c}\n        age: 2h\n        count: {}\n",
                    c / 10,
                    c % 10 + 1,
                    40000 + c,
                    a.per_file
                ));
            }
        }
    }
    std::fs::write(path, out).expect("writing the seed");
}

/// A running `share-hygiene handle-service`.
struct Server {
    child: Child,
    addr: SocketAddr,
    key: AccountKey,
    load_time: Duration,
}

impl Server {
    fn start(a: &Args, seed: &Path, close_batch: usize) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let key = AccountKey::random();
        let started = Instant::now();
        let child = Command::new(&a.bin)
            .args(["handle-service", "--seed"])
            .arg(seed)
            .args(["--listen", &addr.to_string(), "--account", ACCOUNT])
            .args(["--close-batch", &close_batch.to_string()])
            .env("SHARE_HYGIENE_ACCOUNT_KEY", key.to_base64())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (build it with `cargo build --release --bin share-hygiene`)",
                    a.bin.display()
                )
            });
        let mut server = Server {
            child,
            addr,
            key,
            load_time: Duration::ZERO,
        };
        // The service binds its port only once the seed is loaded.
        let deadline = Instant::now() + Duration::from_secs(300);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the handle service exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the handle service did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server.load_time = started.elapsed();
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn client(&self) -> HandleClient {
        let endpoint = Endpoint::parse(&format!("http://{}/{ACCOUNT}", self.addr)).unwrap();
        let credential = Credential::SharedKey {
            account: ACCOUNT.into(),
            key: self.key.clone(),
        };
        let options = ClientOptions {
            request_timeout: Duration::from_secs(120),
            operation_timeout: Duration::from_secs(600),
            ..ClientOptions::default()
        };
        HandleClient::new(endpoint, credential, options).unwrap()
    }

    fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `Vm*` field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// User + system CPU of a process so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// `perf record` of some processes while a phase runs, when asked for.
struct Perf(Option<Child>);

impl Perf {
    fn start(a: &Args, name: &str, pids: &[u32]) -> Perf {
        let Some(dir) = &a.perf else {
            return Perf(None);
        };
        std::fs::create_dir_all(dir).unwrap();
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o"])
            .arg(dir.join(format!("{name}.data")))
            .args(["-p", &pids.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf record");
        std::thread::sleep(Duration::from_millis(300));
        Perf(Some(child))
    }

    fn stop(self) {
        if let Some(mut child) = self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

struct Phase {
    handles: u64,
    wall: Duration,
    requests: u64,
    client_cpu: Duration,
    server_cpu: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.handles as f64 / self.wall.as_secs_f64()
    }

    fn print(&self, what: &str) {
        println!(
            "  {what}: {} handles in {:.3} s = {:.0} handles/s; {} requests; client CPU {:.2} s, server CPU {:.2} s",
            self.handles,
            self.wall.as_secs_f64(),
            self.rate(),
            self.requests,
            self.client_cpu.as_secs_f64(),
            self.server_cpu.as_secs_f64()
        );
    }
}

async fn measure<F: std::future::Future<Output = u64>>(
    server: &Server,
    client: &HandleClient,
    work: F,
) -> Phase {
    let me = std::process::id();
    let (c0, s0) = (cpu(me), cpu(server.pid()));
    let r0 = client.stats().requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let handles = work.await;
    let wall = started.elapsed();
    Phase {
        handles,
        wall,
        requests: client.stats().requests.load(Ordering::Relaxed) - r0,
        client_cpu: cpu(me) - c0,
        server_cpu: cpu(server.pid()) - s0,
    }
}

async fn list_share(client: &HandleClient, share: String, page_size: u32) -> u64 {
    let target = Target::directory(share, "", true);
    let mut stream = std::pin::pin!(pages(client, target, Some(page_size)));
    let mut n = 0u64;
    while let Some(page) = stream.try_next().await.expect("listing") {
        let page: ListPage = page;
        n += page.handles.len() as u64;
    }
    n
}

/// Lists every share: one after another, or each in its own task (so that decoding runs on
/// every core).
async fn list_all(a: &Args, client: &Arc<HandleClient>, parallel: bool) -> u64 {
    if parallel {
        let tasks: Vec<_> = (0..a.shares)
            .map(|s| {
                let client = client.clone();
                let page_size = a.page_size;
                tokio::spawn(async move { list_share(&client, share_name(s), page_size).await })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += t.await.expect("a listing task");
        }
        n
    } else {
        let mut n = 0;
        for s in 0..a.shares {
            n += list_share(client, share_name(s), a.page_size).await;
        }
        n
    }
}

async fn close_everything(a: &Args, client: &HandleClient) -> u64 {
    let mut closed = 0;
    for s in 0..a.shares {
        let out = close_all(
            client,
            Target::directory(share_name(s), "", true),
            HandleSelector::All,
        )
        .await;
        if let Some(e) = out.error {
            panic!("closing {}: {e}", share_name(s));
        }
        assert_eq!(out.failed, 0);
        closed += out.closed;
    }
    closed
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    std::fs::create_dir_all(&a.work).unwrap();
    let n = a.handles();
    println!(
        "handle service bench: {n} handles = {} shares x {} dirs x {} files x {} handles; pages of {}; {} ({} cores)",
        a.shares,
        a.dirs,
        a.files_per_dir,
        a.per_file,
        a.page_size,
        a.bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    println!("load average at start: {}", load_average());
    let empty_seed = a.work.join("seed-empty.yaml");
    let full_seed = a.work.join("seed-full.yaml");
    write_seed(&a, &empty_seed, false);
    let t = Instant::now();
    write_seed(&a, &full_seed, true);
    println!(
        "seed: {} ({:.1} MiB, written in {:.2} s)",
        full_seed.display(),
        std::fs::metadata(&full_seed).unwrap().len() as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    // Baseline: the same shares, no handles.
    let empty = Server::start(&a, &empty_seed, 1000);
    std::thread::sleep(Duration::from_millis(200));
    let rss_empty = empty.status_kib("VmRSS");
    drop(empty);
    println!("empty store: RSS {:.1} MiB", mib(rss_empty));

    let mut rows = Vec::new();
    for (run, &batch) in a.close_batches.iter().enumerate() {
        let server = Server::start(&a, &full_seed, batch);
        std::thread::sleep(Duration::from_millis(200));
        let rss_loaded = server.status_kib("VmRSS");
        let hwm_load = server.status_kib("VmHWM");
        let per_handle = (rss_loaded.saturating_sub(rss_empty) * 1024) as f64 / n as f64;
        println!(
            "server (close batch {batch}): seed loaded in {:.2} s; RSS {:.1} MiB ({per_handle:.0} bytes/handle over the empty store); peak so far {:.1} MiB",
            server.load_time.as_secs_f64(),
            mib(rss_loaded),
            mib(hwm_load)
        );
        let client = Arc::new(server.client());
        let mut lists = Vec::new();
        let mut parallel = None;
        if run == 0 {
            for i in 0..a.list_runs {
                let perf = Perf::start(
                    &a,
                    &format!("list-{i}"),
                    &[server.pid(), std::process::id()],
                );
                let phase = rt.block_on(measure(&server, &client, list_all(&a, &client, false)));
                perf.stop();
                assert_eq!(phase.handles, n, "every handle listed");
                phase.print(&format!("list run {} (shares one after another)", i + 1));
                lists.push(phase);
            }
            let phase = rt.block_on(measure(&server, &client, list_all(&a, &client, true)));
            assert_eq!(phase.handles, n);
            phase.print("list (all shares at once, one task each)");
            parallel = Some(phase);
        }
        let perf = Perf::start(
            &a,
            &format!("close-{batch}"),
            &[server.pid(), std::process::id()],
        );
        let close = rt.block_on(measure(&server, &client, close_everything(&a, &client)));
        perf.stop();
        assert_eq!(close.handles, n, "every handle closed");
        assert_eq!(
            rt.block_on(list_all(&a, &client, false)),
            0,
            "nothing left open"
        );
        close.print(&format!("close_all * recursive, batch {batch}"));
        let hwm = server.status_kib("VmHWM");
        let rss_after = server.status_kib("VmRSS");
        println!(
            "  server peak RSS (VmHWM) {:.1} MiB; RSS after closing everything {:.1} MiB",
            mib(hwm),
            mib(rss_after)
        );
        rows.push((
            batch,
            server.load_time,
            rss_loaded,
            per_handle,
            hwm,
            lists,
            parallel,
            close,
        ));
    }

    println!("load average at the end: {}", load_average());
    println!("\nMarkdown:\n");
    println!("| measure | value |\n|---|---|");
    for (batch, load, rss, per_handle, hwm, lists, parallel, close) in &rows {
        if !lists.is_empty() {
            let mut rates: Vec<f64> = lists.iter().map(Phase::rate).collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let l = &lists[0];
            println!(
                "| list, 1 share at a time (median of {}) | {median:.0} handles/s ({} requests of {} handles; client CPU {:.2} s, server CPU {:.2} s for run 1) |",
                rates.len(),
                l.requests,
                a.page_size,
                l.client_cpu.as_secs_f64(),
                l.server_cpu.as_secs_f64()
            );
        }
        if let Some(p) = parallel {
            println!(
                "| list, {} shares at once (a task each) | {:.0} handles/s (client CPU {:.2} s, server CPU {:.2} s) |",
                a.shares,
                p.rate(),
                p.client_cpu.as_secs_f64(),
                p.server_cpu.as_secs_f64()
            );
        }
        println!(
            "| close_all `*` recursive, close batch {batch} | {:.0} handles/s ({} requests, {:.3} s; client CPU {:.2} s, server CPU {:.2} s) |",
            close.rate(),
            close.requests,
            close.wall.as_secs_f64(),
            close.client_cpu.as_secs_f64(),
            close.server_cpu.as_secs_f64()
        );
        println!(
            "| server RSS loaded (batch {batch} run) | {:.1} MiB, {per_handle:.0} bytes/handle over empty ({:.1} MiB); seed load {:.1} s |",
            mib(*rss),
            mib(rss_empty),
            load.as_secs_f64()
        );
        println!(
            "| server peak RSS (VmHWM, batch {batch} run) | {:.1} MiB |",
            mib(*hwm)
        );
    }
    let _ = std::io::stdout().flush();
}
