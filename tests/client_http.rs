//! `HandleClient` against the in-process handle service over real HTTP on 127.0.0.1: paging,
//! markers under churn, closing by id and by `*`, every credential kind, and the errors a
//! caller sees. A tiny capture server checks what goes on the wire where the service cannot
//! tell (x-ms-recursive, bearer headers).

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use tokio::net::TcpListener;

use share_hygiene::auth::{AccountKey, ConnectionString, Credential, SasToken};
use share_hygiene::handles::client::{
    ClientError, ClientOptions, Endpoint, HandleClient, RetryPolicy,
};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::handles::{Error, ErrorCategory, HandleService, close_all, pages};
use share_hygiene::protocol::{
    AccessRights, CloseRequest, ErrorCode, Handle, HandleId, HandleSelector, ListPage, ListRequest,
    ServiceVersion, Target, encode_list,
};
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};

const ACCOUNT: &str = "acct";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A running handle service over a memory store the test keeps a handle on (to act as the
/// SMB clients between requests).
struct Service {
    running: RunningServer,
    key_b64: String,
    store: Arc<MemoryStore>,
}

impl Service {
    async fn start(store: MemoryStore) -> Self {
        let key = AccountKey::random();
        let key_b64 = key.to_base64();
        let store = Arc::new(store);
        let server = Arc::new(HandleServer::memory(
            ServerConfig::new(ACCOUNT, key),
            store.clone(),
        ));
        let running = server
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .expect("binding 127.0.0.1:0");
        Self {
            running,
            key_b64,
            store,
        }
    }

    fn endpoint_url(&self) -> String {
        format!("http://{}/{ACCOUNT}", self.running.addr)
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&self.endpoint_url()).unwrap()
    }

    fn key(&self) -> AccountKey {
        AccountKey::from_base64(&self.key_b64).unwrap()
    }

    fn shared_key(&self) -> Credential {
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key: self.key(),
        }
    }

    fn client(&self) -> HandleClient {
        self.client_with(self.shared_key())
    }

    fn client_with(&self, credential: Credential) -> HandleClient {
        HandleClient::new(self.endpoint(), credential, options()).unwrap()
    }

    async fn stop(self) {
        self.running.shutdown().await;
    }
}

/// Small, fast client options: a mistake shows as a failure, never as a long wait.
fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        ..ClientOptions::default()
    }
}

