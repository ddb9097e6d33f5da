//! `HandleClient` through a fault-injecting HTTP proxy in front of the in-process handle
//! service: throttling with and without `Retry-After`, server errors, slow answers, dropped
//! connections. The client must finish with exact totals, never make the service close a
//! handle twice, stop retrying where it should, and give up on time.
//!
//! The proxy decides per request, in arrival order, from a script; a request it faults never
//! reaches the service (a slow answer waits before forwarding, and a client that gave up has
//! closed the connection by then, which drops the forward).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use share_hygiene::auth::{AccountKey, Credential, SasToken};
use share_hygiene::handles::client::{ClientOptions, Endpoint, HandleClient, RetryPolicy};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::handles::{Error, ErrorCategory, HandleService, close_all, pages};
use share_hygiene::protocol::{
    AccessRights, ClosePage, CloseRequest, ErrorCode, HandleSelector, ListPage, ListRequest,
    StorageError, Target, encode_error,
};
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};

const ACCOUNT: &str = "acct";
const SHARE: &str = "faulty";

// ---------------------------------------------------------------------------------------------
// The service, with a count of what it really did
// ---------------------------------------------------------------------------------------------

/// A memory store that counts the calls that reached it and what they closed.
struct Counting {
    inner: Arc<MemoryStore>,
    list_calls: AtomicU64,
    close_calls: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
    /// Ids a close-by-id call closed, in order.
    closed_ids: Mutex<Vec<u64>>,
}

impl HandleService for Counting {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(async move {
            self.list_calls.fetch_add(1, Ordering::SeqCst);
            self.inner.list_handles(req).await
        })
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(async move {
            self.close_calls.fetch_add(1, Ordering::SeqCst);
            let page = self.inner.force_close(req).await?;
            self.closed.fetch_add(page.closed, Ordering::SeqCst);
            self.failed.fetch_add(page.failed, Ordering::SeqCst);
            if let HandleSelector::Id(id) = req.handles
                && page.closed > 0
            {
                self.closed_ids.lock().unwrap().push(id.0);
            }
            Ok(page)
        })
    }
}

struct Service {
    running: RunningServer,
    key: AccountKey,
    store: Arc<MemoryStore>,
    counts: Arc<Counting>,
}

impl Service {
    async fn start(store: MemoryStore) -> Self {
        let key = AccountKey::random();
        let store = Arc::new(store);
        let counts = Arc::new(Counting {
            inner: store.clone(),
            list_calls: AtomicU64::new(0),
            close_calls: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed_ids: Mutex::new(Vec::new()),
        });
        let server = Arc::new(HandleServer::new(
            ServerConfig::new(ACCOUNT, key.clone()),
            counts.clone(),
            Some(store.clone()),
        ));
        let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self {
            running,
            key,
            store,
            counts,
        }
    }

    fn list_calls(&self) -> u64 {
        self.counts.list_calls.load(Ordering::SeqCst)
    }

    fn close_calls(&self) -> u64 {
        self.counts.close_calls.load(Ordering::SeqCst)
    }
}

