//! `Cx`: the request context that phases read and fill in, from accept to the access log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Uri};
use tokio::time::Instant;

use crate::{ClientCert, Identity, RequestId};

/// The scheme a listener speaks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The downstream connection a request arrived on. Made once per connection and shared by its requests.
#[derive(Debug)]
pub struct Peer {
    /// The TCP peer address (a client, or a proxy in front of the gateway).
    pub addr: SocketAddr,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// The name of the listener that accepted it.
    pub listener: Arc<str>,
    /// The scheme of that listener.
    pub scheme: Scheme,
    /// The peer's IP as a header value, made once so forwarding headers cost no formatting per request.
    pub ip_header: HeaderValue,
    /// The client certificate the listener verified (mTLS), if any.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The TLS server name (SNI) the client asked for, if any.
    pub server_name: Option<Arc<str>>,
}

impl Peer {
    /// Describes a freshly accepted connection.
    pub fn new(addr: SocketAddr, local: SocketAddr, listener: Arc<str>, scheme: Scheme) -> Self {
        let ip = addr.ip().to_canonical();
        let ip_header = HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        Self { addr, local, listener, scheme, ip_header, client_cert: None, server_name: None }
    }
}

/// The context of one request: who sent it, where it went, and what happened, for every phase and the access log.
#[derive(Debug)]
pub struct Cx {
    /// The request id (generated, or accepted from a trusted client).
    pub request_id: RequestId,
    /// When the gateway started handling the request.
    pub start: Instant,
    /// The connection it came in on.
    pub peer: Arc<Peer>,
    /// The real client address: the peer, or the address a trusted proxy reported for it.
    pub client_ip: IpAddr,
    /// The request method.
    pub method: Method,
    /// The request target as the client sent it.
    pub uri: Uri,
    /// The host the client addressed, as sent (`Host`, or the HTTP/2 `:authority`).
    pub host: Option<HeaderValue>,
    /// The id of the route that matched.
    pub route: Option<Arc<str>>,
    /// The id of the upstream the request went to.
    pub upstream: Option<Arc<str>>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// Who the caller is, once authenticated.
    pub identity: Option<Arc<Identity>>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time from sending the request upstream to receiving the response head (the last attempt's).
    pub upstream_duration: Option<Duration>,
    /// Why retrying stopped before the attempts ran out (`budget_exhausted`, `deadline`, `not_replayable`).
    pub retry_stopped: Option<&'static str>,
    /// The machine name of the error the gateway answered with, if any.
    pub error: Option<&'static str>,
    /// What rate limiting decided (`allowed`, `refused`, `shadow_refused`, ...), on rate-limited routes.
    pub rate_limit: Option<&'static str>,
    /// The limit that refused (or would have, in shadow mode): `policy/limit`.
    pub rate_limit_by: Option<Arc<str>>,
    /// Why authentication or authorization refused the request (`missing`, `invalid`, `forbidden`,
    /// `unavailable`), for metrics.
    pub auth_failure: Option<&'static str>,
    /// The request's trace, when tracing is on.
    pub trace: Option<crate::trace::RequestTrace>,
    /// Request headers the access log writes (in the order its settings name them).
    pub log_headers: Vec<Option<HeaderValue>>,
}

impl Cx {
    /// A fresh context for a request arriving on `peer`.
    pub fn new(request_id: RequestId, peer: Arc<Peer>, method: Method, uri: Uri, start: Instant) -> Self {
        let client_ip = peer.addr.ip().to_canonical();
        Self {
            request_id,
            start,
            peer,
            client_ip,
            method,
            uri,
            host: None,
            route: None,
            upstream: None,
            endpoint: None,
            identity: None,
            attempts: 0,
            upstream_duration: None,
            retry_stopped: None,
            error: None,
            rate_limit: None,
            rate_limit_by: None,
            auth_failure: None,
            trace: None,
            log_headers: Vec::new(),
        }
    }
}
