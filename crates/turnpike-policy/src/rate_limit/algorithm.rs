//! The five algorithms as pure functions of (quota, counter state, now, cost): no clock, no lock, no I/O, so the
//! local store, the Redis scripts (which mirror them line for line) and the tests share one definition.
//!
//! Times are nanoseconds on a wall-clock axis (Unix epoch), so window boundaries are the same on every instance.

use std::collections::VecDeque;

use super::calendar::Calendar;

/// Nanoseconds.
pub type Nanos = u64;

/// One second in nanoseconds.
pub const SECOND: Nanos = 1_000_000_000;

/// The most entries a sliding log may hold per key (its memory is proportional to the limit).
pub const MAX_LOG_LIMIT: u64 = 10_000;

/// How a limit counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    /// At most `limit` per window; windows are aligned to the epoch (or to the calendar in a time zone).
    FixedWindow(WindowSpan),
    /// At most `limit` in any `window` ending now: one timestamp per request.
    SlidingLog { window: Nanos },
    /// The previous window's count weighted by how much of it still overlaps the sliding window, plus this
    /// window's count.
    SlidingWindow { window: Nanos },
    /// Tokens refill at `limit` per `window` up to `burst`; a request takes `cost` tokens.
    TokenBucket { window: Nanos },
    /// GCRA: one request leaks every `window / limit`; `burst` requests fit in the bucket. `max_delay: None`
    /// refuses what does not fit (policing); `Some` delays it up to that long instead (shaping).
    LeakyBucket { window: Nanos, max_delay: Option<Nanos> },
    /// At most `limit` requests in flight; released when the response ends.
    Concurrency,
}

/// The window of a fixed-window limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSpan {
    /// A fixed length, aligned to the Unix epoch.
    Every(Nanos),
    /// Calendar periods (day, week, month) in a time zone.
    Calendar(Calendar),
}

