//! Prometheus metrics: the catalog of every metric Turnpike exposes, the per-route and per-upstream recorders the
//! request path writes to, and the exposition (Prometheus text 0.0.4 and OpenMetrics 1.0) the admin listener serves.
//!
//! **Why our own recorders.** The request path adds to a handful of atomics it already holds (the route's
//! [`RouteMetrics`], resolved when the snapshot is compiled): no label hashing, no map lookup, no lock per request.
//! Label values are bounded by construction: route and upstream ids, endpoints from the config or discovery, a closed
//! set of methods, status classes, outcomes and error types — never a raw path, host or user id, so a scan of
//! random URLs cannot add a series.
//!
//! **Names that cannot drift.** Every metric is a [`MetricDef`] constant listed in [`CATALOG`]; the exposition
//! writes its `HELP` and `TYPE` lines from the same constant, and `docs/observability.md` is generated from the
//! catalog (a test keeps it in step).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::Method;

/// What kind of series a metric has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total` samples).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
    /// Always 1; the labels carry the information (`_info` samples).
    Info,
}

impl Kind {
    /// The name used in the docs and in OpenMetrics `TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Info => "info",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The family name (without `_total` / `_info`, which samples of counters and info metrics add).
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its labels, in the order they are written.
    pub labels: &'static [&'static str],
    /// What it means (the `HELP` line).
    pub help: &'static str,
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $($(#[$doc])* pub const $id: MetricDef =
            MetricDef { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help };)*
        /// Every metric, in the order the exposition and the docs list them.
        pub const CATALOG: &[MetricDef] = &[$($id),*];
    };
}

