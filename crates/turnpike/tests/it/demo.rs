//! `turnpike demo`: the fixed URL surface newcomers and later work rely on.

use std::time::Duration;

use turnpike_test::Client;

use crate::process::{Gateway, TempDir, wait_listening};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_its_documented_urls() {
    let ports = ["127.0.0.1:8080", "127.0.0.1:9901", "127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"];
    if let Some(busy) = ports.iter().find(|p| std::net::TcpListener::bind(p).is_err()) {
        assert!(std::env::var("CI").is_err(), "{busy} is in use: the demo test cannot run");
        eprintln!("SKIPPED demo_serves_its_documented_urls: {busy} is in use (is a demo already running?)");
        return;
    }
    let dir = TempDir::new("demo");
    let mut gw = Gateway::spawn(&dir, &["demo", "--workers", "1"]);
    assert!(wait_listening("127.0.0.1:8080", Duration::from_secs(10)).await, "{}", gw.output());
    let client = Client::h1();
    let get = |path: &'static str| {
        let client = client.clone();
        async move { client.get(&format!("http://127.0.0.1:8080{path}")).await }
    };

    let users = get("/api/users").await;
    assert_eq!(users.status, 200);
    let first_user = users.json()["users"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(get("/api/users/u-1001").await.json()["id"], "u-1001");
    let orders = get("/api/orders").await.json();
    let order = &orders["orders"][0];
    assert_eq!(get("/api/orders/o-3001").await.json()["id"], "o-3001");
    let products = get("/api/products").await;
    assert_eq!(products.status, 200);
    let product_id = order["items"][0]["product_id"].as_str().unwrap().to_string();
    assert!(products.text().contains(&product_id), "orders refer to products that exist");
    assert_eq!(get("/api/products/p-2001").await.json()["id"], "p-2001");
    // Products are rate limited per client: 5 per 10 s. Two calls were made; the RateLimit header counts down and
    // the sixth call in a row is refused.
    let mut remaining = Vec::new();
    let refused = loop {
        let reply = get("/api/products").await;
        if reply.status == 429 || remaining.len() > 5 {
            break reply;
        }
        remaining.push(reply.header("ratelimit").unwrap_or_default().to_string());
    };
    assert_eq!(refused.status, 429, "{remaining:?}");
    assert_eq!(remaining.len(), 3, "{remaining:?}");
    assert!(
        remaining[0].starts_with("\"per-client\";r=2;") && remaining[2].starts_with("\"per-client\";r=0;"),
        "{remaining:?}"
    );
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    assert_eq!(refused.header("retry-after"), Some("2"));

    let created = client
        .send(
            http::Request::post("http://127.0.0.1:8080/api/orders")
                .header("content-type", "application/json")
                .body(turnpike_test::client::full(format!(
                    r#"{{"user_id":"{first_user}","items":[{{"product_id":"{product_id}","quantity":2}}]}}"#
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let location = created.header("location").unwrap().to_string();
    assert!(location.starts_with("/api/orders/o-"));
    let created_id = created.json()["id"].as_str().unwrap().to_string();
    assert!(get("/api/orders").await.text().contains(&created_id));

    let banner = gw.output();
    assert!(banner.contains("curl") && banner.contains("/api/users"), "the demo prints curl commands:\n{banner}");

    // The printed token opens /api/me, which answers with the identity the users service got from the gateway.
    let token = banner
        .lines()
        .find_map(|line| line.trim().strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("the demo prints a token:\n{banner}"))
        .to_string();
    let me = client
        .send(
            http::Request::get("http://127.0.0.1:8080/api/me")
                .header("authorization", format!("Bearer {token}"))
                .header("x_user_id", "admin")
                .body(turnpike_test::client::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["received_from_gateway"]["x-user-id"], "u-1001");
    let anonymous = get("/api/me").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("content-type"), Some("application/problem+json"));
    assert!(anonymous.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));

    // The admin listener serves metrics and health on 127.0.0.1:9901, and the banner says so.
    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        assert!(banner.contains(&format!("http://127.0.0.1:9901{path}")), "{path} in the banner:\n{banner}");
    }
    let metrics = client.get("http://127.0.0.1:9901/metrics").await;
    assert_eq!(metrics.status, 200);
    let line = "turnpike_http_requests_total{route=\"products\",method=\"GET\",status_class=\"4xx\"} 1";
    assert!(metrics.text().lines().any(|l| l == line), "{line} in:\n{}", metrics.text());
    assert_eq!(client.get("http://127.0.0.1:9901/healthz").await.status, 200);
    assert_eq!(client.get("http://127.0.0.1:9901/readyz").await.status, 200);
    assert_eq!(client.get("http://127.0.0.1:9901/status").await.json()["ready"], true);
    drop(client);
    gw.signal("TERM");
    assert_eq!(gw.wait(Duration::from_secs(20)), Some(0), "no clean exit after SIGTERM:\n{}", gw.output());
}
