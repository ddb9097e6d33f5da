//! The handle service's port holds against clients that stall, flood or overfeed it, over
//! real sockets: stalled and slow requests are cut by the request deadline before any
//! authentication, connections past the limit are closed at once, a declared body over the
//! limit gets 413 before a byte of it is sent, requests past the in-flight limit get 503
//! `ServerBusy` with `Retry-After`, and plain HTTP on a non-loopback address needs an explicit
//! allowance. Limits are small so that nothing waits more than a few seconds; a client that
//! waits longer than its generous read timeout means the service failed to cut or answer.

mod common_http;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use common_http::{ACCOUNT, raw, signed, status};
use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::MemoryStore;
use share_hygiene::handles::{Error, HandleService};
use share_hygiene::listener::ListenError;
use share_hygiene::protocol::{ClosePage, CloseRequest, ListPage, ListRequest};
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};

/// How long a test client waits for the service to answer or hang up before calling it a
/// failure: well past every deadline the tests configure.
const PATIENCE: Duration = Duration::from_secs(15);

/// A memory store with one share, served with `tune` applied to the configuration.
async fn start(
    tune: impl FnOnce(&mut ServerConfig),
) -> (RunningServer, Arc<HandleServer>, AccountKey) {
    let store = Arc::new(MemoryStore::default());
    store.create_share("share").unwrap();
    let key = AccountKey::random();
    let mut config = ServerConfig::new(ACCOUNT, key.clone());
    tune(&mut config);
    let server = Arc::new(HandleServer::memory(config, store));
    let running = server
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (running, server, key)
}

