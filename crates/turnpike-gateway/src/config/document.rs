//! The configuration document: the user-facing types of the YAML/JSON config, strict and documented.
//!
//! Every struct denies unknown fields, every field has a doc comment (they become the JSON Schema descriptions and
//! `docs/config.md`), durations and sizes carry units (`5s`, `250ms`, `10MiB`). Semantic checks (references,
//! duplicates, regexes, unreachable routes) happen in `compile`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::{ByteSize, Duration, Spanned};
use turnpike_policy::auth::api_key::{ApiKeyConfig, ConsumerConfig};
use turnpike_policy::auth::introspection::IntrospectionConfig;
use turnpike_policy::auth::jwt::{GatewayTokenConfig, JwtConfig};
use turnpike_policy::auth::mtls::MtlsConfig;
use turnpike_policy::authz::AuthorizeConfig;
use turnpike_policy::cors::CorsConfig;
use turnpike_policy::headers::SecurityHeadersConfig;
use turnpike_policy::identity_headers::IdentityHeadersConfig;
use turnpike_policy::ip_filter::IpFilterConfig;
use turnpike_policy::rate_limit::config::{RateLimitPolicyConfig, RedisConfig, RouteRateLimitConfig};
use turnpike_policy::validate::BodySchemaConfig;

pub use super::resilience::{
    CircuitBreakerConfig, ConcurrencyLimitConfig, FallbackConfig, HashOnConfig, HealthCheckConfig, OutlierConfig,
    RetryBudgetConfig, RetryConfig, StatusRange,
};

/// A Turnpike configuration: where to listen, which upstreams exist, and how requests are routed to them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where the gateway accepts client connections. At least one.
    pub listeners: Vec<Spanned<ListenerConfig>>,
    /// Named pools of endpoints that routes forward to, by id.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamConfig>>,
    /// Routes, in declared order. Which route serves a request is decided by specificity first and declared order
    /// second (see the routing section of the docs).
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
    /// Authentication policies routes refer to in `auth.policies`, by id: each one method (`jwt`, `api_key`,
    /// `introspection` or `mtls`) with its settings.
    #[serde(default)]
    pub auth_policies: BTreeMap<String, Spanned<AuthPolicyConfig>>,
    /// Rate-limit policies routes refer to in `rate_limit.policies`, by id: limits applied together, each keyed,
    /// counted by an algorithm, locally or in Redis.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, Spanned<RateLimitPolicyConfig>>,
    /// Known API clients and their keys (used by `api_key` policies).
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
    /// Files holding more consumers (a YAML or JSON list of the same shape as `consumers`), relative to the
    /// config file's directory. Read again on every reload: revoking a key is editing the file and reloading.
    #[serde(default)]
    pub consumer_files: Vec<String>,
}

/// An authentication policy: exactly one method.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthPolicyConfig {
    /// JSON Web Tokens, verified with a secret, static public keys, a JWKS URL or OIDC discovery.
    Jwt(JwtConfig),
    /// API keys of the configured consumers.
    ApiKey(ApiKeyConfig),
    /// Opaque tokens checked with an OAuth2 token introspection endpoint (RFC 7662).
    Introspection(IntrospectionConfig),
    /// The client certificate a listener verified (the listener's `tls.client_auth` must request or require one).
    Mtls(MtlsConfig),
}

/// A route's authentication.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    /// Ids of `auth_policies`, in the order they are tried.
    pub policies: Vec<String>,
    /// How the policies combine: `any` (the first whose credential the request presents decides; two different
    /// credentials, or a malformed one, are refused) or `all` (every policy must verify; identities are merged).
    #[serde(default)]
    pub require: RequireConfig,
    /// Let requests without any credential through, without an identity. A credential that is presented is
    /// still verified: a bad one is refused, never treated as anonymous. Off unless set.
    #[serde(default)]
    pub anonymous: bool,
    /// Send the upstream a short-lived JWT signed by the gateway with the caller's identity, in the header
    /// `server.gateway_token.header` (which must be configured).
    #[serde(default)]
    pub gateway_token: bool,
}

