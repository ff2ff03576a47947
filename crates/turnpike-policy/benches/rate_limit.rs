//! The local rate-limit decision: one key, a million keys, and two threads on one key, for a token bucket keyed
//! by consumer (the benchmark shape) through the whole route check (key hashing, store, headers), and
//! the store's `take` alone.

// Bench code: a failed unwrap is a broken bench; std's Instant is right here (no paused time involved).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http::{HeaderMap, Method};
use turnpike_core::{Consumer, Identity, IdentitySource};
use turnpike_policy::rate_limit::algorithm::{Algorithm, Quota, SECOND};
use turnpike_policy::rate_limit::local::LocalStore;
use turnpike_policy::rate_limit::{
    Check, Clock, Decision, RateLimitInput, RateLimitPolicy, RateLimitStates, RouteRateLimit,
};
use turnpike_router::Params;

fn route(states: &RateLimitStates) -> RouteRateLimit {
    // Large enough that the bench never hits the limit: the allowed path is what every request pays.
    let config = serde_json::json!({"limits": [{
        "name": "per-consumer", "key": "consumer", "algorithm": "token_bucket", "limit": 1_000_000_000u64, "per": "1s"
    }]});
    let policy = RateLimitPolicy::compile("bench", &serde_json::from_value(config).unwrap(), states, None).unwrap();
    RouteRateLimit::new(vec![Arc::new(policy)], false)
}

fn identity(id: &str) -> Identity {
    let mut identity = Identity::new(IdentitySource::ApiKey, Some(id.into()));
    identity.consumer = Some(Arc::new(Consumer {
        id: id.into(),
        name: id.into(),
        plan: None,
        roles: Vec::new(),
        metadata: Default::default(),
    }));
    identity
}

/// Runs the check; local limits decide without a future.
fn check(route: &RouteRateLimit, identity: &Identity, clock: &Clock, headers: &HeaderMap) -> Decision {
    let params = Params::empty("/api/items");
    let input = RateLimitInput {
        method: &Method::GET,
        path: "/api/items",
        query: None,
        headers,
        params: &params,
        route: "api",
        client_ip: "192.0.2.1".parse().unwrap(),
        identity: Some(identity),
    };
    match route.check(&input, clock) {
        Check::Decided(decision) => decision,
        Check::Shared(_) => panic!("only local limits here"),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = runtime.enter();
    let states = RateLimitStates::default();
    let route = route(&states);
    let headers = HeaderMap::new();

    let one = identity("acme");
    c.bench_function("rate_limit check, one key", |b| {
        b.iter(|| black_box(check(&route, &one, &states.clock, &headers)))
    });

    let many: Vec<Identity> = (0..1_000_000).map(|i| identity(&format!("consumer-{i}"))).collect();
    for id in &many {
        check(&route, id, &states.clock, &headers);
    }
    let mut i = 0;
    c.bench_function("rate_limit check, 1M keys", |b| {
        b.iter(|| {
            i = (i + 7919) % many.len();
            black_box(check(&route, &many[i], &states.clock, &headers))
        })
    });

    let algorithm = Algorithm::TokenBucket { window: SECOND };
    let quota = Quota { limit: 1_000_000_000, burst: 1_000_000_000 };
    let store = LocalStore::new(1_000_000);
    let mut now = 1_700_000_000 * SECOND;
    c.bench_function("LocalStore::take, one key", |b| {
        b.iter(|| {
            now += 1000;
            black_box(store.take(&algorithm, quota, quota, 42, now, 1))
        })
    });

    // Two threads on one key: both hit the same shard lock on every decision.
    c.bench_function("rate_limit check, one key, 2 threads contending", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        let _guard = runtime.enter();
                        for _ in 0..iters {
                            black_box(check(&route, &one, &states.clock, &headers));
                        }
                    });
                }
            });
            // Each thread made `iters` decisions in this time: the time one decision takes while the other
            // thread contends for the same key.
            start.elapsed()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
