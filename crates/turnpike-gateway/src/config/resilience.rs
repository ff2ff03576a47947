//! Upstream resilience settings: active health checks, outlier detection, retries and their budget, the circuit
//! breaker, the concurrency limit and consistent hashing — the document types and their compilation into
//! `turnpike-upstream`'s settings. Issue paths are relative to the setting (`interval`, `fallback.status`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::{ByteSize, Duration};
use turnpike_policy::ConfigIssue;
use turnpike_upstream::{
    ActiveCheck, BreakerSettings, BudgetSettings, ErrorRate, Fallback, HashOn, LimitSettings, OutlierSettings,
    ProbeKind, RetryOn, RetryPolicy,
};

fn secs(s: u64) -> Duration {
    Duration(std::time::Duration::from_secs(s))
}
fn millis(ms: u64) -> Duration {
    Duration(std::time::Duration::from_millis(ms))
}

/// A status code (`503`) or an inclusive range (`"500-599"`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum StatusRange {
    /// One status.
    One(u16),
    /// `"lo-hi"` or `"503"`.
    Text(String),
}

impl StatusRange {
    fn parse(&self) -> Option<(u16, u16)> {
        let (lo, hi) = match self {
            StatusRange::One(s) => (*s, *s),
            StatusRange::Text(t) => match t.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let s = t.trim().parse().ok()?;
                    (s, s)
                }
            },
        };
        ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
    }
}

/// Compiles status ranges; issues at `field[i]`.
pub(crate) fn status_ranges(field: &str, ranges: &[StatusRange], issues: &mut Vec<ConfigIssue>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        match r.parse() {
            Some(range) => out.push(range),
            None => issues.push(ConfigIssue::new(
                format!("{field}[{i}]"),
                "a status is a number from 100 to 599, or a range like \"500-599\"",
            )),
        }
    }
    out
}

fn done<T>(value: T, issues: Vec<ConfigIssue>) -> Result<T, Vec<ConfigIssue>> {
    if issues.is_empty() { Ok(value) } else { Err(issues) }
}

fn positive(field: &str, d: Duration, issues: &mut Vec<ConfigIssue>) {
    if d.0.is_zero() {
        issues.push(ConfigIssue::new(field, "must be longer than 0"));
    }
}

/// How a probe checks an endpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTypeConfig {
    /// An HTTP request (`path` needed).
    #[default]
    Http,
    /// A TCP connect (and TLS handshake, for a TLS upstream).
    Tcp,
}

/// Active health checks: every endpoint probed on an interval; an endpoint that fails `unhealthy_threshold`
/// probes in a row gets no traffic until it passes `healthy_threshold` in a row.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `http` (the default) or `tcp`.
    #[serde(default, rename = "type")]
    pub kind: ProbeTypeConfig,
    /// The request path (and query) of an HTTP probe.
    #[serde(default)]
    pub path: Option<String>,
    /// The method of an HTTP probe.
    #[serde(default = "default_probe_method")]
    pub method: String,
    /// The `Host` header of an HTTP probe. Default: the endpoint's `ip:port`.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that count as healthy.
    #[serde(default = "default_expected")]
    pub expected_statuses: Vec<StatusRange>,
    /// Text the response body must contain (the first 64 KiB are searched).
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Time between probes.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// A probe that takes longer fails.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
    /// Good probes in a row that bring an endpoint back.
    #[serde(default = "default_two")]
    pub healthy_threshold: u32,
    /// Failed probes in a row that take an endpoint out.
    #[serde(default = "default_three")]
    pub unhealthy_threshold: u32,
    /// Up to this much random time added to each interval.
    #[serde(default = "default_jitter")]
    pub jitter: Duration,
}

fn default_probe_method() -> String {
    "GET".into()
}
fn default_expected() -> Vec<StatusRange> {
    vec![StatusRange::Text("200-399".into())]
}
fn default_interval() -> Duration {
    secs(5)
}
fn default_probe_timeout() -> Duration {
    secs(2)
}
fn default_two() -> u32 {
    2
}
fn default_three() -> u32 {
    3
}
fn default_jitter() -> Duration {
    millis(500)
}

