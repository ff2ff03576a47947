//! The `rate_limit` phase: limits keyed by client address, consumer, user, route or request values, counted by one
//! of five algorithms in this instance's memory or in Redis, combined so the strictest wins.
//!
//! - [`config`]: policies (`rate_limits.<id>`), a route's `rate_limit`, `server.redis`.
//! - [`algorithm`]: fixed window, sliding log, sliding window counter, token bucket, leaky bucket (GCRA, policing
//!   or shaping), concurrency: pure functions shared by every store.
//! - [`local`]: the in-process store (sharded, bounded memory).
//! - [`redis`]: the shared store (Lua scripts mirroring the algorithms, one round trip per decision).
//! - [`hybrid`]: Redis in batches per instance.
//! - [`calendar`]: day / week / month windows in a time zone.
//! - `key`: what a request is counted under.
//!
//! Settings live in the snapshot ([`RateLimitPolicy`], [`RouteRateLimit`]); counters live in
//! [`RateLimitStates`], keyed by policy id, limit name and algorithm, so a reload keeps them.

pub mod algorithm;
pub mod calendar;
pub mod config;
pub mod hybrid;
mod key;
pub mod local;
pub mod redis;
#[cfg(test)]
mod tests;

use std::hash::Hasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use turnpike_core::Registry;

