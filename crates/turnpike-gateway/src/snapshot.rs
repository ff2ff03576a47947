//! `Snapshot`: the compiled configuration one request sees from start to end; swapped whole on reload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use turnpike_policy::auth::AuthChain;
use turnpike_policy::auth::jwt::GatewaySigner;
use turnpike_policy::authz::Authorizer;
use turnpike_policy::cors::Cors;
use turnpike_policy::headers::SecurityHeaders;
use turnpike_policy::identity_headers::IdentityHeaders;
use turnpike_policy::ip_filter::IpFilter;
use turnpike_policy::validate::BodyValidator;
use turnpike_router::{CompiledRewrite, Router};
use turnpike_upstream::Upstream;

/// A compiled configuration. Immutable; a reload builds a new one and swaps it in one atomic step.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts reloads: 1 for the first config, +1 for every successful reload.
    pub generation: u64,
    /// A hash of the config's source text, to tell configs apart in logs and the admin API.
    pub config_hash: u64,
    /// Process-wide settings.
    pub server: ServerSettings,
    /// The listeners, by address.
    pub listeners: Vec<Arc<ListenerSettings>>,
    /// The route table.
    pub routes: Router<Route>,
    /// Upstreams by id.
    pub upstreams: HashMap<Arc<str>, Arc<Upstream>>,
}

impl Snapshot {
    /// The settings of the listener with this key, if it is still configured.
    pub fn listener(&self, key: &ListenerKey) -> Option<&Arc<ListenerSettings>> {
        self.listeners.iter().find(|l| &l.key() == key)
    }
}

/// Whose `X-Request-Id` the gateway accepts instead of generating one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustIncoming {
    /// Always generate.
    Never,
    /// Accept it from trusted proxies only.
    TrustedProxies,
    /// Accept it from anyone.
    Always,
}

/// Process-wide settings, compiled.
#[derive(Debug)]
pub struct ServerSettings {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The request-id header name.
    pub request_id_header: HeaderName,
    /// Whose request id is accepted.
    pub request_id_trust: TrustIncoming,
    /// Whether the request id is returned to the client.
    pub request_id_in_response: bool,
    /// Whether `X-Forwarded-For/Proto/Host` are set.
    pub x_forwarded: bool,
    /// Whether RFC 7239 `Forwarded` is set.
    pub forwarded: bool,
    /// Whether `Via` is added (to requests and responses).
    pub via: bool,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Whether the access log is written.
    pub access_log: bool,
    /// What it writes (fields, redaction, sampling).
    pub log: Arc<turnpike_telemetry::access_log::LogSettings>,
    /// Its file, when not stdout (startup only).
    pub access_log_path: Option<std::path::PathBuf>,
    /// Bytes it holds while the writer catches up (startup only).
    pub access_log_buffer: usize,
    /// Worker threads asked for (startup only).
    pub workers: Option<usize>,
    /// Whether config file changes trigger a reload.
    pub watch: bool,
    /// Default request body limit of routes, in bytes.
    pub max_body_size: u64,
    /// Identity headers: stripped from every request, set from the identity.
    pub identity_headers: IdentityHeaders,
    /// Security headers added to every response.
    pub security_headers: SecurityHeaders,
    /// Addresses allowed on every route.
    pub ip_filter: Option<IpFilter>,
    /// Signs identity tokens for upstreams, when configured.
    pub gateway_token: Option<GatewaySigner>,
    /// Name servers for re-resolving endpoint names (empty: the system's), and the resolution timeout.
    pub dns: (Vec<std::net::SocketAddr>, Duration),
    /// The admin listener, when configured (metrics are recorded only then).
    pub admin: Option<AdminSettings>,
    /// Tracing, when configured.
    pub tracing: Option<TracingSettings>,
}

/// Tracing, compiled.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// Share of new traces recorded.
    pub sample_ratio: f64,
    /// Which headers are read and written.
    pub propagation: turnpike_core::trace::Propagation,
    /// The exporter (started with the gateway; a reload that changes it is told to restart).
    pub exporter: turnpike_telemetry::trace::ExporterConfig,
    /// The configuration it came from (what a reload compares).
    pub source: crate::config::document::TracingConfig,
}

/// The admin listener, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where it listens.
    pub address: SocketAddr,
    /// Upstreams that need a healthy endpoint for `/readyz` to be ready.
    pub required_upstreams: Vec<Arc<str>>,
}

impl ServerSettings {
    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP/1.1, and HTTP/2 with prior knowledge (h2c), told apart by the connection preface.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 with prior knowledge only.
    Http2,
}

/// What identifies a listener's socket across reloads: its address, plus its name when the port is 0 (each such
/// listener gets a port of its own, so the address alone does not tell them apart).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// The configured address.
    pub address: SocketAddr,
    /// The name, for port 0 only.
    pub name: Option<Arc<str>>,
}

