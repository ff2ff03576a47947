//! Limits and failures: unreachable, slow, hanging and closing upstreams; slow clients (slowloris heads, stalled
//! bodies); oversize heads and bodies. Every refusal the gateway renders is an RFC 9457 problem document carrying
//! the request id and the path without its query.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use turnpike_test::client::empty;
use turnpike_test::{Client, MockReply, MockUpstream, RawConn, RawResponse, Reply, TestGateway, refused_addr};

/// One listener (with `listener_extra` lines, indented four spaces), one upstream `backend` on `endpoint` (with
/// `upstream_extra` lines), one route `api` for `/api` (with `route_extra` lines).
fn config(listener_extra: &str, endpoint: SocketAddr, upstream_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
{listener_extra}
upstreams:
  backend:
    endpoints: ["{endpoint}"]
{upstream_extra}
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: backend
{route_extra}
"#
    )
}

/// Checks that a gateway error is a well-formed problem document for `instance` and returns it.
fn check_problem(
    status: u16,
    content_type: Option<&str>,
    request_id: Option<&str>,
    body: &[u8],
    want_status: u16,
    instance: &str,
) -> Value {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, want_status, "{text}");
    assert_eq!(content_type, Some("application/problem+json"), "{text}");
    let problem: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let kind = problem["type"].as_str().unwrap_or_else(|| panic!("no `type`: {problem}"));
    assert!(kind.starts_with("https://turnpike.dev/problems/"), "{problem}");
    assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()), "{problem}");
    assert_eq!(problem["status"], want_status, "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
    assert_eq!(problem["instance"], instance, "{problem}");
    let id = request_id.unwrap_or_else(|| panic!("no x-request-id header with {problem}"));
    assert_eq!(problem["request_id"], id, "{problem}");
    assert!(!text.contains("secret"), "the query leaked into the problem: {text}");
    problem
}

fn problem(reply: &Reply, want_status: u16, instance: &str) -> Value {
    check_problem(
        reply.status.as_u16(),
        reply.header("content-type"),
        reply.header("x-request-id"),
        &reply.body,
        want_status,
        instance,
    )
}

fn raw_problem(resp: &RawResponse, want_status: u16, instance: &str) -> Value {
    check_problem(
        resp.status,
        resp.header("content-type"),
        resp.header("x-request-id"),
        &resp.body,
        want_status,
        instance,
    )
}

fn problem_type(slug: &str) -> String {
    format!("https://turnpike.dev/problems/{slug}")
}