impl Algorithm {
    /// The stable name of the algorithm (state kept across reloads only when it stays the same).
    pub fn kind(&self) -> &'static str {
        match self {
            Algorithm::FixedWindow(_) => "fixed_window",
            Algorithm::SlidingLog { .. } => "sliding_log",
            Algorithm::SlidingWindow { .. } => "sliding_window",
            Algorithm::TokenBucket { .. } => "token_bucket",
            Algorithm::LeakyBucket { max_delay: None, .. } => "leaky_bucket",
            Algorithm::LeakyBucket { max_delay: Some(_), .. } => "leaky_bucket_shape",
            Algorithm::Concurrency => "concurrency",
        }
    }

    /// The window as advertised in `RateLimit-Policy` (`w`), in seconds; `None` for concurrency limits.
    pub fn window_secs(&self, now: Nanos) -> Option<u64> {
        let ns = match self {
            Algorithm::FixedWindow(WindowSpan::Every(w))
            | Algorithm::SlidingLog { window: w }
            | Algorithm::SlidingWindow { window: w }
            | Algorithm::TokenBucket { window: w }
            | Algorithm::LeakyBucket { window: w, .. } => *w,
            Algorithm::FixedWindow(WindowSpan::Calendar(calendar)) => {
                let (start, end) = calendar.bounds(now);
                end - start
            }
            Algorithm::Concurrency => return None,
        };
        Some(ceil_secs(ns))
    }

    /// A fresh counter for this algorithm.
    pub fn fresh(&self, quota: Quota) -> Counter {
        match self {
            Algorithm::FixedWindow(_) => Counter::Window { start: 0, count: 0 },
            Algorithm::SlidingWindow { .. } => Counter::Sliding { start: 0, prev: 0, cur: 0 },
            Algorithm::SlidingLog { .. } => Counter::Log(VecDeque::new()),
            Algorithm::TokenBucket { .. } => Counter::Bucket { tokens: quota.burst as f64, last: 0 },
            Algorithm::LeakyBucket { .. } => Counter::Tat(0),
            Algorithm::Concurrency => Counter::InFlight(0),
        }
    }

    /// Decides one request of `cost` units at `now`, and takes the units from `counter` if it is allowed.
    pub fn take(&self, quota: Quota, counter: &mut Counter, now: Nanos, cost: u64) -> Verdict {
        match (self, counter) {
            (Algorithm::FixedWindow(span), Counter::Window { start, count }) => {
                let (window_start, window_end) = span.bounds(now);
                if *start != window_start {
                    (*start, *count) = (window_start, 0);
                }
                let reset = window_end - now;
                if *count + cost <= quota.limit {
                    *count += cost;
                    Verdict::allow(quota.limit - *count, reset)
                } else {
                    Verdict::refuse(quota.limit.saturating_sub(*count), reset, reset)
                }
            }
            (Algorithm::SlidingWindow { window }, Counter::Sliding { start, prev, cur }) => {
                let w = *window;
                roll_sliding(w, now, start, prev, cur);
                let elapsed = now - *start;
                let weight = (w - elapsed) as f64 / w as f64;
                let estimate = *prev as f64 * weight + *cur as f64;
                let limit = quota.limit as f64;
                if estimate + cost as f64 <= limit + EPSILON {
                    *cur += cost;
                    let remaining = (limit - estimate - cost as f64 + EPSILON).floor().max(0.0) as u64;
                    Verdict::allow(remaining, w - elapsed)
                } else {
                    let wait = sliding_wait(w, elapsed, *prev, *cur, cost, quota.limit);
                    let remaining = (limit - estimate + EPSILON).floor().max(0.0) as u64;
                    Verdict::refuse(remaining, w - elapsed, wait)
                }
            }
            (Algorithm::SlidingLog { window }, Counter::Log(log)) => {
                let w = *window;
                while log.front().is_some_and(|&(at, _)| at + w <= now) {
                    log.pop_front();
                }
                let used: u64 = log.iter().map(|&(_, c)| u64::from(c)).sum();
                // Time until the oldest entry leaves the window: when the remaining count next grows.
                let next_free = |log: &VecDeque<(Nanos, u32)>| log.front().map_or(0, |&(at, _)| at + w - now);
                if used + cost <= quota.limit {
                    log.push_back((now, u32::try_from(cost).unwrap_or(u32::MAX)));
                    Verdict::allow(quota.limit - used - cost, next_free(log))
                } else {
                    // The wait: until enough of the oldest entries have left for `cost` more to fit.
                    let mut freed = 0;
                    let mut wait = w;
                    for &(at, c) in log.iter() {
                        freed += u64::from(c);
                        if used - freed + cost <= quota.limit {
                            wait = at + w - now;
                            break;
                        }
                    }
                    Verdict::refuse(quota.limit.saturating_sub(used), next_free(log), wait)
                }
            }
            (Algorithm::TokenBucket { window }, Counter::Bucket { tokens, last }) => {
                let per_ns = quota.limit as f64 / *window as f64;
                let burst = quota.burst as f64;
                *tokens = (*tokens + now.saturating_sub(*last) as f64 * per_ns).min(burst);
                *last = now.max(*last);
                let cost_f = cost as f64;
                if *tokens + EPSILON >= cost_f {
                    *tokens = (*tokens - cost_f).max(0.0);
                    Verdict::allow((*tokens + EPSILON).floor() as u64, ((burst - *tokens) / per_ns).ceil() as Nanos)
                } else {
                    let full = ((burst - *tokens) / per_ns).ceil() as Nanos;
                    let wait = if cost_f > burst { full } else { ((cost_f - *tokens) / per_ns).ceil() as Nanos };
                    Verdict::refuse((*tokens + EPSILON).floor() as u64, full, wait)
                }
            }
            (Algorithm::LeakyBucket { window, max_delay }, Counter::Tat(tat)) => {
                let interval = emission_interval(*window, quota.limit);
                let tolerance = interval.saturating_mul(quota.burst);
                let new_tat = (*tat).max(now) + interval.saturating_mul(cost);
                let ahead = new_tat - now;
                if ahead <= tolerance {
                    *tat = new_tat;
                    Verdict::allow((tolerance - ahead) / interval, ahead)
                } else {
                    let late = ahead - tolerance;
                    match max_delay {
                        Some(max) if late <= *max => {
                            *tat = new_tat;
                            Verdict { delay: late, ..Verdict::allow(0, ahead) }
                        }
                        Some(max) => Verdict::refuse(0, (*tat).max(now) - now, late - max),
                        None => Verdict::refuse(
                            tolerance.saturating_sub((*tat).max(now) - now) / interval,
                            (*tat).max(now) - now,
                            late,
                        ),
                    }
                }
            }
            (Algorithm::Concurrency, Counter::InFlight(n)) => {
                if *n < quota.limit {
                    *n += 1;
                    Verdict::allow(quota.limit - *n, 0)
                } else {
                    // No way to know when one ends: suggest a second.
                    Verdict::refuse(0, 0, SECOND)
                }
            }
            // A counter of another algorithm (the limit changed algorithm in a reload): start afresh.
            (algorithm, counter) => {
                *counter = algorithm.fresh(quota);
                algorithm.take(quota, counter, now, cost)
            }
        }
    }

    /// Gives back what `take` took at `taken_at` (a request another limit refused, or a concurrency slot whose
    /// response ended). Best effort for windows that have moved on: what has expired is not given back twice.
    pub fn give_back(&self, quota: Quota, counter: &mut Counter, now: Nanos, taken_at: Nanos, cost: u64) {
        match (self, counter) {
            (Algorithm::FixedWindow(span), Counter::Window { start, count }) if *start == span.bounds(taken_at).0 => {
                *count = count.saturating_sub(cost);
            }
            (Algorithm::SlidingWindow { window }, Counter::Sliding { start, prev, cur }) => {
                let taken_window = taken_at - taken_at % window;
                if *start == taken_window {
                    *cur = cur.saturating_sub(cost);
                } else if *start == taken_window + window {
                    *prev = prev.saturating_sub(cost);
                }
            }
            (Algorithm::SlidingLog { .. }, Counter::Log(log)) => {
                if let Some(i) = log.iter().rposition(|&(at, _)| at == taken_at) {
                    log.remove(i);
                }
            }
            (Algorithm::TokenBucket { .. }, Counter::Bucket { tokens, .. }) => {
                *tokens = (*tokens + cost as f64).min(quota.burst as f64);
            }
            (Algorithm::LeakyBucket { window, .. }, Counter::Tat(tat)) => {
                let interval = emission_interval(*window, quota.limit);
                *tat = tat.saturating_sub(interval.saturating_mul(cost)).max(now.min(*tat));
            }
            (Algorithm::Concurrency, Counter::InFlight(n)) => *n = n.saturating_sub(1),
            _ => {}
        }
    }

    /// Whether `counter` is no different from a fresh one at `now` (it can be forgotten without giving anyone
    /// more than they would have had).
    pub fn is_idle(&self, quota: Quota, counter: &Counter, now: Nanos) -> bool {
        match (self, counter) {
            (Algorithm::FixedWindow(span), Counter::Window { start, count }) => {
                *count == 0 || span.bounds(now).0 != *start
            }
            (Algorithm::SlidingWindow { window }, Counter::Sliding { start, prev, cur }) => {
                (*prev == 0 && *cur == 0) || now >= start + 2 * window
            }
            (Algorithm::SlidingLog { window }, Counter::Log(log)) => {
                log.back().is_none_or(|&(at, _)| at + window <= now)
            }
            (Algorithm::TokenBucket { window }, Counter::Bucket { tokens, last }) => {
                let per_ns = quota.limit as f64 / *window as f64;
                *tokens + now.saturating_sub(*last) as f64 * per_ns + EPSILON >= quota.burst as f64
            }
            (Algorithm::LeakyBucket { .. }, Counter::Tat(tat)) => *tat <= now,
            (Algorithm::Concurrency, Counter::InFlight(n)) => *n == 0,
            _ => true,
        }
    }
}

