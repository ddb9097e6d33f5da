//! Act on one share's part of the plan: close by id through each handle's own path, run the
//! wildcard closes, with bounded concurrency; stop early on a share error or a stop request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::report::{NotClosed, Outcome};
use crate::handles::{Error, ErrorCategory, HandleService, close_all};
use crate::policy::{Condemned, Wildcard};
use crate::protocol::{HandleSelector, Target};

/// Results of acting on one share.
#[derive(Debug, Default)]
pub(super) struct Acted {
    /// One outcome per close-by-id item, in input order.
    pub outcomes: Vec<Outcome>,
    /// (closed, failed) per wildcard, in input order; `None` when not run.
    pub wildcards: Vec<Option<(u64, u64)>>,
    /// The first error that stopped the share.
    pub error: Option<Error>,
}

/// Closes `items` by id and runs `wildcards`, all on share `share`.
pub(super) async fn act(
    share: &str,
    svc: &dyn HandleService,
    items: &[&Condemned],
    wildcards: &[&Wildcard],
    concurrency: usize,
    stop: &Arc<AtomicBool>,
) -> Acted {
    let failed_share = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None::<Error>);
    let halted = || stop.load(Ordering::Relaxed) || failed_share.load(Ordering::Relaxed);
    let not_run = || {
        if failed_share.load(Ordering::Relaxed) {
            Outcome::NotClosed(NotClosed::ShareError)
        } else {
            Outcome::NotClosed(NotClosed::Interrupted)
        }
    };

    let outcomes: Vec<Outcome> = futures::stream::iter(items.iter().map(|c| async {
        if halted() {
            return not_run();
        }
        let target = Target::resource(share, c.path.clone());
        let req = crate::protocol::CloseRequest { target, handles: HandleSelector::Id(c.id), marker: None };
        match svc.force_close(&req).await {
            Ok(page) if page.closed > 0 => Outcome::Closed,
            Ok(page) if page.failed > 0 => Outcome::Failed,
            Ok(_) => Outcome::Gone,
            Err(e) if e.category() == ErrorCategory::PathNotFound => Outcome::Gone,
            Err(e) => {
                tracing::warn!(share, handle = %c.id, error = %e, "force close failed; stopping closes on this share");
                failed_share.store(true, Ordering::Relaxed);
                first_error.lock().expect("lock poisoned").get_or_insert(e);
                Outcome::Failed
            }
        }
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await;

    let mut wildcard_results = Vec::with_capacity(wildcards.len());
    for w in wildcards {
        if halted() {
            wildcard_results.push(None);
            continue;
        }
        let target = Target {
            share: share.to_owned(),
            path: w.path.clone(),
            recursive: w.recursive.then_some(true),
        };
        let outcome = close_all(svc, target, HandleSelector::All).await;
        wildcard_results.push(Some((outcome.closed, outcome.failed)));
        if let Some(e) = outcome.error {
            tracing::warn!(share, path = %w.path, error = %e, "wildcard close failed");
            failed_share.store(true, Ordering::Relaxed);
            first_error.lock().expect("lock poisoned").get_or_insert(e);
        }
    }
    Acted {
        outcomes,
        wildcards: wildcard_results,
        error: first_error.into_inner().expect("lock poisoned"),
    }
}
