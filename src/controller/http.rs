//! The controller's HTTP port: `/metrics`, `/healthz` (the process runs), `/readyz` (its
//! watches have synced).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::{CONTENT_TYPE, ControllerMetrics, render};

/// Binds `addr` and serves in the background.
pub async fn serve(
    addr: SocketAddr,
    metrics: ControllerMetrics,
    ready: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let resp = answer(req.uri().path(), &metrics, &ready);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
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