metrics! {
    /// Build information.
    BUILD = "turnpike_build", Info, ["version"], "Turnpike's version.";
    /// Process start time.
    START_TIME = "turnpike_start_time_seconds", Gauge, [], "When the process started, in seconds since the Unix epoch.";
    /// The configuration serving now.
    CONFIG = "turnpike_config", Info, ["hash", "generation"],
        "The configuration serving now: a hash of it as loaded (after `${env:...}` substitution; 16 hex digits) \
         and its generation.";
    /// Reload attempts.
    CONFIG_RELOADS = "turnpike_config_reloads", Counter, ["result"],
        "Configuration reloads by result (success, failure); a failed reload keeps the previous configuration.";
    /// Last successful load.
    CONFIG_LAST_SUCCESS = "turnpike_config_last_success_timestamp_seconds", Gauge, [],
        "When the configuration serving now was loaded, in seconds since the Unix epoch.";
    /// Requests answered.
    HTTP_REQUESTS = "turnpike_http_requests", Counter, ["route", "method", "status_class"],
        "Requests answered, by route (empty when none matched), method (_OTHER for non-standard ones) and status \
         class (2xx...).";
    /// Request duration.
    HTTP_REQUEST_DURATION = "turnpike_http_request_duration_seconds", Histogram, ["route"],
        "Time from a request's arrival to its response's last byte.";
    /// Request body sizes.
    HTTP_REQUEST_SIZE = "turnpike_http_request_body_size_bytes", Histogram, ["route"],
        "Request body bytes received.";
    /// Response body sizes.
    HTTP_RESPONSE_SIZE = "turnpike_http_response_body_size_bytes", Histogram, ["route"],
        "Response body bytes sent.";
    /// Requests in flight.
    HTTP_IN_FLIGHT = "turnpike_http_requests_in_flight", Gauge, [],
        "Requests received whose response has not been completely sent yet.";
    /// Errors by type.
    HTTP_ERRORS = "turnpike_http_errors", Counter, ["route", "error_type"],
        "Requests the gateway answered with an error, by route and error type (the problem type slug: \
         upstream-timeout, rate-limited, ...): client, gateway and upstream failures told apart.";
    /// Authentication and authorization refusals.
    AUTH_FAILURES = "turnpike_auth_failures", Counter, ["route", "reason"],
        "Requests refused by authentication or authorization, by reason (missing, invalid, forbidden, \
         unavailable).";
    /// Rate-limit decisions.
    RATE_LIMIT_DECISIONS = "turnpike_rate_limit_decisions", Counter, ["route", "outcome"],
        "Rate-limit decisions on limited routes, by outcome (allowed, delayed, refused, shadow_refused, \
         store_error_allowed, store_error_refused).";
    /// Downstream connections.
    DOWNSTREAM_CONNECTIONS = "turnpike_downstream_connections_open", Gauge, [],
        "Client connections open now.";
    /// Downstream connections accepted.
    DOWNSTREAM_ACCEPTED = "turnpike_downstream_connections_accepted", Counter, ["listener"],
        "Client connections accepted by a listener.";
    /// TLS handshakes.
    TLS_HANDSHAKES = "turnpike_tls_handshakes", Counter, ["listener"],
        "TLS handshakes completed on a listener.";
    /// TLS handshake failures.
    TLS_HANDSHAKE_ERRORS = "turnpike_tls_handshake_errors", Counter, ["listener", "reason"],
        "TLS handshakes that failed on a listener, by reason: error (protocol, certificate, no common cipher or \
         version) or timeout (not completed within the listener's header timeout).";
    /// Upstream attempts.
    UPSTREAM_ATTEMPTS = "turnpike_upstream_attempts", Counter, ["upstream"],
        "Attempts sent to an upstream (a retried request counts once per attempt).";
    /// Upstream retries.
    UPSTREAM_RETRIES = "turnpike_upstream_retries", Counter, ["upstream"], "Attempts that were retries.";
    /// Upstream response time.
    UPSTREAM_DURATION = "turnpike_upstream_response_duration_seconds", Histogram, ["upstream"],
        "Time from sending an attempt upstream to its response head, or to its failure.";
    /// Upstream connections open.
    UPSTREAM_CONNECTIONS = "turnpike_upstream_connections_open", Gauge, ["upstream", "endpoint"],
        "Connections to an endpoint open now (idle in the pool or carrying a request).";
    /// Upstream connections opened.
    UPSTREAM_CONNECTS = "turnpike_upstream_connections_opened", Counter, ["upstream", "endpoint"],
        "Connections opened to an endpoint.";
    /// Requests on reused connections.
    UPSTREAM_REUSES = "turnpike_upstream_connection_reuses", Counter, ["upstream", "endpoint"],
        "Requests sent on a pooled connection rather than a new one (reuse ratio: reuses / (reuses + opened)).";
    /// Endpoint health.
    UPSTREAM_HEALTHY = "turnpike_upstream_endpoint_healthy", Gauge, ["upstream", "endpoint"],
        "1 while an endpoint is considered healthy (active and passive checks), else 0.";
    /// Circuit-breaker state.
    UPSTREAM_BREAKER = "turnpike_upstream_circuit_breaker_state", Gauge, ["upstream", "endpoint", "state"],
        "1 for the state an endpoint's circuit breaker is in (closed, open, half_open), 0 for the others.";
    /// Healthy endpoints per upstream.
    UPSTREAM_HEALTHY_ENDPOINTS = "turnpike_upstream_healthy_endpoints", Gauge, ["upstream"],
        "Endpoints of an upstream that are healthy now.";
    /// Access-log records dropped.
    ACCESS_LOG_DROPPED = "turnpike_access_log_dropped", Counter, [],
        "Access-log records dropped because the writer could not keep up (logging never blocks a request).";
    /// Spans exported.
    TRACE_SPANS_EXPORTED = "turnpike_trace_spans_exported", Counter, [], "Spans the OTLP collector accepted.";
    /// Spans dropped.
    TRACE_SPANS_DROPPED = "turnpike_trace_spans_dropped", Counter, [],
        "Spans dropped: the export queue was full or their batch could not be exported (requests never wait).";
    /// Export failures.
    TRACE_EXPORT_FAILURES = "turnpike_trace_export_failures", Counter, [],
        "Exports to the OTLP collector that failed (connection refused, timeout, error answer).";
}

/// Methods with their own label value; any other is `_OTHER` (OpenTelemetry's convention).
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Rate-limit outcomes, as the access log names them.
pub const RATE_LIMIT_OUTCOMES: [&str; 6] =
    ["allowed", "delayed", "refused", "shadow_refused", "store_error_allowed", "store_error_refused"];

