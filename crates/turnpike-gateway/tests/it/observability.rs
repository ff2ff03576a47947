//! The admin listener end to end: `/metrics` scraped after scripted traffic and parsed with a real exposition-format
//! parser (counts exact; random paths add no series), OpenMetrics negotiation, `/readyz` following a required
//! upstream's health, `/status`, reload metrics, and the admin listener's own guards (off by default, never on a
//! proxy port, problem+json for anything else).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use prometheus_parse::{Sample, Scrape, Value};
use turnpike_test::client::full;
use turnpike_test::{Client, MockReply, MockUpstream, TestGateway, eventually};

fn config(upstream: SocketAddr, admin: &str) -> String {
    format!(
        r#"
server: {{ watch: false{admin} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app }}
  - {{ id: slow, match: {{ prefix: /slow }}, upstream: app }}
"#
    )
}

const ADMIN: &str = ", admin: { address: 127.0.0.1:0 }";

fn admin_url(gw: &TestGateway, path: &str) -> String {
    format!("http://{}{path}", gw.handle.admin_addr().expect("an admin listener"))
}

async fn scrape(gw: &TestGateway) -> Scrape {
    let reply = Client::h1().get(&admin_url(gw, "/metrics")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = reply.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap_or_else(|e| panic!("unparseable ({e}):\n{text}"))
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

/// (count, sum) of a histogram.
fn histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (u64, f64) {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => {
            let count = find(scrape, &format!("{name}_count"), labels);
            let sum = find(scrape, &format!("{name}_sum"), labels);
            // The parser folds buckets into one sample; _count and _sum come as untyped samples.
            let value = |s: Option<&Sample>| match s.map(|s| &s.value) {
                Some(Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v)) => *v,
                other => panic!("{name}{labels:?}: {other:?}"),
            };
            let count = value(count);
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count).unwrap_or(-1.0);
            assert_eq!(count, inf, "{name}{labels:?}: _count equals the +Inf bucket");
            (count as u64, value(sum))
        }
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

/// Every series (name and labels, no values).
fn series(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            format!("{}{{{}}}", s.metric, labels.join(","))
        })
        .collect()
}

