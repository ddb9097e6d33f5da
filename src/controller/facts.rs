//! Cluster facts for the orphaned rule: reflectors over Nodes and Pods that keep only the
//! addresses and names, and a consistent snapshot per sweep.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::policy::ClusterFacts;

/// Where a sweep gets its cluster facts from.
pub trait FactsSource: Send + Sync {
    /// A snapshot, or `None` while the facts are not yet known (then the orphaned rule condemns
    /// nothing, rather than everything).
    fn snapshot(&self) -> Option<ClusterFacts>;
}

/// Fixed facts (tests, or a cluster-less run).
pub struct StaticFacts(pub Option<ClusterFacts>);

impl FactsSource for StaticFacts {
    fn snapshot(&self) -> Option<ClusterFacts> {
        self.0.clone()
    }
}

/// Reflector stores of Nodes and Pods.
#[derive(Clone)]
pub struct ReflectedFacts {
    nodes: Store<Node>,
    pods: Store<Pod>,
    ready: Arc<AtomicBool>,
}

impl ReflectedFacts {
    /// Starts the reflectors (in background tasks) and returns their stores.
    pub fn start(client: kube::Client) -> Self {
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(slim_node)
            .reflect(node_writer)
            .applied_objects();
        let pod_stream = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .modify(slim_pod)
            .reflect(pod_writer)
            .applied_objects();
        tokio::spawn(node_stream.for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "node watch error (retrying)");
            }
        }));
        tokio::spawn(pod_stream.for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "pod watch error (retrying)");
            }
        }));
        let ready = Arc::new(AtomicBool::new(false));
        let (n, p, flag) = (nodes.clone(), pods.clone(), ready.clone());
        tokio::spawn(async move {
            let _ = n.wait_until_ready().await;
            let _ = p.wait_until_ready().await;
            flag.store(true, Ordering::Relaxed);
        });
        Self { nodes, pods, ready }
    }

    /// Resolves when both stores have their first full list.
    pub async fn wait_until_ready(&self) {
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
    }
}

/// Keeps a Node's name and addresses only.
fn slim_node(n: &mut Node) {
    n.metadata.annotations = None;
    n.metadata.labels = None;
    n.metadata.managed_fields = None;
    n.metadata.owner_references = None;
    n.spec = None;
    if let Some(status) = n.status.as_mut() {
        let addresses = status.addresses.take();
        *status = Default::default();
        status.addresses = addresses;
    }
}

/// Keeps a Pod's name and IPs only.
fn slim_pod(p: &mut Pod) {
    p.metadata.annotations = None;
    p.metadata.labels = None;
    p.metadata.managed_fields = None;
    p.metadata.owner_references = None;
    p.spec = None;
    if let Some(status) = p.status.as_mut() {
        let (ips, host) = (status.pod_ips.take(), status.host_ip.take());
        *status = Default::default();
        status.pod_ips = ips;
        status.host_ip = host;
    }
}

/// Facts from Nodes (names, hostnames, internal and external IPs) and Pods (names, pod IPs,
/// host IPs).
pub fn facts_of<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> ClusterFacts {
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for n in nodes {
        names.extend(n.metadata.name.clone());
        for a in n.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
            match a.type_.as_str() {
                "InternalIP" | "ExternalIP" => ips.extend(a.address.parse::<IpAddr>().ok()),
                "Hostname" | "InternalDNS" => names.push(a.address.clone()),
                _ => {}
            }
        }
    }
    for p in pods {
        names.extend(p.metadata.name.clone());
        if let Some(status) = &p.status {
            ips.extend(
                status
                    .pod_ips
                    .iter()
                    .flatten()
                    .filter_map(|ip| ip.ip.parse::<IpAddr>().ok()),
            );
            ips.extend(
                status
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
    }
    ClusterFacts::new(ips, names)
}

impl FactsSource for ReflectedFacts {
    fn snapshot(&self) -> Option<ClusterFacts> {
        if !self.ready.load(Ordering::Relaxed) {
            return None;
        }
        let (nodes, pods) = (self.nodes.state(), self.pods.state());
        Some(facts_of(
            nodes.iter().map(|n| n.as_ref()),
            pods.iter().map(|p| p.as_ref()),
        ))
    }
}
