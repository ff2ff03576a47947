//! Rate limits shared through Redis: two gateway instances counting against one server (exact, and the hybrid
//! mode's batches), and a Redis that stops answering mid-traffic (every request still finishes within the timeout
//! and follows `on_store_error`; limiting resumes when Redis does).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use turnpike_test::redis::{ChildRedis, SHARED_REDIS, redis_server_available, shared_redis};
use turnpike_test::{Client, MockUpstream, TestGateway};

fn prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("turnpike:test:{}:{nanos}:", std::process::id())
}

/// A gateway config with `server.redis`: a short timeout where the test is about failures, a long one where it is
/// about counting (a loaded CI machine must not turn 1,000 concurrent decisions into timeouts).
fn config(upstream: std::net::SocketAddr, redis_url: &str, prefix: &str, policies: &str, routes: &str) -> String {
    let timeout = if redis_url.ends_with(":6379") { "5s" } else { "50ms" };
    format!(
        r#"
server: {{ watch: false, redis: {{ url: "{redis_url}", key_prefix: "{prefix}", timeout: {timeout} }} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
rate_limits:
{policies}
routes:
{routes}
"#
    )
}

/// 1,000 requests at once, split over two gateways, with every client on its own task; the statuses.
async fn split_load(gateways: [&TestGateway; 2], total: usize) -> Vec<StatusCode> {
    let urls = [Arc::new(gateways[0].url("/api/items")), Arc::new(gateways[1].url("/api/items"))];
    let clients = [Client::h1(), Client::h1()];
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let (url, client) = (urls[i % 2].clone(), clients[i % 2].clone());
            tokio::spawn(async move { client.get(&url).await.status })
        })
        .collect();
    let mut out = Vec::with_capacity(total);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn allowed(statuses: &[StatusCode]) -> usize {
    statuses.iter().filter(|s| **s == StatusCode::OK).count()
}

const ROUTE: &str = "  - { id: api, match: { prefix: /api }, upstream: app, rate_limit: { policies: [shared] } }";

/// Two instances, one Redis, limit 100, 1,000 concurrent requests over both: exactly 100 allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_an_exact_limit_through_redis() {
    if !shared_redis("two_instances_share_an_exact_limit_through_redis") {
        return;
    }
    let upstream = MockUpstream::echo().await;
    let policies = "  shared: { store: redis, limits: [{ name: total, key: route, limit: 100, per: 1h, algorithm: token_bucket }] }";
    let cfg = config(upstream.addr(), &format!("redis://{SHARED_REDIS}"), &prefix(), policies, ROUTE);
    let (a, b) = (TestGateway::start(&cfg).await, TestGateway::start(&cfg).await);
    let statuses = split_load([&a, &b], 1000).await;
    assert_eq!(allowed(&statuses), 100, "exactly the limit over both instances");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 900);
}

/// The same with `store: hybrid` (batches of 10 per instance): units are taken from Redis before they are spent,
/// so no more than the limit is ever allowed; units one instance holds unspent are the undershoot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_batches_stay_within_the_limit() {
    if !shared_redis("hybrid_batches_stay_within_the_limit") {
        return;
    }
    let upstream = MockUpstream::echo().await;
    let policies = "  shared: { store: hybrid, batch: 10, limits: [{ name: total, key: route, limit: 100, per: 1h, algorithm: token_bucket }] }";
    let cfg = config(upstream.addr(), &format!("redis://{SHARED_REDIS}"), &prefix(), policies, ROUTE);
    let (a, b) = (TestGateway::start(&cfg).await, TestGateway::start(&cfg).await);
    let statuses = split_load([&a, &b], 1000).await;
    let n = allowed(&statuses);
    eprintln!("hybrid, batch 10, 2 instances, limit 100, 1000 requests: {n} allowed (overshoot {})", n as i64 - 100);
    assert!(n <= 100, "{n} allowed");
    assert!(n >= 100 - 2 * 10, "at most one batch per instance stranded: {n} allowed");

    // A fixed window: units of one window may be spent in it only, so the overshoot is bounded per window too.
    let policies = "  shared: { store: hybrid, batch: 10, limits: [{ name: total, key: route, limit: 100, per: 1h, algorithm: fixed_window }] }";
    let cfg = config(upstream.addr(), &format!("redis://{SHARED_REDIS}"), &prefix(), policies, ROUTE);
    let (a, b) = (TestGateway::start(&cfg).await, TestGateway::start(&cfg).await);
    let n = allowed(&split_load([&a, &b], 1000).await);
    eprintln!("hybrid, batch 10, fixed window: {n} allowed");
    assert!((80..=100).contains(&n), "{n} allowed");
}

/// Redis stops answering (SIGSTOP) mid-traffic: every request still finishes within the Redis timeout plus a
/// margin, `on_store_error: allow` lets it through, `deny` answers 429; when Redis resumes, the gateway uses it
/// again by itself and limits are enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_holds_requests() {
    if !redis_server_available("a_stalled_redis_never_holds_requests") {
        return;
    }
    let redis = ChildRedis::start();
    let upstream = MockUpstream::echo().await;
    let policies = "  allow: { store: redis, on_store_error: allow, limits: [{ name: n, key: {header: x-client}, limit: 5, per: 1h }] }
  deny: { store: redis, on_store_error: deny, limits: [{ name: n, key: {header: x-client}, limit: 5, per: 1h }] }";
    let routes = "  - { id: allow, match: { prefix: /allow }, upstream: app, rate_limit: { policies: [allow] } }
  - { id: deny, match: { prefix: /deny }, upstream: app, rate_limit: { policies: [deny] } }";
    let gw = TestGateway::start(&config(upstream.addr(), &redis.url(), &prefix(), policies, routes)).await;
    let client = Client::h1();
    let get = |path: &str, who: &'static str| {
        let (client, url) = (client.clone(), gw.url(path));
        async move {
            let req = http::Request::get(url).header("x-client", who).body(turnpike_test::client::empty()).unwrap();
            client.send(req).await
        }
    };
    for path in ["/allow", "/deny"] {
        for _ in 0..2 {
            assert_eq!(get(path, "a").await.status, StatusCode::OK);
        }
    }

    redis.pause();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let path = if i % 2 == 0 { "/allow" } else { "/deny" };
            let request = get(path, "a");
            tokio::spawn(async move {
                let start = Instant::now();
                let status = request.await.status;
                (path, status, start.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (path, status, took) = task.await.unwrap();
        slowest = slowest.max(took);
        let expected = if path == "/allow" { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(status, expected, "{path} with Redis stopped");
    }
    eprintln!("Redis stopped: the slowest of 40 requests took {slowest:?} (timeout 50 ms)");
    assert!(slowest < Duration::from_millis(50 + 450), "a request waited {slowest:?} on a stalled Redis");
    let log = gw.access_log(44).await;
    let count = |decision: &str| log.iter().filter(|l| l["rate_limit"] == decision).count();
    assert_eq!((count("store_error_allowed"), count("store_error_refused")), (20, 20));

    // Back: the store reconnects by itself and limits apply again. (The takes that timed out were queued in
    // Redis and ran when it resumed, as a remote counter's may: client `a` is out of allowance; `b` counts
    // exactly from zero.)
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get("/allow", "b").await;
        if reply.header("ratelimit").is_some_and(|v| v.starts_with("\"n\";r=4;")) {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never came back into use: {:?}", reply.header("ratelimit"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get("/allow", "b").await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429], "one take found Redis back, four more, then the limit of 5");
    assert_eq!(get("/allow", "a").await.status, StatusCode::TOO_MANY_REQUESTS);
}
