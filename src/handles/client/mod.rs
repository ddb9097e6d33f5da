//! The HTTP client for any endpoint that speaks the handle protocol: Azure Files (host-style),
//! our handle service and emulators (path-style).
//!
//! One [`HandleClient`] implements [`HandleService`]: each call is one List Handles or Force
//! Close Handles request, retried on throttling, server errors and broken connections within
//! a retry budget, bounded by a per-request and a per-call timeout.

mod bearer;
mod body;
mod endpoint;
mod identity;
mod limiter;
mod pool;
mod redact;
mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use jiff::Timestamp;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Error, HandleService, describe};
use crate::auth::{self, Credential, RequestView};
use crate::protocol::{
    ClosePage, CloseRequest, ErrorCode, ListPage, ListRequest, Marker, ServiceVersion,
    StorageError, Target, decode_error, decode_list,
};

pub use body::{MAX_LIST_BODY, MAX_SMALL_BODY};
pub use endpoint::{Endpoint, InvalidUrl, ShareUrl};
pub use identity::{Clock, TokenError, TokenOptions, TokenProvider};
pub use limiter::{Limiter, LimiterOptions, LimiterState, Permit, Sending, Signal, tracking_sent};
pub use pool::{ClientPool, CredentialVersion, DEFAULT_IDLE_AFTER, EndpointLimits};
pub use retry::{RetryBudget, RetryPolicy, is_retryable_status, parse_retry_after};

use bearer::BearerFile;
use body::{BodyError, read_limited};
use redact::Redactor;
use secrecy::ExposeSecret;

/// The default per-call limit, retries included ([`ClientOptions::operation_timeout`]): a
/// service that has not answered a call in this long is given up on.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The `x-ms-version` sent.
    pub version: ServiceVersion,
    /// The longest one HTTP exchange may take.
    pub request_timeout: Duration,
    /// The longest one call may take, retries and waits included: the give-up bound. A sweep
    /// gives up on an endpoint the first time a call to it ends without an answer, so a sweep
    /// whose service dies ends within this bound (see docs/sweep.md).
    pub operation_timeout: Duration,
    /// When to retry.
    pub retry: RetryPolicy,
    /// Retries the whole client (or, in a [`ClientPool`], the endpoint) may spend at once
    /// (see [`RetryBudget`]).
    pub retry_budget: u32,
    /// How many requests are in flight at once to the endpoint (see [`Limiter`]).
    pub concurrency: LimiterOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            version: ServiceVersion::DEFAULT,
            request_timeout: Duration::from_secs(30),
            operation_timeout: GIVE_UP_AFTER,
            retry: RetryPolicy::default(),
            retry_budget: 20,
            concurrency: LimiterOptions::default(),
        }
    }
}

/// Counts of what the client did, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub requests: std::sync::atomic::AtomicU64,
    /// Retries.
    pub retries: std::sync::atomic::AtomicU64,
    /// Answers that were throttling (429, 503).
    pub throttled: std::sync::atomic::AtomicU64,
}

/// Observes every request the client sends (metrics hook).
pub trait RequestObserver: Send + Sync {
    /// One HTTP exchange ended: the operation, the HTTP status (`None` when no response came)
    /// and how long it took.
    fn observe(&self, operation: &'static str, status: Option<u16>, elapsed: Duration);

    /// A request of `operation` is about to be retried.
    fn retried(&self, operation: &'static str);
}

/// A client for one file service endpoint.
pub struct HandleClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    credential: Credential,
    bearer: Option<Bearer>,
    options: ClientOptions,
    budget: Arc<RetryBudget>,
    limiter: Arc<Limiter>,
    stats: ClientStats,
    observer: Option<Arc<dyn RequestObserver>>,
}

/// A client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The credential does not fit the endpoint or options.
    #[error("{0}")]
    Credential(String),
    /// The HTTP stack could not be set up.
    #[error("setting up HTTP: {0}")]
    Http(String),
}

/// Where a bearer credential's tokens come from.
enum Bearer {
    /// A file something else keeps fresh.
    File(BearerFile),
    /// Entra ID, through a shared, caching provider.
    Entra(Arc<TokenProvider>),
}

impl Bearer {
    async fn token(&self) -> Result<secrecy::SecretString, Error> {
        match self {
            Self::File(file) => file.token(),
            Self::Entra(provider) => provider.token().await.map_err(|e| e.to_string()),
        }
        .map_err(|message| Error::Credential { message })
    }
}

