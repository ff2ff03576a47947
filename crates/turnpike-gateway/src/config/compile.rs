//! Compiling a document into a snapshot: resolve references, build the route table, attach runtime state — and
//! report every semantic error with its path and position.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use turnpike_config::{ConfigError, Node, Path, did_you_mean};
use turnpike_policy::ConfigIssue;
use turnpike_policy::auth::api_key::{ApiKeyAuth, ConsumerSet};
use turnpike_policy::auth::introspection::IntrospectionAuth;
use turnpike_policy::auth::jwt::{GatewaySigner, JwtAuth};
use turnpike_policy::auth::mtls::MtlsAuth;
use turnpike_policy::auth::{AuthChain, AuthPolicy, Method as AuthMethod, Require};
use turnpike_policy::authz::Authorizer;
use turnpike_policy::cors::Cors;
use turnpike_policy::headers::SecurityHeaders;
use turnpike_policy::identity_headers::IdentityHeaders;
use turnpike_policy::ip_filter::IpFilter;
use turnpike_policy::rate_limit::config::StoreKind;
use turnpike_policy::rate_limit::{RateLimitPolicy, RouteRateLimit};
use turnpike_policy::validate::BodyValidator;
use turnpike_router::{BuildErrorKind, HeaderRule, PathMatch, QueryRule, Rewrite, RouteSpec, Router, ValueMatch};
use turnpike_upstream::{
    Balance, Endpoint, EndpointKey, HostHeader, Maglev, PoolSettings, Protocol, RetryPolicy, Timeouts, Upstream,
    WeightedEndpoint, WhenAllDown,
};

use super::document::*;
use super::resilience;
use crate::snapshot::{
    AdminSettings, ListenerProtocol, ListenerSettings, Mirror, Route, ServerSettings, Snapshot, TracingSettings,
    TrustIncoming, Variant, VariantMatch,
};
use crate::state::State;
use turnpike_telemetry::access_log::{LogSettings, LogSettingsError};

/// The most endpoints an upstream may list (after name resolution).
pub const MAX_ENDPOINTS: usize = 4096;

/// Compiles `doc` (whose source tree is `root`) against `state`.
pub fn compile(
    doc: &Document,
    root: &Node,
    base_dir: &std::path::Path,
    state: &State,
    generation: u64,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut cx = Compiler { root, errors: Vec::new(), base_dir: base_dir.to_path_buf() };
    let policies = cx.auth_policies(doc, state);
    // Headers the policies' identities may set are protected like the built-in identity headers.
    let mut extra: Vec<HeaderName> = policies.values().flat_map(|p| p.method.header_names()).collect();
    if let Some(token) = &doc.server.gateway_token
        && let Ok(name) = HeaderName::from_bytes(token.header.to_ascii_lowercase().as_bytes())
    {
        extra.push(name);
    }
    // Where API keys travel: redacted in the access log whatever it is told to log.
    let mut credential_headers = Vec::new();
    let mut credential_params = Vec::new();
    for policy in doc.auth_policies.values() {
        if let AuthPolicyConfig::ApiKey(key) = &policy.value {
            credential_headers.push(key.header.clone());
            credential_params.extend(key.query.clone());
        }
    }
    let mut server = cx.server(&doc.server, &extra, (credential_headers, credential_params));
    let listeners = cx.listeners(doc, state);
    let admin = cx.admin(doc, &listeners);
    if let Some(server) = &mut server {
        server.admin = admin;
    }
    let upstreams = cx.upstreams(doc, state);
    let rate_limits = cx.rate_limits(doc, state);
    let routes = cx.routes(doc, &upstreams, &server, &policies, &rate_limits, state);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let (Some(server), Some(routes)) = (server, routes) else {
        return Err(vec![ConfigError::new("configuration could not be compiled")]);
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{doc:?}").hash(&mut hasher);
    Ok(Snapshot { generation, config_hash: hasher.finish(), server, listeners, routes, upstreams })
}

/// A route's targets: the default upstream, the split (cumulative weights), variants and mirror.
type Targets = (Arc<Upstream>, Vec<(Arc<Upstream>, u32)>, Vec<Variant>, Option<Mirror>);

struct Compiler<'a> {
    root: &'a Node,
    errors: Vec<ConfigError>,
    /// The directory files named in the config are relative to.
    base_dir: std::path::PathBuf,
}

