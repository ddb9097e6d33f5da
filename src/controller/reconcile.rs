//! One reconcile of one HandlePolicy: validate, decide whether a sweep is due, sweep if this
//! replica leads, then write status, Events and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::error::Error;
use super::facts::FactsSource;
use super::leader::Leadership;
use super::{events, secrets, status};
use crate::api::{HandlePolicy, HandlePolicyStatus};
use crate::handles::client::{ClientPool, Endpoint};
use crate::handles::{Error as HandleError, HandleService};
use crate::metrics::ControllerMetrics;
use crate::policy::{Policy, compile};
use crate::sweep::{StopSignal, SweepInput, SweepOptions, sweep};

/// The field manager of our status writes.
pub const FIELD_MANAGER: &str = "share-hygiene";

/// How long a replica that does not lead waits before looking again.
pub const FOLLOWER_RECHECK: Duration = Duration::from_secs(15);

/// Everything a reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The controller's metrics.
    pub metrics: ControllerMetrics,
    /// Whether this replica may sweep.
    pub leader: Arc<dyn Leadership>,
    /// The cluster's nodes and pods.
    pub facts: Arc<dyn FactsSource>,
    /// How sweeps run.
    pub sweep_options: SweepOptions,
    /// The handle clients, kept per endpoint and credential version across sweeps, with one
    /// limit of requests in flight and one retry budget per endpoint.
    pub clients: ClientPool,
    /// Set on shutdown.
    pub shutdown: Arc<std::sync::atomic::AtomicBool>,
    /// Consecutive failed sweeps per policy (`namespace/name`) and when to retry, for backoff.
    pub failures: Mutex<HashMap<String, Retry>>,
    /// The clock (tests pin it).
    pub clock: fn() -> Timestamp,
}

impl Context {
    fn stop_signal(&self) -> StopSignal {
        let (shutdown, leader) = (self.shutdown.clone(), self.leader.clone());
        Arc::new(move || shutdown.load(std::sync::atomic::Ordering::Relaxed) || !leader.is_leader())
    }

    /// The wait before the next sweep after one that failed (`failed`) or not: 5s doubling
    /// per consecutive failure, at most the interval; the interval after a success. A failure
    /// also records when to retry, so reconciles triggered in between (by our own status
    /// write) wait instead of sweeping again.
    fn backoff(&self, key: &str, failed: bool, interval: Duration, now: Timestamp) -> Duration {
        let mut map = self.failures.lock().expect("lock poisoned");
        if !failed {
            map.remove(key);
            return interval;
        }
        let retry = map.entry(key.to_owned()).or_insert(Retry {
            failures: 0,
            at: now,
        });
        retry.failures = retry.failures.saturating_add(1);
        let wait = Duration::from_secs(5)
            .saturating_mul(1 << (retry.failures - 1).min(10))
            .min(interval);
        retry.at = now
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .unwrap_or(now);
        wait
    }

    /// How long a policy that failed must still wait before its retry.
    fn retry_wait(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let map = self.failures.lock().expect("lock poisoned");
        let left = now.duration_until(map.get(key)?.at);
        left.is_positive().then(|| left.unsigned_abs())
    }

    /// Forgets a policy that is gone: its metric series and its backoff state.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_policy(namespace, name);
        let key = format!("{namespace}/{name}");
        self.failures.lock().expect("lock poisoned").remove(&key);
    }

    /// Lets a backing-off policy retry at its next reconcile (its Secret changed).
    pub fn clear_retry(&self, key: &str) {
        if let Some(r) = self.failures.lock().expect("lock poisoned").get_mut(key) {
            r.at = Timestamp::UNIX_EPOCH;
        }
    }
}

/// A policy's backoff state.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Consecutive failed sweeps.
    pub failures: u32,
    /// Not before this.
    pub at: Timestamp,
}