/// A successful answer, read whole.
struct Answer {
    headers: HeaderMap,
    body: bytes::Bytes,
}

/// What an attempt came to.
enum Attempt {
    Done(Answer),
    Retry {
        error: Error,
        retry_after: Option<Duration>,
    },
    Fail(Error),
}

impl HandleClient {
    /// A client for `endpoint` that authenticates with `credential`.
    pub fn new(
        endpoint: Endpoint,
        credential: Credential,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        if let Credential::SharedKey { account, .. } = &credential
            && account != endpoint.account()
        {
            return Err(ClientError::Credential(format!(
                "the account key is for account {account:?} but the endpoint {endpoint} is account {:?}",
                endpoint.account()
            )));
        }
        let bearer = match &credential {
            Credential::BearerTokenFile(path) => Some(Bearer::File(BearerFile::new(path))),
            Credential::Entra(identity) => Some(Bearer::Entra(TokenProvider::shared(identity)?)),
            Credential::SharedKey { .. } | Credential::Sas(_) => None,
        };
        if bearer.is_some() && options.version < ServiceVersion::V2022_11_02 {
            return Err(ClientError::Credential(format!(
                "bearer tokens need x-ms-version 2022-11-02 or later, not {}",
                options.version
            )));
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("share-hygiene/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            credential,
            bearer,
            budget: Arc::new(RetryBudget::new(options.retry_budget)),
            limiter: Arc::new(Limiter::new(options.concurrency)),
            options,
            stats: ClientStats::default(),
            observer: None,
        })
    }

    /// Reports every request to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Shares `limits` (the endpoint's limiter and retry budget) with other clients of it.
    pub fn with_limits(mut self, limits: EndpointLimits) -> Self {
        self.limiter = limits.limiter;
        self.budget = limits.budget;
        self
    }

