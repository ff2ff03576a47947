//! The policy alone, on paused time: each algorithm's burst, refill and `Retry-After`, plans, hierarchy, missing
//! keys, reloads, memory under a million keys.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{Value, json};
use turnpike_core::{Consumer, Identity, IdentitySource};
use turnpike_router::Params;

use super::algorithm::{Algorithm, Counter, Quota, SECOND};
use super::config::RateLimitPolicyConfig;
use super::local::LocalStore;
use super::*;

fn policy_config(value: Value) -> RateLimitPolicyConfig {
    serde_json::from_value(value).unwrap()
}

fn compile(id: &str, value: Value, states: &RateLimitStates) -> Arc<RateLimitPolicy> {
    Arc::new(RateLimitPolicy::compile(id, &policy_config(value), states, None).unwrap())
}

fn issues(value: Value) -> Vec<String> {
    RateLimitPolicy::compile("p", &policy_config(value), &RateLimitStates::default(), None)
        .unwrap_err()
        .into_iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect()
}

fn route(policies: &[&Arc<RateLimitPolicy>]) -> RouteRateLimit {
    RouteRateLimit::new(policies.iter().map(|p| (*p).clone()).collect(), false)
}

struct Req {
    method: Method,
    path: &'static str,
    ip: IpAddr,
    headers: HeaderMap,
    identity: Option<Identity>,
}

impl Req {
    fn get() -> Self {
        Self {
            method: Method::GET,
            path: "/items",
            ip: "192.0.2.1".parse().unwrap(),
            headers: HeaderMap::new(),
            identity: None,
        }
    }
    fn from(mut self, ip: &str) -> Self {
        self.ip = ip.parse().unwrap();
        self
    }
    fn consumer(mut self, id: &str, plan: Option<&str>) -> Self {
        let mut identity = Identity::new(IdentitySource::ApiKey, Some(id.into()));
        identity.consumer = Some(Arc::new(Consumer {
            id: id.into(),
            name: id.into(),
            plan: plan.map(Into::into),
            roles: Vec::new(),
            metadata: Default::default(),
        }));
        identity.plan = plan.map(Into::into);
        self.identity = Some(identity);
        self
    }
}

async fn check(route: &RouteRateLimit, req: &Req, clock: &Clock) -> Decision {
    let params = Params::empty(req.path);
    let input = RateLimitInput {
        method: &req.method,
        path: req.path,
        query: None,
        headers: &req.headers,
        params: &params,
        route: "items",
        client_ip: req.ip,
        identity: req.identity.as_ref(),
    };
    route.check(&input, clock).decision().await
}

/// Sends `n` requests at the current instant; how many were allowed.
async fn burst(route: &RouteRateLimit, req: &Req, clock: &Clock, n: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        if !check(route, req, clock).await.outcome.refuses() {
            allowed += 1;
        }
    }
    allowed
}

fn limit(algorithm: &str, extra: Value) -> Value {
    let mut limit = json!({"name": "l", "key": "client_ip", "algorithm": algorithm, "limit": 5, "per": "1s"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            limit.as_object_mut().unwrap().remove(k);
        } else {
            limit[k] = v.clone();
        }
    }
    json!({"limits": [limit]})
}

#[tokio::test(start_paused = true)]
async fn fixed_window_allows_the_limit_per_aligned_window() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("fixed_window", json!({})), &states)]);
    let clock = states.clock;
    // Align to a window start, so the window is whole.
    let into = clock.now() % SECOND;
    tokio::time::advance(Duration::from_nanos(SECOND - into)).await;
    let req = Req::get();
    assert_eq!(burst(&route, &req, &clock, 8).await, 5);
    let refused = check(&route, &req, &clock).await;
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    // The whole allowance comes back at the window boundary, not before.
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(burst(&route, &req, &clock, 1).await, 0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(burst(&route, &req, &clock, 8).await, 5);
}

#[tokio::test(start_paused = true)]
async fn sliding_log_allows_the_limit_in_any_window() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("sliding_log", json!({})), &states)]);
    let clock = states.clock;
    let req = Req::get();
    assert_eq!(burst(&route, &req, &clock, 3).await, 3);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(burst(&route, &req, &clock, 5).await, 2);
    // The first three leave the window one second after they came, the next two half a second later.
    let refused = check(&route, &req, &clock).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    assert_eq!(refused.retry_after, Duration::from_secs(1), "500 ms, rounded up to whole seconds");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(burst(&route, &req, &clock, 5).await, 3);
}