fn reference(meta: &kube::core::ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(HandlePolicy::api_version(&()).into_owned()),
        kind: Some(HandlePolicy::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Applies `status` with our field manager (server-side apply of the status subresource).
pub async fn apply_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &HandlePolicyStatus,
) -> Result<(), Error> {
    let api: Api<DeserializeGuard<HandlePolicy>> = Api::namespaced(client.clone(), namespace);
    let body = json!({ "apiVersion": "sharehygiene.io/v1alpha1", "kind": "HandlePolicy", "status": status });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, events: Vec<Event>, reference: &ObjectReference) {
    for e in events {
        if let Err(err) = ctx.recorder.publish(&e, reference).await {
            tracing::warn!(error = %err, reason = %e.reason, "publishing an Event failed");
        }
    }
}

/// Reconciles one policy.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<HandlePolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let now = (ctx.clock)();
    let (meta, parsed) = match &obj.0 {
        Ok(hp) => (hp.metadata.clone(), Ok(hp)),
        Err(invalid) => (invalid.metadata.clone(), Err(invalid.error.clone())),
    };
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let name = meta.name.clone().ok_or(Error::MissingMetadata("name"))?;
    let reference = reference(&meta);
    let prev = parsed
        .as_ref()
        .ok()
        .and_then(|hp| hp.status.clone())
        .unwrap_or_default();

    // A policy that cannot be read or compiled is degraded; it waits for a spec change.
    let compiled: Result<Policy, String> = match parsed {
        Ok(hp) => compile(&hp.spec).map_err(|e| e.to_string()),
        Err(e) => Err(format!("the HandlePolicy cannot be read: {e}")),
    };
    let policy = match compiled {
        Ok(p) => p,
        Err(message) => {
            tracing::warn!(%namespace, %name, %message, "invalid HandlePolicy");
            ctx.metrics
                .reconcile_error(&namespace, &name, "InvalidSpec");
            let next = status::invalid_spec(&prev, &message, meta.generation, now);
            if next != prev {
                apply_status(&ctx.client, &namespace, &name, &next).await?;
                publish(&ctx, vec![events::invalid_spec(&message)], &reference).await;
            }
            return Ok(Action::await_change());
        }
    };
    ctx.metrics.set_interval(&namespace, &name, policy.interval);
    // A share removed from the spec takes its series along.
    let shares: Vec<&str> = policy.shares.iter().map(|s| s.share.as_str()).collect();
    ctx.metrics.forget_shares_except(&namespace, &name, &shares);

    let key = format!("{namespace}/{name}");
    if let Some(wait) = status::not_due(&prev, meta.generation, policy.interval, now) {
        return Ok(Action::requeue(wait));
    }
    // Due because the last sweep degraded: wait out the backoff (a spec change does not wait).
    if prev.observed_generation == meta.generation
        && let Some(wait) = ctx.retry_wait(&key, now)
    {
        return Ok(Action::requeue(wait));
    }
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(FOLLOWER_RECHECK));
    }

    let services = share_services(&ctx, &namespace, &policy).await;
    let facts = ctx.facts.snapshot();
    let input = SweepInput {
        policy: &policy,
        services,
        cluster: facts.as_deref(),
        orphans: status::ledger_of(&prev),
        now,
        stop: ctx.stop_signal(),
    };
    let report = sweep(input, &ctx.sweep_options).await;
    // Clients of rotated credentials and of policies gone for a while go now.
    ctx.clients.drop_idle();
    let ended = (ctx.clock)();
    tracing::info!(
        %namespace, %name, mode = %report.mode, seen = report.seen(), closed = report.closed(),
        failed = report.failed(), ok = report.all_shares_ok(), "swept"
    );

    let next = status::after_sweep(&prev, &report, meta.generation, ended);
    apply_status(&ctx.client, &namespace, &name, &next).await?;
    publish(&ctx, events::for_sweep(&prev, &next, &report), &reference).await;
    ctx.metrics.record_sweep(&namespace, &name, &report, ended);
    for s in report.shares.iter().filter_map(|s| s.error.as_ref()) {
        ctx.metrics
            .reconcile_error(&namespace, &name, s.category.as_str());
    }
    Ok(Action::requeue(ctx.backoff(
        &key,
        !report.all_shares_ok(),
        policy.interval,
        ended,
    )))
}

/// One service per share: a client with the credential of the share's Secret, or the error
/// that keeps the share from being swept.
async fn share_services(
    ctx: &Context,
    namespace: &str,
    policy: &Policy,
) -> Vec<Result<Arc<dyn HandleService>, HandleError>> {
    let mut out = Vec::with_capacity(policy.shares.len());
    for scope in &policy.shares {
        let service = async {
            let endpoint =
                Endpoint::parse(&scope.endpoint).map_err(|e| HandleError::Credential {
                    message: e.to_string(),
                })?;
            let credential =
                secrets::credential(&ctx.client, namespace, &scope.secret, endpoint.account())
                    .await?;
            let client =
                ctx.clients
                    .client(endpoint, credential)
                    .map_err(|e| HandleError::Credential {
                        message: e.to_string(),
                    })?;
            Ok::<Arc<dyn HandleService>, HandleError>(client)
        };
        out.push(service.await);
    }
    out
}

/// The error policy: log, count, publish a Warning Event, and retry with per-policy backoff.
pub fn error_policy(
    obj: Arc<DeserializeGuard<HandlePolicy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let (namespace, name) = match &obj.0 {
        Ok(hp) => (hp.namespace().unwrap_or_default(), hp.name_any()),
        Err(i) => (
            i.metadata.namespace.clone().unwrap_or_default(),
            i.metadata.name.clone().unwrap_or_default(),
        ),
    };
    tracing::warn!(%namespace, %name, error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_error(&namespace, &name, error.category());
    let key = format!("{namespace}/{name}");
    let wait = ctx.backoff(&key, true, Duration::from_secs(300), (ctx.clock)());
    let meta = match &obj.0 {
        Ok(hp) => hp.metadata.clone(),
        Err(i) => i.metadata.clone(),
    };
    let (recorder, reference, event) = (
        ctx.recorder.clone(),
        reference(&meta),
        events::reconcile_error(error.category(), &error.to_string()),
    );
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "publishing an Event failed");
        }
    });
    Action::requeue(wait)
}
