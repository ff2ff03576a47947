//! Rate limiting end to end with the local store: exact counts under 50 concurrent clients for every algorithm,
//! headers and 429 problems, `Retry-After` honoured, the real client address (spoofed `X-Forwarded-For` gives
//! nothing), HTTP/1.1 and HTTP/2 sharing a bucket, plans by consumer, the hierarchy, shadow mode, reloads keeping
//! counters, config errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use serde_json::Value;
use turnpike_test::client::empty;
use turnpike_test::{Client, MockReply, MockUpstream, Reply, TestGateway};

fn config(upstream: SocketAddr, policies: &str, route_extra: &str) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
rate_limits:
{policies}
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: app
    rate_limit: {{ policies: [limited] }}
{route_extra}
"#
    )
}

fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Request<turnpike_test::client::Body> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

async fn get(client: &Client, gw: &TestGateway, headers: &[(&str, &str)]) -> Reply {
    client.send(request(Method::GET, &gw.url("/api/items"), headers)).await
}

/// `n` concurrent clients, each on its own connection, one request each; the statuses.
async fn concurrent(gw: &TestGateway, n: usize) -> Vec<StatusCode> {
    let url = Arc::new(gw.url("/api/items"));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Client::h1().get(&url).await.status })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Every algorithm allows exactly its limit to 50 concurrent clients, refuses the rest with 429.
#[tokio::test]
async fn each_algorithm_allows_exactly_the_limit_under_50_concurrent_clients() {
    let upstream = MockUpstream::echo().await;
    for algorithm in [
        "fixed_window, per: 1d",
        "sliding_log, per: 1h",
        "sliding_window, per: 1h",
        "token_bucket, per: 1h",
        "leaky_bucket, per: 1h",
    ] {
        let policies = format!(
            "  limited: {{ limits: [{{ name: per-client, key: client_ip, limit: 20, algorithm: {algorithm} }}] }}"
        );
        let gw = TestGateway::start(&config(upstream.addr(), &policies, "")).await;
        let statuses = concurrent(&gw, 50).await;
        assert_eq!(count(&statuses, StatusCode::OK), 20, "{algorithm}: {statuses:?}");
        assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 30, "{algorithm}");
        gw.shutdown().await;
    }
}

/// A concurrency limit counts requests in flight: 5 of 20 simultaneous slow requests pass; once they are done,
/// the slots are free again.
#[tokio::test]
async fn concurrency_limits_count_requests_in_flight() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "slow").delay(Duration::from_millis(400))).await;
    let policies = "  limited: { limits: [{ name: in-flight, key: client_ip, limit: 5, algorithm: concurrency }] }";
    let gw = TestGateway::start(&config(upstream.addr(), policies, "")).await;
    let statuses = concurrent(&gw, 20).await;
    assert_eq!(count(&statuses, StatusCode::OK), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 15);
    let statuses = concurrent(&gw, 5).await;
    assert_eq!(count(&statuses, StatusCode::OK), 5, "slots released: {statuses:?}");
}

/// The headers move with each call; the 429 is a problem with `Retry-After` and the same headers; waiting as
/// long as `Retry-After` says works.
#[tokio::test]
async fn headers_count_down_and_retry_after_is_honoured() {
    let upstream = MockUpstream::echo().await;
    let policies = "  limited:\n    headers: { legacy: true }\n    limits: [{ name: per-client, key: client_ip, limit: 3, per: 1s, algorithm: token_bucket }]";
    let gw = TestGateway::start(&config(upstream.addr(), policies, "")).await;
    let client = Client::h1();
    for remaining in [2, 1, 0] {
        let reply = get(&client, &gw, &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("ratelimit-policy"), Some("\"per-client\";q=3;w=1"));
        let current = reply.header("ratelimit").unwrap();
        assert!(current.starts_with(&format!("\"per-client\";r={remaining};t=")), "{current}");
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining.to_string().as_str()));
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
    }
    let refused = get(&client, &gw, &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let problem: Value = refused.json();
    assert_eq!(problem["type"], "https://turnpike.dev/problems/rate-limited");
    assert_eq!(problem["request_id"].as_str(), refused.header("x-request-id"));
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry_after, 1, "one token in a third of a second, rounded up");
    assert_eq!(refused.header("ratelimit"), Some("\"per-client\";r=0;t=1"), "t is the Retry-After");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(get(&client, &gw, &[]).await.status, StatusCode::OK);

    let log = gw.access_log(5).await;
    let decisions: Vec<&str> = log.iter().map(|l| l["rate_limit"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["allowed", "allowed", "allowed", "refused", "allowed"]);
    assert_eq!(log[3]["rate_limit_by"], "limited/per-client");
}

