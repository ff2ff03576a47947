//! An endpoint's health: what the active checker last concluded, whether passive outlier detection has ejected
//! it, and its response-time EWMA.
//!
//! Thresholds are settings ([`OutlierSettings`], in the compiled upstream); the counters here are state, kept
//! across reloads with the endpoint. The request path reads two atomics to know whether an endpoint may be
//! used, and the clock only while an ejection is pending.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::window::Window;

/// What one attempt on an endpoint came to, as far as its health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived (any status outside the failure statuses).
    Success,
    /// A response with a status the upstream counts as the endpoint failing (5xx by default).
    ServerError,
    /// The connection could not be opened (refused, unreachable, timed out, TLS or HTTP handshake failed).
    ConnectFailure,
    /// The connection broke or the answer did not come in time.
    Failure,
}

/// Passive outlier detection: when an endpoint is ejected from balancing for misbehaving in live traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Eject after this many connect failures in a row (0: never for this reason).
    pub consecutive_connect_failures: u32,
    /// Eject after this many failure statuses (or broken exchanges) in a row (0: never for this reason).
    pub consecutive_failures: u32,
    /// Eject when the share of failed attempts over a rolling window reaches this.
    pub error_rate: Option<ErrorRate>,
    /// The first ejection lasts this long; each further one lasts this times the number of ejections.
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    pub max_ejection: Duration,
    /// At most this share of the upstream's endpoints is ejected at once (at least one, never all).
    pub max_ejected_percent: u32,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_connect_failures: 3,
            consecutive_failures: 5,
            error_rate: None,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// An error-rate threshold over a rolling window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRate {
    /// Failed attempts, in percent of all attempts, that eject.
    pub percent: u32,
    /// Fewer attempts than this in the window decide nothing.
    pub min_requests: u32,
    /// The window.
    pub window: Duration,
}

/// Why passive detection ejected an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectReason {
    /// Connect failures in a row.
    ConnectFailures,
    /// Failures in a row.
    Failures,
    /// The error rate over the window.
    ErrorRate,
}

impl EjectReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::ConnectFailures => "consecutive_connect_failures",
            EjectReason::Failures => "consecutive_failures",
            EjectReason::ErrorRate => "error_rate",
        }
    }
}

