//! The embedded handle service: List Handles and Force Close Handles over HTTP, exactly as
//! Azure Files serves them, in front of any [`HandleService`].
//!
//! One request goes: route (path-style `/{account}/{share}/...` or host-style, as the service
//! is configured: see [`Addressing`]), check the version and parameters, authenticate (Shared
//! Key, SAS, or an OAuth bearer token: see [`OAuthConfig`]), call the store, and encode the
//! answer. Anything malformed gets the 4xx the real service would send, never a panic or a 500.

mod addressing;
mod admin;
mod oauth;
mod properties;
mod request;
mod respond;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::auth::{self, AccountKey, Operation, RequestView, SasResource};
use crate::handles::memory::MemoryStore;
use crate::handles::{self, HandleService};
use crate::listener::{self, CertReloader, Limits, ListenError, TlsFiles};
use crate::metrics::ServiceMetrics;
use crate::protocol::{
    CloseRequest, ErrorCode, ListRequest, ServiceVersion, StorageError, Target, encode_list,
};

pub use addressing::{Addressing, InvalidHostName};
use addressing::{RequestHosts, Route};
use oauth::OAuth;
pub use oauth::{InvalidIssuer, OAuthConfig, STORAGE_AUDIENCE};
use respond::Echo;
pub use respond::{Body, SERVER};

/// The default of [`ServerConfig::max_requests_in_flight`].
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 64;

/// How the service authenticates and what it accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The storage account the service poses as.
    pub account: String,
    /// The account key requests are signed with.
    pub key: AccountKey,
    /// How requests name the account and share: path-style (the default) or host-style for
    /// the configured host names. One service serves one style, so that a signed path reaches
    /// exactly one resource.
    pub addressing: Addressing,
    /// Put the server's string-to-sign in `AuthenticationErrorDetail` (never in production:
    /// it helps a client author find a signing bug).
    pub debug_auth: bool,
    /// The largest request body accepted (admin JSON); larger ones get 413, at once when
    /// `Content-Length` declares it.
    pub max_body_bytes: usize,
    /// The most requests handled at once (after their bodies arrived); past it, 503
    /// `ServerBusy` with `Retry-After`.
    pub max_requests_in_flight: usize,
    /// Connection deadlines and limits, and the largest request head (431 past it).
    pub limits: Limits,
    /// Serve HTTPS with this certificate and key (reloaded when the files change).
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP on an address that is not loopback (logged as a warning).
    pub allow_insecure_http: bool,
    /// Accept OAuth bearer tokens from this issuer (none: bearer tokens are refused).
    pub oauth: Option<OAuthConfig>,
    /// Accept Shared Key and SAS on the handle APIs. `false` refuses them with 403
    /// `KeyBasedAuthenticationNotPermitted`, as an account whose `allowSharedKeyAccess` is
    /// off does; the admin endpoint (ours, not Azure's) keeps its Shared Key.
    pub allow_shared_key_access: bool,
}

impl ServerConfig {
    /// Defaults for `account` and `key`: path-style, 64 KiB bodies, 64 requests in flight,
    /// the listener's default [`Limits`], plain HTTP (so loopback only), no auth debugging.
    pub fn new(account: impl Into<String>, key: AccountKey) -> Self {
        Self {
            account: account.into(),
            key,
            addressing: Addressing::PathStyle,
            debug_auth: false,
            max_body_bytes: 64 * 1024,
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            limits: Limits::default(),
            tls: None,
            allow_insecure_http: false,
            oauth: None,
            allow_shared_key_access: true,
        }
    }
}

/// The handle service: configuration, a store, and (for the memory store) the admin endpoint.
pub struct HandleServer {
    config: ServerConfig,
    backend: Arc<dyn HandleService>,
    admin: Option<Arc<MemoryStore>>,
    metrics: ServiceMetrics,
    in_flight: Semaphore,
    oauth: Option<OAuth>,
}