/// How a route's authentication policies combine.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RequireConfig {
    /// The first policy whose credential is presented decides.
    #[default]
    Any,
    /// Every policy must verify.
    All,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Worker threads serving traffic. Absent: one per CPU core. `turnpike run --workers N` overrides it.
    /// Changing it needs a restart.
    pub workers: Option<u16>,
    /// Addresses (CIDR, IPv4 or IPv6) of proxies in front of the gateway whose forwarding headers
    /// (`X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded`, and the request id) are believed.
    /// From anyone else they are replaced. Empty: no one is trusted.
    pub trusted_proxies: Vec<String>,
    /// Request ids.
    pub request_id: RequestIdConfig,
    /// Headers the gateway adds to forwarded requests.
    pub proxy_headers: ProxyHeadersConfig,
    /// Limits applied to every route unless the route sets its own.
    pub limits: LimitsConfig,
    /// How long a shutdown (SIGTERM, SIGINT) waits for in-flight requests before closing what is left.
    pub shutdown_timeout: Duration,
    /// The access log: one JSON object per request on stdout.
    pub access_log: AccessLogConfig,
    /// Reload automatically when the config file (or a file in the config directory) changes.
    pub watch: bool,
    /// Names of the identity headers sent to upstreams after authentication. They are removed from every
    /// client request on every route first, so upstreams can trust them.
    pub identity_headers: IdentityHeadersConfig,
    /// Security headers added to every response.
    pub security_headers: SecurityHeadersConfig,
    /// Client addresses allowed on every route (a route's own `ip_filter` applies as well).
    pub ip_filter: Option<IpFilterConfig>,
    /// The key the gateway signs identity tokens for upstreams with (routes opt in with
    /// `auth.gateway_token: true`).
    pub gateway_token: Option<GatewayTokenConfig>,
    /// How host names of upstream endpoints are resolved and re-resolved (`upstreams.<id>.dns_refresh`).
    pub dns: DnsConfig,
    /// The Redis server that rate limits with `store: redis` or `store: hybrid` share with the other gateway
    /// instances.
    pub redis: Option<RedisConfig>,
    /// The admin listener: Prometheus metrics (`/metrics`), health (`/healthz`, `/readyz`) and a status summary
    /// (`/status`), on its own address, never a proxy listener's. Absent: no admin listener, and no metrics are
    /// recorded.
    pub admin: Option<AdminConfig>,
    /// Distributed tracing: W3C Trace Context (and B3) read from requests and sent upstream, spans exported over
    /// OTLP. Absent: no spans, and trace headers pass through untouched like any other header.
    pub tracing: Option<TracingConfig>,
}

/// Distributed tracing.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP collector, `http://host:port`: for `grpc` (port 4317 usually) spans go to
    /// `TraceService/Export`; for `http` (port 4318) to the URL's path, `/v1/traces` when it has none. Plain
    /// HTTP only (run the collector on this host or beside it). Changing it needs a restart.
    pub endpoint: String,
    /// `grpc` or `http` (protobuf over HTTP/1.1).
    #[serde(default)]
    pub protocol: OtlpProtocolConfig,
    /// Share of new traces recorded, 0 to 1 (by trace id, so every service sampling by ratio picks the same
    /// traces). A request whose caller sent a trace context follows the caller's decision (parent-based).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Which trace headers are read and written: `w3c` (`traceparent`, `tracestate`), `b3` (`b3` or `X-B3-*`
    /// read, `b3` written).
    #[serde(default = "default_propagation")]
    pub propagation: Vec<PropagationConfig>,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes (`deployment.environment: prod`, ...).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Headers sent with every export (collector credentials: write values as `${env:NAME}`). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, turnpike_policy::Secret>,
    /// How long one export may take before its spans are dropped.
    #[serde(default = "default_export_timeout")]
    pub timeout: Duration,
    /// Most spans in one export.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill before it is sent.
    #[serde(default = "default_batch_interval")]
    pub interval: Duration,
    /// Spans held while the collector is slow; beyond this they are dropped and counted
    /// (`turnpike_trace_spans_dropped_total`), never waited for.
    #[serde(default = "default_span_queue")]
    pub queue: usize,
}

