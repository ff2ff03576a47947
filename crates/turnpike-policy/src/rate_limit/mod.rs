//! The `rate_limit` phase: limits keyed by client address, consumer, user, route or request values, counted by one
//! of five algorithms in this instance's memory or in Redis, combined so the strictest wins.
//!
//! - [`config`]: policies (`rate_limits.<id>`), a route's `rate_limit`, `server.redis`.
//! - [`algorithm`]: fixed window, sliding log, sliding window counter, token bucket, leaky bucket (GCRA, policing
//!   or shaping), concurrency: pure functions shared by every store.
//! - [`local`]: the in-process store (sharded, bounded memory).
//! - [`calendar`]: day / week / month windows in a time zone.
//! - `key`: what a request is counted under.

pub mod algorithm;
pub mod calendar;
pub mod config;
mod key;
pub mod local;
pub mod redis;

pub use key::RateLimitInput;
