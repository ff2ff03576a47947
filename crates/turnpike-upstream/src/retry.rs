//! Retries: when a failed attempt may be tried again (on another endpoint), how long to wait first, and the
//! per-upstream budget that keeps retries from multiplying the load on a failing service.

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use crate::window::Window;

/// What a retry policy retries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection could not be opened (the request never left: safe for any method).
    pub connect_failure: bool,
    /// The connection broke before the response head arrived.
    pub reset: bool,
    /// The attempt's own timeout (`per_try_timeout`) expired.
    pub timeout: bool,
    /// Response statuses (502, 503, 504 by default).
    pub statuses: Vec<u16>,
}

/// A route's (or its upstream's) retry settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// Deadline of one attempt (the route's `timeout` stays the deadline of them all).
    pub per_try_timeout: Option<Duration>,
    /// What is retried.
    pub on: RetryOn,
    /// Retry methods that are not idempotent (POST, PATCH) too. Off by default: a POST that reached the
    /// upstream may have had its effect. Connect failures are retried for every method either way.
    pub non_idempotent: bool,
    /// Request bodies up to this size are kept so they can be sent again; a larger (or unknown-length) body is
    /// streamed once and its request is not retried after it started.
    pub max_buffer: u64,
    /// The first backoff; each further retry waits up to twice as long (full jitter).
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            per_try_timeout: None,
            on: RetryOn { connect_failure: false, reset: false, timeout: false, statuses: Vec::new() },
            non_idempotent: false,
            max_buffer: 0,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }

    /// The default without a `retry` block: one more attempt on another endpoint when no connection could be
    /// opened (the request never left, so this is safe for any method and costs nothing on the way).
    pub fn connect_only() -> Self {
        Self {
            attempts: 2,
            on: RetryOn { connect_failure: true, reset: false, timeout: false, statuses: Vec::new() },
            ..Self::none()
        }
    }

    /// Whether a request that reached the upstream may be tried again at all (on a reset, a timeout or a
    /// status): only then is a copy of the request kept.
    pub fn retries_after_sending(&self) -> bool {
        self.attempts > 1 && (self.on.reset || self.on.timeout || !self.on.statuses.is_empty())
    }

    /// Whether `method` may be sent again after it reached the upstream.
    pub fn may_replay(&self, method: &Method) -> bool {
        self.non_idempotent || is_idempotent(method)
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.on.statuses.contains(&status)
    }

    /// How long to wait before retry number `retry` (1 for the first retry): a random time up to
    /// `min(max, base * 2^(retry-1))` ("full jitter", so retries of many clients do not arrive in waves).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_base.saturating_mul(1u32 << retry.saturating_sub(1).min(16)).min(self.backoff_max);
        let us = ceiling.as_micros() as u64;
        if us == 0 { Duration::ZERO } else { Duration::from_micros(crate::fast_random() % (us + 1)) }
    }
}

/// RFC 9110 9.2.2: methods whose repetition has the same effect as one request.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// How many retries an upstream allows: `percent` of its requests over the window, plus `min_per_second`
/// whatever the traffic (so a quiet upstream can still retry a few failures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries as a share of requests, in percent.
    pub percent: u32,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
    /// The window requests and retries are counted over.
    pub window: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self { percent: 20, min_per_second: 3, window: Duration::from_secs(10) }
    }
}

/// An upstream's retry budget: requests and retries over a rolling window (state, kept across reloads).
#[derive(Debug, Default)]
pub struct RetryBudget {
    counts: Window<2>,
}

impl RetryBudget {
    /// Counts a request (its first attempt).
    pub fn request(&self, settings: &BudgetSettings, now: Instant) {
        self.counts.add(now, settings.window, [1, 0]);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_retry(&self, settings: &BudgetSettings, now: Instant) -> bool {
        let [requests, retries] = self.counts.sum(now, settings.window);
        let floor = u64::from(settings.min_per_second) * settings.window.as_secs().max(1);
        let allowed = floor + requests * u64::from(settings.percent) / 100;
        if retries >= allowed {
            return false;
        }
        self.counts.add(now, settings.window, [0, 1]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::default();
        let s = BudgetSettings { percent: 10, min_per_second: 1, window: Duration::from_secs(10) };
        let now = Instant::now();
        for _ in 0..100 {
            budget.request(&s, now);
        }
        // 10 % of 100 requests + 1/s over 10 s = 20 retries.
        let granted = (0..100).filter(|_| budget.try_retry(&s, now)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut p = RetryPolicy::none();
        p.backoff_base = Duration::from_millis(10);
        p.backoff_max = Duration::from_millis(50);
        for _ in 0..100 {
            assert!(p.backoff(1) <= Duration::from_millis(10));
            assert!(p.backoff(3) <= Duration::from_millis(40));
            assert!(p.backoff(10) <= Duration::from_millis(50));
        }
        assert!(
            (0..100).any(|_| p.backoff(10) > Duration::from_millis(25)),
            "jitter never reaches the cap's upper half"
        );
    }

    #[test]
    fn only_idempotent_methods_replay_by_default() {
        let mut p = RetryPolicy::none();
        assert!(p.may_replay(&Method::GET) && p.may_replay(&Method::PUT) && p.may_replay(&Method::DELETE));
        assert!(!p.may_replay(&Method::POST) && !p.may_replay(&Method::PATCH));
        p.non_idempotent = true;
        assert!(p.may_replay(&Method::POST));
    }
}