impl HealthCheckConfig {
    /// Compiles the check.
    pub fn compile(&self) -> Result<Arc<ActiveCheck>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        positive("interval", self.interval, &mut issues);
        positive("timeout", self.timeout, &mut issues);
        for (field, n) in
            [("healthy_threshold", self.healthy_threshold), ("unhealthy_threshold", self.unhealthy_threshold)]
        {
            if n == 0 {
                issues.push(ConfigIssue::new(field, "must be at least 1"));
            }
        }
        let kind = match self.kind {
            ProbeTypeConfig::Tcp => {
                if self.path.is_some() || self.body_contains.is_some() {
                    issues.push(ConfigIssue::new("type", "`path` and `body_contains` need `type: http`"));
                }
                ProbeKind::Tcp
            }
            ProbeTypeConfig::Http => {
                let path = match &self.path {
                    Some(p) if p.starts_with('/') && p.parse::<http::uri::PathAndQuery>().is_ok() => p.clone(),
                    Some(_) => {
                        issues.push(ConfigIssue::new("path", "a path starting with `/`"));
                        String::new()
                    }
                    None => {
                        issues.push(ConfigIssue::new("path", "an HTTP health check needs a `path`"));
                        String::new()
                    }
                };
                let method = Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
                    issues.push(ConfigIssue::new("method", "not an HTTP method"));
                    Method::GET
                });
                let host = self.host.as_ref().and_then(|h| match HeaderValue::from_str(h) {
                    Ok(v) if !h.is_empty() => Some(v),
                    _ => {
                        issues.push(ConfigIssue::new("host", "not a valid host"));
                        None
                    }
                });
                let expected = status_ranges("expected_statuses", &self.expected_statuses, &mut issues);
                if self.expected_statuses.is_empty() {
                    issues.push(ConfigIssue::new("expected_statuses", "at least one status"));
                }
                if self.body_contains.as_deref() == Some("") {
                    issues.push(ConfigIssue::new("body_contains", "must not be empty"));
                }
                ProbeKind::Http { method, path, host, expected, body_contains: self.body_contains.clone() }
            }
        };
        let check = ActiveCheck {
            kind,
            interval: self.interval.into(),
            timeout: self.timeout.into(),
            healthy_threshold: self.healthy_threshold,
            unhealthy_threshold: self.unhealthy_threshold,
            jitter: self.jitter.into(),
        };
        done(Arc::new(check), issues)
    }
}

/// Passive outlier detection: endpoints that fail live requests are ejected from balancing for a while.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// On (the default) or off.
    pub enabled: bool,
    /// Eject after this many connect failures in a row (0: not for this reason).
    pub consecutive_connect_failures: u32,
    /// Eject after this many failures in a row: failure statuses (see the upstream's `failure_statuses`),
    /// broken connections, timeouts (0: not for this reason).
    pub consecutive_failures: u32,
    /// Eject when the share of failures over a window reaches a percentage.
    pub error_rate: Option<ErrorRateConfig>,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// The longest ejection.
    pub max_ejection_time: Duration,
    /// At most this share of the endpoints is ejected at once (at least one is allowed, never all of them).
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        let d = OutlierSettings::default();
        Self {
            enabled: true,
            consecutive_connect_failures: d.consecutive_connect_failures,
            consecutive_failures: d.consecutive_failures,
            error_rate: None,
            base_ejection_time: Duration(d.base_ejection),
            max_ejection_time: Duration(d.max_ejection),
            max_ejected_percent: d.max_ejected_percent,
        }
    }
}

/// An error-rate threshold.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateConfig {
    /// Failures in percent of requests.
    pub percent: u32,
    /// Fewer requests than this in the window decide nothing.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// The rolling window.
    #[serde(default = "default_window")]
    pub window: Duration,
}

fn default_min_requests() -> u32 {
    20
}
fn default_window() -> Duration {
    secs(10)
}

impl OutlierConfig {
    /// Compiles the settings (`None` when off).
    pub fn compile(&self) -> Result<Option<OutlierSettings>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !self.enabled {
            return Ok(None);
        }
        positive("base_ejection_time", self.base_ejection_time, &mut issues);
        if self.max_ejection_time.0 < self.base_ejection_time.0 {
            issues.push(ConfigIssue::new("max_ejection_time", "must be at least `base_ejection_time`"));
        }
        if self.max_ejected_percent > 100 {
            issues.push(ConfigIssue::new("max_ejected_percent", "a percentage, 0 to 100"));
        }
        let error_rate = self.error_rate.as_ref().map(|r| {
            if !(1..=100).contains(&r.percent) {
                issues.push(ConfigIssue::new("error_rate.percent", "a percentage, 1 to 100"));
            }
            positive("error_rate.window", r.window, &mut issues);
            ErrorRate { percent: r.percent, min_requests: r.min_requests, window: r.window.into() }
        });
        let settings = OutlierSettings {
            consecutive_connect_failures: self.consecutive_connect_failures,
            consecutive_failures: self.consecutive_failures,
            error_rate,
            base_ejection: self.base_ejection_time.into(),
            max_ejection: self.max_ejection_time.into(),
            max_ejected_percent: self.max_ejected_percent,
        };
        done(Some(settings), issues)
    }
}