fn default_sample_ratio() -> f64 {
    1.0
}
fn default_propagation() -> Vec<PropagationConfig> {
    vec![PropagationConfig::W3c]
}
fn default_service_name() -> String {
    "turnpike".into()
}
fn default_export_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_max_batch() -> usize {
    512
}
fn default_batch_interval() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}
fn default_span_queue() -> usize {
    8192
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocolConfig {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP, protobuf bodies.
    Http,
}

/// A trace-header format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PropagationConfig {
    /// W3C Trace Context.
    W3c,
    /// Zipkin B3.
    B3,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `ip:port` to listen on. Loopback by default: metrics and status say a lot about the deployment, so
    /// exposing them beyond this machine is a choice to make explicitly (and to protect with a firewall).
    pub address: String,
    /// Upstreams that must have at least one healthy endpoint for `/readyz` to answer 200 (by id). Empty:
    /// readiness only needs the configuration loaded and the listeners bound.
    pub required_upstreams: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: "127.0.0.1:9901".into(), required_upstreams: Vec::new() }
    }
}

/// DNS resolution of upstream endpoint names.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers (`ip:port`) asked when endpoint names are re-resolved. Empty: the system's
    /// (`/etc/resolv.conf`, and `/etc/hosts`).
    pub nameservers: Vec<String>,
    /// How long one resolution may take.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self { nameservers: Vec::new(), timeout: Duration(std::time::Duration::from_secs(2)) }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: None,
            trusted_proxies: Vec::new(),
            request_id: RequestIdConfig::default(),
            proxy_headers: ProxyHeadersConfig::default(),
            limits: LimitsConfig::default(),
            shutdown_timeout: Duration(std::time::Duration::from_secs(30)),
            access_log: AccessLogConfig::default(),
            watch: true,
            identity_headers: IdentityHeadersConfig::default(),
            security_headers: SecurityHeadersConfig::default(),
            ip_filter: None,
            dns: DnsConfig::default(),
            gateway_token: None,
            redis: None,
            admin: None,
            tracing: None,
        }
    }
}

/// Request ids: every request gets one; it is sent to the upstream, returned to the client, and in every log line
/// and error body.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConfig {
    /// The header that carries it.
    pub header: String,
    /// Whose incoming id is kept instead of generating a new one. An incoming id must be at most 128 characters
    /// of letters, digits and `-_.:@/+=`, or it is replaced.
    pub trust_incoming: TrustIncomingConfig,
    /// Return the id to the client in the same header.
    pub in_response: bool,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self { header: "x-request-id".into(), trust_incoming: TrustIncomingConfig::TrustedProxies, in_response: true }
    }
}

/// Whose incoming request id is kept.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrustIncomingConfig {
    /// Always generate a new id.
    Never,
    /// Keep the id sent by a trusted proxy (`server.trusted_proxies`).
    TrustedProxies,
    /// Keep the id sent by any client.
    Always,
}

/// Headers added to forwarded requests.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyHeadersConfig {
    /// Set `X-Forwarded-For` (the client address; appended to a trusted proxy's list), `X-Forwarded-Proto` and
    /// `X-Forwarded-Host`.
    pub x_forwarded: bool,
    /// Set the RFC 7239 `Forwarded` header (`for=...;proto=...;host=...`).
    pub forwarded: bool,
    /// Add a `Via: 1.1 turnpike` entry to requests and responses (RFC 9110 §7.6.3).
    pub via: bool,
}

impl Default for ProxyHeadersConfig {
    fn default() -> Self {
        Self { x_forwarded: true, forwarded: false, via: true }
    }
}

/// Limits shared by all routes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body a route accepts unless it sets `max_body_size` itself. Larger bodies get 413,
    /// before they are read when `Content-Length` announces them, or as soon as the limit is crossed.
    pub max_body_size: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_body_size: ByteSize(64 * 1024 * 1024) }
    }
}

