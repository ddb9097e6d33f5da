//! Bounded HTTP/1 serving, shared by the handle service and the controller's ops port: no
//! client, authenticated or not, can hold the process's connections or memory.
//!
//! - Every connection is on a clock ([`deadline`]): the whole of a request (head and body,
//!   and the TLS handshake on a new connection) must arrive within `request_read_timeout` of
//!   its first byte, a kept-alive connection may sit idle for `idle_timeout`, and a client
//!   that stops taking an answer is cut after `write_timeout`. The handler's own time is not
//!   counted.
//! - At most `max_connections` are served at once. Past that, a new connection is accepted
//!   and closed at once, without reading or answering: an answer would need its request read
//!   (over TLS, a handshake), which spends what the limit protects. Clients see a closed
//!   connection and retry; `share_hygiene_http_connections_refused_total` counts them.
//! - With [`tls::TlsFiles`], connections speak TLS and the certificate follows its files.
//!
//! Request-level limits (body size, requests in flight) belong to the handler, which knows
//! how to say no in its protocol.

mod deadline;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::metrics::ConnectionMetrics;

pub use deadline::RequestBody;
use deadline::{Clock, DeadlineIo};
pub use tls::{CertReloader, TlsError, TlsFiles};

/// How long a connection may take and how many there may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most time one request may take to arrive, head and body, from its first byte (on
    /// a new connection, from accept: the TLS handshake counts).
    pub request_read_timeout: Duration,
    /// The most time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// The most time a write may stay blocked on a client that does not read.
    pub write_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
    /// The largest request head (request line and headers); larger ones get 431.
    pub max_head_bytes: usize,
}

impl Default for Limits {
    /// 10 s per request, 90 s idle (longer than our client keeps an idle connection, so it is
    /// the client that closes it and never races a reused connection against our close),
    /// 30 s per blocked write, 512 connections, 64 KiB heads.
    fn default() -> Self {
        Self {
            request_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_head_bytes: 64 * 1024,
        }
    }
}

/// What the handler knows about a request's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection speaks TLS.
    pub tls: bool,
}

/// A listener that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address cannot be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Plain HTTP on an address other hosts can reach, without the explicit allowance.
    #[error(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: requests, SAS tokens and handle listings would cross the network unencrypted; serve TLS (a certificate and key) or allow insecure HTTP explicitly"
    )]
    Insecure {
        /// The address.
        addr: SocketAddr,
    },
    /// The certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Whether serving on `addr` is allowed: TLS, a loopback address, or an explicit allowance
/// of plain HTTP (which is logged as a warning).
pub fn check_exposure(
    addr: SocketAddr,
    tls: bool,
    allow_insecure_http: bool,
) -> Result<(), ListenError> {
    if tls || addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_insecure_http {
        return Err(ListenError::Insecure { addr });
    }
    tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: anyone on the network path can read requests and answers; use TLS, or keep the port behind a network policy");
    Ok(())
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// Serves `listener` with `handler` under `limits` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<CertReloader>>,
    metrics: ConnectionMetrics,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<RequestBody>, ConnectionInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    let (closing_tx, closing_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let mut refusing = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors, most likely: give connections time to close.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    metrics.refused("connection_limit");
                    if !refusing {
                        tracing::warn!(max_connections = limits.max_connections, "connection limit reached; closing new connections until some end");
                        refusing = true;
                    }
                    continue;
                };
                refusing = false;
                let _ = stream.set_nodelay(true);
                let conn = Connection {
                    stream,
                    peer,
                    limits: limits.clone(),
                    tls: tls.clone(),
                    metrics: metrics.clone(),
                    closing: closing_rx.clone(),
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    conn.serve(handler).await;
                    drop(slot);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
}

/// One accepted connection and what serving it needs.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    limits: Arc<Limits>,
    tls: Option<Arc<CertReloader>>,
    metrics: ConnectionMetrics,
    closing: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection to its end: TLS handshake if any, then HTTP/1.
    async fn serve<H, Fut>(self, handler: H)
    where
        H: Fn(Request<RequestBody>, ConnectionInfo) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        self.metrics.opened();
        let clock = Clock::start(self.limits.request_read_timeout, self.limits.idle_timeout);
        let io = DeadlineIo::new(
            self.stream,
            clock.clone(),
            self.limits.write_timeout,
            self.metrics.clone(),
        );
        let info = ConnectionInfo {
            peer: self.peer,
            tls: self.tls.is_some(),
        };
        match &self.tls {
            None => http(io, clock, info, &self.limits, self.closing, handler).await,
            Some(reloader) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(reloader.current());
                match acceptor.accept(io).await {
                    Ok(tls) => http(tls, clock, info, &self.limits, self.closing, handler).await,
                    Err(e) => {
                        tracing::debug!(error = %e, peer = %self.peer, "TLS handshake failed")
                    }
                }
            }
        }
        self.metrics.closed();
    }
}

/// Serves HTTP/1 on `io` until the client leaves, a deadline passes, or the server closes.
async fn http<I, H, Fut>(
    io: I,
    clock: Arc<Clock>,
    info: ConnectionInfo,
    limits: &Limits,
    mut closing: watch::Receiver<bool>,
    handler: H,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<RequestBody>, ConnectionInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let clock = clock.clone();
        let handler = handler.clone();
        async move {
            let req = req.map(|body| RequestBody::new(body, clock.clone()));
            let resp = handler(req, info).await;
            clock.answered();
            Ok::<_, Infallible>(resp)
        }
    });
    // hyper's floor for the read buffer is 8 KiB.
    let max_head = limits.max_head_bytes.max(8192);
    let mut builder = http1::Builder::new();
    builder
        // The connection's clock bounds heads (and bodies, and idle time); hyper's own
        // header timer would only duplicate it.
        .header_read_timeout(None)
        .max_buf_size(max_head)
        .max_header_size(max_head);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => if let Err(e) = res {
            tracing::debug!(error = %e, peer = %info.peer, "connection ended with an error");
        },
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_http_is_allowed_on_loopback_only_unless_allowed_explicitly() {
        for ok in ["127.0.0.1:10004", "[::1]:10004"] {
            assert!(check_exposure(addr(ok), false, false).is_ok(), "{ok}");
        }
        for exposed in ["0.0.0.0:10004", "[::]:10004", "10.0.0.5:10004"] {
            let err = check_exposure(addr(exposed), false, false).unwrap_err();
            assert!(matches!(err, ListenError::Insecure { .. }), "{exposed}");
            assert!(err.to_string().contains(exposed), "{err}");
            assert!(
                check_exposure(addr(exposed), true, false).is_ok(),
                "{exposed}"
            );
            assert!(
                check_exposure(addr(exposed), false, true).is_ok(),
                "{exposed}"
            );
        }
    }
}
