//! Act on one share's part of the plan: close by id through each handle's own path, run the
//! wildcard closes, with bounded concurrency; stop early on a share error or a stop request.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::report::{NotClosed, Outcome};
use crate::handles::{Error, ErrorCategory, HandleService, close_all, pages};
use crate::policy::{Condemned, Wildcard};
use crate::protocol::{CloseRequest, HandleId, HandleSelector, Target};

/// Results of acting on one share.
#[derive(Debug, Default)]
pub(super) struct Acted {
    /// One outcome per close-by-id item, in input order.
    pub outcomes: Vec<Outcome>,
    /// What each wildcard did, in input order; `None` when not run.
    pub wildcards: Vec<Option<WildcardRun>>,
    /// The first error that stopped the share.
    pub error: Option<Error>,
}

/// What one wildcard close did.
#[derive(Debug)]
pub(super) struct WildcardRun {
    /// Handles the service closed.
    pub closed: u64,
    /// Handles the service failed to close.
    pub failed: u64,
    /// Whether an error stopped it partway.
    pub errored: bool,
    /// The handles still open under the path afterwards: empty when it finished cleanly (no
    /// need to look), listed again when it did not, `None` when that listing failed too.
    pub still_open: Option<HashSet<HandleId>>,
}

/// Closes `items` by id and runs `wildcards`, all on share `share`.
pub(super) async fn act(
    share: &str,
    svc: &dyn HandleService,
    items: &[&Condemned],
    wildcards: &[&Wildcard],
    concurrency: usize,
    stop: &super::StopSignal,
) -> Acted {
    let state = ActState {
        share,
        svc,
        stop,
        failed_share: AtomicBool::new(false),
        first_error: Mutex::new(None),
    };
    let outcomes: Vec<Outcome> = futures::stream::iter(0..items.len())
        .map(|i| close_one(&state, items[i]))
        .buffered(concurrency.max(1))
        .collect()
        .await;

    let mut wildcard_results = Vec::with_capacity(wildcards.len());
    for w in wildcards {
        if state.halted() {
            wildcard_results.push(None);
            continue;
        }
        let target = Target {
            share: share.to_owned(),
            path: w.path.clone(),
            recursive: w.recursive.then_some(true),
        };
        let outcome = close_all(svc, target.clone(), HandleSelector::All).await;
        let clean = outcome.error.is_none() && outcome.failed == 0;
        // An unclean wildcard says how many it closed, not which: look again so that each
        // member is reported as it really is.
        let still_open = if clean {
            Some(HashSet::new())
        } else {
            still_open(svc, target).await
        };
        wildcard_results.push(Some(WildcardRun {
            closed: outcome.closed,
            failed: outcome.failed,
            errored: outcome.error.is_some(),
            still_open,
        }));
        if let Some(e) = outcome.error {
            tracing::warn!(share, path = %w.path, error = %e, "wildcard close failed");
            state.fail(e);
        }
    }
    Acted {
        outcomes,
        wildcards: wildcard_results,
        error: state.first_error.into_inner().expect("lock poisoned"),
    }
}

/// The ids still open on `target`, or `None` when they cannot be listed.
async fn still_open(svc: &dyn HandleService, target: Target) -> Option<HashSet<HandleId>> {
    let mut ids = HashSet::new();
    let mut stream = std::pin::pin!(pages(svc, target, None));
    while let Some(page) = stream.next().await {
        ids.extend(page.ok()?.handles.into_iter().map(|h| h.handle_id));
    }
    Some(ids)
}

/// What the close requests of one share share.
struct ActState<'a> {
    share: &'a str,
    svc: &'a dyn HandleService,
    stop: &'a super::StopSignal,
    failed_share: AtomicBool,
    first_error: Mutex<Option<Error>>,
}

impl ActState<'_> {
    fn halted(&self) -> bool {
        (self.stop)() || self.failed_share.load(Ordering::Relaxed)
    }

    fn fail(&self, e: Error) {
        self.failed_share.store(true, Ordering::Relaxed);
        self.first_error
            .lock()
            .expect("lock poisoned")
            .get_or_insert(e);
    }
}

/// Closes one handle by id through its own path.
async fn close_one(state: &ActState<'_>, c: &Condemned) -> Outcome {
    if state.halted() {
        return if state.failed_share.load(Ordering::Relaxed) {
            Outcome::NotClosed(NotClosed::ShareError)
        } else {
            Outcome::NotClosed(NotClosed::Interrupted)
        };
    }
    let target = Target::resource(state.share, c.path.clone());
    let req = CloseRequest {
        target,
        handles: HandleSelector::Id(c.id),
        marker: None,
    };
    match state.svc.force_close(&req).await {
        Ok(page) if page.closed > 0 => Outcome::Closed,
        Ok(page) if page.failed > 0 => Outcome::Failed,
        Ok(_) => Outcome::Gone,
        Err(e) if e.category() == ErrorCategory::PathNotFound => Outcome::Gone,
        // Its endpoint was given up on before this close went out: not closed, not failed.
        Err(e) if super::give_up::never_sent(&e) => {
            state.fail(e);
            Outcome::NotClosed(NotClosed::ShareError)
        }
        Err(e) => {
            tracing::warn!(share = state.share, handle = %c.id, error = %e, "force close failed; stopping closes on this share");
            state.fail(e);
            Outcome::Failed
        }
    }
}
