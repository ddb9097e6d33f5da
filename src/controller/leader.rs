//! Leadership: only the replica holding the coordination.k8s.io Lease sweeps; the others
//! watch, ready to take over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube_lease_manager::LeaseManagerBuilder;

/// Whether this replica may sweep.
pub trait Leadership: Send + Sync {
    /// True while this replica leads.
    fn is_leader(&self) -> bool;
}

/// Always the leader: one replica without leader election.
pub struct AlwaysLeader;

impl Leadership for AlwaysLeader {
    fn is_leader(&self) -> bool {
        true
    }
}

/// Never the leader (tests).
pub struct NeverLeader;

impl Leadership for NeverLeader {
    fn is_leader(&self) -> bool {
        false
    }
}

/// Leadership through a Lease, kept by kube-lease-manager in a background task.
pub struct LeaseLeader {
    leading: Arc<AtomicBool>,
    changes: tokio::sync::watch::Receiver<bool>,
}

impl LeaseLeader {
    /// Leadership changes, as they happen.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changes.clone()
    }
}

impl Leadership for LeaseLeader {
    fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }
}

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal, in seconds.
    pub duration_secs: u64,
    /// How long before expiry the holder renews, in seconds.
    pub grace_secs: u64,
}

impl LeaseLeader {
    /// Starts competing for the Lease. `on_change` is told every change (metrics, logs).
    pub async fn start(
        client: kube::Client,
        settings: LeaseSettings,
        on_change: impl Fn(bool) + Send + 'static,
    ) -> Result<Self, kube_lease_manager::LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_secs)
            .with_grace(settings.grace_secs)
            // One field manager per replica: the API server then refuses a second replica's
            // apply of a held Lease (409), which is what keeps two replicas from both leading.
            .with_field_manager(format!("share-hygiene-{}", settings.identity))
            .build()
            .await?;
        let (mut rx, _task) = manager.watch().await;
        let changes = rx.clone();
        let leading = Arc::new(AtomicBool::new(*rx.borrow()));
        let flag = leading.clone();
        tokio::spawn(async move {
            loop {
                let now = *rx.borrow_and_update();
                flag.store(now, Ordering::Relaxed);
                tracing::info!(leader = now, "leadership changed");
                on_change(now);
                if rx.changed().await.is_err() {
                    flag.store(false, Ordering::Relaxed);
                    on_change(false);
                    tracing::warn!("lost the lease manager; not leading");
                    return;
                }
            }
        });
        Ok(Self { leading, changes })
    }
}
