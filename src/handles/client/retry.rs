//! When and how long to wait before retrying: jittered exponential backoff, `Retry-After`,
//! and a budget that keeps retries from multiplying load on a struggling service.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, at most.
    pub max_retries: u32,
    /// The first backoff's upper bound; each retry doubles it.
    pub base_delay: Duration,
    /// No wait is longer than this, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): `Retry-After` when the service sent one,
    /// else a uniformly random wait up to `base * 2^(retry-1)` ("full jitter"); both capped at
    /// `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let cap = self
            .base_delay
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

/// Whether an HTTP status is worth retrying: timeouts, throttling and server errors.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: seconds, or an HTTP date measured from `now`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = Timestamp::try_from(httpdate::parse_http_date(value).ok()?).ok()?;
    Some(now.duration_until(at).try_into().unwrap_or(Duration::ZERO))
}

/// A retry budget shared by all requests of a client: every request earns a tenth of a
/// retry, every retry spends one, and it holds at most `max` (and starts full). When a service
/// fails most requests, retries stop multiplying the load after the budget is spent.
#[derive(Debug)]
pub struct RetryBudget {
    /// Tenths of a retry.
    tenths: Mutex<u32>,
    max_tenths: u32,
}

impl RetryBudget {
    /// A full budget of `max` retries.
    pub fn new(max: u32) -> Self {
        Self {
            tenths: Mutex::new(max * 10),
            max_tenths: max * 10,
        }
    }

    /// Records a request (earns a tenth of a retry).
    pub fn deposit(&self) {
        let mut t = self.tenths.lock().expect("lock poisoned");
        *t = (*t + 1).min(self.max_tenths);
    }

    /// Spends one retry; false when the budget is empty.
    pub fn withdraw(&self) -> bool {
        let mut t = self.tenths.lock().expect("lock poisoned");
        if *t >= 10 {
            *t -= 10;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 1..=10 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(p.delay(retry, None) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.delay(4, None)).collect();
        assert!(spread.len() > 5, "waits are jittered");
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(1),
            "Retry-After capped"
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = crate::protocol::format_rfc1123(Timestamp::from_second(1_000_010).unwrap());
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(10))
        );
        let earlier = crate::protocol::format_rfc1123(Timestamp::from_second(999_990).unwrap());
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn budget_empties_and_refills() {
        let b = RetryBudget::new(2);
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [400, 401, 403, 404, 409, 412, 501, 505] {
            assert!(!is_retryable_status(s));
        }
    }
}