/// The access log.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write one JSON line per request. Decided at startup; a reload can turn it off, not on.
    pub enabled: bool,
    /// A file to append to instead of stdout (created if missing). `kill -USR1` makes the gateway reopen it,
    /// after logrotate moved it away. Changing it needs a restart.
    pub path: Option<String>,
    /// The fields written, by name (`http.response.status_code`, `url.query`, `trace_id`, ...; see
    /// docs/observability.md). Absent: every field but `url.query`.
    pub fields: Option<Vec<String>>,
    /// Fields whose value is written as `[REDACTED]` (`client.address`, `consumer`, ...).
    pub redact: Vec<String>,
    /// Request headers logged as `http.request.header.<name>`. Credentials among them (`Authorization`,
    /// `Proxy-Authorization`, `Cookie`, the API-key headers of `api_key` policies, and `redact_headers`) are
    /// written as `[REDACTED]`.
    pub request_headers: Vec<String>,
    /// More request headers whose values are redacted.
    pub redact_headers: Vec<String>,
    /// More query parameters whose values are redacted in `url.query` (besides `token`, `access_token`,
    /// `api_key`, `key`, `password`, `secret`, `signature`, ... and the query parameters of `api_key` policies).
    pub redact_query_params: Vec<String>,
    /// Which requests are logged.
    pub sample: AccessLogSampleConfig,
    /// Memory for lines not written yet (the writer writes every 50 ms), shared among the workers that log; when
    /// the disk or stdout falls behind and a worker's share is full, lines are dropped and counted
    /// (`turnpike_access_log_dropped_total`), never waited for. Changing it needs a restart.
    pub buffer: ByteSize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            fields: None,
            redact: Vec::new(),
            request_headers: Vec::new(),
            redact_headers: Vec::new(),
            redact_query_params: Vec::new(),
            sample: AccessLogSampleConfig::default(),
            buffer: ByteSize(8 << 20),
        }
    }
}

/// Access-log sampling.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogSampleConfig {
    /// Share of successful requests logged, 0 to 1.
    pub successes: f64,
    /// Share of errors (status 400 and above) logged, 0 to 1.
    pub errors: f64,
}

impl Default for AccessLogSampleConfig {
    fn default() -> Self {
        Self { successes: 1.0, errors: 1.0 }
    }
}

/// A listener: an address where clients connect.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Its name, unique (in logs).
    pub name: String,
    /// `ip:port` to listen on, e.g. `0.0.0.0:8080` or `[::]:8080`; port 0 picks a free port. A reload that keeps
    /// an address keeps its socket, so no connection is refused during the reload.
    pub address: String,
    /// What it speaks.
    #[serde(default)]
    pub protocol: ListenerProtocolConfig,
    /// Longest wait for a complete request head; also how long an idle keep-alive connection is kept. Slow
    /// clients (slowloris) are disconnected when it expires.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Duration,
    /// Longest silence while a request body is being received; the request fails with 408 and the connection is
    /// closed when it expires.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Duration,
    /// Largest request head (request line and all headers); larger ones get 431.
    #[serde(default = "default_max_header_size")]
    pub max_header_size: ByteSize,
    /// Most header fields in a request; more get 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: u16,
    /// Most concurrent streams per HTTP/2 connection.
    #[serde(default = "default_h2_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Longest request target (path and query); longer ones get 414.
    #[serde(default = "default_max_uri_length")]
    pub max_uri_length: ByteSize,
    /// TLS: certificates (chosen by SNI), versions, client certificates (mTLS). Absent: plain HTTP. Certificate
    /// files are read again on every reload; open connections keep the certificate they started with.
    #[serde(default)]
    pub tls: Option<turnpike_tls::ServerTlsConfig>,
    /// `Strict-Transport-Security` on every answer of a TLS listener.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Answer every request with a permanent redirect (308) to the same URL over HTTPS, instead of routing it.
    #[serde(default)]
    pub redirect_https: Option<RedirectHttpsConfig>,
}

/// HTTP Strict Transport Security (RFC 6797).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// How long browsers remember to use HTTPS only.
    #[serde(default = "default_hsts_max_age")]
    pub max_age: Duration,
    /// Apply to every subdomain too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Ask to be included in browsers' preload lists (needs `include_subdomains` and a max age of a year or more).
    #[serde(default)]
    pub preload: bool,
}

fn default_hsts_max_age() -> Duration {
    Duration(std::time::Duration::from_secs(365 * 24 * 3600))
}

