//! Cluster facts for the orphaned rule: watches over Nodes and Pods that keep only addresses
//! and names, and one shared snapshot, rebuilt only after a Node or Pod changed.
//!
//! No reflector stores: a store keeps every object whole (a Pod is ~2 KiB even slimmed), and
//! waiting on a store's readiness from more than one task loses wake-ups in kube-runtime 5.0.
//! The index below is ready when both watches have listed once (their `InitDone`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::policy::ClusterFacts;

/// Where a sweep gets its cluster facts from.
pub trait FactsSource: Send + Sync {
    /// A snapshot, or `None` while the facts are not yet known (then the orphaned rule condemns
    /// nothing, rather than everything).
    fn snapshot(&self) -> Option<Arc<ClusterFacts>>;
}

/// Fixed facts (tests, or a cluster-less run).
pub struct StaticFacts(pub Option<ClusterFacts>);

impl FactsSource for StaticFacts {
    fn snapshot(&self) -> Option<Arc<ClusterFacts>> {
        self.0.clone().map(Arc::new)
    }
}

/// What one Node or Pod contributes: its names and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

/// A Node's name, hostnames and internal and external IPs.
pub fn node_member(n: &Node) -> Member {
    let mut m = Member {
        names: n.metadata.name.clone().into_iter().collect(),
        ips: Vec::new(),
    };
    for a in n.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
        match a.type_.as_str() {
            "InternalIP" | "ExternalIP" => m.ips.extend(a.address.parse::<IpAddr>().ok()),
            "Hostname" | "InternalDNS" => m.names.push(a.address.clone()),
            _ => {}
        }
    }
    m
}

/// A Pod's name, pod IPs and host IP.
pub fn pod_member(p: &Pod) -> Member {
    let mut m = Member {
        names: p.metadata.name.clone().into_iter().collect(),
        ips: Vec::new(),
    };
    if let Some(status) = &p.status {
        m.ips.extend(
            status
                .pod_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.ip.parse::<IpAddr>().ok()),
        );
        m.ips.extend(
            status
                .host_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    m
}

fn facts_from<'a>(members: impl Iterator<Item = &'a Member>) -> ClusterFacts {
    let (mut ips, mut names) = (Vec::new(), Vec::new());
    for m in members {
        ips.extend(m.ips.iter().copied());
        names.extend(m.names.iter().cloned());
    }
    ClusterFacts::new(ips, names)
}

/// Facts from Nodes and Pods.
pub fn facts_of<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> ClusterFacts {
    let members: Vec<Member> = nodes
        .into_iter()
        .map(node_member)
        .chain(pods.into_iter().map(pod_member))
        .collect();
    facts_from(members.iter())
}

/// The members of one kind, keyed by namespace/name, and the list in progress during a
/// (re)list.
#[derive(Default)]
struct Kind {
    live: HashMap<String, Member>,
    listing: Option<HashMap<String, Member>>,
    ready: AtomicBool,
}

/// The index the watches keep.
#[derive(Default)]
struct Index {
    nodes: Mutex<Kind>,
    pods: Mutex<Kind>,
    /// Bumped on every change, so the snapshot is rebuilt only when needed.
    version: AtomicU64,
    cache: Mutex<Option<(u64, Arc<ClusterFacts>)>>,
}

fn key(meta: &kube::core::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

impl Index {
    fn apply<K>(
        &self,
        kind: &Mutex<Kind>,
        event: watcher::Event<K>,
        member: fn(&K) -> Member,
        meta: fn(&K) -> &kube::core::ObjectMeta,
    ) {
        let mut k = kind.lock().expect("lock poisoned");
        match event {
            watcher::Event::Init => k.listing = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                let m = member(&obj);
                k.listing
                    .get_or_insert_with(HashMap::new)
                    .insert(key(meta(&obj)), m);
            }
            watcher::Event::InitDone => {
                k.live = k.listing.take().unwrap_or_default();
                k.ready.store(true, Ordering::Relaxed);
            }
            watcher::Event::Apply(obj) => {
                let m = member(&obj);
                k.live.insert(key(meta(&obj)), m);
            }
            watcher::Event::Delete(obj) => {
                k.live.remove(&key(meta(&obj)));
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }
}

/// Cluster facts kept by watches over Nodes and Pods.
#[derive(Clone)]
pub struct ReflectedFacts {
    index: Arc<Index>,
}

impl ReflectedFacts {
    /// Starts the watches (in background tasks).
    pub fn start(client: kube::Client) -> Self {
        let index = Arc::new(Index::default());
        let i = index.clone();
        tokio::spawn(
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .for_each(move |ev| {
                    match ev {
                        Ok(ev) => i.apply(&i.nodes, ev, node_member, |n: &Node| &n.metadata),
                        Err(e) => tracing::warn!(error = %e, "node watch error (retrying)"),
                    }
                    futures::future::ready(())
                }),
        );
        let i = index.clone();
        tokio::spawn(
            watcher(Api::<Pod>::all(client), watcher::Config::default())
                .default_backoff()
                .for_each(move |ev| {
                    match ev {
                        Ok(ev) => i.apply(&i.pods, ev, pod_member, |p: &Pod| &p.metadata),
                        Err(e) => tracing::warn!(error = %e, "pod watch error (retrying)"),
                    }
                    futures::future::ready(())
                }),
        );
        Self { index }
    }

    /// Whether both watches have listed once.
    pub fn is_ready(&self) -> bool {
        let ready = |k: &Mutex<Kind>| {
            k.lock()
                .expect("lock poisoned")
                .ready
                .load(Ordering::Relaxed)
        };
        ready(&self.index.nodes) && ready(&self.index.pods)
    }
}

impl FactsSource for ReflectedFacts {
    fn snapshot(&self) -> Option<Arc<ClusterFacts>> {
        if !self.is_ready() {
            return None;
        }
        // Concurrent sweeps share one snapshot: the first to find it stale rebuilds it while the
        // others wait on the lock, then reuse it.
        let mut cache = self.index.cache.lock().expect("lock poisoned");
        let version = self.index.version.load(Ordering::Relaxed);
        if let Some((v, facts)) = cache.as_ref()
            && *v == version
        {
            return Some(facts.clone());
        }
        let facts = {
            let nodes = self.index.nodes.lock().expect("lock poisoned");
            let pods = self.index.pods.lock().expect("lock poisoned");
            Arc::new(facts_from(nodes.live.values().chain(pods.live.values())))
        };
        *cache = Some((version, facts.clone()));
        Some(facts)
    }
}
