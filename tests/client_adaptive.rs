//! The adaptive per-endpoint limit and the client pool, over real HTTP: the in-process handle
//! service behind a proxy that delays every request, counts how many are in flight at once,
//! and answers scripted requests with throttling or errors instead of forwarding them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use share_hygiene::auth::{AccountKey, Credential};
use share_hygiene::handles::HandleService;
use share_hygiene::handles::client::{
    ClientOptions, ClientPool, DEFAULT_IDLE_AFTER, Endpoint, HandleClient, LimiterOptions,
    RetryPolicy,
};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::protocol::{
    AccessRights, ErrorCode, ListRequest, StorageError, Target, encode_error,
};
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};

const ACCOUNT: &str = "acct";
const SHARE: &str = "adaptive";
/// What the proxy adds to every request.
const DELAY: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// The service and the proxy
// ---------------------------------------------------------------------------------------------

async fn service() -> (RunningServer, AccountKey) {
    let store = Arc::new(MemoryStore::default());
    store.create_share(SHARE).unwrap();
    store
        .open(
            SHARE,
            "d/f.dat",
            &OpenSpec {
                client_ip: "10.7.0.1:445".into(),
                client_name: None,
                session_id: None,
                open_time: jiff::Timestamp::now(),
                last_reconnect_time: None,
                access_rights: AccessRights::READ,
                directory: false,
                count: 3,
                fail_close: false,
            },
        )
        .unwrap();
    let key = AccountKey::random();
    let config = ServerConfig {
        max_requests_in_flight: 10_000,
        ..ServerConfig::new(ACCOUNT, key.clone())
    };
    let server = Arc::new(HandleServer::memory(config, store));
    (
        server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap(),
        key,
    )
}

/// What the proxy answers instead of forwarding.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: u16,
    code: &'static str,
    retry_after: Option<&'static str>,
}

const SERVER_BUSY: Refusal = Refusal {
    status: 503,
    code: "ServerBusy",
    retry_after: None,
};

const TOO_MANY: Refusal = Refusal {
    status: 429,
    code: "TooManyRequests",
    retry_after: None,
};

#[derive(Default)]
struct ProxyState {
    upstream: Option<SocketAddr>,
    http: Option<reqwest::Client>,
    /// For the next requests in arrival order: `Some` refuses, `None` forwards.
    script: Mutex<VecDeque<Option<Refusal>>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// When each request arrived, and when each refusal was answered.
    arrived: Mutex<Vec<Instant>>,
    refused_at: Mutex<Vec<Instant>>,
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        share_hygiene::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream: Some(upstream),
            http: Some(reqwest::Client::builder().no_proxy().build().unwrap()),
            ..ProxyState::default()
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
        Self { addr, state }
    }

    fn script(&self, steps: impl IntoIterator<Item = Option<Refusal>>) {
        *self.state.script.lock().unwrap() = steps.into_iter().collect();
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("http://{}/{ACCOUNT}", self.addr)).unwrap()
    }

    fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.state.arrived.lock().unwrap().clone()
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