impl Compiler<'_> {
    fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.errors.push(ConfigError::at(self.root, path, message));
    }

    /// Reports a policy's issues at `base` + their relative paths; returns the value when there were none.
    fn policy<T>(&mut self, base: &Path, result: Result<T, Vec<ConfigIssue>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(issues) => {
                for issue in issues {
                    self.error(&join(base, &issue.path), issue.message);
                }
                None
            }
        }
    }

    /// The consumers and the authentication policies, by id.
    fn auth_policies(&mut self, doc: &Document, state: &State) -> HashMap<String, Arc<AuthPolicy>> {
        let files: Vec<std::path::PathBuf> = doc.consumer_files.iter().map(|f| self.base_dir.join(f)).collect();
        let (consumers, issues) = ConsumerSet::compile(&doc.consumers, &files);
        for issue in issues {
            let path = consumer_issue_path(doc, &issue.path);
            self.error(&path, issue.message);
        }
        let consumers = Arc::new(consumers);
        let mut out = HashMap::new();
        for (id, policy) in &doc.auth_policies {
            if !valid_id(id) {
                self.error(&policy.path, format!("policy id `{id}` must be letters, digits, `-`, `_` or `.`"));
                continue;
            }
            let (field, method) = match &policy.value {
                AuthPolicyConfig::Jwt(c) => {
                    ("jwt", JwtAuth::compile(id, c, &state.jwt, &self.base_dir).map(AuthMethod::Jwt))
                }
                AuthPolicyConfig::ApiKey(c) => ("api_key", ApiKeyAuth::compile(c, &consumers).map(AuthMethod::ApiKey)),
                AuthPolicyConfig::Introspection(c) => (
                    "introspection",
                    IntrospectionAuth::compile(id, c, &state.introspection, &self.base_dir)
                        .map(AuthMethod::Introspection),
                ),
                AuthPolicyConfig::Mtls(c) => ("mtls", MtlsAuth::compile(c).map(AuthMethod::Mtls)),
            };
            if let Some(method) = self.policy(&policy.path.clone().key(field), method) {
                out.insert(id.clone(), Arc::new(AuthPolicy { id: Arc::from(id.as_str()), method }));
            }
        }
        out
    }

    /// The rate-limit policies, by id.
    fn rate_limits(&mut self, doc: &Document, state: &State) -> HashMap<String, Arc<RateLimitPolicy>> {
        let mut out = HashMap::new();
        // The shared store, made only when a policy uses it (it connects on first use).
        let shared = doc.rate_limits.values().any(|p| p.value.store != StoreKind::Local);
        let redis = match (&doc.server.redis, shared) {
            (Some(config), true) => match state.rate_limits.redis_store(config) {
                Ok(store) => Some(store),
                Err(message) => {
                    self.error(&Path::root().key("server").key("redis"), message);
                    return out;
                }
            },
            _ => None,
        };
        for (id, policy) in &doc.rate_limits {
            if !valid_id(id) {
                self.error(&policy.path, format!("policy id `{id}` must be letters, digits, `-`, `_` or `.`"));
                continue;
            }
            let compiled = RateLimitPolicy::compile(id, &policy.value, &state.rate_limits, redis.as_ref());
            if let Some(compiled) = self.policy(&policy.path, compiled) {
                out.insert(id.clone(), Arc::new(compiled));
            }
        }
        out
    }

    /// A route's `rate_limit`: its policies, applied together. `None` on error (reported).
    fn route_rate_limit(
        &mut self,
        base: &Path,
        r: &RouteConfig,
        policies: &HashMap<String, Arc<RateLimitPolicy>>,
        doc: &Document,
    ) -> Option<Option<RouteRateLimit>> {
        let Some(config) = &r.rate_limit else { return Some(None) };
        let path = base.clone().key("rate_limit");
        if config.policies.is_empty() {
            self.error(&path.clone().key("policies"), "list at least one rate-limit policy");
            return None;
        }
        let known: Vec<&str> = doc.rate_limits.keys().map(String::as_str).collect();
        let mut ok = true;
        let mut chosen: Vec<Arc<RateLimitPolicy>> = Vec::new();
        for (i, id) in config.policies.iter().enumerate() {
            let at = path.clone().key("policies").index(i);
            match policies.get(id) {
                Some(_) if chosen.iter().any(|p| p.id() == id) => {
                    self.error(&at, format!("policy `{id}` is listed twice"));
                    ok = false;
                }
                Some(policy) => chosen.push(policy.clone()),
                None if doc.rate_limits.contains_key(id) => ok = false, // reported where it is defined
                None => {
                    let mut e = ConfigError::at(self.root, &at, format!("unknown rate-limit policy `{id}`"));
                    e = match did_you_mean(id, &known) {
                        Some(s) => e.with_help(format!("did you mean `{s}`?")),
                        None => e.with_help(format!(
                            "defined rate-limit policies: {}",
                            if known.is_empty() { "none".into() } else { known.join(", ") }
                        )),
                    };
                    self.errors.push(e);
                    ok = false;
                }
            }
        }
        ok.then(|| Some(RouteRateLimit::new(chosen, config.shadow)))
    }

    /// A route's `auth` and `authorize`.
    fn route_auth(
        &mut self,
        base: &Path,
        r: &RouteConfig,
        policies: &HashMap<String, Arc<AuthPolicy>>,
        doc: &Document,
        state: &State,
    ) -> Option<(Option<AuthChain>, Option<Authorizer>)> {
        let mut ok = true;
        let chain = match &r.auth {
            None => None,
            Some(auth) => {
                let path = base.clone().key("auth");
                if auth.policies.is_empty() && !auth.anonymous {
                    self.error(&path.clone().key("policies"), "list at least one policy (or set `anonymous: true`)");
                    ok = false;
                }
                if auth.gateway_token && doc.server.gateway_token.is_none() {
                    self.error(&path.clone().key("gateway_token"), "needs `server.gateway_token` to be configured");
                    ok = false;
                }
                let known: Vec<&str> = doc.auth_policies.keys().map(String::as_str).collect();
                let mut chain = Vec::new();
                for (i, id) in auth.policies.iter().enumerate() {
                    if let Some(policy) = policies.get(id) {
                        if chain.iter().any(|p: &Arc<AuthPolicy>| &*p.id == id) {
                            self.error(
                                &path.clone().key("policies").index(i),
                                format!("policy `{id}` is listed twice"),
                            );
                            ok = false;
                        }
                        chain.push(policy.clone());
                    } else if !doc.auth_policies.contains_key(id) {
                        let mut e = ConfigError::at(
                            self.root,
                            &path.clone().key("policies").index(i),
                            format!("unknown auth policy `{id}`"),
                        );
                        e = match did_you_mean(id, &known) {
                            Some(s) => e.with_help(format!("did you mean `{s}`?")),
                            None => e.with_help(format!(
                                "defined auth policies: {}",
                                if known.is_empty() { "none".into() } else { known.join(", ") }
                            )),
                        };
                        self.errors.push(e);
                        ok = false;
                    } else {
                        ok = false; // The policy itself has errors, reported where it is defined.
                    }
                }
                let require = match auth.require {
                    RequireConfig::Any => Require::Any,
                    RequireConfig::All => Require::All,
                };
                Some(AuthChain::new(chain, require, auth.anonymous))
            }
        };
        let authorize = match &r.authorize {
            None => None,
            Some(config) => {
                if r.auth.is_none() {
                    self.error(
                        &base.clone().key("authorize"),
                        "authorization needs an authenticated caller: add `auth` to this route",
                    );
                    ok = false;
                }
                let compiled = Authorizer::compile(&r.id, config, &state.opa);
                match self.policy(&base.clone().key("authorize"), compiled) {
                    Some(a) => Some(a),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
        };
        ok.then_some((chain, authorize))
    }

    fn server(
        &mut self,
        s: &ServerConfig,
        extra_identity_headers: &[HeaderName],
        credential_names: (Vec<String>, Vec<String>),
    ) -> Option<ServerSettings> {
        let mut nameservers = Vec::new();
        for (i, ns) in s.dns.nameservers.iter().enumerate() {
            match ns.parse::<SocketAddr>() {
                Ok(addr) => nameservers.push(addr),
                Err(_) => self.error(
                    &Path::root().key("server").key("dns").key("nameservers").index(i),
                    format!("`{ns}` is not `ip:port`"),
                ),
            }
        }
        if s.dns.timeout.0.is_zero() {
            self.error(&Path::root().key("server").key("dns").key("timeout"), "must be longer than 0");
        }
        let base = Path::root().key("server");
        let mut trusted_proxies = Vec::new();
        for (i, cidr) in s.trusted_proxies.iter().enumerate() {
            match parse_net(cidr) {
                Some(net) => trusted_proxies.push(net),
                None => self.error(
                    &base.clone().key("trusted_proxies").index(i),
                    format!("`{cidr}` is not an IP address or CIDR block (like `10.0.0.0/8` or `2001:db8::/32`)"),
                ),
            }
        }
        let header = HeaderName::from_bytes(s.request_id.header.to_ascii_lowercase().as_bytes());
        let header = match header {
            Ok(h) => Some(h),
            Err(_) => {
                self.error(&base.clone().key("request_id").key("header"), "not a valid header name");
                None
            }
        };
        let identity_headers = self.policy(
            &base.clone().key("identity_headers"),
            IdentityHeaders::compile(&s.identity_headers, extra_identity_headers),
        );
        let gateway_token = match &s.gateway_token {
            Some(config) => {
                Some(self.policy(&base.clone().key("gateway_token"), GatewaySigner::compile(config, &self.base_dir))?)
            }
            None => None,
        };
        let security_headers =
            self.policy(&base.clone().key("security_headers"), SecurityHeaders::compile(&s.security_headers));
        let ip_filter = match &s.ip_filter {
            Some(config) => Some(self.policy(&base.clone().key("ip_filter"), IpFilter::compile(config))?),
            None => None,
        };
        let log = self.log_settings(&s.access_log, credential_names);
        if s.workers == Some(0) {
            self.error(&base.clone().key("workers"), "must be at least 1 (leave it out for one per CPU core)");
        }
        Some(ServerSettings {
            trusted_proxies,
            request_id_header: header?,
            request_id_trust: match s.request_id.trust_incoming {
                TrustIncomingConfig::Never => TrustIncoming::Never,
                TrustIncomingConfig::TrustedProxies => TrustIncoming::TrustedProxies,
                TrustIncomingConfig::Always => TrustIncoming::Always,
            },
            request_id_in_response: s.request_id.in_response,
            x_forwarded: s.proxy_headers.x_forwarded,
            forwarded: s.proxy_headers.forwarded,
            via: s.proxy_headers.via,
            shutdown_timeout: s.shutdown_timeout.into(),
            access_log: s.access_log.enabled,
            log: Arc::new(log?),
            access_log_path: s.access_log.path.as_ref().map(|p| self.base_dir.join(p)),
            access_log_buffer: usize::try_from(u64::from(s.access_log.buffer)).unwrap_or(usize::MAX),
            workers: s.workers.map(usize::from),
            watch: s.watch,
            max_body_size: s.limits.max_body_size.into(),
            identity_headers: identity_headers?,
            security_headers: security_headers?,
            ip_filter,
            gateway_token,
            dns: (nameservers, s.dns.timeout.into()),
            admin: None,
            tracing: match &s.tracing {
                Some(config) => Some(self.tracing(config)?),
                None => None,
            },
        })
    }

    /// Tracing: a plain-HTTP collector URL, a ratio in 0..=1, valid export headers, non-zero batch settings.
    fn tracing(&mut self, config: &TracingConfig) -> Option<TracingSettings> {
        use turnpike_telemetry::trace::{ExporterConfig, Protocol};
        let base = Path::root().key("server").key("tracing");
        let errors = self.errors.len();
        let endpoint = match config.endpoint.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => Some(uri),
            Ok(uri) if uri.scheme_str() == Some("https") => {
                self.error(
                    &base.clone().key("endpoint"),
                    "TLS to the collector is not supported: use `http://` to a collector on this host or beside it",
                );
                None
            }
            _ => {
                let message = format!("`{}` is not an `http://host:port` URL", config.endpoint);
                self.error(&base.clone().key("endpoint"), message);
                None
            }
        };
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            self.error(&base.clone().key("sample_ratio"), "must be between 0 and 1");
        }
        if config.propagation.is_empty() {
            self.error(&base.clone().key("propagation"), "name at least one format (`w3c`, `b3`)");
        }
        for (key, value) in [("max_batch", config.max_batch), ("queue", config.queue)] {
            if value == 0 {
                self.error(&base.clone().key(key), "must be at least 1");
            }
        }
        for (key, value) in [("timeout", config.timeout), ("interval", config.interval)] {
            if value.0.is_zero() {
                self.error(&base.clone().key(key), "must be longer than 0");
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            match (HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(value.expose()))
            {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                // The value is a secret: the error names the header, never the value.
                _ => self.error(&base.clone().key("headers").key(name), "not a valid header name and value"),
            }
        }
        if self.errors.len() > errors {
            return None;
        }
        let mut resource = vec![("service.name".to_string(), config.service_name.clone())];
        resource.extend(config.resource.iter().map(|(k, v)| (k.clone(), v.clone())));
        let propagation = turnpike_core::trace::Propagation {
            w3c: config.propagation.contains(&PropagationConfig::W3c),
            b3: config.propagation.contains(&PropagationConfig::B3),
        };
        Some(TracingSettings {
            sample_ratio: config.sample_ratio,
            propagation,
            exporter: ExporterConfig {
                endpoint: endpoint?,
                protocol: match config.protocol {
                    OtlpProtocolConfig::Grpc => Protocol::Grpc,
                    OtlpProtocolConfig::Http => Protocol::Http,
                },
                headers,
                resource,
                timeout: config.timeout.into(),
                max_batch: config.max_batch,
                interval: config.interval.into(),
                queue: config.queue,
            },
            source: config.clone(),
        })
    }

    /// What the access log writes. `credentials`: the header and query-parameter names `api_key` policies read
    /// keys from (always redacted).
    fn log_settings(&mut self, c: &AccessLogConfig, credentials: (Vec<String>, Vec<String>)) -> Option<LogSettings> {
        let base = Path::root().key("server").key("access_log");
        let (mut headers, mut params) = credentials;
        headers.extend(c.redact_headers.iter().cloned());
        params.extend(c.redact_query_params.iter().cloned());
        let result = LogSettings::new(
            c.fields.as_deref(),
            &c.redact,
            &c.request_headers,
            &headers,
            &params,
            c.sample.successes,
            c.sample.errors,
        );
        match result {
            Ok(settings) => Some(settings),
            Err(errors) => {
                for e in errors {
                    match e {
                        LogSettingsError::UnknownField(list, i, name) => {
                            let known = turnpike_telemetry::access_log::FIELDS.to_vec();
                            let mut message = format!("unknown access-log field `{name}`");
                            if let Some(s) = did_you_mean(&name, &known) {
                                message.push_str(&format!(" (did you mean `{s}`?)"));
                            }
                            self.error(&base.clone().key(list).index(i), message);
                        }
                        LogSettingsError::BadHeader(i, name) => self.error(
                            &base.clone().key("request_headers").index(i),
                            format!("`{name}` is not a header name"),
                        ),
                        LogSettingsError::BadRatio(which) => {
                            let (a, b) = which.split_once('.').unwrap_or((which, ""));
                            self.error(&base.clone().key(a).key(b), "must be between 0 and 1");
                        }
                    }
                }
                None
            }
        }
    }

    /// The admin listener: a parseable address that no proxy listener uses, and known required upstreams.
    fn admin(&mut self, doc: &Document, listeners: &[Arc<ListenerSettings>]) -> Option<AdminSettings> {
        let config = doc.server.admin.as_ref()?;
        let base = Path::root().key("server").key("admin");
        let Ok(address) = config.address.parse::<SocketAddr>() else {
            self.error(&base.key("address"), format!("`{}` is not `ip:port`", config.address));
            return None;
        };
        let clash = |l: &SocketAddr| {
            l.port() == address.port()
                && address.port() != 0
                && (l.ip() == address.ip() || l.ip().is_unspecified() || address.ip().is_unspecified())
        };
        if let Some(listener) = listeners.iter().find(|l| clash(&l.address)) {
            self.error(
                &base.clone().key("address"),
                format!(
                    "`{address}` is the address of listener `{}`: the admin listener needs its own (metrics and \
                     status are never served on a proxy port)",
                    listener.name
                ),
            );
        }
        let mut required_upstreams = Vec::new();
        for (i, id) in config.required_upstreams.iter().enumerate() {
            if doc.upstreams.contains_key(id) {
                required_upstreams.push(Arc::from(id.as_str()));
            } else {
                self.error(&base.clone().key("required_upstreams").index(i), format!("unknown upstream `{id}`"));
            }
        }
        Some(AdminSettings { address, required_upstreams })
    }

    fn listeners(&mut self, doc: &Document, state: &State) -> Vec<Arc<ListenerSettings>> {
        if doc.listeners.is_empty() {
            self.error(&Path::root().key("listeners"), "at least one listener is needed");
        }
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        let mut out = Vec::new();
        for l in &doc.listeners {
            if l.name.is_empty() {
                self.error(&l.path.clone().key("name"), "must not be empty");
            } else if !names.insert(l.name.as_str()) {
                self.error(&l.path.clone().key("name"), format!("listener name `{}` is used twice", l.name));
            }
            let address = match l.address.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.error(
                        &l.path.clone().key("address"),
                        format!("`{}` is not an `ip:port` address (like `127.0.0.1:8080` or `[::]:8080`)", l.address),
                    );
                    continue;
                }
            };
            // Port 0 asks for any free port: several listeners may do so.
            if address.port() != 0 && !addresses.insert(address) {
                self.error(&l.path.clone().key("address"), format!("`{address}` is used by two listeners"));
            }
            for (field, d) in [("header_timeout", l.header_timeout), ("body_timeout", l.body_timeout)] {
                if d.0.is_zero() {
                    self.error(&l.path.clone().key(field), "must be longer than 0");
                }
            }
            let protocol = match l.protocol {
                ListenerProtocolConfig::Auto => ListenerProtocol::Auto,
                ListenerProtocolConfig::Http1 => ListenerProtocol::Http1,
                ListenerProtocolConfig::Http2 => ListenerProtocol::Http2,
            };
            let tls = l.tls.as_ref().and_then(|config| {
                let alpn: &[&[u8]] = match protocol {
                    ListenerProtocol::Auto => &[b"h2", b"http/1.1"],
                    ListenerProtocol::Http1 => &[b"http/1.1"],
                    ListenerProtocol::Http2 => &[b"h2"],
                };
                match turnpike_tls::server_config(config, &self.base_dir, alpn) {
                    Ok(tls) => {
                        for warning in &tls.warnings {
                            tracing::warn!(listener = %l.name, "{}: {}", warning.path, warning.message);
                        }
                        Some(tls)
                    }
                    Err(issues) => {
                        for issue in issues {
                            self.error(&join(&l.path.clone().key("tls"), &issue.path), issue.message);
                        }
                        None
                    }
                }
            });
            if l.hsts.is_some() && l.tls.is_none() {
                self.error(&l.path.clone().key("hsts"), "HSTS is only sent over TLS: this listener has no `tls`");
            }
            if l.redirect_https.is_some() && l.tls.is_some() {
                self.error(&l.path.clone().key("redirect_https"), "a TLS listener cannot redirect to HTTPS");
            }
            if l.max_header_size.0 < 1024 {
                self.error(&l.path.clone().key("max_header_size"), "must be at least 1KiB");
            }
            let name: Arc<str> = Arc::from(l.name.as_str());
            out.push(Arc::new(ListenerSettings {
                metrics: state.listener_metrics.get_or_insert_with(&name, Default::default),
                name,
                address,
                protocol,
                tls,
                header_timeout: l.header_timeout.into(),
                body_timeout: l.body_timeout.into(),
                max_header_size: l.max_header_size.into(),
                max_headers: usize::from(l.max_headers.max(1)),
                h2_max_concurrent_streams: l.http2_max_concurrent_streams.max(1),
                max_uri_length: usize::try_from(l.max_uri_length.0).unwrap_or(usize::MAX),
                hsts: l.hsts.as_ref().map(|h| {
                    if h.preload && (!h.include_subdomains || h.max_age.0.as_secs() < 31_536_000) {
                        self.error(
                            &l.path.clone().key("hsts").key("preload"),
                            "preload needs `include_subdomains: true` and a max age of at least a year",
                        );
                    }
                    hsts_value(h)
                }),
                redirect_https: l.redirect_https.as_ref().map(|r| r.port),
            }));
        }
        out
    }

    fn upstreams(&mut self, doc: &Document, state: &State) -> HashMap<Arc<str>, Arc<Upstream>> {
        let mut out = HashMap::new();
        for (id, u) in &doc.upstreams {
            if !valid_id(id) {
                self.error(&u.path, format!("upstream id `{id}` must be letters, digits, `-`, `_` or `.`"));
                continue;
            }
            let id: Arc<str> = Arc::from(id.as_str());
            let protocol = match u.protocol {
                UpstreamProtocolConfig::Http1 => Protocol::Http1,
                UpstreamProtocolConfig::Http2 => Protocol::Http2,
            };
            if u.endpoints.is_empty() {
                self.error(&u.path.clone().key("endpoints"), "an upstream needs at least one endpoint");
            }
            let client_tls = u.tls.as_ref().and_then(|config| {
                let alpn: &[&[u8]] = match protocol {
                    Protocol::Http1 => &[b"http/1.1"],
                    Protocol::Http2 => &[b"h2"],
                };
                match turnpike_tls::client_config(config, &self.base_dir, alpn) {
                    Ok(client) => {
                        if config.insecure_skip_verify {
                            tracing::warn!(upstream = %id, "TLS certificates of this upstream are NOT verified (insecure_skip_verify)");
                        }
                        Some(client)
                    }
                    Err(issues) => {
                        for issue in issues {
                            self.error(&join(&u.path.clone().key("tls"), &issue.path), issue.message);
                        }
                        None
                    }
                }
            });
            let mut endpoints = Vec::new();
            let mut hostnames = Vec::new();
            let mut seen = HashSet::new();
            for (i, e) in u.endpoints.iter().enumerate() {
                let path = u.path.clone().key("endpoints").index(i);
                let weight = e.weight();
                if !(1..=1000).contains(&weight) {
                    self.error(&path.clone().key("weight"), "weight must be between 1 and 1000");
                    continue;
                }
                let refresh: std::time::Duration = u.dns_refresh.into();
                if let Some((host, _)) = host_name(e.address()) {
                    hostnames.push(host.to_string());
                }
                let addrs = match resolve(e.address(), (!refresh.is_zero()).then_some(&state.dns)) {
                    Ok(addrs) => addrs,
                    // Re-resolved on an interval: the name may appear later (another name server, a service that
                    // is not deployed yet). Until then, no endpoint comes from it.
                    Err(message) if !refresh.is_zero() && host_name(e.address()).is_some() => {
                        tracing::warn!(upstream = %id, endpoint = e.address(), reason = %message, "endpoint name does not resolve yet");
                        Vec::new()
                    }
                    Err(message) => {
                        self.error(&path, message);
                        continue;
                    }
                };
                let tls_name = match &u.tls {
                    Some(config) => match turnpike_tls::server_name(config, host_of(e.address())) {
                        Ok(name) => Some(name),
                        Err(issue) => {
                            self.error(&path, issue.message);
                            continue;
                        }
                    },
                    None => None,
                };
                for addr in addrs {
                    if !seen.insert(addr) {
                        self.error(&path, format!("endpoint `{addr}` is listed twice"));
                        continue;
                    }
                    let key = EndpointKey {
                        upstream: id.clone(),
                        addr,
                        protocol,
                        tls_name: tls_name.as_ref().map(|n| n.to_str().into_owned()),
                    };
                    let endpoint = state
                        .endpoints
                        .get_or_insert_with(&key, || Endpoint::with_tls_name(addr, protocol, tls_name.clone()));
                    endpoints.push(WeightedEndpoint { endpoint, weight });
                }
            }
            if endpoints.len() > MAX_ENDPOINTS {
                self.error(&u.path.clone().key("endpoints"), format!("more than {MAX_ENDPOINTS} endpoints"));
            }
            let host = match &u.host_header {
                HostHeaderConfig::Preserve => HostHeader::Preserve,
                HostHeaderConfig::Endpoint => HostHeader::Endpoint,
                HostHeaderConfig::Fixed(value) => match HeaderValue::from_str(value) {
                    Ok(v) if !value.is_empty() => HostHeader::Fixed(v),
                    _ => {
                        self.error(&u.path.clone().key("host_header").key("fixed"), "not a valid host");
                        HostHeader::Preserve
                    }
                },
            };
            for (field, d) in [
                ("connect_timeout", u.connect_timeout),
                ("request_timeout", u.request_timeout),
                ("read_timeout", u.read_timeout),
                ("idle_timeout", u.idle_timeout),
            ] {
                if d.0.is_zero() {
                    self.error(&u.path.clone().key(field), "must be longer than 0");
                }
            }
            let balance = match u.balance {
                BalanceConfig::Ewma => Balance::Ewma,
                BalanceConfig::RoundRobin => Balance::RoundRobin,
                BalanceConfig::WeightedRoundRobin => Balance::WeightedRoundRobin,
                BalanceConfig::LeastInFlight => Balance::LeastInFlight,
                BalanceConfig::PowerOfTwoChoices | BalanceConfig::ConsistentHash => Balance::PowerOfTwoChoices,
            };
            let hash_on = match (&u.hash_on, u.balance) {
                (Some(h), BalanceConfig::ConsistentHash) => self.policy(&u.path.clone().key("hash_on"), h.compile()),
                (None, BalanceConfig::ConsistentHash) => {
                    self.error(&u.path.clone().key("hash_on"), "`balance: consistent_hash` needs `hash_on`");
                    None
                }
                (Some(_), _) => {
                    self.error(&u.path.clone().key("hash_on"), "`hash_on` needs `balance: consistent_hash`");
                    None
                }
                (None, _) => None,
            };
            let maglev = hash_on.as_ref().and_then(|_| {
                let names: Vec<String> = endpoints.iter().map(|e| e.endpoint.addr.to_string()).collect();
                let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
                Maglev::new(&names, &weights)
            });
            let active_check =
                u.health_check.as_ref().and_then(|h| self.policy(&u.path.clone().key("health_check"), h.compile()));
            let outlier =
                self.policy(&u.path.clone().key("outlier_detection"), u.outlier_detection.compile()).flatten();
            let mut issues = Vec::new();
            let failure_statuses = resilience::status_ranges("failure_statuses", &u.failure_statuses, &mut issues);
            for issue in issues {
                self.error(&join(&u.path, &issue.path), issue.message);
            }
            let retry = match &u.retry {
                Some(retry) => self.policy(&u.path.clone().key("retry"), retry.compile()),
                None => Some(Arc::new(RetryPolicy::connect_only())),
            }
            .unwrap_or_else(|| Arc::new(RetryPolicy::none()));
            let budget = self.policy(&u.path.clone().key("retry_budget"), u.retry_budget.compile()).unwrap_or_default();
            let (breaker, fallback) = match &u.circuit_breaker {
                Some(b) => match self.policy(&u.path.clone().key("circuit_breaker"), b.compile()) {
                    Some((settings, fallback)) => (Some(settings), fallback),
                    None => (None, None),
                },
                None => (None, None),
            };
            let limit = u
                .concurrency_limit
                .as_ref()
                .and_then(|l| self.policy(&u.path.clone().key("concurrency_limit"), l.compile()));
            let upstream = Upstream {
                id: id.clone(),
                endpoints,
                balance,
                maglev,
                state: state.upstreams.get_or_insert_with(&id, Default::default),
                protocol,
                pool: PoolSettings {
                    tls: client_tls,
                    connect_timeout: u.connect_timeout.into(),
                    idle_timeout: u.idle_timeout.into(),
                    max_idle: u.max_idle_per_endpoint as usize,
                },
                timeouts: Timeouts {
                    connect: u.connect_timeout.into(),
                    request: u.request_timeout.into(),
                    read: u.read_timeout.into(),
                },
                host,
                outlier,
                active_check,
                when_all_down: match u.when_all_unhealthy {
                    WhenAllUnhealthyConfig::Panic => WhenAllDown::Panic,
                    WhenAllUnhealthyConfig::Fail => WhenAllDown::Fail,
                },
                retry,
                budget,
                breaker_per_endpoint: u.circuit_breaker.as_ref().is_some_and(|b| b.per_endpoint),
                breaker,
                fallback,
                limit,
                hash_on,
                failure_statuses,
                hostnames,
                dns_refresh: u.dns_refresh.into(),
            };
            out.insert(id, Arc::new(upstream));
        }
        out
    }

    /// A route's `upstream` (or `split`), `variants` and `mirror`, resolved.
    fn targets(
        &mut self,
        r: &RouteConfig,
        base: &Path,
        upstreams: &HashMap<Arc<str>, Arc<Upstream>>,
        doc: &Document,
        known: &[&str],
    ) -> Option<Targets> {
        let errors = self.errors.len();
        let primary = match (&r.upstream, r.split.is_empty()) {
            (Some(id), true) => self.upstream_ref(&base.clone().key("upstream"), id, upstreams, doc, known),
            (None, false) => None,
            (Some(_), false) => {
                self.error(&base.clone().key("split"), "give `upstream` or `split`, not both");
                None
            }
            (None, true) => {
                self.error(&base.clone().key("upstream"), "a route needs `upstream` (or `split`)");
                None
            }
        };
        let mut split = Vec::new();
        let mut total = 0u32;
        for (i, entry) in r.split.iter().enumerate() {
            let path = base.clone().key("split").index(i);
            if entry.weight > 10_000 {
                self.error(&path.clone().key("weight"), "a weight is 0 to 10000");
            }
            if let Some(u) = self.upstream_ref(&path.key("upstream"), &entry.upstream, upstreams, doc, known) {
                total += entry.weight.min(10_000);
                split.push((u, total));
            }
        }
        if !r.split.is_empty() && total == 0 && self.errors.len() == errors {
            self.error(&base.clone().key("split"), "every weight is 0: no request could be routed");
        }
        let mut variants = Vec::new();
        for (i, v) in r.variants.iter().enumerate() {
            let path = base.clone().key("variants").index(i);
            let on = match (&v.header, &v.cookie) {
                (Some(h), None) => match HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()) {
                    Ok(name) => Some(VariantMatch::Header(name, h.value.clone())),
                    Err(_) => {
                        self.error(&path.clone().key("header").key("name"), "not a header name");
                        None
                    }
                },
                (None, Some(c)) if !c.name.is_empty() => Some(VariantMatch::Cookie(c.name.clone(), c.value.clone())),
                _ => {
                    self.error(&path, "give exactly one of `header` and `cookie`");
                    None
                }
            };
            if let (Some(upstream), Some(on)) =
                (self.upstream_ref(&path.key("upstream"), &v.upstream, upstreams, doc, known), on)
            {
                variants.push(Variant { upstream, on });
            }
        }
        let mirror = match &r.mirror {
            Some(m) => {
                let path = base.clone().key("mirror");
                if !(0.0..=100.0).contains(&m.percent) {
                    self.error(&path.clone().key("percent"), "a percentage, 0 to 100");
                }
                if m.max_in_flight == 0 {
                    self.error(&path.clone().key("max_in_flight"), "must be at least 1");
                }
                self.upstream_ref(&path.key("upstream"), &m.upstream, upstreams, doc, known).map(|upstream| Mirror {
                    upstream,
                    per_million: (m.percent * 10_000.0).round() as u32,
                    max_body: m.max_body.into(),
                    max_in_flight: m.max_in_flight,
                })
            }
            None => None,
        };
        let default = primary.or_else(|| split.iter().max_by_key(|(_, w)| *w).map(|(u, _)| u.clone()))?;
        (self.errors.len() == errors).then_some((default, split, variants, mirror))
    }

    /// The upstream `id` names, or an error at `path` with a suggestion.
    fn upstream_ref(
        &mut self,
        path: &Path,
        id: &str,
        upstreams: &HashMap<Arc<str>, Arc<Upstream>>,
        doc: &Document,
        known: &[&str],
    ) -> Option<Arc<Upstream>> {
        if let Some(u) = upstreams.get(id) {
            return Some(u.clone());
        }
        let mut e = ConfigError::at(self.root, path, format!("unknown upstream `{id}`"));
        if let Some(suggestion) = did_you_mean(id, known) {
            e = e.with_help(format!("did you mean `{suggestion}`?"));
        } else if !doc.upstreams.contains_key(id) {
            e = e.with_help(format!(
                "defined upstreams: {}",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ));
        }
        self.errors.push(e);
        None
    }

    fn routes(
        &mut self,
        doc: &Document,
        upstreams: &HashMap<Arc<str>, Arc<Upstream>>,
        server: &Option<ServerSettings>,
        policies: &HashMap<String, Arc<AuthPolicy>>,
        rate_limits: &HashMap<String, Arc<RateLimitPolicy>>,
        state: &State,
    ) -> Option<Router<Route>> {
        let default_body = server.as_ref().map_or(64 << 20, |s| s.max_body_size);
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut specs = Vec::new();
        let mut paths = Vec::new();
        let known: Vec<&str> = doc.upstreams.keys().map(String::as_str).collect();
        for (i, r) in doc.routes.iter().enumerate() {
            let base = r.path.clone();
            if !valid_id(&r.id) {
                self.error(
                    &base.clone().key("id"),
                    format!("route id `{}` must be letters, digits, `-`, `_` or `.`", r.id),
                );
            } else if let Some(first) = ids.insert(r.id.as_str(), i) {
                let at = doc.routes[first].span;
                self.error(
                    &base.clone().key("id"),
                    format!("route id `{}` is used twice (first at line {})", r.id, at.line),
                );
            }
            let targets = self.targets(r, &base, upstreams, doc, &known);
            let Some(path_match) = self.path_match(&base, &r.matcher) else { continue };
            let methods = self.methods(&base, &r.matcher.methods);
            let headers = self.headers(&base, &r.matcher.headers);
            let query = self.query(&base, &r.matcher.query);
            let rewrite = match &r.rewrite {
                None => None,
                Some(rw) => {
                    let (rewrite, field) = match rw {
                        RewriteConfig::StripPrefix(p) => (Rewrite::StripPrefix(p.clone()), "strip_prefix"),
                        RewriteConfig::Path(p) => (Rewrite::Template(p.clone()), "path"),
                    };
                    match rewrite.compile(&path_match) {
                        Ok(compiled) => Some(compiled),
                        Err(message) => {
                            self.error(&base.clone().key("rewrite").key(field), message);
                            continue;
                        }
                    }
                }
            };
            let (Some((upstream, split, variants, mirror)), Some(methods), Some(headers), Some(query)) =
                (targets, methods, headers, query)
            else {
                continue;
            };
            let timeout: Option<std::time::Duration> = r.timeout.map(Into::into);
            if timeout.is_some_and(|t| t.is_zero()) {
                self.error(&base.clone().key("timeout"), "must be longer than 0");
            }
            let retry = r.retry.as_ref().and_then(|retry| self.policy(&base.clone().key("retry"), retry.compile()));
            let ip_filter =
                r.ip_filter.as_ref().map(|c| self.policy(&base.clone().key("ip_filter"), IpFilter::compile(c)));
            let cors = r.cors.as_ref().map(|c| self.policy(&base.clone().key("cors"), Cors::compile(c, &methods)));
            let validate = r
                .validate
                .as_ref()
                .map(|c| self.policy(&base.clone().key("validate"), BodyValidator::compile(c, &self.base_dir)));
            let Some((auth, authorize)) = self.route_auth(&base, r, policies, doc, state) else { continue };
            let Some(rate_limit) = self.route_rate_limit(&base, r, rate_limits, doc) else { continue };
            let (Some(ip_filter), Some(cors), Some(validate)) = (
                ip_filter.map_or(Some(None), |f| f.map(Some)),
                cors.map_or(Some(None), |c| c.map(Some)),
                validate.map_or(Some(None), |v| v.map(Some)),
            ) else {
                continue;
            };
            let route = Route {
                id: Arc::from(r.id.as_str()),
                upstream,
                split,
                variants,
                mirror,
                rewrite,
                max_body_size: r.max_body_size.map_or(default_body, Into::into),
                timeout,
                retry,
                ip_filter,
                cors,
                validate,
                gateway_token: r.auth.as_ref().is_some_and(|a| a.gateway_token),
                auth,
                authorize,
                rate_limit,
                metrics: state.route_metrics.get_or_insert_with(&Arc::from(r.id.as_str()), Default::default),
            };
            specs.push(RouteSpec {
                hosts: r.matcher.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                path: path_match,
                methods,
                headers,
                query,
                value: route,
            });
            paths.push((base, which_path_field(&r.matcher)));
        }
        match Router::build(specs) {
            Ok(router) => Some(router),
            Err(errors) => {
                for e in errors {
                    let (base, path_field) = &paths[e.route];
                    let path = field_path(base, path_field, &e.field);
                    let message = match e.kind {
                        BuildErrorKind::Invalid => e.message.clone(),
                        BuildErrorKind::Duplicate { of } => format!(
                            "this route matches exactly the same requests as route `{}`, declared before it",
                            display_id(doc, &paths[of].0)
                        ),
                        BuildErrorKind::Unreachable { shadowed_by } => format!(
                            "this route can never be selected: every request it matches is taken by route `{}` \
                             (same path and conditions, ranked first, accepting all of its methods)",
                            display_id(doc, &paths[shadowed_by].0),
                        ),
                    };
                    self.error(&path, message);
                }
                None
            }
        }
    }

    fn path_match(&mut self, base: &Path, m: &MatchConfig) -> Option<PathMatch> {
        let given = [m.path.is_some(), m.prefix.is_some(), m.regex.is_some()].iter().filter(|&&g| g).count();
        if given > 1 {
            self.error(&base.clone().key("match"), "give at most one of `path`, `prefix` and `regex`");
            return None;
        }
        Some(if let Some(p) = &m.path {
            if p.contains('{') { PathMatch::Template(p.clone()) } else { PathMatch::Exact(p.clone()) }
        } else if let Some(p) = &m.prefix {
            PathMatch::Prefix(p.clone())
        } else if let Some(r) = &m.regex {
            PathMatch::Regex(r.clone())
        } else {
            PathMatch::Prefix("/".into())
        })
    }

    fn methods(&mut self, base: &Path, methods: &[String]) -> Option<Vec<Method>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, m) in methods.iter().enumerate() {
            let valid = !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if valid => out.push(method),
                _ => {
                    self.error(
                        &base.clone().key("match").key("methods").index(i),
                        format!("`{m}` is not an HTTP method (write methods in upper case, like `GET`)"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn value_match(&mut self, path: &Path, v: &ValueMatchConfig) -> Option<ValueMatch> {
        match (&v.exact, &v.regex, v.present) {
            (Some(exact), None, None) => Some(ValueMatch::Exact(exact.clone())),
            (None, Some(regex), None) => Some(ValueMatch::Regex(regex.clone())),
            (None, None, Some(true)) => Some(ValueMatch::Present),
            (None, None, Some(false)) => Some(ValueMatch::Absent),
            _ => {
                self.error(path, "give exactly one of `exact`, `regex` and `present`");
                None
            }
        }
    }

    fn headers(&mut self, base: &Path, rules: &[ValueMatchConfig]) -> Option<Vec<HeaderRule>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, h) in rules.iter().enumerate() {
            let path = base.clone().key("match").key("headers").index(i);
            let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes());
            let rule = self.value_match(&path, h);
            match (name, rule) {
                (Ok(name), Some(rule)) => out.push(HeaderRule { name, rule }),
                (Err(_), _) => {
                    self.error(&path.key("name"), format!("`{}` is not a valid header name", h.name));
                    ok = false;
                }
                (_, None) => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn query(&mut self, base: &Path, rules: &[ValueMatchConfig]) -> Option<Vec<QueryRule>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, q) in rules.iter().enumerate() {
            let path = base.clone().key("match").key("query").index(i);
            match self.value_match(&path, q) {
                Some(rule) => out.push(QueryRule { name: q.name.clone(), rule }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// The `Strict-Transport-Security` value.
fn hsts_value(h: &HstsConfig) -> HeaderValue {
    let mut value = format!("max-age={}", h.max_age.0.as_secs());
    if h.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if h.preload {
        value.push_str("; preload");
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("max-age=31536000"))
}

/// `base` followed by a policy's relative path (`allow[1]`, `headers.email`, `methods.POST.roles`).
fn join(base: &Path, relative: &str) -> Path {
    let mut path = base.clone();
    for part in relative.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        let key_end = rest.find('[').unwrap_or(rest.len());
        if key_end > 0 {
            path = path.key(&rest[..key_end]);
        }
        rest = &rest[key_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            let segment = &inner[..end];
            path = match segment.parse::<usize>() {
                Ok(i) => path.index(i),
                Err(_) => path.key(segment),
            };
            rest = &inner[end + 1..];
        }
    }
    path
}

/// Where a consumer issue points: `consumers[acme].keys[1]` names the consumer by id, the document holds a list.
fn consumer_issue_path(doc: &Document, relative: &str) -> Path {
    if let Some(rest) = relative.strip_prefix("consumers[")
        && let Some((id, tail)) = rest.split_once(']')
        && let Some(index) = doc.consumers.iter().position(|c| c.id == id)
    {
        return join(&Path::root().key("consumers").index(index), tail);
    }
    join(&Path::root(), relative)
}

/// The config field that holds a route's path matcher.
fn which_path_field(m: &MatchConfig) -> &'static str {
    if m.regex.is_some() {
        "regex"
    } else if m.prefix.is_some() {
        "prefix"
    } else if m.path.is_some() {
        "path"
    } else {
        ""
    }
}

/// Maps a router error's field (`path`, `hosts[1]`, `methods`, `headers[0]`) to the config path.
fn field_path(base: &Path, path_field: &str, field: &str) -> Path {
    let in_match = base.clone().key("match");
    if field.is_empty() {
        return base.clone();
    }
    if field == "path" {
        return if path_field.is_empty() { in_match } else { in_match.key(path_field) };
    }
    match field.split_once('[') {
        Some((list, rest)) => {
            let index = rest.trim_end_matches(']').parse::<usize>().unwrap_or(0);
            in_match.key(list).index(index)
        }
        None => in_match.key(field),
    }
}

fn display_id(doc: &Document, path: &Path) -> String {
    doc.routes.iter().find(|r| &r.path == path).map_or_else(|| "?".into(), |r| r.id.clone())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The host part of `host:port` (`[::1]:80` -> `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Resolves `host:port`; a name may resolve to several addresses, all of which become endpoints.
/// The host name and port of `address`, unless it is an IP address.
fn host_name(address: &str) -> Option<(&str, u16)> {
    if address.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = address.rsplit_once(':')?;
    Some((host, port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
}

/// The addresses of `address`: itself when it is `ip:port`; else, for a name the discovery loop refreshes (`dns`
/// given), what it last resolved to; else the system resolver's answer now (which then seeds the cache, so the
/// loop's first answer is compared with what the endpoints are).
fn resolve(address: &str, dns: Option<&crate::state::DnsCache>) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if let Some((host, port)) = host_name(address)
        && let Some(ips) = dns.and_then(|dns| dns.get(host))
    {
        return if ips.is_empty() {
            Err(format!("`{host}` resolves to no address"))
        } else {
            Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
        };
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not `host:port`"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("`{address}` is not `host:port`"));
    };
    if host.is_empty() {
        return Err(format!("`{address}` is not `host:port`"));
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.sort();
            addrs.dedup();
            if let Some(dns) = dns {
                dns.update(host, addrs.iter().map(SocketAddr::ip).collect(), tokio::time::Instant::now());
            }
            if addrs.is_empty() { Err(format!("`{host}` resolves to no address")) } else { Ok(addrs) }
        }
        Err(err) => Err(format!("cannot resolve `{host}`: {err}")),
    }
}