    /// The limiter of requests in flight to its endpoint.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// What the client has done so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Sends one call, retrying as the options say, within the per-call timeout; a successful
    /// answer's body may hold at most `limit` bytes.
    async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        target: &Target,
        query: &[(&'static str, String)],
        headers: &[(&'static str, String)],
        limit: usize,
    ) -> Result<Answer, Error> {
        // The per-call limit starts once there is room to send: it bounds the endpoint's
        // answer, not the wait behind other calls (which ends when a sweep gives up on it).
        let mut first = Some(self.limiter.acquire().await);
        let deadline = Instant::now() + self.options.operation_timeout;
        let run = async {
            let mut retry = 0;
            loop {
                let outcome = self
                    .attempt(
                        first.take(),
                        operation,
                        method.clone(),
                        target,
                        query,
                        headers,
                        limit,
                    )
                    .await;
                let (error, retry_after) = match outcome {
                    Attempt::Done(resp) => return Ok(resp),
                    Attempt::Fail(error) => return Err(error),
                    Attempt::Retry { error, retry_after } => (error, retry_after),
                };
                retry += 1;
                if retry > self.options.retry.max_retries {
                    return Err(error);
                }
                // Only a retry that will be made spends the budget.
                let wait = self.options.retry.delay(retry, retry_after);
                if Instant::now() + wait >= deadline {
                    return Err(error);
                }
                if !self.budget.withdraw() {
                    tracing::warn!(target = %describe(target), "retry budget exhausted; not retrying");
                    return Err(error);
                }
                if let Some(observer) = &self.observer {
                    observer.retried(operation);
                }
                // The endpoint asked for this wait: nothing else goes to it meanwhile.
                if retry_after.is_some() {
                    self.limiter.pause(wait);
                }
                tracing::debug!(target = %describe(target), retry, ?wait, error = %error, "retrying");
                self.stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
        };
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                target: describe(target),
                after: self.options.operation_timeout,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        permit: Option<Permit<'_>>,
        operation: &'static str,
        method: reqwest::Method,
        target: &Target,
        query: &[(&'static str, String)],
        extra: &[(&'static str, String)],
        limit: usize,
    ) -> Attempt {
        let token = match &self.bearer {
            Some(bearer) => match bearer.token().await {
                Ok(t) => Some(t),
                Err(e) => return Attempt::Fail(e),
            },
            None => None,
        };
        // Waits for room after the token (a token exchange is not the storage request's
        // latency), and signs after the wait, so the request's date is fresh.
        let permit = match permit {
            Some(p) => p,
            None => self.limiter.acquire().await,
        };
        let started = Instant::now();
        let (request, redactor) = match self.build(method, target, query, extra, token.as_ref()) {
            Ok(r) => r,
            Err(e) => return Attempt::Fail(e),
        };
        self.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.budget.deposit();
        let result = self.http.execute(request).await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        permit.settle(load_signal(&result, started.elapsed()));
        if let Some(observer) = &self.observer {
            observer.observe(operation, status, started.elapsed());
        }
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                // `without_url`: the URL may carry a SAS.
                let error = Error::Transport {
                    target: describe(target),
                    message: error_chain(&e.without_url()),
                };
                return Attempt::Retry {
                    error,
                    retry_after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            // The body is read inside the attempt, so a connection that breaks mid-body is
            // retried like one that breaks before the answer.
            let headers = resp.headers().clone();
            return match read_limited(resp, limit).await {
                Ok(body) => Attempt::Done(Answer { headers, body }),
                Err(BodyError::TooLarge { limit }) => Attempt::Fail(Error::Protocol {
                    target: describe(target),
                    message: body::too_large(limit),
                }),
                Err(BodyError::Transport(e)) => Attempt::Retry {
                    error: Error::Transport {
                        target: describe(target),
                        message: format!("reading the answer: {}", error_chain(&e.without_url())),
                    },
                    retry_after: None,
                },
            };
        }
        if matches!(status, 429 | 503) {
            self.stats
                .throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Timestamp::now()));
        let error = service_error(target, resp, &redactor).await;
        if is_retryable_status(status) {
            Attempt::Retry { error, retry_after }
        } else {
            Attempt::Fail(error)
        }
    }

    /// Builds and signs one request; the redactor holds the secrets it carries.
    fn build(
        &self,
        method: reqwest::Method,
        target: &Target,
        query: &[(&'static str, String)],
        extra: &[(&'static str, String)],
        token: Option<&secrecy::SecretString>,
    ) -> Result<(reqwest::Request, Redactor), Error> {
        let mut redactor = Redactor::default();
        let mut url = self.endpoint.resource_url(&target.share, &target.path);
        let mut sep = '?';
        for (name, value) in query {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
            sep = '&';
        }
        if let Credential::Sas(sas) = &self.credential {
            url.push(sep);
            url.push_str(sas.query());
            redactor.add_encoded(sas.signature());
        }
        let url = reqwest::Url::parse(&url).map_err(|e| Error::Protocol {
            target: describe(target),
            message: format!("building the request URL: {e}"),
        })?;

        let mut headers = HeaderMap::new();
        // A value that cannot be sent is never repeated in the error: it may be a credential.
        let set = |headers: &mut HeaderMap, name: &'static str, value: &str| -> Result<(), Error> {
            let mut value = HeaderValue::from_str(value).map_err(|_| Error::Protocol {
                target: describe(target),
                message: format!(
                    "header {name} cannot carry its value: a control character or non-ASCII byte at offset {}",
                    value.bytes().position(|b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic())).unwrap_or(0)
                ),
            })?;
            value.set_sensitive(name == "authorization");
            headers.insert(HeaderName::from_static(name), value);
            Ok(())
        };
        set(
            &mut headers,
            "x-ms-version",
            &self.options.version.to_string(),
        )?;
        set(
            &mut headers,
            "x-ms-date",
            &crate::protocol::format_rfc1123(Timestamp::now()),
        )?;
        set(
            &mut headers,
            "x-ms-client-request-id",
            &uuid::Uuid::new_v4().to_string(),
        )?;
        if let Some(recursive) = target.recursive {
            set(
                &mut headers,
                "x-ms-recursive",
                if recursive { "true" } else { "false" },
            )?;
        }
        for (name, value) in extra {
            set(&mut headers, name, value)?;
        }
        if method == reqwest::Method::PUT {
            set(&mut headers, "content-length", "0")?;
        }
        match &self.credential {
            Credential::SharedKey { account, key } => {
                let decoded: Vec<(String, String)> = query
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), v.clone()))
                    .collect();
                let view = RequestView {
                    method: method.as_str(),
                    raw_path: url.path(),
                    query: &decoded,
                    headers: &headers,
                };
                let sts = auth::shared_key_string_to_sign(&view, account, url.path());
                let signature = auth::sign(key, &sts);
                redactor.add(&signature);
                set(
                    &mut headers,
                    "authorization",
                    &format!("SharedKey {account}:{signature}"),
                )?;
            }
            Credential::Sas(_) => {}
            Credential::BearerTokenFile(_) | Credential::Entra(_) => {
                let token = token.ok_or_else(|| Error::Credential {
                    message: "no bearer token for the request".into(),
                })?;
                // OAuth on the file data plane requires the caller to state a backup intent
                // (the token's role then grants access regardless of file ACLs).
                redactor.add(token.expose_secret());
                set(&mut headers, "x-ms-file-request-intent", "backup")?;
                set(
                    &mut headers,
                    "authorization",
                    &format!("Bearer {}", token.expose_secret()),
                )?;
            }
        }
        let mut request = reqwest::Request::new(method, url);
        *request.headers_mut() = headers;
        Ok((request, redactor))
    }
}

/// What an answer says about the endpoint's load: throttling, an answer after so long, or
/// nothing (no answer).
fn load_signal(result: &Result<reqwest::Response, reqwest::Error>, elapsed: Duration) -> Signal {
    match result {
        Ok(resp) if matches!(resp.status().as_u16(), 429 | 503) => Signal::Throttled,
        Ok(_) => Signal::Answered(elapsed),
        Err(_) => Signal::Ignored,
    }
}

/// The storage error of a failed response, from its body (at most [`MAX_SMALL_BODY`]),
/// `x-ms-error-code`, or status; the request's secrets are cut out of what the service said.
async fn service_error(target: &Target, resp: reqwest::Response, redactor: &Redactor) -> Error {
    let status = resp.status();
    let request_id = header_str(resp.headers(), "x-ms-request-id").map(|id| redactor.clean(&id));
    let code_header = header_str(resp.headers(), "x-ms-error-code");
    let (body, too_large) = match read_limited(resp, MAX_SMALL_BODY).await {
        Ok(body) => (body, false),
        Err(BodyError::TooLarge { .. }) => (bytes::Bytes::new(), true),
        Err(BodyError::Transport(_)) => (bytes::Bytes::new(), false),
    };
    let mut error = decode_error(status.as_u16(), &body).unwrap_or_else(|| {
        let code = code_header.clone().map_or_else(
            || ErrorCode::Other(format!("Http{}", status.as_u16())),
            |c| ErrorCode::parse(&c),
        );
        let mut message = status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_owned();
        if too_large {
            message.push_str(&format!(
                " (the error body is larger than {}, the most this client reads of one; not read)",
                body::size(MAX_SMALL_BODY)
            ));
        }
        StorageError::new(status.as_u16(), code, message)
    });
    error.message = redactor.clean(&error.message);
    for (_, value) in &mut error.details {
        *value = redactor.clean(value);
    }
    Error::Service {
        target: describe(target),
        request_id,
        error: Box::new(error),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An error and its sources, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn count_header(headers: &HeaderMap, name: &str, target: &Target) -> Result<u64, Error> {
    match headers.get(name) {
        None => Ok(0), // Older versions send no failed count: it is 0.
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::Protocol {
                target: describe(target),
                message: format!(
                    "{name} is {:?}, not a count",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            }),
    }
}

impl HandleService for HandleClient {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(async move {
            let mut query = vec![("comp", "listhandles".to_owned())];
            if let Some(m) = &req.marker {
                query.push(("marker", m.as_str().to_owned()));
            }
            if let Some(n) = req.max_results {
                query.push(("maxresults", n.to_string()));
            }
            let answer = self
                .call(
                    "list_handles",
                    reqwest::Method::GET,
                    &req.target,
                    &query,
                    &[],
                    MAX_LIST_BODY,
                )
                .await?;
            let list = decode_list(&answer.body).map_err(|e| Error::Protocol {
                target: describe(&req.target),
                message: e.to_string(),
            })?;
            Ok(ListPage {
                handles: list.handles,
                next_marker: list.next_marker,
            })
        })
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(async move {
            let mut query = vec![("comp", "forceclosehandles".to_owned())];
            if let Some(m) = &req.marker {
                query.push(("marker", m.as_str().to_owned()));
            }
            let headers = [("x-ms-handle-id", req.handles.to_string())];
            let answer = self
                .call(
                    "force_close",
                    reqwest::Method::PUT,
                    &req.target,
                    &query,
                    &headers,
                    MAX_SMALL_BODY,
                )
                .await?;
            let h = &answer.headers;
            Ok(ClosePage {
                closed: count_header(h, "x-ms-number-of-handles-closed", &req.target)?,
                failed: count_header(h, "x-ms-number-of-handles-failed", &req.target)?,
                next_marker: header_str(h, "x-ms-marker")
                    .filter(|m| !m.is_empty())
                    .map(Marker::new),
            })
        })
    }
}