fn spec(client_ip: &str, count: u32) -> OpenSpec {
    OpenSpec {
        client_ip: client_ip.into(),
        client_name: Some("pod-a".into()),
        session_id: None,
        open_time: jiff::Timestamp::now(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count,
        fail_close: false,
    }
}

fn dir_spec(client_ip: &str, count: u32) -> OpenSpec {
    OpenSpec {
        directory: true,
        ..spec(client_ip, count)
    }
}

fn open(store: &MemoryStore, share: &str, path: &str, spec: &OpenSpec) -> Vec<u64> {
    store
        .open(share, path, spec)
        .unwrap()
        .into_iter()
        .map(|h| h.0)
        .collect()
}

/// Every page of a listing.
async fn all_pages(svc: &dyn HandleService, target: Target, size: u32) -> Vec<ListPage> {
    pages(svc, target, Some(size)).try_collect().await.unwrap()
}

fn ids_of(pages: &[ListPage]) -> Vec<u64> {
    pages
        .iter()
        .flat_map(|p| &p.handles)
        .map(|h| h.handle_id.0)
        .collect()
}

fn requests(client: &HandleClient) -> u64 {
    client
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn assert_unique(ids: &[u64]) {
    let set: HashSet<_> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "a handle was listed twice: {ids:?}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("client-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn hmac_b64(key_b64: &str, string_to_sign: &str) -> String {
    let key = STANDARD.decode(key_b64).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

const SAS_VERSION: &str = "2025-11-05";
const SAS_EXPIRY: &str = "2099-01-01T00:00:00Z";

/// A service SAS for a whole share (`sr=s`), signed as the protocol notes describe: 13 fields
/// joined by newlines, the canonical resource `/file/{account}/{share}`.
fn share_sas(key_b64: &str, share: &str, sp: &str) -> (String, String) {
    let resource = format!("/file/{ACCOUNT}/{share}");
    let sts = [
        sp,
        "",
        SAS_EXPIRY,
        &resource,
        "",
        "",
        "",
        SAS_VERSION,
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = hmac_b64(key_b64, &sts);
    let token = format!(
        "sv={SAS_VERSION}&sr=s&sp={sp}&se={}&sig={}",
        enc(SAS_EXPIRY),
        enc(&sig)
    );
    (token, sig)
}

/// An account SAS for the file service (`ss=f`, `srt=sco`), with the 2020-12-06+ `ses` slot.
fn account_sas(key_b64: &str, sp: &str) -> (String, String) {
    let mut sts = [ACCOUNT, sp, "f", "sco", "", SAS_EXPIRY, "", "", SAS_VERSION].join("\n");
    sts.push('\n');
    sts.push('\n'); // `ses`, empty
    let sig = hmac_b64(key_b64, &sts);
    let token = format!(
        "sv={SAS_VERSION}&ss=f&srt=sco&sp={sp}&se={}&sig={}",
        enc(SAS_EXPIRY),
        enc(&sig)
    );
    (token, sig)
}

/// What a capture server saw of one request.
#[derive(Debug, Clone)]
struct Captured {
    method: String,
    path_and_query: String,
    headers: http::HeaderMap,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A server that records every request and answers it as an empty, successful handle service
/// would: List Handles with no handles, Force Close Handles with nothing closed.
struct Capture {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            log.lock().unwrap().push(Captured {
                                method: req.method().to_string(),
                                path_and_query: req
                                    .uri()
                                    .path_and_query()
                                    .map(ToString::to_string)
                                    .unwrap_or_default(),
                                headers: req.headers().clone(),
                            });
                            Ok::<_, Infallible>(canned_answer(req.method()))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("http://{}/{ACCOUNT}", self.addr)).unwrap()
    }

    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn canned_answer(method: &http::Method) -> Response<Full<Bytes>> {
    let mut resp = if method == http::Method::GET {
        let mut body = Vec::new();
        encode_list(&mut body, ServiceVersion::DEFAULT, None, None, &[], None);
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert("content-type", "application/xml".parse().unwrap());
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::new()));
        r.headers_mut()
            .insert("x-ms-number-of-handles-closed", "0".parse().unwrap());
        r.headers_mut()
            .insert("x-ms-number-of-handles-failed", "0".parse().unwrap());
        r
    };
    resp.headers_mut()
        .insert("x-ms-request-id", "capture".parse().unwrap());
    resp
}

// ---------------------------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------------------------

/// Opens handles on several paths, interleaved so that no path's ids are contiguous.
fn populate_interleaved(store: &MemoryStore, share: &str) -> Vec<(String, Vec<u64>)> {
    store.create_share(share).unwrap();
    let paths = ["", "a/x.txt", "a/b/y.txt", "c/z.txt", "c/d"];
    let mut opened: Vec<(String, Vec<u64>)> =
        paths.iter().map(|p| ((*p).to_owned(), vec![])).collect();
    for round in 0..4u32 {
        for (i, (path, ids)) in opened.iter_mut().enumerate() {
            let count = 1 + (round + i as u32) % 3;
            let s = if path.is_empty() || path == "c/d" {
                dir_spec(&format!("10.0.0.{i}:445"), count)
            } else {
                spec(&format!("10.0.0.{i}:445"), count)
            };
            ids.extend(open(store, share, path, &s));
        }
    }
    opened
}

#[tokio::test]
async fn small_pages_list_every_handle_exactly_once() {
    let store = MemoryStore::default();
    let opened = populate_interleaved(&store, "data");
    store.create_share("other").unwrap();
    open(&store, "other", "noise.txt", &spec("10.9.9.9:445", 4));
    let svc = Service::start(store).await;
    let client = svc.client();

    let all: BTreeSet<u64> = opened.iter().flat_map(|(_, ids)| ids.clone()).collect();
    let n = all.len();
    assert!(n > 30, "enough handles for many pages ({n})");

    for size in [1u32, 2, 7, 5000] {
        let before = requests(&client);
        let pages = all_pages(&client, Target::directory("data", "", true), size).await;
        let ids = ids_of(&pages);
        assert_unique(&ids);
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<_>>(),
            all,
            "page size {size}"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "handle-id order");
        assert_eq!(pages.len(), n.div_ceil(size as usize), "page size {size}");
        for p in &pages[..pages.len() - 1] {
            assert_eq!(p.handles.len(), size as usize);
            assert!(p.next_marker.is_some());
        }
        assert!(pages.last().unwrap().next_marker.is_none());
        assert_eq!(
            requests(&client) - before,
            pages.len() as u64,
            "one request a page"
        );
    }

    // Narrower targets list exactly their own handles, with the right paths.
    let want = |paths: &[&str]| -> BTreeSet<u64> {
        opened
            .iter()
            .filter(|(p, _)| paths.contains(&p.as_str()))
            .flat_map(|(_, ids)| ids.clone())
            .collect()
    };
    let cases: [(Target, &[&str]); 5] = [
        (
            Target::directory("data", "a", true),
            &["a/x.txt", "a/b/y.txt"],
        ),
        (Target::directory("data", "a", false), &[]),
        (Target::directory("data", "", false), &[""]),
        (Target::resource("data", "c/z.txt"), &["c/z.txt"]),
        (Target::directory("data", "c", true), &["c/z.txt", "c/d"]),
    ];
    for (target, paths) in cases {
        let pages = all_pages(&client, target.clone(), 3).await;
        let ids = ids_of(&pages);
        assert_unique(&ids);
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<_>>(),
            want(paths),
            "{target:?}"
        );
        for h in pages.iter().flat_map(|p| &p.handles) {
            assert!(paths.contains(&h.path.as_str()), "{target:?}: {h:?}");
        }
    }
    svc.stop().await;
}

#[tokio::test]
async fn markers_stay_valid_while_handles_open_and_close_between_pages() {
    let store = MemoryStore::default();
    store.create_share("live").unwrap();
    let mut initial = Vec::new();
    for i in 0..12 {
        initial.extend(open(
            &store,
            "live",
            &format!("dir{}/f{i}.txt", i % 3),
            &spec("10.1.0.1:445", 5),
        ));
    }
    let svc = Service::start(store).await;
    let client = svc.client();
    let target = Target::directory("live", "", true);

    let mut listed = Vec::new();
    let mut released_unlisted = BTreeSet::new();
    let mut released_listed = BTreeSet::new();
    let mut opened_later = BTreeSet::new();
    let mut marker = None;
    let mut round = 0;
    loop {
        let req = ListRequest {
            target: target.clone(),
            marker: marker.clone(),
            max_results: Some(7),
        };
        let page = client.list_handles(&req).await.unwrap();
        if let Some(m) = &marker {
            // A marker is stateless: the same one gives the same page again.
            let again = client
                .list_handles(&ListRequest {
                    target: target.clone(),
                    marker: Some(m).cloned(),
                    max_results: Some(7),
                })
                .await
                .unwrap();
            assert_eq!(again.handles, page.handles, "replaying a marker");
        }
        let page_ids: Vec<u64> = page.handles.iter().map(|h| h.handle_id.0).collect();
        listed.extend(&page_ids);
        let Some(next) = page.next_marker else { break };
        round += 1;

        // Churn between pages, as SMB clients would:
        // - the handle the marker was minted after goes away;
        let last = *page_ids.last().unwrap();
        assert_eq!(svc.store.release("live", &[HandleId(last)]).unwrap(), 1);
        released_listed.insert(last);
        // - a handle not yet listed closes (every other round);
        let unlisted = initial
            .iter()
            .copied()
            .filter(|id| *id > last && !released_unlisted.contains(id))
            .nth(round % 4);
        if round % 2 == 0
            && let Some(id) = unlisted
        {
            assert_eq!(svc.store.release("live", &[HandleId(id)]).unwrap(), 1);
            released_unlisted.insert(id);
        }
        // - new handles open, on an existing file and on a new one.
        let spec_new = spec("10.1.0.2:445", 2);
        opened_later.extend(open(&svc.store, "live", "dir0/f0.txt", &spec_new));
        opened_later.extend(open(
            &svc.store,
            "live",
            &format!("late/n{round}.txt"),
            &spec_new,
        ));
        marker = Some(next);
        assert!(round < 100, "the listing ends");
    }
    assert!(round >= 8, "the listing took many pages ({round})");
    assert!(!released_unlisted.is_empty());

    assert_unique(&listed);
    let listed: BTreeSet<u64> = listed.into_iter().collect();
    // Every handle that stayed open is listed: the initial ones not closed early, and those
    // opened during the listing (their ids are higher than any marker).
    for id in initial.iter().chain(&opened_later) {
        if !released_unlisted.contains(id) {
            assert!(
                listed.contains(id),
                "handle {id} stayed open but was skipped"
            );
        }
    }
    // Nothing closed before the listing reached it shows up.
    for id in &released_unlisted {
        assert!(
            !listed.contains(id),
            "handle {id} was closed before it was reached"
        );
    }
    // And the listing is exactly that.
    let expected: BTreeSet<u64> = initial
        .iter()
        .chain(&opened_later)
        .copied()
        .filter(|id| !released_unlisted.contains(id))
        .collect();
    assert_eq!(listed, expected);
    assert!(released_listed.is_subset(&listed));

    // A marker is bound to its listing: used for another target it is a 400, not retried.
    let first = client
        .list_handles(&ListRequest {
            target: target.clone(),
            marker: None,
            max_results: Some(1),
        })
        .await
        .unwrap();
    let before = requests(&client);
    let err = client
        .list_handles(&ListRequest {
            target: Target::directory("live", "dir0", true),
            marker: first.next_marker,
            max_results: Some(1),
        })
        .await
        .unwrap_err();
    let storage = err.storage_error().expect("a service error");
    assert_eq!(
        (storage.status, &storage.code),
        (400, &ErrorCode::InvalidQueryParameterValue)
    );
    assert_eq!(err.category(), ErrorCategory::InvalidRequest);
    assert_eq!(requests(&client) - before, 1, "a 400 is not retried");
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------------------------

async fn list_all(client: &HandleClient, share: &str) -> Vec<Handle> {
    all_pages(client, Target::directory(share, "", true), 5000)
        .await
        .into_iter()
        .flat_map(|p| p.handles)
        .collect()
}

#[tokio::test]
async fn close_by_id_goes_through_the_handles_own_path() {
    let store = MemoryStore::default();
    store.create_share("byid").unwrap();
    open(&store, "byid", "", &dir_spec("10.2.0.1:445", 2));
    open(&store, "byid", "d/f1.txt", &spec("10.2.0.1:445", 3));
    open(&store, "byid", "d/sub", &dir_spec("10.2.0.1:445", 1));
    let locked = open(
        &store,
        "byid",
        "d/locked.txt",
        &OpenSpec {
            fail_close: true,
            ..spec("10.2.0.1:445", 1)
        },
    )[0];
    let svc = Service::start(store).await;
    let client = svc.client();

    let handles = list_all(&client, "byid").await;
    assert_eq!(handles.len(), 7);
    let mut closed = BTreeSet::new();
    for path in ["", "d/f1.txt", "d/sub"] {
        let h = handles.iter().find(|h| h.path == path).unwrap();
        let id = h.handle_id;
        // Through another path: nothing is closed (the handle is not on that resource).
        let elsewhere = if path == "d/f1.txt" { "d" } else { "d/f1.txt" };
        let out = close_all(
            &client,
            Target::resource("byid", elsewhere),
            HandleSelector::Id(id),
        )
        .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!((out.closed, out.failed, out.calls), (0, 0, 1), "{path:?}");

        // Through its own path (no x-ms-recursive): closed.
        let own = Target::resource("byid", h.path.clone());
        let out = close_all(&client, own.clone(), HandleSelector::Id(id)).await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!((out.closed, out.failed, out.calls), (1, 0, 1), "{path:?}");
        closed.insert(id.0);

        // Again: it is gone, 200 with nothing closed.
        let page = client
            .force_close(&CloseRequest {
                target: own,
                handles: HandleSelector::Id(id),
                marker: None,
            })
            .await
            .unwrap();
        assert_eq!((page.closed, page.failed), (0, 0));
        assert!(page.next_marker.is_none());
    }
    // A handle the store refuses to close counts as failed and stays open.
    let out = close_all(
        &client,
        Target::resource("byid", "d/locked.txt"),
        HandleSelector::Id(HandleId(locked)),
    )
    .await;
    assert_eq!((out.closed, out.failed), (0, 1));

    let left: BTreeSet<u64> = list_all(&client, "byid")
        .await
        .iter()
        .map(|h| h.handle_id.0)
        .collect();
    let want: BTreeSet<u64> = handles
        .iter()
        .map(|h| h.handle_id.0)
        .filter(|id| !closed.contains(id))
        .collect();
    assert_eq!(left, want);
    assert!(left.contains(&locked));
    svc.stop().await;
}

#[tokio::test]
async fn close_all_star_recursive_follows_markers_with_exact_totals() {
    const BATCH: usize = 4;
    let store = MemoryStore::new(BATCH);
    store.create_share("bulk").unwrap();
    store.create_share("keep").unwrap();
    open(&store, "keep", "k.txt", &spec("10.3.0.9:445", 5));
    open(&store, "bulk", "", &dir_spec("10.3.0.1:445", 2));
    for round in 0..3 {
        for d in 1..=3 {
            for f in 0..5 {
                open(
                    &store,
                    "bulk",
                    &format!("d{d}/f{f}.txt"),
                    &spec(&format!("10.3.0.{round}:445"), 1),
                );
            }
        }
    }
    open(
        &store,
        "bulk",
        "d1/locked.txt",
        &OpenSpec {
            fail_close: true,
            ..spec("10.3.0.5:445", 3)
        },
    );
    let svc = Service::start(store).await;
    let client = svc.client();
    let calls_for = |n: u64| n.div_ceil(BATCH as u64).max(1);

    // `*` without recursion on the root: only the root directory's own handles.
    let out = close_all(
        &client,
        Target::directory("bulk", "", false),
        HandleSelector::All,
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.closed, out.failed, out.calls), (2, 0, 1));

    // `*` recursive on a subdirectory: its 15 handles, 3 of which refuse to close.
    let out = close_all(
        &client,
        Target::directory("bulk", "d1", true),
        HandleSelector::All,
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        (out.closed, out.failed, out.calls),
        (15, 3, calls_for(18)),
        "d1 over several batches"
    );

    // `*` recursive on the root: the rest, over several batches.
    let before = requests(&client);
    let out = close_all(
        &client,
        Target::directory("bulk", "", true),
        HandleSelector::All,
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.closed, out.failed), (30, 3));
    assert_eq!(out.calls, calls_for(33));
    assert!(out.calls > 5, "several pages");
    assert_eq!(requests(&client) - before, out.calls, "no request repeated");

    let left = list_all(&client, "bulk").await;
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|h| h.path == "d1/locked.txt"));
    assert_eq!(
        list_all(&client, "keep").await.len(),
        5,
        "other share untouched"
    );
    assert_eq!(svc.store.stats().handles, 8);

    // Nothing to close: one call, zero counts.
    let out = close_all(
        &client,
        Target::directory("keep", "", false),
        HandleSelector::All,
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.closed, out.failed, out.calls), (0, 0, 1));
    // A directory that does not exist: the error, no totals.
    let out = close_all(
        &client,
        Target::directory("keep", "nothing-here", true),
        HandleSelector::All,
    )
    .await;
    assert_eq!(out.error.unwrap().category(), ErrorCategory::PathNotFound);
    assert_eq!((out.closed, out.calls), (0, 0));
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What goes on the wire
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn x_ms_recursive_is_never_sent_for_a_resource_target() {
    let capture = Capture::start().await;
    let key = AccountKey::random();
    let client = HandleClient::new(
        capture.endpoint(),
        Credential::SharedKey {
            account: ACCOUNT.into(),
            key,
        },
        options(),
    )
    .unwrap();

    let resources = [
        Target::resource("s", "dir/file a.txt"),
        Target::resource("s", ""),
        Target::resource("s", "dir"),
    ];
    for target in &resources {
        let list = ListRequest {
            target: target.clone(),
            marker: None,
            max_results: Some(3),
        };
        client.list_handles(&list).await.unwrap();
        for handles in [HandleSelector::Id(HandleId(42)), HandleSelector::All] {
            let out = close_all(&client, target.clone(), handles).await;
            assert!(out.error.is_none(), "{:?}", out.error);
        }
    }
    let seen = capture.take();
    assert_eq!(seen.len(), 9);
    for c in &seen {
        assert_eq!(c.header("x-ms-recursive"), None, "{c:?}");
        assert!(
            c.header("authorization")
                .unwrap()
                .starts_with("SharedKey acct:")
        );
    }
    assert_eq!(
        seen[0].path_and_query,
        "/acct/s/dir/file%20a.txt?comp=listhandles&maxresults=3"
    );
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(seen[1].header("x-ms-handle-id"), Some("42"));
    assert_eq!(seen[2].header("x-ms-handle-id"), Some("*"));
    assert_eq!(
        seen[3].path_and_query,
        "/acct/s?comp=listhandles&maxresults=3"
    );

    // Control: directories do carry it, so the capture would have seen it.
    client
        .list_handles(&ListRequest {
            target: Target::directory("s", "dir", true),
            marker: None,
            max_results: None,
        })
        .await
        .unwrap();
    close_all(
        &client,
        Target::directory("s", "dir", false),
        HandleSelector::All,
    )
    .await;
    let seen = capture.take();
    assert_eq!(seen[0].header("x-ms-recursive"), Some("true"));
    assert_eq!(seen[1].header("x-ms-recursive"), Some("false"));
}