fn spec(count: u32, fail_close: bool) -> OpenSpec {
    OpenSpec {
        client_ip: "10.7.0.1:445".into(),
        client_name: None,
        session_id: None,
        open_time: jiff::Timestamp::now(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count,
        fail_close,
    }
}

/// `files` files in a few directories with `per_file` handles each.
fn store_with(close_batch: usize, files: u32, per_file: u32) -> MemoryStore {
    let store = MemoryStore::new(close_batch);
    store.create_share(SHARE).unwrap();
    for f in 0..files {
        store
            .open(
                SHARE,
                &format!("d{}/f{f}.dat", f % 3),
                &spec(per_file, false),
            )
            .unwrap();
    }
    store
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// Pass it to the service.
    Forward,
    /// Answer with this error without asking the service.
    Status {
        status: u16,
        code: &'static str,
        retry_after: Option<&'static str>,
    },
    /// Wait this long, then forward (if the client still waits).
    Slow(Duration),
    /// Close the connection without answering or forwarding.
    Drop,
    /// Forward, then send the service's status and headers but only half its body, and break
    /// the connection.
    CutBody,
    /// Answer `status` with a body of `bytes` filler bytes, with or without a
    /// `Content-Length`, without asking the service (a hostile or broken service or proxy).
    Huge {
        status: u16,
        bytes: usize,
        content_length: bool,
    },
    /// Answer `400 InvalidHeaderValue` with a message, a detail and a request id that repeat the
    /// request's `Authorization` value and query (a service that echoes what it was sent).
    Echo,
    /// Stop answering, as a frozen server or a dead node does: hold the connection open and
    /// never answer or forward.
    Silent,
}

const fn status(status: u16, code: &'static str) -> Fault {
    Fault::Status {
        status,
        code,
        retry_after: None,
    }
}

const fn throttle(status: u16, retry_after: &'static str) -> Fault {
    Fault::Status {
        status,
        code: if status == 429 {
            "TooManyRequests"
        } else {
            "ServerBusy"
        },
        retry_after: Some(retry_after),
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    method: String,
    /// The query, as sent.
    query: String,
    /// The `Authorization` value, when sent.
    authorization: Option<String>,
    fault: Fault,
    forwarded: bool,
}

struct Script {
    queue: VecDeque<Fault>,
    /// What to do once the queue is empty.
    otherwise: Fault,
}

struct ProxyState {
    upstream: SocketAddr,
    http: reqwest::Client,
    script: Mutex<Script>,
    log: Mutex<Vec<Seen>>,
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        share_hygiene::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                otherwise: Fault::Forward,
            }),
            log: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
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
        Self { addr, state, task }
    }

    /// Faults for the next requests, in order; then `otherwise` for every later one.
    fn script(&self, queue: impl IntoIterator<Item = Fault>, otherwise: Fault) {
        let mut s = self.state.script.lock().unwrap();
        s.queue = queue.into_iter().collect();
        s.otherwise = otherwise;
    }

    fn log(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("http://{}/{ACCOUNT}", self.addr)).unwrap()
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
    let fault = {
        let mut s = state.script.lock().unwrap();
        s.queue.pop_front().unwrap_or_else(|| s.otherwise.clone())
    };
    let index = {
        let mut log = state.log.lock().unwrap();
        log.push(Seen {
            at: Instant::now(),
            method: req.method().to_string(),
            query: req.uri().query().unwrap_or_default().to_owned(),
            authorization: req
                .headers()
                .get("authorization")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            fault: fault.clone(),
            forwarded: false,
        });
        log.len() - 1
    };
    match fault {
        Fault::Forward => forward(&state, index, req, false).await,
        Fault::Slow(wait) => {
            tokio::time::sleep(wait).await;
            forward(&state, index, req, false).await
        }
        Fault::CutBody => forward(&state, index, req, true).await,
        Fault::Drop => Err(std::io::Error::other("the proxy drops this connection")),
        Fault::Silent => std::future::pending().await,
        Fault::Huge {
            status,
            bytes,
            content_length,
        } => {
            const CHUNK: usize = 64 * 1024;
            let chunks = futures::stream::iter((0..bytes.div_ceil(CHUNK)).map(move |i| {
                let len = CHUNK.min(bytes - i * CHUNK);
                Ok(Frame::data(Bytes::from(vec![b' '; len])))
            }));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            if content_length {
                resp.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, bytes.into());
            }
            Ok(resp)
        }
        Fault::Echo => {
            let sent = format!(
                "Authorization '{}', query '{}'",
                req.headers()
                    .get("authorization")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default(),
                req.uri().query().unwrap_or_default()
            );
            let mut err = StorageError::new(400, ErrorCode::InvalidHeaderValue, sent.clone());
            err.details
                .push(("AuthenticationErrorDetail".into(), sent.clone()));
            let body = encode_error(&err, "echo", jiff::Timestamp::now());
            let mut resp = Response::new(full(Bytes::from(body)));
            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
            let id = sent.replace(|c: char| !c.is_ascii_graphic(), "_");
            resp.headers_mut()
                .insert("x-ms-request-id", id.parse().unwrap());
            Ok(resp)
        }
        Fault::Status {
            status,
            code,
            retry_after,
        } => {
            let err = StorageError::new(status, ErrorCode::parse(code), "Injected by the proxy.");
            let body = encode_error(&err, "proxy-request-id", jiff::Timestamp::now());
            let mut resp = Response::new(full(Bytes::from(body)));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            let h = resp.headers_mut();
            h.insert("x-ms-error-code", code.parse().unwrap());
            h.insert(
                "x-ms-request-id",
                "00000000-0000-0000-0000-00000000beef".parse().unwrap(),
            );
            h.insert("content-type", "application/xml".parse().unwrap());
            if let Some(after) = retry_after {
                h.insert("retry-after", after.parse().unwrap());
            }
            Ok(resp)
        }
    }
}

async fn forward(
    state: &ProxyState,
    index: usize,
    req: Request<Incoming>,
    cut: bool,
) -> Result<Response<ProxyBody>, std::io::Error> {
    state.log.lock().unwrap()[index].forwarded = true;
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
    let body = if cut {
        // Chunked (no length): the head and half the bytes go out, and a moment later the
        // body fails, so hyper breaks the connection mid-body.
        let half = body.slice(..body.len() / 2);
        let frames = futures::stream::unfold(Some(half), |state| async move {
            match state {
                Some(half) => Some((Ok(Frame::data(half)), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Err(std::io::Error::other("the proxy cuts this body")), None))
                }
            }
        });
        BodyExt::boxed(StreamBody::new(frames))
    } else {
        full(body)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long one request may take; slow answers take longer.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

/// Fast options: short per-request timeout, 10 ms backoff.
fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: REQUEST_TIMEOUT,
        operation_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        retry_budget: 20,
        ..ClientOptions::default()
    }
}

const SLOW: Fault = Fault::Slow(Duration::from_millis(900));

/// Waits until every slow request the proxy saw would have been forwarded had the proxy not
/// dropped it with the client's connection, so that a late forward shows in the counts.
async fn outlast_slow_requests(proxy: &Proxy) {
    let Fault::Slow(delay) = SLOW else {
        unreachable!()
    };
    for seen in proxy.log().iter().filter(|s| s.fault == SLOW) {
        let until = seen.at + delay + Duration::from_millis(200);
        tokio::time::sleep_until(until.into()).await;
    }
}

fn client(proxy: &Proxy, svc: &Service, options: ClientOptions) -> HandleClient {
    HandleClient::new(
        proxy.endpoint(),
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key: svc.key.clone(),
        },
        options,
    )
    .unwrap()
}

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}

fn root() -> Target {
    Target::directory(SHARE, "", true)
}

fn list_req() -> ListRequest {
    ListRequest {
        target: root(),
        marker: None,
        max_results: Some(10),
    }
}