impl WindowSpan {
    /// The window containing `now`: `[start, end)`.
    pub fn bounds(&self, now: Nanos) -> (Nanos, Nanos) {
        match self {
            WindowSpan::Every(w) => {
                let start = now - now % w;
                (start, start + w)
            }
            WindowSpan::Calendar(calendar) => calendar.bounds(now),
        }
    }
}

/// Slack for floating-point counts (token buckets, weighted windows), far below one request.
const EPSILON: f64 = 1e-9;

/// The time between two requests of a leaky bucket: `window / limit`, at least 1 ns.
pub fn emission_interval(window: Nanos, limit: u64) -> Nanos {
    (window / limit.max(1)).max(1)
}

/// Moves a sliding-window counter to the window containing `now`.
fn roll_sliding(w: Nanos, now: Nanos, start: &mut Nanos, prev: &mut u64, cur: &mut u64) {
    let current = now - now % w;
    if *start == current {
        return;
    }
    *prev = if *start + w == current { *cur } else { 0 };
    *cur = 0;
    *start = current;
}

/// How long until a refused request of `cost` would fit a sliding-window counter: the previous window's weight
/// shrinks as time passes; if this window's own count is too high, it must become the previous window.
fn sliding_wait(w: Nanos, elapsed: Nanos, prev: u64, cur: u64, cost: u64, limit: u64) -> Nanos {
    let left_in_window = w - elapsed;
    let wf = w as f64;
    if cost + cur <= limit && prev > 0 {
        // prev * (w - elapsed - t) / w <= limit - cost - cur
        let room = (limit - cost - cur) as f64;
        let t = left_in_window as f64 - room * wf / prev as f64;
        return t.max(0.0).ceil() as Nanos;
    }
    if cost > limit || cur == 0 {
        return left_in_window;
    }
    // In the next window `cur` becomes the previous count: cur * (w - e) / w <= limit - cost.
    let room = (limit - cost) as f64;
    let e = (wf - room * wf / cur as f64).max(0.0);
    left_in_window + e.ceil() as Nanos
}