#[tokio::test]
async fn bearer_token_is_read_from_its_file_and_reread_when_it_changes() {
    let capture = Capture::start().await;
    let dir = temp_dir("bearer");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let client = HandleClient::new(
        capture.endpoint(),
        Credential::BearerTokenFile(token_file.clone()),
        options(),
    )
    .unwrap();
    let list = ListRequest {
        target: Target::directory("s", "", true),
        marker: None,
        max_results: None,
    };

    client.list_handles(&list).await.unwrap();
    close_all(
        &client,
        Target::resource("s", "f.txt"),
        HandleSelector::Id(HandleId(7)),
    )
    .await;
    // A new token of another length.
    std::fs::write(&token_file, "token-number-two").unwrap();
    client.list_handles(&list).await.unwrap();
    // A new token of the same length, written with a later modification time.
    std::fs::write(&token_file, "token-number-3xx").unwrap();
    bump_mtime(&token_file);
    client.list_handles(&list).await.unwrap();

    let seen = capture.take();
    let auth: Vec<&str> = seen
        .iter()
        .map(|c| c.header("authorization").unwrap())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer token-one",
            "Bearer token-one",
            "Bearer token-number-two",
            "Bearer token-number-3xx"
        ]
    );
    for c in &seen {
        assert_eq!(
            c.header("x-ms-file-request-intent"),
            Some("backup"),
            "{c:?}"
        );
        let version: ServiceVersion = c.header("x-ms-version").unwrap().parse().unwrap();
        assert!(version >= ServiceVersion::V2022_11_02, "{version}");
    }

    // An unreadable token file fails the call before anything is sent.
    std::fs::remove_file(&token_file).unwrap();
    let err = client.list_handles(&list).await.unwrap_err();
    assert!(matches!(err, Error::Credential { .. }), "{err:?}");
    assert_eq!(err.category(), ErrorCategory::Credential);
    assert!(capture.take().is_empty());

    // The lowest version that allows OAuth is accepted, anything older refused up front.
    let at = |v: &str| ClientOptions {
        version: v.parse().unwrap(),
        ..options()
    };
    std::fs::write(&token_file, "t").unwrap();
    let ok = HandleClient::new(
        capture.endpoint(),
        Credential::BearerTokenFile(token_file.clone()),
        at("2022-11-02"),
    )
    .unwrap();
    ok.list_handles(&list).await.unwrap();
    assert_eq!(capture.take()[0].header("x-ms-version"), Some("2022-11-02"));
    for old in ["2022-11-01", "2021-12-02", "2018-11-09"] {
        let err = HandleClient::new(
            capture.endpoint(),
            Credential::BearerTokenFile(token_file.clone()),
            at(old),
        )
        .err()
        .unwrap_or_else(|| panic!("version {old} was accepted for a bearer token"));
        assert!(matches!(err, ClientError::Credential(_)), "{err:?}");
        assert!(err.to_string().contains("2022-11-02"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn bump_mtime(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Credentials and errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sas_and_connection_string_credentials_work() {
    let store = MemoryStore::new(3);
    store.create_share("sasshare").unwrap();
    open(&store, "sasshare", "dir/a.txt", &spec("10.4.0.1:445", 4));
    open(&store, "sasshare", "dir/b.txt", &spec("10.4.0.1:445", 4));
    store.create_share("elsewhere").unwrap();
    open(&store, "elsewhere", "x.txt", &spec("10.4.0.1:445", 1));
    let svc = Service::start(store).await;

    // Service SAS for the share, given directly.
    let (token, _) = share_sas(&svc.key_b64, "sasshare", "rwl");
    let client = svc.client_with(Credential::Sas(SasToken::new(&token).unwrap()));
    let handles = list_all(&client, "sasshare").await;
    assert_eq!(handles.len(), 8);
    let h = &handles[0];
    let out = close_all(
        &client,
        Target::resource("sasshare", h.path.clone()),
        HandleSelector::Id(h.handle_id),
    )
    .await;
    assert_eq!(
        (out.closed, out.error.is_none()),
        (1, true),
        "{:?}",
        out.error
    );

    // The same SAS does not cover another share.
    let err = client
        .list_handles(&ListRequest {
            target: Target::directory("elsewhere", "", true),
            marker: None,
            max_results: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.storage_error().map(|e| (e.status, e.code.clone())),
        Some((403, ErrorCode::AuthenticationFailed))
    );

    // Account SAS, through a connection string naming the file endpoint.
    let (token, _) = account_sas(&svc.key_b64, "rwl");
    let cs = ConnectionString::parse(&format!(
        "FileEndpoint={};SharedAccessSignature={token}",
        svc.endpoint_url()
    ))
    .unwrap();
    assert!(matches!(cs.credential, Credential::Sas(_)));
    let endpoint = Endpoint::parse(cs.file_endpoint.as_deref().unwrap()).unwrap();
    assert_eq!(endpoint, svc.endpoint());
    let client = HandleClient::new(endpoint, cs.credential, options()).unwrap();
    assert_eq!(list_all(&client, "elsewhere").await.len(), 1);
    let out = close_all(
        &client,
        Target::directory("sasshare", "", true),
        HandleSelector::All,
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.closed, out.failed, out.calls), (7, 0, 3));
    assert_eq!(svc.store.stats().handles, 1);

    // A share SAS in a connection string.
    let (token, _) = share_sas(&svc.key_b64, "elsewhere", "rl");
    let cs = ConnectionString::parse(&format!(
        "FileEndpoint={};SharedAccessSignature={token}",
        svc.endpoint_url()
    ))
    .unwrap();
    let client = HandleClient::new(
        Endpoint::parse(cs.file_endpoint.as_deref().unwrap()).unwrap(),
        cs.credential,
        options(),
    )
    .unwrap();
    assert_eq!(list_all(&client, "elsewhere").await.len(), 1);
    svc.stop().await;
}

/// Checks what every error a caller may print must hold.
fn assert_printable(err: &Error, target: &str, secrets: &[&str]) -> String {
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{target}:")),
        "names the target: {text}"
    );
    let Error::Service {
        request_id: Some(id),
        ..
    } = err
    else {
        panic!("expected a service error with a request id: {err:?}")
    };
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(text.contains(&format!("(request id {id})")), "{text}");
    let debug = format!("{err:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "leaks {secret:?}: {text}");
        assert!(!debug.contains(secret), "leaks {secret:?}: {debug}");
    }
    text
}

#[tokio::test]
async fn a_wrong_key_or_sas_is_authentication_failed_and_secrets_stay_out_of_errors() {
    let store = MemoryStore::default();
    store.create_share("data").unwrap();
    open(&store, "data", "dir/a.txt", &spec("10.5.0.1:445", 2));
    let svc = Service::start(store).await;

    let wrong = AccountKey::random();
    let wrong_b64 = wrong.to_base64();
    let client = svc.client_with(Credential::SharedKey {
        account: ACCOUNT.into(),
        key: wrong,
    });
    let req = ListRequest {
        target: Target::directory("data", "dir", true),
        marker: None,
        max_results: None,
    };
    let err = client.list_handles(&req).await.unwrap_err();
    let storage = err.storage_error().expect("a service error");
    assert_eq!(
        (storage.status, &storage.code),
        (403, &ErrorCode::AuthenticationFailed)
    );
    assert_eq!(err.category(), ErrorCategory::AuthenticationFailed);
    assert_printable(&err, "data/dir", &[&wrong_b64, &svc.key_b64]);
    assert_eq!(requests(&client), 1, "a 403 is not retried");

    let out = close_all(
        &client,
        Target::resource("data", "dir/a.txt"),
        HandleSelector::All,
    )
    .await;
    let err = out.error.expect("refused");
    assert_eq!(err.category(), ErrorCategory::AuthenticationFailed);
    assert_printable(&err, "data/dir/a.txt", &[&wrong_b64, &svc.key_b64]);
    assert_eq!((out.closed, out.calls), (0, 0));

    // A SAS signed with another key.
    let other_key = AccountKey::random().to_base64();
    let (token, sig) = share_sas(&other_key, "data", "rwl");
    let client = svc.client_with(Credential::Sas(SasToken::new(&token).unwrap()));
    let err = client.list_handles(&req).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::AuthenticationFailed);
    assert_eq!(
        err.storage_error().unwrap().code,
        ErrorCode::AuthenticationFailed
    );
    assert_printable(&err, "data/dir", &[&sig, &enc(&sig), "sig=", &other_key]);

    // A valid SAS without the permission: listing works, closing is refused.
    let (token, sig) = share_sas(&svc.key_b64, "data", "rl");
    let client = svc.client_with(Credential::Sas(SasToken::new(&token).unwrap()));
    assert_eq!(list_all(&client, "data").await.len(), 2);
    let out = close_all(
        &client,
        Target::resource("data", "dir/a.txt"),
        HandleSelector::All,
    )
    .await;
    let err = out.error.expect("refused");
    let storage = err.storage_error().unwrap();
    assert_eq!(
        (storage.status, &storage.code),
        (403, &ErrorCode::AuthorizationPermissionMismatch)
    );
    assert_eq!(err.category(), ErrorCategory::AuthenticationFailed);
    assert_printable(&err, "data/dir/a.txt", &[&sig, &enc(&sig), "sig="]);
    assert_eq!(svc.store.stats().handles, 2, "nothing closed");
    svc.stop().await;
}

#[tokio::test]
async fn missing_share_and_path_name_the_target_and_the_request() {
    let store = MemoryStore::default();
    store.create_share("present").unwrap();
    open(&store, "present", "dir/a.txt", &spec("10.6.0.1:445", 1));
    let svc = Service::start(store).await;
    let client = svc.client();
    let list = |target: Target| ListRequest {
        target,
        marker: None,
        max_results: None,
    };

    let err = client
        .list_handles(&list(Target::directory("absent", "x/y", true)))
        .await
        .unwrap_err();
    let storage = err.storage_error().unwrap();
    assert_eq!(
        (storage.status, &storage.code),
        (404, &ErrorCode::ShareNotFound)
    );
    assert_eq!(err.category(), ErrorCategory::ShareNotFound);
    let text = assert_printable(&err, "absent/x/y", &[&svc.key_b64]);
    assert!(text.contains("ShareNotFound"), "{text}");
    assert_eq!(requests(&client), 1, "a 404 is not retried");

    let out = close_all(
        &client,
        Target::directory("absent", "", true),
        HandleSelector::All,
    )
    .await;
    let err = out.error.unwrap();
    assert_eq!(err.category(), ErrorCategory::ShareNotFound);
    assert_printable(&err, "absent", &[&svc.key_b64]);

    for (path, code) in [
        ("dir/missing.txt", ErrorCode::ResourceNotFound),
        ("nodir/missing.txt", ErrorCode::ParentNotFound),
    ] {
        let err = client
            .list_handles(&list(Target::resource("present", path)))
            .await
            .unwrap_err();
        assert_eq!(err.storage_error().unwrap().code, code, "{path}");
        assert_eq!(err.category(), ErrorCategory::PathNotFound);
        assert_printable(&err, &format!("present/{path}"), &[&svc.key_b64]);
    }
    svc.stop().await;
}
