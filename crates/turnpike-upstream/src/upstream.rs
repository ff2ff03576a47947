//! `Upstream`: a compiled upstream in a snapshot: its endpoints, balancing, timeouts and host policy.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::{Balance, BalancerState, Endpoint, PoolSettings, Protocol};

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

/// A named pool of endpoints, compiled.
#[derive(Debug)]
pub struct Upstream {
    /// Its id.
    pub id: Arc<str>,
    /// Its endpoints.
    pub endpoints: Vec<WeightedEndpoint>,
    /// How it balances.
    pub balance: Balance,
    /// The balancer's position (state, kept across reloads).
    pub balancer: Arc<BalancerState>,
    /// The protocol spoken to its endpoints.
    pub protocol: Protocol,
    /// Pool settings.
    pub pool: PoolSettings,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// `Host` policy.
    pub host: HostHeader,
}

impl Upstream {
    /// Picks the endpoint for the next request.
    pub fn pick(&self) -> Option<&Arc<Endpoint>> {
        let i = self.balancer.pick(self.balance, &self.endpoints)?;
        Some(&self.endpoints[i].endpoint)
    }
}