use self::algorithm::{Algorithm, MAX_LOG_LIMIT, Nanos, Quota, Verdict, WindowSpan, ceil_secs};
use self::calendar::{Calendar, CalendarUnit};
use self::config::RedisConfig;
use self::config::{
    AlgorithmConfig, CostConfig, LeakyMode, LimitConfig, OnStoreError, RateLimitPolicyConfig, StoreKind,
};
use self::hybrid::HybridStore;
use self::key::{KeyPart, KeySpec, MissingKey, TextKey};
use self::local::LocalStore;
use self::redis::{RedisGiveBack, RedisStore, RedisTake};
use crate::ConfigIssue;
pub use key::RateLimitInput;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Legacy `X-RateLimit-Limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// Legacy `X-RateLimit-Remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// Legacy `X-RateLimit-Reset` (seconds).
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The wall clock rate limits count on: the Unix time at start plus tokio's monotonic time since (so a clock step
/// never refills or empties anyone, and paused-time tests drive it).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: Nanos,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock reading the system time now.
    pub fn new() -> Self {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            wall_at_start: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX / 2),
            start: tokio::time::Instant::now(),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn now(&self) -> Nanos {
        self.wall_at_start + u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The key of a limit's counters: policy id, limit name, algorithm kind.
pub type LimitKey = (Arc<str>, Arc<str>, &'static str);

/// Counters of every rate limit, outliving snapshots.
#[derive(Debug, Default)]
pub struct RateLimitStates {
    /// Local counters by policy id, limit name and algorithm.
    pub local: Registry<LimitKey, LocalStore>,
    /// Hybrid-mode leases by policy id, limit name and algorithm.
    pub hybrid: Registry<LimitKey, HybridStore>,
    /// The Redis store and the settings it was made with (kept across reloads that do not change them, with its
    /// connection).
    redis: Mutex<Option<(RedisConfig, Arc<RedisStore>)>>,
    /// The clock.
    pub clock: Clock,
}

impl RateLimitStates {
    /// The shared store for `server.redis`: the current one if the settings are unchanged, else a new one (no
    /// I/O: it connects on first use). An error is about the settings (`url`, `ca_file`).
    pub fn redis_store(&self, config: &RedisConfig) -> Result<Arc<RedisStore>, String> {
        let mut current = self.redis.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((settings, store)) = &*current
            && settings == config
        {
            return Ok(store.clone());
        }
        let store = Arc::new(RedisStore::new(config)?);
        *current = Some((config.clone(), store.clone()));
        Ok(store)
    }
}

/// A compiled policy: its limits, costs and header settings.
#[derive(Debug)]
pub struct RateLimitPolicy {
    id: Arc<str>,
    limits: Vec<Limit>,
    costs: Vec<Cost>,
    on_store_error: OnStoreError,
    ietf_headers: bool,
    legacy_headers: bool,
}

#[derive(Debug)]
struct Limit {
    /// `policy/name`, for the access log.
    qualified: Arc<str>,
    name: Arc<str>,
    key: KeySpec,
    algorithm: Algorithm,
    quota: Quota,
    /// Quotas by plan; `None`: the plan is not limited.
    plans: Vec<(Arc<str>, Option<Quota>)>,
    /// The loosest quota of any plan: when a counter may be forgotten.
    idle: Quota,
    store: Store,
}

#[derive(Debug)]
enum Store {
    Local(Arc<LocalStore>),
    Redis(Arc<RedisStore>),
    Hybrid { redis: Arc<RedisStore>, leases: Arc<HybridStore>, batch: u64 },
}

#[derive(Debug)]
struct Cost {
    methods: Vec<Method>,
    path: Option<String>,
    prefix: Option<String>,
    cost: u64,
}

impl RateLimitPolicy {
    /// Compiles `rate_limits.<id>`; counters come from `states` (kept when policy id, limit name and algorithm
    /// are unchanged). Issues are relative to the policy (`limits[0].per`).
    /// `redis` is the store of `server.redis`, when configured.
    pub fn compile(
        id: &str,
        config: &RateLimitPolicyConfig,
        states: &RateLimitStates,
        redis: Option<&Arc<RedisStore>>,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if config.limits.is_empty() {
            issues.push(ConfigIssue::new("limits", "a policy needs at least one limit"));
        }
        if config.store != StoreKind::Local && redis.is_none() {
            issues.push(ConfigIssue::new("store", "a shared store needs `server.redis`"));
        }
        if config.store == StoreKind::Hybrid && config.batch < 2 {
            issues.push(ConfigIssue::new("batch", "a batch is at least 2 units (1 is `store: redis`)"));
        }
        let mut limits = Vec::new();
        for (i, limit) in config.limits.iter().enumerate() {
            if config.limits[..i].iter().any(|other| other.name == limit.name) {
                issues.push(ConfigIssue::new(format!("limits[{i}].name"), format!("`{}` is used twice", limit.name)));
                continue;
            }
            match compile_limit(id, limit, states, config, redis) {
                Ok(compiled) => limits.push(compiled),
                Err(found) => issues
                    .extend(found.into_iter().map(|(field, message)| ConfigIssue::new(join_path(i, field), message))),
            }
        }
        let mut costs = Vec::new();
        for (i, cost) in config.costs.iter().enumerate() {
            match compile_cost(cost) {
                Ok(cost) => costs.push(cost),
                Err((field, message)) => issues.push(ConfigIssue::new(format!("costs[{i}]{field}"), message)),
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            id: id.into(),
            limits,
            costs,
            on_store_error: config.on_store_error,
            ietf_headers: config.headers.ietf,
            legacy_headers: config.headers.legacy,
        })
    }

    /// The policy id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cost(&self, method: &Method, path: &str) -> u64 {
        self.costs
            .iter()
            .find(|c| {
                (c.methods.is_empty() || c.methods.contains(method))
                    && c.path.as_deref().is_none_or(|p| p == path)
                    && c.prefix.as_deref().is_none_or(|p| {
                        path.strip_prefix(p)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || p.ends_with('/'))
                    })
            })
            .map_or(1, |c| c.cost)
    }
}

fn join_path(i: usize, field: &str) -> String {
    if field.is_empty() { format!("limits[{i}]") } else { format!("limits[{i}].{field}") }
}