/// Whole seconds, rounded up.
pub fn ceil_secs(ns: Nanos) -> u64 {
    ns.div_ceil(SECOND)
}

/// The numbers a limit applies for one caller: a plan may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests (cost units) per window, or in flight for concurrency limits.
    pub limit: u64,
    /// Token bucket capacity; leaky bucket: requests let through back to back.
    pub burst: u64,
}

/// The counter of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Counter {
    /// Fixed window: the window's start and its count.
    Window {
        /// Start of the window counted.
        start: Nanos,
        /// Units taken in it.
        count: u64,
    },
    /// Sliding window counter: this window's start, the previous window's count and this one's.
    Sliding {
        /// Start of the current window.
        start: Nanos,
        /// Units taken in the previous window.
        prev: u64,
        /// Units taken in this one.
        cur: u64,
    },
    /// Sliding log: when each request was allowed, and its cost.
    Log(VecDeque<(Nanos, u32)>),
    /// Token bucket: tokens left at `last`.
    Bucket {
        /// Tokens at `last`.
        tokens: f64,
        /// When the tokens were counted.
        last: Nanos,
    },
    /// Leaky bucket (GCRA): the theoretical arrival time of the next request.
    Tat(Nanos),
    /// Requests in flight.
    InFlight(u64),
}

/// What one limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The request may go.
    pub allowed: bool,
    /// Units left after this request (`RateLimit` `r`).
    pub remaining: u64,
    /// Time until the quota is whole again or the window resets (`RateLimit` `t`).
    pub reset: Nanos,
    /// Refused: time until a request of this cost would be allowed (`Retry-After`).
    pub retry_after: Nanos,
    /// Allowed by a shaping leaky bucket: how long to hold the request first.
    pub delay: Nanos,
}

impl Verdict {
    fn allow(remaining: u64, reset: Nanos) -> Self {
        Self { allowed: true, remaining, reset, retry_after: 0, delay: 0 }
    }

    fn refuse(remaining: u64, reset: Nanos, retry_after: Nanos) -> Self {
        Self { allowed: false, remaining, reset, retry_after, delay: 0 }
    }
}