/// Paths the service answers itself, before routing; accounts cannot take these names.
const OPS_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// A service running on a socket, stopped by [`RunningServer::shutdown`].
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl HandleServer {
    /// A service over `backend`; `admin` enables the admin endpoint on a memory store.
    pub fn new(
        config: ServerConfig,
        backend: Arc<dyn HandleService>,
        admin: Option<Arc<MemoryStore>>,
    ) -> Self {
        Self {
            in_flight: Semaphore::new(config.max_requests_in_flight),
            oauth: config.oauth.clone().map(|o| OAuth::new(o, &config.account)),
            config,
            backend,
            admin,
            metrics: ServiceMetrics::new(),
        }
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// A service over a memory store, with the admin endpoint.
    pub fn memory(config: ServerConfig, store: Arc<MemoryStore>) -> Self {
        Self::new(config, store.clone(), Some(store))
    }

    /// Binds `addr` and serves in a background task. Refuses plain HTTP on a non-loopback
    /// address unless the configuration allows it, and a certificate or key that cannot serve.
    pub async fn spawn(self: Arc<Self>, addr: SocketAddr) -> Result<RunningServer, ListenError> {
        let config = &self.config;
        listener::check_exposure(addr, config.tls.is_some(), config.allow_insecure_http)?;
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(CertReloader::load(files.clone())?)),
            None => None,
        };
        let tcp = listener::bind(addr).await?;
        let addr = tcp
            .local_addr()
            .map_err(|source| ListenError::Bind { addr, source })?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.serve(tcp, tls, async {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Serves on `tcp` until `shutdown` completes, then waits for open connections' requests
    /// in flight to finish.
    async fn serve(
        self: Arc<Self>,
        tcp: TcpListener,
        tls: Option<Arc<CertReloader>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let limits = self.config.limits.clone();
        let metrics = self.metrics.connections.clone();
        let this = self.clone();
        let handler = move |req, conn: listener::ConnectionInfo| {
            let this = this.clone();
            async move { this.handle(req, Some(conn.peer)).await }
        };
        listener::serve(tcp, limits, tls, metrics, handler, shutdown).await;
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>, peer: Option<SocketAddr>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = std::time::Instant::now();
        if req.method() == Method::GET && OPS_PATHS.contains(&req.uri().path()) {
            return self.ops(req.uri().path());
        }
        let operation = operation_label(req.uri());
        let request_id = uuid::Uuid::new_v4().to_string();
        let (parts, body) = req.into_parts();
        let client_request_id = parts.headers.get("x-ms-client-request-id").cloned();
        let version = request::version(&parts.headers).unwrap_or(ServiceVersion::DEFAULT);
        let echo = Echo {
            request_id,
            client_request_id,
            version,
        };
        // A body that was refused or cut leaves the connection's framing unknown: close it.
        let mut close = false;
        let result = match self.read_body(body).await {
            Ok(body) => self.admit(&parts, &body, peer, &echo).await,
            Err(e) => {
                close = true;
                Err(e)
            }
        };
        let busy = matches!(&result, Err(e) if e.code == ErrorCode::ServerBusy);
        let mut resp = result.unwrap_or_else(|err| {
            if err.status >= 500 && !busy {
                tracing::warn!(status = err.status, code = %err.code, message = %err.message, "request failed");
            } else {
                tracing::debug!(status = err.status, code = %err.code, message = %err.message, "request refused");
            }
            let mut resp = respond::error(&err, &echo.request_id);
            if err.code.as_str() == oauth::INVALID_AUTHENTICATION_INFO
                && let Some(oauth) = &self.oauth
                && let Ok(challenge) = http::HeaderValue::from_str(&oauth.config().challenge())
            {
                resp.headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, challenge);
            }
            resp
        });
        respond::standard_headers(&mut resp, &echo);
        if close {
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        if busy {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        self.metrics
            .request(operation, resp.status().as_u16(), started.elapsed());
        resp
    }

    /// `/metrics` (with the store's sizes), `/healthz` and `/readyz`. The store is loaded
    /// before the service listens, so a listening service is ready.
    fn ops(&self, path: &str) -> Response<Body> {
        match path {
            "/metrics" => {
                let size = self.backend.size();
                if let Some(n) = size.handles {
                    self.metrics
                        .store_handles
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                if let Some(n) = size.shares {
                    self.metrics
                        .store_shares
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                let mut resp =
                    Response::new(Body::from(crate::metrics::render(&self.metrics.registry)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                resp
            }
            _ => Response::new(Body::from("ok\n")),
        }
    }

    /// Reads the body, at most `max_body_bytes`: a larger declared `Content-Length` is
    /// refused before a byte of it is read.
    async fn read_body<B>(&self, body: B) -> Result<Bytes, StorageError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.config.max_body_bytes;
        let too_large = || {
            StorageError::new(
                413,
                ErrorCode::RequestBodyTooLarge,
                format!(
                    "The request body is too large; this service accepts at most {limit} bytes."
                ),
            )
        };
        if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(too_large());
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large())
            }
            Err(e) if timed_out(e.as_ref()) => Err(StorageError::new(
                408,
                ErrorCode::Other("RequestTimeout".into()),
                format!(
                    "The request did not arrive within {}.",
                    crate::duration::HumanDuration(self.config.limits.request_read_timeout)
                ),
            )),
            Err(e) => Err(StorageError::new(
                400,
                ErrorCode::InvalidInput,
                format!("The request body could not be read: {e}"),
            )),
        }
    }

    /// Dispatches the request if fewer than `max_requests_in_flight` are being handled;
    /// 503 `ServerBusy` if not.
    async fn admit(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        peer: Option<SocketAddr>,
        echo: &Echo,
    ) -> Result<Response<Body>, StorageError> {
        let Ok(_slot) = self.in_flight.try_acquire() else {
            return Err(StorageError::new(
                503,
                ErrorCode::ServerBusy,
                format!(
                    "The server is busy: it handles at most {} requests at once. Retry after a second.",
                    self.config.max_requests_in_flight
                ),
            ));
        };
        self.dispatch(parts, body, peer, echo).await
    }

    async fn dispatch(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        peer: Option<SocketAddr>,
        echo: &Echo,
    ) -> Result<Response<Body>, StorageError> {
        let raw_path = parts.uri.path();
        let query = auth::parse_query(parts.uri.query().unwrap_or("")).map_err(|pair| {
            StorageError::invalid_query(
                &pair,
                &pair,
                "The query parameter is not percent-encoded UTF-8.",
            )
        })?;
        request::check_unique_query(&query)?;
        let view = RequestView {
            method: parts.method.as_str(),
            raw_path,
            query: &query,
            headers: &parts.headers,
        };
        let route = addressing::route(
            raw_path,
            RequestHosts::of(parts),
            &self.config.account,
            &self.config.addressing,
        )?;
        match route {
            Route::Admin(segments) => {
                let Some(store) = &self.admin else {
                    return Err(StorageError::new(
                        400,
                        ErrorCode::FeatureNotSupported,
                        "The admin endpoint exists only on the memory store.",
                    ));
                };
                self.check_shared_key(&view)?;
                admin::handle(store, &parts.method, &segments, &query, body)
            }
            Route::Handles { share, path } => {
                let comp = request::query(&query, "comp");
                if comp.is_none()
                    && let Some(asked) = properties::requested(&parts.method, &query, &path)?
                {
                    let version = request::version(&parts.headers)?;
                    self.authenticate(&view, &share, &path, Operation::Read, peer, version)
                        .await?;
                    return self.properties_op(asked, share, path, &query, parts).await;
                }
                let op = match (comp, &parts.method) {
                    (Some("listhandles"), &Method::GET) => Operation::List,
                    (Some("forceclosehandles"), &Method::PUT) => Operation::Close,
                    (Some("listhandles" | "forceclosehandles"), _) => {
                        return Err(StorageError::new(
                            405,
                            ErrorCode::UnsupportedHttpVerb,
                            format!(
                                "The resource doesn't support the specified HTTP verb {}: List Handles is a GET, Force Close Handles a PUT.",
                                parts.method
                            ),
                        ));
                    }
                    (None, _) => return Err(StorageError::new(
                        400,
                        ErrorCode::MissingRequiredQueryParameter,
                        "A query parameter that's mandatory for this request is not specified: comp (this service serves comp=listhandles and comp=forceclosehandles).",
                    ).with_detail("QueryParameterName", "comp")),
                    (Some(other), _) => return Err(StorageError::invalid_query(
                        "comp",
                        other,
                        "This service serves only comp=listhandles and comp=forceclosehandles.",
                    )),
                };
                let version = request::version(&parts.headers)?;
                self.authenticate(&view, &share, &path, op, peer, version)
                    .await?;
                self.handles_op(op, share, path, &query, &parts.headers, echo)
                    .await
            }
        }
    }

    fn check_shared_key(&self, view: &RequestView<'_>) -> Result<(), StorageError> {
        auth::verify_shared_key(
            view,
            &self.config.account,
            &self.config.key,
            Timestamp::now(),
            self.config.debug_auth,
        )
        .map_err(auth_error)
    }

    async fn authenticate(
        &self,
        view: &RequestView<'_>,
        share: &str,
        path: &str,
        op: Operation,
        peer: Option<SocketAddr>,
        version: ServiceVersion,
    ) -> Result<(), StorageError> {
        if auth::is_sas_request(view) {
            self.check_key_access()?;
            let res = SasResource {
                account: &self.config.account,
                share,
                path,
                https: self.config.tls.is_some(),
                client_ip: peer.map(|p| p.ip()),
            };
            return auth::verify_sas(view, &res, &self.config.key, op, Timestamp::now())
                .map_err(auth_error);
        }
        match view.header("authorization") {
            Some(a) if a.starts_with("Bearer ") => {
                // The real service's order: the intent header first, then the version, then
                // the token.
                if request::header(view.headers, "x-ms-file-request-intent")?.is_none() {
                    return Err(StorageError::missing_header("x-ms-file-request-intent"));
                }
                if !version.allows_oauth() {
                    return Err(StorageError::invalid_header(
                        "x-ms-version",
                        &version.to_string(),
                        "OAuth on the file data plane needs version 2022-11-02 or later.",
                    ));
                }
                match &self.oauth {
                    Some(oauth) => oauth.authorize(a["Bearer ".len()..].trim(), op).await,
                    None => Err(StorageError::authentication_failed(
                        "This handle service is not configured for OAuth (--oauth-issuer); it authenticates with Shared Key or SAS.",
                    )),
                }
            }
            Some(_) => {
                self.check_key_access()?;
                self.check_shared_key(view)
            }
            None => Err(StorageError::new(
                401,
                ErrorCode::Other("NoAuthenticationInformation".into()),
                "Server failed to authenticate the request. The request carries no Authorization header and no SAS.",
            )),
        }
    }

    /// 403 `KeyBasedAuthenticationNotPermitted` when key access is off.
    fn check_key_access(&self) -> Result<(), StorageError> {
        if self.config.allow_shared_key_access {
            return Ok(());
        }
        Err(StorageError::new(
            403,
            ErrorCode::Other("KeyBasedAuthenticationNotPermitted".into()),
            "Key based authentication is not permitted on this storage account.",
        ))
    }

    /// Get Directory Properties or Get File Properties (see [`properties`]).
    async fn properties_op(
        &self,
        asked: handles::PathKind,
        share: String,
        path: String,
        query: &[(String, String)],
        parts: &http::request::Parts,
    ) -> Result<Response<Body>, StorageError> {
        check_common(query, &parts.headers)?;
        let target = Target {
            share,
            path,
            recursive: None,
        };
        let props = self
            .backend
            .path_properties(&target)
            .await
            .map_err(store_error)?;
        properties::answer(&parts.method, asked, &props)
    }

    async fn handles_op(
        &self,
        op: Operation,
        share: String,
        path: String,
        query: &[(String, String)],
        headers: &http::HeaderMap,
        echo: &Echo,
    ) -> Result<Response<Body>, StorageError> {
        check_common(query, headers)?;
        let recursive = request::bool_header(headers, "x-ms-recursive")?;
        let target = Target {
            share,
            path,
            recursive,
        };
        let marker = request::marker(query);
        match op {
            // Dispatch sends properties requests to `properties_op`, never here.
            Operation::Read => Err(StorageError::internal(
                "Get Properties reached the handle operations.",
            )),
            Operation::List => {
                let max_results = request::max_results(query)?;
                let req = ListRequest {
                    target,
                    marker,
                    max_results,
                };
                let page = self.backend.list_handles(&req).await.map_err(store_error)?;
                let mut body = Vec::with_capacity(256 + page.handles.len() * 360);
                let echoed_marker = request::query(query, "marker").filter(|m| !m.is_empty());
                encode_list(
                    &mut body,
                    echo.version,
                    echoed_marker,
                    max_results,
                    &page.handles,
                    page.next_marker.as_ref(),
                );
                Ok(respond::xml(body))
            }
            Operation::Close => {
                let handles = request::handle_selector(headers)?;
                let req = CloseRequest {
                    target,
                    handles,
                    marker,
                };
                let page = self.backend.force_close(&req).await.map_err(store_error)?;
                self.metrics.closed(page.closed);
                let mut resp = respond::empty();
                let h = resp.headers_mut();
                h.insert("x-ms-number-of-handles-closed", page.closed.into());
                if echo.version.has_failed_count() {
                    h.insert("x-ms-number-of-handles-failed", page.failed.into());
                }
                if let Some(m) = page.next_marker
                    && let Ok(v) = http::HeaderValue::from_str(m.as_str())
                {
                    h.insert("x-ms-marker", v);
                }
                Ok(resp)
            }
        }
    }
}

/// The checks every operation on a share's paths shares: `timeout`, no `sharesnapshot` (the
/// stores have none), `x-ms-file-request-intent` and `x-ms-allow-trailing-dot`.
fn check_common(query: &[(String, String)], headers: &http::HeaderMap) -> Result<(), StorageError> {
    request::check_timeout(query)?;
    if let Some(snapshot) = request::query(query, "sharesnapshot") {
        return Err(StorageError::new(
            400,
            ErrorCode::FeatureNotSupported,
            "Share snapshots are not supported by this service: work on the live share.",
        )
        .with_detail("QueryParameterName", "sharesnapshot")
        .with_detail("QueryParameterValue", snapshot));
    }
    if let Some(intent) = request::header(headers, "x-ms-file-request-intent")?
        && intent != "backup"
    {
        return Err(StorageError::invalid_header(
            "x-ms-file-request-intent",
            intent,
            "The only intent is backup.",
        ));
    }
    request::bool_header(headers, "x-ms-allow-trailing-dot")?;
    Ok(())
}

/// The bounded operation label of a request, from its URI alone.
fn operation_label(uri: &http::Uri) -> &'static str {
    let query = uri.query().unwrap_or("");
    if uri.path().contains("/_admin") {
        "admin"
    } else if query.contains("comp=listhandles") {
        "list_handles"
    } else if query.contains("comp=forceclosehandles") {
        "force_close"
    } else {
        "other"
    }
}

/// Whether reading failed because the connection's read deadline passed.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn auth_error(e: auth::AuthError) -> StorageError {
    match e.kind {
        auth::AuthErrorKind::Authentication => StorageError::authentication_failed(e.detail),
        auth::AuthErrorKind::PermissionMismatch => StorageError::permission_mismatch(e.detail),
        kind => StorageError::new(
            403,
            ErrorCode::Other(kind.code().to_owned()),
            "This request is not authorized to perform this operation.",
        )
        .with_detail("AuthenticationErrorDetail", e.detail),
    }
}

fn store_error(e: handles::Error) -> StorageError {
    match e {
        handles::Error::Service { error, .. } => *error,
        other => StorageError::internal(format!("The store failed: {other}")),
    }
}