type LimitIssues = Vec<(&'static str, String)>;

fn compile_limit(
    policy: &str,
    config: &LimitConfig,
    states: &RateLimitStates,
    policy_config: &RateLimitPolicyConfig,
    redis: Option<&Arc<RedisStore>>,
) -> Result<Limit, LimitIssues> {
    let mut issues: LimitIssues = Vec::new();
    if config.name.is_empty() || !config.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        // The name goes into `RateLimit` headers as a quoted string and into Redis keys.
        issues.push(("name", "a limit name is letters, digits, `-`, `_` and `.`".into()));
    }
    let mut parts = Vec::new();
    for part in config.key.parts() {
        match KeyPart::compile(part) {
            Ok(part) => parts.push(part),
            Err(message) => issues.push(("key", message)),
        }
    }
    if config.ipv4_prefix > 32 {
        issues.push(("ipv4_prefix", "at most 32".into()));
    }
    if config.ipv6_prefix > 128 {
        issues.push(("ipv6_prefix", "at most 128".into()));
    }
    if config.limit == 0 {
        issues.push(("limit", "must be at least 1 (a route without any allowance should not be routed)".into()));
    }
    if config.max_keys == 0 {
        issues.push(("max_keys", "must be at least 1".into()));
    }
    let per = config.per.map(|d| u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX));
    let window = || -> Result<Nanos, (&'static str, String)> {
        match per {
            Some(ns) if ns >= 1_000_000 => Ok(ns),
            Some(_) => Err(("per", "must be at least 1ms".into())),
            None => Err(("per", "this algorithm needs a window (`per: 1s`)".into())),
        }
    };
    if config.calendar.is_some() && config.algorithm != AlgorithmConfig::FixedWindow {
        issues.push(("calendar", "calendar windows need `algorithm: fixed_window`".into()));
    }
    if config.calendar.is_some() && config.per.is_some() {
        issues.push(("per", "give `per` or `calendar`, not both".into()));
    }
    if config.mode == LeakyMode::Shape && config.algorithm != AlgorithmConfig::LeakyBucket {
        issues.push(("mode", "`mode` applies to `algorithm: leaky_bucket`".into()));
    }
    if config.max_delay.is_some() && config.mode != LeakyMode::Shape {
        issues.push(("max_delay", "`max_delay` applies to `leaky_bucket` with `mode: shape`".into()));
    }
    if config.burst.is_some()
        && !matches!(config.algorithm, AlgorithmConfig::TokenBucket | AlgorithmConfig::LeakyBucket)
    {
        issues.push(("burst", "`burst` applies to `token_bucket` and `leaky_bucket`".into()));
    }
    let algorithm = match config.algorithm {
        AlgorithmConfig::FixedWindow => match config.calendar {
            Some(unit) => match Calendar::new(unit, &config.time_zone) {
                Ok(calendar) => Some(Algorithm::FixedWindow(WindowSpan::Calendar(calendar))),
                Err(message) => {
                    issues.push(("time_zone", message));
                    None
                }
            },
            None => window().map(|w| Algorithm::FixedWindow(WindowSpan::Every(w))).map_err(|e| issues.push(e)).ok(),
        },
        AlgorithmConfig::SlidingLog => {
            if config.limit > MAX_LOG_LIMIT {
                issues.push(("limit", format!("a sliding log keeps one entry per request: at most {MAX_LOG_LIMIT}")));
            }
            window().map(|window| Algorithm::SlidingLog { window }).map_err(|e| issues.push(e)).ok()
        }
        AlgorithmConfig::SlidingWindow => {
            window().map(|window| Algorithm::SlidingWindow { window }).map_err(|e| issues.push(e)).ok()
        }
        AlgorithmConfig::TokenBucket => {
            window().map(|window| Algorithm::TokenBucket { window }).map_err(|e| issues.push(e)).ok()
        }
        AlgorithmConfig::LeakyBucket => {
            let max_delay = match (config.mode, config.max_delay) {
                (LeakyMode::Police, _) => None,
                (LeakyMode::Shape, Some(d)) => Some(u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX)),
                (LeakyMode::Shape, None) => {
                    issues
                        .push(("max_delay", "`mode: shape` needs `max_delay` (the longest a request is held)".into()));
                    None
                }
            };
            window().map(|window| Algorithm::LeakyBucket { window, max_delay }).map_err(|e| issues.push(e)).ok()
        }
        AlgorithmConfig::Concurrency => {
            if config.per.is_some() {
                issues.push(("per", "a concurrency limit has no window".into()));
            }
            Some(Algorithm::Concurrency)
        }
    };
    let default_burst = |limit: u64| match (config.algorithm, config.mode) {
        (AlgorithmConfig::LeakyBucket, LeakyMode::Shape) => 1,
        _ => limit,
    };
    let quota = Quota { limit: config.limit, burst: config.burst.unwrap_or(default_burst(config.limit)) };
    if quota.burst == 0 {
        issues.push(("burst", "must be at least 1".into()));
    }
    let mut plans = Vec::new();
    for (name, plan) in &config.plans {
        if plan.unlimited {
            if plan.limit.is_some() || plan.burst.is_some() {
                issues.push(("plans", format!("plan `{name}`: `unlimited` excludes `limit` and `burst`")));
            }
            plans.push((Arc::from(name.as_str()), None));
            continue;
        }
        let limit = plan.limit.unwrap_or(quota.limit);
        let burst = plan.burst.unwrap_or(if plan.limit.is_some() { default_burst(limit) } else { quota.burst });
        if limit == 0 || burst == 0 {
            issues.push(("plans", format!("plan `{name}`: limit and burst must be at least 1")));
        }
        if config.algorithm == AlgorithmConfig::SlidingLog && limit > MAX_LOG_LIMIT {
            issues.push(("plans", format!("plan `{name}`: a sliding log allows at most {MAX_LOG_LIMIT}")));
        }
        plans.push((Arc::from(name.as_str()), Some(Quota { limit, burst })));
    }
    let (Some(algorithm), true) = (algorithm, issues.is_empty()) else {
        return Err(issues);
    };
    let every = std::iter::once(quota).chain(plans.iter().filter_map(|(_, q)| *q));
    let idle = every.fold(quota, |acc, q| Quota { limit: acc.limit.min(q.limit), burst: acc.burst.max(q.burst) });
    let name: Arc<str> = config.name.as_str().into();
    let state_key: LimitKey = (policy.into(), name.clone(), algorithm.kind());
    let store = match (policy_config.store, redis) {
        (StoreKind::Redis, Some(redis)) => Store::Redis(redis.clone()),
        (StoreKind::Hybrid, Some(redis)) => {
            if algorithm == Algorithm::Concurrency {
                return Err(vec![(
                    "algorithm",
                    "a concurrency limit cannot be taken in batches: use `store: redis`".into(),
                )]);
            }
            Store::Hybrid {
                redis: redis.clone(),
                leases: states.hybrid.get_or_insert_with(&state_key, HybridStore::default),
                batch: u64::from(policy_config.batch),
            }
        }
        _ => Store::Local(states.local.get_or_insert_with(&state_key, || LocalStore::new(config.max_keys))),
    };
    Ok(Limit {
        qualified: format!("{policy}/{}", config.name).into(),
        name,
        key: KeySpec {
            parts,
            v4_prefix: config.ipv4_prefix,
            v6_prefix: config.ipv6_prefix,
            when_missing: config.when_key_missing,
        },
        algorithm,
        quota,
        plans,
        idle,
        store,
    })
}

