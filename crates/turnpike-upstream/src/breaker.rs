//! Circuit breakers: stop sending requests to a failing upstream for a while, then let a few probe requests
//! through and close again once they succeed.
//!
//! Closed: requests pass and outcomes are counted over a rolling window; the breaker opens when failures reach a
//! count or a rate (with a minimum volume). Open: requests fail fast, with the time left as `Retry-After`.
//! Half-open (once the open time is over): exactly `half_open_probes` requests pass; one failure opens the
//! breaker again, `success_threshold` successes close it. Thresholds are settings (in the snapshot); the state
//! lives here and survives reloads, so a reload that changes a threshold does not close a tripped breaker.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::window::Window;

/// A breaker's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Open after this many failed requests within the window (0: not by count).
    pub failure_count: u32,
    /// Open when this share of requests, in percent, failed within the window (0: not by rate).
    pub failure_percent: u32,
    /// Fewer requests than this within the window never open the breaker.
    pub min_requests: u32,
    /// The rolling window.
    pub window: Duration,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Requests let through while half-open.
    pub half_open_probes: u32,
    /// Successful probes that close the breaker (at most `half_open_probes`).
    pub success_threshold: u32,
}

/// The breaker's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPosition {
    /// Requests pass.
    Closed,
    /// Requests fail fast.
    Open,
    /// A few probe requests pass.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A breaker's state.
#[derive(Debug)]
pub struct Breaker {
    origin: Instant,
    position: AtomicU8,
    /// When it opened, in microseconds after `origin`.
    opened_at: AtomicU64,
    /// Requests and failures while closed.
    window: Window<2>,
    /// Probes admitted, and probes that succeeded, in the current half-open period.
    probes: AtomicU32,
    successes: AtomicU32,
    /// Times it opened (for metrics and tests).
    trips: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        let origin = Instant::now();
        Self {
            origin,
            position: AtomicU8::new(CLOSED),
            opened_at: AtomicU64::new(0),
            window: Window::new(origin),
            probes: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            trips: AtomicU64::new(0),
        }
    }
}

/// Permission to send one request, from [`Breaker::admit`]. Report its outcome with [`Breaker::record`]; a
/// ticket dropped without one (the client went away) gives its probe slot back.
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            let _ = self.breaker.probes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