/// Where a redirect listener sends clients.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttpsConfig {
    /// The HTTPS port in the `Location` (443 is left out of the URL).
    #[serde(default = "default_https_port")]
    pub port: u16,
}

fn default_https_port() -> u16 {
    443
}

fn default_max_uri_length() -> ByteSize {
    ByteSize(8 * 1024)
}

fn default_header_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}
fn default_body_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}
fn default_max_header_size() -> ByteSize {
    ByteSize(32 * 1024)
}
fn default_max_headers() -> u16 {
    100
}
fn default_h2_streams() -> u32 {
    256
}

/// The protocols a listener speaks to clients.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocolConfig {
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c), told apart by the connection preface.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 with prior knowledge only.
    Http2,
}

/// An upstream: a named pool of endpoints with its connection, balancing and timeout settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its endpoints: `host:port` strings, or `{address, weight}`. A host name is resolved when the config is
    /// loaded (every address it resolves to becomes an endpoint).
    pub endpoints: Vec<EndpointConfig>,
    /// How requests are spread over the endpoints.
    #[serde(default)]
    pub balance: BalanceConfig,
    /// The HTTP version spoken to the endpoints.
    #[serde(default)]
    pub protocol: UpstreamProtocolConfig,
    /// The `Host` header the endpoints receive.
    #[serde(default)]
    pub host_header: HostHeaderConfig,
    /// TLS to the endpoints: trusted roots or a CA file, the server name, a client certificate. Absent: plain
    /// TCP.
    #[serde(default)]
    pub tls: Option<turnpike_tls::UpstreamTlsConfig>,
    /// Deadline for opening a connection (504 when it expires).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Deadline from sending a request to receiving the response head (504 when it expires). A route can set its
    /// own `timeout`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Longest silence while a response body streams; the response is cut when it expires.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// How long an unused keep-alive connection stays in the pool. Keep it below the endpoints' own keep-alive
    /// timeout.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Most idle keep-alive connections kept per endpoint (HTTP/1.1). 0 disables reuse.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_endpoint: u32,
    /// What consistent hashing hashes (`balance: consistent_hash`): `{header: x-user-id}`,
    /// `{cookie: session}`, `client_ip` or `path`. A request without the header or cookie is balanced by
    /// power of two choices.
    #[serde(default)]
    pub hash_on: Option<HashOnConfig>,
    /// Active health checks. Absent: none (passive outlier detection still applies).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier detection (on by default).
    #[serde(default)]
    pub outlier_detection: OutlierConfig,
    /// Response statuses that count as an endpoint failing, for outlier detection and the circuit breaker.
    #[serde(default = "default_failure_statuses")]
    pub failure_statuses: Vec<StatusRange>,
    /// When no endpoint is healthy: `panic` (the default: send to all of them anyway) or `fail` (503).
    #[serde(default)]
    pub when_all_unhealthy: WhenAllUnhealthyConfig,
    /// Retries of the routes to this upstream (a route can set its own). Without it, a request whose
    /// connection could not be opened (it never left) is tried once more on another endpoint, and nothing else is
    /// retried. With it (even `retry: {}`): 2 attempts by default, on connect failures, resets, timeouts and
    /// 502/503/504, for idempotent methods. Retrying after a request was sent costs a copy of its head per
    /// request.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// The retry budget.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// A circuit breaker. Absent: none.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// A limit on requests in flight (and waiting) to this upstream. Absent: none.
    #[serde(default)]
    pub concurrency_limit: Option<ConcurrencyLimitConfig>,
    /// How often endpoints given as host names are resolved again (every A/AAAA record is an endpoint; a change
    /// is applied like a reload: pools of addresses that remain are kept). `0s`: only when the configuration is
    /// loaded. With a refresh, a name that does not resolve yet is not an error: the upstream has no endpoint
    /// from it until it does.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: Duration,
}

fn default_dns_refresh() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_failure_statuses() -> Vec<StatusRange> {
    vec![StatusRange::Text("500-599".into())]
}