/// One endpoint's health state.
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    /// The active checker's verdict: `false` while it says unhealthy.
    active_up: AtomicBool,
    /// Ejected until this many microseconds after `origin`; 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the next one lasts `base * (ejections + 1)`); forgotten after a long healthy spell.
    ejections: AtomicU32,
    /// When the last ejection ended or would end, in microseconds after `origin`.
    last_ejection_end: AtomicU64,
    /// Whether the running ejection is for connect failures (an endpoint that could not be reached, which a
    /// passing active probe proves reachable again).
    ejected_unreachable: AtomicBool,
    consecutive_connect: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Attempts and failed attempts, for the error rate.
    window: Window<2>,
    /// Response time EWMA in microseconds (0: no sample yet).
    ewma_us: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        let origin = Instant::now();
        Self {
            origin,
            active_up: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            last_ejection_end: AtomicU64::new(0),
            ejected_unreachable: AtomicBool::new(false),
            consecutive_connect: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            window: Window::new(origin),
            ewma_us: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn micros(&self, now: Instant) -> u64 {
        // +1: 0 means "not ejected".
        now.saturating_duration_since(self.origin).as_micros() as u64 + 1
    }

    /// Whether balancing may send this endpoint traffic: the active checker does not say it is down and no
    /// ejection is running.
    pub fn is_available(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if self.micros(Instant::now()) < until {
            return false;
        }
        // The ejection is over: back to the fast path (unless a new ejection raced in).
        let _ = self.ejected_until.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    /// Whether an ejection is running at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.micros(now) < until
    }

    /// The active checker's verdict (true before any check, or without checks).
    pub fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Sets the active checker's verdict; returns whether it changed.
    pub fn set_active_up(&self, up: bool) -> bool {
        let changed = self.active_up.swap(up, Ordering::Relaxed) != up;
        if changed && up {
            // A checker that sees the endpoint back lifts a running ejection too: it just proved it answers.
            self.ejected_until.store(0, Ordering::Relaxed);
            self.consecutive_connect.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.window.clear();
        }
        changed
    }

    /// Ends an ejection for connect failures, after active probes passed: the endpoint is reachable again.
    /// Returns whether an ejection ended. Ejections for failing responses run their course (a health endpoint
    /// that answers 200 says little about the requests that failed).
    pub fn readmit_reachable(&self) -> bool {
        if self.ejected_until.load(Ordering::Relaxed) == 0 || !self.ejected_unreachable.load(Ordering::Relaxed) {
            return false;
        }
        self.ejected_until.store(0, Ordering::Relaxed);
        self.ejected_unreachable.store(false, Ordering::Relaxed);
        true
    }

    /// How many times passive detection has ejected the endpoint (reset after a long healthy spell).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// The response-time EWMA (zero before the first response).
    pub fn ewma(&self) -> Duration {
        Duration::from_micros(self.ewma_us.load(Ordering::Relaxed))
    }

    /// The EWMA in microseconds, for balancing.
    pub(crate) fn ewma_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    /// Folds a response time into the EWMA ("peak" EWMA: a slower sample is taken at once, faster ones pull the
    /// average down by 1/8 each, so an endpoint that turns slow is avoided quickly and trusted again gradually).
    pub fn observe_latency(&self, elapsed: Duration) {
        let sample = (elapsed.as_micros() as u64).max(1);
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 || sample >= old { sample } else { old - (old - sample) / 8 };
        if new != old {
            self.ewma_us.store(new, Ordering::Relaxed);
        }
    }

    /// Records an attempt's outcome at `now`. Returns the reason when this outcome crosses an ejection
    /// threshold: the caller decides whether the upstream can afford to eject (see [`Health::eject`]).
    pub fn record(&self, outcome: Outcome, settings: &OutlierSettings, now: Instant) -> Option<EjectReason> {
        let failed = outcome != Outcome::Success;
        if let Some(rate) = &settings.error_rate {
            self.window.add(now, rate.window, [1, u64::from(failed)]);
        }
        let bump = |counter: &AtomicU32| counter.fetch_add(1, Ordering::Relaxed) + 1;
        let reset = |counter: &AtomicU32| {
            if counter.load(Ordering::Relaxed) != 0 {
                counter.store(0, Ordering::Relaxed);
            }
        };
        let mut reason = None;
        match outcome {
            Outcome::Success => {
                reset(&self.consecutive_connect);
                reset(&self.consecutive_failures);
            }
            Outcome::ConnectFailure => {
                let n = bump(&self.consecutive_connect);
                if settings.consecutive_connect_failures > 0 && n >= settings.consecutive_connect_failures {
                    reason = Some(EjectReason::ConnectFailures);
                }
                let n = bump(&self.consecutive_failures);
                if reason.is_none() && settings.consecutive_failures > 0 && n >= settings.consecutive_failures {
                    reason = Some(EjectReason::Failures);
                }
            }
            Outcome::ServerError | Outcome::Failure => {
                reset(&self.consecutive_connect);
                let n = bump(&self.consecutive_failures);
                if settings.consecutive_failures > 0 && n >= settings.consecutive_failures {
                    reason = Some(EjectReason::Failures);
                }
            }
        }
        if reason.is_none()
            && failed
            && let Some(rate) = &settings.error_rate
        {
            let [total, errors] = self.window.sum(now, rate.window);
            if total >= u64::from(rate.min_requests.max(1)) && errors * 100 >= total * u64::from(rate.percent) {
                reason = Some(EjectReason::ErrorRate);
            }
        }
        if reason.is_some() && self.is_ejected(now) {
            return None;
        }
        reason
    }

    /// Ejects the endpoint at `now`; returns how long for. Each ejection lasts the base time times the number
    /// of ejections so far (capped); the count is forgotten once the endpoint has stayed healthy for the longest
    /// ejection time.
    pub fn eject(&self, settings: &OutlierSettings, reason: EjectReason, now: Instant) -> Duration {
        self.ejected_unreachable.store(reason == EjectReason::ConnectFailures, Ordering::Relaxed);
        let at = self.micros(now);
        let quiet = settings.max_ejection.as_micros() as u64;
        let last_end = self.last_ejection_end.load(Ordering::Relaxed);
        if last_end != 0 && at.saturating_sub(last_end) > quiet {
            self.ejections.store(0, Ordering::Relaxed);
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let duration = settings.base_ejection.saturating_mul(n).min(settings.max_ejection);
        let until = at + duration.as_micros() as u64;
        self.ejected_until.store(until, Ordering::Relaxed);
        self.last_ejection_end.store(until, Ordering::Relaxed);
        self.consecutive_connect.store(0, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.window.clear();
        duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_connect_failures: 2,
            consecutive_failures: 3,
            error_rate: None,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_cross_the_threshold_and_a_success_resets_them() {
        let h = Health::default();
        let s = settings();
        let now = Instant::now();
        assert_eq!(h.record(Outcome::ServerError, &s, now), None);
        assert_eq!(h.record(Outcome::ServerError, &s, now), None);
        assert_eq!(h.record(Outcome::Success, &s, now), None);
        assert_eq!(h.record(Outcome::ServerError, &s, now), None);
        assert_eq!(h.record(Outcome::ServerError, &s, now), None);
        assert_eq!(h.record(Outcome::ServerError, &s, now), Some(EjectReason::Failures));
        assert_eq!(h.record(Outcome::Success, &s, now), None);
        assert_eq!(h.record(Outcome::ConnectFailure, &s, now), None);
        assert_eq!(h.record(Outcome::ConnectFailure, &s, now), Some(EjectReason::ConnectFailures));
    }

    #[test]
    fn ejections_grow_are_capped_and_end() {
        let h = Health::default();
        let s = settings();
        let t0 = Instant::now();
        assert_eq!(h.eject(&s, EjectReason::Failures, t0), Duration::from_secs(10));
        assert!(h.is_ejected(t0 + Duration::from_secs(9)));
        assert!(!h.is_ejected(t0 + Duration::from_secs(11)));
        assert_eq!(h.eject(&s, EjectReason::Failures, t0 + Duration::from_secs(11)), Duration::from_secs(20));
        assert_eq!(h.eject(&s, EjectReason::Failures, t0 + Duration::from_secs(40)), Duration::from_secs(25));
        // A long healthy spell (longer than the longest ejection) forgets the count.
        assert_eq!(h.eject(&s, EjectReason::Failures, t0 + Duration::from_secs(200)), Duration::from_secs(10));
    }

    #[test]
    fn error_rate_ejects_only_with_enough_volume() {
        let h = Health::default();
        let s = OutlierSettings {
            consecutive_connect_failures: 0,
            consecutive_failures: 0,
            error_rate: Some(ErrorRate { percent: 50, min_requests: 10, window: Duration::from_secs(10) }),
            ..settings()
        };
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(h.record(Outcome::Success, &s, now), None);
            assert_eq!(h.record(Outcome::ServerError, &s, now), None);
        }
        assert_eq!(h.record(Outcome::Success, &s, now), None);
        assert_eq!(h.record(Outcome::ServerError, &s, now), Some(EjectReason::ErrorRate));
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let h = Health::default();
        h.observe_latency(Duration::from_millis(10));
        assert_eq!(h.ewma(), Duration::from_millis(10));
        h.observe_latency(Duration::from_millis(100));
        assert_eq!(h.ewma(), Duration::from_millis(100));
        h.observe_latency(Duration::from_millis(20));
        assert_eq!(h.ewma(), Duration::from_millis(90));
    }
}
