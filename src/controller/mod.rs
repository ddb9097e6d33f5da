//! The controller: reconciles HandlePolicies in a cluster.
//!
//! Each policy is swept at its interval (requeue), at once after a spec change and on demand
//! (the `sharehygiene.io/sweep-requested` annotation). Whether a sweep is due is decided in
//! one place, [`due::due`]; the policy watch passes only changes of the generation or of that
//! annotation ([`due::trigger`]), so our own status writes (server-side apply under one field
//! manager) do not wake the reconciler. Secrets are read at every sweep and watched (metadata
//! only), so a rotated key takes effect at the next sweep and a policy degraded by a bad
//! credential retries as soon as the Secret changes. Only the replica holding the Lease
//! sweeps; losing it stops sweeping before the next close. At most `max_concurrent_sweeps`
//! sweeps run at once.

mod due;
mod error;
mod events;
mod facts;
mod http;
mod leader;
mod policy_watch;
mod reconcile;
mod secrets;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};

pub use due::{
    Awaiting, Due, DueInput, FOLLOWER_RECHECK, Reason, backoff, due, pending_request, trigger,
};
pub use error::Error;
pub use facts::{FactsSource, ReflectedFacts, StaticFacts, facts_of};
pub use leader::{AlwaysLeader, Leadership, LeaseLeader, LeaseSettings, NeverLeader};
pub use reconcile::{Context, FIELD_MANAGER, apply_status, error_policy, reconcile};
pub use secrets::share_identity;
pub use status::{after_sweep, invalid_spec, ledger_of};

use crate::api::HandlePolicy;
use crate::handles::client::{ClientOptions, ClientPool, DEFAULT_IDLE_AFTER};
use crate::metrics::ControllerMetrics;
use crate::sweep::SweepOptions;

/// How the controller runs.
#[derive(Clone)]
pub struct ControllerConfig {
    /// Namespaces to watch; empty for all.
    pub namespaces: Vec<String>,
    /// A label selector: only the policies it selects are this controller's (sharding).
    pub policy_selector: Option<String>,
    /// The most sweeps that run at once, over all policies.
    pub max_concurrent_sweeps: std::num::NonZeroUsize,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// The Lease to compete for; `None` runs without leader election (one replica only).
    pub lease: Option<LeaseSettings>,
    /// This replica's name, for Events.
    pub instance: Option<String>,
    /// How sweeps run.
    pub sweep: SweepOptions,
    /// How handle clients behave.
    pub client: ClientOptions,
}

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// The CRD is not installed.
    #[error(
        "the HandlePolicy CRD (handlepolicies.sharehygiene.io) is not installed in this cluster; install it with `share-hygiene crd | kubectl apply -f -` (or `kubectl apply -f crds/handlepolicy.yaml`, or the Helm chart)"
    )]
    CrdMissing,
    /// The API server refused the policy selector.
    #[error("--policy-selector {selector:?}: the API server refused it: {message}")]
    PolicySelector {
        /// The selector as given.
        selector: String,
        /// The API server's message.
        message: String,
    },
    /// The API server refused or failed the first request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The HTTP port could not be bound.
    #[error("serving {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leader election could not start.
    #[error("leader election: {0}")]
    Lease(String),
}

