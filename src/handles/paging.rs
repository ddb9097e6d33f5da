//! Following markers: every page of a listing as a stream, and a close loop that follows
//! `x-ms-marker` until the service says it is done.

use futures::Stream;

use super::{Error, HandleService};
use crate::protocol::{CloseRequest, HandleSelector, ListPage, ListRequest, Marker, Target};

/// Every page of List Handles on `target`, fetched one at a time as the stream is polled, so
/// memory holds one page, not the share.
pub fn pages<'a, S: HandleService + ?Sized>(
    svc: &'a S,
    target: Target,
    page_size: Option<u32>,
) -> impl Stream<Item = Result<ListPage, Error>> + 'a {
    // State: the marker to send next; `None` after the last page.
    futures::stream::try_unfold(Some(None::<Marker>), move |state| {
        let target = target.clone();
        async move {
            let Some(marker) = state else {
                return Ok(None);
            };
            let req = ListRequest {
                target,
                marker,
                max_results: page_size,
            };
            let page = svc.list_handles(&req).await?;
            let next = page.next_marker.clone().map(Some);
            Ok(Some((page, next)))
        }
    })
}

/// What a close loop did: the totals of every answered call, and the error that stopped it,
/// if one did. Totals stay true when a later call fails.
#[derive(Debug, Default)]
pub struct CloseOutcome {
    /// Handles closed.
    pub closed: u64,
    /// Handles the service could not close.
    pub failed: u64,
    /// Calls answered.
    pub calls: u64,
    /// The error that ended the loop early.
    pub error: Option<Error>,
}

/// Force-closes `handles` on `target`, following `x-ms-marker` until it is absent, summing
/// the counts.
pub async fn close_all<S: HandleService + ?Sized>(
    svc: &S,
    target: Target,
    handles: HandleSelector,
) -> CloseOutcome {
    let mut outcome = CloseOutcome::default();
    let mut req = CloseRequest {
        target,
        handles,
        marker: None,
    };
    loop {
        match svc.force_close(&req).await {
            Ok(page) => {
                outcome.closed += page.closed;
                outcome.failed += page.failed;
                outcome.calls += 1;
                match page.next_marker {
                    Some(m) => req.marker = Some(m),
                    None => return outcome,
                }
            }
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        }
    }
}
