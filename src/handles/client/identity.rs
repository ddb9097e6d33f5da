//! Tokens from Microsoft Entra ID over HTTP: one [`TokenProvider`] per identity and scope asks
//! the token endpoint (or IMDS), caches the token and asks again before it expires, retrying
//! the endpoint's throttling, server errors and broken connections with backoff.
//!
//! Providers are shared process-wide ([`TokenProvider::shared`]): the controller builds a
//! client per sweep, and a token lives an hour, so a per-client cache would ask Entra for a
//! token at every sweep of every share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::body::{BodyError, MAX_SMALL_BODY, read_limited};
use super::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use super::{ClientError, error_chain};
use crate::auth::entra::{
    AccessToken, CachedToken, EntraError, Identity, STORAGE_SCOPE, TokenRequest, parse_token_answer,
};

/// Reads the clock; tests replace it to reach a token's refresh time without waiting.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// How a provider behaves.
#[derive(Clone)]
pub struct TokenOptions {
    /// The scope asked for.
    pub scope: String,
    /// When to retry the token endpoint.
    pub retry: RetryPolicy,
    /// The longest one exchange may take.
    pub request_timeout: Duration,
    /// The clock.
    pub clock: Clock,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            scope: STORAGE_SCOPE.to_owned(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            clock: Arc::new(Instant::now),
        }
    }
}

/// Why no token could be had. The message names the identity and the endpoint's answer
/// (its `error` and `AADSTS` codes), never an assertion, a secret or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused (after retries, for a retryable answer).
    #[error("{identity}: {error}")]
    Refused {
        /// The identity, described.
        identity: String,
        /// The endpoint's answer.
        error: EntraError,
    },
    /// Anything else: the endpoint unreachable, a bad answer, an unreadable token file.
    #[error("{identity}: {message}")]
    Failed {
        /// The identity, described.
        identity: String,
        /// What went wrong.
        message: String,
    },
}

/// Tokens for one identity and scope, cached.
pub struct TokenProvider {
    identity: Identity,
    options: TokenOptions,
    http: reqwest::Client,
    /// Held across a refresh, so that concurrent callers wait for one request.
    cached: tokio::sync::Mutex<Option<CachedToken>>,
    requests: AtomicU64,
}

/// Every provider of the process, by [`Identity::cache_key`].
static SHARED: LazyLock<Mutex<HashMap<String, Arc<TokenProvider>>>> =
    LazyLock::new(Default::default);

impl TokenProvider {
    /// A provider of its own (tests, or a caller that keeps it).
    pub fn new(identity: Identity, options: TokenOptions) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let mut http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("share-hygiene/", env!("CARGO_PKG_VERSION")));
        if matches!(identity, Identity::Managed { .. }) {
            // IMDS is link-local: a proxy from the environment could not reach it.
            http = http.no_proxy();
        }
        let http = http.build().map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            identity,
            options,
            http,
            cached: tokio::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
        })
    }

    /// The process-wide provider of storage tokens for `identity`, made on first use.
    pub fn shared(identity: &Identity) -> Result<Arc<Self>, ClientError> {
        let key = identity.cache_key(STORAGE_SCOPE);
        let mut all = SHARED.lock().expect("lock poisoned");
        if let Some(p) = all.get(&key) {
            return Ok(p.clone());
        }
        let provider = Arc::new(Self::new(identity.clone(), TokenOptions::default())?);
        all.insert(key, provider.clone());
        Ok(provider)
    }

    /// Token requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A token: the cached one while fresh, else a new one. When a refresh fails while the
    /// cached token still works, the cached one is used and the failure logged.
    pub async fn token(&self) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        let now = (self.options.clock)();
        if let Some(c) = cached.as_ref()
            && c.is_fresh(now)
        {
            return Ok(c.token.clone());
        }
        match self.fetch().await {
            Ok(AccessToken { token, expires_in }) => {
                let now = (self.options.clock)();
                *cached = Some(CachedToken::new(token.clone(), expires_in, now));
                Ok(token)
            }
            Err(error) => match cached.as_ref() {
                Some(c) if c.is_valid((self.options.clock)()) => {
                    tracing::warn!(%error, "refreshing the token failed; using the cached one until it expires");
                    Ok(c.token.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Asks for a token, retrying as the options say.
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let mut retry = 0;
        loop {
            let (error, retry_after) = match self.attempt().await {
                Attempt::Done(token) => return Ok(token),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            retry += 1;
            if retry > self.options.retry.max_retries {
                return Err(error);
            }
            let wait = self.options.retry.delay(retry, retry_after);
            tracing::debug!(identity = %self.identity.describe(), retry, ?wait, %error, "retrying the token request");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self) -> Attempt {
        let failed = |message: String| TokenError::Failed {
            identity: self.identity.describe(),
            message,
        };
        // The federated token rotates: read it for every exchange. A certificate signs a new
        // assertion for every exchange (each is short-lived and unique).
        let assertion = match &self.identity {
            Identity::Workload { token_file, .. } => match read_assertion(token_file) {
                Ok(a) => Some(a),
                Err(message) => return Attempt::Fail(failed(message)),
            },
            _ => match self.identity.signed_assertion(
                Timestamp::now().as_second(),
                &uuid::Uuid::new_v4().to_string(),
            ) {
                Some(Ok(a)) => Some(a),
                Some(Err(e)) => return Attempt::Fail(failed(e.to_string())),
                None => None,
            },
        };
        let request = self
            .identity
            .token_request(&self.options.scope, assertion.as_ref());
        let builder = match &request {
            TokenRequest::Form { url, body } => self
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(body.expose_secret().to_owned()),
            TokenRequest::Metadata { url } => self
                .http
                .get(url)
                .header("metadata", "true")
                .header("accept", "application/json"),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: failed(format!(
                        "asking for a token: {}",
                        error_chain(&e.without_url())
                    )),
                    retry_after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Timestamp::now()));
        let body = match read_limited(resp, MAX_SMALL_BODY).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => {
                return Attempt::Fail(failed(format!(
                    "the token answer is larger than {}",
                    super::body::size(limit)
                )));
            }
            Err(BodyError::Transport(e)) => {
                return Attempt::Retry {
                    error: failed(format!(
                        "reading the token answer: {}",
                        error_chain(&e.without_url())
                    )),
                    retry_after: None,
                };
            }
        };
        if (200..300).contains(&status) {
            return match parse_token_answer(&body) {
                Ok(token) => Attempt::Done(token),
                Err(message) => Attempt::Fail(failed(message)),
            };
        }
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(a) = &assertion {
            secrets.push(a.expose_secret());
        }
        if let Some(s) = self.identity.secret() {
            secrets.push(s.expose_secret());
        }
        let error = TokenError::Refused {
            identity: self.identity.describe(),
            error: EntraError::parse(status, &body, &secrets),
        };
        if is_retryable_status(status) {
            Attempt::Retry { error, retry_after }
        } else {
            Attempt::Fail(error)
        }
    }
}

enum Attempt {
    Done(AccessToken),
    Retry {
        error: TokenError,
        retry_after: Option<Duration>,
    },
    Fail(TokenError),
}

/// The federated service-account token, trimmed; an error names the file, never its content.
fn read_assertion(path: &std::path::Path) -> Result<SecretString, String> {
    let raw = SecretString::from(
        std::fs::read_to_string(path)
            .map_err(|e| format!("reading the federated token file {}: {e}", path.display()))?,
    );
    let token = raw.expose_secret().trim();
    if token.is_empty() {
        return Err(format!(
            "the federated token file {} is empty",
            path.display()
        ));
    }
    Ok(token.into())
}