async fn list_ids(client: &HandleClient, page_size: u32) -> Result<Vec<u64>, Error> {
    let pages: Vec<ListPage> = pages(client, root(), Some(page_size)).try_collect().await?;
    Ok(pages
        .iter()
        .flat_map(|p| &p.handles)
        .map(|h| h.handle_id.0)
        .collect())
}

fn faults_in(log: &[Seen]) -> usize {
    log.iter().filter(|s| s.fault != Fault::Forward).count()
}

// ---------------------------------------------------------------------------------------------
// Completing through faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_completes_through_every_kind_of_fault() {
    let svc = Service::start(store_with(1000, 12, 5)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let fwd = Fault::Forward;
    proxy.script(
        [
            throttle(503, "0"),
            fwd.clone(), // page 1
            status(500, "InternalError"),
            status(429, "TooManyRequests"),
            fwd.clone(), // page 2
            Fault::Drop,
            fwd.clone(), // page 3
            SLOW,
            fwd.clone(), // page 4
            status(502, "BadGateway"),
            status(504, "GatewayTimeout"),
        ],
        Fault::Forward,
    );
    let client = client(&proxy, &svc, options());

    let ids = list_ids(&client, 10).await.unwrap();
    assert_eq!(ids.len(), 60);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        60,
        "no duplicates"
    );

    let log = proxy.log();
    assert_eq!(log.len(), 6 + 7, "6 pages and 7 faults");
    assert_eq!(faults_in(&log), 7);
    assert_eq!(
        log.iter().filter(|s| s.forwarded).count(),
        6,
        "no faulted request reached the service"
    );
    let stats = client.stats();
    assert_eq!(stat(&stats.requests), 13);
    assert_eq!(stat(&stats.retries), 7);
    assert_eq!(stat(&stats.throttled), 2, "the 503 and the 429");
    // The slow request's forward was dropped with the client's connection: past its delay,
    // the service still saw only the six pages.
    outlast_slow_requests(&proxy).await;
    assert_eq!(svc.list_calls(), 6);
    assert!(!log.iter().any(|s| s.fault == SLOW && s.forwarded));
}

#[tokio::test]
async fn close_all_through_faults_has_exact_totals_and_closes_nothing_twice() {
    // 95 handles, 5 of which refuse to close; 10 per Force Close Handles call.
    let store = store_with(10, 9, 10);
    store.open(SHARE, "d0/locked.dat", &spec(5, true)).unwrap();
    let svc = Service::start(store).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let fwd = Fault::Forward;
    proxy.script(
        [
            fwd.clone(),
            throttle(503, "0"),
            fwd.clone(),
            status(500, "InternalError"),
            Fault::Drop,
            fwd.clone(),
            SLOW,
            fwd.clone(),
            status(429, "TooManyRequests"),
            status(503, "ServerBusy"),
            fwd.clone(),
            Fault::Drop,
        ],
        Fault::Forward,
    );
    let client = client(&proxy, &svc, options());

    let out = close_all(&client, root(), HandleSelector::All).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.closed, out.failed, out.calls), (90, 5, 10));

    // The service did exactly as much: ten batches, 90 closed, no batch run twice (not even
    // late, by the slow request).
    outlast_slow_requests(&proxy).await;
    assert_eq!(svc.close_calls(), 10);
    assert_eq!(stat(&svc.counts.closed), 90);
    assert_eq!(stat(&svc.counts.failed), 5);
    assert_eq!(
        svc.store.stats().handles,
        5,
        "only the locked ones are left"
    );
    let log = proxy.log();
    assert_eq!(faults_in(&log), 7);
    assert_eq!(log.len(), 17);
    assert!(log.iter().all(|s| s.method == "PUT"));
    assert_eq!(stat(&client.stats().retries), 7);
}