impl Breaker {
    fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_micros() as u64
    }

    /// Where the breaker stands at `now` (an open breaker whose time is over reads as half-open).
    pub fn position(&self, settings: &BreakerSettings, now: Instant) -> BreakerPosition {
        match self.position.load(Ordering::Acquire) {
            CLOSED => BreakerPosition::Closed,
            OPEN if self.open_left(settings, now).is_zero() => BreakerPosition::HalfOpen,
            OPEN => BreakerPosition::Open,
            _ => BreakerPosition::HalfOpen,
        }
    }

    /// Whether it is closed (one atomic load, no clock).
    pub fn is_closed(&self) -> bool {
        self.position.load(Ordering::Acquire) == CLOSED
    }

    /// How many times it has opened.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    fn open_left(&self, settings: &BreakerSettings, now: Instant) -> Duration {
        let opened = self.opened_at.load(Ordering::Acquire);
        let elapsed = Duration::from_micros(self.micros(now).saturating_sub(opened));
        settings.open_for.saturating_sub(elapsed)
    }

    /// Asks to send a request at `now`. `Err` carries how long until the breaker probes again.
    pub fn admit(&self, settings: &BreakerSettings, now: Instant) -> Result<Ticket<'_>, Duration> {
        loop {
            match self.position.load(Ordering::Acquire) {
                CLOSED => return Ok(Ticket { breaker: self, probe: false, done: false }),
                OPEN => {
                    let left = self.open_left(settings, now);
                    if !left.is_zero() {
                        return Err(left);
                    }
                    if self.position.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        self.probes.store(0, Ordering::Release);
                        self.successes.store(0, Ordering::Release);
                    }
                }
                _ => {
                    let limit = settings.half_open_probes.max(1);
                    return match self
                        .probes
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
                    {
                        Ok(_) => Ok(Ticket { breaker: self, probe: true, done: false }),
                        // Every probe is out: wait for their verdict.
                        Err(_) => Err(Duration::from_secs(1)),
                    };
                }
            }
        }
    }

    /// Reports how the request of `ticket` went.
    pub fn record(&self, mut ticket: Ticket<'_>, failed: bool, settings: &BreakerSettings, now: Instant) {
        ticket.done = true;
        if ticket.probe {
            if self.position.load(Ordering::Acquire) != HALF_OPEN {
                return;
            }
            if failed {
                self.open(HALF_OPEN, now);
            } else if self.successes.fetch_add(1, Ordering::AcqRel) + 1 >= settings.success_threshold.max(1)
                && self.position.compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                self.window.clear();
                tracing::info!("circuit breaker closed");
            }
            return;
        }
        if self.position.load(Ordering::Acquire) != CLOSED {
            return;
        }
        self.window.add(now, settings.window, [1, u64::from(failed)]);
        if !failed {
            return;
        }
        let [total, failures] = self.window.sum(now, settings.window);
        if total < u64::from(settings.min_requests) {
            return;
        }
        let by_count = settings.failure_count > 0 && failures >= u64::from(settings.failure_count);
        let by_rate = settings.failure_percent > 0 && failures * 100 >= total * u64::from(settings.failure_percent);
        if by_count || by_rate {
            self.open(CLOSED, now);
        }
    }

    fn open(&self, from: u8, now: Instant) {
        if self.position.compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.opened_at.store(self.micros(now), Ordering::Release);
            self.trips.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = if from == CLOSED { "closed" } else { "half-open" }, "circuit breaker opened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_count: 3,
            failure_percent: 0,
            min_requests: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
            success_threshold: 2,
        }
    }

    /// Three failed requests at `t0`: the breaker of [`settings`] opens.
    fn trip(b: &Breaker, s: &BreakerSettings, t0: Instant) {
        for _ in 0..3 {
            let t = b.admit(s, t0).unwrap();
            b.record(t, true, s, t0);
        }
    }

    #[test]
    fn opens_fails_fast_probes_and_closes() {
        let b = Breaker::default();
        let s = settings();
        let t0 = Instant::now();
        trip(&b, &s, t0);
        assert_eq!(b.position(&s, t0), BreakerPosition::Open);
        let left = b.admit(&s, t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(left, Duration::from_secs(4));
        // Half-open: exactly two probes pass.
        let t1 = t0 + Duration::from_secs(6);
        let p1 = b.admit(&s, t1).unwrap();
        let p2 = b.admit(&s, t1).unwrap();
        assert!(b.admit(&s, t1).is_err());
        b.record(p1, false, &s, t1);
        assert_eq!(b.position(&s, t1), BreakerPosition::HalfOpen);
        b.record(p2, false, &s, t1);
        assert_eq!(b.position(&s, t1), BreakerPosition::Closed);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_dropped_one_frees_its_slot() {
        let b = Breaker::default();
        let s = settings();
        let t0 = Instant::now();
        trip(&b, &s, t0);
        let t1 = t0 + Duration::from_secs(6);
        drop(b.admit(&s, t1).unwrap());
        let p = b.admit(&s, t1).unwrap();
        let _other = b.admit(&s, t1).unwrap();
        b.record(p, true, &s, t1);
        assert_eq!(b.position(&s, t1), BreakerPosition::Open);
        assert_eq!(b.trips(), 2);
    }

    #[test]
    fn the_rate_threshold_needs_the_minimum_volume() {
        let b = Breaker::default();
        let s = BreakerSettings { failure_count: 0, failure_percent: 50, min_requests: 10, ..settings() };
        let t0 = Instant::now();
        for i in 0..9 {
            let t = b.admit(&s, t0).unwrap();
            b.record(t, i % 2 == 0, &s, t0);
        }
        assert_eq!(b.position(&s, t0), BreakerPosition::Closed);
        let t = b.admit(&s, t0).unwrap();
        b.record(t, true, &s, t0);
        assert_eq!(b.position(&s, t0), BreakerPosition::Open);
    }
}