async fn proxy_one(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    state.arrived.lock().unwrap().push(Instant::now());
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let refusal = state.script.lock().unwrap().pop_front().flatten();
    tokio::time::sleep(DELAY).await;
    let result = match refusal {
        Some(r) => {
            let err = StorageError::new(r.status, ErrorCode::parse(r.code), "Injected.");
            let body = encode_error(&err, "proxy", jiff::Timestamp::now());
            let mut resp = Response::new(full(Bytes::from(body)));
            *resp.status_mut() = http::StatusCode::from_u16(r.status).unwrap();
            resp.headers_mut()
                .insert("x-ms-error-code", r.code.parse().unwrap());
            if let Some(after) = r.retry_after {
                resp.headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            state.refused_at.lock().unwrap().push(Instant::now());
            Ok(resp)
        }
        None => forward(&state, req).await,
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn forward(
    state: &ProxyState,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let url = format!(
        "http://{}{}",
        state.upstream.unwrap(),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = req.headers().clone();
    headers.remove(http::header::HOST);
    let upstream = state
        .http
        .as_ref()
        .unwrap()
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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn options(concurrency: LimiterOptions) -> ClientOptions {
    ClientOptions {
        concurrency,
        retry: RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(5),
        },
        ..ClientOptions::default()
    }
}

fn limits(initial: usize, floor: usize, ceiling: usize) -> LimiterOptions {
    LimiterOptions {
        initial,
        floor,
        ceiling,
        ..LimiterOptions::default()
    }
}

fn shared_key(key: &AccountKey) -> Credential {
    Credential::SharedKey {
        account: ACCOUNT.into(),
        key: key.clone(),
    }
}

fn list_req() -> ListRequest {
    ListRequest {
        target: Target::directory(SHARE, "", true),
        marker: None,
        max_results: None,
    }
}

/// `n` list calls, `at_once` of them offered at a time; how many succeeded.
async fn lists(client: &HandleClient, n: usize, at_once: usize) -> usize {
    let req = list_req();
    futures::stream::iter(0..n)
        .map(|_| client.list_handles(&req))
        .buffer_unordered(at_once)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await
}

/// Lets the limit grow from `initial` with `rounds` rounds of successful calls.
async fn warm(client: &HandleClient, rounds: usize) {
    for _ in 0..rounds {
        let n = client.limiter().state().limit as usize;
        lists(client, n, n).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_limit_grows_while_latency_holds_and_never_passes_the_ceiling() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let client = HandleClient::new(
        proxy.endpoint(),
        shared_key(&key),
        options(limits(2, 1, 12)),
    )
    .unwrap();
    // 300 calls offered 64 at a time: the limit, not the caller, decides what is in flight.
    assert_eq!(lists(&client, 300, 64).await, 300);
    let state = client.limiter().state();
    assert_eq!(state.limit, 12.0, "grew to the ceiling: {state:?}");
    assert_eq!(state.backoffs, 0);
    let peak = proxy.peak_in_flight();
    assert!(
        peak > 2,
        "more than the initial 2 were sent at once: {peak}"
    );
    assert!(peak <= 12, "never above the ceiling: {peak}");
}

#[tokio::test]
async fn server_busy_and_too_many_requests_halve_the_limit() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let client = HandleClient::new(
        proxy.endpoint(),
        shared_key(&key),
        options(limits(16, 2, 16)),
    )
    .unwrap();
    warm(&client, 1).await;
    assert_eq!(client.limiter().state().limit, 16.0);

    proxy.script([Some(SERVER_BUSY)]);
    assert_eq!(
        lists(&client, 1, 1).await,
        1,
        "the throttled call is retried"
    );
    let state = client.limiter().state();
    // Halved, then the successful retry raised it a little.
    assert_eq!((state.limit.floor(), state.backoffs), (8.0, 1), "{state:?}");

    proxy.script([Some(TOO_MANY)]);
    assert_eq!(lists(&client, 1, 1).await, 1);
    let state = client.limiter().state();
    assert_eq!((state.limit.floor(), state.backoffs), (4.0, 2), "{state:?}");
}

#[tokio::test]
async fn retry_after_holds_every_request_to_the_endpoint() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let client = Arc::new(
        HandleClient::new(proxy.endpoint(), shared_key(&key), options(limits(8, 2, 8))).unwrap(),
    );
    proxy.script([Some(Refusal {
        retry_after: Some("1"),
        ..SERVER_BUSY
    })]);
    // The throttled call waits out its Retry-After before its retry; another call made after
    // the refusal must wait too, not go out at once.
    let throttled = {
        let client = client.clone();
        tokio::spawn(async move { client.list_handles(&list_req()).await.is_ok() })
    };
    while proxy.state.refused_at.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let refused = proxy.state.refused_at.lock().unwrap()[0];
    assert!(client.list_handles(&list_req()).await.is_ok());
    assert!(throttled.await.unwrap());
    let later: Vec<Duration> = proxy
        .arrivals()
        .into_iter()
        .filter(|&at| at > refused)
        .map(|at| at - refused)
        .collect();
    assert_eq!(later.len(), 2, "{later:?}");
    assert!(
        later.iter().all(|d| *d >= Duration::from_millis(900)),
        "nothing was sent during the pause: {later:?}"
    );
}

#[tokio::test]
async fn a_credential_change_gets_a_new_client_with_the_same_limits() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let pool = ClientPool::new(options(limits(4, 1, 8)), DEFAULT_IDLE_AFTER);
    let stale = AccountKey::random();
    let old = pool.client(proxy.endpoint(), shared_key(&stale)).unwrap();
    let err = old.list_handles(&list_req()).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // The Secret now holds the right key: the next sweep's client uses it.
    let new = pool.client(proxy.endpoint(), shared_key(&key)).unwrap();
    assert!(!Arc::ptr_eq(&old, &new));
    assert!(new.list_handles(&list_req()).await.is_ok());
    assert!(Arc::ptr_eq(old.limiter(), new.limiter()));
    let again = pool.client(proxy.endpoint(), shared_key(&key)).unwrap();
    assert!(Arc::ptr_eq(&new, &again), "same credential, same client");
    // Once no sweep holds the old client and it has been idle, it is dropped.
    drop(old);
    let short = ClientPool::new(options(limits(4, 1, 8)), Duration::ZERO);
    let held = short.client(proxy.endpoint(), shared_key(&key)).unwrap();
    drop(short.client(proxy.endpoint(), shared_key(&stale)).unwrap());
    short.drop_idle();
    assert_eq!(short.len(), (1, 1));
    drop(held);
    short.drop_idle();
    assert!(short.is_empty());
}

#[tokio::test]
async fn two_policies_on_one_endpoint_share_one_limit() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let pool = ClientPool::new(options(limits(4, 1, 4)), DEFAULT_IDLE_AFTER);
    // Two policies with different Secrets for the same account: two clients.
    let a = pool.client(proxy.endpoint(), shared_key(&key)).unwrap();
    let b = pool
        .client(proxy.endpoint(), shared_key(&AccountKey::random()))
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    let (ok_a, ok_b) = tokio::join!(lists(&a, 60, 30), lists(&b, 60, 30));
    assert_eq!((ok_a, ok_b), (60, 0), "b's key is wrong: 403s");
    let peak = proxy.peak_in_flight();
    assert!(peak <= 4, "both policies together stay within 4: {peak}");
}

#[tokio::test]
async fn two_policies_on_one_endpoint_share_one_retry_budget() {
    let (svc, key) = service().await;
    let proxy = Proxy::start(svc.addr).await;
    let pool = ClientPool::new(
        ClientOptions {
            retry_budget: 1,
            ..options(limits(4, 1, 4))
        },
        DEFAULT_IDLE_AFTER,
    );
    let a = pool.client(proxy.endpoint(), shared_key(&key)).unwrap();
    let b = pool
        .client(proxy.endpoint(), shared_key(&AccountKey::random()))
        .unwrap();
    let failing = Refusal {
        status: 500,
        code: "InternalError",
        retry_after: None,
    };
    proxy.script([Some(failing); 4]);
    // a spends the endpoint's one retry; b, for the same struggling endpoint, gets none.
    assert!(a.list_handles(&list_req()).await.is_err());
    assert_eq!(proxy.arrivals().len(), 2, "a: the call and one retry");
    assert!(b.list_handles(&list_req()).await.is_err());
    assert_eq!(proxy.arrivals().len(), 3, "b: the call, no retry");
}
