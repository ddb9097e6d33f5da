//! The controller's HTTP port: `/metrics`, `/healthz` (the process runs), `/readyz` (its
//! watches have synced). Served with the same connection deadlines and limits as the handle
//! service; plain HTTP, since it carries no secrets and Prometheus scrapes it from inside the
//! cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::listener::{self, Limits};
use crate::metrics::{CONTENT_TYPE, ControllerMetrics, render};

/// Binds `addr` and serves in the background.
pub async fn serve(
    addr: SocketAddr,
    metrics: ControllerMetrics,
    ready: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let bound = tcp.local_addr()?;
    let connections = metrics.connections.clone();
    let handler = move |req: http::Request<listener::RequestBody>, _| {
        let resp = answer(req.uri().path(), &metrics, &ready);
        async move { resp }
    };
    tokio::spawn(listener::serve(
        tcp,
        Limits::default(),
        None,
        connections,
        handler,
        std::future::pending(),
    ));
    Ok(bound)
}

fn answer(path: &str, metrics: &ControllerMetrics, ready: &AtomicBool) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/metrics" => (StatusCode::OK, render(&metrics.registry), CONTENT_TYPE),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
        "/readyz" if ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "ready\n".to_owned(), "text/plain")
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "watches not synced yet\n".to_owned(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_owned(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
