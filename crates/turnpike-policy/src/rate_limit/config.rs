//! The user-facing configuration of rate-limit policies (`rate_limits.<id>`) and of the shared Redis store
//! (`server.redis`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::Duration;

use super::calendar::CalendarUnit;
use crate::Secret;

/// A rate-limit policy: limits that apply together to every request of the routes that use it. All must allow a
/// request; the strictest decides, and a request one limit refuses takes nothing from the others.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicyConfig {
    /// The limits. Each has a `name` that keys its counters: a reload keeps the counters of every limit whose
    /// policy id, name and algorithm are unchanged, whatever else changed (raising a limit does not refill
    /// anyone).
    pub limits: Vec<LimitConfig>,
    /// Where the counters live: `local` (this instance, in memory), `redis` (shared by every instance through
    /// `server.redis`, exact: one round trip per request) or `hybrid` (Redis, but tokens are taken in batches of
    /// `batch` per instance: fewer round trips, bounded overshoot).
    #[serde(default)]
    pub store: StoreKind,
    /// `hybrid` store: units each instance takes from Redis at a time. An instance may let through up to this many
    /// more than the limit per window, in the worst case (see docs/rate-limiting.md).
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// When Redis does not answer within `server.redis.timeout` (or is down): `allow` the request (the default:
    /// a broken store must not take the API down) or `deny` it (429).
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// What a request costs, by method and path: the first entry that matches decides; unmatched requests cost 1.
    #[serde(default)]
    pub costs: Vec<CostConfig>,
    /// Rate-limit headers on responses of routes using this policy.
    #[serde(default)]
    pub headers: RateLimitHeadersConfig,
}

fn default_batch() -> u32 {
    10
}

/// Where counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this instance's memory.
    #[default]
    Local,
    /// In Redis (`server.redis`), shared and exact.
    Redis,
    /// In Redis, taken in batches by each instance.
    Hybrid,
}

/// What happens when the shared store fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it with 429.
    Deny,
}

/// One limit.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Its name, unique in the policy: it keys the counters and names the limit in `RateLimit` headers and the
    /// access log.
    pub name: String,
    /// What is counted separately: one part (`client_ip`, `consumer`, `user`, `route`, `{header: x-tenant}`,
    /// `{query: api_key}`, `{path_param: id}`, `{claim: org}`) or several (`[consumer, route]`). `[]`: one
    /// counter for everyone (a global ceiling).
    pub key: LimitKeyConfig,
    /// How requests are counted.
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
    /// Units allowed per `per` (or, for `concurrency`, requests in flight).
    pub limit: u64,
    /// The window (`1s`, `1m`, `1h`). Required, except for `concurrency` and for `calendar` quotas.
    #[serde(default)]
    pub per: Option<Duration>,
    /// `fixed_window` only: calendar periods instead of `per` (`day`, `week`, `month`), aligned to midnight in
    /// `time_zone`.
    #[serde(default)]
    pub calendar: Option<CalendarUnit>,
    /// The IANA time zone of `calendar` periods.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// `token_bucket`: the bucket's capacity (requests that can go at once after a quiet spell); default `limit`.
    /// `leaky_bucket`: requests let through back to back before spacing starts; default `limit` when policing, 1
    /// when shaping.
    #[serde(default)]
    pub burst: Option<u64>,
    /// `leaky_bucket` only: `police` refuses what does not fit (GCRA), `shape` delays it by up to `max_delay` so
    /// requests leave evenly spaced.
    #[serde(default)]
    pub mode: LeakyMode,
    /// `leaky_bucket` with `mode: shape`: the longest a request is held; one that would wait longer is refused.
    #[serde(default)]
    pub max_delay: Option<Duration>,
    /// Limits by plan (the consumer's plan, or the token claim configured as the plan): `{free: {limit: 10},
    /// pro: {limit: 1000, burst: 2000}, enterprise: {unlimited: true}}`. A caller without a plan, or with one not
    /// listed, gets `limit` and `burst`.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanLimitConfig>,
    /// When the key cannot be built (no identity on a route keyed by `user`, a missing header): `client_ip`
    /// counts the request by client address instead (the default), `refuse` answers 429.
    #[serde(default)]
    pub when_key_missing: WhenKeyMissing,
    /// Client addresses are grouped by network: IPv4 addresses by this prefix length.
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 addresses by this prefix length (one /64 is usually one customer).
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Local store: most keys kept per limit. Keys whose counters are back to their initial state are forgotten
    /// first; beyond this, the longest-unused are (they start afresh if seen again).
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
}

fn default_time_zone() -> String {
    "UTC".into()
}
fn default_v4_prefix() -> u8 {
    32
}
fn default_v6_prefix() -> u8 {
    64
}
fn default_max_keys() -> u64 {
    1_000_000
}