#[tokio::test]
async fn close_by_id_through_faults_closes_each_handle_exactly_once() {
    let svc = Service::start(store_with(1000, 8, 5)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(
        &proxy,
        &svc,
        ClientOptions {
            retry: RetryPolicy {
                max_retries: 6,
                ..options().retry
            },
            ..options()
        },
    );
    let handles: Vec<_> = pages(&client, root(), Some(7))
        .try_collect::<Vec<ListPage>>()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|p| p.handles)
        .collect();
    assert_eq!(handles.len(), 40);

    // Faults spread over the close calls; 8 in flight at a time.
    let mut faults = Vec::new();
    for i in 0..12 {
        faults.push(match i % 4 {
            0 => throttle(503, "0"),
            1 => status(500, "InternalError"),
            2 => Fault::Drop,
            _ => Fault::Forward,
        });
        faults.push(Fault::Forward);
    }
    proxy.clear_log();
    proxy.script(faults, Fault::Forward);
    let outcomes: Vec<_> = futures::stream::iter(handles.iter())
        .map(|h| {
            close_all(
                &client,
                Target::resource(SHARE, h.path.clone()),
                HandleSelector::Id(h.handle_id),
            )
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for out in &outcomes {
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!((out.closed, out.calls), (1, 1));
    }
    let closed_ids = svc.counts.closed_ids.lock().unwrap().clone();
    assert_eq!(closed_ids.len(), 40, "one close each");
    let unique: BTreeSet<u64> = closed_ids.iter().copied().collect();
    assert_eq!(unique.len(), 40, "no handle closed twice");
    let listed: BTreeSet<u64> = handles.iter().map(|h| h.handle_id.0).collect();
    assert_eq!(unique, listed);
    assert_eq!(
        svc.close_calls(),
        40,
        "no faulted close reached the service"
    );
    assert_eq!(svc.store.stats().handles, 0);
    assert_eq!(faults_in(&proxy.log()), 9);
}

// ---------------------------------------------------------------------------------------------
// When and how long to wait
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retry_after_is_honoured() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    // Backoff alone would wait at most 10 ms; only Retry-After explains a longer wait.
    let client = client(
        &proxy,
        &svc,
        ClientOptions {
            retry: RetryPolicy {
                max_delay: Duration::from_secs(5),
                ..options().retry
            },
            ..options()
        },
    );

    proxy.script([throttle(503, "1")], Fault::Forward);
    let started = Instant::now();
    let page = client.list_handles(&list_req()).await.unwrap();
    assert_eq!(page.handles.len(), 4);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 waited only {:?}",
        started.elapsed()
    );
    let log = proxy.log();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= Duration::from_secs(1));

    // The same with a 429.
    proxy.clear_log();
    proxy.script([throttle(429, "1")], Fault::Forward);
    client.list_handles(&list_req()).await.unwrap();
    let log = proxy.log();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= Duration::from_secs(1));

    // `max_delay` caps every wait, Retry-After included (documented on RetryPolicy): with a
    // 50 ms cap, Retry-After: 30 is not waited out.
    proxy.clear_log();
    proxy.script([throttle(503, "30")], Fault::Forward);
    let capped = HandleClient::new(
        proxy.endpoint(),
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key: svc.key.clone(),
        },
        options(),
    )
    .unwrap();
    capped.list_handles(&list_req()).await.unwrap();
    let log = proxy.log();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at < Duration::from_secs(10));

    // A Retry-After longer than what is left of the call's time: give up at once with the
    // throttling error rather than sleep into the timeout.
    proxy.clear_log();
    proxy.script([throttle(429, "30")], Fault::Forward);
    let patient = HandleClient::new(
        proxy.endpoint(),
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key: svc.key.clone(),
        },
        ClientOptions {
            operation_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_delay: Duration::from_secs(60),
                ..options().retry
            },
            ..options()
        },
    )
    .unwrap();
    let err = patient.list_handles(&list_req()).await.unwrap_err();
    assert_eq!(err.storage_error().map(|e| e.status), Some(429), "{err:?}");
    assert_eq!(err.category(), ErrorCategory::Throttled);
    assert_eq!(proxy.log().len(), 1);
}

#[tokio::test]
async fn no_retry_on_400_403_404() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(&proxy, &svc, options());

    for (fault, category) in [
        (
            status(400, "InvalidQueryParameterValue"),
            ErrorCategory::InvalidRequest,
        ),
        (
            status(403, "AuthenticationFailed"),
            ErrorCategory::AuthenticationFailed,
        ),
        (status(404, "ShareNotFound"), ErrorCategory::ShareNotFound),
        (status(404, "ResourceNotFound"), ErrorCategory::PathNotFound),
    ] {
        let Fault::Status { status, .. } = fault else {
            unreachable!()
        };
        proxy.clear_log();
        proxy.script([], fault.clone());
        let err = client.list_handles(&list_req()).await.unwrap_err();
        assert_eq!(err.storage_error().map(|e| e.status), Some(status));
        assert_eq!(err.category(), category, "{fault:?}");
        let out = close_all(&client, root(), HandleSelector::All).await;
        assert_eq!(out.error.map(|e| e.category()), Some(category));
        assert_eq!(proxy.log().len(), 2, "{fault:?}: one try each, no retry");
    }
    assert_eq!(stat(&client.stats().retries), 0);

    // The service's own refusals are not retried either.
    proxy.clear_log();
    proxy.script([], Fault::Forward);
    let missing = ListRequest {
        target: Target::directory("no-such-share", "", true),
        marker: None,
        max_results: None,
    };
    let err = client.list_handles(&missing).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::ShareNotFound);
    let wrong = HandleClient::new(
        proxy.endpoint(),
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key: AccountKey::random(),
        },
        options(),
    )
    .unwrap();
    let err = wrong.list_handles(&list_req()).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::AuthenticationFailed);
    assert_eq!(proxy.log().len(), 2);
    assert_eq!(stat(&client.stats().retries), 0);
    assert_eq!(stat(&wrong.stats().retries), 0);
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let opts = ClientOptions {
        retry_budget: 100,
        ..options()
    };
    // A SAS whose signature must never show in an error.
    let sas = SasToken::new("sv=2025-11-05&sr=s&sp=rwl&se=2099-01-01&sig=TOPSECRETSIG").unwrap();
    let client = HandleClient::new(proxy.endpoint(), Credential::Sas(sas), opts).unwrap();

    for (fault, category) in [
        (status(503, "ServerBusy"), ErrorCategory::Throttled),
        (status(500, "InternalError"), ErrorCategory::ServiceError),
        (Fault::Drop, ErrorCategory::Unreachable),
    ] {
        proxy.clear_log();
        proxy.script([], fault.clone());
        let retries_before = stat(&client.stats().retries);
        let err = client.list_handles(&list_req()).await.unwrap_err();
        assert_eq!(err.category(), category, "{err:?}");
        assert_eq!(
            proxy.log().len(),
            4,
            "{fault:?}: one try and max_retries (3) more"
        );
        assert_eq!(stat(&client.stats().retries) - retries_before, 3);
        let text = format!("{err} {err:?}");
        assert!(text.starts_with("faulty:"), "{text}");
        assert!(!text.contains("TOPSECRETSIG"), "{text}");
        if fault == Fault::Drop {
            assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        }
    }
    assert_eq!(svc.list_calls(), 0);
}