impl std::fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} ({name})", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// A listener, compiled. The socket itself lives in the listener set and survives reloads that keep the address.
#[derive(Debug)]
pub struct ListenerSettings {
    /// Connections and TLS handshakes, for Prometheus (kept in state by listener name).
    pub metrics: Arc<turnpike_telemetry::metrics::ListenerMetrics>,
    /// Its name (in logs).
    pub name: Arc<str>,
    /// Its address.
    pub address: SocketAddr,
    /// Its protocol.
    pub protocol: ListenerProtocol,
    /// Longest wait for a request head (also bounds keep-alive idle time).
    pub header_timeout: Duration,
    /// Longest silence while a request body is being received.
    pub body_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; larger heads get 431.
    pub max_header_size: u64,
    /// Most header fields in a request.
    pub max_headers: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Longest request target, in bytes (414 beyond).
    pub max_uri_length: usize,
    /// TLS, when the listener terminates it.
    pub tls: Option<turnpike_tls::ServerTls>,
    /// `Strict-Transport-Security` value for answers over TLS.
    pub hsts: Option<http::HeaderValue>,
    /// The HTTPS port every request is redirected to, for a redirect listener.
    pub redirect_https: Option<u16>,
}

impl ListenerSettings {
    /// The key its socket is kept under across reloads.
    pub fn key(&self) -> ListenerKey {
        ListenerKey { address: self.address, name: (self.address.port() == 0).then(|| self.name.clone()) }
    }
}

/// A route, compiled: what happens to the requests it matches.
#[derive(Debug)]
pub struct Route {
    /// Its id.
    pub id: Arc<str>,
    /// Where it forwards (the default target; `split` and `variants` may choose another).
    pub upstream: Arc<Upstream>,
    /// A weighted split between upstreams (empty: none), with cumulative weights.
    pub split: Vec<(Arc<Upstream>, u32)>,
    /// Variants pinned by a header or cookie, checked first.
    pub variants: Vec<Variant>,
    /// Request mirroring.
    pub mirror: Option<Mirror>,
    /// How it rewrites the path.
    pub rewrite: Option<CompiledRewrite>,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_size: u64,
    /// Deadline for the upstream's response head (504 beyond), retries included, when the route sets its own
    /// (else the chosen upstream's `request_timeout`).
    pub timeout: Option<Duration>,
    /// The route's own retries (else the chosen upstream's).
    pub retry: Option<Arc<turnpike_upstream::RetryPolicy>>,
    /// Addresses allowed on this route.
    pub ip_filter: Option<IpFilter>,
    /// CORS policy.
    pub cors: Option<Cors>,
    /// JSON Schema validation of request bodies.
    pub validate: Option<BodyValidator>,
    /// Authentication.
    pub auth: Option<AuthChain>,
    /// Authorization.
    pub authorize: Option<Authorizer>,
    /// Whether the upstream gets a gateway-signed identity token.
    pub gateway_token: bool,
    /// Rate limits.
    pub rate_limit: Option<turnpike_policy::rate_limit::RouteRateLimit>,
    /// What its requests add up to, for Prometheus (kept in state by route id).
    pub metrics: Arc<turnpike_telemetry::metrics::RouteMetrics>,
}

/// A variant of a route pinned by a header or cookie value.
#[derive(Debug)]
pub struct Variant {
    /// Where matching requests go.
    pub upstream: Arc<Upstream>,
    /// What they carry.
    pub on: VariantMatch,
}

/// What pins a request to a variant.
#[derive(Debug)]
pub enum VariantMatch {
    /// A header with an exact value.
    Header(http::HeaderName, String),
    /// A cookie with an exact value.
    Cookie(String, String),
}

/// Request mirroring of a route.
#[derive(Debug)]
pub struct Mirror {
    /// The upstream that receives copies.
    pub upstream: Arc<Upstream>,
    /// Requests mirrored per million.
    pub per_million: u32,
    /// Largest body mirrored.
    pub max_body: u64,
    /// Copies in flight at most.
    pub max_in_flight: u32,
}

impl Route {
    /// The upstream this request goes to: a matching variant, else a draw from the split, else the default.
    pub fn target(&self, headers: &http::HeaderMap) -> &Arc<Upstream> {
        for v in &self.variants {
            let hit = match &v.on {
                VariantMatch::Header(name, value) => {
                    headers.get(name).is_some_and(|h| h.as_bytes() == value.as_bytes())
                }
                VariantMatch::Cookie(name, value) => cookie(headers, name) == Some(value.as_str()),
            };
            if hit {
                return &v.upstream;
            }
        }
        if let Some((_, total)) = self.split.last()
            && *total > 0
        {
            let draw = (turnpike_upstream::fast_random() % u64::from(*total)) as u32;
            if let Some((upstream, _)) = self.split.iter().find(|(_, upto)| draw < *upto) {
                return upstream;
            }
        }
        &self.upstream
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
}
