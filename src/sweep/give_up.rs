//! Giving up on an endpoint that stopped answering, for the rest of one sweep.
//!
//! Each call to a service ends within the client's per-call limit (`ClientOptions::
//! operation_timeout`, 30 s by default). When one ends without an answer (category
//! `Unreachable`: refused, broken, or silent until the limit), the sweep gives up on that
//! endpoint: calls to it still in flight, on any of its shares, end at once, and no more are
//! sent to it in this sweep. So a sweep whose service dies ends within that one limit, instead
//! of one limit per share, per root and per follow-up listing in turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::handles::client::{Sending, tracking_sent};
use crate::handles::{Error, ErrorCategory, HandleService, describe};
use crate::protocol::{ClosePage, CloseRequest, ListPage, ListRequest, Target};

/// One service per share, or why the share has none.
type Services = Vec<Result<Arc<dyn HandleService>, Error>>;

/// Whether the sweep has given up on one endpoint.
struct Verdict(watch::Sender<bool>);

/// A share's service, given up on together with the other shares of its endpoint.
struct Guarded {
    inner: Arc<dyn HandleService>,
    endpoint: Arc<Verdict>,
}

/// Whether the sweep gave up on each share's endpoint.
pub(super) struct GivenUp(Vec<Arc<Verdict>>);

impl GivenUp {
    /// Whether the sweep has given up on share `i`'s endpoint.
    pub fn share(&self, i: usize) -> bool {
        self.0.get(i).is_some_and(|v| *v.0.borrow())
    }
}

/// Wraps each share's service so that shares of one endpoint are given up on together.
/// `endpoints[i]` is share `i`'s endpoint.
pub(super) fn guard(services: Services, endpoints: &[&str]) -> (Services, GivenUp) {
    let mut by_endpoint: HashMap<&str, Arc<Verdict>> = HashMap::new();
    let verdicts: Vec<Arc<Verdict>> = (0..services.len())
        .map(|i| {
            let key = endpoints.get(i).copied().unwrap_or_default();
            by_endpoint
                .entry(key)
                .or_insert_with(|| Arc::new(Verdict(watch::channel(false).0)))
                .clone()
        })
        .collect();
    let services = services
        .into_iter()
        .zip(&verdicts)
        .map(|(svc, endpoint)| {
            Ok(Arc::new(Guarded {
                inner: svc?,
                endpoint: endpoint.clone(),
            }) as Arc<dyn HandleService>)
        })
        .collect();
    (services, GivenUp(verdicts))
}

/// The error of a share whose closes were not attempted: its endpoint was given up on first.
pub(super) fn not_attempted(share: &str) -> Error {
    Error::Transport {
        target: share.to_owned(),
        message: "closes not attempted: a request to this share's endpoint got no answer, so the sweep gave up on it".into(),
    }
}

