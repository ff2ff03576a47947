//! Edge guards: identity headers clients cannot spoof, address filters, CORS, body validation, security headers,
//! URI limits and the HTTPS redirect listener.

use http::Request;
use turnpike_test::client::{empty, full};
use turnpike_test::{Client, MockUpstream, TestGateway};

fn config(server: &str, listener_extra: &str, route_extra: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
server:
{server}
listeners:
  - name: public
    address: 127.0.0.1:0
{listener_extra}
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
routes:
  - id: api
    match: {{ prefix: /api, methods: [GET, POST] }}
    upstream: app
{route_extra}
"#
    )
}

fn problem_type(reply: &turnpike_test::Reply) -> String {
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["request_id"], reply.header("x-request-id").unwrap_or(""));
    v["type"].as_str().unwrap_or("").trim_start_matches("https://turnpike.dev/problems/").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("  watch: false", "", "", upstream.addr())).await;
    let req = Request::get(gw.url("/api/x"))
        .header("x-user-id", "admin")
        .header("X_User_Id", "admin")
        .header("X-USER-ROLES", "admin")
        .header("x-consumer-id", "acme")
        .header("x-client-cert-subject", "CN=admin")
        .header("x-user-idx", "not an identity header")
        .body(empty())
        .unwrap();
    let echo = Client::h1().send(req).await.json();
    let headers = echo["headers"].as_object().unwrap();
    for name in ["x-user-id", "x_user_id", "x-user-roles", "x-consumer-id", "x-client-cert-subject"] {
        assert!(!headers.contains_key(name), "{name} reached the upstream: {headers:?}");
    }
    assert!(headers.contains_key("x-user-idx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_filters_use_the_real_client_address() {
    let upstream = MockUpstream::echo().await;
    let route = "    ip_filter: { allow: [10.0.0.0/8] }";
    let gw = TestGateway::start(&config("  watch: false", "", route, upstream.addr())).await;
    let denied = Client::h1().get(&gw.url("/api/x")).await;
    assert_eq!(denied.status, 403);
    assert_eq!(problem_type(&denied), "address-denied");

    // Behind a trusted proxy, the address it reports is the one filtered.
    let server = "  trusted_proxies: [127.0.0.0/8]";
    let gw = TestGateway::start(&config(server, "", route, upstream.addr())).await;
    let via_proxy =
        |xff: &'static str| Request::get(gw.url("/api/x")).header("x-forwarded-for", xff).body(empty()).unwrap();
    assert_eq!(Client::h1().send(via_proxy("10.1.2.3")).await.status, 200);
    assert_eq!(Client::h1().send(via_proxy("192.0.2.1")).await.status, 403);

    let server = "  ip_filter: { deny: [127.0.0.1] }";
    let gw = TestGateway::start(&config(server, "", "", upstream.addr())).await;
    assert_eq!(Client::h1().get(&gw.url("/api/x")).await.status, 403);
    assert_eq!(upstream.count(), 1, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_and_origins_never_echoed_blindly() {
    let upstream = MockUpstream::echo().await;
    let route = "    cors: { allow_origins: [\"https://app.example.com\"], allow_headers: [content-type], \
                 expose_headers: [x-request-id], allow_credentials: true }";
    let gw = TestGateway::start(&config("  watch: false", "", route, upstream.addr())).await;
    let preflight = |origin: &'static str, method: &'static str| {
        Request::builder()
            .method("OPTIONS")
            .uri(gw.url("/api/orders"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .body(empty())
            .unwrap()
    };
    // The route does not list OPTIONS; its preflight is still answered, by the gateway.
    let ok = Client::h1().send(preflight("https://app.example.com", "POST")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, POST"));
    let evil = Client::h1().send(preflight("https://evil.test", "POST")).await;
    assert_eq!(evil.status, 403);
    assert_eq!(problem_type(&evil), "origin-denied");
    assert!(evil.header("access-control-allow-origin").is_none());
    // A preflight for a method no route serves there is refused as such: 405 with `Allow`, no CORS headers.
    let delete = Client::h1().send(preflight("https://app.example.com", "DELETE")).await;
    assert_eq!(delete.status, 405);
    assert!(delete.header("access-control-allow-origin").is_none());
    assert_eq!(upstream.count(), 0, "preflights never reach the upstream");

    let actual = |origin: &'static str| Request::get(gw.url("/api/x")).header("origin", origin).body(empty()).unwrap();
    let ok = Client::h1().send(actual("https://app.example.com")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(ok.header("access-control-expose-headers"), Some("x-request-id"));
    assert!(ok.headers.get_all("vary").iter().any(|v| v == "origin"));
    let other = Client::h1().send(actual("https://evil.test")).await;
    assert_eq!(other.status, 200);
    assert!(other.header("access-control-allow-origin").is_none(), "an unknown origin is never echoed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_validated_against_the_route_schema() {
    let upstream = MockUpstream::echo().await;
    let route = r#"    validate:
      max_size: 1KiB
      schema:
        type: object
        required: [user_id, items]
        properties:
          user_id: { type: string }
          items: { type: array, minItems: 1, items: { type: object, properties: { quantity: { type: integer, minimum: 1 } } } }
    cors: { allow_origins: ["https://app.example.com"] }"#;
    let gw = TestGateway::start(&config("  watch: false", "", route, upstream.addr())).await;
    let post = |ct: &'static str, body: &'static str| {
        Request::post(gw.url("/api/orders"))
            .header("content-type", ct)
            .header("origin", "https://app.example.com")
            .body(full(body))
            .unwrap()
    };
    let ok = Client::h1().send(post("application/json", r#"{"user_id":"u-1","items":[{"quantity":2}]}"#)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"], r#"{"user_id":"u-1","items":[{"quantity":2}]}"#, "the upstream gets the body intact");

    let bad = Client::h1().send(post("application/json", r#"{"user_id":7,"items":[{"quantity":0}]}"#)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(problem_type(&bad), "invalid-body");
    let pointers: Vec<String> =
        bad.json()["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap().to_string()).collect();
    assert!(
        pointers.contains(&"/user_id".to_string()) && pointers.contains(&"/items/0/quantity".to_string()),
        "{pointers:?}"
    );
    assert_eq!(bad.header("access-control-allow-origin"), Some("https://app.example.com"), "browsers can read errors");

    assert_eq!(Client::h1().send(post("application/json", "{not json")).await.status, 400);
    let media = Client::h1().send(post("text/plain", "{}")).await;
    assert_eq!((media.status.as_u16(), problem_type(&media).as_str()), (415, "unsupported-media-type"));
    let big = format!(r#"{{"user_id":"{}","items":[{{"quantity":1}}]}}"#, "x".repeat(2048));
    let big = Request::post(gw.url("/api/orders")).header("content-type", "application/json").body(full(big)).unwrap();
    assert_eq!(Client::h1().send(big).await.status, 413);
    assert_eq!(upstream.count(), 1, "only the valid body reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_added_and_revealing_ones_removed() {
    let upstream = turnpike_test::MockUpstream::start(|_| {
        turnpike_test::MockReply::text(200, "ok")
            .header("server", "Apache/2.4.1")
            .header("x-powered-by", "PHP/5")
            .header("referrer-policy", "no-referrer")
    })
    .await;
    let server = "  security_headers: { remove: [server, x-powered-by], frame_options: DENY }";
    let gw = TestGateway::start(&config(server, "", "", upstream.addr())).await;
    let reply = Client::h1().get(&gw.url("/api/x")).await;
    assert!(reply.header("server").is_none() && reply.header("x-powered-by").is_none());
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "the upstream's own value wins");
    let missing = Client::h1().get(&gw.url("/nope")).await;
    assert_eq!(missing.header("x-content-type-options"), Some("nosniff"), "gateway errors get them too");
    assert_eq!(missing.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_request_targets_get_414() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("  watch: false", "    max_uri_length: 1KiB", "", upstream.addr())).await;
    let long = format!("/api/x?q={}", "a".repeat(2000));
    let reply = Client::h1().get(&gw.url(&long)).await;
    assert_eq!(reply.status, 414);
    assert_eq!(problem_type(&reply), "uri-too-long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_sends_every_request_to_https() {
    let upstream = MockUpstream::echo().await;
    let gw =
        TestGateway::start(&config("  watch: false", "    redirect_https: { port: 8443 }", "", upstream.addr())).await;
    let req = Request::post(gw.url("/api/x?a=1")).header("host", "api.example.com:8080").body(full("x")).unwrap();
    let reply = Client::h1().send(req).await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("https://api.example.com:8443/api/x?a=1"));
    assert_eq!(upstream.count(), 0);
}