/// What a failed attempt may be retried on.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryOnConfig {
    /// No connection could be opened (the request never left: retried for every method).
    ConnectFailure,
    /// The connection broke before the response head.
    Reset,
    /// The attempt's `per_try_timeout` expired.
    Timeout,
}

/// Retries: a failed attempt is sent again, to another endpoint when there is one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1: no retries).
    pub attempts: u32,
    /// Deadline of each attempt. The route's `timeout` (or the upstream's `request_timeout`) remains the deadline
    /// of all attempts together. Absent: only that overall deadline.
    pub per_try_timeout: Option<Duration>,
    /// Failures that are retried.
    pub on: Vec<RetryOnConfig>,
    /// Response statuses that are retried (the response is discarded; the last attempt's is returned).
    pub statuses: Vec<u16>,
    /// Retry requests whose method is not idempotent (POST, PATCH) after they reached the upstream. Off by
    /// default: the upstream may have acted on them.
    pub non_idempotent: bool,
    /// Request bodies up to this size are held so they can be sent again; a larger or chunked body is sent once,
    /// and its request is retried only on connect failures.
    pub max_buffer: ByteSize,
    /// The first retry waits a random time up to this; each next one up to twice as long.
    pub backoff_base: Duration,
    /// The longest wait before a retry.
    pub backoff_max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            on: vec![RetryOnConfig::ConnectFailure, RetryOnConfig::Reset, RetryOnConfig::Timeout],
            statuses: vec![502, 503, 504],
            non_idempotent: false,
            max_buffer: ByteSize(64 * 1024),
            backoff_base: millis(25),
            backoff_max: millis(250),
        }
    }
}

impl RetryConfig {
    /// Compiles the policy.
    pub fn compile(&self) -> Result<Arc<RetryPolicy>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !(1..=10).contains(&self.attempts) {
            issues.push(ConfigIssue::new("attempts", "1 to 10 attempts"));
        }
        if let Some(d) = self.per_try_timeout {
            positive("per_try_timeout", d, &mut issues);
        }
        for (i, s) in self.statuses.iter().enumerate() {
            if !(100..=599).contains(s) {
                issues.push(ConfigIssue::new(format!("statuses[{i}]"), "a status from 100 to 599"));
            }
        }
        if self.backoff_max.0 < self.backoff_base.0 {
            issues.push(ConfigIssue::new("backoff_max", "must be at least `backoff_base`"));
        }
        let policy = RetryPolicy {
            attempts: self.attempts,
            per_try_timeout: self.per_try_timeout.map(Into::into),
            on: RetryOn {
                connect_failure: self.on.contains(&RetryOnConfig::ConnectFailure),
                reset: self.on.contains(&RetryOnConfig::Reset),
                timeout: self.on.contains(&RetryOnConfig::Timeout),
                statuses: self.statuses.clone(),
            },
            non_idempotent: self.non_idempotent,
            max_buffer: self.max_buffer.into(),
            backoff_base: self.backoff_base.into(),
            backoff_max: self.backoff_max.into(),
        };
        done(Arc::new(policy), issues)
    }
}

/// The retry budget of an upstream: retries stay below `percent` of its requests plus `min_per_second`, so a
/// failing service is not hit with a multiple of its normal load.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries, in percent of requests.
    pub percent: u32,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
    /// The window requests and retries are counted over.
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        let d = BudgetSettings::default();
        Self { percent: d.percent, min_per_second: d.min_per_second, window: Duration(d.window) }
    }
}

impl RetryBudgetConfig {
    /// Compiles the settings.
    pub fn compile(&self) -> Result<BudgetSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.percent > 100 {
            issues.push(ConfigIssue::new("percent", "a percentage, 0 to 100"));
        }
        if self.window.0 < std::time::Duration::from_secs(1) {
            issues.push(ConfigIssue::new("window", "at least 1s"));
        }
        let s =
            BudgetSettings { percent: self.percent, min_per_second: self.min_per_second, window: self.window.into() };
        done(s, issues)
    }
}