/// The value of a sample in the server's metrics text (0 when absent).
fn metric(server: &HandleServer, series: &str) -> f64 {
    let text = share_hygiene::metrics::render(&server.metrics().registry);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `series` reaches `want` (the server counts asynchronously to the client).
async fn metric_reaches(server: &HandleServer, series: &str, want: f64) {
    let wait = async {
        while metric(server, series) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("{series} is {}, not {want}", metric(server, series));
    }
}

/// A good signed List Handles request answers 200.
async fn answers_a_good_request(addr: SocketAddr, key: &AccountKey) {
    let req = signed(key, "GET", "/acct/share?comp=listhandles", &[], b"");
    let (got, answer) = tokio::task::spawn_blocking(move || raw(addr, &req))
        .await
        .unwrap();
    assert_eq!(got, 200, "{answer}");
}

/// What a client that stopped sending sees: the server's answer (if any) up to its hang-up,
/// or an error when it neither answered nor hung up within [`PATIENCE`].
async fn until_hang_up(stream: &mut tokio::net::TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf)).await {
        Err(_) => Err(format!(
            "still open after {PATIENCE:?}; got {:?}",
            String::from_utf8_lossy(&buf)
        )),
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Ok(Err(e)) => Err(format!("read failed: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_requests_are_all_dropped_and_the_service_still_answers() {
    let (running, server, key) = start(|c| {
        c.limits.request_read_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = running.addr;
    // Complete heads that promise a body and never send it, before any authentication.
    let head = signed(
        &key,
        "PUT",
        "/acct/share?comp=forceclosehandles",
        &[("x-ms-handle-id", "*"), ("content-length", "65000")],
        b"",
    );
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let head = head.clone();
        clients.spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&head).await.unwrap();
            until_hang_up(&mut s).await
        });
    }
    let mut still_open = Vec::new();
    while let Some(outcome) = clients.join_next().await {
        if let Err(e) = outcome.unwrap() {
            still_open.push(e);
        }
    }
    assert!(
        still_open.is_empty(),
        "{} of 500 stalled connections were not dropped; the first: {}",
        still_open.len(),
        still_open[0]
    );
    metric_reaches(
        &server,
        "share_hygiene_http_connections_timed_out_total{phase=\"request\"}",
        500.0,
    )
    .await;
    metric_reaches(&server, "share_hygiene_http_connections_open", 0.0).await;
    answers_a_good_request(addr, &key).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_head_and_an_idle_connection_are_dropped() {
    let (running, server, _) = start(|c| {
        c.limits.request_read_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // Half a head, then nothing; and a connection that never sends a byte.
    let mut half = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    half.write_all(b"GET /acct/share?comp=listhandles HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    until_hang_up(&mut half).await.unwrap();
    until_hang_up(&mut silent).await.unwrap();
    metric_reaches(&server, "share_hygiene_http_connections_open", 0.0).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (running, server, key) = start(|c| {
        c.limits.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut req = signed(&key, "GET", "/acct/share?comp=listhandles", &[], b"");
    // The helper asks to close; this client keeps the connection.
    let text = String::from_utf8(req)
        .unwrap()
        .replace("Connection: close\r\n", "");
    req = text.into_bytes();
    let mut s = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let answer = until_hang_up(&mut s).await.unwrap();
    assert_eq!(status(&answer), 200, "{answer}");
    metric_reaches(
        &server,
        "share_hygiene_http_connections_timed_out_total{phase=\"idle\"}",
        1.0,
    )
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_waits_by_the_idle_timeout_not_the_request_deadline() {
    let (running, _, _) = start(|c| {
        c.limits.request_read_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(30);
    })
    .await;
    // A scraper's pattern: a bodiless request, a pause longer than the request deadline,
    // another request on the same connection.
    let mut s = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let answered = tokio::time::timeout(PATIENCE, async {
            while !buf.ends_with(b"ok\n") {
                if s.read_buf(&mut buf).await.unwrap() == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(answered.is_ok() && buf.ends_with(b"ok\n"), "{buf:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_cut_at_the_request_deadline() {
    let (running, server, key) = start(|c| {
        c.limits.request_read_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = running.addr;
    let head = signed(
        &key,
        "PUT",
        "/acct/share?comp=forceclosehandles",
        &[("x-ms-handle-id", "*"), ("content-length", "1000")],
        b"",
    );
    // One byte every 100 ms: bytes keep coming, but the whole body would take 100 s.
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&head).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let trickle = {
            let mut s = s.try_clone().unwrap();
            let cut = cut.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if cut.load(Ordering::SeqCst) || s.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = Vec::new();
        let outcome = s.read_to_end(&mut buf);
        cut.store(true, Ordering::SeqCst);
        trickle.join().unwrap();
        match outcome {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the slow body was not cut within {PATIENCE:?}")
            }
            _ => String::from_utf8_lossy(&buf).into_owned(),
        }
    })
    .await
    .unwrap();
    // The client still listens, so it hears why before the hang-up.
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
    metric_reaches(
        &server,
        "share_hygiene_http_connections_timed_out_total{phase=\"request\"}",
        1.0,
    )
    .await;
    answers_a_good_request(addr, &key).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_ten_gigabyte_body_gets_413_before_any_byte_is_sent() {
    let (running, _, key) = start(|_| {}).await;
    let addr = running.addr;
    let head = signed(
        &key,
        "PUT",
        "/acct/share?comp=forceclosehandles",
        &[("x-ms-handle-id", "*"), ("content-length", "10737418240")],
        b"",
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&head).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(status(&answer), 413, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("x-ms-error-code: requestbodytoolarge"),
        "{answer}"
    );
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        answer.contains("<Code>RequestBodyTooLarge</Code>"),
        "{answer}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_are_closed_at_once() {
    let (running, server, key) = start(|c| {
        c.limits.max_connections = 3;
    })
    .await;
    let addr = running.addr;
    // Three connections hold every slot (they have sent nothing yet).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    metric_reaches(&server, "share_hygiene_http_connections_open", 3.0).await;
    // The fourth is accepted and closed without a byte, even though it sent a good request.
    let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = fourth
        .write_all(&signed(
            &key,
            "GET",
            "/acct/share?comp=listhandles",
            &[],
            b"",
        ))
        .await;
    let answer = until_hang_up(&mut fourth).await.unwrap();
    assert_eq!(answer, "", "a refused connection gets no answer");
    metric_reaches(
        &server,
        "share_hygiene_http_connections_refused_total{reason=\"connection_limit\"}",
        1.0,
    )
    .await;
    // Once a slot is free, the service serves again.
    drop(held.pop());
    metric_reaches(&server, "share_hygiene_http_connections_open", 2.0).await;
    answers_a_good_request(addr, &key).await;
    running.shutdown().await;
}

/// A memory store whose listings wait at a gate until the test opens it.
struct Gated {
    inner: MemoryStore,
    entered: AtomicU64,
    arrived: Notify,
    open: Notify,
}

impl HandleService for Gated {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(async move {
            if self.entered.fetch_add(1, Ordering::SeqCst) == 0 {
                self.arrived.notify_one();
                self.open.notified().await;
            }
            self.inner.list_handles(req).await
        })
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        self.inner.force_close(req)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_in_flight_limit_get_503_server_busy() {
    let inner = MemoryStore::default();
    inner.create_share("share").unwrap();
    let gated = Arc::new(Gated {
        inner,
        entered: AtomicU64::new(0),
        arrived: Notify::new(),
        open: Notify::new(),
    });
    let key = AccountKey::random();
    let mut config = ServerConfig::new(ACCOUNT, key.clone());
    config.max_requests_in_flight = 1;
    let server = Arc::new(HandleServer::new(config, gated.clone(), None));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = running.addr;
    let list = signed(&key, "GET", "/acct/share?comp=listhandles", &[], b"");
    // The first listing holds the only slot at the gate.
    let first = {
        let list = list.clone();
        tokio::task::spawn_blocking(move || raw(addr, &list))
    };
    gated.arrived.notified().await;
    let second = {
        let list = list.clone();
        tokio::task::spawn_blocking(move || raw(addr, &list))
    };
    let (got, answer) = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the second request was not refused while the first held the slot")
        .unwrap();
    assert_eq!(got, 503, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("x-ms-error-code: serverbusy"), "{answer}");
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("<Code>ServerBusy</Code>"), "{answer}");
    gated.open.notify_one();
    let (got, answer) = first.await.unwrap();
    assert_eq!(got, 200, "{answer}");
    // With the slot free again, the next request is served.
    let (got, answer) = tokio::task::spawn_blocking(move || raw(addr, &list))
        .await
        .unwrap();
    assert_eq!(got, 200, "{answer}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_a_non_loopback_address_is_refused_without_the_allowance() {
    let key = AccountKey::random();
    let server = Arc::new(HandleServer::memory(
        ServerConfig::new(ACCOUNT, key),
        Arc::new(MemoryStore::default()),
    ));
    // Refused before binding: nothing listens, nothing crosses the network.
    match server.spawn("0.0.0.0:0".parse().unwrap()).await {
        Err(ListenError::Insecure { addr }) => assert_eq!(addr.to_string(), "0.0.0.0:0"),
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(running) => {
            running.shutdown().await;
            panic!("plain HTTP on 0.0.0.0 was served")
        }
    }
}

/// Runs the binary with `args` and `env`, expecting it to exit on its own; a service that
/// started instead is killed and reported.
fn run_expecting_exit(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_share-hygiene"));
    cmd.args(args)
        .env_remove("SHARE_HYGIENE_ACCOUNT_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > PATIENCE {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the service started instead of refusing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_command_refuses_plain_http_on_a_non_loopback_address_and_says_how_to_allow_it() {
    let out = run_expecting_exit(
        &["handle-service", "--listen", "0.0.0.0:0"],
        &[(
            "SHARE_HYGIENE_ACCOUNT_KEY",
            AccountKey::random().to_base64(),
        )],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--allow-insecure-http"), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

#[test]
fn the_command_refuses_to_start_without_a_key_and_prints_none() {
    let out = run_expecting_exit(&["handle-service", "--listen", "127.0.0.1:0"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("SHARE_HYGIENE_ACCOUNT_KEY"), "{stderr}");
    assert!(!stderr.contains("generated"), "{stderr}");
}