/// Why authentication or authorization refused a request.
pub const AUTH_REASONS: [&str; 4] = ["missing", "invalid", "forbidden", "unavailable"];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => 9,
    }
}

/// One more than the most bucket bounds a [`Histogram`] has (a power of two: the bucket search halves it).
pub const MAX_BOUNDS: usize = 16;

/// Request and upstream durations (seconds): 1 ms to 30 s.
pub const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Body sizes (bytes): 64 B to 16 MiB.
pub const SIZE_BUCKETS: [f64; 10] =
    [64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0];

/// A trace id attached to a histogram observation (an OpenMetrics exemplar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The W3C trace id.
    pub trace_id: [u8; 16],
    /// The observed value.
    pub value: f64,
    /// When it was observed, seconds since the Unix epoch.
    pub timestamp: f64,
}

/// A histogram kind's buckets: bounds in the metric's unit, and the same as integers of 1/`scale` of it for the
/// observation path. One static per kind, shared by every histogram of that kind: a request's observations read the
/// same two cache lines of limits, not two of their own each.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    /// Upper bounds in integer units; slots past the last bound (at least one) hold `u64::MAX`, which no
    /// observation is above.
    limits: [u64; MAX_BOUNDS],
    scale: f64,
}

impl Buckets {
    /// Buckets over `bounds`, observed in integers of 1/`scale` of their unit.
    const fn new<const N: usize>(bounds: &'static [f64; N], scale: f64) -> Self {
        // The last limit stays `u64::MAX`: the search then never has to look past the array.
        const { assert!(N < MAX_BOUNDS, "a histogram has fewer than MAX_BOUNDS bucket bounds") };
        let mut limits = [u64::MAX; MAX_BOUNDS];
        let mut i = 0;
        while i < N {
            // Rounded (bounds are positive): 0.001 s is 1000 µs, not 999.
            limits[i] = (bounds[i] * scale + 0.5) as u64;
            i += 1;
        }
        Self { bounds, limits, scale }
    }

    /// The bucket of an observation: how many bounds lie below it. A binary search over the padded limits without
    /// branches (each step a conditional add): four steps for every histogram, nothing to mispredict when
    /// durations move around a bound.
    #[inline]
    fn bucket(&self, units: u64) -> usize {
        let mut base = 0;
        for half in [8, 4, 2, 1] {
            base += usize::from(self.limits[base + half - 1] < units) * half;
        }
        base
    }
}

/// Durations, in seconds, recorded in µs.
static SECONDS: Buckets = Buckets::new(&DURATION_BUCKETS, 1e6);
/// Sizes, in bytes.
static BYTES: Buckets = Buckets::new(&SIZE_BUCKETS, 1.0);

/// What an observation adds to: the sum, then the count of each bucket (not cumulative; the last used is +Inf).
/// Aligned to a cache line, the sum first: an observation in one of the first seven buckets (most requests: under
/// a millisecond, bodies under 64 bytes) touches one line.
#[derive(Debug)]
#[repr(align(64))]
struct Cells {
    sum: AtomicU64,
    counts: [AtomicU64; MAX_BOUNDS],
}

/// A histogram with fixed buckets; observations are integers in `scale` units per bucket unit (µs for seconds,
/// bytes for bytes), so the sum stays exact in an atomic.
#[derive(Debug)]
pub struct Histogram {
    cells: Cells,
    buckets: &'static Buckets,
    /// The last exemplar of each bucket. `try_lock` only: an observation never waits for a scrape.
    exemplars: Box<[Mutex<Option<Exemplar>>]>,
}