fn compile_cost(config: &CostConfig) -> Result<Cost, (&'static str, String)> {
    let mut methods = Vec::new();
    for m in &config.methods {
        methods.push(
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| (".methods", format!("`{m}` is not a method")))?,
        );
    }
    if config.path.is_some() && config.prefix.is_some() {
        return Err(("", "give at most one of `path` and `prefix`".into()));
    }
    for p in [&config.path, &config.prefix].into_iter().flatten() {
        if !p.starts_with('/') {
            return Err((".path", format!("`{p}` must start with `/`")));
        }
    }
    Ok(Cost { methods, path: config.path.clone(), prefix: config.prefix.clone(), cost: config.cost })
}

/// A route's rate limiting: the limits of its policies, applied together.
#[derive(Debug)]
pub struct RouteRateLimit {
    policies: Vec<Arc<RateLimitPolicy>>,
    shadow: bool,
    /// `RateLimit-Policy` values by plan (`None`: callers without a listed plan), made once.
    policy_headers: Vec<(Option<Arc<str>>, Option<HeaderValue>)>,
    ietf: bool,
    legacy: bool,
    /// Whether a store failure refuses (any of the policies says `on_store_error: deny`).
    deny_on_store_error: bool,
}

/// What the phase decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every limit allowed it.
    Allowed,
    /// Allowed after a wait (a shaping leaky bucket).
    Delayed,
    /// A limit refused it (429).
    Refused,
    /// A limit would have refused it, but the route is in shadow mode: let through.
    ShadowRefused,
    /// The store failed and the policy lets requests through.
    StoreErrorAllowed,
    /// The store failed and the policy refuses (429).
    StoreErrorRefused,
}

impl Outcome {
    /// The access-log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Delayed => "delayed",
            Outcome::Refused => "refused",
            Outcome::ShadowRefused => "shadow_refused",
            Outcome::StoreErrorAllowed => "store_error_allowed",
            Outcome::StoreErrorRefused => "store_error_refused",
        }
    }

    /// Whether the request must be answered with 429.
    pub fn refuses(self) -> bool {
        matches!(self, Outcome::Refused | Outcome::StoreErrorRefused)
    }
}

