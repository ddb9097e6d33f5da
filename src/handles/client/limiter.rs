//! How many requests one endpoint (storage account) gets in flight at once, adapted to what it
//! says: AIMD with a fast return to the last good level.
//!
//! - Every answer within `latency_tolerance` times the endpoint's usual latency raises the
//!   limit: by one per round trip (`1/limit` per answer) while probing above the level where
//!   the endpoint last pushed back, by half a request per answer (about x1.5 per round trip)
//!   while below it, so that a backoff is recovered from in a few round trips, not tens.
//! - A slower answer holds the limit: a queue is building somewhere.
//! - Throttling (429, 503) halves it, at most once per round trip: answers to requests sent
//!   before the last halving say nothing new.
//! - While a throttled request waits out its `Retry-After` before its retry, every new request
//!   to the endpoint waits too ([`Limiter::pause`]).
//!
//! The limit stays within `[floor, ceiling]`; the ceiling is the most requests in flight the
//! endpoint ever gets from this process, whatever the number of shares and policies using it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How a [`Limiter`] behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterOptions {
    /// The limit it starts at.
    pub initial: usize,
    /// It never goes below this (at least 1).
    pub floor: usize,
    /// It never goes above this: the most requests in flight to one endpoint.
    pub ceiling: usize,
    /// An answer slower than this many times the usual latency does not raise the limit.
    pub latency_tolerance: f64,
    /// The longest `Retry-After` honoured as a pause of the whole endpoint.
    pub max_pause: Duration,
    /// What throttling multiplies the limit by (0.5: halves it).
    pub backoff: f64,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            initial: 8,
            floor: 2,
            ceiling: 128,
            latency_tolerance: 2.0,
            // Well within the per-call limit, so a pause alone never runs calls out of time.
            max_pause: Duration::from_secs(10),
            backoff: 0.5,
        }
    }
}

impl LimiterOptions {
    /// A fixed limit of `n` (what closing did before it adapted).
    pub fn fixed(n: usize) -> Self {
        Self {
            initial: n,
            floor: n,
            ceiling: n,
            ..Self::default()
        }
    }

    /// Checks that the bounds make sense, naming the field that does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.floor == 0 {
            return Err("the concurrency floor must be at least 1, not 0".into());
        }
        if self.ceiling < self.floor {
            return Err(format!(
                "the concurrency ceiling ({}) is below the floor ({})",
                self.ceiling, self.floor
            ));
        }
        if !(0.1..1.0).contains(&self.backoff) {
            return Err(format!(
                "the backoff factor must be from 0.1 to below 1, not {}",
                self.backoff
            ));
        }
        if self.latency_tolerance.is_nan() || self.latency_tolerance < 1.0 {
            return Err(format!(
                "the latency tolerance must be at least 1, not {}",
                self.latency_tolerance
            ));
        }
        Ok(())
    }
}

/// What an answer said about the endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (any status that is not throttling) after this long.
    Answered(Duration),
    /// It throttled (429, 503).
    Throttled,
    /// Nothing was learned (the request broke or was given up on).
    Ignored,
}

/// A snapshot of a limiter, for benchmarks, tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterState {
    /// The current limit (fractional: it grows a little with each answer).
    pub limit: f64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// The most requests that were ever in flight at once.
    pub peak_in_flight: usize,
    /// How many times the limit was halved.
    pub backoffs: u64,
}

/// An adaptive limit of requests in flight to one endpoint, shared by every client of it.
#[derive(Debug)]
pub struct Limiter {
    options: LimiterOptions,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    peak_in_flight: usize,
    /// The limit at the last backoff: below it, the limit grows fast.
    last_backoff_at: f64,
    /// Bumped at each backoff; a permit taken before it does not back off again.
    epoch: u64,
    backoffs: u64,
    /// The endpoint's usual latency: the least seen, drifting slowly up toward what is seen.
    usual: Option<Duration>,
    paused_until: Option<Instant>,
}

impl Limiter {
    /// A limiter with `options` (bounds clamped into a usable range).
    pub fn new(options: LimiterOptions) -> Self {
        let floor = options.floor.max(1);
        let ceiling = options.ceiling.max(floor);
        let options = LimiterOptions {
            floor,
            ceiling,
            initial: options.initial.clamp(floor, ceiling),
            latency_tolerance: options.latency_tolerance.max(1.0),
            backoff: options.backoff.clamp(0.1, 0.95),
            ..options
        };
        Self {
            state: Mutex::new(State {
                limit: options.initial as f64,
                in_flight: 0,
                peak_in_flight: 0,
                last_backoff_at: 0.0,
                epoch: 0,
                backoffs: 0,
                usual: None,
                paused_until: None,
            }),
            options,
            freed: Notify::new(),
        }
    }