#[tokio::test]
async fn the_retry_budget_stops_retries_and_refills_with_successes() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    // Budget of 2 retries, each request earns a tenth of one; far more allowed per call.
    let client = client(
        &proxy,
        &svc,
        ClientOptions {
            retry_budget: 2,
            retry: RetryPolicy {
                max_retries: 10,
                ..options().retry
            },
            ..options()
        },
    );
    let tries = |proxy: &Proxy| {
        let n = proxy.log().len();
        proxy.clear_log();
        n
    };

    // The service fails everything: the full budget buys two retries...
    proxy.script([], throttle(503, "0"));
    assert!(client.list_handles(&list_req()).await.is_err());
    assert_eq!(tries(&proxy), 3);
    // ...and then none at all.
    let err = client.list_handles(&list_req()).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Throttled);
    assert_eq!(tries(&proxy), 1);

    // Seven good requests earn back the retry (0.3 + 0.7).
    proxy.script([], Fault::Forward);
    for _ in 0..7 {
        client.list_handles(&list_req()).await.unwrap();
    }
    tries(&proxy);
    proxy.script([throttle(503, "0")], Fault::Forward);
    let page = client.list_handles(&list_req()).await.unwrap();
    assert_eq!(page.handles.len(), 4);
    assert_eq!(tries(&proxy), 2, "one retry was affordable again");
    proxy.script([throttle(503, "0")], Fault::Forward);
    assert!(client.list_handles(&list_req()).await.is_err());
    assert_eq!(tries(&proxy), 1, "and spent");
    assert_eq!(stat(&client.stats().retries), 3);
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_answer_is_retried_after_the_request_timeout() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(&proxy, &svc, options());
    proxy.script([SLOW, SLOW], Fault::Forward);
    let started = Instant::now();
    let page = client.list_handles(&list_req()).await.unwrap();
    assert_eq!(page.handles.len(), 4);
    assert!(
        started.elapsed() >= 2 * REQUEST_TIMEOUT,
        "two request timeouts"
    );
    let log = proxy.log();
    assert_eq!(log.len(), 3);
    assert_eq!(stat(&client.stats().retries), 2);
    assert_eq!(svc.list_calls(), 1);
}

#[tokio::test]
async fn the_per_call_timeout_fires_with_error_timeout() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    // Each request may take 5 s, the whole call only 400 ms: the call's limit must win.
    let client = client(
        &proxy,
        &svc,
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_millis(400),
            ..options()
        },
    );
    proxy.script([], Fault::Slow(Duration::from_secs(30)));
    let err = client.list_handles(&list_req()).await.unwrap_err();
    let Error::Timeout { target, after } = &err else {
        panic!("expected Error::Timeout, got {err:?}")
    };
    assert_eq!(
        (target.as_str(), *after),
        ("faulty", Duration::from_millis(400))
    );
    assert_eq!(err.category(), ErrorCategory::Unreachable);
    assert!(
        err.to_string().starts_with("faulty: gave up after"),
        "{err}"
    );

    // The same for a close loop: its error is the timeout, and nothing was closed.
    let out = close_all(&client, root(), HandleSelector::All).await;
    assert!(
        matches!(out.error, Some(Error::Timeout { .. })),
        "{:?}",
        out.error
    );
    assert_eq!((out.closed, out.calls), (0, 0));

    // Retrying into the limit ends the same way: 503s with short waits until 400 ms are up.
    proxy.script([], throttle(503, "0"));
    let client = client_with_budget(&proxy, &svc, 1000);
    let err = client.list_handles(&list_req()).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. } | Error::Service { .. }),
        "{err:?}"
    );
    assert_eq!(svc.list_calls(), 0);
    assert_eq!(svc.store.stats().handles, 4);
}