/// The decision of the `rate_limit` phase for one request.
#[derive(Debug)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// The limit that refused (`policy/name`), for the access log.
    pub limit: Option<Arc<str>>,
    /// Refused: when to come back.
    pub retry_after: Duration,
    /// Hold the request this long before forwarding it (shaping).
    pub delay: Duration,
    /// The response headers to send.
    pub headers: RateLimitHeaders,
    /// Concurrency slots held until the response ends (released on drop).
    pub held: Held,
}

/// What [`RouteRateLimit::check`] found.
pub enum Check<'a> {
    /// Decided by the local limits alone.
    Decided(Decision),
    /// The local limits allowed; shared ones (Redis, hybrid) are still to ask.
    Shared(Shared<'a>),
}

impl Check<'_> {
    /// The decision, asking the shared limits if any are left.
    pub async fn decision(self) -> Decision {
        match self {
            Check::Decided(decision) => decision,
            Check::Shared(shared) => shared.ask().await,
        }
    }
}

/// A decision waiting for the shared limits.
pub struct Shared<'a> {
    route: &'a RouteRateLimit,
    plan: Option<&'a str>,
    now: Nanos,
    clock: Clock,
    taken: Vec<Taken>,
    remote: Vec<Remote>,
}

impl Shared<'_> {
    /// Asks the shared limits and decides.
    pub async fn ask(self) -> Decision {
        let Shared { route, plan, now, clock, mut taken, remote } = self;
        let (refused, outcome) = match route.take_remote(remote, now, &mut taken).await {
            Ok(refused) => (refused, Outcome::Allowed),
            Err(err) => {
                tracing::debug!(error = %err, "rate-limit store unavailable");
                if route.deny_on_store_error && !route.shadow {
                    route.give_back_all(taken, now);
                    let mut decision = route.decision(plan);
                    decision.outcome = Outcome::StoreErrorRefused;
                    decision.retry_after = Duration::from_secs(1);
                    return decision;
                }
                (None, Outcome::StoreErrorAllowed)
            }
        };
        route.conclude(plan, now, &clock, taken, refused, outcome)
    }
}

/// The rate-limit headers of one answer.
#[derive(Debug, Default)]
pub struct RateLimitHeaders {
    policy: Option<HeaderValue>,
    /// The limit with the least left: name, remaining, reset (s), limit.
    current: Option<(Arc<str>, u64, u64, u64)>,
    ietf: bool,
    legacy: bool,
}

impl RateLimitHeaders {
    /// Writes the headers into a response.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let Some((name, remaining, reset, limit)) = &self.current else {
            return;
        };
        if self.ietf {
            if let Some(policy) = &self.policy {
                headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
            }
            // `"name";r=<remaining>;t=<reset>`, built at its exact length: one allocation, no copy.
            let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
            let (r, t) = (r.format(*remaining), t.format(*reset));
            let mut value = Vec::with_capacity(name.len() + r.len() + t.len() + 8);
            value.push(b'"');
            value.extend_from_slice(name.as_bytes());
            value.extend_from_slice(b"\";r=");
            value.extend_from_slice(r.as_bytes());
            value.extend_from_slice(b";t=");
            value.extend_from_slice(t.as_bytes());
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                headers.insert(RATELIMIT.clone(), value);
            }
        }
        if self.legacy {
            headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(*limit));
            headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(*remaining));
            headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(*reset));
        }
    }
}

/// Concurrency slots a request holds while its response is sent; dropping it releases them.
#[derive(Debug, Default)]
pub struct Held {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    policy: Arc<RateLimitPolicy>,
    limit: usize,
    quota: Quota,
    key: TakenKey,
    taken_at: Nanos,
    clock: Clock,
}

impl Held {
    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for slot in std::mem::take(&mut self.slots) {
            let limit = &slot.policy.limits[slot.limit];
            limit.give_back(&slot.key, slot.quota, slot.clock.now(), slot.taken_at, 1);
        }
    }
}

/// Where a limit took from: a local counter (its hash) or a shared one (its key, and the Redis time of the take).
#[derive(Debug)]
enum TakenKey {
    Local(u64),
    Remote(String),
}

