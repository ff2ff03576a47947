//! `Upstream`: a compiled upstream in a snapshot: its endpoints, balancing, timeouts and host policy.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use tokio::time::Instant;

use crate::balance::Maglev;
use crate::{
    ActiveCheck, Balance, BalancerState, Breaker, BreakerSettings, BudgetSettings, Endpoint, LimitSettings, Limiter,
    Outcome, OutlierSettings, PoolSettings, Protocol, RetryBudget, RetryPolicy,
};

/// An endpoint with its balancing weight.
#[derive(Debug, Clone)]
pub struct WeightedEndpoint {
    /// The endpoint's state.
    pub endpoint: Arc<Endpoint>,
    /// Its weight (1 and up).
    pub weight: u32,
}

/// What `Host` header the upstream receives.
#[derive(Debug, Clone)]
pub enum HostHeader {
    /// The client's `Host`, unchanged.
    Preserve,
    /// The endpoint's `ip:port`.
    Endpoint,
    /// A fixed value.
    Fixed(HeaderValue),
}

/// Deadlines of an upstream exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// From sending the request to receiving the whole response head (504 when it expires).
    pub request: Duration,
    /// Longest silence while reading the response body (the exchange is aborted when it expires).
    pub read: Duration,
}

/// What happens when no endpoint is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Send traffic to every endpoint anyway ("panic mode", as Envoy does): health checks may be wrong, and a
    /// degraded answer beats none.
    Panic,
    /// Answer 503 at once.
    Fail,
}

/// The endpoints a request has already tried (indices into the upstream's list): retries avoid them. The first
/// few are kept inline, so a request that is not retried allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    inline: [usize; 4],
    len: usize,
    more: Vec<usize>,
}

impl Tried {
    /// Whether `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        self.inline[..self.len].contains(&i) || self.more.contains(&i)
    }

    /// Marks `i` as tried.
    pub fn push(&mut self, i: usize) {
        if self.contains(i) {
            return;
        }
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
            self.len += 1;
        } else {
            self.more.push(i);
        }
    }

    /// Whether nothing was tried yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A named pool of endpoints, compiled.
#[derive(Debug)]
pub struct Upstream {
    /// Its id.
    pub id: Arc<str>,
    /// Its endpoints.
    pub endpoints: Vec<WeightedEndpoint>,
    /// How it balances.
    pub balance: Balance,
    /// The consistent-hashing table, when the upstream balances by a hash of the request.
    pub maglev: Option<Maglev>,
    /// Its runtime state: balancer position, retry budget, breaker, concurrency counts (kept across reloads).
    pub state: Arc<UpstreamState>,
    /// The protocol spoken to its endpoints.
    pub protocol: Protocol,
    /// Pool settings.
    pub pool: PoolSettings,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// `Host` policy.
    pub host: HostHeader,
    /// Passive outlier detection (`None`: off).
    pub outlier: Option<OutlierSettings>,
    /// Active health checks (`None`: off).
    pub active_check: Option<Arc<ActiveCheck>>,
    /// What happens when no endpoint is healthy.
    pub when_all_down: WhenAllDown,
    /// Retries of its routes (a route may have its own).
    pub retry: Arc<RetryPolicy>,
    /// The retry budget.
    pub budget: BudgetSettings,
    /// The circuit breaker (`None`: none).
    pub breaker: Option<BreakerSettings>,
    /// Whether each endpoint has its own breaker (with `breaker`'s settings) instead of one for the upstream.
    pub breaker_per_endpoint: bool,
    /// The answer while the breaker is open (`None`: a 503 problem).
    pub fallback: Option<Arc<Fallback>>,
    /// The concurrency limit (`None`: none).
    pub limit: Option<LimitSettings>,
    /// What consistent hashing hashes (with `maglev`).
    pub hash_on: Option<HashOn>,
    /// Statuses that count as the endpoint failing, for outlier detection and the breaker (inclusive ranges).
    pub failure_statuses: Vec<(u16, u16)>,
    /// Host names among its endpoints (re-resolved every `dns_refresh`).
    pub hostnames: Vec<String>,
    /// How often its host names are resolved again (zero: never).
    pub dns_refresh: Duration,
}

/// What consistent hashing hashes.
#[derive(Debug, Clone)]
pub enum HashOn {
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's address.
    ClientIp,
    /// The request path.
    Path,
}

/// A fixed response (the circuit breaker's fallback).
#[derive(Debug, Clone)]
pub struct Fallback {
    /// The status.
    pub status: http::StatusCode,
    /// Headers.
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// A JSON body, if any.
    pub body: Option<bytes::Bytes>,
}