/// Without trusted proxies, `X-Forwarded-For` is the client's word and gives no new allowance; from a trusted
/// proxy it names the real client, who gets its own.
#[tokio::test]
async fn spoofed_forwarded_for_gives_no_new_allowance() {
    let upstream = MockUpstream::echo().await;
    let policies = "  limited: { limits: [{ name: per-client, key: client_ip, limit: 3, per: 1h }] }";
    let gw = TestGateway::start(&config(upstream.addr(), policies, "")).await;
    let client = Client::h1();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let spoofed = format!("203.0.113.{i}");
        statuses.push(get(&client, &gw, &[("x-forwarded-for", &spoofed)]).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);

    let trusted =
        config(upstream.addr(), policies, "").replace("watch: false", "watch: false, trusted_proxies: [127.0.0.1/32]");
    let gw = TestGateway::start(&trusted).await;
    for i in 0..3 {
        let real = format!("203.0.113.{i}");
        for _ in 0..3 {
            assert_eq!(get(&client, &gw, &[("x-forwarded-for", &real)]).await.status, StatusCode::OK);
        }
        assert_eq!(get(&client, &gw, &[("x-forwarded-for", &real)]).await.status, StatusCode::TOO_MANY_REQUESTS);
    }
}

/// HTTP/1.1 and HTTP/2 clients from one address share one bucket.
#[tokio::test]
async fn http1_and_http2_share_a_bucket() {
    let upstream = MockUpstream::echo().await;
    let policies = "  limited: { limits: [{ name: per-client, key: client_ip, limit: 4, per: 1h }] }";
    let gw = TestGateway::start(&config(upstream.addr(), policies, "")).await;
    let (h1, h2) = (Client::h1(), Client::h2());
    let mut seen = Vec::new();
    for client in [&h1, &h2, &h1, &h2, &h2, &h1] {
        let reply = get(client, &gw, &[]).await;
        seen.push((reply.version, reply.status.as_u16()));
    }
    assert_eq!(seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [200, 200, 200, 200, 429, 429]);
    assert!(
        seen.iter().any(|(v, _)| *v == http::Version::HTTP_2) && seen.iter().any(|(v, _)| *v == http::Version::HTTP_11)
    );
}

const CONSUMERS: &str = r#"
auth_policies:
  keys: { api_key: { header: x-api-key } }
consumers:
  - { id: acme, plan: free, keys: [{ key: acme-key-0123456789abcdef }] }
  - { id: globex, plan: pro, keys: [{ key: globex-key-0123456789abcdef }] }
"#;

fn plan_config(upstream: SocketAddr, per_consumer: u32) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
{CONSUMERS}
rate_limits:
  plans:
    limits:
      - name: per-consumer
        key: consumer
        algorithm: fixed_window
        limit: {per_consumer}
        per: 1h
        plans: {{ free: {{ limit: 2 }}, pro: {{ limit: 100 }} }}
      - {{ name: route-ceiling, key: route, limit: 12, per: 1h, algorithm: fixed_window }}
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: app
    auth: {{ policies: [keys] }}
    rate_limit: {{ policies: [plans] }}
"#
    )
}

/// A `free` consumer is cut at its plan's limit while a `pro` one is not; the free consumer's refused requests
/// take nothing from the route's ceiling; a reload that changes limits keeps every counter.
#[tokio::test]
async fn plans_hierarchy_and_reload() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&plan_config(upstream.addr(), 5)).await;
    let client = Client::h1();
    let acme = [("x-api-key", "acme-key-0123456789abcdef")];
    let globex = [("x-api-key", "globex-key-0123456789abcdef")];
    let mut acme_statuses = Vec::new();
    for _ in 0..6 {
        acme_statuses.push(get(&client, &gw, &acme).await.status.as_u16());
    }
    assert_eq!(acme_statuses, [200, 200, 429, 429, 429, 429], "free: 2");
    // The ceiling of 12 lost only acme's 2 allowed requests: globex gets 10 more.
    let mut globex_ok = 0;
    for _ in 0..12 {
        if get(&client, &gw, &globex).await.status == StatusCode::OK {
            globex_ok += 1;
        }
    }
    assert_eq!(globex_ok, 10);
    let refused = get(&client, &gw, &globex).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.header("ratelimit").unwrap().starts_with("\"route-ceiling\";r=0;"));

    // Raising the default limit changes nothing for counters already at their plan's limit.
    gw.reload(&plan_config(upstream.addr(), 50)).unwrap();
    assert_eq!(get(&client, &gw, &acme).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(&client, &gw, &globex).await.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Shadow mode lets everything through and logs what it would have refused.
#[tokio::test]
async fn shadow_mode_only_logs() {
    let upstream = MockUpstream::echo().await;
    let policies = "  limited: { limits: [{ name: per-client, key: client_ip, limit: 1, per: 1h }] }";
    let cfg =
        config(upstream.addr(), policies, "").replace("policies: [limited] }", "policies: [limited], shadow: true }");
    let gw = TestGateway::start(&cfg).await;
    let client = Client::h1();
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, &[]).await.status, StatusCode::OK);
    }
    let log = gw.access_log(3).await;
    let decisions: Vec<&str> = log.iter().map(|l| l["rate_limit"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["allowed", "shadow_refused", "shadow_refused"]);
    assert_eq!(upstream.count(), 3);
}