/// Algorithms; docs/rate-limiting.md compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmConfig {
    /// `limit` per window aligned to the clock. Cheapest (one counter), but up to twice the limit can pass
    /// around a window boundary. The one for calendar quotas.
    FixedWindow,
    /// At most `limit` in any window ending now. Exact, but one timestamp per request in the window (limit at
    /// most 10,000).
    SlidingLog,
    /// The previous window's count, weighted by its overlap with the sliding window, plus this window's. Two
    /// counters, smooth, within a few percent of exact.
    SlidingWindow,
    /// Refills at `limit` per `per` up to `burst`: allows bursts, then a steady rate.
    #[default]
    TokenBucket,
    /// GCRA: requests leak out evenly at `limit` per `per`; `mode: shape` delays rather than refuses.
    LeakyBucket,
    /// At most `limit` requests of one key in flight at once.
    Concurrency,
}

/// Leaky bucket modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeakyMode {
    /// Refuse what does not fit.
    #[default]
    Police,
    /// Delay it (up to `max_delay`).
    Shape,
}

/// A plan's numbers for a limit.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLimitConfig {
    /// The plan's limit.
    #[serde(default)]
    pub limit: Option<u64>,
    /// The plan's burst.
    #[serde(default)]
    pub burst: Option<u64>,
    /// The plan is not limited by this limit.
    #[serde(default)]
    pub unlimited: bool,
}

/// What happens to a request whose key cannot be built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenKeyMissing {
    /// Count it by client address.
    #[default]
    ClientIp,
    /// Answer 429.
    Refuse,
}

/// A key: one part or a list of parts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LimitKeyConfig {
    /// One part.
    One(KeyPartConfig),
    /// Parts combined (`[]`: a single counter for everyone).
    Many(Vec<KeyPartConfig>),
}

impl LimitKeyConfig {
    /// The parts, in order.
    pub fn parts(&self) -> &[KeyPartConfig] {
        match self {
            LimitKeyConfig::One(part) => std::slice::from_ref(part),
            LimitKeyConfig::Many(parts) => parts,
        }
    }
}

impl<'de> Deserialize<'de> for LimitKeyConfig {
    // A part or a list of parts, with the part's own errors kept (an untagged derive would hide them).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LimitKeyConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key part (`client_ip`, `consumer`, `user`, `route`, `{header: name}`, ...) or a list")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                KeyPartConfig::deserialize(serde::de::value::StrDeserializer::new(v)).map(LimitKeyConfig::One)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                KeyPartConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(LimitKeyConfig::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<KeyPartConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(LimitKeyConfig::Many)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPartConfig {
    /// The real client address (a trusted proxy's report, else the peer), grouped by `ipv4_prefix` /
    /// `ipv6_prefix`.
    ClientIp,
    /// The consumer id (API keys, or a consumer named by a token).
    Consumer,
    /// The authenticated subject (JWT `sub` or the configured subject claim).
    User,
    /// The route id.
    Route,
    /// A request header's value.
    Header(String),
    /// A query parameter's value.
    Query(String),
    /// A parameter the route's path captured (`{id}`).
    PathParam(String),
    /// A claim of the caller's token (a string or number).
    Claim(String),
}

/// Request costs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// Methods this cost applies to. Empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// An exact (normalized) path. Give at most one of `path` and `prefix`; neither: any path.
    #[serde(default)]
    pub path: Option<String>,
    /// A path prefix, segment-aware.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Units the request takes from every limit of the policy (concurrency limits count requests).
    pub cost: u64,
}

/// Rate-limit response headers.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitHeadersConfig {
    /// `RateLimit-Policy` (every limit) and `RateLimit` (the limit with the least left), as in
    /// draft-ietf-httpapi-ratelimit-headers.
    pub ietf: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds) of the limit with the
    /// least left.
    pub legacy: bool,
}

impl Default for RateLimitHeadersConfig {
    fn default() -> Self {
        Self { ietf: true, legacy: false }
    }
}

/// A route's rate limiting.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimitConfig {
    /// Ids of `rate_limits` policies; all their limits apply together.
    pub policies: Vec<String>,
    /// Log what would be refused (access log `rate_limit: shadow_refused`) but let every request through: to try
    /// a limit before enforcing it. Headers are still sent.
    #[serde(default)]
    pub shadow: bool,
}

/// The Redis server shared rate limits use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS). Only host, port and database are read from it:
    /// give credentials in `username` and `password`.
    pub url: String,
    /// The ACL user name (Redis 6+).
    #[serde(default)]
    pub username: Option<String>,
    /// The password (`${env:REDIS_PASSWORD}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// `rediss://`: a PEM file of CAs trusted for the server's certificate, instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Longest wait for one decision; past it the policy's `on_store_error` decides. Keep it small.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
    /// Prefix of every key the gateway writes.
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

fn default_redis_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(50))
}
fn default_redis_prefix() -> String {
    "turnpike:rl:".into()
}