/// A circuit breaker for the upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Open after this many failures within the window (0: not by count).
    pub failure_count: u32,
    /// Open when this share of requests, in percent, failed within the window (0: not by rate).
    pub failure_percent: u32,
    /// Fewer requests than this within the window never open the breaker.
    pub min_requests: u32,
    /// The rolling window.
    pub window: Duration,
    /// How long it stays open before letting probes through.
    pub open_duration: Duration,
    /// Requests let through while half-open.
    pub half_open_requests: u32,
    /// Successful half-open requests that close it (at most `half_open_requests`).
    pub success_threshold: u32,
    /// Answer with this instead of a 503 problem while open.
    pub fallback: Option<FallbackConfig>,
    /// One breaker per endpoint instead of one for the upstream: an endpoint whose breaker is open gets no
    /// requests (the others take them); when every endpoint's is open, requests fail fast.
    pub per_endpoint: bool,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_count: 0,
            failure_percent: 50,
            min_requests: 20,
            window: secs(10),
            open_duration: secs(30),
            half_open_requests: 3,
            success_threshold: 2,
            fallback: None,
            per_endpoint: false,
        }
    }
}

/// A fixed response.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// The status.
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent as `application/json`).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

fn default_fallback_status() -> u16 {
    503
}

impl CircuitBreakerConfig {
    /// Compiles the breaker.
    pub fn compile(&self) -> Result<(BreakerSettings, Option<Arc<Fallback>>), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.failure_count == 0 && self.failure_percent == 0 {
            issues.push(ConfigIssue::new("", "give `failure_count`, `failure_percent` or both"));
        }
        if self.failure_percent > 100 {
            issues.push(ConfigIssue::new("failure_percent", "a percentage, 0 to 100"));
        }
        positive("window", self.window, &mut issues);
        positive("open_duration", self.open_duration, &mut issues);
        if self.half_open_requests == 0 {
            issues.push(ConfigIssue::new("half_open_requests", "must be at least 1"));
        }
        if self.success_threshold == 0 || self.success_threshold > self.half_open_requests {
            issues.push(ConfigIssue::new("success_threshold", "1 to `half_open_requests`"));
        }
        let fallback = self.fallback.as_ref().map(|f| {
            let status = match StatusCode::from_u16(f.status) {
                Ok(status) if (100..=599).contains(&f.status) => status,
                _ => {
                    issues.push(ConfigIssue::new("fallback.status", "a status from 100 to 599"));
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            let mut headers = Vec::new();
            for (name, value) in &f.headers {
                match (HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(value)) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => issues.push(ConfigIssue::new(format!("fallback.headers.{name}"), "not a valid header")),
                }
            }
            let body = f.body.as_ref().map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()));
            Arc::new(Fallback { status, headers, body })
        });
        let settings = BreakerSettings {
            failure_count: self.failure_count,
            failure_percent: self.failure_percent,
            min_requests: self.min_requests,
            window: self.window.into(),
            open_for: self.open_duration.into(),
            half_open_probes: self.half_open_requests,
            success_threshold: self.success_threshold,
        };
        done((settings, fallback), issues)
    }
}

/// A concurrency limit for the upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimitConfig {
    /// Requests in flight at once.
    pub max_in_flight: u32,
    /// Requests waiting for a slot (until their deadline); beyond that, 503 at once.
    #[serde(default)]
    pub max_queued: u32,
}

impl ConcurrencyLimitConfig {
    /// Compiles the limit.
    pub fn compile(&self) -> Result<LimitSettings, Vec<ConfigIssue>> {
        if self.max_in_flight == 0 {
            return Err(vec![ConfigIssue::new("max_in_flight", "must be at least 1")]);
        }
        Ok(LimitSettings { max_in_flight: self.max_in_flight, max_queued: self.max_queued })
    }
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HashOnConfig {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's address.
    ClientIp,
    /// The request path.
    Path,
}

impl HashOnConfig {
    /// Compiles it.
    pub fn compile(&self) -> Result<HashOn, Vec<ConfigIssue>> {
        match self {
            HashOnConfig::Header(h) => HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                .map(HashOn::Header)
                .map_err(|_| vec![ConfigIssue::new("header", format!("`{h}` is not a header name"))]),
            HashOnConfig::Cookie(c) if c.is_empty() => Err(vec![ConfigIssue::new("cookie", "a cookie name")]),
            HashOnConfig::Cookie(c) => Ok(HashOn::Cookie(c.clone())),
            HashOnConfig::ClientIp => Ok(HashOn::ClientIp),
            HashOnConfig::Path => Ok(HashOn::Path),
        }
    }
}
