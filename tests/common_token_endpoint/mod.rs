//! A token endpoint of the tests' own, over real HTTP on 127.0.0.1: it records every request
//! (query, headers, form) and answers as Entra ID and IMDS do (JSON with `access_token` and
//! `expires_in`, or scripted Entra-shaped errors). Any other path is answered as an empty List
//! Handles, so the same server shows what a handle client sends with the token.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use share_hygiene::protocol::{ServiceVersion, encode_list};

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: http::HeaderMap,
    pub form: BTreeMap<String, String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A token endpoint (and a handle service that answers List Handles with no handles).
pub struct TokenServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers to give before the default one (a fresh token `token-N`, an hour long).
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

fn decode(raw: &str) -> BTreeMap<String, String> {
    share_hygiene::auth::parse_query(raw)
        .unwrap()
        .into_iter()
        .collect()
}

impl TokenServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let issued = Arc::new(AtomicU64::new(0));
        let (log, queue) = (seen.clone(), script.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, queue, issued) = (log.clone(), queue.clone(), issued.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (log, queue, issued) = (log.clone(), queue.clone(), issued.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let query = decode(req.uri().query().unwrap_or(""));
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let form = decode(std::str::from_utf8(&body).unwrap());
                            log.lock().unwrap().push(Seen {
                                method,
                                path: path.clone(),
                                query,
                                headers,
                                form,
                            });
                            let (status, body) = if path.contains("oauth2") {
                                queue.lock().unwrap().pop_front().unwrap_or_else(|| {
                                    let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
                                    (
                                        200,
                                        format!(
                                            r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"token-{n}"}}"#
                                        ),
                                    )
                                })
                            } else {
                                let mut xml = Vec::new();
                                encode_list(
                                    &mut xml,
                                    ServiceVersion::DEFAULT,
                                    None,
                                    None,
                                    &[],
                                    None,
                                );
                                (200, String::from_utf8(xml).unwrap())
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            script,
            task,
        }
    }

    pub fn authority(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn answer(&self, status: u16, body: &str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, body.to_owned()));
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
