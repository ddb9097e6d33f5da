//! Closing and listing against a slow endpoint that throttles, with a fixed concurrency
//! (before) and with the adaptive per-account limit (after). Figures are recorded in
//! docs/benchmarks.md.
//!
//! The endpoint is the embedded handle service (memory store) behind a small proxy that adds
//! 30 ms to every request, as real Azure costs, and refuses with 503 `ServerBusy` (no
//! `Retry-After`, after the same 30 ms) every request above 2,000 a second (a token bucket
//! with a burst of 100). The proxy counts what it is offered per 100 ms.
//!
//! ```text
//! cargo bench --bench adaptive_close -- close after 100000
//! cargo bench --bench adaptive_close -- close before 20000
//! cargo bench --bench adaptive_close -- list after
//! cargo bench --bench adaptive_close -- list before
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::net::TcpListener;

use share_hygiene::api::HandlePolicySpec;
use share_hygiene::auth::{AccountKey, Credential};
use share_hygiene::handles::HandleService;
use share_hygiene::handles::client::{
    ClientOptions, ClientPool, Endpoint, HandleClient, LimiterOptions,
};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::policy::{OrphanLedger, compile};
use share_hygiene::protocol::{AccessRights, ErrorCode, StorageError, encode_error};
use share_hygiene::server::{HandleServer, ServerConfig};
use share_hygiene::sweep::{SweepInput, SweepOptions, SweepReport, never_stop, sweep};

const ACCOUNT: &str = "acct";
/// What every request costs.
const LATENCY: Duration = Duration::from_millis(30);
/// Requests a second the endpoint accepts.
const RATE: f64 = 2000.0;
/// Requests it accepts at once above the rate.
const BURST: f64 = 100.0;
/// The window the offered rate is counted in.
const WINDOW: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The slow, throttling proxy
// ---------------------------------------------------------------------------------------------

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct ProxyState {
    upstream: SocketAddr,
    http: reqwest::Client,
    bucket: Mutex<Bucket>,
    started: Instant,
    /// Requests offered, and refused, per [`WINDOW`] since `started`.
    windows: Mutex<Vec<(u32, u32)>>,
}