#[tokio::test(start_paused = true)]
async fn sliding_window_weights_the_previous_window() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("sliding_window", json!({"limit": 10})), &states)]);
    let clock = states.clock;
    let into = clock.now() % SECOND;
    tokio::time::advance(Duration::from_nanos(SECOND - into)).await;
    let req = Req::get();
    assert_eq!(burst(&route, &req, &clock, 12).await, 10);
    // A quarter into the next window the previous one still weighs 3/4: 7.5 of 10 used, 2 more fit.
    tokio::time::advance(Duration::from_millis(1250)).await;
    assert_eq!(burst(&route, &req, &clock, 5).await, 2);
    // Honouring Retry-After works.
    let refused = check(&route, &req, &clock).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    tokio::time::advance(refused.retry_after).await;
    assert!(!check(&route, &req, &clock).await.outcome.refuses());
}

#[tokio::test(start_paused = true)]
async fn token_bucket_bursts_then_refills_at_the_rate() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("token_bucket", json!({"limit": 10, "burst": 20})), &states)]);
    let clock = states.clock;
    let req = Req::get();
    assert_eq!(burst(&route, &req, &clock, 30).await, 20, "the burst goes at once");
    let refused = check(&route, &req, &clock).await;
    assert_eq!(refused.retry_after, Duration::from_secs(1), "one token in 100 ms, rounded up");
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(burst(&route, &req, &clock, 3).await, 1, "10 per second: one per 100 ms");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(burst(&route, &req, &clock, 30).await, 10);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(burst(&route, &req, &clock, 30).await, 20, "never more than the burst");
}

#[tokio::test(start_paused = true)]
async fn leaky_bucket_polices_at_an_even_rate() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("leaky_bucket", json!({"limit": 10, "burst": 2})), &states)]);
    let clock = states.clock;
    let req = Req::get();
    assert_eq!(burst(&route, &req, &clock, 5).await, 2);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(burst(&route, &req, &clock, 5).await, 1);
    let refused = check(&route, &req, &clock).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    tokio::time::advance(refused.retry_after).await;
    assert!(!check(&route, &req, &clock).await.outcome.refuses());
}

#[tokio::test(start_paused = true)]
async fn leaky_bucket_shapes_by_delaying() {
    let states = RateLimitStates::default();
    let config = limit("leaky_bucket", json!({"limit": 10, "mode": "shape", "max_delay": "250ms"}));
    let route = route(&[&compile("p", config, &states)]);
    let clock = states.clock;
    let req = Req::get();
    let delays: Vec<(Outcome, Duration)> = {
        let mut out = Vec::new();
        for _ in 0..5 {
            let d = check(&route, &req, &clock).await;
            out.push((d.outcome, d.delay));
        }
        out
    };
    // One at once, then one every 100 ms, queued up to 250 ms; the fifth would wait 400 ms.
    assert_eq!(
        delays,
        [
            (Outcome::Allowed, Duration::ZERO),
            (Outcome::Delayed, Duration::from_millis(100)),
            (Outcome::Delayed, Duration::from_millis(200)),
            (Outcome::Refused, Duration::ZERO),
            (Outcome::Refused, Duration::ZERO),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_are_released_when_dropped() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("concurrency", json!({"limit": 2, "per": null})), &states)]);
    let clock = states.clock;
    let req = Req::get();
    let first = check(&route, &req, &clock).await;
    let second = check(&route, &req, &clock).await;
    assert!(!first.outcome.refuses() && !second.outcome.refuses());
    assert_eq!(check(&route, &req, &clock).await.outcome, Outcome::Refused);
    drop(first);
    let third = check(&route, &req, &clock).await;
    assert_eq!(third.outcome, Outcome::Allowed);
    drop((second, third));
}

#[tokio::test(start_paused = true)]
async fn keys_separate_clients_and_group_ipv6_networks() {
    let states = RateLimitStates::default();
    let route = route(&[&compile("p", limit("fixed_window", json!({"per": "1h", "limit": 2})), &states)]);
    let clock = states.clock;
    assert_eq!(burst(&route, &Req::get().from("192.0.2.1"), &clock, 3).await, 2);
    assert_eq!(burst(&route, &Req::get().from("192.0.2.2"), &clock, 3).await, 2);
    // Two addresses of one /64 are one client.
    assert_eq!(burst(&route, &Req::get().from("2001:db8::1"), &clock, 3).await, 2);
    assert_eq!(burst(&route, &Req::get().from("2001:db8::ffff:1"), &clock, 3).await, 0);
    assert_eq!(burst(&route, &Req::get().from("2001:db8:0:1::1"), &clock, 3).await, 2);
    // An IPv4-mapped IPv6 address is the IPv4 client.
    assert_eq!(burst(&route, &Req::get().from("::ffff:192.0.2.1"), &clock, 1).await, 0);
}