    /// Its options.
    pub fn options(&self) -> &LimiterOptions {
        &self.options
    }

    /// Where it stands now.
    pub fn state(&self) -> LimiterState {
        let s = self.lock();
        LimiterState {
            limit: s.limit,
            in_flight: s.in_flight,
            peak_in_flight: s.peak_in_flight,
            backoffs: s.backoffs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("limiter lock poisoned")
    }

    /// Waits for room to send one request (and for any `Retry-After` pause to pass). The
    /// request counts as gone out from here on (see [`tracking_sent`]).
    pub async fn acquire(&self) -> Permit<'_> {
        note(WAITING);
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a slot freed in between is not missed.
            freed.as_mut().enable();
            let pause = {
                let mut s = self.lock();
                match s.paused_until {
                    Some(until) if until > Instant::now() => Some(until),
                    _ => {
                        s.paused_until = None;
                        if (s.in_flight as f64) < s.limit.floor() {
                            s.in_flight += 1;
                            s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
                            note(SENT);
                            return Permit {
                                limiter: self,
                                epoch: s.epoch,
                                started: Instant::now(),
                                settled: false,
                            };
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => tokio::time::sleep_until(until).await,
                None => freed.await,
            }
        }
    }

    /// Records what the answer to a permit's request said, and frees its slot.
    fn settle(&self, epoch: u64, signal: Signal) {
        let free = {
            let mut s = self.lock();
            s.in_flight -= 1;
            match signal {
                Signal::Answered(latency) => self.answered(&mut s, latency),
                Signal::Throttled => self.throttled(&mut s, epoch),
                Signal::Ignored => {}
            }
            (s.limit.floor() as usize).saturating_sub(s.in_flight)
        };
        // One wake-up per free slot (a woken waiter that finds none waits again).
        for _ in 0..free.min(4) {
            self.freed.notify_one();
        }
    }

    fn answered(&self, s: &mut State, latency: Duration) {
        let usual = match s.usual {
            None => latency,
            Some(u) if latency < u => latency,
            // Drift up slowly, so a lasting change of the network is learned, a burst is not.
            Some(u) => u + (latency - u) / 256,
        };
        s.usual = Some(usual);
        if latency.as_secs_f64() > usual.as_secs_f64() * self.options.latency_tolerance {
            return;
        }
        let step = if s.limit < s.last_backoff_at * 0.9 {
            0.5
        } else {
            1.0 / s.limit
        };
        s.limit = (s.limit + step).min(self.options.ceiling as f64);
    }

    /// Holds every new request for `wait` (at most `max_pause`): the endpoint asked for it
    /// with a `Retry-After` that a throttled request is waiting out.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait.min(self.options.max_pause);
        let mut s = self.lock();
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    fn throttled(&self, s: &mut State, epoch: u64) {
        if epoch != s.epoch {
            return;
        }
        s.last_backoff_at = s.limit;
        s.limit = (s.limit * self.options.backoff).max(self.options.floor as f64);
        s.epoch += 1;
        s.backoffs += 1;
    }
}

/// Room for one request; give it back with [`Permit::settle`] (dropping it frees the slot
/// and teaches nothing).
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    epoch: u64,
    started: Instant,
    settled: bool,
}

impl Permit<'_> {
    /// How long since the permit was given.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Frees the slot, telling the limiter what the answer said.
    pub fn settle(mut self, signal: Signal) {
        self.settled = true;
        self.limiter.settle(self.epoch, signal);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self.epoch, Signal::Ignored);
        }
    }
}

/// Whether a call's requests went out, as the limiters it waited on saw it: so that a call
/// ended while it only waited for room is known to have sent nothing.
#[derive(Debug, Default)]
pub struct Sending(AtomicU8);

const UNKNOWN: u8 = 0;
const WAITING: u8 = 1;
const SENT: u8 = 2;

impl Sending {
    /// True when the call waited for room and no request of it went out. False when one did,
    /// or when it never met a limiter (a service without one: assume it acted).
    pub fn only_waited(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WAITING
    }
}

