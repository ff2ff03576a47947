//! Runtime state that outlives snapshots: registries keyed by stable ids, so a reload keeps pools and counters.

use std::sync::Arc;

use turnpike_core::Registry;
use turnpike_policy::auth::introspection::IntrospectionStates;
use turnpike_policy::auth::jwt::JwtStates;
use turnpike_policy::authz::OpaStates;
use turnpike_policy::rate_limit::RateLimitStates;
use turnpike_telemetry::metrics::{ListenerMetrics, RouteMetrics};
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
    /// Rate-limit counters, by policy id, limit name and algorithm.
    pub rate_limits: RateLimitStates,
    /// What endpoint host names last resolved to (filled by the DNS discovery loop).
    pub dns: DnsCache,
    /// Request metrics by route id.
    pub route_metrics: Registry<Arc<str>, RouteMetrics>,
    /// Request metrics of requests no route matched (`route=""`).
    pub unmatched_metrics: Arc<RouteMetrics>,
    /// Connection and TLS metrics by listener name.
    pub listener_metrics: Registry<Arc<str>, ListenerMetrics>,
}

/// Endpoint host names and the addresses they last resolved to, with when.
#[derive(Debug, Default)]
pub struct DnsCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Vec<std::net::IpAddr>, tokio::time::Instant)>>,
}

impl DnsCache {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Vec<std::net::IpAddr>, tokio::time::Instant)>>
    {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The addresses `host` last resolved to.
    pub fn get(&self, host: &str) -> Option<Vec<std::net::IpAddr>> {
        self.lock().get(host).map(|(ips, _)| ips.clone())
    }

    /// When `host` was last resolved.
    pub fn resolved_at(&self, host: &str) -> Option<tokio::time::Instant> {
        self.lock().get(host).map(|(_, at)| *at)
    }

    /// Records a resolution (addresses sorted); returns whether the addresses changed.
    pub fn update(&self, host: &str, mut ips: Vec<std::net::IpAddr>, at: tokio::time::Instant) -> bool {
        ips.sort();
        ips.dedup();
        let mut entries = self.lock();
        let changed = entries.get(host).is_none_or(|(old, _)| *old != ips);
        entries.insert(host.to_string(), (ips, at));
        changed
    }
}