/// An upstream's runtime state, by upstream id.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// The balancer's position.
    pub balancer: BalancerState,
    /// Requests and retries, for the retry budget.
    pub budget: RetryBudget,
    /// The circuit breaker.
    pub breaker: Breaker,
    /// Requests in flight and queued, for the concurrency limit.
    pub limiter: Arc<Limiter>,
    /// Mirrored copies in flight to this upstream.
    pub mirrored: std::sync::atomic::AtomicU32,
    /// Attempts, retries and response times, for Prometheus.
    pub metrics: turnpike_telemetry::metrics::UpstreamMetrics,
}

impl Upstream {
    /// Picks the endpoint for the next attempt: a healthy one the request has not tried; else a healthy one it
    /// has tried (a retry on the only healthy endpoint); else, in panic mode, any endpoint (untried first).
    /// `key_hash` is the request's hash for consistent hashing (`None`: the upstream's balancing, or a random
    /// pick when it hashes and the request has no key). Returns the endpoint's index and state.
    pub fn pick(&self, tried: &Tried, key_hash: Option<u64>) -> Option<(usize, &Arc<Endpoint>)> {
        let per_endpoint = self.breaker.as_ref().filter(|_| self.breaker_per_endpoint);
        let healthy = |i: usize| {
            let endpoint = &self.endpoints[i].endpoint;
            endpoint.health.is_available()
                && per_endpoint.is_none_or(|settings| {
                    endpoint.breaker.is_closed()
                        || endpoint.breaker.position(settings, Instant::now()) != crate::BreakerPosition::Open
                })
        };
        let choose = |usable: &dyn Fn(usize) -> bool| match (&self.maglev, key_hash) {
            (Some(table), Some(hash)) => table.pick(hash, usable),
            (Some(_), None) => self.state.balancer.pick(Balance::PowerOfTwoChoices, &self.endpoints, usable),
            (None, _) => self.state.balancer.pick(self.balance, &self.endpoints, usable),
        };
        let found = choose(&|i| !tried.contains(i) && healthy(i))
            .or_else(|| if tried.is_empty() { None } else { choose(&healthy) })
            .or_else(|| match self.when_all_down {
                WhenAllDown::Panic => {
                    choose(&|i| !tried.contains(i)).or_else(|| if tried.is_empty() { None } else { choose(&|_| true) })
                }
                WhenAllDown::Fail => None,
            })?;
        Some((found, &self.endpoints[found].endpoint))
    }

    /// Records how an attempt on endpoint `index` went: the EWMA (for answers), and passive outlier detection,
    /// which may eject the endpoint unless too many of the upstream's endpoints are ejected already.
    pub fn record(&self, index: usize, outcome: Outcome, elapsed: Option<Duration>, now: Instant) {
        let Some(entry) = self.endpoints.get(index) else { return };
        let health = &entry.endpoint.health;
        if let Some(elapsed) = elapsed {
            health.observe_latency(elapsed);
        }
        let Some(settings) = &self.outlier else { return };
        let Some(reason) = health.record(outcome, settings, now) else { return };
        let n = self.endpoints.len();
        let ejected = self.endpoints.iter().filter(|e| e.endpoint.health.is_ejected(now)).count();
        let allowed = (n * settings.max_ejected_percent as usize / 100).max(1).min(n.saturating_sub(1));
        if ejected >= allowed {
            tracing::warn!(
                upstream = %self.id, endpoint = %entry.endpoint.addr, reason = reason.as_str(), ejected,
                "outlier detection: not ejecting, the upstream's ejection limit is reached"
            );
            return;
        }
        let duration = health.eject(settings, reason, now);
        tracing::warn!(
            upstream = %self.id, endpoint = %entry.endpoint.addr, reason = reason.as_str(),
            seconds = duration.as_secs_f64(), "outlier detection: endpoint ejected"
        );
    }

    /// Whether a response status counts as the endpoint failing.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.failure_statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// Starts, updates or stops the active checks of every endpoint (call after the snapshot is in place).
    pub fn apply_active_checks(&self) {
        for e in &self.endpoints {
            e.endpoint.set_active_check(self.active_check.clone(), &self.pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tried;

    #[test]
    fn tried_keeps_every_index_inline_first() {
        let mut t = Tried::default();
        assert!(t.is_empty());
        for i in [3, 1, 3, 7, 9, 11, 1] {
            t.push(i);
        }
        for i in [3, 1, 7, 9, 11] {
            assert!(t.contains(i));
        }
        assert!(!t.contains(2) && !t.is_empty());
    }
}
