//! A metadata watch of the HandlePolicies: it tells when they have been listed (readiness),
//! and forgets a policy that is gone (its metric series and its backoff state), so nothing
//! outlives its policy.
//!
//! No finalizer: a deletion needs no cleanup outside this process, and the watch sees every
//! deletion, even of a policy deleted while the controller was down (it is absent from the
//! next list; a relist after a watch gap is compared the same way). The Controller's own
//! watch does not trigger on deletions (kube-runtime reconciles applied objects only), and a
//! reconcile that raced with a deletion ends in `ObjectNotFound` at its next requeue, which
//! [`super::run`] also turns into [`Context::forget`].

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};

use super::reconcile::Context;
use crate::api::HandlePolicy;

/// The policies a watch has seen, by `namespace/name`, and those of a list in progress.
#[derive(Default)]
struct Seen {
    live: HashSet<String>,
    listing: HashSet<String>,
}

impl Seen {
    /// Follows one watch event; returns the policies that are gone.
    fn follow(&mut self, event: watcher::Event<PartialObjectMeta<HandlePolicy>>) -> Vec<String> {
        match event {
            watcher::Event::Apply(p) => {
                self.live.insert(key(&p));
                Vec::new()
            }
            watcher::Event::Delete(p) => {
                let k = key(&p);
                self.live.remove(&k);
                vec![k]
            }
            watcher::Event::Init => {
                self.listing.clear();
                Vec::new()
            }
            watcher::Event::InitApply(p) => {
                self.listing.insert(key(&p));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.listing);
                let gone = self.live.difference(&listed).cloned().collect();
                self.live = listed;
                gone
            }
        }
    }
}

fn key(p: &PartialObjectMeta<HandlePolicy>) -> String {
    let namespace = p.metadata.namespace.as_deref().unwrap_or_default();
    let name = p.metadata.name.as_deref().unwrap_or_default();
    format!("{namespace}/{name}")
}

/// Watches the policies of `api` that `config` selects (the same selector as the
/// Controller's, so a policy that leaves this shard is forgotten here); returns a flag set
/// once they have been listed.
pub(super) fn watch_policies(
    api: Api<PartialObjectMeta<HandlePolicy>>,
    config: watcher::Config,
    ctx: Arc<Context>,
) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let synced = flag.clone();
    let mut seen = Seen::default();
    tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .for_each(move |event| {
                if let Ok(event) = event {
                    let listed = matches!(event, watcher::Event::InitDone);
                    for gone in seen.follow(event) {
                        if let Some((namespace, name)) = gone.split_once('/') {
                            tracing::info!(%namespace, %name, "HandlePolicy deleted; its metrics are dropped");
                            ctx.forget(namespace, name);
                        }
                    }
                    if listed {
                        synced.store(true, Ordering::Relaxed);
                    }
                }
                futures::future::ready(())
            }),
    );
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    use kube::core::{ObjectMeta, PartialObjectMetaExt};

    fn meta(namespace: &str, name: &str) -> PartialObjectMeta<HandlePolicy> {
        let meta = ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        };
        meta.into_response_partial()
    }

    #[test]
    fn a_deletion_and_a_policy_missing_from_a_relist_are_gone() {
        let mut seen = Seen::default();
        assert!(seen.follow(watcher::Event::Init).is_empty());
        for name in ["a", "b", "c"] {
            assert!(
                seen.follow(watcher::Event::InitApply(meta("ns", name)))
                    .is_empty()
            );
        }
        assert!(seen.follow(watcher::Event::InitDone).is_empty());
        assert_eq!(
            seen.follow(watcher::Event::Delete(meta("ns", "a"))),
            ["ns/a"]
        );
        assert!(
            seen.follow(watcher::Event::Apply(meta("ns", "d")))
                .is_empty()
        );
        // After a watch gap: b was deleted meanwhile.
        seen.follow(watcher::Event::Init);
        for name in ["c", "d"] {
            seen.follow(watcher::Event::InitApply(meta("ns", name)));
        }
        assert_eq!(seen.follow(watcher::Event::InitDone), ["ns/b"]);
    }
}