/// One limit's part in a decision.
struct Taken {
    policy: usize,
    limit: usize,
    quota: Quota,
    key: TakenKey,
    cost: u64,
    verdict: Verdict,
    at: Nanos,
}

/// A shared limit still to ask.
struct Remote {
    policy: usize,
    limit: usize,
    quota: Quota,
    key: String,
    cost: u64,
}

impl Remote {
    /// What an allowed take of this limit took, decided at `at`.
    fn taken(&self, verdict: Verdict, at: Nanos) -> Taken {
        let (policy, limit, quota, cost) = (self.policy, self.limit, self.quota, self.cost);
        Taken { policy, limit, quota, key: TakenKey::Remote(self.key.clone()), cost, verdict, at }
    }
}

impl RouteRateLimit {
    /// The limits of `policies` together; `shadow` only logs refusals.
    pub fn new(policies: Vec<Arc<RateLimitPolicy>>, shadow: bool) -> Self {
        let ietf = policies.iter().any(|p| p.ietf_headers);
        let legacy = policies.iter().any(|p| p.legacy_headers);
        let mut plans: Vec<Option<Arc<str>>> = vec![None];
        for limit in policies.iter().flat_map(|p| &p.limits) {
            for (plan, _) in &limit.plans {
                if !plans.iter().flatten().any(|p| p == plan) {
                    plans.push(Some(plan.clone()));
                }
            }
        }
        let policy_headers = plans
            .into_iter()
            .map(|plan| {
                let value = policy_header(&policies, plan.as_deref());
                (plan, value)
            })
            .collect();
        let deny_on_store_error = policies.iter().any(|p| p.on_store_error == OnStoreError::Deny);
        Self { policies, shadow, policy_headers, ietf, legacy, deny_on_store_error }
    }

    /// Decides a request: every limit is asked (local ones first, then the shared ones in one round trip); if one
    /// refuses, what the others took is given back. Local limits decide here, without a future; a request that
    /// needs a shared limit comes back as [`Check::Shared`], to be awaited.
    pub fn check<'a>(&'a self, input: &RateLimitInput<'a>, clock: &Clock) -> Check<'a> {
        let plan = input.identity.and_then(|id| id.plan.as_deref());
        let now = clock.now();
        let mut taken: Vec<Taken> = Vec::new();
        let mut remote: Vec<Remote> = Vec::new();
        for (p, policy) in self.policies.iter().enumerate() {
            let cost = policy.cost(input.method, input.path);
            for (l, limit) in policy.limits.iter().enumerate() {
                let Some(quota) = limit.quota_for(plan) else { continue };
                let cost = if limit.algorithm == Algorithm::Concurrency { 1 } else { cost };
                let Store::Local(store) = &limit.store else {
                    let mut key = String::with_capacity(64);
                    key.push_str(&limit.qualified);
                    if let Err(MissingKey) = limit.key.write(input, &mut TextKey(&mut key)) {
                        return Check::Decided(self.missing_key(plan, p, l, taken, now));
                    }
                    if let Store::Hybrid { leases, .. } = &limit.store
                        && let Some(verdict) = leases.spend(&key, cost, now)
                    {
                        // Spent from this instance's lease: no round trip, no future.
                        let key = TakenKey::Remote(key);
                        taken.push(Taken { policy: p, limit: l, quota, key, cost, verdict, at: now });
                        continue;
                    }
                    remote.push(Remote { policy: p, limit: l, quota, key, cost });
                    continue;
                };
                let mut hasher = store.key_hasher();
                if let Err(MissingKey) = limit.key.write(input, &mut hasher) {
                    return Check::Decided(self.missing_key(plan, p, l, taken, now));
                }
                let key = hasher.finish();
                let verdict = store.take(&limit.algorithm, quota, limit.idle, key, now, cost);
                if !verdict.allowed {
                    let refused = Some((p, l, verdict));
                    return Check::Decided(self.conclude(plan, now, clock, taken, refused, Outcome::Allowed));
                }
                taken.push(Taken { policy: p, limit: l, quota, key: TakenKey::Local(key), cost, verdict, at: now });
            }
        }
        if remote.is_empty() {
            return Check::Decided(self.conclude(plan, now, clock, taken, None, Outcome::Allowed));
        }
        Check::Shared(Shared { route: self, plan, now, clock: *clock, taken, remote })
    }