/// Fails with a clear message when the CRD is missing (or the API server refuses the policy
/// selector, naming it).
pub async fn check_crd(
    client: &kube::Client,
    namespaces: &[String],
    selector: Option<&str>,
) -> Result<(), RunError> {
    let api: Api<DeserializeGuard<HandlePolicy>> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = ListParams::default().limit(1);
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    match api.list_metadata(&params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(RunError::CrdMissing),
        Err(kube::Error::Api(s)) if s.code == 400 && selector.is_some() => {
            Err(RunError::PolicySelector {
                selector: selector.unwrap_or_default().to_owned(),
                message: s.message,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the controller until `shutdown` resolves; then lets the close request in flight
/// finish, skips the rest, and returns.
pub async fn run(
    config: ControllerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    crate::install_crypto_provider();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| RunError::Config(e.to_string()))?;
    check_crd(
        &client,
        &config.namespaces,
        config.policy_selector.as_deref(),
    )
    .await?;

    let metrics = ControllerMetrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let bound = http::serve(config.listen, metrics.clone(), ready.clone())
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");

    let (leader, leadership): (Arc<dyn Leadership>, _) = match &config.lease {
        Some(settings) => {
            let m = metrics.clone();
            let lease =
                LeaseLeader::start(client.clone(), settings.clone(), move |l| m.set_leader(l))
                    .await
                    .map_err(|e| RunError::Lease(e.to_string()))?;
            let rx = lease.subscribe();
            (Arc::new(lease), Some(rx))
        }
        None => {
            metrics.set_leader(true);
            (Arc::new(AlwaysLeader), None)
        }
    };
    let facts = ReflectedFacts::start(client.clone());
    let reporter = Reporter {
        controller: "share-hygiene".into(),
        instance: config.instance.clone(),
    };
    let shutdown_flag = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        leader,
        facts: Arc::new(facts.clone()),
        sweep_options: config.sweep.clone(),
        clients: ClientPool::new(config.client.clone(), DEFAULT_IDLE_AFTER)
            .with_observer(Arc::new(metrics.clone())),
        shutdown: shutdown_flag.clone(),
        sweep_slots: tokio::sync::Semaphore::new(config.max_concurrent_sweeps.get()),
        credentials_changed: Default::default(),
        api_errors: Default::default(),
        applied: Default::default(),
        clock: jiff::Timestamp::now,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: the close in flight finishes, the rest are skipped");
        shutdown_flag.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
    });

    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut runs = Vec::new();
    let mut synced = Vec::new();
    for ns in scopes {
        let policies: Api<DeserializeGuard<HandlePolicy>> = scoped(&client, ns.as_deref());
        let secrets: Api<PartialObjectMeta<Secret>> = scoped(&client, ns.as_deref());
        let metadata: Api<PartialObjectMeta<HandlePolicy>> = scoped(&client, ns.as_deref());
        let mut policy_config = watcher::Config::default();
        if let Some(selector) = &config.policy_selector {
            policy_config = policy_config.labels(selector);
        }
        synced.push(policy_watch::watch_policies(
            metadata,
            policy_config.clone(),
            ctx.clone(),
        ));
        // Only a change of the spec (its generation) or of the on-demand annotation wakes the
        // reconciler; our own status writes still reach the store it reads from.
        let (store, writer) = reflector::store();
        let changes = watcher(policies, policy_config.any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(due::trigger, PredicateConfig::default());
        let controller = Controller::for_stream(changes, store.clone());
        let mut stop = stop_rx.clone();
        let secret_ctx = ctx.clone();
        let controller = controller.watches(
            secrets,
            watcher::Config::default(),
            move |secret: PartialObjectMeta<Secret>| {
                let refs = referencing(
                    &store,
                    secret.metadata.namespace.as_deref(),
                    secret.metadata.name.as_deref(),
                );
                // A changed Secret may fix a policy that is backing off: `due` retries it at once.
                let now = (secret_ctx.clock)();
                for r in &refs {
                    let namespace = r.namespace.as_deref().unwrap_or("");
                    secret_ctx.credentials_changed(&format!("{namespace}/{}", r.name), now);
                }
                refs
            },
        );
        // A replica that becomes leader sweeps what is due at once, not at its next recheck.
        let controller = match &leadership {
            Some(rx) => controller.reconcile_all_on(became_leader(rx.clone())),
            None => controller,
        };
        let gone_ctx = ctx.clone();
        let run = controller
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(move |result| {
                match result {
                    Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                    // A requeue of a deleted policy: a reconcile that raced with the deletion
                    // may have recorded metrics after the policy watch forgot it.
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        let namespace = obj.namespace.as_deref().unwrap_or_default();
                        gone_ctx.forget(namespace, &obj.name);
                    }
                    Err(e) => tracing::warn!(error = %e, "controller error"),
                }
                futures::future::ready(())
            });
        runs.push(run);
    }

    // Ready once every watch has listed: the policies' (seen through a metadata watch of their
    // own, as the Controller's store cannot be awaited twice; it also forgets deleted
    // policies) and the facts'.
    tokio::spawn(async move {
        loop {
            if synced.iter().all(|s| s.load(Ordering::Relaxed)) && facts.is_ready() {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("watches synced; ready");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });

    futures::future::join_all(runs).await;
    Ok(())
}

/// An `Api` over one namespace, or all of them.
fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One item each time this replica becomes leader.
fn became_leader(rx: tokio::sync::watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

/// The policies in `namespace` whose shares reference the Secret `name`.
fn referencing(
    store: &kube::runtime::reflector::Store<DeserializeGuard<HandlePolicy>>,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Vec<ObjectRef<DeserializeGuard<HandlePolicy>>> {
    let (Some(namespace), Some(name)) = (namespace, name) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|guard| match &guard.0 {
            Ok(hp) => {
                hp.metadata.namespace.as_deref() == Some(namespace)
                    && hp
                        .spec
                        .shares
                        .iter()
                        .any(|s| s.secret_names().any(|n| n == name))
            }
            Err(_) => false,
        })
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}