impl Guarded {
    /// Makes and runs a call unless the endpoint was given up on, and ends it as soon as it is.
    async fn run<'a, T>(
        &self,
        target: &Target,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut given_up = self.endpoint.0.subscribe();
        if *given_up.borrow() {
            return Err(gave_up(target, NOT_SENT));
        }
        let sending = Arc::new(Sending::default());
        let mut call = std::pin::pin!(tracking_sent(sending.clone(), call()));
        let mut ended = std::pin::pin!(given_up.wait_for(|g| *g));
        std::future::poll_fn(|cx| {
            // A call still waiting for room to send (the endpoint's limit) when the endpoint
            // is given up on sends nothing: it is not polled again, so it cannot take a slot
            // that a failed call just freed.
            if sending.only_waited() && *self.endpoint.0.borrow() {
                return Poll::Ready(Err(gave_up(target, NOT_SENT)));
            }
            // A call that sent is asked first: an answer that came is kept.
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                if let Err(e) = &result
                    && e.category() == ErrorCategory::Unreachable
                {
                    self.endpoint.0.send_replace(true);
                }
                return Poll::Ready(result);
            }
            match ended.as_mut().poll(cx) {
                Poll::Ready(_) => {
                    let what = if sending.only_waited() {
                        NOT_SENT
                    } else {
                        "no answer yet"
                    };
                    Poll::Ready(Err(gave_up(target, what)))
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// How the guard says that a call it ended sent nothing.
const NOT_SENT: &str = "not sent";

/// Whether `e` is the guard's word that the call sent nothing (so nothing it asked for can
/// have happened).
pub(super) fn never_sent(e: &Error) -> bool {
    matches!(e, Error::Transport { message, .. } if message.starts_with(NOT_SENT) && message.contains("gave up"))
}

fn gave_up(target: &Target, what: &str) -> Error {
    Error::Transport {
        target: describe(target),
        message: format!(
            "{what}: another request to this endpoint got no answer, so the sweep gave up on it"
        ),
    }
}

impl HandleService for Guarded {
    fn list_handles<'a>(&'a self, req: &'a ListRequest) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(self.run(&req.target, || self.inner.list_handles(req)))
    }

    fn force_close<'a>(&'a self, req: &'a CloseRequest) -> BoxFuture<'a, Result<ClosePage, Error>> {
        Box::pin(self.run(&req.target, || self.inner.force_close(req)))
    }

    fn size(&self) -> crate::handles::StoreSize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HandleSelector, Marker};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A service whose closes wait forever, and whose lists fail as unreachable.
    struct Dead {
        calls: AtomicU32,
    }

    impl HandleService for Dead {
        fn list_handles<'a>(
            &'a self,
            req: &'a ListRequest,
        ) -> BoxFuture<'a, Result<ListPage, Error>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Err(Error::Timeout {
                    target: describe(&req.target),
                    after: Duration::from_secs(30),
                })
            })
        }

        fn force_close<'a>(
            &'a self,
            _: &'a CloseRequest,
        ) -> BoxFuture<'a, Result<ClosePage, Error>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn one_unanswered_call_ends_the_others_of_its_endpoint_and_no_more_are_sent() {
        let dead = Arc::new(Dead {
            calls: AtomicU32::new(0),
        });
        let other = Arc::new(Dead {
            calls: AtomicU32::new(0),
        });
        let services: Services = vec![Ok(dead.clone()), Ok(dead.clone()), Ok(other.clone())];
        let (guarded, given_up) = guard(services, &["http://a", "http://a", "http://b"]);
        assert!(!given_up.share(0));
        let svc = |i: usize| guarded[i].as_ref().unwrap().clone();
        let close = CloseRequest {
            target: Target::resource("s1", "f"),
            handles: HandleSelector::All,
            marker: None,
        };
        let list = ListRequest {
            target: Target::directory("s2", "", true),
            marker: None::<Marker>,
            max_results: None,
        };
        let (s0, s1, s2) = (svc(0), svc(1), svc(2));
        let waiting = s0.force_close(&close);
        let failing = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s1.list_handles(&list).await
        };
        let (waited, failed) = tokio::join!(waiting, failing);
        assert!(failed.is_err());
        let waited = waited.unwrap_err().to_string();
        assert!(waited.contains("gave up"), "{waited}");
        assert!(waited.contains("no answer yet"), "{waited}");
        let calls = dead.calls.load(Ordering::SeqCst);
        let later = s0.list_handles(&list).await.unwrap_err().to_string();
        assert!(later.contains("not sent"), "{later}");
        assert!(given_up.share(0) && given_up.share(1) && !given_up.share(2));
        assert_eq!(
            dead.calls.load(Ordering::SeqCst),
            calls,
            "nothing more was sent"
        );
        // Another endpoint is not given up on.
        let third = tokio::time::timeout(Duration::from_millis(50), s2.force_close(&close)).await;
        assert!(third.is_err(), "the other endpoint's call is still waiting");
        assert_eq!(other.calls.load(Ordering::SeqCst), 1);
    }
}