/// What happens when no endpoint is healthy.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllUnhealthyConfig {
    /// Send traffic to every endpoint anyway ("panic mode"): a degraded answer beats none.
    #[default]
    Panic,
    /// Answer 503.
    Fail,
}

fn default_connect_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}
fn default_request_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}
fn default_read_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}
fn default_idle_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}
fn default_max_idle() -> u32 {
    256
}

/// An endpoint: `host:port`, or an address with a weight.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EndpointConfig {
    /// `host:port`, weight 1.
    Address(String),
    /// An address with a weight.
    Weighted(WeightedEndpointConfig),
}

impl EndpointConfig {
    /// The `host:port` text.
    pub fn address(&self) -> &str {
        match self {
            EndpointConfig::Address(a) => a,
            EndpointConfig::Weighted(w) => &w.address,
        }
    }

    /// The weight (1 when not given).
    pub fn weight(&self) -> u32 {
        match self {
            EndpointConfig::Address(_) => 1,
            EndpointConfig::Weighted(w) => w.weight,
        }
    }
}

/// An endpoint with a weight.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedEndpointConfig {
    /// `host:port`.
    pub address: String,
    /// Its share of requests relative to the other endpoints, 1 to 1000 (used by `weighted_round_robin`,
    /// `least_in_flight` and `power_of_two_choices`).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl<'de> Deserialize<'de> for EndpointConfig {
    // A string or a mapping, with the mapping's own errors (unknown field, missing address) kept: an untagged
    // derive would hide them behind "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EndpointConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`host:port` or a mapping with `address` and `weight`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EndpointConfig::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                WeightedEndpointConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(EndpointConfig::Weighted)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Load balancing algorithms.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BalanceConfig {
    /// The recommended default: two endpoints at random, the one expected to answer sooner wins (response-time
    /// EWMA times requests in flight, relative to the weight). Slow or overloaded endpoints get less traffic.
    #[default]
    Ewma,
    /// Each endpoint in turn, ignoring weights.
    RoundRobin,
    /// Endpoints in proportion to their weights, interleaved smoothly (nginx's algorithm).
    WeightedRoundRobin,
    /// The endpoint with the fewest requests in flight, relative to its weight.
    LeastInFlight,
    /// Two endpoints at random; the one with fewer requests in flight (relative to its weight) wins.
    PowerOfTwoChoices,
    /// The same key (see `hash_on`) always goes to the same endpoint while it is healthy (Maglev hashing: removing
    /// one of n endpoints moves about 1/n of the keys).
    ConsistentHash,
}

/// HTTP versions spoken to upstreams.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocolConfig {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c): one multiplexed connection per endpoint.
    Http2,
}

/// The `Host` header sent upstream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HostHeaderConfig {
    /// The client's `Host`, unchanged (the original host is also in `X-Forwarded-Host`).
    #[default]
    Preserve,
    /// The endpoint's `ip:port`.
    Endpoint,
    /// A fixed value: `host_header: { fixed: users.internal }`.
    Fixed(String),
}

/// A route: which requests it matches and where they go.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Its id, unique: in logs, metrics and error paths.
    pub id: String,
    /// What requests it matches. Absent: every request (`prefix: /`).
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// The id of the upstream it forwards to. Give this or `split`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A weighted split of the traffic between upstreams, instead of `upstream` (a canary:
    /// `[{upstream: orders-v2, weight: 5}, {upstream: orders, weight: 95}]`). Each request is drawn at random.
    #[serde(default)]
    pub split: Vec<SplitConfig>,
    /// Variants pinned by a header or cookie value (A/B tests, testers opting in), checked before `split` and
    /// `upstream`: the first that matches decides.
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// Mirror (shadow) a share of the requests to another upstream: fire and forget, its response discarded, the
    /// client never waits for it.
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// How the path is rewritten before forwarding. Absent: the (normalized) path is forwarded as is.
    #[serde(default)]
    pub rewrite: Option<RewriteConfig>,
    /// Deadline for the upstream's response head, retries included; overrides the upstream's
    /// `request_timeout`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Retries; overrides the upstream's `retry` as a whole.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Largest request body; overrides `server.limits.max_body_size`.
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,
    /// Client addresses allowed on this route (after `server.ip_filter`).
    #[serde(default)]
    pub ip_filter: Option<IpFilterConfig>,
    /// Cross-origin requests from browsers: preflights answered by the gateway, CORS headers on answers.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// JSON Schema validation of request bodies (after authentication and authorization).
    #[serde(default)]
    pub validate: Option<BodySchemaConfig>,
    /// Who may call it: authentication policies, in order. Absent: the route is public.
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
    /// What the authenticated caller must have: roles, scopes, claim rules, an OPA decision; per method too.
    /// Needs `auth`.
    #[serde(default)]
    pub authorize: Option<AuthorizeConfig>,
    /// Rate limits (after authentication and authorization, so they can key on the caller): ids of
    /// `rate_limits` policies.
    #[serde(default)]
    pub rate_limit: Option<RouteRateLimitConfig>,
}

