//! Routing through real traffic: which route serves a request (by host, path, method, headers and query), in which
//! order routes are tried, what path and query the upstream receives, and how a request no route takes is answered.
//!
//! Every upstream is an echo that names itself, so a test sees which route served a request (each route forwards to
//! its own upstream) and what the upstream received.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use turnpike_test::client::empty;
use turnpike_test::{Client, MockReply, MockUpstream, RawConn, RawResponse, Recorded, Reply, TestGateway};

/// How long a raw exchange may take before the test fails instead of hanging. Never reached when the gateway works.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// An echo upstream that names itself: 200 with `{upstream, method, path, query}`.
async fn named_echo(name: &str) -> MockUpstream {
    let name = name.to_owned();
    MockUpstream::start(move |r: &Recorded| {
        MockReply::json(
            200,
            json!({
                "upstream": name,
                "method": r.method.as_str(),
                "path": r.uri.path(),
                "query": r.uri.query(),
            }),
        )
    })
    .await
}

/// A gateway whose routes forward to named echo upstreams.
struct Fixture {
    gw: TestGateway,
    mocks: BTreeMap<String, MockUpstream>,
    client: Client,
}

impl Fixture {
    /// Starts one named echo per name in `upstreams` (the upstream id is the name) and a gateway with `routes`: the
    /// items of the `routes:` list, indented by two spaces.
    async fn start(upstreams: &[&str], routes: &str) -> Self {
        let mut mocks = BTreeMap::new();
        let mut yaml = String::from("listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n");
        for &name in upstreams {
            let mock = named_echo(name).await;
            writeln!(yaml, "  {name}:\n    endpoints: [\"{}\"]", mock.addr()).expect("write to a string");
            mocks.insert(name.to_owned(), mock);
        }
        yaml.push_str("routes:\n");
        yaml.push_str(routes);
        let gw = TestGateway::start(&yaml).await;
        Self { gw, mocks, client: Client::h1() }
    }

    fn mock(&self, name: &str) -> &MockUpstream {
        self.mocks.get(name).unwrap_or_else(|| panic!("no upstream named {name}"))
    }

    /// Sends `method path` with `Host: host` (when given) and extra `headers`.
    async fn send(&self, method: Method, host: Option<&str>, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::builder().method(method).uri(self.gw.url(path));
        if let Some(host) = host {
            req = req.header("host", host);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.client.send(req.body(empty()).expect("valid request")).await
    }

    /// Who answered `method path` on `host` with `headers`: the upstream's name, or the gateway's status code.
    async fn who(&self, method: Method, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        served_by(&self.send(method, Some(host), path, headers).await)
    }

    /// Who answered `GET path` on `host`.
    async fn get_on(&self, host: &str, path: &str) -> String {
        self.who(Method::GET, host, path, &[]).await
    }

    /// Who answered `GET path` (any host).
    async fn get(&self, path: &str) -> String {
        self.get_with(path, &[]).await
    }

    /// Who answered `GET path` (any host) with `headers`.
    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> String {
        self.who(Method::GET, "gw.test", path, headers).await
    }

    /// `GET path` answered by an upstream: its echo.
    async fn echo(&self, path: &str) -> Value {
        let reply = self.send(Method::GET, Some("gw.test"), path, &[]).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.json()
    }

    async fn finish(self) {
        drop(self.client);
        self.gw.shutdown().await;
    }
}

/// The upstream that answered (from its echo), or the status code when the gateway answered itself.
fn served_by(reply: &Reply) -> String {
    if reply.status == 200
        && let Ok(echo) = serde_json::from_slice::<Value>(&reply.body)
        && let Some(name) = echo["upstream"].as_str()
    {
        return name.to_owned();
    }
    reply.status.as_str().to_owned()
}

/// Asserts `reply` is an RFC 9457 problem with `status`, `slug`, the request path (without query) as `instance`, and
/// the same request id as the `x-request-id` header.
fn assert_problem(reply: &Reply, status: u16, slug: &str, instance: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let body = reply.json();
    assert_eq!(body["type"], format!("https://turnpike.dev/problems/{slug}"), "{body}");
    assert_eq!(body["title"], http::StatusCode::from_u16(status).expect("status").canonical_reason().expect("reason"));
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(body["instance"], instance, "{body}");
    let id = reply.header("x-request-id").expect("x-request-id header");
    assert!(!id.is_empty());
    assert_eq!(body["request_id"], id, "{body}");
    body
}

/// Sends `GET target` as raw bytes, so that no client library or URI type normalizes the target on the way, and
/// reads the answer.
async fn raw_get(addr: SocketAddr, target: &str) -> RawResponse {
    let mut conn = RawConn::connect(addr).await;
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")).await;
    conn.read_response().await
}

/// The upstream that answered a raw request (from its echo), or the status code when the gateway answered itself.
fn raw_served_by(reply: &RawResponse) -> String {
    if reply.status == 200
        && let Ok(echo) = serde_json::from_slice::<Value>(&reply.body)
        && let Some(name) = echo["upstream"].as_str()
    {
        return name.to_owned();
    }
    reply.status.to_string()
}

/// Sends `GET http://{authority}{path}` over HTTP/2 with prior knowledge to `addr`, so `:authority` carries a name
/// that needs no DNS. Returns the status and the body as JSON.
async fn h2_get(addr: SocketAddr, authority: &str, path: &str) -> (u16, Value) {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let req = Request::get(format!("http://{authority}{path}")).body(Empty::<Bytes>::new()).expect("request");
        let resp = sender.send_request(req).await.expect("HTTP/2 exchange");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("response body").to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    };
    tokio::time::timeout(EXCHANGE_DEADLINE, exchange).await.expect("the gateway answers")
}

