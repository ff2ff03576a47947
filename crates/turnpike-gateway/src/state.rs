//! Runtime state that outlives snapshots: registries keyed by stable ids, so a reload keeps pools and counters.

use std::sync::Arc;

use turnpike_core::Registry;
use turnpike_policy::auth::introspection::IntrospectionStates;
use turnpike_policy::auth::jwt::JwtStates;
use turnpike_policy::authz::OpaStates;
use turnpike_upstream::{Endpoint, EndpointKey, UpstreamState};

/// Every registry of runtime state. A snapshot holds `Arc`s into these; state no snapshot holds is dropped.
#[derive(Debug, Default)]
pub struct State {
    /// Endpoint state (pool, in-flight count) by upstream id, address and protocol.
    pub endpoints: Registry<EndpointKey, Endpoint>,
    /// Upstream state (balancer position, retry budget, breaker, concurrency counts) by upstream id.
    pub upstreams: Registry<Arc<str>, UpstreamState>,
    /// JWT key sets, refresh tasks and verified-token caches, by policy id and key source.
    pub jwt: JwtStates,
    /// Introspection result caches, by policy id and endpoint.
    pub introspection: IntrospectionStates,
    /// OPA decision caches, by route.
    pub opa: OpaStates,
}
