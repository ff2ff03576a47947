//! Forwarding: proxy header semantics (hop-by-hop, forwarding headers, `Via`, request id, `Host`), bodies and
//! trailers in both directions, protocol translation, upstream connection reuse, balancing and the access log.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;
use turnpike_telemetry::names;
use turnpike_test::client::{BoxError, empty, full};
use turnpike_test::{Client, MockReply, MockUpstream, RawConn, Recorded, Reply, TestGateway};

/// One listener, one upstream `backend` and one route `api` (`/api`, prefix stripped). `server` is a whole
/// top-level `server:` block (or empty), `endpoints` the YAML list of endpoints, `upstream_extra` more lines of the
/// upstream (indented four spaces), `route_extra` more lines of the route (indented four spaces).
fn config(server: &str, endpoints: &str, upstream_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
{server}
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  backend:
    endpoints: {endpoints}
{upstream_extra}
routes:
  - id: api
    match: {{ prefix: /api }}
    rewrite: {{ strip_prefix: /api }}
    upstream: backend
{route_extra}
"#
    )
}

/// The plain config: default settings, one endpoint.
fn simple(upstream: SocketAddr) -> String {
    config("", &format!(r#"["{upstream}"]"#), "", "")
}

fn endpoints(mocks: &[&MockUpstream]) -> String {
    let list: Vec<String> = mocks.iter().map(|m| format!(r#""{}""#, m.addr())).collect();
    format!("[{}]", list.join(", "))
}

/// The only request `mock` received.
fn only_request(mock: &MockUpstream) -> Recorded {
    let mut requests = mock.requests();
    assert_eq!(requests.len(), 1, "expected exactly one upstream request: {requests:?}");
    requests.remove(0)
}

/// Every value of header `name` in `recorded`.
fn values(recorded: &Recorded, name: &str) -> Vec<String> {
    recorded.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
}

fn get(url: &str, headers: &[(&str, &str)]) -> Request<turnpike_test::client::Body> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).expect("valid request")
}

fn is_uuid_v4(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// A request body sent as separate frames, of unknown length (chunked on HTTP/1.1), ending with optional trailers.
struct Frames(VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn frames(chunks: &[&'static [u8]], trailers: Option<HeaderMap>) -> turnpike_test::client::Body {
    let mut queue: VecDeque<Frame<Bytes>> = chunks.iter().map(|c| Frame::data(Bytes::from_static(c))).collect();
    if let Some(trailers) = trailers {
        queue.push_back(Frame::trailers(trailers));
    }
    Frames(queue).boxed()
}

async fn ok_text(client: &Client, url: &str) -> Reply {
    let reply = client.get(url).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

// ---------------------------------------------------------------------------------------------------------------
// Hop-by-hop headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_hop_by_hop_request_headers_and_those_named_in_connection() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(
        "POST /api/hop HTTP/1.1\r\n\
         Host: api.example.test\r\n\
         Connection: keep-alive, X-Foo\r\n\
         X-Foo: named-in-connection\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\n\
         TE: gzip\r\n\
         Transfer-Encoding: gzip, chunked\r\n\
         X-End-To-End: kept\r\n\
         \r\n\
         5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let seen = only_request(&upstream);
    for name in ["connection", "x-foo", "keep-alive", "proxy-connection", "proxy-authorization", "te"] {
        assert!(seen.header(name).is_none(), "`{name}` reached the upstream: {:?}", seen.headers);
    }
    // The gateway frames the body itself: the client's `gzip, chunked` must not be passed on.
    let te = values(&seen, "transfer-encoding");
    assert!(te.iter().all(|v| v == "chunked"), "client transfer-encoding forwarded: {te:?}");
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(&seen.body[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_upgrade_from_requests() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/up HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = only_request(&upstream);
    assert!(seen.header("upgrade").is_none(), "{:?}", seen.headers);
    assert!(seen.header("connection").is_none(), "{:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_te_trailers() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let reply = Client::h1().send(get(&gw.url("/api/te"), &[("te", "trailers")])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(only_request(&upstream).header("te"), Some("trailers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_hop_by_hop_response_headers() {
    let upstream = MockUpstream::start(|_| {
        MockReply::text(200, "payload")
            .header("connection", "X-Bar")
            .header("x-bar", "named-in-connection")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("upgrade", "websocket")
            .header("proxy-authenticate", "Basic realm=upstream")
            .header("transfer-encoding", "gzip, chunked")
            .header("x-end-to-end", "kept")
    })
    .await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/hop HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    for name in ["connection", "x-bar", "keep-alive", "proxy-connection", "upgrade", "proxy-authenticate"] {
        assert!(resp.header(name).is_none(), "`{name}` reached the client:\n{}", resp.head);
    }
    // The upstream's framing is not the client's: only the gateway's own `chunked` may appear.
    assert!(
        resp.headers.iter().filter(|(n, _)| n == "transfer-encoding").all(|(_, v)| v == "chunked"),
        "{}",
        resp.head
    );
    assert_eq!(resp.header("x-end-to-end"), Some("kept"));
    assert_eq!(resp.body, b"payload");
}

// ---------------------------------------------------------------------------------------------------------------
// Forwarding headers and Via

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_forwarding_headers_from_an_untrusted_client() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let spoofed = [
        ("host", "api.example.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    let reply = Client::h1().send(get(&gw.url("/api/xff"), &spoofed)).await;
    assert_eq!(reply.status, 200);
    let seen = only_request(&upstream);
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&seen, "x-forwarded-host"), ["api.example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_forwarded_header_never_reaches_the_upstream() {
    // `Forwarded` is a forwarding header like the others: from an untrusted client it must not reach the upstream
    // as if the gateway vouched for it, whether or not the gateway writes its own.
    let upstream = MockUpstream::echo().await;
    for forwarded in [false, true] {
        let server = format!("server:\n  proxy_headers: {{ forwarded: {forwarded} }}");
        let gw = TestGateway::start(&config(&server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
        let reply = Client::h1()
            .send(get(&gw.url("/api/fwd"), &[("host", "a.test"), ("forwarded", "for=6.6.6.6;proto=https")]))
            .await;
        assert_eq!(reply.status, 200);
        gw.shutdown().await;
    }
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    for (seen, forwarded) in requests.iter().zip([false, true]) {
        let values = values(seen, "forwarded");
        assert!(
            !values.iter().any(|v| v.contains("6.6.6.6")),
            "forwarded={forwarded}: spoofed value passed: {values:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_forwarding_headers_from_a_trusted_proxy() {
    let upstream = MockUpstream::echo().await;
    let server = "server:\n  trusted_proxies: [127.0.0.0/8]";
    let gw = TestGateway::start(&config(server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
    let from_proxy = [
        ("host", "internal.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "edge.example"),
    ];
    let reply = Client::h1().send(get(&gw.url("/api/xff"), &from_proxy)).await;
    assert_eq!(reply.status, 200);
    let seen = only_request(&upstream);
    assert_eq!(values(&seen, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(values(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&seen, "x-forwarded-host"), ["edge.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_an_rfc7239_forwarded_header_when_enabled() {
    let upstream = MockUpstream::echo().await;
    let server = "server:\n  proxy_headers: { forwarded: true }";
    let gw = TestGateway::start(&config(server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
    let reply = Client::h1().send(get(&gw.url("/api/fwd"), &[("host", "api.example.test")])).await;
    assert_eq!(reply.status, 200);
    let seen = only_request(&upstream);
    assert_eq!(values(&seen, "forwarded"), [r#"for=127.0.0.1;proto=http;host="api.example.test""#]);
    // X-Forwarded-* stay on by default alongside it.
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_via_to_requests_and_responses() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;

    let h1 = Client::h1().send(get(&gw.url("/api/via"), &[("via", "1.0 edge")])).await;
    assert_eq!(h1.status, 200);
    assert_eq!(h1.header("via"), Some("1.1 turnpike"), "{:?}", h1.headers);
    let h2 = ok_text(&Client::h2(), &gw.url("/api/via")).await;
    assert_eq!(h2.version, Version::HTTP_2);
    assert_eq!(h2.header("via"), Some("1.1 turnpike"), "the upstream answered over HTTP/1.1: {:?}", h2.headers);

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    // The client's own Via entry stays, the gateway's follows it.
    assert_eq!(values(&requests[0], "via").join(", "), "1.0 edge, 1.1 turnpike");
    assert_eq!(values(&requests[1], "via"), ["2 turnpike"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Request id

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_a_request_id_and_sends_it_both_ways() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let client = Client::h1();
    let first = ok_text(&client, &gw.url("/api/id")).await;
    let second = ok_text(&client, &gw.url("/api/id")).await;
    let a = first.header("x-request-id").expect("request id in the response").to_string();
    let b = second.header("x-request-id").expect("request id in the response").to_string();
    assert!(is_uuid_v4(&a), "not a UUID v4: {a}");
    assert!(is_uuid_v4(&b), "not a UUID v4: {b}");
    assert_ne!(a, b);
    let requests = upstream.requests();
    assert_eq!(values(&requests[0], "x-request-id"), [a]);
    assert_eq!(values(&requests[1], "x-request-id"), [b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_a_request_id_from_an_untrusted_client() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let reply = Client::h1().send(get(&gw.url("/api/id"), &[("x-request-id", "client-chosen-1")])).await;
    let id = reply.header("x-request-id").expect("request id").to_string();
    assert_ne!(id, "client-chosen-1");
    assert!(is_uuid_v4(&id), "{id}");
    assert_eq!(values(&only_request(&upstream), "x-request-id"), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_a_request_id_when_trusted() {
    let upstream = MockUpstream::echo().await;
    let servers = [
        "server:\n  request_id: { trust_incoming: always }",
        "server:\n  trusted_proxies: [127.0.0.0/8]",
        "server:\n  trusted_proxies: [127.0.0.0/8]\n  request_id: { trust_incoming: trusted_proxies }",
    ];
    for (i, server) in servers.iter().enumerate() {
        let gw = TestGateway::start(&config(server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
        let id = format!("edge-id-{i}:abc/DEF+1=");
        let reply = Client::h1().send(get(&gw.url("/api/id"), &[("x-request-id", &id)])).await;
        assert_eq!(reply.header("x-request-id"), Some(id.as_str()), "{server}");
        gw.shutdown().await;
    }
    let requests = upstream.requests();
    assert_eq!(requests.len(), 3);
    for (i, seen) in requests.iter().enumerate() {
        assert_eq!(values(seen, "x-request-id"), [format!("edge-id-{i}:abc/DEF+1=")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_a_trusted_request_id_that_is_malformed_or_when_trust_is_never() {
    let upstream = MockUpstream::echo().await;
    let always = "server:\n  request_id: { trust_incoming: always }";
    let never = "server:\n  trusted_proxies: [127.0.0.0/8]\n  request_id: { trust_incoming: never }";
    let too_long = "a".repeat(129);
    let cases = [(always, "has space"), (always, "semi;colon"), (always, too_long.as_str()), (never, "good-id")];
    for (server, sent) in cases {
        let gw = TestGateway::start(&config(server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
        let reply = Client::h1().send(get(&gw.url("/api/id"), &[("x-request-id", sent)])).await;
        let id = reply.header("x-request-id").expect("request id");
        assert!(is_uuid_v4(id), "{sent:?} under {server:?} gave {id:?}");
        let last = upstream.requests().pop().expect("forwarded");
        assert_eq!(values(&last, "x-request-id"), [id]);
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_header_name_is_configurable() {
    let upstream = MockUpstream::echo().await;
    let server = "server:\n  request_id: { header: X-Correlation-Id, trust_incoming: always }";
    let gw = TestGateway::start(&config(server, &format!(r#"["{}"]"#, upstream.addr()), "", "")).await;
    let client = Client::h1();
    let generated = ok_text(&client, &gw.url("/api/id")).await;
    let id = generated.header("x-correlation-id").expect("configured header in the response").to_string();
    assert!(is_uuid_v4(&id), "{id}");
    assert!(generated.header("x-request-id").is_none(), "{:?}", generated.headers);
    let kept = client.send(get(&gw.url("/api/id"), &[("x-correlation-id", "corr-7")])).await;
    assert_eq!(kept.header("x-correlation-id"), Some("corr-7"));
    let requests = upstream.requests();
    assert_eq!(values(&requests[0], "x-correlation-id"), [id]);
    assert!(requests[0].header("x-request-id").is_none());
    assert_eq!(values(&requests[1], "x-correlation-id"), ["corr-7"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Host

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserves_the_client_host_by_default() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    Client::h1().send(get(&gw.url("/api/host"), &[("host", "api.example.test")])).await;
    // Over HTTP/2 the host is the request's authority.
    ok_text(&Client::h2(), &gw.url("/api/host")).await;
    let requests = upstream.requests();
    assert_eq!(values(&requests[0], "host"), ["api.example.test"]);
    assert_eq!(values(&requests[1], "host"), [gw.addr().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_endpoint_sends_the_endpoint_address() {
    let upstream = MockUpstream::echo().await;
    let eps = format!(r#"["{}"]"#, upstream.addr());
    let gw = TestGateway::start(&config("", &eps, "    host_header: endpoint", "")).await;
    Client::h1().send(get(&gw.url("/api/host"), &[("host", "api.example.test")])).await;
    let seen = only_request(&upstream);
    assert_eq!(values(&seen, "host"), [upstream.addr().to_string()]);
    // What the client asked for is still visible to the upstream.
    assert_eq!(values(&seen, "x-forwarded-host"), ["api.example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_fixed_sends_the_configured_host() {
    let upstream = MockUpstream::echo().await;
    let eps = format!(r#"["{}"]"#, upstream.addr());
    let gw = TestGateway::start(&config("", &eps, "    host_header: { fixed: users.internal }", "")).await;
    Client::h1().send(get(&gw.url("/api/host"), &[("host", "api.example.test")])).await;
    ok_text(&Client::h2(), &gw.url("/api/host")).await;
    for seen in upstream.requests() {
        assert_eq!(values(&seen, "host"), ["users.internal"]);
    }
    assert_eq!(upstream.count(), 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_request_body_arrives_intact() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect();
    let req = Request::post(gw.url("/api/upload")).body(full(body.clone())).expect("valid request");
    let reply = Client::h1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only_request(&upstream);
    assert_eq!(seen.header("content-length"), Some("300000"));
    assert_eq!(seen.body_len, 300_000);
    assert!(seen.body == body, "the body changed on the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_arrives_intact() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    let mut wire = String::from("POST /api/upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut expected = String::new();
    for i in 0..20 {
        let chunk = format!("chunk-{i:02}-{}|", "z".repeat(i * 37));
        wire.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        expected.push_str(&chunk);
    }
    wire.push_str("0\r\n\r\n");
    conn.send(&wire).await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = only_request(&upstream);
    assert_eq!(seen.body_len, expected.len() as u64);
    assert_eq!(String::from_utf8_lossy(&seen.body), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_streams_back_intact() {
    let body = "first part, second part, and the rest of a chunked answer";
    let upstream =
        MockUpstream::start(move |_| MockReply::text(200, body).header("transfer-encoding", "chunked")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("GET /api/chunked HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200);
    assert!(resp.chunked, "expected a chunked response:\n{}", resp.head);
    assert_eq!(resp.text(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_streams_back_intact() {
    const SIZE: u64 = 4 * 1024 * 1024 + 17;
    let upstream = MockUpstream::start(|_| MockReply::Stream { bytes: SIZE }).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let reply = ok_text(&Client::h1(), &gw.url("/api/big")).await;
    assert_eq!(reply.header("content-length"), Some(SIZE.to_string().as_str()));
    assert_eq!(reply.body.len() as u64, SIZE);
    assert!(reply.body.iter().all(|&b| b == b'x'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_returns_headers_without_a_body() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "0123456789")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("HEAD /api/doc HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let head = conn.read_head_response().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"), "{}", head.head);
    // Had any body bytes followed the head, they would be read as the start of the next response.
    conn.send("GET /api/doc HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let next = conn.read_response().await;
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.body, b"0123456789");
    let methods: Vec<String> = upstream.requests().iter().map(|r| r.method.to_string()).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_gets_100_then_the_final_response() {
    let upstream = MockUpstream::start(|_| MockReply::text(201, "stored")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("POST /api/upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n").await;
    let interim = conn.read_response().await;
    assert_eq!(interim.status, 100, "{}", interim.head);
    conn.send("hello world").await;
    let done = conn.read_response().await;
    assert_eq!(done.status, 201, "{}", done.head);
    assert_eq!(done.body, b"stored");
    let seen = only_request(&upstream);
    assert_eq!(&seen.body[..], b"hello world");
    // The gateway answered the expectation itself.
    assert!(seen.header("expect").is_none(), "{:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_refused_by_size_gets_413_without_100() {
    let upstream = MockUpstream::echo().await;
    let eps = format!(r#"["{}"]"#, upstream.addr());
    let gw = TestGateway::start(&config("", &eps, "", "    max_body_size: 1KiB")).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send("POST /api/upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 413, "expected 413 as the first response:\n{}", resp.head);
    assert_eq!(resp.header("content-type"), Some("application/problem+json"));
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways_over_http1() {
    let upstream = MockUpstream::start(|_| {
        MockReply::text(200, "with trailers").header("trailer", "x-resp-sum").trailer("x-resp-sum", "99")
    })
    .await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(
        "POST /api/t HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nTrailer: x-req-sum\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nx-req-sum: 42\r\n\r\n",
    )
    .await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.text(), "with trailers");
    assert_eq!(resp.trailer("x-resp-sum"), Some("99"), "response:\n{}\ntrailers {:?}", resp.head, resp.trailers);
    let seen = only_request(&upstream);
    assert_eq!(&seen.body[..], b"hello");
    let trailers = seen.trailers.expect("request trailers reached the upstream");
    assert_eq!(trailers.get("x-req-sum").map(HeaderValue::as_bytes), Some(&b"42"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways_over_http2() {
    let upstream = MockUpstream::start_h2(|_| MockReply::text(200, "with trailers").trailer("x-resp-sum", "99")).await;
    let eps = format!(r#"["{}"]"#, upstream.addr());
    let gw = TestGateway::start(&config("", &eps, "    protocol: http2", "")).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-req-sum", HeaderValue::from_static("42"));
    let req = Request::post(gw.url("/api/t"))
        .header("te", "trailers")
        .body(frames(&[b"hel", b"lo"], Some(trailers)))
        .expect("valid request");
    let reply = Client::h2().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "with trailers");
    let got = reply.trailers.expect("response trailers reached the client");
    assert_eq!(got.get("x-resp-sum").map(HeaderValue::as_bytes), Some(&b"99"[..]));
    let seen = only_request(&upstream);
    assert_eq!(&seen.body[..], b"hello");
    let sent = seen.trailers.expect("request trailers reached the upstream");
    assert_eq!(sent.get("x-req-sum").map(HeaderValue::as_bytes), Some(&b"42"[..]));
}

// ---------------------------------------------------------------------------------------------------------------
// Protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_is_forwarded_to_an_http1_upstream() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let req = Request::post(gw.url("/api/v?q=1")).body(full("h2 body")).expect("valid request");
    let reply = Client::h2().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.json()["path"], "/v");
    let seen = only_request(&upstream);
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.uri.to_string(), "/v?q=1");
    assert_eq!(&seen.body[..], b"h2 body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_is_forwarded_to_an_http2_upstream() {
    let upstream = MockUpstream::echo_h2().await;
    let eps = format!(r#"["{}"]"#, upstream.addr());
    let gw = TestGateway::start(&config("", &eps, "    protocol: http2", "")).await;
    let req = Request::post(gw.url("/api/v?q=1")).body(full("h1 body")).expect("valid request");
    let reply = Client::h1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.header("via"), Some("2 turnpike"), "{:?}", reply.headers);
    let seen = only_request(&upstream);
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.uri.path_and_query().map(|pq| pq.as_str()), Some("/v?q=1"));
    assert_eq!(&seen.body[..], b"h1 body");
}

// ---------------------------------------------------------------------------------------------------------------
// Upstream connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_every_response_serves_every_request() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok").header("connection", "close")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let client = Client::h1();
    for i in 0..30 {
        let reply = client.get(&gw.url(&format!("/api/close/{i}"))).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(reply.text(), "ok");
        // The upstream's `connection: close` is about its own connection, not the client's.
        assert!(reply.header("connection").is_none(), "{:?}", reply.headers);
    }
    assert_eq!(upstream.count(), 30);
    assert_eq!(upstream.connections(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_upstream_connections() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let client = Client::h1();
    for i in 0..50 {
        ok_text(&client, &gw.url(&format!("/api/reuse/{i}"))).await;
    }
    assert_eq!(upstream.count(), 50);
    assert!(upstream.connections() <= 3, "{} upstream connections for 50 requests", upstream.connections());
    let (connects, reuses, _open) = gw.handle.pool_totals("backend").expect("upstream exists");
    assert_eq!(connects, upstream.connections() as u64);
    assert!(reuses >= 47, "only {reuses} reuses");
}

// ---------------------------------------------------------------------------------------------------------------
// Balancing

async fn three_mocks() -> [MockUpstream; 3] {
    [
        MockUpstream::start(|_| MockReply::text(200, "a")).await,
        MockUpstream::start(|_| MockReply::text(200, "b")).await,
        MockUpstream::start(|_| MockReply::text(200, "c")).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let [a, b, c] = three_mocks().await;
    let gw = TestGateway::start(&config("", &endpoints(&[&a, &b, &c]), "    balance: round_robin", "")).await;
    let client = Client::h1();
    for _ in 0..30 {
        ok_text(&client, &gw.url("/api/rr")).await;
    }
    assert_eq!([a.count(), b.count(), c.count()], [10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_the_weights() {
    let [a, b, c] = three_mocks().await;
    let eps = format!(
        r#"[{{ address: "{}", weight: 5 }}, {{ address: "{}", weight: 1 }}, {{ address: "{}", weight: 1 }}]"#,
        a.addr(),
        b.addr(),
        c.addr()
    );
    let gw = TestGateway::start(&config("", &eps, "    balance: weighted_round_robin", "")).await;
    let client = Client::h1();
    for _ in 0..70 {
        ok_text(&client, &gw.url("/api/wrr")).await;
    }
    assert_eq!([a.count(), b.count(), c.count()], [50, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_in_flight_avoids_a_busy_endpoint() {
    // `/slow` never gets an answer, so its endpoint stays busy for the whole test whatever the machine's speed.
    let slow_or_fast =
        |r: &Recorded| if r.uri.path() == "/slow" { MockReply::Hang } else { MockReply::text(200, "fast") };
    let mocks = [
        MockUpstream::start(slow_or_fast).await,
        MockUpstream::start(slow_or_fast).await,
        MockUpstream::start(slow_or_fast).await,
    ];
    let eps = endpoints(&[&mocks[0], &mocks[1], &mocks[2]]);
    let gw = TestGateway::start(&config("", &eps, "    balance: least_in_flight", "")).await;
    let client = Client::h1();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), gw.url("/api/slow"));
        async move { client.get(&url).await }
    });
    // Wait until the slow request has reached its endpoint (the mock records it before hanging).
    let mut busy = None;
    for _ in 0..1000 {
        busy = mocks.iter().position(|m| m.count() == 1);
        if busy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let busy = busy.expect("the slow request reached an endpoint");
    for _ in 0..20 {
        ok_text(&client, &gw.url("/api/fast")).await;
    }
    assert!(!slow.is_finished(), "the slow request ended early");
    slow.abort();
    let counts: Vec<usize> = mocks.iter().map(MockUpstream::count).collect();
    assert_eq!(counts[busy], 1, "the busy endpoint got more requests: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 21, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_choices_spreads_requests_roughly_evenly() {
    let mut mocks = Vec::new();
    for _ in 0..4 {
        mocks.push(MockUpstream::start(|_| MockReply::text(200, "ok")).await);
    }
    let eps = endpoints(&mocks.iter().collect::<Vec<_>>());
    let gw = TestGateway::start(&config("", &eps, "    balance: power_of_two_choices", "")).await;
    let client = Client::h1();
    for _ in 0..200 {
        ok_text(&client, &gw.url("/api/p2c")).await;
    }
    let counts: Vec<usize> = mocks.iter().map(MockUpstream::count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 200);
    // 50 each on average; below 20 or above 100 is vanishingly unlikely for an even random spread.
    assert!(counts.iter().all(|&n| (20..=100).contains(&n)), "uneven spread: {counts:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Access log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_with_its_fields() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "twelve bytes")).await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let client = Client::h1();
    let req = Request::post(gw.url("/api/log/1?api_key=secret"))
        .header("host", "api.example.test")
        .body(full("0123456789"))
        .expect("valid request");
    let forwarded = client.send(req).await;
    assert_eq!(forwarded.status, 200);
    let missing = client.get(&gw.url("/nowhere?api_key=secret")).await;
    assert_eq!(missing.status, 404);

    let log = gw.access_log(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let line = log
        .iter()
        .find(|l| l[names::REQUEST_ID] == forwarded.header("x-request-id").expect("request id"))
        .unwrap_or_else(|| panic!("no line with the response's request id: {log:?}"));
    assert_eq!(line[names::STATUS], 200);
    assert_eq!(line[names::METHOD], "POST");
    assert_eq!(line[names::URL_PATH], "/api/log/1");
    assert_eq!(line[names::SERVER_ADDRESS], "api.example.test");
    assert_eq!(line[names::CLIENT_ADDRESS], "127.0.0.1");
    assert_eq!(line[names::PROTOCOL_VERSION], "1.1");
    assert_eq!(line[names::LISTENER], "public");
    assert_eq!(line[names::ROUTE], "api");
    assert_eq!(line[names::UPSTREAM], "backend");
    assert_eq!(line[names::ENDPOINT], upstream.addr().to_string());
    assert_eq!(line[names::ATTEMPTS], 1);
    assert_eq!(line[names::BYTES_IN], 10);
    assert_eq!(line[names::BYTES_OUT], 12);
    assert!(line[names::DURATION_MS].as_f64().is_some_and(|d| d >= 0.0), "{line}");
    assert!(line[names::UPSTREAM_DURATION_MS].as_f64().is_some_and(|d| d >= 0.0), "{line}");
    assert!(line[names::TIME].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    assert!(line.get(names::ERROR_TYPE).is_none(), "{line}");

    let line = log
        .iter()
        .find(|l| l[names::REQUEST_ID] == missing.header("x-request-id").expect("request id"))
        .unwrap_or_else(|| panic!("no line for the 404: {log:?}"));
    assert_eq!(line[names::STATUS], 404);
    assert_eq!(line[names::URL_PATH], "/nowhere");
    assert_eq!(line[names::ERROR_TYPE], "no-route");
    assert_eq!(line[names::BYTES_OUT], missing.body.len() as u64);
    assert!(line.get(names::ROUTE).is_none(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_never_contains_the_query() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&simple(upstream.addr())).await;
    let client = Client::h1();
    let reply = ok_text(&client, &gw.url("/api/q?api_key=secret&x=1")).await;
    // The upstream does get the query: only the log leaves it out.
    assert_eq!(reply.json()["query"], "api_key=secret&x=1");
    assert_eq!(client.get(&gw.url("/nowhere?api_key=secret")).await.status, 404);
    assert_eq!(Client::h2().get(&gw.url("/api/q?api_key=secret")).await.status, 200);
    let log: Vec<Value> = gw.access_log(3).await;
    assert_eq!(log.len(), 3, "{log:?}");
    let raw = gw.access_log_raw();
    assert!(!raw.contains("secret"), "the query leaked into the access log: {raw}");
    assert!(!raw.contains("api_key"), "{raw}");
}