#[tokio::test(start_paused = true)]
async fn plans_pick_limits() {
    let states = RateLimitStates::default();
    let config = json!({"limits": [{
        "name": "per-minute", "key": "consumer", "limit": 3, "per": "1m", "algorithm": "fixed_window",
        "plans": {"free": {"limit": 2}, "pro": {"limit": 100}, "enterprise": {"unlimited": true}}
    }]});
    let route = route(&[&compile("plans", config, &states)]);
    let clock = states.clock;
    assert_eq!(burst(&route, &Req::get().consumer("acme", Some("free")), &clock, 10).await, 2);
    assert_eq!(burst(&route, &Req::get().consumer("globex", Some("pro")), &clock, 10).await, 10);
    assert_eq!(burst(&route, &Req::get().consumer("initech", Some("enterprise")), &clock, 50).await, 50);
    assert_eq!(burst(&route, &Req::get().consumer("hooli", None), &clock, 10).await, 3);
    assert_eq!(burst(&route, &Req::get().consumer("umbrella", Some("unknown")), &clock, 10).await, 3);
    // The header says the caller's own plan.
    let mut headers = HeaderMap::new();
    check(&route, &Req::get().consumer("globex", Some("pro")), &clock).await.headers.apply(&mut headers);
    assert_eq!(headers["ratelimit-policy"], "\"per-minute\";q=100;w=60");
    assert!(headers["ratelimit"].to_str().unwrap().starts_with("\"per-minute\";r=89;t="), "{headers:?}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_takes_nothing_from_the_other_limits() {
    let states = RateLimitStates::default();
    let config = json!({"limits": [
        {"name": "per-client", "key": "client_ip", "limit": 2, "per": "1h", "algorithm": "fixed_window"},
        {"name": "global", "key": [], "limit": 5, "per": "1h", "algorithm": "fixed_window"},
    ]});
    let route = route(&[&compile("h", config, &states)]);
    let clock = states.clock;
    // One client is cut at 2 by its own limit; its 8 refused requests leave the global count at 2.
    assert_eq!(burst(&route, &Req::get().from("192.0.2.1"), &clock, 10).await, 2);
    assert_eq!(burst(&route, &Req::get().from("192.0.2.2"), &clock, 1).await, 1);
    assert_eq!(burst(&route, &Req::get().from("192.0.2.3"), &clock, 1).await, 1);
    assert_eq!(burst(&route, &Req::get().from("192.0.2.4"), &clock, 2).await, 1, "the global ceiling: 5");
    let refused = check(&route, &Req::get().from("192.0.2.5"), &clock).await;
    assert_eq!(refused.limit.as_deref(), Some("h/global"));
}

#[tokio::test(start_paused = true)]
async fn costs_weigh_requests() {
    let states = RateLimitStates::default();
    let mut config = limit("fixed_window", json!({"limit": 10, "per": "1h"}));
    config["costs"] = json!([{"methods": ["POST"], "path": "/search", "cost": 5}]);
    let route = route(&[&compile("p", config, &states)]);
    let clock = states.clock;
    let mut search = Req::get();
    (search.method, search.path) = (Method::POST, "/search");
    assert_eq!(burst(&route, &search, &clock, 3).await, 2);
    assert_eq!(burst(&route, &Req::get().from("192.0.2.9"), &clock, 20).await, 10);
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_falls_back_to_the_address_or_is_refused() {
    let states = RateLimitStates::default();
    let fallback = compile(
        "fallback",
        json!({"limits": [{"name": "user", "key": "user", "limit": 1, "per": "1h", "algorithm": "fixed_window"}]}),
        &states,
    );
    let refuse = compile(
        "refuse",
        json!({"limits": [{"name": "user", "key": "user", "limit": 1, "per": "1h", "when_key_missing": "refuse"}]}),
        &states,
    );
    let clock = states.clock;
    assert_eq!(burst(&route(&[&fallback]), &Req::get(), &clock, 3).await, 1);
    assert_eq!(burst(&route(&[&fallback]), &Req::get().from("192.0.2.7"), &clock, 3).await, 1);
    assert_eq!(burst(&route(&[&refuse]), &Req::get(), &clock, 3).await, 0);
    assert_eq!(burst(&route(&[&refuse]), &Req::get().consumer("acme", None), &clock, 3).await, 1);
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_lets_everything_through_and_says_what_it_would_refuse() {
    let states = RateLimitStates::default();
    let policy = compile("p", limit("fixed_window", json!({"limit": 1, "per": "1h"})), &states);
    let route = RouteRateLimit::new(vec![policy], true);
    let clock = states.clock;
    let outcomes: Vec<Outcome> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(check(&route, &Req::get(), &clock).await.outcome);
        }
        out
    };
    assert_eq!(outcomes, [Outcome::Allowed, Outcome::ShadowRefused, Outcome::ShadowRefused]);
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_counters_and_raising_a_limit_refills_no_one() {
    let states = RateLimitStates::default();
    let clock = states.clock;
    let v1 = compile("p", limit("token_bucket", json!({"limit": 5, "per": "1h"})), &states);
    assert_eq!(burst(&route(&[&v1]), &Req::get(), &clock, 10).await, 5);
    // Same policy id, limit name and algorithm, higher limit: the empty bucket stays empty.
    let v2 = compile("p", limit("token_bucket", json!({"limit": 50, "per": "1h"})), &states);
    drop(v1);
    assert_eq!(burst(&route(&[&v2]), &Req::get(), &clock, 10).await, 0);
    // Another policy id is another counter.
    let other = compile("q", limit("token_bucket", json!({"limit": 5, "per": "1h"})), &states);
    assert_eq!(burst(&route(&[&other]), &Req::get(), &clock, 10).await, 5);
}

#[tokio::test(start_paused = true)]
async fn headers_follow_the_limit_with_the_least_left() {
    let states = RateLimitStates::default();
    let config = json!({"headers": {"legacy": true}, "limits": [
        {"name": "burst", "key": "client_ip", "limit": 10, "per": "1s"},
        {"name": "daily", "key": "client_ip", "limit": 3, "calendar": "day", "algorithm": "fixed_window"},
    ]});
    let route = route(&[&compile("p", config, &states)]);
    let clock = states.clock;
    let mut headers = HeaderMap::new();
    check(&route, &Req::get(), &clock).await.headers.apply(&mut headers);
    assert_eq!(headers["ratelimit-policy"], "\"burst\";q=10;w=1, \"daily\";q=3;w=86400");
    assert!(headers["ratelimit"].to_str().unwrap().starts_with("\"daily\";r=2;t="), "{headers:?}");
    assert_eq!(headers["x-ratelimit-limit"], "3");
    assert_eq!(headers["x-ratelimit-remaining"], "2");
}

#[test]
fn config_errors_name_the_field() {
    assert_eq!(issues(json!({"limits": []})), ["limits: a policy needs at least one limit"]);
    assert_eq!(
        issues(json!({"limits": [{"name": "a", "key": "client_ip", "limit": 5}]})),
        ["limits[0].per: this algorithm needs a window (`per: 1s`)"]
    );
    assert_eq!(
        issues(json!({"limits": [{"name": "a", "key": "client_ip", "limit": 5, "calendar": "day"}]})),
        [
            "limits[0].calendar: calendar windows need `algorithm: fixed_window`",
            "limits[0].per: this algorithm needs a window (`per: 1s`)"
        ]
    );
    assert_eq!(
        issues(json!({"limits": [{"name": "a", "key": "client_ip", "limit": 5, "calendar": "month",
            "algorithm": "fixed_window", "time_zone": "Nowhere/City"}]}))[0]
            .split(':')
            .next(),
        Some("limits[0].time_zone")
    );
    assert_eq!(
        issues(json!({"limits": [{"name": "a", "key": {"header": "bad header"}, "limit": 5, "per": "1s"}]})),
        ["limits[0].key: `bad header` is not a valid header name"]
    );
    assert_eq!(
        issues(json!({"limits": [{"name": "a", "key": "client_ip", "limit": 5, "per": "1s",
            "algorithm": "leaky_bucket", "mode": "shape"}]})),
        ["limits[0].max_delay: `mode: shape` needs `max_delay` (the longest a request is held)"]
    );
    assert_eq!(
        issues(json!({"limits": [{"name": "a b", "key": "client_ip", "limit": 5, "per": "1s"},
            {"name": "c", "key": "client_ip", "limit": 20000, "per": "1s", "algorithm": "sliding_log"}]})),
        [
            "limits[0].name: a limit name is letters, digits, `-`, `_` and `.`",
            "limits[1].limit: a sliding log keeps one entry per request: at most 10000"
        ]
    );
}

/// One million distinct keys over a minute of traffic: the store keeps about the keys active within the
/// refill time, not all of them. Prints bytes per key.
#[test]
fn memory_stays_bounded_under_a_million_keys() {
    let algorithm = Algorithm::TokenBucket { window: SECOND };
    let quota = Quota { limit: 10, burst: 10 };
    let store = LocalStore::new(1_000_000);
    let start = 1_700_000_000 * SECOND;
    let mut peak = 0;
    // 1,000,000 keys at 16,667 new keys per second: a bucket refills in 1 s, so ~17k are live at any time.
    for i in 0..1_000_000u64 {
        let now = start + i * 60 * SECOND / 1_000_000;
        let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert!(store.take(&algorithm, quota, quota, key, now, 1).allowed);
        if i % 10_000 == 0 {
            peak = peak.max(store.len());
        }
    }
    let len = store.len();
    let bytes = store.memory_bytes();
    eprintln!("1M keys over 60 s: {len} kept (peak {peak}), {bytes} bytes, {} bytes per kept key", bytes / len.max(1));
    assert!(peak < 100_000, "idle keys are forgotten: peak {peak}");
    assert!(bytes < 16 * 1024 * 1024, "{bytes} bytes");

    // All at one instant (nothing idle): the cap holds.
    let capped = LocalStore::new(100_000);
    for i in 0..1_000_000u64 {
        capped.take(&algorithm, quota, quota, i.wrapping_mul(0x9E37_79B9_7F4A_7C15), start, 1);
    }
    assert!(capped.len() <= 100_000 + 64 * 2, "{} keys", capped.len());
    eprintln!("1M keys at once, max_keys 100000: {} kept, {} bytes", capped.len(), capped.memory_bytes());
}

#[test]
fn give_back_undoes_take() {
    let quota = Quota { limit: 3, burst: 3 };
    for algorithm in [
        Algorithm::FixedWindow(super::algorithm::WindowSpan::Every(SECOND)),
        Algorithm::SlidingWindow { window: SECOND },
        Algorithm::SlidingLog { window: SECOND },
        Algorithm::TokenBucket { window: SECOND },
        Algorithm::LeakyBucket { window: SECOND, max_delay: None },
        Algorithm::Concurrency,
    ] {
        let now = 1_700_000_000 * SECOND + 123;
        let mut counter: Counter = algorithm.fresh(quota);
        assert!(algorithm.take(quota, &mut counter, now, 2).allowed);
        let before = counter.clone();
        assert!(algorithm.take(quota, &mut counter, now, 1).allowed);
        algorithm.give_back(quota, &mut counter, now, now, 1);
        assert_eq!(counter, before, "{algorithm:?}");
    }
}

/// For every algorithm: past the limit, waiting exactly the `Retry-After` the refusal gave is enough.
#[tokio::test(start_paused = true)]
async fn waiting_retry_after_is_enough_for_every_algorithm() {
    for (algorithm, extra) in [
        ("fixed_window", json!({"per": "2s"})),
        ("sliding_log", json!({"per": "2s"})),
        ("sliding_window", json!({"per": "2s"})),
        ("token_bucket", json!({"per": "2s", "burst": 3})),
        ("leaky_bucket", json!({"per": "2s", "burst": 2})),
        ("leaky_bucket", json!({"per": "2s", "mode": "shape", "max_delay": "500ms"})),
    ] {
        let states = RateLimitStates::default();
        let route = route(&[&compile("p", limit(algorithm, extra.clone()), &states)]);
        let clock = states.clock;
        let req = Req::get();
        // Past the limit at some point in a window.
        tokio::time::advance(Duration::from_millis(700)).await;
        let refused = loop {
            let decision = check(&route, &req, &clock).await;
            if decision.outcome == Outcome::Refused {
                break decision;
            }
        };
        assert!(refused.retry_after >= Duration::from_secs(1), "{algorithm} {extra}");
        tokio::time::advance(refused.retry_after).await;
        let after = check(&route, &req, &clock).await;
        assert!(!after.outcome.refuses(), "{algorithm} {extra}: refused again after Retry-After");
    }
}
