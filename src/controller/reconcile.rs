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

use tokio::sync::Semaphore;

use super::due::{Due, DueInput, FOLLOWER_RECHECK, Reason, backoff, due, pending_request};
use super::error::Error;
use super::facts::FactsSource;
use super::leader::Leadership;
use super::{events, secrets, status};
use crate::api::{HandlePolicy, HandlePolicyStatus, SWEEP_REQUESTED_ANNOTATION};
use crate::handles::client::{ClientPool, Endpoint};
use crate::handles::{Error as HandleError, HandleService};
use crate::metrics::ControllerMetrics;
use crate::policy::{Policy, compile};
use crate::sweep::{StopSignal, SweepInput, SweepOptions, sweep};

/// The field manager of our status writes.
pub const FIELD_MANAGER: &str = "share-hygiene";

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
    /// One permit per sweep that may run at once, over all policies (`--max-concurrent-sweeps`):
    /// after a failover every due policy would otherwise start together.
    pub sweep_slots: Semaphore,
    /// Per policy (`namespace/name`): when a Secret it names last changed. A fact for
    /// [`due`], which retries a failed policy at once when its credentials changed.
    pub credentials_changed: Mutex<HashMap<String, Timestamp>>,
    /// Per policy: consecutive reconciles that failed talking to the Kubernetes API, to space
    /// their retries (not sweeps: a sweep's own failures are counted in status).
    pub api_errors: Mutex<HashMap<String, u32>>,
    /// Per policy: the status this replica last applied after a sweep. The watch may bring it
    /// to the store after the next reconcile has already read the object, and a reconcile that
    /// read the older status would sweep the policy again: it reads its own write instead.
    pub applied: Mutex<HashMap<String, HandlePolicyStatus>>,
    /// The clock (tests pin it).
    pub clock: fn() -> Timestamp,
}

/// The wait before retrying a reconcile that failed talking to the Kubernetes API, at most.
const API_RETRY_CAP: Duration = Duration::from_secs(300);

impl Context {
    fn stop_signal(&self) -> StopSignal {
        let (shutdown, leader) = (self.shutdown.clone(), self.leader.clone());
        Arc::new(move || shutdown.load(std::sync::atomic::Ordering::Relaxed) || !leader.is_leader())
    }

    /// Forgets a policy that is gone: its metric series and what was kept about it.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_policy(namespace, name);
        let key = format!("{namespace}/{name}");
        self.credentials_changed
            .lock()
            .expect("lock poisoned")
            .remove(&key);
        self.api_errors.lock().expect("lock poisoned").remove(&key);
        self.applied.lock().expect("lock poisoned").remove(&key);
    }

    /// The newer of the stored status and the one this replica last applied for `key`.
    fn newest_status(&self, key: &str, stored: HandlePolicyStatus) -> HandlePolicyStatus {
        let started = |s: &HandlePolicyStatus| {
            s.last_sweep
                .as_ref()
                .and_then(|l| l.start_time.parse::<Timestamp>().ok())
        };
        let mut applied = self.applied.lock().expect("lock poisoned");
        match applied.get(key) {
            Some(mine) if started(mine) > started(&stored) => mine.clone(),
            // The store caught up (or another replica swept since): it is the truth again.
            Some(_) => {
                applied.remove(key);
                stored
            }
            None => stored,
        }
    }

    /// Records that a Secret the policy `key` names changed at `at`.
    pub fn credentials_changed(&self, key: &str, at: Timestamp) {
        self.credentials_changed
            .lock()
            .expect("lock poisoned")
            .insert(key.to_owned(), at);
    }

    fn credentials_changed_at(&self, key: &str) -> Option<Timestamp> {
        let map = self.credentials_changed.lock().expect("lock poisoned");
        map.get(key).copied()
    }
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

    let requested = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SWEEP_REQUESTED_ANNOTATION))
        .map(String::as_str);
    let key = format!("{namespace}/{name}");
    let prev = ctx.newest_status(&key, prev);

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
            // Only the leader answers a request; a follower's answer could race the leader's.
            let request = pending_request(&prev, requested).filter(|_| ctx.leader.is_leader());
            let next = status::invalid_spec(&prev, &message, meta.generation, now, request);
            if next != prev {
                apply_status(&ctx.client, &namespace, &name, &next).await?;
                publish(&ctx, vec![events::invalid_spec(&message)], &reference).await;
            }
            ctx.api_errors.lock().expect("lock poisoned").remove(&key);
            return Ok(Action::await_change());
        }
    };
    ctx.metrics.set_interval(&namespace, &name, policy.interval);
    // A share removed from the spec takes its series along.
    let shares: Vec<&str> = policy.shares.iter().map(|s| s.share.as_str()).collect();
    ctx.metrics.forget_shares_except(&namespace, &name, &shares);

    let decide = |status: &HandlePolicyStatus, now: Timestamp| {
        due(&DueInput {
            generation: meta.generation,
            status,
            interval: policy.interval,
            requested,
            credentials_changed: ctx.credentials_changed_at(&key),
            leader: ctx.leader.is_leader(),
            now,
        })
    };
    let reason = match decide(&prev, now) {
        Due::Now(reason) => reason,
        later => {
            ctx.api_errors.lock().expect("lock poisoned").remove(&key);
            return Ok(Action::requeue(later.wait(now)));
        }
    };

    // Waiting for a slot can take as long as other sweeps do: leadership and shutdown are
    // looked at again once it is ours.
    let Ok(slot) = ctx.sweep_slots.acquire().await else {
        return Ok(Action::requeue(FOLLOWER_RECHECK));
    };
    if (ctx.stop_signal())() {
        return Ok(Action::requeue(FOLLOWER_RECHECK));
    }
    let now = (ctx.clock)();
    tracing::info!(%namespace, %name, reason = ?reason, "sweeping");
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

    let request = match &reason {
        Reason::Requested(token) => Some(token.as_str()),
        _ => None,
    };
    let next = status::after_sweep(&prev, &report, meta.generation, ended, request);
    apply_status(&ctx.client, &namespace, &name, &next).await?;
    ctx.applied
        .lock()
        .expect("lock poisoned")
        .insert(key.clone(), next.clone());
    drop(slot);
    publish(&ctx, events::for_sweep(&prev, &next, &report), &reference).await;
    ctx.metrics.record_sweep(&namespace, &name, &report, ended);
    for s in report.shares.iter().filter_map(|s| s.error.as_ref()) {
        ctx.metrics
            .reconcile_error(&namespace, &name, s.category.as_str());
    }
    ctx.api_errors.lock().expect("lock poisoned").remove(&key);
    Ok(Action::requeue(decide(&next, ended).wait(ended).max(
        // Never at once: the status just written may not have reached the store yet.
        Duration::from_secs(1),
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
            let credential = secrets::credential(
                &ctx.client,
                namespace,
                &scope.credentials,
                endpoint.account(),
            )
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

/// The error policy: log, count, publish a Warning Event, and retry with per-policy backoff
/// (5 s doubling per consecutive error, at most 5 minutes).
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
    let failures = {
        let mut map = ctx.api_errors.lock().expect("lock poisoned");
        let n = map.entry(key).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let wait = backoff(failures, API_RETRY_CAP);
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