fn upstream_handler(r: &turnpike_test::mock::Recorded) -> MockReply {
    match r.uri.path() {
        "/api/fail" => MockReply::text(503, "down"),
        "/api/created" => MockReply::text(201, "made"),
        _ => MockReply::text(200, "0123456789"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_requests_sent() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&config(mock.addr(), ADMIN)).await;
    let client = Client::h1();
    for _ in 0..7 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    for _ in 0..3 {
        let req = Request::builder().method(Method::POST).uri(gw.url("/api/created")).body(full("12345")).unwrap();
        assert_eq!(client.send(req).await.status, 201);
    }
    for _ in 0..2 {
        assert_eq!(client.get(&gw.url("/api/fail")).await.status, 503);
    }
    for _ in 0..4 {
        assert_eq!(client.get(&gw.url("/nowhere")).await.status, 404);
    }
    let req = Request::builder().method("PURGE").uri(gw.url("/api/items")).body(full("")).unwrap();
    assert_eq!(client.send(req).await.status, 200);

    // The finish phase runs as the last byte goes out: wait until the gauge of requests in flight is back to 0.
    let mut scraped = scrape(&gw).await;
    for _ in 0..100 {
        if gauge(&scraped, "turnpike_http_requests_in_flight", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        scraped = scrape(&gw).await;
    }
    let s = &scraped;
    let requests = "turnpike_http_requests_total";
    assert_eq!(counter(s, requests, &[("route", "api"), ("method", "GET"), ("status_class", "2xx")]), 7.0);
    assert_eq!(counter(s, requests, &[("route", "api"), ("method", "POST"), ("status_class", "2xx")]), 3.0);
    assert_eq!(counter(s, requests, &[("route", "api"), ("method", "GET"), ("status_class", "5xx")]), 2.0);
    assert_eq!(counter(s, requests, &[("route", "api"), ("method", "_OTHER"), ("status_class", "2xx")]), 1.0);
    assert_eq!(counter(s, requests, &[("route", ""), ("method", "GET"), ("status_class", "4xx")]), 4.0);
    assert!(find(s, requests, &[("route", "slow")]).is_none(), "no series for a route without traffic");
    assert_eq!(counter(s, "turnpike_http_errors_total", &[("route", ""), ("error_type", "no-route")]), 4.0);

    let (count, _) = histogram(s, "turnpike_http_request_duration_seconds", &[("route", "api")]);
    assert_eq!(count, 13);
    let (count, sum) = histogram(s, "turnpike_http_request_body_size_bytes", &[("route", "api")]);
    assert_eq!((count, sum), (13, 15.0), "three bodies of 5 bytes");
    let (count, sum) = histogram(s, "turnpike_http_response_body_size_bytes", &[("route", "api")]);
    assert_eq!((count, sum), (13, (8 * 10 + 3 * 4 + 2 * 4) as f64), "8 x `0123456789`, 3 x `made`, 2 x `down`");

    let upstream = [("upstream", "app")];
    assert_eq!(counter(s, "turnpike_upstream_attempts_total", &upstream), 13.0);
    assert_eq!(counter(s, "turnpike_upstream_retries_total", &upstream), 0.0);
    assert_eq!(histogram(s, "turnpike_upstream_response_duration_seconds", &upstream).0, 13);
    let endpoint = mock.addr().to_string();
    let at = [("upstream", "app"), ("endpoint", endpoint.as_str())];
    let opened = counter(s, "turnpike_upstream_connections_opened_total", &at);
    let reused = counter(s, "turnpike_upstream_connection_reuses_total", &at);
    assert!(opened >= 1.0 && opened + reused == 13.0, "opened {opened} + reused {reused}");
    assert_eq!(gauge(s, "turnpike_upstream_endpoint_healthy", &at), 1.0);
    assert_eq!(gauge(s, "turnpike_upstream_healthy_endpoints", &upstream), 1.0);
    assert!(gauge(s, "turnpike_downstream_connections_open", &[]) >= 1.0, "the client's connection is open");
    assert_eq!(gauge(s, "turnpike_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(counter(s, "turnpike_config_reloads_total", &[("result", "success")]), 0.0);
    assert_eq!(counter(s, "turnpike_access_log_dropped_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_paths_add_no_series() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&config(mock.addr(), ADMIN)).await;
    let client = Client::h1();
    // One request of each kind first, so every series the scan can touch exists.
    client.get(&gw.url("/api/warm")).await;
    client.get(&gw.url("/warm")).await;
    let before = series(&scrape(&gw).await);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let base = gw.url("");
            tokio::spawn(async move {
                let client = Client::h1();
                for i in 0..1250 {
                    let n = (t * 1_000_003 + i * 7_919) % 1_000_000_007;
                    let path = if i % 2 == 0 { format!("/api/x{n}/{i}") } else { format!("/r{n}?q={i}") };
                    client.get(&format!("{base}{path}")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let after = scrape(&gw).await;
    assert_eq!(series(&after), before, "the scan added series");
    let unmatched = counter(&after, "turnpike_http_requests_total", &[("route", ""), ("status_class", "4xx")]);
    assert_eq!(unmatched, 5_001.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_is_served_when_asked_for() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&config(mock.addr(), ADMIN)).await;
    Client::h1().get(&gw.url("/api/items")).await;
    let req = Request::builder()
        .uri(admin_url(&gw, "/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
        .body(full(""))
        .unwrap();
    let reply = Client::h1().send(req).await;
    assert_eq!(reply.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = reply.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE turnpike_http_requests counter\n"), "{text}");
    assert!(text.contains("# TYPE turnpike_build info\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_health_of_a_required_upstream() {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let mock = MockUpstream::start(move |r| {
        if r.uri.path() == "/health" && !flag.load(Ordering::SeqCst) {
            return MockReply::text(503, "sick");
        }
        MockReply::text(200, "ok")
    })
    .await;
    let yaml = format!(
        r#"
server: {{ watch: false, admin: {{ address: 127.0.0.1:0, required_upstreams: [app] }} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app:
    endpoints: ["{}"]
    health_check: {{ path: /health, interval: 50ms, unhealthy_threshold: 1, healthy_threshold: 1, jitter: 0s }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app }}
"#,
        mock.addr()
    );
    let gw = TestGateway::start(&yaml).await;
    let client = Client::h1();
    let ready = |client: Client, url: String| async move { client.get(&url).await };
    let url = admin_url(&gw, "/readyz");
    assert_eq!(ready(client.clone(), url.clone()).await.status, 200);
    assert_eq!(client.get(&admin_url(&gw, "/healthz")).await.status, 200);

    healthy.store(false, Ordering::SeqCst);
    let mut last = None;
    for _ in 0..100 {
        let reply = ready(client.clone(), url.clone()).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            last = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unready = last.expect("/readyz goes unready");
    assert_eq!(unready.json()["ready"], false);
    assert_eq!(unready.json()["problems"][0], "upstream `app` has no healthy endpoint");
    assert_eq!(client.get(&admin_url(&gw, "/healthz")).await.status, 200, "alive all along");
    let status = client.get(&admin_url(&gw, "/status")).await.json();
    assert_eq!(status["ready"], false);
    assert_eq!(status["upstreams"][0]["id"], "app");
    assert_eq!(status["upstreams"][0]["healthy_endpoints"], 0);

    healthy.store(true, Ordering::SeqCst);
    let mut back = false;
    for _ in 0..100 {
        if ready(client.clone(), url.clone()).await.status == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "/readyz is ready again once the endpoint is healthy");
    let s = scrape(&gw).await;
    assert_eq!(gauge(&s, "turnpike_upstream_healthy_endpoints", &[("upstream", "app")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_and_keep_the_counts() {
    let mock = MockUpstream::start(upstream_handler).await;
    let yaml = config(mock.addr(), ADMIN);
    let gw = TestGateway::start(&yaml).await;
    let admin = gw.handle.admin_addr().unwrap();
    let client = Client::h1();
    for _ in 0..3 {
        client.get(&gw.url("/api/items")).await;
    }
    let before = scrape(&gw).await;
    let hash = find(&before, "turnpike_config_info", &[]).unwrap().labels.get("hash").unwrap().to_string();
    assert_eq!(find(&before, "turnpike_config_info", &[]).unwrap().labels.get("generation"), Some("1"));

    // The same admin address (port 0 is kept as it is: the listener stays bound); another route added.
    let changed = format!("{yaml}  - {{ id: extra, match: {{ prefix: /extra }}, upstream: app }}\n");
    gw.reload(&changed).unwrap();
    assert!(gw.reload("routes: [").is_err());
    assert_eq!(gw.handle.admin_addr(), Some(admin), "the admin listener kept its socket");
    client.get(&gw.url("/api/items")).await;
    assert!(
        eventually(Duration::from_secs(2), || gw.handle.open_connections() > 0).await,
        "the client is still connected"
    );
    let mut after = scrape(&gw).await;
    for _ in 0..100 {
        let n = counter(&after, "turnpike_http_requests_total", &[("route", "api"), ("status_class", "2xx")]);
        if n == 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = scrape(&gw).await;
    }
    assert_eq!(counter(&after, "turnpike_http_requests_total", &[("route", "api"), ("status_class", "2xx")]), 4.0);
    assert_eq!(counter(&after, "turnpike_config_reloads_total", &[("result", "success")]), 1.0);
    assert_eq!(counter(&after, "turnpike_config_reloads_total", &[("result", "failure")]), 1.0);
    let info = find(&after, "turnpike_config_info", &[]).unwrap();
    assert_eq!(info.labels.get("generation"), Some("2"));
    assert_ne!(info.labels.get("hash"), Some(hash.as_str()));
    assert!(gauge(&after, "turnpike_config_last_success_timestamp_seconds", &[]) > 1.7e9);
}

#[tokio::test]
async fn the_admin_listener_is_off_by_default_and_never_on_a_proxy_port() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&config(mock.addr(), "")).await;
    assert_eq!(gw.handle.admin_addr(), None);
    // The proxy port does not serve metrics: /metrics is just a path no route matches.
    let reply = Client::h1().get(&gw.url("/metrics")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));

    let clash = r#"
server: { admin: { address: "127.0.0.1:18999" } }
listeners: [{ name: public, address: "127.0.0.1:18999" }]
upstreams: { app: { endpoints: ["127.0.0.1:1"] } }
routes: [{ id: api, match: { prefix: /api }, upstream: app }]
"#;
    let err = TestGateway::try_start(clash, 1).await.err().expect("refused").to_string();
    assert!(err.contains("server.admin.address") && err.contains("listener `public`"), "{err}");
    let unknown = r#"
server: { admin: { address: "127.0.0.1:0", required_upstreams: [nope] } }
listeners: [{ name: public, address: "127.0.0.1:0" }]
upstreams: { app: { endpoints: ["127.0.0.1:1"] } }
routes: [{ id: api, match: { prefix: /api }, upstream: app }]
"#;
    let err = TestGateway::try_start(unknown, 1).await.err().expect("refused").to_string();
    assert!(err.contains("server.admin.required_upstreams[0]") && err.contains("unknown upstream `nope`"), "{err}");
}

#[tokio::test]
async fn the_admin_listener_answers_anything_else_with_a_problem() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&config(mock.addr(), ADMIN)).await;
    let client = Client::h1();
    let missing = client.get(&admin_url(&gw, "/admin/secrets")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/problem+json"));
    assert!(missing.json()["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    let req = Request::builder().method(Method::POST).uri(admin_url(&gw, "/metrics")).body(full("")).unwrap();
    let post = client.send(req).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

fn log_config(upstream: SocketAddr, access_log: &str) -> String {
    format!(
        r#"
server: {{ watch: false, access_log: {{ {access_log} }} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
auth_policies:
  keys: {{ api_key: {{ header: x-service-key, query: apikey }} }}
consumers:
  - {{ id: acme, keys: [{{ key: "k-acme-0123456789abcdef" }}] }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app }}
  - {{ id: keyed, match: {{ prefix: /keyed }}, upstream: app, auth: {{ policies: [keys] }} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_never_holds_a_secret() {
    let mock = MockUpstream::start(upstream_handler).await;
    let access_log = "fields: [request_id, url.path, url.query, http.response.status_code, consumer, \
                      http.request.header], request_headers: [authorization, cookie, x-service-key, user-agent, \
                      x-tenant-pin], redact_headers: [x-tenant-pin], redact_query_params: [pin]";
    let gw = TestGateway::start(&log_config(mock.addr(), access_log)).await;
    let client = Client::h1();
    let secrets = [
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature",
        "session=s3ss10n-c00kie",
        "k-acme-0123456789abcdef",
        "hunter2-pin",
        "t0ken-in-query",
        "passw0rd-in-query",
        "pin-in-query",
    ];
    let req =
        Request::get(gw.url("/keyed/items?page=1&token=t0ken-in-query&password=passw0rd-in-query&pin=pin-in-query"))
            .header("authorization", secrets[0])
            .header("cookie", secrets[1])
            .header("x-service-key", secrets[2])
            .header("x-tenant-pin", secrets[3])
            .header("user-agent", "probe/1.0")
            .body(full(""))
            .unwrap();
    assert_eq!(client.send(req).await.status, 200);
    let key_in_query = gw.url("/keyed/items?apikey=k-acme-0123456789abcdef");
    assert_eq!(client.get(&key_in_query).await.status, 200);
    let lines = gw.access_log(2).await;
    assert_eq!(lines.len(), 2);
    let first = &lines[0];
    assert_eq!(first["consumer"], "acme");
    assert_eq!(first["http.request.header.user-agent"], "probe/1.0");
    assert_eq!(first["http.request.header.authorization"], "[REDACTED]");
    assert_eq!(first["http.request.header.x-service-key"], "[REDACTED]", "the api_key policy's header");
    assert_eq!(first["url.query"], "page=1&token=[REDACTED]&password=[REDACTED]&pin=[REDACTED]");
    assert_eq!(lines[1]["url.query"], "apikey=[REDACTED]", "the api_key policy's query parameter");
    assert!(first.get("client.address").is_none(), "only the configured fields");
    let raw = gw.access_log_raw();
    for secret in secrets {
        assert!(!raw.contains(secret), "{secret} is in the access log:\n{raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_samples_successes_and_keeps_every_error() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&log_config(mock.addr(), "sample: { successes: 0, errors: 1 }")).await;
    let client = Client::h1();
    for _ in 0..10 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    for path in ["/nowhere", "/api/fail", "/keyed/items"] {
        assert!(client.get(&gw.url(path)).await.status.as_u16() >= 400);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = gw.access_log(3).await;
    // Lines from different workers sit in different buffers until written: their order across workers is not
    // the order of the requests (a connection the client reopened may land on another worker).
    let mut statuses: Vec<u64> = lines.iter().map(|l| l["http.response.status_code"].as_u64().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 404, 503], "errors only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_character_cannot_forge_a_log_line() {
    let mock = MockUpstream::start(upstream_handler).await;
    let gw = TestGateway::start(&log_config(mock.addr(), "request_headers: [x-note]")).await;
    // Raw bytes a client library would refuse to send: ESC and DEL in a header, a CR/LF-looking path.
    let mut conn = turnpike_test::RawConn::connect(gw.addr()).await;
    conn.send(b"GET /api/%0d%0a%7B%22forged%22:1%7D HTTP/1.1\r\nhost: x\r\nx-note: a\x1b[31mred\x7f\xff\r\n\r\n").await;
    let reply = conn.read_response().await;
    let status = reply.status;
    Client::h1().get(&gw.url("/api/after")).await;
    // The writer writes every 50 ms: wait for the line of the last request.
    assert!(gw.access_log(1).await.last().is_some_and(|l| l["url.path"] == "/api/after"));
    let raw = gw.access_log_raw();
    for line in raw.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.is_object());
    }
    assert!(!raw.contains('\u{1b}') && !raw.contains('\u{7f}'), "control characters are escaped: {raw}");
    assert!(raw.lines().last().unwrap().contains("/api/after"));
    assert!(status == 400 || raw.lines().count() == 2, "the raw request was refused ({status}) or logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_writer_drops_and_counts_lines_and_holds_no_request() {
    let mock = MockUpstream::start(upstream_handler).await;
    let yaml = format!(
        r#"
server: {{ watch: false, admin: {{ address: 127.0.0.1:0 }}, access_log: {{ buffer: 4KiB }} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams: {{ app: {{ endpoints: ["{}"] }} }}
routes: [{{ id: api, match: {{ prefix: /api }}, upstream: app }}]
"#,
        mock.addr()
    );
    // The writer blocks in its first write, as on a full disk or a pipe nobody reads.
    let gate = turnpike_test::LogGate::closed();
    let gw = TestGateway::start_with_log_gate(&yaml, gate.clone()).await;
    let client = Client::h1();
    const SENT: u64 = 300;
    for i in 0..SENT {
        assert_eq!(client.get(&gw.url(&format!("/api/items/{i}"))).await.status, 200, "request {i} was answered");
    }
    // A line is logged after its response's last byte: let the last one land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dropped = gw.handle.access_log_dropped();
    // The buffers hold a few kilobytes: most lines cannot wait for the writer.
    assert!(dropped >= SENT / 2, "dropped {dropped} of {SENT}");
    assert_eq!(counter(&scrape(&gw).await, "turnpike_access_log_dropped_total", &[]), dropped as f64);

    // The writer moves again: every line not dropped is written, whole.
    gate.open();
    let kept = gw.access_log((SENT - dropped) as usize).await;
    assert_eq!(kept.len() as u64 + dropped, SENT, "each request is either written or counted as dropped");
    assert!(kept.iter().all(|l| l["http.response.status_code"] == 200));
    assert_eq!(gw.handle.access_log_dropped(), dropped, "nothing dropped once the writer keeps up");
}