    /// A key that cannot be built, on a limit that refuses such requests.
    fn missing_key(&self, plan: Option<&str>, p: usize, l: usize, taken: Vec<Taken>, now: Nanos) -> Decision {
        self.give_back_all(taken, now);
        let limit = &self.policies[p].limits[l];
        let mut decision = self.decision(plan);
        decision.limit = Some(limit.qualified.clone());
        decision.retry_after = Duration::from_secs(1);
        decision.outcome = if self.shadow { Outcome::ShadowRefused } else { Outcome::Refused };
        decision.headers.current = Some((limit.name.clone(), 0, 1, limit.quota.limit));
        decision
    }

    /// An allowing decision with the route's `RateLimit-Policy` for `plan` and no `RateLimit` yet.
    fn decision(&self, plan: Option<&str>) -> Decision {
        Decision {
            outcome: Outcome::Allowed,
            limit: None,
            retry_after: Duration::ZERO,
            delay: Duration::ZERO,
            headers: RateLimitHeaders {
                ietf: self.ietf,
                legacy: self.legacy,
                policy: self.policy_header(plan),
                current: None,
            },
            held: Held::default(),
        }
    }

    /// The decision once every limit has answered: `refused` names the first limit that refused (what the others
    /// took is given back); otherwise the limit with the least left is the one the client hears about (the
    /// draft's rule for several windows).
    fn conclude(
        &self,
        plan: Option<&str>,
        now: Nanos,
        clock: &Clock,
        taken: Vec<Taken>,
        refused: Option<(usize, usize, Verdict)>,
        outcome: Outcome,
    ) -> Decision {
        let mut decision = self.decision(plan);
        decision.outcome = outcome;
        if let Some((p, l, verdict)) = refused {
            // Nothing is taken from the other limits by a request one of them refuses.
            self.give_back_all(taken, now);
            let limit = &self.policies[p].limits[l];
            let retry = ceil_secs(verdict.retry_after).max(1);
            decision.limit = Some(limit.qualified.clone());
            decision.retry_after = Duration::from_secs(retry);
            decision.outcome = if self.shadow { Outcome::ShadowRefused } else { Outcome::Refused };
            let quota = limit.quota_for(plan).unwrap_or(limit.quota);
            decision.headers.current = Some((limit.name.clone(), verdict.remaining, retry, quota.limit));
            return decision;
        }
        let mut delay: Nanos = 0;
        for t in taken {
            delay = delay.max(t.verdict.delay);
            let limit = &self.policies[t.policy].limits[t.limit];
            let reset = ceil_secs(t.verdict.reset);
            let better = match &decision.headers.current {
                None => true,
                Some((_, remaining, current_reset, _)) => {
                    t.verdict.remaining < *remaining || (t.verdict.remaining == *remaining && reset > *current_reset)
                }
            };
            if better {
                decision.headers.current = Some((limit.name.clone(), t.verdict.remaining, reset, t.quota.limit));
            }
            if limit.algorithm == Algorithm::Concurrency {
                decision.held.slots.push(Slot {
                    policy: self.policies[t.policy].clone(),
                    limit: t.limit,
                    quota: t.quota,
                    key: t.key,
                    taken_at: t.at,
                    clock: *clock,
                });
            }
        }
        if delay > 0 {
            decision.delay = Duration::from_nanos(delay);
            if decision.outcome == Outcome::Allowed {
                decision.outcome = Outcome::Delayed;
            }
        }
        decision
    }

