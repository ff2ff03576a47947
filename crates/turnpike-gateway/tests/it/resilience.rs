//! Upstream resilience end to end: active health checks and outlier ejection, retries (idempotency, replayable
//! bodies, the budget), the circuit breaker across a reload, the concurrency limit and consistent hashing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use turnpike_test::client::{empty, full};
use turnpike_test::{Client, MockReply, MockUpstream, TestGateway, eventually, refused_addr};

/// One listener, one upstream `backend` with `endpoints` and `upstream_extra` (lines indented four spaces), one
/// route `api` on `/api` with `route_extra`.
fn config(endpoints: &[String], upstream_extra: &str, route_extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!(r#""{e}""#)).collect();
    format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  backend:
    endpoints: [{}]
{upstream_extra}
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: backend
{route_extra}
"#,
        list.join(", ")
    )
}

fn addrs(mocks: &[&MockUpstream]) -> Vec<String> {
    mocks.iter().map(|m| m.addr().to_string()).collect()
}

/// A mock that answers 200 with its `name` in the body (and 200 on `/health`).
async fn named(name: &'static str) -> MockUpstream {
    MockUpstream::start(move |_| MockReply::text(200, name)).await
}

fn post(url: &str, body: &'static str) -> Request<turnpike_test::client::Body> {
    Request::post(url).body(full(body)).expect("valid request")
}

/// `n` GETs of `url` at once, each on its own connection: their statuses and `Retry-After` headers.
async fn concurrent_gets(url: &str, n: usize) -> Vec<(u16, Option<String>)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let reply = Client::h1().get(&url).await;
                (reply.status.as_u16(), reply.header("retry-after").map(str::to_string))
            })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.unwrap());
    }
    out
}

fn available(gw: &TestGateway, addr: std::net::SocketAddr) -> bool {
    let snap = gw.handle.snapshot();
    let upstream = &snap.upstreams["backend"];
    upstream.endpoints.iter().find(|e| e.endpoint.addr == addr).is_some_and(|e| e.endpoint.health.is_available())
}

#[tokio::test]
async fn a_killed_endpoint_costs_clients_nothing_is_ejected_and_comes_back() {
    let a = named("a").await;
    let b = named("b").await;
    let c = named("c").await;
    let b_addr = b.addr();
    let upstream = "    balance: round_robin
    health_check: { path: /health, interval: 100ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2, jitter: 0s }";
    let gw = TestGateway::start(&config(&addrs(&[&a, &b, &c]), upstream, "")).await;
    let client = Client::h1();
    let mut seen = HashMap::new();
    for i in 0..90 {
        if i == 30 {
            b.kill();
        }
        let reply = client.get(&gw.url("/api/items")).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        *seen.entry(reply.text()).or_insert(0) += 1;
    }
    assert!(seen.get("b").copied().unwrap_or(0) >= 5, "b served before it died: {seen:?}");
    // Passive ejection (3 connect failures in a row at most) or the active checker took it out.
    assert!(eventually(Duration::from_secs(5), || !available(&gw, b_addr)).await, "the dead endpoint is still in use");
    let log = gw.access_log(90).await;
    assert!(log.iter().any(|l| l["attempts"] == 2), "no request was retried: the kill went unnoticed");
    let checker_says_down = || {
        let snap = gw.handle.snapshot();
        snap.upstreams["backend"].endpoints.iter().any(|e| e.endpoint.addr == b_addr && !e.endpoint.health.active_up())
    };
    assert!(eventually(Duration::from_secs(5), checker_says_down).await, "the active checker did not see it die");

    // It comes back on the same address: the active checker re-admits it.
    let _b2 = MockUpstream::start_at(b_addr, |_| MockReply::text(200, "b")).await;
    assert!(
        eventually(Duration::from_secs(5), || available(&gw, b_addr)).await,
        "the endpoint was not re-admitted: {:?}",
        gw.handle.snapshot().upstreams["backend"].endpoints
    );
    let mut back = 0;
    for _ in 0..30 {
        let reply = client.get(&gw.url("/api/items")).await;
        assert_eq!(reply.status, 200);
        back += usize::from(reply.text() == "b");
    }
    assert!(back >= 5, "b gets no traffic after coming back ({back})");
}

