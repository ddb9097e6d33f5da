//! Clients kept per endpoint and credential, with one limit and one retry budget per endpoint.
//!
//! Every share and policy on one storage account shares that account's [`Limiter`] (so the
//! account never gets more than the ceiling in flight from this process) and [`RetryBudget`]
//! (so a struggling account is not retried harder because more policies use it). A client is
//! kept per credential version: a rotated key or SAS gets a new client at the next sweep,
//! with the same limits. A client no caller holds and none has asked for in `idle_after` is
//! dropped, and an endpoint's limits with its last client: nothing outlives its policies.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::limiter::Limiter;
use super::{ClientError, ClientOptions, Endpoint, HandleClient, RequestObserver, RetryBudget};
use crate::auth::Credential;

/// How long an unused client is kept by default.
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(15 * 60);

/// What every client of one endpoint shares.
#[derive(Debug, Clone)]
pub struct EndpointLimits {
    /// Requests in flight to the endpoint.
    pub limiter: Arc<Limiter>,
    /// Retries the endpoint's clients may spend.
    pub budget: Arc<RetryBudget>,
}

impl EndpointLimits {
    /// Fresh limits as `options` say.
    pub fn new(options: &ClientOptions) -> Self {
        Self {
            limiter: Arc::new(Limiter::new(options.concurrency)),
            budget: Arc::new(RetryBudget::new(options.retry_budget)),
        }
    }
}

/// Which version of a credential a client was built with: a keyed hash of its secret part,
/// never the secret itself. The key is random per pool, so the value means nothing outside it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialVersion([u8; 32]);

impl fmt::Debug for CredentialVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialVersion(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    endpoint: String,
    credential: CredentialVersion,
}

struct Entry {
    client: Arc<HandleClient>,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<ClientKey, Entry>,
    endpoints: HashMap<String, EndpointLimits>,
}

/// Clients shared across sweeps, per endpoint and credential version.
pub struct ClientPool {
    options: ClientOptions,
    idle_after: Duration,
    hash_key: [u8; 32],
    observer: Option<Arc<dyn RequestObserver>>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("ClientPool")
            .field("clients", &inner.clients.len())
            .field("endpoints", &inner.endpoints.len())
            .field("idle_after", &self.idle_after)
            .finish()
    }
}

impl ClientPool {
    /// A pool whose clients use `options` and are dropped after `idle_after` unused.
    pub fn new(options: ClientOptions, idle_after: Duration) -> Self {
        let mut hash_key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut hash_key);
        Self {
            options,
            idle_after,
            hash_key,
            observer: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Reports every request of every client to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("client pool lock poisoned")
    }

    /// The client for `endpoint` with `credential`: the one already built for this credential
    /// version, or a new one sharing the endpoint's limits.
    pub fn client(
        &self,
        endpoint: Endpoint,
        credential: Credential,
    ) -> Result<Arc<HandleClient>, ClientError> {
        let key = ClientKey {
            endpoint: endpoint.to_string(),
            credential: self.version(&credential),
        };
        let mut inner = self.lock();
        self.evict(&mut inner);
        if let Some(entry) = inner.clients.get_mut(&key) {
            entry.last_used = Instant::now();
            return Ok(entry.client.clone());
        }
        let limits = inner
            .endpoints
            .entry(key.endpoint.clone())
            .or_insert_with(|| EndpointLimits::new(&self.options))
            .clone();
        let mut client =
            HandleClient::new(endpoint, credential, self.options.clone())?.with_limits(limits);
        if let Some(observer) = &self.observer {
            client = client.with_observer(observer.clone());
        }
        let client = Arc::new(client);
        inner.clients.insert(
            key,
            Entry {
                client: client.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(client)
    }

    /// The limits shared by the clients of `endpoint`, while it has any.
    pub fn limits(&self, endpoint: &Endpoint) -> Option<EndpointLimits> {
        self.lock().endpoints.get(&endpoint.to_string()).cloned()
    }

    /// How many clients and endpoints it holds.
    pub fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.clients.len(), inner.endpoints.len())
    }

    /// Whether it holds no client.
    pub fn is_empty(&self) -> bool {
        self.lock().clients.is_empty()
    }

    /// Drops the clients no caller holds that have been unused for `idle_after`, and the
    /// limits of endpoints left without clients (call after each sweep).
    pub fn drop_idle(&self) {
        let mut inner = self.lock();
        self.evict(&mut inner);
    }