/// Config errors point at the field, with the line.
#[tokio::test]
async fn config_errors_point_at_the_field() {
    let cfg = r#"
server: { watch: false }
listeners: [{ name: public, address: 127.0.0.1:0 }]
upstreams:
  app: { endpoints: ["127.0.0.1:9"] }
rate_limits:
  limited:
    limits:
      - { name: a, key: client_ip, limit: 5 }
routes:
  - id: api
    upstream: app
    rate_limit: { policies: [limitd] }
"#;
    let err = TestGateway::try_start(cfg, 1).await.err().unwrap().to_string();
    assert!(err.contains("rate_limits.limited.limits[a].per") && err.contains("needs a window"), "{err}");
    assert!(
        err.contains("routes[api].rate_limit.policies[0]") && err.contains("unknown rate-limit policy `limitd`"),
        "{err}"
    );
    assert!(err.contains("did you mean `limited`?"), "{err}");
}

/// A shaping leaky bucket delays instead of refusing: 4 simultaneous requests at 10 per second all pass, the
/// upstream gets them spread over at least 300 ms; the fifth would wait past `max_delay` and is refused.
#[tokio::test]
async fn shaping_spaces_requests_instead_of_refusing() {
    let upstream = MockUpstream::echo().await;
    let policies = "  limited: { limits: [{ name: smooth, key: client_ip, limit: 10, per: 1s, algorithm: leaky_bucket, mode: shape, max_delay: 350ms }] }";
    let gw = TestGateway::start(&config(upstream.addr(), policies, "")).await;
    let start = tokio::time::Instant::now();
    let statuses = concurrent(&gw, 5).await;
    let elapsed = start.elapsed();
    assert_eq!(count(&statuses, StatusCode::OK), 4, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 1, "{statuses:?}");
    assert!(elapsed >= Duration::from_millis(300), "the fourth left 300 ms after the first: {elapsed:?}");
    let log = gw.access_log(5).await;
    let delayed = log.iter().filter(|l| l["rate_limit"] == "delayed").count();
    assert_eq!(delayed, 3, "{log:?}");
}

/// A shared store needs `server.redis`; a bad Redis URL is reported there; hybrid cannot batch concurrency.
#[tokio::test]
async fn shared_store_config_errors() {
    let base = |server: &str, policies: &str| {
        format!(
            r#"
server: {{ watch: false{server} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["127.0.0.1:9"] }}
rate_limits:
{policies}
routes:
  - {{ id: api, upstream: app, rate_limit: {{ policies: [shared] }} }}
"#
        )
    };
    let err =
        start_error(&base("", "  shared: { store: redis, limits: [{ name: a, key: client_ip, limit: 5, per: 1s }] }"))
            .await;
    assert!(err.contains("rate_limits.shared.store") && err.contains("needs `server.redis`"), "{err}");
    let err = start_error(&base(
        r#", redis: { url: "http://127.0.0.1:6379" }"#,
        "  shared: { store: redis, limits: [{ name: a, key: client_ip, limit: 5, per: 1s }] }",
    ))
    .await;
    assert!(err.contains("server.redis"), "{err}");
    let err = start_error(&base(
        r#", redis: { url: "redis://127.0.0.1:6379" }"#,
        "  shared: { store: hybrid, limits: [{ name: a, key: client_ip, limit: 5, algorithm: concurrency }] }",
    ))
    .await;
    assert!(err.contains("rate_limits.shared.limits[a].algorithm") && err.contains("batches"), "{err}");
}

/// Why a gateway refused to start with `yaml`.
async fn start_error(yaml: &str) -> String {
    TestGateway::try_start(yaml, 1).await.err().expect("the configuration is refused").to_string()
}