fn client_with_budget(proxy: &Proxy, svc: &Service, budget: u32) -> HandleClient {
    client(
        proxy,
        svc,
        ClientOptions {
            operation_timeout: Duration::from_millis(400),
            retry_budget: budget,
            retry: RetryPolicy {
                max_retries: u32::MAX,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(20),
            },
            ..options()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Regressions: bugs this suite found, now fixed
// ---------------------------------------------------------------------------------------------

/// A List Handles answer whose body breaks off midway (a connection reset while a large page
/// streams, as the real service sends them chunked) should be retried like any broken
/// connection: listing is idempotent. (The client used to read the body after the retry loop,
/// so the whole listing failed at once.)
#[tokio::test]
async fn a_list_body_cut_off_midway_is_retried() {
    let svc = Service::start(store_with(1000, 10, 30)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(&proxy, &svc, options());
    proxy.script([Fault::CutBody], Fault::Forward);
    let result = list_ids(&client, 5000).await;
    let listed = result.unwrap_or_else(|e| panic!("the listing failed instead of retrying: {e}"));
    assert_eq!(listed.len(), 300);
    assert_eq!(proxy.log().len(), 2, "one cut answer and one retry");
}

/// A retry the client decides not to make, because the wait (here a long Retry-After) would
/// end past the call's deadline, should not spend the shared retry budget: no retry was sent.
/// (The client used to withdraw from the budget before checking the deadline, so the next
/// call, which could retry at once, got no retry at all.)
#[tokio::test]
async fn a_retry_that_is_not_made_does_not_spend_the_budget() {
    let svc = Service::start(store_with(1000, 2, 2)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(
        &proxy,
        &svc,
        ClientOptions {
            retry_budget: 1,
            operation_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(60),
            },
            ..options()
        },
    );
    // Retry-After: 30 s does not fit in the call's 2 s: the call gives up without retrying.
    proxy.script([throttle(503, "30")], Fault::Forward);
    let err = client.list_handles(&list_req()).await.unwrap_err();
    assert_eq!(err.storage_error().map(|e| e.status), Some(503));
    assert_eq!(stat(&client.stats().retries), 0, "no retry was made");
    // The budget (one retry) is untouched, so this call can retry its 503 at once.
    proxy.clear_log();
    proxy.script([throttle(503, "0")], Fault::Forward);
    let page = client.list_handles(&list_req()).await;
    assert_eq!(proxy.log().len(), 2, "the 503 and its retry");
    assert_eq!(page.expect("retried").handles.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Secrets never reach an error; answers are read within bounds
// ---------------------------------------------------------------------------------------------

fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("client-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Pieces of a secret long enough to be recognised: an error holding any of them leaks it.
fn pieces(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8.min(chars.len()))
        .step_by(4)
        .map(|w| w.iter().collect())
        .collect()
}

fn assert_no_piece_of(text: &str, secret: &str, what: &str) {
    for piece in pieces(secret) {
        assert!(
            !text.contains(&piece),
            "{what}: the error holds {piece:?} of the secret: {text}"
        );
    }
}

#[tokio::test]
async fn an_echoing_service_never_gets_a_secret_into_an_error() {
    let svc = Service::start(store_with(1000, 1, 1)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let token = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJzaGFyZS1oeWdpZW5lIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
    let token_file = temp_file("echo-token", token.as_bytes());
    let sig = "c2VjcmV0LXNhcy1zaWduYXR1cmUtMTIzNA%3D%3D";
    let sas = format!("sv=2026-10-06&sp=rl&sr=s&se=2030-01-01T00%3A00%3A00Z&sig={sig}");
    let cases = [
        (
            "shared key",
            Credential::SharedKey {
                account: ACCOUNT.into(),
                key: svc.key.clone(),
            },
            svc.key.to_base64(),
        ),
        (
            "sas",
            Credential::Sas(SasToken::new(&sas).unwrap()),
            "c2VjcmV0LXNhcy1zaWduYXR1cmUtMTIzNA".to_owned(),
        ),
        (
            "bearer",
            Credential::BearerTokenFile(token_file.clone()),
            token.to_owned(),
        ),
    ];
    for (what, credential, secret) in cases {
        proxy.clear_log();
        proxy.script([Fault::Echo], Fault::Forward);
        let client = HandleClient::new(proxy.endpoint(), credential, options()).unwrap();
        let err = client.list_handles(&list_req()).await.unwrap_err();
        let text = format!("{err} | {err:?}");
        let log = proxy.log();
        assert_eq!(log.len(), 1, "{what}: a 400 is not retried");
        // The service did echo the request's credential; the error holds none of it.
        let sent = log[0]
            .authorization
            .as_deref()
            .map(|a| a.rsplit([':', ' ']).next().unwrap().to_owned())
            .unwrap_or_else(|| log[0].query.clone());
        assert!(!sent.is_empty());
        assert_no_piece_of(&text, &secret, what);
        if what != "sas" {
            assert_no_piece_of(&text, &sent, what);
        }
        assert!(text.contains("<redacted>"), "{what}: {text}");
        assert_eq!(err.category(), ErrorCategory::InvalidRequest, "{what}");
    }
}

#[tokio::test]
async fn a_bearer_token_with_a_stray_byte_is_refused_without_echoing_it() {
    let svc = Service::start(store_with(1000, 1, 1)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let token = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOi\u{1}Jib2IifQ.c2lnbmF0dXJlLWJ5dGVz";
    let file = temp_file("stray-byte-token", format!("{token}\n").as_bytes());
    let client = HandleClient::new(
        proxy.endpoint(),
        Credential::BearerTokenFile(file),
        options(),
    )
    .unwrap();
    let err = client.list_handles(&list_req()).await.unwrap_err();
    let text = format!("{err} | {err:?}");
    for part in token.split('\u{1}') {
        assert_no_piece_of(&text, part, "bearer");
    }
    assert!(text.contains("offset 29"), "{text}");
    assert!(proxy.log().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn oversized_answers_are_refused_naming_the_limit() {
    // The client's limits (`MAX_LIST_BODY`, `MAX_SMALL_BODY`), as documented.
    const MAX_LIST_BODY: usize = 40 << 20;
    const MAX_SMALL_BODY: usize = 64 << 10;
    let svc = Service::start(store_with(1000, 1, 1)).await;
    let proxy = Proxy::start(svc.running.addr).await;
    let client = client(&proxy, &svc, options());
    let close = CloseRequest {
        target: root(),
        handles: HandleSelector::All,
        marker: None,
    };
    let huge = |status, bytes, content_length| Fault::Huge {
        status,
        bytes,
        content_length,
    };
    // A list page beyond 5,000 handles' worth, announced or streamed.
    for content_length in [true, false] {
        proxy.script(
            [huge(200, MAX_LIST_BODY + 1, content_length)],
            Fault::Forward,
        );
        let err = client.list_handles(&list_req()).await.unwrap_err();
        assert_eq!(err.category(), ErrorCategory::Protocol, "{err}");
        assert!(err.to_string().contains("larger than 40 MiB"), "{err}");
        assert!(err.to_string().contains("5,000 handles takes"), "{err}");
    }
    // A close answer (empty on the wire) that is not small.
    proxy.script([huge(200, MAX_SMALL_BODY + 1, false)], Fault::Forward);
    let err = client.force_close(&close).await.unwrap_err();
    assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    // An error body that is not small: the status still tells what happened.
    proxy.script([huge(409, 10 * MAX_SMALL_BODY, false)], Fault::Forward);
    let err = client.list_handles(&list_req()).await.unwrap_err();
    assert_eq!(err.storage_error().map(|e| e.status), Some(409), "{err}");
    assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    assert_eq!(
        svc.list_calls() + svc.close_calls(),
        0,
        "all answered by the proxy"
    );
    // Answers within the limits still work.
    assert_eq!(list_ids(&client, 5000).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The CLI sends only what the protocol needs
// ---------------------------------------------------------------------------------------------

/// Runs `share-hygiene handles close` against the service, with its key in the environment.
async fn handles_close(svc: &Service, args: &[&str]) -> std::process::Output {
    let url = format!("http://{}/{ACCOUNT}/{SHARE}", svc.running.addr);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .args(["handles", "close", "--share-url", &url])
        .args(args)
        .env("AZURE_STORAGE_KEY", svc.key.to_base64())
        .env_remove("AZURE_STORAGE_ACCOUNT")
        .env_remove("AZURE_STORAGE_SAS_TOKEN")
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn open_handles(store: &MemoryStore) -> Vec<share_hygiene::protocol::Handle> {
    pages(store, root(), None)
        .try_collect::<Vec<ListPage>>()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|p| p.handles)
        .collect()
}

#[tokio::test]
async fn handles_close_by_id_at_a_file_sends_one_force_close_request() {
    let svc = Service::start(store_with(10, 9, 10)).await;
    let open = open_handles(&svc.store).await;
    let victim = &open[17];
    let id = victim.handle_id.0.to_string();
    handles_close(&svc, &["--handle-id", &id, "--path", &victim.path]).await;
    assert_eq!(
        (svc.list_calls(), svc.close_calls()),
        (0, 1),
        "one Force Close Handles request, at that path, and no listing"
    );
    assert_eq!(*svc.counts.closed_ids.lock().unwrap(), [victim.handle_id.0]);
    assert_eq!(svc.store.stats().handles, 89);
}

#[tokio::test]
async fn handles_close_all_sends_force_close_requests_only() {
    // 90 handles on 9 files in d0..d2; the service closes 10 per call.
    let svc = Service::start(store_with(10, 9, 10)).await;
    let out = handles_close(&svc, &["--all", "--recursive", "-o", "json"]).await;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["closed"], 90);
    assert_eq!(summary["requests"], 9);
    assert_eq!(svc.list_calls(), 0, "close --all lists nothing");
    assert_eq!(svc.close_calls(), 9, "`*` requests following x-ms-marker");
    assert_eq!(svc.store.stats().handles, 0);
}

#[tokio::test]
async fn handles_close_by_id_below_a_directory_and_dry_runs_still_list() {
    let svc = Service::start(store_with(10, 9, 10)).await;
    let open = open_handles(&svc.store).await;
    let victim = open.iter().find(|h| h.path.starts_with("d1/")).unwrap();

    // A dry run lists and sends no close.
    let out = handles_close(
        &svc,
        &[
            "--all",
            "--path",
            "d1",
            "--recursive",
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 30);
    assert_eq!((svc.list_calls() > 0, svc.close_calls()), (true, 0));

    // A dry run by id at a file's path finds it there.
    let out = handles_close(
        &svc,
        &[
            "--handle-id",
            &victim.handle_id.0.to_string(),
            "--path",
            &victim.path,
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["handleId"], victim.handle_id.0);
    assert_eq!(svc.close_calls(), 0);

    // By id under a directory: not on the directory itself, so it is found below and closed
    // through its own path.
    let id = victim.handle_id.0.to_string();
    handles_close(&svc, &["--handle-id", &id, "--path", "d1"]).await;
    assert_eq!(*svc.counts.closed_ids.lock().unwrap(), [victim.handle_id.0]);
    assert_eq!(svc.store.stats().handles, 89);
}

// ---------------------------------------------------------------------------------------------
// A sweep whose service dies gives up within the client's per-call limit
// ---------------------------------------------------------------------------------------------

/// A share's client, counting the handles it closed by id; after `kill_after`, the proxy goes
/// silent (the service "dies": connections stay open, nothing answers), once.
struct KillAfter {
    inner: HandleClient,
    closed: Arc<AtomicU64>,
    kill_after: u64,
    kill: Arc<dyn Fn() + Send + Sync>,
}

impl HandleService for KillAfter {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        self.inner.list_handles(req)
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(async move {
            let page = self.inner.force_close(req).await?;
            if matches!(req.handles, HandleSelector::Id(_))
                && page.closed > 0
                && self.closed.fetch_add(1, Ordering::SeqCst) + 1 == self.kill_after
            {
                (self.kill)();
            }
            Ok(page)
        })
    }
}

/// Runs a sweep over `shares` shares on one endpoint (each: 3 stale files of 10 handles closed
/// by id, and a rename-guarded directory closed with `*`), kills the service after 40 closes,
/// and checks that the sweep ends within the give-up bound and reports only what happened.
async fn sweep_through_a_death(death: Fault) {
    use share_hygiene::api::HandlePolicySpec;
    use share_hygiene::sweep::{Outcome, SweepInput, SweepOptions, never_stop, sweep};

    const SHARES: usize = 10;
    /// The give-up bound under test: the client's per-call limit.
    const BOUND: Duration = Duration::from_secs(2);
    /// Time for everything but waiting: rendering, scheduling on a busy machine.
    const MARGIN: Duration = Duration::from_millis(1500);

    let store = MemoryStore::new(1000);
    let stale = OpenSpec {
        open_time: jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48),
        ..spec(10, false)
    };
    let names: Vec<String> = (0..SHARES).map(|i| format!("share-{i}")).collect();
    for name in &names {
        store.create_share(name).unwrap();
        for f in 0..3 {
            store.open(name, &format!("data/f{f}.dat"), &stale).unwrap();
        }
        store.open(name, "guarded/g.dat", &spec(5, false)).unwrap();
    }
    let svc = Service::start(store).await;
    let proxy = Proxy::start(svc.running.addr).await;

    let endpoint = proxy.endpoint().to_string();
    let shares: String = names
        .iter()
        .map(|n| format!("  - {{ endpoint: \"{endpoint}\", share: {n}, credentialsSecretRef: {{ name: k }} }}\n"))
        .collect();
    let spec: HandlePolicySpec = serde_saphyr::from_str(&format!(
        "mode: Enforce\nshares:\n{shares}rules:\n  stale: {{ openLongerThan: 1h }}\n  renameGuard: {{ paths: [guarded] }}\nlimits: {{ maxClosesPerSweep: 100000, safetyValvePercent: 100 }}\n"
    ))
    .unwrap();
    let policy = share_hygiene::policy::compile(&spec).unwrap();

    let died = Arc::new(Mutex::new(None::<Instant>));
    let kill: Arc<dyn Fn() + Send + Sync> = {
        let (state, died) = (proxy.state.clone(), died.clone());
        Arc::new(move || {
            let mut script = state.script.lock().unwrap();
            script.queue.clear();
            script.otherwise = death.clone();
            died.lock().unwrap().get_or_insert_with(Instant::now);
        })
    };
    let closed = Arc::new(AtomicU64::new(0));
    let options = ClientOptions {
        request_timeout: BOUND,
        operation_timeout: BOUND,
        ..options()
    };
    let mut clients = Vec::new();
    let services = names
        .iter()
        .map(|_| {
            let killer = Arc::new(KillAfter {
                inner: client(&proxy, &svc, options.clone()),
                closed: closed.clone(),
                kill_after: 40,
                kill: kill.clone(),
            });
            clients.push(killer.clone());
            Ok(killer as Arc<dyn HandleService>)
        })
        .collect();
    let input = SweepInput {
        policy: &policy,
        services,
        cluster: None,
        orphans: Default::default(),
        now: jiff::Timestamp::now(),
        stop: never_stop(),
    };
    let report = sweep(input, &SweepOptions::default()).await;
    let ended = Instant::now();

    let died = died.lock().unwrap().expect("the service died mid-sweep");
    let after_death = ended - died;
    assert!(
        after_death < BOUND + MARGIN,
        "the sweep went on for {after_death:?} after the service died (bound {BOUND:?})"
    );

    // True: every handle reported closed is closed, and every handle the service closed by id
    // is reported closed (its answer came back before the death).
    let still_open: BTreeSet<(String, u64)> = {
        let mut open = BTreeSet::new();
        for name in &names {
            let target = Target::directory(name, "", true);
            let pages: Vec<ListPage> = pages(&*svc.store, target, None)
                .try_collect()
                .await
                .unwrap();
            open.extend(
                pages
                    .iter()
                    .flat_map(|p| &p.handles)
                    .map(|h| (name.clone(), h.handle_id.0)),
            );
        }
        open
    };
    let reported_closed: BTreeSet<u64> = report
        .decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Closed)
        .map(|d| d.handle_id.0)
        .collect();
    let service_closed: BTreeSet<u64> = svc
        .counts
        .closed_ids
        .lock()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(
        reported_closed, service_closed,
        "closed by id: reported as the service did"
    );
    for d in &report.decisions {
        let open = still_open.contains(&(d.share.clone(), d.handle_id.0));
        match d.outcome {
            Outcome::Closed | Outcome::ClosedByWildcard => {
                assert!(
                    !open,
                    "{} {} reported closed but open",
                    d.share, d.handle_id.0
                )
            }
            Outcome::Failed | Outcome::NotClosed(_) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    // Failed: only closes that were sent and got no answer: at most the ones in flight (each
    // share's client's limit) plus the ones waiting to retry. Closes still waiting for room
    // to send are not failed.
    let failed = report
        .decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Failed)
        .count() as u64;
    let in_flight: u64 = clients
        .iter()
        .map(|c| c.inner.limiter().state().peak_in_flight as u64)
        .sum();
    let retries: u64 = clients.iter().map(|c| stat(&c.inner.stats().retries)).sum();
    assert!(
        failed <= in_flight + retries,
        "{failed} reported failed; at most {in_flight} in flight, {retries} retries"
    );
    let reported: u64 = report.shares.iter().map(|s| s.closed_total()).sum();
    assert_eq!(
        reported,
        stat(&svc.counts.closed),
        "the closed counts are what the service closed"
    );
    assert!(reported >= 40 && reported < (SHARES as u64) * 35);
    // The shares not finished when it died failed as unreachable; none claims more.
    let failed: Vec<_> = report
        .shares
        .iter()
        .filter_map(|s| s.error.as_ref())
        .collect();
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|e| e.category == ErrorCategory::Unreachable),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_sweep_gives_up_within_the_bound_when_its_service_goes_silent() {
    sweep_through_a_death(Fault::Silent).await;
}

#[tokio::test]
async fn a_sweep_gives_up_within_the_bound_when_its_service_is_killed() {
    sweep_through_a_death(Fault::Drop).await;
}