/// What a route matches. All given conditions must hold. Give at most one of `path`, `prefix` and `regex`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// Hosts, exact (`api.example.com`) or wildcard (`*.example.com`: any host ending in `.example.com`).
    /// Case-insensitive, without port. Empty: any host.
    pub hosts: Vec<String>,
    /// An exact path (`/api/health`) or a template: `{name}` matches one segment, a final `{*name}` the rest
    /// (`/api/users/{id}`, `/files/{*path}`). Captured values can be used in `rewrite.path`.
    pub path: Option<String>,
    /// A path prefix, segment-aware: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
    pub prefix: Option<String>,
    /// A regular expression over the whole path (anchored at both ends); named groups (`(?P<id>[0-9]+)`) can be
    /// used in `rewrite.path`.
    pub regex: Option<String>,
    /// Methods (`GET`, `POST`, ...). A route that allows `GET` also serves `HEAD`. Empty: any method.
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<ValueMatchConfig>,
    /// Query parameter conditions.
    pub query: Vec<ValueMatchConfig>,
}

/// A condition on a header or query parameter: give exactly one of `exact`, `regex` and `present`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchConfig {
    /// The header or parameter name (header names are case-insensitive).
    pub name: String,
    /// The value must be exactly this (any of several values counts).
    #[serde(default)]
    pub exact: Option<String>,
    /// The value must match this regular expression in full.
    #[serde(default)]
    pub regex: Option<String>,
    /// `true`: it must be present (any value); `false`: it must be absent.
    #[serde(default)]
    pub present: Option<bool>,
}

/// A path rewrite.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RewriteConfig {
    /// Remove this prefix (segment-aware): `{ strip_prefix: /api }` sends `/api/users` as `/users`.
    StripPrefix(String),
    /// Replace the path by a template filled with the params the route's path captured:
    /// `{ path: "/users/{id}" }` for a route matching `/v2/users/{id}`.
    Path(String),
}

/// One upstream of a traffic split.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The upstream id.
    pub upstream: String,
    /// Its share relative to the other entries (0 to 10000; 0 takes it out).
    pub weight: u32,
}

/// A variant pinned by a header or a cookie: give `header` or `cookie`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The upstream id.
    pub upstream: String,
    /// A request header with this exact value.
    #[serde(default)]
    pub header: Option<NameValueConfig>,
    /// A cookie with this exact value.
    #[serde(default)]
    pub cookie: Option<NameValueConfig>,
}

/// A name and a value.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameValueConfig {
    /// The name (header names are case-insensitive).
    pub name: String,
    /// The exact value.
    pub value: String,
}

/// Request mirroring.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The upstream id that receives the copies. Its `Host` gets `-shadow` appended, so it can tell them apart.
    pub upstream: String,
    /// The share of requests mirrored, in percent (0 to 100, fractions allowed).
    #[serde(default = "default_mirror_percent")]
    pub percent: f64,
    /// Requests with a larger body (or one of unknown length) are not mirrored.
    #[serde(default = "default_mirror_body")]
    pub max_body: ByteSize,
    /// Copies in flight at most; beyond that, requests are not mirrored (a slow or hanging mirror costs bounded
    /// memory).
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: u32,
}

fn default_mirror_percent() -> f64 {
    100.0
}
fn default_mirror_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_mirror_in_flight() -> u32 {
    256
}
