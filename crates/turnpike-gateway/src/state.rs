//! Runtime state that outlives snapshots: registries keyed by stable ids, so a reload keeps pools and counters.

use std::sync::Arc;

use turnpike_core::Registry;
use turnpike_upstream::{BalancerState, Endpoint, EndpointKey};

/// Every registry of runtime state. A snapshot holds `Arc`s into these; state no snapshot holds is dropped.
#[derive(Debug, Default)]
pub struct State {
    /// Endpoint state (pool, in-flight count) by upstream id, address and protocol.
    pub endpoints: Registry<EndpointKey, Endpoint>,
    /// Balancer positions by upstream id.
    pub balancers: Registry<Arc<str>, BalancerState>,
}