impl ProxyState {
    /// Counts a request and says whether the endpoint takes it.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let admitted = {
            let mut b = self.bucket.lock().unwrap();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * RATE).min(BURST);
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        };
        let w = (now.duration_since(self.started).as_millis() / WINDOW.as_millis()) as usize;
        let mut windows = self.windows.lock().unwrap();
        if windows.len() <= w {
            windows.resize(w + 1, (0, 0));
        }
        windows[w].0 += 1;
        if !admitted {
            windows[w].1 += 1;
        }
        admitted
    }

    fn reset(&self) {
        self.windows.lock().unwrap().clear();
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

async fn start_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<ProxyState>) {
    share_hygiene::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ProxyState {
        upstream,
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        bucket: Mutex::new(Bucket {
            tokens: BURST,
            at: Instant::now(),
        }),
        started: Instant::now(),
        windows: Mutex::new(Vec::new()),
    });
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let st = st.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| proxy_one(st.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

async fn proxy_one(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let admitted = state.admit();
    tokio::time::sleep(LATENCY).await;
    if !admitted {
        let err = StorageError::new(
            503,
            ErrorCode::ServerBusy,
            "Operations per second is over the account limit.",
        );
        let body = encode_error(&err, "proxy", Timestamp::now());
        let mut resp = Response::new(full(Bytes::from(body)));
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        resp.headers_mut()
            .insert("x-ms-error-code", "ServerBusy".parse().unwrap());
        return Ok(resp);
    }
    let url = format!(
        "http://{}{}",
        state.upstream,
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = req.headers().clone();
    headers.remove(http::header::HOST);
    let upstream = state
        .http
        .request(req.method().clone(), url)
        .headers(headers)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    let body = upstream.bytes().await.map_err(std::io::Error::other)?;
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.remove(http::header::CONTENT_LENGTH);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// What the proxy saw during one run.
struct Load {
    offered: u64,
    refused: u64,
    /// The most requests offered in one whole second (10 consecutive windows).
    max_per_second: u32,
    /// How long the offered rate was above [`RATE`], in [`WINDOW`]s.
    above: Duration,
    /// Whole seconds (fixed, from the start) in which more than [`RATE`] were offered.
    seconds_above: usize,
}

fn load(state: &ProxyState) -> Load {
    let windows = state.windows.lock().unwrap().clone();
    let per_window_limit = RATE * WINDOW.as_secs_f64();
    let above = windows
        .iter()
        .filter(|(offered, _)| f64::from(*offered) > per_window_limit)
        .count();
    let per_second = (WINDOW.as_millis() as usize).max(1);
    let n = 1000 / per_second;
    let max_per_second = windows
        .windows(n.min(windows.len()).max(1))
        .map(|w| w.iter().map(|(o, _)| o).sum::<u32>())
        .max()
        .unwrap_or(0);
    let seconds_above = windows
        .chunks(n.max(1))
        .filter(|c| f64::from(c.iter().map(|(o, _)| o).sum::<u32>()) > RATE)
        .count();
    Load {
        seconds_above,
        offered: windows.iter().map(|(o, _)| u64::from(*o)).sum(),
        refused: windows.iter().map(|(_, r)| u64::from(*r)).sum(),
        max_per_second,
        above: WINDOW * above as u32,
    }
}

// ---------------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------------

fn handle(age_secs: i64, count: u32) -> OpenSpec {
    OpenSpec {
        client_ip: "10.0.0.2:445".into(),
        client_name: Some("node".into()),
        session_id: None,
        open_time: Timestamp::from_second(Timestamp::now().as_second() - age_secs).unwrap(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count,
        fail_close: false,
    }
}

struct Setup {
    store: Arc<MemoryStore>,
    proxy: Arc<ProxyState>,
    endpoint: String,
    pool: ClientPool,
    key: AccountKey,
    /// Before: a client per share, each with its own retry budget, as sweeps built them.
    per_share: Option<ClientOptions>,
}

async fn setup(concurrency: LimiterOptions, adaptive: bool) -> Setup {
    let store = Arc::new(MemoryStore::default());
    let key = AccountKey::random();
    let config = ServerConfig {
        max_requests_in_flight: 100_000,
        ..ServerConfig::new(ACCOUNT, key.clone())
    };
    let server = Arc::new(HandleServer::memory(config, store.clone()));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (addr, proxy) = start_proxy(running.addr).await;
    // The service runs for the life of the process (one run per process).
    std::mem::forget(running);
    let endpoint = format!("http://{addr}/{ACCOUNT}");
    let options = ClientOptions {
        concurrency,
        ..ClientOptions::default()
    };
    let pool = ClientPool::new(options.clone(), Duration::from_secs(600));
    Setup {
        store,
        proxy,
        endpoint,
        pool,
        key,
        per_share: (!adaptive).then_some(options),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map_or("close", String::as_str).to_owned();
    let mode = args.get(1).map_or("after", String::as_str).to_owned();
    let count: u32 = args.get(2).map_or(100_000, |n| n.parse().expect("a count"));
    let adaptive = match mode.as_str() {
        "after" => true,
        "before" => false,
        other => panic!("mode is before or after, not {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match what.as_str() {
            "close" => close_run(adaptive, count).await,
            "list" => list_run(adaptive).await,
            other => panic!("close or list, not {other}"),
        }
    });
}

/// `count` stale handles (and a tenth as many fresh ones) on one share, all closed by id.
async fn close_run(adaptive: bool, count: u32) {
    let (concurrency, close_concurrency) = if adaptive {
        (
            LimiterOptions::default(),
            SweepOptions::default().close_concurrency,
        )
    } else {
        (LimiterOptions::fixed(8), 8)
    };
    let s = setup(concurrency, adaptive).await;
    s.store.create_share("bench").unwrap();
    let files = 1000;
    for f in 0..files {
        s.store
            .open(
                "bench",
                &format!("logs/f{f}.log"),
                &handle(3 * 86_400, count / files),
            )
            .unwrap();
    }
    s.store
        .open("bench", "data/fresh.bin", &handle(60, count / 10))
        .unwrap();
    let yaml = format!(
        "mode: Enforce\nshares: [{{ endpoint: {}, share: bench, credentialsSecretRef: {{ name: s }} }}]\nrules: {{ stale: {{ openLongerThan: 24h }} }}\nlimits: {{ maxClosesPerSweep: 1000000, safetyValvePercent: 95 }}\n",
        s.endpoint
    );
    let label = if adaptive {
        format!(
            "adaptive per-account limit, backoff x{}",
            concurrency.backoff
        )
    } else {
        "fixed 8 in flight (before)".to_owned()
    };
    let options = SweepOptions {
        close_concurrency,
        ..SweepOptions::default()
    };
    s.proxy.reset();
    let (report, wall) = run(&s, &yaml, &options).await;
    print_run(&format!("close {count} by id, {label}"), &s, &report, wall);
}

/// Three policies at once on one account, each of 64 shares of 2,000 handles, listed 100 a
/// page, all 64 shares at once (dry run): 3,840 List Handles requests.
async fn list_run(adaptive: bool) {
    let (policies, shares) = (3, 64);
    let concurrency = if adaptive {
        LimiterOptions::default()
    } else {
        // Before: every share's listing went out as soon as it was ready.
        LimiterOptions::fixed(policies * shares)
    };
    let s = setup(concurrency, adaptive).await;
    let mut yamls = Vec::new();
    for p in 0..policies {
        let mut listed = String::new();
        for i in 0..shares {
            let share = format!("bench{p}-{i}");
            s.store.create_share(&share).unwrap();
            s.store
                .open(&share, "data/f.bin", &handle(60, 2000))
                .unwrap();
            listed.push_str(&format!(
                "{{ endpoint: {}, share: {share}, credentialsSecretRef: {{ name: s }} }}, ",
                s.endpoint
            ));
        }
        yamls.push(format!(
            "mode: DryRun\nshares: [{}]\nrules: {{ stale: {{ openLongerThan: 24h }} }}\n",
            listed.trim_end_matches(", ")
        ));
    }
    let options = SweepOptions {
        page_size: 100,
        share_concurrency: shares,
        ..SweepOptions::default()
    };
    s.proxy.reset();
    let started = Instant::now();
    let reports = futures::future::join_all(yamls.iter().map(|y| run(&s, y, &options))).await;
    let wall = started.elapsed();
    let label = if adaptive {
        "adaptive per-account limit".to_owned()
    } else {
        format!("fixed {} in flight (before)", policies * shares)
    };
    for (i, (report, own)) in reports.iter().enumerate() {
        print_run(
            &format!(
                "list: policy {i} of {policies} at once, {shares} shares x 2,000 handles, 100 a page, {label} ({:.1}s for this policy)",
                own.as_secs_f64()
            ),
            &s,
            report,
            wall,
        );
    }
}

async fn run(s: &Setup, yaml: &str, options: &SweepOptions) -> (SweepReport, Duration) {
    let spec: HandlePolicySpec = serde_saphyr::from_str(yaml).expect("bench spec parses");
    let policy = compile(&spec).unwrap();
    let services = policy
        .shares
        .iter()
        .map(|scope| {
            let endpoint = Endpoint::parse(&scope.endpoint).unwrap();
            let credential = Credential::SharedKey {
                account: ACCOUNT.into(),
                key: s.key.clone(),
            };
            let client = match &s.per_share {
                Some(options) => {
                    Arc::new(HandleClient::new(endpoint, credential, options.clone()).unwrap())
                }
                None => s.pool.client(endpoint, credential).unwrap(),
            };
            Ok(client as Arc<dyn HandleService>)
        })
        .collect();
    let started = Instant::now();
    let report = sweep(
        SweepInput {
            policy: &policy,
            services,
            cluster: None,
            orphans: OrphanLedger::default(),
            now: Timestamp::now(),
            stop: never_stop(),
        },
        options,
    )
    .await;
    (report, started.elapsed())
}

fn print_run(label: &str, s: &Setup, report: &SweepReport, wall: Duration) {
    let load = load(&s.proxy);
    let limits = s.pool.limits(&Endpoint::parse(&s.endpoint).unwrap());
    let errors: Vec<String> = report
        .shares
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| e.message.clone()))
        .take(3)
        .collect();
    println!("{label}");
    println!(
        "  {:.1}s wall; seen {}, closed {}, failed {}, not closed {:?}, shares failed {}{}",
        wall.as_secs_f64(),
        report.seen(),
        report.closed(),
        report.failed(),
        report.not_closed(),
        report.shares.iter().filter(|r| r.error.is_some()).count(),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join("; "))
        }
    );
    println!(
        "  offered {} requests ({} refused 503), {:.0}/s on average; max {} in any one second; {} whole seconds above {RATE}; above {RATE}/s in 100 ms windows for {:.1}s in all",
        load.offered,
        load.refused,
        load.offered as f64 / wall.as_secs_f64(),
        load.max_per_second,
        load.seconds_above,
        load.above.as_secs_f64()
    );
    if let Some(limits) = limits {
        let state = limits.limiter.state();
        println!(
            "  limiter: limit now {:.1}, peak in flight {}, halved {} times",
            state.limit, state.peak_in_flight, state.backoffs
        );
    }
}