    /// Asks the shared limits: the Redis ones in one round trip, the hybrid ones from their leases (a round trip
    /// when a lease is spent). Allowed takes go into `taken`; the first refusal is returned.
    async fn take_remote(
        &self,
        remote: Vec<Remote>,
        now: Nanos,
        taken: &mut Vec<Taken>,
    ) -> Result<Option<(usize, usize, Verdict)>, redis::StoreError> {
        let mut exact: Vec<(&Remote, &Arc<RedisStore>)> = Vec::new();
        for r in &remote {
            let limit = &self.policies[r.policy].limits[r.limit];
            let item = RedisTake { key: &r.key, algorithm: &limit.algorithm, quota: r.quota, cost: r.cost };
            match &limit.store {
                Store::Redis(redis) => exact.push((r, redis)),
                Store::Hybrid { redis, leases, batch } => {
                    let verdict = leases.take(redis, &item, *batch, now).await?;
                    if !verdict.allowed {
                        return Ok(Some((r.policy, r.limit, verdict)));
                    }
                    taken.push(r.taken(verdict, now));
                }
                Store::Local(_) => {}
            }
        }
        let Some((_, redis)) = exact.first() else { return Ok(None) };
        let items: Vec<RedisTake<'_>> = exact
            .iter()
            .map(|(r, _)| {
                let limit = &self.policies[r.policy].limits[r.limit];
                RedisTake { key: &r.key, algorithm: &limit.algorithm, quota: r.quota, cost: r.cost }
            })
            .collect();
        let verdicts = redis.take(&items).await?;
        let mut refusal = None;
        for ((r, _), v) in exact.iter().zip(verdicts) {
            if !v.verdict.allowed {
                refusal = refusal.or(Some((r.policy, r.limit, v.verdict)));
                continue;
            }
            taken.push(r.taken(v.verdict, v.at));
        }
        Ok(refusal)
    }

    /// Gives back what a refused request took: local counters at once, shared ones in a task of their own (the
    /// refusal does not wait for Redis).
    fn give_back_all(&self, taken: Vec<Taken>, now: Nanos) {
        for t in taken {
            let limit = &self.policies[t.policy].limits[t.limit];
            limit.give_back(&t.key, t.quota, now, t.at, t.cost);
        }
    }

    fn policy_header(&self, plan: Option<&str>) -> Option<HeaderValue> {
        let found = plan.and_then(|plan| self.policy_headers.iter().find(|(p, _)| p.as_deref() == Some(plan)));
        found.or_else(|| self.policy_headers.first()).and_then(|(_, value)| value.clone())
    }
}

impl Limit {
    /// Gives back a take: locally at once; in Redis from a task (a slot released as a response ends, or the takes of
    /// a refused request, need not wait for it); a hybrid lease gets the units back.
    fn give_back(&self, key: &TakenKey, quota: Quota, now: Nanos, taken_at: Nanos, cost: u64) {
        match (&self.store, key) {
            (Store::Local(store), TakenKey::Local(hash)) => {
                store.give_back(&self.algorithm, quota, *hash, now, taken_at, cost);
            }
            (Store::Hybrid { leases, .. }, TakenKey::Remote(key)) => leases.give_back(key, cost),
            (Store::Redis(redis), TakenKey::Remote(key)) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
                let (redis, key, algorithm) = (redis.clone(), key.clone(), self.algorithm.clone());
                runtime.spawn(async move {
                    let item = RedisGiveBack { key: &key, algorithm: &algorithm, quota, cost, taken_at };
                    if let Err(err) = redis.give_back(&[item]).await {
                        tracing::debug!(error = %err, "rate-limit give-back lost");
                    }
                });
            }
            _ => {}
        }
    }

    /// The quota for a caller's plan; `None` when the plan is not limited by this limit.
    fn quota_for(&self, plan: Option<&str>) -> Option<Quota> {
        match plan.and_then(|plan| self.plans.iter().find(|(p, _)| &**p == plan)) {
            Some((_, quota)) => *quota,
            None => Some(self.quota),
        }
    }
}

/// `RateLimit-Policy` for a plan: every limit that applies to it, `"name";q=<limit>;w=<seconds>`.
fn policy_header(policies: &[Arc<RateLimitPolicy>], plan: Option<&str>) -> Option<HeaderValue> {
    let mut items = Vec::new();
    for limit in policies.iter().flat_map(|p| &p.limits) {
        let Some(quota) = limit.quota_for(plan) else { continue };
        let item = match &limit.algorithm {
            Algorithm::Concurrency => format!("\"{}\";q={};qu=\"concurrent-requests\"", limit.name, quota.limit),
            Algorithm::FixedWindow(WindowSpan::Calendar(calendar)) => {
                let days = match calendar.unit() {
                    CalendarUnit::Day => 1,
                    CalendarUnit::Week => 7,
                    CalendarUnit::Month => 30,
                };
                format!("\"{}\";q={};w={}", limit.name, quota.limit, days * 86_400)
            }
            other => format!("\"{}\";q={};w={}", limit.name, quota.limit, other.window_secs(0).unwrap_or(1)),
        };
        items.push(item);
    }
    if items.is_empty() {
        return None;
    }
    HeaderValue::try_from(items.join(", ")).ok()
}