#[tokio::test]
async fn a_get_is_retried_on_another_endpoint_and_a_post_is_not() {
    let bad = MockUpstream::start(|_| MockReply::text(503, "bad")).await;
    let good = named("good").await;
    let upstream = "    balance: round_robin\n    outlier_detection: { enabled: false }\n    retry: {}";
    let gw = TestGateway::start(&config(&addrs(&[&bad, &good]), upstream, "")).await;
    let client = Client::h1();
    for _ in 0..10 {
        let reply = client.get(&gw.url("/api/x")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "good");
    }
    let bad_gets = bad.count();
    assert!(bad_gets >= 3, "round robin never tried the bad endpoint ({bad_gets})");

    let mut refused = 0;
    for _ in 0..10 {
        let reply = client.send(post(&gw.url("/api/x"), "order")).await;
        refused += usize::from(reply.status == 503);
    }
    let bad_posts = bad.count() - bad_gets;
    let good_posts = good.requests().iter().filter(|r| r.method == http::Method::POST).count();
    // Every POST reached exactly one endpoint: the ones that landed on the bad endpoint got its 503.
    assert_eq!(bad_posts + good_posts, 10, "a POST was sent twice");
    assert_eq!(refused, bad_posts);
    assert!(bad_posts >= 3);
}

#[tokio::test]
async fn a_post_whose_connection_was_refused_goes_elsewhere() {
    let good = MockUpstream::echo().await;
    let endpoints = vec![refused_addr().to_string(), good.addr().to_string()];
    let upstream = "    balance: round_robin\n    outlier_detection: { enabled: false }";
    let gw = TestGateway::start(&config(&endpoints, upstream, "")).await;
    let client = Client::h1();
    for i in 0..6 {
        let reply = client.send(post(&gw.url("/api/orders"), "{\"n\":1}")).await;
        assert_eq!(reply.status, 200, "POST {i}");
        assert_eq!(reply.json()["body"], "{\"n\":1}");
    }
    assert_eq!(good.count(), 6);
}

#[tokio::test]
async fn a_small_body_is_replayed_and_a_large_one_is_sent_once() {
    let bad = MockUpstream::start(|_| MockReply::text(502, "bad")).await;
    let good = MockUpstream::echo().await;
    let upstream = "    balance: round_robin
    outlier_detection: { enabled: false }
    retry: { max_buffer: 1KiB }";
    let gw = TestGateway::start(&config(&addrs(&[&bad, &good]), upstream, "")).await;
    let client = Client::h1();
    for _ in 0..4 {
        let reply = client.send(Request::put(gw.url("/api/doc")).body(full("small")).unwrap()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["body"], "small");
    }
    let large = "x".repeat(4096);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = client.send(Request::put(gw.url("/api/doc")).body(full(large.clone())).unwrap()).await;
        statuses.push(reply.status.as_u16());
    }
    // Round robin: half of them land on the bad endpoint and cannot be replayed.
    assert!(statuses.contains(&502) && statuses.contains(&200), "{statuses:?}");
}

#[tokio::test]
async fn the_retry_budget_stops_retry_storms() {
    let a = MockUpstream::start(|_| MockReply::text(503, "down")).await;
    let b = MockUpstream::start(|_| MockReply::text(503, "down")).await;
    let upstream = "    outlier_detection: { enabled: false }
    retry: { attempts: 3, backoff_base: 1ms, backoff_max: 1ms }
    retry_budget: { percent: 20, min_per_second: 0 }";
    let gw = TestGateway::start(&config(&addrs(&[&a, &b]), upstream, "")).await;
    let client = Client::h1();
    let requests = 100;
    for _ in 0..requests {
        assert_eq!(client.get(&gw.url("/api/x")).await.status, 503);
    }
    let attempts = a.count() + b.count();
    // Without a budget: 300 attempts. With it: the requests plus 20 % of them.
    assert!(attempts > requests, "nothing was retried");
    assert!(attempts <= requests + requests / 5 + 1, "{attempts} attempts for {requests} requests");
    let log = gw.access_log(requests).await;
    assert!(log.iter().any(|l| l["retry_stopped"] == "budget_exhausted"), "the log does not say the budget ran out");
}