tokio::task_local! {
    static SENDING: Arc<Sending>;
}

/// Runs `call`, recording in `sending` whether its requests went out (see [`Sending`]).
pub async fn tracking_sent<F: Future>(sending: Arc<Sending>, call: F) -> F::Output {
    SENDING.scope(sending, call).await
}

fn note(state: u8) {
    let _ = SENDING.try_with(|s| {
        if state == SENT {
            s.0.store(SENT, Ordering::Relaxed);
        } else {
            let _ =
                s.0.compare_exchange(UNKNOWN, state, Ordering::Relaxed, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(30);

    fn limiter(initial: usize, floor: usize, ceiling: usize) -> Limiter {
        Limiter::new(LimiterOptions {
            initial,
            floor,
            ceiling,
            ..LimiterOptions::default()
        })
    }

    /// Runs `rounds` round trips at the current limit, each answered with `signal`.
    async fn rounds(l: &Limiter, rounds: usize, signal: Signal) {
        for _ in 0..rounds {
            let n = l.state().limit.floor() as usize;
            let mut permits = Vec::new();
            for _ in 0..n {
                permits.push(l.acquire().await);
            }
            for p in permits {
                p.settle(signal);
            }
        }
    }

    #[tokio::test]
    async fn grows_by_about_one_per_round_trip_while_latency_holds_up_to_the_ceiling() {
        let l = limiter(8, 2, 40);
        rounds(&l, 10, Signal::Answered(RTT)).await;
        let limit = l.state().limit;
        assert!((17.0..=19.0).contains(&limit), "{limit}");
        rounds(&l, 100, Signal::Answered(RTT)).await;
        assert_eq!(l.state().limit, 40.0);
    }

    #[tokio::test]
    async fn slow_answers_hold_the_limit() {
        let l = limiter(8, 2, 40);
        rounds(&l, 1, Signal::Answered(RTT)).await;
        let before = l.state().limit;
        rounds(&l, 5, Signal::Answered(RTT * 3)).await;
        assert_eq!(l.state().limit, before);
    }

    #[tokio::test]
    async fn throttling_halves_once_per_round_trip_and_never_below_the_floor() {
        let l = limiter(32, 5, 64);
        let permits: Vec<_> = futures::future::join_all((0..32).map(|_| l.acquire())).await;
        // All 32 were sent before the endpoint pushed back: one halving, not 32.
        for p in permits {
            p.settle(Signal::Throttled);
        }
        assert_eq!(l.state().limit, 16.0);
        assert_eq!(l.state().backoffs, 1);
        for _ in 0..5 {
            l.acquire().await.settle(Signal::Throttled);
        }
        assert_eq!(l.state().limit, 5.0, "floor");
    }

    #[tokio::test]
    async fn after_a_backoff_it_returns_to_the_last_good_level_in_a_few_round_trips() {
        let l = limiter(40, 2, 100);
        l.acquire().await.settle(Signal::Throttled);
        assert_eq!(l.state().limit, 20.0);
        rounds(&l, 3, Signal::Answered(RTT)).await;
        let limit = l.state().limit;
        assert!(limit >= 36.0, "{limit}");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_free_slot() {
        let l = std::sync::Arc::new(limiter(2, 2, 2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire().await.settle(Signal::Ignored);
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        assert_eq!(l.state().in_flight, 2);
        drop(a);
        waiting.await.unwrap();
        assert_eq!(l.state().peak_in_flight, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_endpoint() {
        let l = limiter(8, 2, 8);
        let start = Instant::now();
        l.acquire().await.settle(Signal::Throttled);
        l.pause(Duration::from_secs(2));
        let _next = l.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[test]
    fn bounds_are_checked() {
        let bad = LimiterOptions {
            floor: 9,
            ceiling: 4,
            ..LimiterOptions::default()
        };
        assert!(bad.validate().unwrap_err().contains("ceiling (4)"));
        let zero = LimiterOptions {
            floor: 0,
            ..LimiterOptions::default()
        };
        assert!(zero.validate().is_err());
        let flat = LimiterOptions {
            backoff: 1.0,
            ..LimiterOptions::default()
        };
        assert!(flat.validate().unwrap_err().contains("backoff"));
        assert!(LimiterOptions::default().validate().is_ok());
    }
}
