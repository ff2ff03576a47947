use turnpike_test::{Client, MockUpstream, TestGateway};

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  echo:
    endpoints: ["{upstream}"]
routes:
  - id: api
    match: {{ prefix: /api }}
    rewrite: {{ strip_prefix: /api }}
    upstream: echo
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_a_request_and_returns_the_answer() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&config(upstream.addr())).await;
    let reply = Client::h1().get(&gw.url("/api/users?x=1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["path"], "/users");
    assert_eq!(echo["query"], "x=1");
    assert!(reply.header("x-request-id").is_some());
    let missing = Client::h1().get(&gw.url("/nope")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/problem+json"));
    let log = gw.access_log(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    gw.shutdown().await;
}