/// Mock modes for the breaker test.
const FAIL: u8 = 0;
const SLOW_OK: u8 = 1;
const OK: u8 = 2;

fn breaker_config(addr: &str, failure_count: u32) -> String {
    let upstream = format!(
        "    outlier_detection: {{ enabled: false }}
    retry: {{ attempts: 1 }}
    circuit_breaker: {{ failure_count: {failure_count}, failure_percent: 0, min_requests: 3, open_duration: 1s, half_open_requests: 2, success_threshold: 2 }}"
    );
    config(&[addr.to_string()], &upstream, "")
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_probes_closes_and_survives_a_reload() {
    let mode = Arc::new(AtomicU8::new(FAIL));
    let m = mode.clone();
    let mock = MockUpstream::start(move |_| match m.load(Ordering::SeqCst) {
        FAIL => MockReply::text(500, "boom"),
        SLOW_OK => MockReply::text(200, "ok").delay(Duration::from_millis(800)),
        _ => MockReply::text(200, "ok"),
    })
    .await;
    let addr = mock.addr().to_string();
    let gw = TestGateway::start(&breaker_config(&addr, 3)).await;
    let client = Client::h1();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/api/x")).await.status, 500);
    }
    // Open: answered at once, without calling the upstream.
    let reply = client.get(&gw.url("/api/x")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(reply.json()["type"], "https://turnpike.dev/problems/circuit-open");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(mock.count(), 3);

    // A reload that changes the threshold does not close the tripped breaker.
    gw.reload(&breaker_config(&addr, 5)).unwrap();
    assert_eq!(client.get(&gw.url("/api/x")).await.status, 503);
    assert_eq!(mock.count(), 3);

    // Half-open after the open time: exactly two probes reach the upstream, the others are refused.
    mode.store(SLOW_OK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut statuses: Vec<u16> = concurrent_gets(&gw.url("/api/x"), 5).await.iter().map(|r| r.0).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    assert_eq!(mock.count(), 5);
    // Two successful probes closed it.
    mode.store(OK, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(client.get(&gw.url("/api/x")).await.status, 200);
    }
}

#[tokio::test]
async fn an_open_breaker_can_answer_with_a_fallback() {
    let mock = MockUpstream::start(|_| MockReply::text(500, "boom")).await;
    let upstream = r#"    outlier_detection: { enabled: false }
    retry: { attempts: 1 }
    circuit_breaker:
      failure_count: 2
      min_requests: 2
      fallback: { status: 200, headers: { x-fallback: "1" }, body: { items: [], degraded: true } }"#;
    let gw = TestGateway::start(&config(&[mock.addr().to_string()], upstream, "")).await;
    let client = Client::h1();
    for _ in 0..2 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 500);
    }
    let reply = client.get(&gw.url("/api/items")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-fallback"), Some("1"));
    assert_eq!(reply.json(), serde_json::json!({ "items": [], "degraded": true }));
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn the_concurrency_limit_sheds_instead_of_queueing_forever() {
    let mock = MockUpstream::start(|_| MockReply::text(200, "ok").delay(Duration::from_millis(300))).await;
    let upstream = "    retry: { attempts: 1 }\n    concurrency_limit: { max_in_flight: 2, max_queued: 1 }";
    let gw = TestGateway::start(&config(&[mock.addr().to_string()], upstream, "")).await;
    let mut ok = 0;
    let mut shed = 0;
    for answer in concurrent_gets(&gw.url("/api/slow"), 6).await {
        match answer {
            (200, _) => ok += 1,
            (503, Some(_)) => shed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Two in flight and one queued get through; the other three are shed at once.
    assert_eq!((ok, shed), (3, 3));
}

#[tokio::test]
async fn consistent_hashing_keeps_keys_in_place_and_moves_few_when_an_endpoint_goes() {
    let mut mocks = Vec::new();
    for i in 0..10 {
        let name = format!("e{i}");
        mocks.push(MockUpstream::start(move |_| MockReply::text(200, name.clone())).await);
    }
    let all: Vec<String> = mocks.iter().map(|m| m.addr().to_string()).collect();
    let upstream = "    balance: consistent_hash\n    hash_on: { header: x-user }";
    let gw = TestGateway::start(&config(&all, upstream, "")).await;
    let client = Client::h1();
    let keys = 300;
    let mut before = Vec::new();
    for k in 0..keys {
        let req = Request::get(gw.url("/api/me")).header("x-user", format!("user-{k}")).body(empty()).unwrap();
        before.push(client.send(req).await.text());
    }
    // The same key goes to the same endpoint.
    for (k, expected) in before.iter().enumerate().take(20) {
        let req = Request::get(gw.url("/api/me")).header("x-user", format!("user-{k}")).body(empty()).unwrap();
        assert_eq!(&client.send(req).await.text(), expected);
    }
    let spread: std::collections::HashSet<&String> = before.iter().collect();
    assert_eq!(spread.len(), 10, "keys did not spread over every endpoint");

    let mut fewer = all.clone();
    fewer.remove(4);
    gw.reload(&config(&fewer, upstream, "")).unwrap();
    let mut moved = 0;
    for (k, was) in before.iter().enumerate() {
        let req = Request::get(gw.url("/api/me")).header("x-user", format!("user-{k}")).body(empty()).unwrap();
        let now = client.send(req).await.text();
        assert_ne!(now, "e4");
        moved += usize::from(&now != was);
    }
    let share = moved as f64 / keys as f64;
    // The removed endpoint's tenth has to move; little else may.
    assert!(share <= 0.16, "{moved} of {keys} keys moved");
}

#[tokio::test]
async fn panic_mode_and_fail_mode_when_no_endpoint_is_healthy() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let mock = MockUpstream::start(move |r| {
        if r.uri.path() == "/health" {
            MockReply::text(500, "sick")
        } else {
            h.fetch_add(1, Ordering::SeqCst);
            MockReply::text(200, "served anyway")
        }
    })
    .await;
    let check = "    health_check: { path: /health, interval: 50ms, unhealthy_threshold: 1, jitter: 0s }";
    let gw = TestGateway::start(&config(&[mock.addr().to_string()], check, "")).await;
    assert!(eventually(Duration::from_secs(5), || !available(&gw, mock.addr())).await);
    // Panic mode (the default): the only endpoint is unhealthy, traffic goes to it anyway.
    let client = Client::h1();
    assert_eq!(client.get(&gw.url("/api/x")).await.text(), "served anyway");
    gw.reload(&config(&[mock.addr().to_string()], &format!("{check}\n    when_all_unhealthy: fail"), "")).unwrap();
    let reply = client.get(&gw.url("/api/x")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["type"], "https://turnpike.dev/problems/no-healthy-endpoint");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// Two upstreams `v1` and `v2` (and `shadow` when given) and one route `api` with `route` lines.
fn two_upstreams(v1: &MockUpstream, v2: &MockUpstream, shadow: Option<&MockUpstream>, route: &str) -> String {
    let shadow = shadow.map_or(String::new(), |m| format!("  shadow: {{ endpoints: [\"{}\"] }}\n", m.addr()));
    format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  v1: {{ endpoints: ["{}"] }}
  v2: {{ endpoints: ["{}"] }}
{shadow}
routes:
  - id: api
    match: {{ prefix: /api }}
{route}
"#,
        v1.addr(),
        v2.addr()
    )
}

#[tokio::test]
async fn a_canary_split_of_10_to_90_lands_within_two_percent() {
    let v1 = named("v1").await;
    let v2 = named("v2").await;
    let route = "    split: [{ upstream: v2, weight: 10 }, { upstream: v1, weight: 90 }]";
    let gw = TestGateway::start(&two_upstreams(&v1, &v2, None, route)).await;
    let client = Client::h1();
    let total = 10_000;
    let mut canary = 0;
    for _ in 0..total {
        let reply = client.get(&gw.url("/api/x")).await;
        assert_eq!(reply.status, 200);
        canary += usize::from(reply.text() == "v2");
    }
    let share = canary as f64 / total as f64;
    assert!((0.08..=0.12).contains(&share), "the canary got {share}");
}

#[tokio::test]
async fn variants_pin_requests_by_header_or_cookie() {
    let v1 = named("v1").await;
    let v2 = named("v2").await;
    let route = r#"    upstream: v1
    variants:
      - { upstream: v2, header: { name: X-Variant, value: b } }
      - { upstream: v2, cookie: { name: ab, value: b } }"#;
    let gw = TestGateway::start(&two_upstreams(&v1, &v2, None, route)).await;
    let client = Client::h1();
    let send = |headers: &[(&str, &str)]| {
        let mut req = Request::get(gw.url("/api/x"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        client.send(req.body(empty()).unwrap())
    };
    assert_eq!(send(&[]).await.text(), "v1");
    assert_eq!(send(&[("x-variant", "b")]).await.text(), "v2");
    assert_eq!(send(&[("x-variant", "c")]).await.text(), "v1");
    assert_eq!(send(&[("cookie", "theme=dark; ab=b")]).await.text(), "v2");
    assert_eq!(send(&[("cookie", "ab=a")]).await.text(), "v1");
}

#[tokio::test]
async fn the_mirror_receives_copies_and_a_hanging_mirror_does_not_hold_the_client() {
    let v1 = MockUpstream::echo().await;
    let v2 = named("unused").await;
    let shadow = MockUpstream::echo().await;
    let route = "    upstream: v1\n    mirror: { upstream: shadow, percent: 100 }";
    let gw = TestGateway::start(&two_upstreams(&v1, &v2, Some(&shadow), route)).await;
    let client = Client::h1();
    let reply = client.send(post(&gw.url("/api/orders"), "{\"sku\":7}")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "{\"sku\":7}");
    assert!(eventually(Duration::from_secs(5), || shadow.count() == 1).await, "the mirror got no copy");
    let copy = &shadow.requests()[0];
    assert_eq!(copy.method, http::Method::POST);
    assert_eq!(copy.uri.path(), "/api/orders");
    assert_eq!(&copy.body[..], b"{\"sku\":7}");
    let host = copy.header("host").unwrap().to_string();
    assert!(host.contains("-shadow"), "{host}");

    // A mirror that never answers: every client request still completes, and at most `max_in_flight` copies
    // are held.
    let hanging = MockUpstream::start(|_| MockReply::Hang).await;
    let route = "    upstream: v1\n    mirror: { upstream: shadow, percent: 100, max_in_flight: 4 }";
    gw.reload(&two_upstreams(&v1, &v2, Some(&hanging), route)).unwrap();
    let before = v1.count();
    let all = async {
        for i in 0..20 {
            let reply = client.get(&gw.url(&format!("/api/items/{i}"))).await;
            assert_eq!(reply.status, 200);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all).await.expect("client requests waited for the mirror");
    assert_eq!(v1.count() - before, 20);
    assert!(eventually(Duration::from_secs(5), || hanging.count() == 4).await, "copies: {}", hanging.count());
}

#[tokio::test]
async fn a_per_endpoint_breaker_takes_only_the_failing_endpoint_out() {
    let bad = MockUpstream::start(|_| MockReply::text(500, "boom")).await;
    let good = named("good").await;
    let upstream = "    balance: round_robin
    outlier_detection: { enabled: false }
    retry: { attempts: 1 }
    circuit_breaker: { per_endpoint: true, failure_count: 2, failure_percent: 0, min_requests: 2, open_duration: 60s }";
    let gw = TestGateway::start(&config(&addrs(&[&bad, &good]), upstream, "")).await;
    let client = Client::h1();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(client.get(&gw.url("/api/x")).await.status.as_u16());
    }
    // Round robin sends the bad endpoint every second request until its own breaker opens after two failures;
    // from then on the good endpoint takes everything, and the upstream as a whole never fails fast.
    assert_eq!(bad.count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 2, "{statuses:?}");
    assert!(statuses[4..].iter().all(|&s| s == 200), "{statuses:?}");
}

#[tokio::test]
async fn health_probes_stop_when_no_configuration_lists_the_endpoint() {
    let probes = Arc::new(AtomicUsize::new(0));
    let p = probes.clone();
    let a = MockUpstream::start(move |r| {
        if r.uri.path() == "/health" {
            p.fetch_add(1, Ordering::SeqCst);
        }
        MockReply::text(200, "a")
    })
    .await;
    let b = named("b").await;
    let check = "    health_check: { path: /health, interval: 50ms, jitter: 0s }";
    let gw = TestGateway::start(&config(&addrs(&[&a, &b]), check, "")).await;
    assert!(eventually(Duration::from_secs(5), || probes.load(Ordering::SeqCst) >= 3).await, "no probes");
    // A reload that keeps the endpoint keeps probing it.
    gw.reload(&config(&addrs(&[&a, &b]), check, "")).unwrap();
    let before = probes.load(Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || probes.load(Ordering::SeqCst) >= before + 3).await);
    // A reload that drops it ends its probes.
    gw.reload(&config(&addrs(&[&b]), check, "")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drop = probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(probes.load(Ordering::SeqCst), after_drop, "the dropped endpoint is still probed");
}

/// GETs `/api/x` until the answer is `body` (true) or `limit` passes (false).
async fn until_served_by(client: &Client, gw: &TestGateway, body: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let reply = client.get(&gw.url("/api/x")).await;
        if reply.status == 200 && reply.text() == body {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn endpoint_names_are_resolved_again_and_pools_of_remaining_addresses_are_kept() {
    let dns = turnpike_test::DnsServer::start().await;
    let a = MockUpstream::start(|_| MockReply::text(200, "a")).await;
    let port = a.addr().port();
    let b =
        MockUpstream::start_at(std::net::SocketAddr::from(([127, 0, 0, 2], port)), |_| MockReply::text(200, "b")).await;
    let name = "inventory.turnpike.test";
    let (ip_a, ip_b) = (a.addr().ip(), b.addr().ip());
    dns.set(name, &[ip_a]);
    let yaml = format!(
        r#"
server: {{ dns: {{ nameservers: ["{}"], timeout: 1s }} }}
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
upstreams:
  backend:
    endpoints: ["{name}:{port}"]
    balance: round_robin
    dns_refresh: 100ms
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: backend }}
"#,
        dns.addr()
    );
    // The system resolver does not know the name: the gateway starts without an endpoint from it, and the
    // discovery loop finds it through the configured name server.
    let gw = TestGateway::start(&yaml).await;
    let client = Client::h1();
    assert!(until_served_by(&client, &gw, "a", Duration::from_secs(10)).await, "the name was never resolved");
    let a_connections = a.connections();

    // A second address appears: it gets traffic, and the pooled connection to the first one is kept.
    dns.set(name, &[ip_a, ip_b]);
    assert!(until_served_by(&client, &gw, "b", Duration::from_secs(10)).await, "the new address gets no traffic");
    for _ in 0..10 {
        assert_eq!(client.get(&gw.url("/api/x")).await.status, 200);
    }
    assert!(a.count() > 1);
    assert_eq!(a.connections(), a_connections, "the first address's pooled connection was dropped");

    // The first address goes away: only the second one is used.
    dns.set(name, &[ip_b]);
    let mut settled = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let served = answers(&client, &gw, 6).await;
        if served.iter().all(|s| s == "b") {
            settled = true;
            break;
        }
    }
    assert!(settled, "the removed address still gets traffic");
    assert!(dns.queries() >= 3);
}

/// The bodies of `n` GETs of `/api/x`, one after the other.
async fn answers(client: &Client, gw: &TestGateway, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.get(&gw.url("/api/x")).await.text());
    }
    out
}

#[tokio::test]
async fn a_name_that_resolves_the_same_is_not_applied_again() {
    let mock = named("local").await;
    let yaml = format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ endpoints: ["localhost:{}"], dns_refresh: 50ms }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: backend }}
"#,
        mock.addr().port()
    );
    let gw = TestGateway::start(&yaml).await;
    let client = Client::h1();
    for _ in 0..20 {
        // `localhost` may include `::1`, where nothing listens: that connect failure is retried on `127.0.0.1`.
        assert_eq!(client.get(&gw.url("/api/x")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The system resolver at load and the discovery loop agree on `localhost`: at most one reload (if their
    // answers differ in family), not one per refresh.
    assert!(gw.handle.snapshot().generation <= 2, "generation {}", gw.handle.snapshot().generation);
}
