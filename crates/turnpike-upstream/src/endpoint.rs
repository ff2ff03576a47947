//! `Endpoint`: the runtime state of one address of an upstream: its connection pool, in-flight count, health and
//! active checker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::uri::Authority;

use crate::active::Checker;
use crate::health::Health;
use crate::pool::{Exchange, Pool, PoolSettings, PoolStats, Protocol};

/// The registry key of an endpoint's state: the same upstream, address and protocol after a reload means the same
/// pool and counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// The upstream id.
    pub upstream: Arc<str>,
    /// The endpoint address.
    pub addr: SocketAddr,
    /// The protocol spoken to it.
    pub protocol: Protocol,
    /// The TLS server name, when the upstream uses TLS (a different name is a different pool).
    pub tls_name: Option<String>,
}

/// One endpoint's state, shared by every snapshot that lists it.
pub struct Endpoint {
    /// Its address.
    pub addr: SocketAddr,
    /// `ip:port`, the authority of absolute request URIs (HTTP/2) and of `Host` when rewritten to the endpoint.
    pub authority: Authority,
    pub(crate) in_flight: AtomicU32,
    pub(crate) pool: Pool,
    /// Active check verdict, passive ejection, response-time EWMA.
    pub health: Health,
    /// This endpoint's circuit breaker, used when the upstream's breaker is per endpoint.
    pub breaker: crate::Breaker,
    pub(crate) checker: Checker,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("in_flight", &self.in_flight())
            .field("health", &self.health)
            .finish()
    }
}

/// Alias for readers: an in-flight exchange holds the endpoint's in-flight count.
pub type InFlight = Exchange;

impl Endpoint {
    /// Fresh state for `addr`, speaking `protocol`, over plain TCP.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        Self::with_tls_name(addr, protocol, None)
    }

    /// Fresh state for `addr`; `tls_name` is the server name to present and verify when the upstream uses TLS.
    pub fn with_tls_name(
        addr: SocketAddr,
        protocol: Protocol,
        tls_name: Option<rustls_pki_types::ServerName<'static>>,
    ) -> Self {
        let authority = Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid.endpoint"));
        Self {
            addr,
            authority,
            in_flight: AtomicU32::new(0),
            pool: Pool::new(addr, protocol, tls_name),
            health: Health::default(),
            breaker: crate::Breaker::default(),
            checker: Checker::default(),
        }
    }

    /// Requests currently in flight to this endpoint (from connect to the end of the response body).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Starts an exchange: counts it in flight until it is dropped.
    pub fn begin(self: &Arc<Self>, settings: PoolSettings) -> Exchange {
        Exchange::new(self.clone(), settings)
    }

    /// The pool's counters.
    pub fn pool_stats(&self) -> &PoolStats {
        self.pool.stats()
    }

    /// Idle HTTP/1.1 connections waiting in the pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// Closes pooled connections idle for longer than `idle_timeout`.
    pub fn sweep(&self, idle_timeout: Duration) {
        self.pool.sweep(idle_timeout);
    }
}