// ---------------------------------------------------------------------------------------------------------------
// Upstream failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_connection_gives_502_problem() {
    let refused = refused_addr();
    let gw = TestGateway::start(&config("", refused, "", "")).await;
    for client in [Client::h1(), Client::h2()] {
        let reply = client.get(&gw.url("/api/users?token=secret")).await;
        let p = problem(&reply, 502, "/api/users");
        assert_eq!(p["type"], problem_type("upstream-connect"));
        assert_eq!(p["title"], "Bad Gateway");
        // Internals (the endpoint's address) stay in the log.
        assert!(!reply.text().contains(&refused.to_string()), "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504_after_the_request_timeout() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "late").delay(Duration::from_secs(3))).await;
    let gw = TestGateway::start(&config("", upstream.addr(), "    request_timeout: 200ms", "")).await;
    let started = Instant::now();
    let reply = Client::h1().get(&gw.url("/api/slow?token=secret")).await;
    let elapsed = started.elapsed();
    let p = problem(&reply, 504, "/api/slow");
    assert_eq!(p["type"], problem_type("upstream-timeout"));
    assert!(elapsed >= Duration::from_millis(190), "answered before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "waited for the upstream: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_overrides_the_upstream_request_timeout() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "late").delay(Duration::from_secs(3))).await;
    let yaml = config("", upstream.addr(), "    request_timeout: 10s", "    timeout: 200ms");
    let gw = TestGateway::start(&yaml).await;
    let started = Instant::now();
    let reply = Client::h1().get(&gw.url("/api/slow")).await;
    let elapsed = started.elapsed();
    let p = problem(&reply, 504, "/api/slow");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("200ms")), "{p}");
    assert!(elapsed < Duration::from_secs(2), "the route timeout did not apply: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_gives_504() {
    let upstream = MockUpstream::start(|_| MockReply::Hang).await;
    let gw = TestGateway::start(&config("", upstream.addr(), "", "    timeout: 200ms")).await;
    let reply = Client::h1().get(&gw.url("/api/hang?token=secret")).await;
    let p = problem(&reply, 504, "/api/hang");
    assert_eq!(p["type"], problem_type("upstream-timeout"));
    assert_eq!(upstream.count(), 1, "the request did reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_without_an_answer_gives_502() {
    let upstream = MockUpstream::start(|_| MockReply::Close).await;
    let gw = TestGateway::start(&config("", upstream.addr(), "", "")).await;
    let reply = Client::h1().get(&gw.url("/api/close?token=secret")).await;
    let p = problem(&reply, 502, "/api/close");
    assert_eq!(p["type"], problem_type("bad-gateway"));
}

// ---------------------------------------------------------------------------------------------------------------
// Slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_request_head_is_cut_at_the_header_timeout() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    header_timeout: 300ms", upstream.addr(), "", "")).await;
    let started = Instant::now();
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/x HTTP/1.1\r\nHost: a.test\r\nX-Partial: ").await;
    let closed = conn.read_until_closed(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    assert!(closed.is_some(), "the connection was still open after 3s");
    assert!(elapsed >= Duration::from_millis(290), "closed before the header timeout: {elapsed:?}");
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_at_the_header_timeout() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    header_timeout: 300ms", upstream.addr(), "", "")).await;
    let started = Instant::now();
    let mut conn = RawConn::connect(gw.addr()).await;
    let closed = conn.read_until_closed(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    assert_eq!(closed.as_deref(), Some(&b""[..]), "the connection was still open after 3s, or got an answer");
    assert!(elapsed >= Duration::from_millis(290), "closed before the header timeout: {elapsed:?}");
}

/// Sends `head` one byte every 100 ms to a gateway with `header_timeout: 300ms`; returns how long the gateway kept
/// the connection, or `None` if it was still open after 3 s.
async fn trickle(gw: &TestGateway, head: &'static [u8]) -> Option<Duration> {
    let started = Instant::now();
    let stream = RawConn::connect(gw.addr()).await.into_stream();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for byte in head {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    writer.abort();
    closed.ok().map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_head_is_cut_at_the_header_timeout() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    header_timeout: 300ms", upstream.addr(), "", "")).await;
    // Always something new, never a complete head: an HTTP/1.1 head, and the HTTP/2 preface.
    let heads: [&'static [u8]; 2] = [
        b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nX-Slow: ssssssssssssssssssssssssssssssssssssssss",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for head in heads {
        let kept = trickle(&gw, head).await;
        let shown = String::from_utf8_lossy(head);
        let kept = kept.unwrap_or_else(|| panic!("a client trickling {shown:?} kept the connection for 3s"));
        assert!(kept >= Duration::from_millis(290), "closed before the header timeout: {kept:?}");
    }
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    header_timeout: 300ms", upstream.addr(), "", "")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/x HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("connection").is_none(), "the response itself asked to close: {}", resp.head);
    let idle_from = Instant::now();
    let closed = conn.read_until_closed(Duration::from_secs(3)).await;
    let idle = idle_from.elapsed();
    assert_eq!(closed.as_deref(), Some(&b""[..]), "expected a silent close");
    assert!(idle >= Duration::from_millis(200), "closed too early: {idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_that_keeps_sending_requests_stays_open() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    header_timeout: 300ms", upstream.addr(), "", "")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    let started = Instant::now();
    for i in 0..8 {
        conn.send(format!("GET /api/x/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n")).await;
        let resp = conn.read_response().await;
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head);
        // Pacing, not ordering: each gap is well inside the header timeout.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(600), "the test did not outlast the header timeout");
    assert_eq!(upstream.count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_answer_is_not_cut_by_the_header_timeout() {
    let upstream =
        MockUpstream::start(|_| MockReply::text(200, "worth the wait").delay(Duration::from_millis(500))).await;
    let gw = TestGateway::start(&config("    header_timeout: 200ms", upstream.addr(), "", "")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/slow HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.body, b"worth the wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_gets_408_and_the_connection_closes() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    body_timeout: 300ms", upstream.addr(), "", "")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("POST /api/upload?token=secret HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789").await;
    let stalled_from = Instant::now();
    let resp = conn.read_response().await;
    let elapsed = stalled_from.elapsed();
    raw_problem(&resp, 408, "/api/upload");
    assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
    assert!(elapsed >= Duration::from_millis(290), "answered before the body timeout: {elapsed:?}");
    assert!(conn.read_until_closed(Duration::from_secs(2)).await.is_some(), "the connection stayed open");
    let requests = upstream.requests();
    assert!(requests.iter().all(|r| r.body_len < 100), "the upstream got a complete body: {requests:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Oversize requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_over_max_header_size_gets_431_problem() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    max_header_size: 4KiB", upstream.addr(), "", "")).await;
    let client = Client::h1();
    let fits = Request::get(gw.url("/api/h")).header("x-big", "a".repeat(3000)).body(empty()).expect("request");
    assert_eq!(client.send(fits).await.status, 200, "a head under the limit was refused");
    let over = Request::get(gw.url("/api/h?token=secret")).header("x-big", "a".repeat(6000)).body(empty());
    let reply = client.send(over.expect("request")).await;
    let p = problem(&reply, 431, "/api/h");
    assert_eq!(p["type"], problem_type("headers-too-large"));
    assert_eq!(upstream.count(), 1, "the oversize request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_far_over_the_limit_gets_431_from_the_parser() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    max_header_size: 4KiB", upstream.addr(), "", "")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    let head = format!("GET /api/h HTTP/1.1\r\nHost: a.test\r\nX-Huge: {}\r\n\r\n", "h".repeat(40 * 1024));
    // The gateway may stop reading (and close) before all of it is written.
    let _ = conn.try_send(head).await;
    let answer = conn.read_until_closed(Duration::from_secs(3)).await.expect("the connection was closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_gets_431() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("    max_headers: 10", upstream.addr(), "", "")).await;
    let head = |n: usize| {
        let mut head = String::from("GET /api/h?token=secret HTTP/1.1\r\nHost: a.test\r\n");
        for i in 1..n {
            head.push_str(&format!("X-Field-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(head(10)).await;
    assert_eq!(conn.read_response().await.status, 200, "ten fields are within the limit");
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(head(30)).await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 431, "{}", resp.head);
    raw_problem(&resp, 431, "/api/h");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_oversize_body_gets_413_before_the_upstream_sees_anything() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("", upstream.addr(), "", "    max_body_size: 1KiB")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    // Only the head: the answer must not wait for a body.
    conn.send("POST /api/upload?token=secret HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\n\r\n").await;
    let resp = conn.read_response().await;
    let p = raw_problem(&resp, 413, "/api/upload");
    assert_eq!(p["type"], problem_type("payload-too-large"));
    assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
    assert_eq!(upstream.connections(), 0);

    // At the limit is fine.
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(format!("POST /api/upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1024\r\n\r\n{}", "b".repeat(1024)))
        .await;
    assert_eq!(conn.read_response().await.status, 200);
    assert_eq!(upstream.requests()[0].body_len, 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_crossing_the_limit_gets_413_and_never_completes_upstream() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("", upstream.addr(), "", "    max_body_size: 1KiB")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    let mut wire =
        String::from("POST /api/upload?token=secret HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..4 {
        wire.push_str(&format!("200\r\n{}\r\n", "c".repeat(512)));
    }
    wire.push_str("0\r\n\r\n");
    let _ = conn.try_send(wire).await;
    match conn.try_read_response(false).await {
        Ok(resp) => {
            let p = raw_problem(&resp, 413, "/api/upload");
            assert_eq!(p["type"], problem_type("payload-too-large"));
        }
        // Closing the connection is an acceptable refusal too.
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset),
            "neither a 413 nor a close: {e}"
        ),
    }
    let requests = upstream.requests();
    assert!(requests.iter().all(|r| r.body_len < 2048), "the upstream got the whole body: {requests:?}");
}