    fn evict(&self, inner: &mut Inner) {
        let idle_after = self.idle_after;
        inner
            .clients
            .retain(|_, e| Arc::strong_count(&e.client) > 1 || e.last_used.elapsed() < idle_after);
        let Inner { clients, endpoints } = inner;
        endpoints.retain(|endpoint, _| clients.keys().any(|k| &k.endpoint == endpoint));
    }

    /// The version of `credential`: HMAC-SHA256, under the pool's random key, of its kind and
    /// secret material (a bearer token file's path: the client re-reads the file itself; an
    /// Entra ID identity's cache key).
    fn version(&self, credential: &Credential) -> CredentialVersion {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.hash_key).expect("HMAC takes any key length");
        match credential {
            Credential::SharedKey { account, key } => {
                mac.update(b"key\0");
                mac.update(account.as_bytes());
                mac.update(b"\0");
                mac.update(key.bytes());
            }
            Credential::Sas(sas) => {
                mac.update(b"sas\0");
                mac.update(sas.query().as_bytes());
            }
            Credential::BearerTokenFile(path) => {
                mac.update(b"bearer-file\0");
                mac.update(path.as_os_str().as_encoded_bytes());
            }
            // The identity's token-cache key names it (and a digest of a secret it holds), so
            // a rotated client secret or another identity gets a client of its own.
            Credential::Entra(identity) => {
                mac.update(b"entra\0");
                mac.update(
                    identity
                        .cache_key(crate::auth::entra::STORAGE_SCOPE)
                        .as_bytes(),
                );
            }
        }
        CredentialVersion(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccountKey;

    fn key_credential(key: &AccountKey) -> Credential {
        Credential::SharedKey {
            account: "acct".into(),
            key: key.clone(),
        }
    }

    fn endpoint(host: &str) -> Endpoint {
        Endpoint::parse(&format!("http://{host}/acct")).unwrap()
    }

    #[test]
    fn one_client_per_credential_version_and_one_limit_per_endpoint() {
        let pool = ClientPool::new(ClientOptions::default(), DEFAULT_IDLE_AFTER);
        let (k1, k2) = (AccountKey::random(), AccountKey::random());
        let a = pool
            .client(endpoint("127.0.0.1:1"), key_credential(&k1))
            .unwrap();
        let same = pool
            .client(endpoint("127.0.0.1:1"), key_credential(&k1))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &same));
        let rotated = pool
            .client(endpoint("127.0.0.1:1"), key_credential(&k2))
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &rotated), "a new key gets a new client");
        assert!(
            Arc::ptr_eq(a.limiter(), rotated.limiter()),
            "same endpoint, same limit"
        );
        let other = pool
            .client(endpoint("127.0.0.1:2"), key_credential(&k1))
            .unwrap();
        assert!(!Arc::ptr_eq(a.limiter(), other.limiter()));
        assert_eq!(pool.len(), (3, 2));
    }

    #[test]
    fn unused_clients_and_their_endpoints_limits_are_dropped() {
        let pool = ClientPool::new(ClientOptions::default(), Duration::ZERO);
        let key = AccountKey::random();
        let held = pool
            .client(endpoint("127.0.0.1:1"), key_credential(&key))
            .unwrap();
        drop(
            pool.client(endpoint("127.0.0.1:2"), key_credential(&key))
                .unwrap(),
        );
        pool.drop_idle();
        assert_eq!(pool.len(), (1, 1), "the held client stays");
        drop(held);
        pool.drop_idle();
        assert!(pool.is_empty());
        assert_eq!(pool.len(), (0, 0));
    }

    #[test]
    fn the_version_shows_no_secret() {
        let pool = ClientPool::new(ClientOptions::default(), DEFAULT_IDLE_AFTER);
        let key = AccountKey::random();
        let version = pool.version(&key_credential(&key));
        let shown = format!("{version:?} {pool:?}");
        assert!(!shown.contains(&key.to_base64()), "{shown}");
        assert!(shown.len() < 120, "{shown}");
        assert_ne!(
            version,
            ClientPool::new(ClientOptions::default(), DEFAULT_IDLE_AFTER)
                .version(&key_credential(&key)),
            "keyed per pool"
        );
    }
}