impl Histogram {
    fn new(buckets: &'static Buckets) -> Self {
        Self {
            cells: Cells { sum: AtomicU64::new(0), counts: std::array::from_fn(|_| AtomicU64::new(0)) },
            buckets,
            exemplars: (0..=buckets.bounds.len()).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A histogram of durations in seconds, recorded in µs.
    pub fn seconds() -> Self {
        Self::new(&SECONDS)
    }

    /// A histogram of sizes in bytes.
    pub fn bytes() -> Self {
        Self::new(&BYTES)
    }

    /// Per bucket (not cumulative), the last one +Inf.
    fn counts(&self) -> &[AtomicU64] {
        &self.cells.counts[..=self.buckets.bounds.len()]
    }

    /// Records one observation of `units` (µs or bytes), with the trace it belongs to if it was sampled. Inlined
    /// (a request records four): the call's prologue and epilogue cost as much as the bucket search.
    #[inline]
    pub fn observe(&self, units: u64, trace_id: Option<[u8; 16]>) {
        let bucket = self.buckets.bucket(units);
        self.cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.cells.sum.fetch_add(units, Ordering::Relaxed);
        if let Some(trace_id) = trace_id {
            self.exemplar(bucket, units, trace_id);
        }
    }

    /// Keeps a sampled trace's observation as its bucket's exemplar (skipped while a scrape reads it).
    #[cold]
    #[inline(never)]
    fn exemplar(&self, bucket: usize, units: u64, trace_id: [u8; 16]) {
        if let Ok(mut slot) = self.exemplars[bucket].try_lock() {
            let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            *slot = Some(Exemplar { trace_id, value: units as f64 / self.buckets.scale, timestamp });
        }
    }

    /// Records a duration.
    #[inline]
    pub fn observe_duration(&self, duration: Duration, trace_id: Option<[u8; 16]>) {
        self.observe(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX), trace_id);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts().iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// What one route records; kept in state by route id, so a reload that keeps the route keeps its counts.
#[derive(Debug)]
pub struct RouteMetrics {
    requests: [AtomicU64; METHODS.len() * STATUS_CLASSES.len()],
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
    rate_limit: [AtomicU64; RATE_LIMIT_OUTCOMES.len()],
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    /// Errors by type: rare, so a small list behind a lock is enough.
    errors: Mutex<Vec<(&'static str, u64)>>,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: Histogram::seconds(),
            request_size: Histogram::bytes(),
            response_size: Histogram::bytes(),
            rate_limit: std::array::from_fn(|_| AtomicU64::new(0)),
            auth_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: Mutex::new(Vec::new()),
        }
    }
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The response status.
    pub status: u16,
    /// Arrival to last byte.
    pub duration: Duration,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// The gateway's error type, if it answered with an error.
    pub error: Option<&'static str>,
    /// What rate limiting decided, on limited routes.
    pub rate_limit: Option<&'static str>,
    /// Why authentication or authorization refused it (one of [`AUTH_REASONS`]).
    pub auth_failure: Option<&'static str>,
    /// The request's trace, when it was sampled (becomes an exemplar).
    pub trace_id: Option<[u8; 16]>,
}

impl RouteMetrics {
    /// Records a finished request.
    pub fn record(&self, sample: &RequestSample<'_>) {
        let class = usize::from(sample.status / 100).clamp(1, 5) - 1;
        self.requests[method_index(sample.method) * STATUS_CLASSES.len() + class].fetch_add(1, Ordering::Relaxed);
        self.duration.observe_duration(sample.duration, sample.trace_id);
        self.request_size.observe(sample.bytes_in, None);
        self.response_size.observe(sample.bytes_out, None);
        if let Some(outcome) = sample.rate_limit
            && let Some(i) = RATE_LIMIT_OUTCOMES.iter().position(|o| *o == outcome)
        {
            self.rate_limit[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = sample.auth_failure
            && let Some(i) = AUTH_REASONS.iter().position(|r| *r == reason)
        {
            self.auth_failures[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(error) = sample.error {
            let mut errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match errors.iter_mut().find(|(e, _)| *e == error) {
                Some((_, n)) => *n += 1,
                None => errors.push((error, 1)),
            }
        }
    }

    /// Requests recorded so far (all methods and statuses).
    pub fn requests(&self) -> u64 {
        self.requests.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// What one upstream records (attempts, retries, response time); per-endpoint gauges are read from the endpoints'
/// own state when scraped.
#[derive(Debug)]
pub struct UpstreamMetrics {
    attempts: AtomicU64,
    retries: AtomicU64,
    duration: Histogram,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        Self { attempts: AtomicU64::new(0), retries: AtomicU64::new(0), duration: Histogram::seconds() }
    }
}

impl UpstreamMetrics {
    /// Records one attempt (`retry`: not the request's first) and how long it took to its response head or its
    /// failure.
    pub fn attempt(&self, retry: bool, elapsed: Duration, trace_id: Option<[u8; 16]>) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe_duration(elapsed, trace_id);
    }
}

/// What one listener records; kept in state by listener name.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_errors: AtomicU64,
    /// TLS handshakes that timed out.
    pub tls_timeouts: AtomicU64,
}

/// Writes the series of many listeners, family by family (TLS ones only for TLS listeners).
pub fn write_listeners(out: &mut Exposition, listeners: &[(&str, bool, &ListenerMetrics)]) {
    for (name, _, m) in listeners {
        out.counter(&DOWNSTREAM_ACCEPTED, &[name], m.accepted.load(Ordering::Relaxed));
    }
    for (name, _, m) in listeners.iter().filter(|l| l.1) {
        out.counter(&TLS_HANDSHAKES, &[name], m.tls_handshakes.load(Ordering::Relaxed));
    }
    for (name, _, m) in listeners.iter().filter(|l| l.1) {
        out.counter(&TLS_HANDSHAKE_ERRORS, &[name, "error"], m.tls_errors.load(Ordering::Relaxed));
        out.counter(&TLS_HANDSHAKE_ERRORS, &[name, "timeout"], m.tls_timeouts.load(Ordering::Relaxed));
    }
}

/// Which exposition format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`), with exemplars.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it is named, else the classic text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Writes one scrape: families in catalog order, each introduced once by its `HELP` and `TYPE` lines.
#[derive(Debug)]
pub struct Exposition {
    out: String,
    format: Format,
    current: Option<&'static str>,
}

impl Exposition {
    /// An empty scrape in `format`.
    pub fn new(format: Format) -> Self {
        Self { out: String::with_capacity(16 * 1024), format, current: None }
    }

    fn family(&mut self, def: &MetricDef) {
        if self.current == Some(def.name) {
            return;
        }
        self.current = Some(def.name);
        let (name, kind) = match (self.format, def.kind) {
            (Format::OpenMetrics, kind) => (def.name.to_string(), kind.as_str()),
            (Format::Text, Kind::Counter) => (format!("{}_total", def.name), "counter"),
            (Format::Text, Kind::Info) => (format!("{}_info", def.name), "gauge"),
            (Format::Text, kind) => (def.name.to_string(), kind.as_str()),
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(def.help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample_name(&mut self, def: &MetricDef, suffix: &str) {
        self.out.push_str(def.name);
        self.out.push_str(suffix);
    }

    fn labels(&mut self, def: &MetricDef, values: &[&str], extra: Option<(&str, &str)>) {
        debug_assert_eq!(def.labels.len(), values.len(), "{}: label values", def.name);
        if values.is_empty() && extra.is_none() {
            return;
        }
        self.out.push('{');
        let pairs = def.labels.iter().copied().zip(values.iter().copied()).chain(extra);
        for (i, (name, value)) in pairs.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// A counter sample.
    pub fn counter(&mut self, def: &MetricDef, labels: &[&str], value: u64) {
        debug_assert_eq!(def.kind, Kind::Counter);
        self.family(def);
        self.sample_name(def, "_total");
        self.labels(def, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A gauge sample.
    pub fn gauge(&mut self, def: &MetricDef, labels: &[&str], value: f64) {
        debug_assert_eq!(def.kind, Kind::Gauge);
        self.family(def);
        self.sample_name(def, "");
        self.labels(def, labels, None);
        self.out.push(' ');
        push_float(&mut self.out, value);
        self.out.push('\n');
    }

    /// An info sample (value 1).
    pub fn info(&mut self, def: &MetricDef, labels: &[&str]) {
        debug_assert_eq!(def.kind, Kind::Info);
        self.family(def);
        self.sample_name(def, "_info");
        self.labels(def, labels, None);
        self.out.push_str(" 1\n");
    }

    /// A histogram's buckets (cumulative), sum and count; exemplars in OpenMetrics.
    pub fn histogram(&mut self, def: &MetricDef, labels: &[&str], h: &Histogram) {
        debug_assert_eq!(def.kind, Kind::Histogram);
        self.family(def);
        let mut cumulative = 0;
        let mut le = String::new();
        for (i, count) in h.counts().iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            le.clear();
            match h.buckets.bounds.get(i) {
                Some(bound) => push_float(&mut le, *bound),
                None => le.push_str("+Inf"),
            }
            self.sample_name(def, "_bucket");
            self.labels(def, labels, Some(("le", &le)));
            let _ = write!(self.out, " {cumulative}");
            if self.format == Format::OpenMetrics
                && let Ok(slot) = h.exemplars[i].lock()
                && let Some(e) = *slot
            {
                self.out.push_str(" # {trace_id=\"");
                for b in e.trace_id {
                    let _ = write!(self.out, "{b:02x}");
                }
                self.out.push_str("\"} ");
                push_float(&mut self.out, e.value);
                self.out.push(' ');
                push_float(&mut self.out, e.timestamp);
            }
            self.out.push('\n');
        }
        self.sample_name(def, "_sum");
        self.labels(def, labels, None);
        self.out.push(' ');
        push_float(&mut self.out, h.cells.sum.load(Ordering::Relaxed) as f64 / h.buckets.scale);
        self.out.push('\n');
        self.sample_name(def, "_count");
        self.labels(def, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    /// The finished scrape (`# EOF` in OpenMetrics).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// Writes the series of many routes family by family (Prometheus wants a family's samples together).
pub fn write_routes(out: &mut Exposition, routes: &[(&str, &RouteMetrics)]) {
    for (route, m) in routes {
        for (mi, method) in METHODS.iter().enumerate() {
            for (ci, class) in STATUS_CLASSES.iter().enumerate() {
                let n = m.requests[mi * STATUS_CLASSES.len() + ci].load(Ordering::Relaxed);
                if n > 0 {
                    out.counter(&HTTP_REQUESTS, &[route, method, class], n);
                }
            }
        }
    }
    for (route, m) in routes {
        out.histogram(&HTTP_REQUEST_DURATION, &[route], &m.duration);
    }
    for (route, m) in routes {
        out.histogram(&HTTP_REQUEST_SIZE, &[route], &m.request_size);
    }
    for (route, m) in routes {
        out.histogram(&HTTP_RESPONSE_SIZE, &[route], &m.response_size);
    }
    for (route, m) in routes {
        let errors = m.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for (error, n) in errors {
            out.counter(&HTTP_ERRORS, &[route, error], n);
        }
    }
    for (route, m) in routes {
        for (i, reason) in AUTH_REASONS.iter().enumerate() {
            let n = m.auth_failures[i].load(Ordering::Relaxed);
            if n > 0 {
                out.counter(&AUTH_FAILURES, &[route, reason], n);
            }
        }
    }
    for (route, m) in routes {
        for (i, outcome) in RATE_LIMIT_OUTCOMES.iter().enumerate() {
            let n = m.rate_limit[i].load(Ordering::Relaxed);
            if n > 0 {
                out.counter(&RATE_LIMIT_DECISIONS, &[route, outcome], n);
            }
        }
    }
}

/// Writes the recorded series of many upstreams, family by family.
pub fn write_upstreams(out: &mut Exposition, upstreams: &[(&str, &UpstreamMetrics)]) {
    for (upstream, m) in upstreams {
        out.counter(&UPSTREAM_ATTEMPTS, &[upstream], m.attempts.load(Ordering::Relaxed));
    }
    for (upstream, m) in upstreams {
        out.counter(&UPSTREAM_RETRIES, &[upstream], m.retries.load(Ordering::Relaxed));
    }
    for (upstream, m) in upstreams {
        out.histogram(&UPSTREAM_DURATION, &[upstream], &m.duration);
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as both formats read it: integers without a fraction, `+Inf`/`-Inf`/`NaN` spelled out.
fn push_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The catalog as a Markdown table (the body of `docs/observability.md`'s metric list).
pub fn catalog_markdown() -> String {
    let mut out = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
    for def in CATALOG {
        let name = match def.kind {
            Kind::Counter => format!("{}_total", def.name),
            Kind::Info => format!("{}_info", def.name),
            _ => def.name.to_string(),
        };
        let labels = def.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "| `{name}` | {} | {labels} | {} |", def.kind.as_str(), def.help);
    }
    out
}

#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
mod tests;