// ---------------------------------------------------------------------------------------------------------------
// Hosts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_matches_case_insensitively_with_or_without_port() {
    let fx = Fixture::start(
        &["api", "any"],
        r#"
  - id: api
    match: { hosts: [api.example.com], prefix: / }
    upstream: api
  - id: any
    upstream: any
"#,
    )
    .await;
    assert_eq!(fx.get_on("api.example.com", "/x").await, "api");
    assert_eq!(fx.get_on("API.Example.COM", "/x").await, "api");
    assert_eq!(fx.get_on("api.example.com:8443", "/x").await, "api");
    assert_eq!(fx.get_on("Api.Example.Com:80", "/x").await, "api");
    assert_eq!(fx.get_on("api.example.com.", "/x").await, "api", "a trailing dot names the same host");
    assert_eq!(fx.get_on("www.example.com", "/x").await, "any");
    assert_eq!(fx.get_on("api.example.co", "/x").await, "any");
    assert_eq!(fx.get_on("xapi.example.com", "/x").await, "any");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_host_matches_one_or_more_labels_but_not_the_apex() {
    let fx = Fixture::start(
        &["wild", "any"],
        r#"
  - id: wild
    match: { hosts: ["*.example.com"] }
    upstream: wild
  - id: any
    upstream: any
"#,
    )
    .await;
    assert_eq!(fx.get_on("a.example.com", "/").await, "wild");
    assert_eq!(fx.get_on("A.B.Example.com:8080", "/").await, "wild");
    assert_eq!(fx.get_on("example.com", "/").await, "any", "the apex is not covered by the wildcard");
    assert_eq!(fx.get_on("badexample.com", "/").await, "any", "the suffix is matched on a label boundary");
    assert_eq!(fx.get_on("a.example.com.evil.net", "/").await, "any");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_host_prefers_longest_suffix() {
    // Declared from the most to the least specific host and back, so declaration order cannot explain the result.
    let fx = Fixture::start(
        &["short", "long", "exact"],
        r#"
  - id: short
    match: { hosts: ["*.example.com"] }
    upstream: short
  - id: long
    match: { hosts: ["*.api.example.com"] }
    upstream: long
  - id: exact
    match: { hosts: [v1.api.example.com] }
    upstream: exact
"#,
    )
    .await;
    assert_eq!(fx.get_on("x.api.example.com", "/").await, "long");
    assert_eq!(fx.get_on("a.b.api.example.com", "/").await, "long");
    assert_eq!(fx.get_on("api.example.com", "/").await, "short");
    assert_eq!(fx.get_on("x.example.com", "/").await, "short");
    assert_eq!(fx.get_on("v1.api.example.com", "/").await, "exact", "an exact host beats every wildcard");
    assert_eq!(fx.get_on("example.com", "/").await, "404");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_group_without_a_matching_route_falls_back_to_wildcard_then_any_host_routes() {
    let fx = Fixture::start(
        &["api-users", "wild-orders", "any-health", "any-items"],
        r#"
  - id: api-users
    match: { hosts: [api.example.com], path: /users }
    upstream: api-users
  - id: api-items-get
    match: { hosts: [api.example.com], path: /items, methods: [GET] }
    upstream: api-users
  - id: wild-orders
    match: { hosts: ["*.example.com"], path: /orders }
    upstream: wild-orders
  - id: any-health
    match: { path: /health }
    upstream: any-health
  - id: any-items
    match: { path: /items, methods: [POST] }
    upstream: any-items
"#,
    )
    .await;
    assert_eq!(fx.get_on("api.example.com", "/users").await, "api-users");
    assert_eq!(fx.get_on("api.example.com", "/orders").await, "wild-orders");
    assert_eq!(fx.get_on("api.example.com", "/health").await, "any-health");
    assert_eq!(fx.get_on("other.net", "/health").await, "any-health");
    assert_eq!(fx.get_on("other.net", "/users").await, "404", "host-specific routes only serve their hosts");
    // The exact host's group has `/items` for GET only: a POST is taken by the any-host route, not refused.
    assert_eq!(fx.who(Method::POST, "api.example.com", "/items", &[]).await, "any-items");
    assert_eq!(fx.who(Method::DELETE, "api.example.com", "/items", &[]).await, "405");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_routed_by_authority() {
    let fx = Fixture::start(
        &["api", "loopback", "any"],
        r#"
  - id: api
    match: { hosts: [api.example.com] }
    upstream: api
  - id: loopback
    match: { hosts: ["127.0.0.1"] }
    upstream: loopback
  - id: any
    upstream: any
"#,
    )
    .await;
    let addr = fx.gw.addr();
    let (status, echo) = h2_get(addr, "api.example.com", "/h2?x=1").await;
    assert_eq!((status, echo["upstream"].as_str()), (200, Some("api")), "{echo}");
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/h2"), Some("x=1")));
    let (status, echo) = h2_get(addr, "API.EXAMPLE.COM:443", "/").await;
    assert_eq!((status, echo["upstream"].as_str()), (200, Some("api")), "{echo}");
    let (status, echo) = h2_get(addr, "www.example.com", "/").await;
    assert_eq!((status, echo["upstream"].as_str()), (200, Some("any")), "{echo}");

    // The harness's HTTP/2 client puts the URL's authority (`127.0.0.1:port`) in `:authority`.
    let reply = Client::h2().get(&fx.gw.url("/via-client")).await;
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(served_by(&reply), "loopback", "{}", reply.text());
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Paths

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_path_matches_only_the_whole_path() {
    let fx = Fixture::start(
        &["exact"],
        r#"
  - id: exact
    match: { path: /a/b }
    upstream: exact
"#,
    )
    .await;
    assert_eq!(fx.get("/a/b").await, "exact");
    assert_eq!(fx.get("/a/b?q=1").await, "exact", "the query is not part of the path");
    assert_eq!(fx.get("/a/b/").await, "404", "a trailing slash is another path");
    assert_eq!(fx.get("/a/b/c").await, "404");
    assert_eq!(fx.get("/a").await, "404");
    assert_eq!(fx.get("/A/B").await, "404", "paths are case-sensitive");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_param_matches_exactly_one_non_empty_segment() {
    let fx = Fixture::start(
        &["user"],
        r#"
  - id: user
    match: { path: "/users/{id}/files" }
    upstream: user
"#,
    )
    .await;
    assert_eq!(fx.get("/users/42/files").await, "user");
    assert_eq!(fx.get("/users/alice/files").await, "user");
    assert_eq!(fx.get("/users/a/b/files").await, "404");
    assert_eq!(fx.get("/users/files").await, "404");
    assert_eq!(fx.get("/users/42/files/").await, "404");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_param_matches_the_rest_but_not_the_bare_parent() {
    let fx = Fixture::start(
        &["files"],
        r#"
  - id: files
    match: { path: "/files/{*rest}" }
    upstream: files
    rewrite: { path: "/store/{rest}" }
"#,
    )
    .await;
    assert_eq!(fx.echo("/files/a").await["path"], "/store/a");
    assert_eq!(fx.echo("/files/a/b/c.txt").await["path"], "/store/a/b/c.txt");
    assert_eq!(fx.echo("/files/").await["path"], "/store/");
    assert_eq!(fx.get("/files").await, "404");
    assert_eq!(fx.get("/filesx/a").await, "404");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_is_segment_aware() {
    let fx = Fixture::start(
        &["api"],
        r#"
  - id: api
    match: { prefix: /api }
    upstream: api
"#,
    )
    .await;
    assert_eq!(fx.get("/api").await, "api");
    assert_eq!(fx.get("/api/").await, "api");
    assert_eq!(fx.get("/api/users/7").await, "api");
    assert_eq!(fx.get("/apix").await, "404");
    assert_eq!(fx.get("/apix/users").await, "404");
    assert_eq!(fx.get("/ap").await, "404");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_is_anchored_and_its_named_groups_feed_the_rewrite() {
    let fx = Fixture::start(
        &["orders"],
        r#"
  - id: orders
    match: { regex: "/orders/(?P<id>[0-9]+)(\\.json)?" }
    upstream: orders
    rewrite: { path: "/v1/order/{id}" }
"#,
    )
    .await;
    let echo = fx.echo("/orders/123?expand=items").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/v1/order/123"), Some("expand=items")));
    assert_eq!(fx.echo("/orders/7.json").await["path"], "/v1/order/7", "unnamed groups are not params");
    assert_eq!(fx.get("/orders/123x").await, "404", "anchored at the end");
    assert_eq!(fx.get("/v0/orders/123").await, "404", "anchored at the start");
    assert_eq!(fx.get("/orders/").await, "404");
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Precedence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_beats_template_beats_regex_beats_prefix() {
    // Declared from the least to the most specific kind, so declaration order cannot explain the result.
    let fx = Fixture::start(
        &["prefix", "regex", "template", "exact"],
        r#"
  - id: prefix
    match: { prefix: /p }
    upstream: prefix
  - id: regex
    match: { regex: "/p/.+" }
    upstream: regex
  - id: template
    match: { path: "/p/{x}" }
    upstream: template
  - id: exact
    match: { path: /p/exact }
    upstream: exact
"#,
    )
    .await;
    assert_eq!(fx.get("/p/exact").await, "exact");
    assert_eq!(fx.get("/p/other").await, "template");
    assert_eq!(fx.get("/p/a/b").await, "regex");
    assert_eq!(fx.get("/p").await, "prefix");
    assert_eq!(fx.get("/p/").await, "prefix");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longer_prefix_wins() {
    let fx = Fixture::start(
        &["root", "api", "v2"],
        r#"
  - id: root
    match: { prefix: / }
    upstream: root
  - id: api
    match: { prefix: /api }
    upstream: api
  - id: v2
    match: { prefix: /api/v2 }
    upstream: v2
"#,
    )
    .await;
    assert_eq!(fx.get("/api/v2/users").await, "v2");
    assert_eq!(fx.get("/api/v2").await, "v2");
    assert_eq!(fx.get("/api/v2x").await, "api");
    assert_eq!(fx.get("/api/v1/users").await, "api");
    assert_eq!(fx.get("/other").await, "root");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_segment_beats_param_which_beats_catch_all() {
    let fx = Fixture::start(
        &["by-id", "me", "rest", "name"],
        r#"
  - id: by-id
    match: { path: "/users/{id}/{section}" }
    upstream: by-id
  - id: me
    match: { path: "/users/me/{section}" }
    upstream: me
  - id: rest
    match: { path: "/files/{*rest}" }
    upstream: rest
  - id: name
    match: { path: "/files/{name}" }
    upstream: name
"#,
    )
    .await;
    assert_eq!(fx.get("/users/me/profile").await, "me");
    assert_eq!(fx.get("/users/42/profile").await, "by-id");
    assert_eq!(fx.get("/files/report.pdf").await, "name");
    assert_eq!(fx.get("/files/2024/report.pdf").await, "rest");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_with_more_header_and_query_rules_is_tried_first() {
    let fx = Fixture::start(
        &["plain", "beta", "beta-debug"],
        r#"
  - id: plain
    match: { path: /search }
    upstream: plain
  - id: beta
    match:
      path: /search
      headers: [{ name: x-beta, present: true }]
    upstream: beta
  - id: beta-debug
    match:
      path: /search
      headers: [{ name: x-beta, present: true }]
      query: [{ name: debug, present: true }]
    upstream: beta-debug
"#,
    )
    .await;
    let beta = [("x-beta", "1")];
    assert_eq!(fx.get("/search").await, "plain");
    assert_eq!(fx.get("/search?debug").await, "plain");
    assert_eq!(fx.get_with("/search", &beta).await, "beta");
    assert_eq!(fx.get_with("/search?debug=1", &beta).await, "beta-debug");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_with_a_method_list_beats_one_without() {
    let fx = Fixture::start(
        &["any-method", "get-only"],
        r#"
  - id: any-method
    match: { path: /users }
    upstream: any-method
  - id: get-only
    match: { path: /users, methods: [GET] }
    upstream: get-only
"#,
    )
    .await;
    assert_eq!(fx.get("/users").await, "get-only");
    assert_eq!(fx.who(Method::POST, "gw.test", "/users", &[]).await, "any-method");
    assert_eq!(fx.who(Method::DELETE, "gw.test", "/users", &[]).await, "any-method");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaration_order_breaks_remaining_ties() {
    // Two pairs of equally specific routes (same template up to param names, one header rule each). In each pair
    // the route declared first wins, whatever its id, param name or header name.
    let fx = Fixture::start(
        &["t-first", "t-second", "u-zeta", "u-alpha"],
        r#"
  - id: t-first
    match: { path: "/t/{a}", headers: [{ name: x-one, present: true }] }
    upstream: t-first
  - id: t-second
    match: { path: "/t/{b}", headers: [{ name: x-two, present: true }] }
    upstream: t-second
  - id: u-zeta
    match: { path: "/u/{b}", headers: [{ name: x-two, present: true }] }
    upstream: u-zeta
  - id: u-alpha
    match: { path: "/u/{a}", headers: [{ name: x-one, present: true }] }
    upstream: u-alpha
"#,
    )
    .await;
    let both = [("x-one", "1"), ("x-two", "1")];
    assert_eq!(fx.get_with("/t/1", &both).await, "t-first");
    assert_eq!(fx.get_with("/u/1", &both).await, "u-zeta");
    assert_eq!(fx.get_with("/t/1", &[("x-two", "1")]).await, "t-second");
    assert_eq!(fx.get_with("/u/1", &[("x-one", "1")]).await, "u-alpha");
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Methods, headers, query

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_route_also_serves_head() {
    let fx = Fixture::start(
        &["read"],
        r#"
  - id: read
    match: { path: /doc, methods: [GET] }
    upstream: read
"#,
    )
    .await;
    let head = fx.send(Method::HEAD, None, "/doc", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let received = fx.mock("read").requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, Method::HEAD, "HEAD is forwarded as HEAD");
    assert_eq!(fx.get("/doc").await, "read");
    assert_eq!(fx.who(Method::POST, "gw.test", "/doc", &[]).await, "405");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_gets_405_problem_with_allow_listing_every_matching_routes_methods() {
    let fx = Fixture::start(
        &["items"],
        r#"
  - id: items-read
    match: { path: /items, methods: [GET] }
    upstream: items
  - id: items-write
    match: { path: /items, methods: [PUT, POST] }
    upstream: items
  - id: items-admin
    match:
      path: /items
      methods: [PATCH]
      headers: [{ name: x-admin, present: true }]
    upstream: items
"#,
    )
    .await;
    let reply = fx.send(Method::DELETE, None, "/items?token=secret", &[]).await;
    let body = assert_problem(&reply, 405, "method-not-allowed", "/items");
    // PATCH is left out: its route also needs a header this request lacks, so it does not match but for the method.
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, PUT"));
    assert!(!reply.text().contains("secret"), "the query never appears in a problem: {body}");

    let admin = fx.send(Method::DELETE, None, "/items", &[("x-admin", "yes")]).await;
    assert_problem(&admin, 405, "method-not-allowed", "/items");
    assert_eq!(admin.header("allow"), Some("GET, HEAD, PATCH, POST, PUT"));
    assert_eq!(fx.mock("items").count(), 0);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_gets_404_problem_with_request_id() {
    let fx = Fixture::start(
        &["guarded"],
        r#"
  - id: guarded
    match:
      path: /guarded
      headers: [{ name: x-key, present: true }]
    upstream: guarded
"#,
    )
    .await;
    let reply = fx.send(Method::GET, None, "/nowhere?token=secret", &[]).await;
    assert_problem(&reply, 404, "no-route", "/nowhere");
    assert!(!reply.text().contains("secret"));
    assert!(reply.header("allow").is_none());

    // A path that matches but a header rule that fails is "no route", not "method not allowed".
    let reply = fx.send(Method::GET, None, "/guarded", &[]).await;
    assert_problem(&reply, 404, "no-route", "/guarded");
    let other = fx.send(Method::GET, None, "/nowhere", &[]).await;
    assert_ne!(other.header("x-request-id"), reply.header("x-request-id"), "each request has its own id");
    assert_eq!(fx.mock("guarded").count(), 0);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_match_exact_present_absent_and_regex_values() {
    let fx = Fixture::start(
        &["exact", "present", "absent", "regex"],
        r#"
  - id: exact
    match: { path: /exact, headers: [{ name: X-Env, exact: beta }] }
    upstream: exact
  - id: present
    match: { path: /present, headers: [{ name: x-debug, present: true }] }
    upstream: present
  - id: absent
    match: { path: /absent, headers: [{ name: x-legacy, present: false }] }
    upstream: absent
  - id: regex
    match: { path: /regex, headers: [{ name: x-version, regex: "v[0-9]+" }] }
    upstream: regex
"#,
    )
    .await;
    assert_eq!(fx.get_with("/exact", &[("x-env", "beta")]).await, "exact", "header names are case-insensitive");
    assert_eq!(fx.get_with("/exact", &[("x-env", "Beta")]).await, "404", "values compare case-sensitively");
    assert_eq!(fx.get_with("/exact", &[("x-env", "beta2")]).await, "404");
    assert_eq!(fx.get_with("/exact", &[("x-env", "alpha"), ("x-env", "beta")]).await, "exact", "any of several values");
    assert_eq!(fx.get("/exact").await, "404");

    assert_eq!(fx.get_with("/present", &[("x-debug", "")]).await, "present", "an empty value is present");
    assert_eq!(fx.get_with("/present", &[("x-debug", "1")]).await, "present");
    assert_eq!(fx.get("/present").await, "404");

    assert_eq!(fx.get("/absent").await, "absent");
    assert_eq!(fx.get_with("/absent", &[("x-legacy", "1")]).await, "404");

    assert_eq!(fx.get_with("/regex", &[("x-version", "v12")]).await, "regex");
    assert_eq!(
        fx.get_with("/regex", &[("x-version", "v12-beta")]).await,
        "404",
        "the regex must match the whole value"
    );
    assert_eq!(fx.get_with("/regex", &[("x-version", "xv12")]).await, "404");
    assert_eq!(fx.get("/regex").await, "404");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_rules_match_decoded_exact_values_presence_and_repeated_parameters() {
    let fx = Fixture::start(
        &["exact", "present", "repeated"],
        r#"
  - id: exact
    match: { path: /exact, query: [{ name: q, exact: "a b/c" }] }
    upstream: exact
  - id: present
    match: { path: /present, query: [{ name: flag, present: true }] }
    upstream: present
  - id: repeated
    match: { path: /repeated, query: [{ name: tag, exact: "y" }] }
    upstream: repeated
"#,
    )
    .await;
    assert_eq!(fx.get("/exact?q=a%20b%2Fc").await, "exact");
    assert_eq!(fx.get("/exact?q=a+b%2fc").await, "exact", "`+` is a space, escapes are case-insensitive");
    assert_eq!(fx.get("/exact?other=1&q=a%20b/c").await, "exact");
    assert_eq!(fx.get("/exact?q=a%20b").await, "404");
    assert_eq!(fx.get("/exact?Q=a%20b%2Fc").await, "404", "names are case-sensitive");
    assert_eq!(fx.get("/exact").await, "404");
    // The upstream gets the query string as the client sent it.
    assert_eq!(fx.echo("/exact?q=a+b%2fc&z=1").await["query"], "q=a+b%2fc&z=1");

    assert_eq!(fx.get("/present?flag").await, "present");
    assert_eq!(fx.get("/present?flag=").await, "present");
    assert_eq!(fx.get("/present?x=1&flag=0").await, "present");
    assert_eq!(fx.get("/present?flagx=1").await, "404");
    assert_eq!(fx.get("/present").await, "404");

    assert_eq!(fx.get("/repeated?tag=x&tag=y").await, "repeated");
    assert_eq!(fx.get("/repeated?tag=y&tag=x").await, "repeated");
    assert_eq!(fx.get("/repeated?tag=x&tag=z").await, "404");
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Rewrites

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_removes_the_prefix_and_keeps_the_query() {
    let fx = Fixture::start(
        &["api"],
        r#"
  - id: api
    match: { prefix: /api }
    upstream: api
    rewrite: { strip_prefix: /api }
"#,
    )
    .await;
    let echo = fx.echo("/api/users/7?x=1&y=a%20b").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/users/7"), Some("x=1&y=a%20b")));
    let echo = fx.echo("/api?x=1").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/"), Some("x=1")));
    let echo = fx.echo("/api/").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/"), None));
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrite_fills_captured_params_and_keeps_the_query() {
    let fx = Fixture::start(
        &["users"],
        r#"
  - id: users
    match: { path: "/v2/users/{id}/posts/{post}" }
    upstream: users
    rewrite: { path: "/users/{id}/p/{post}" }
  - id: user
    match: { path: "/v2/users/{id}" }
    upstream: users
    rewrite: { path: "/users/{id}" }
"#,
    )
    .await;
    let echo = fx.echo("/v2/users/42?fields=name&x").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/users/42"), Some("fields=name&x")));
    let echo = fx.echo("/v2/users/42/posts/9").await;
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/users/42/p/9"), None));
    // Params are slices of the normalized path: still percent-encoded where it is.
    assert_eq!(fx.echo("/v2/users/a%2Fb").await["path"], "/users/a%2Fb");
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Path normalization (raw requests: the gateway must see exactly these bytes)

const PUBLIC_AND_ADMIN: &str = r#"
  - id: public
    match: { prefix: /public }
    upstream: public
  - id: admin
    match: { prefix: /admin }
    upstream: admin
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_empty_segments_cannot_reach_around_a_route() {
    let fx = Fixture::start(&["public", "admin"], PUBLIC_AND_ADMIN).await;
    let addr = fx.gw.addr();
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "//admin",
        "/public/./../admin",
        "/public/x/../../admin",
        "/public/..//admin",
        "/./admin",
        "/../admin",
    ] {
        let reply = raw_get(addr, target).await;
        assert_eq!(raw_served_by(&reply), "admin", "{target} is routed as /admin: {reply:?}");
        assert_eq!(reply.json()["path"], "/admin", "{target} is forwarded as /admin");
    }
    assert_eq!(fx.mock("public").count(), 0, "no request reached the /public route's upstream");
    // The public route does work: the requests above were kept from it by normalization.
    assert_eq!(raw_served_by(&raw_get(addr, "/public/../public/page").await), "public");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_does_not_split_segments() {
    let fx = Fixture::start(
        &["one-segment", "two-segments", "public", "admin"],
        r#"
  - id: one-segment
    match: { path: "/files/{name}" }
    upstream: one-segment
  - id: two-segments
    match: { path: /files/a/b }
    upstream: two-segments
  - id: public
    match: { prefix: /public }
    upstream: public
  - id: admin
    match: { prefix: /admin }
    upstream: admin
"#,
    )
    .await;
    let addr = fx.gw.addr();
    let reply = raw_get(addr, "/files/a%2Fb").await;
    assert_eq!(raw_served_by(&reply), "one-segment", "{reply:?}");
    assert_eq!(reply.json()["path"], "/files/a%2Fb", "`%2F` stays encoded on the way upstream");
    let reply = raw_get(addr, "/files/a%2fb").await;
    assert_eq!(raw_served_by(&reply), "one-segment", "{reply:?}");
    assert_eq!(reply.json()["path"], "/files/a%2Fb", "escapes are forwarded in upper case");
    assert_eq!(raw_served_by(&raw_get(addr, "/files/a/b").await), "two-segments");
    // `..%2Fadmin` is one segment under /public, never a way out of it.
    let reply = raw_get(addr, "/public/..%2Fadmin").await;
    assert_eq!(raw_served_by(&reply), "public", "{reply:?}");
    assert_eq!(reply.json()["path"], "/public/..%2Fadmin");
    assert_eq!(raw_served_by(&raw_get(addr, "/public%2F..%2Fadmin").await), "404");
    assert_eq!(fx.mock("admin").count(), 0);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_escapes_and_backslashes_get_400_problem() {
    let fx = Fixture::start(&["public", "admin"], PUBLIC_AND_ADMIN).await;
    let addr = fx.gw.addr();
    for target in [
        "/public/%zz",
        "/public/%2",
        "/public/%",
        "/public/%g0/x",
        "/public\\..\\admin",
        "/public/..\\admin",
        "/admin\\x",
    ] {
        let reply = raw_get(addr, target).await;
        assert_eq!(reply.status, 400, "{target}: {reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{target}: {reply:?}");
        let body = reply.json();
        assert_eq!(body["type"], "https://turnpike.dev/problems/invalid-path", "{target}: {body}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["title"], "Bad Request");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(Some(body["request_id"].as_str().unwrap_or_default()), reply.header("x-request-id"), "{body}");
    }
    assert_eq!(fx.mock("public").count() + fx.mock("admin").count(), 0);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_the_normalized_path() {
    let fx = Fixture::start(
        &["all"],
        r#"
  - id: all
    upstream: all
"#,
    )
    .await;
    let addr = fx.gw.addr();
    for (sent, forwarded, query) in [
        ("/api/./v1//users/%7Efred?x=%2e%2e", "/api/v1/users/~fred", Some("x=%2e%2e")),
        ("/%41%62c/%2d%5F/", "/Abc/-_/", None),
        ("/a/b/..", "/a/", None),
        ("/a/%c3%a9/%3a", "/a/%C3%A9/%3A", None),
        ("/already/normal?k=v", "/already/normal", Some("k=v")),
    ] {
        let reply = raw_get(addr, sent).await;
        assert_eq!(reply.status, 200, "{sent}: {reply:?}");
        let echo = reply.json();
        assert_eq!(echo["path"], forwarded, "{sent}");
        assert_eq!(echo["query"].as_str(), query, "{sent}: the query is forwarded untouched");
    }
    fx.finish().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Scale

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_routes_load_and_each_request_selects_its_own_route() {
    // Four kinds of route, interleaved: exact paths, templates, prefixes and host-specific exact paths. Each route
    // rewrites to `/r{i}...`, so the upstream's echo says which route served.
    const ROUTES: usize = 10_000;
    let echo = named_echo("echo").await;
    let mut yaml = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  echo:\n    endpoints: [\"{}\"]\nroutes:\n",
        echo.addr()
    );
    for i in 0..ROUTES {
        let (matcher, rewrite) = match i % 4 {
            0 => (format!("path: /exact/{i}"), format!("/r{i}")),
            1 => (format!("path: \"/tpl/{i}/{{id}}\""), format!("/r{i}/{{id}}")),
            2 => (format!("prefix: /pre/{i}"), format!("/r{i}")),
            _ => (format!("path: /by-host, hosts: [h{i}.example.com]"), format!("/r{i}")),
        };
        writeln!(
            yaml,
            "  - {{ id: r{i}, upstream: echo, match: {{ {matcher} }}, rewrite: {{ path: \"{rewrite}\" }} }}"
        )
        .expect("write to a string");
    }
    let gw = TestGateway::start(&yaml).await;
    assert_eq!(gw.handle.snapshot().routes.len(), ROUTES);
    let client = Client::h1();
    for (host, path, expected) in [
        ("gw.test", "/exact/0", "/r0"),
        ("gw.test", "/exact/4996", "/r4996"),
        ("gw.test", "/exact/9996", "/r9996"),
        ("gw.test", "/tpl/1/abc", "/r1/abc"),
        ("gw.test", "/tpl/5001/x", "/r5001/x"),
        ("gw.test", "/tpl/9997/last", "/r9997/last"),
        ("gw.test", "/pre/2", "/r2"),
        ("gw.test", "/pre/2/deeper/still", "/r2"),
        ("gw.test", "/pre/22/x", "/r22"),
        ("gw.test", "/pre/9998/x", "/r9998"),
        ("h3.example.com", "/by-host", "/r3"),
        ("H7003.example.com:8080", "/by-host", "/r7003"),
        ("h9999.example.com", "/by-host", "/r9999"),
        // Misses: the shape of another kind of route, a host with no route, past the last route.
        ("gw.test", "/exact/1", "404"),
        ("gw.test", "/tpl/0/x", "404"),
        ("gw.test", "/pre/3/x", "404"),
        ("gw.test", "/by-host", "404"),
        ("h4.example.com", "/by-host", "404"),
        ("gw.test", "/exact/10000", "404"),
    ] {
        let req = Request::get(gw.url(path)).header("host", host).body(empty()).expect("valid request");
        let reply = client.send(req).await;
        let outcome = match reply.status.as_u16() {
            200 => reply.json()["path"].as_str().unwrap_or_default().to_owned(),
            status => status.to_string(),
        };
        assert_eq!(outcome, expected, "GET {path} on {host}");
    }
    drop(client);
    gw.shutdown().await;
}
