//! Turnpike's upstreams: named pools of endpoints, their connections, and how a request picks one.
//!
//! Runtime state (connection pools, in-flight counts, balancer positions) lives in [`Endpoint`] and
//! [`BalancerState`] values that the gateway keeps in registries keyed by upstream id and endpoint address, so a
//! reload keeps warm connections and counters. The compiled [`Upstream`] in a snapshot holds only settings and
//! `Arc`s to that state.

pub mod active;
pub mod balance;
pub mod breaker;
pub mod connect;
pub mod endpoint;
pub mod health;
pub mod limit;
pub mod pool;
pub mod retry;
pub mod upstream;
pub mod window;

pub use active::{ActiveCheck, ProbeKind};
pub use balance::{Balance, BalancerState, Maglev, stable_hash};
pub use breaker::{Breaker, BreakerPosition, BreakerSettings, Ticket};
pub use endpoint::{Endpoint, EndpointKey, InFlight};
pub use health::{EjectReason, ErrorRate, Health, Outcome, OutlierSettings};
pub use limit::{LimitSettings, Limiter, Shed, Slot};
pub use pool::{Checkout, Exchange, PoolSettings, PoolStats, PooledConn, Protocol, SendError, Unsent};
pub use retry::{BudgetSettings, RetryBudget, RetryOn, RetryPolicy, is_idempotent};
pub use upstream::{
    Fallback, HashOn, HostHeader, Timeouts, Tried, Upstream, UpstreamState, WeightedEndpoint, WhenAllDown,
};

/// A fast thread-local random number (wyrand), for balancing decisions; not for secrets.
pub fn fast_random() -> u64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}
