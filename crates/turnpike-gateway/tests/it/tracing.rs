//! Distributed tracing end to end: an OTLP receiver started here (gRPC over HTTP/2, and OTLP/HTTP), decoding with
//! the types generated from the OpenTelemetry protobuf definitions (`opentelemetry-proto`), gets the spans of a
//! request retried once: one server span, two attempt spans under it, the upstream saw the same trace with the
//! attempt as its parent; an incoming `traceparent` is continued; unsampled traces still propagate; a collector
//! that is down costs requests nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use turnpike_test::client::full;
use turnpike_test::{Client, MockReply, MockUpstream, Recorded, TestGateway, eventually};

/// Resource attributes of a batch.
type Attributes = Vec<(String, String)>;

/// Spans a receiver got, with the resource attributes of their batch.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Attributes, Span)>>>);

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().iter().map(|(_, s)| s.clone()).collect()
    }

    fn resource(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().first().map(|(r, _)| r.clone()).unwrap_or_default()
    }

    fn push(&self, request: ExportTraceServiceRequest) {
        for rs in request.resource_spans {
            let resource: Vec<(String, String)> = rs
                .resource
                .map(|r| r.attributes.iter().map(|kv| (kv.key.clone(), string(kv.value.as_ref()))).collect())
                .unwrap_or_default();
            for ss in rs.scope_spans {
                assert_eq!(ss.scope.as_ref().map(|s| s.name.as_str()), Some("turnpike"));
                for span in ss.spans {
                    self.0.lock().unwrap().push((resource.clone(), span));
                }
            }
        }
    }
}

fn string(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| string(kv.value.as_ref()))
}

/// An OTLP/gRPC receiver: `TraceService/Export` over HTTP/2, gRPC framing, `grpc-status: 0`.
async fn grpc_receiver() -> (MockUpstream, Received) {
    let received = Received::default();
    let sink = received.clone();
    let mock = MockUpstream::start_h2(move |r: &Recorded| {
        assert_eq!(r.uri.path(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export");
        assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
        let body = &r.body;
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(body.len(), 5 + len, "one message");
        sink.push(ExportTraceServiceRequest::decode(&body[5..]).expect("an ExportTraceServiceRequest"));
        // An empty ExportTraceServiceResponse, framed.
        MockReply::text(200, vec![0u8, 0, 0, 0, 0])
            .header("content-type", "application/grpc")
            .trailer("grpc-status", "0")
    })
    .await;
    (mock, received)
}

/// An OTLP/HTTP receiver: protobuf `POST /v1/traces`.
async fn http_receiver() -> (MockUpstream, Received) {
    let received = Received::default();
    let sink = received.clone();
    let mock = MockUpstream::start(move |r: &Recorded| {
        assert_eq!(r.uri.path(), "/v1/traces");
        assert_eq!(r.headers.get("content-type").unwrap(), "application/x-protobuf");
        assert_eq!(r.headers.get("x-collector-key").unwrap(), "s3cret");
        sink.push(ExportTraceServiceRequest::decode(&r.body[..]).expect("an ExportTraceServiceRequest"));
        MockReply::text(200, "").header("content-type", "application/x-protobuf")
    })
    .await;
    (mock, received)
}

/// An upstream that fails the first request with 503 and answers the others.
async fn flaky_once() -> MockUpstream {
    let calls = AtomicUsize::new(0);
    MockUpstream::start(move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            MockReply::text(503, "busy")
        } else {
            MockReply::text(200, "ok")
        }
    })
    .await
}

fn config(upstream: std::net::SocketAddr, tracing: &str) -> String {
    format!(
        r#"
server:
  watch: false
  admin: {{ address: 127.0.0.1:0 }}
  tracing: {{ {tracing}, interval: 20ms }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app:
    endpoints: ["{upstream}"]
    outlier_detection: {{ enabled: false }}
    retry: {{ backoff_base: 1ms, backoff_max: 1ms }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app }}
"#
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn spans_eventually(received: &Received, n: usize) -> Vec<Span> {
    assert!(
        eventually(Duration::from_secs(5), || received.spans().len() >= n).await,
        "expected {n} spans, got {:?}",
        received.spans().iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    received.spans()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_exports_one_server_span_and_two_attempt_spans() {
    let (collector, received) = grpc_receiver().await;
    let upstream = flaky_once().await;
    let endpoint = format!("endpoint: \"http://{}\", resource: {{ deployment.environment: test }}", collector.addr());
    let gw = TestGateway::start(&config(upstream.addr(), &endpoint)).await;
    let reply = Client::h1().get(&gw.url("/api/items")).await;
    assert_eq!(reply.status, 200, "the retry hid the 503");

    let spans = spans_eventually(&received, 3).await;
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Server as i32).collect();
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Client as i32).collect();
    assert_eq!((servers.len(), attempts.len()), (1, 2), "{spans:#?}");
    let server = servers[0];
    assert_eq!(server.name, "GET api");
    assert!(server.parent_span_id.is_empty(), "a new trace: the server span is the root");
    assert_eq!(attribute(server, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(server, "turnpike.route").as_deref(), Some("api"));
    for attempt in &attempts {
        assert_eq!(attempt.trace_id, server.trace_id);
        assert_eq!(attempt.parent_span_id, server.span_id, "attempts are children of the server span");
        assert!(attempt.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(attempt.end_time_unix_nano <= server.end_time_unix_nano);
    }
    let mut statuses: Vec<String> =
        attempts.iter().map(|a| attribute(a, "http.response.status_code").unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, ["200", "503"]);
    assert_eq!(attempts.iter().filter(|a| attribute(a, "http.request.resend_count").is_some()).count(), 1);

    // The upstream saw the trace, each attempt under its own span.
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.headers.get("traceparent").unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 2);
    for header in &seen {
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts[1], hex(&server.trace_id), "{header}");
        assert!(attempts.iter().any(|a| hex(&a.span_id) == parts[2]), "{header}: parent is an attempt span");
        assert_eq!(parts[3], "01");
    }
    assert_ne!(seen[0], seen[1], "each attempt sends its own span id");
    let resource = received.resource();
    assert!(resource.contains(&("service.name".into(), "turnpike".into())), "{resource:?}");
    assert!(resource.contains(&("deployment.environment".into(), "test".into())), "{resource:?}");

    // The duration histograms carry the trace id as an exemplar (OpenMetrics).
    let admin = gw.handle.admin_addr().unwrap();
    let req = Request::get(format!("http://{admin}/metrics"))
        .header("accept", "application/openmetrics-text")
        .body(full(""))
        .unwrap();
    let metrics = Client::h1().send(req).await.text();
    let exemplar = format!("# {{trace_id=\"{}\"}}", hex(&server.trace_id));
    for family in [
        "turnpike_http_request_duration_seconds_bucket{route=\"api\"",
        "turnpike_upstream_response_duration_seconds_bucket{upstream=\"app\"",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(family) && l.contains(&exemplar)),
            "{family} with {exemplar} in:\n{metrics}"
        );
    }

    // The access log carries the same trace id.
    let log = gw.access_log(1).await;
    assert_eq!(log[0]["trace_id"], hex(&server.trace_id));
    assert_eq!(log[0]["span_id"], hex(&server.span_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_continued_not_replaced() {
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&config(upstream.addr(), &format!("endpoint: \"http://{}\"", collector.addr()))).await;
    let req = Request::get(gw.url("/api/items"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("tracestate", "vendor=abc")
        .body(full(""))
        .unwrap();
    assert_eq!(Client::h1().send(req).await.status, 200);
    let spans = spans_eventually(&received, 2).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).unwrap();
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7", "the caller's span is the parent");
    assert_eq!(server.trace_state, "vendor=abc");
    let recorded = &upstream.requests()[0];
    let header = recorded.headers.get("traceparent").unwrap().to_str().unwrap();
    assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{header}");
    assert!(!header.contains("00f067aa0ba902b7"), "the upstream's parent is the gateway's attempt span");
    assert_eq!(recorded.headers.get("tracestate").unwrap(), "vendor=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_traces_propagate_without_recording() {
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let tracing = format!("endpoint: \"http://{}\", sample_ratio: 0", collector.addr());
    let gw = TestGateway::start(&config(upstream.addr(), &tracing)).await;
    let client = Client::h1();
    for _ in 0..5 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    // A caller that sampled is followed, ratio or not.
    let req = Request::get(gw.url("/api/items"))
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .body(full(""))
        .unwrap();
    assert_eq!(client.send(req).await.status, 200);
    let spans = spans_eventually(&received, 2).await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == "0af7651916cd43dd8448eb211c80319c"), "only the sampled trace");
    let headers: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.headers.get("traceparent").unwrap().to_str().unwrap().to_string())
        .collect();
    assert!(headers[..5].iter().all(|h| h.ends_with("-00")), "unsampled, still propagated: {headers:?}");
    assert_eq!(received.spans().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_otlp_http_with_the_configured_headers() {
    let (collector, received) = http_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let tracing = format!(
        "endpoint: \"http://{}\", protocol: http, headers: {{ x-collector-key: s3cret }}, propagation: [w3c, b3]",
        collector.addr()
    );
    let gw = TestGateway::start(&config(upstream.addr(), &tracing)).await;
    let req = Request::get(gw.url("/api/items"))
        .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        .body(full(""))
        .unwrap();
    assert_eq!(Client::h1().send(req).await.status, 200);
    let spans = spans_eventually(&received, 2).await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == "80f198ee56343ba864fe8b2a57d3eff7"));
    let recorded = &upstream.requests()[0];
    assert!(recorded.headers.get("b3").unwrap().to_str().unwrap().starts_with("80f198ee56343ba864fe8b2a57d3eff7-"));
    assert!(recorded.headers.get("traceparent").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let down = turnpike_test::refused_addr();
    let gw = TestGateway::start(&config(upstream.addr(), &format!("endpoint: \"http://{down}\""))).await;
    let client = Client::h1();
    for _ in 0..20 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    let stats = gw.handle.trace_stats().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || stats.failures.load(Ordering::Relaxed) > 0).await,
        "the failed export is counted"
    );
    assert!(eventually(Duration::from_secs(5), || stats.dropped.load(Ordering::Relaxed) == 40).await);
    assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn tracing_config_errors_name_the_field() {
    for (tracing, field, message) in [
        ("endpoint: \"https://collector:4317\"", "server.tracing.endpoint", "TLS to the collector"),
        ("endpoint: \"collector\"", "server.tracing.endpoint", "not an `http://host:port` URL"),
        ("endpoint: \"http://127.0.0.1:4317\", sample_ratio: 1.5", "server.tracing.sample_ratio", "between 0 and 1"),
        ("endpoint: \"http://127.0.0.1:4317\", propagation: []", "server.tracing.propagation", "at least one"),
    ] {
        let yaml = config("127.0.0.1:1".parse().unwrap(), tracing);
        let err = TestGateway::try_start(&yaml, 1).await.err().expect("refused").to_string();
        assert!(err.contains(field) && err.contains(message), "{tracing}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_rate_limiting_are_child_spans_of_the_server_span() {
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let yaml = format!(
        r#"
server: {{ watch: false, tracing: {{ endpoint: "http://{collector}", interval: 20ms }} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams: {{ app: {{ endpoints: ["{upstream}"] }} }}
auth_policies: {{ keys: {{ api_key: {{ header: x-api-key }} }} }}
consumers: [{{ id: acme, keys: [{{ key: "k-trace-0123456789abcdef" }}] }}]
rate_limits:
  per-consumer: {{ limits: [{{ name: second, key: consumer, limit: 100, per: 1s }}] }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app, auth: {{ policies: [keys] }}, rate_limit: {{ policies: [per-consumer] }} }}
"#,
        collector = collector.addr(),
        upstream = upstream.addr()
    );
    let gw = TestGateway::start(&yaml).await;
    let req =
        Request::get(gw.url("/api/items")).header("x-api-key", "k-trace-0123456789abcdef").body(full("")).unwrap();
    assert_eq!(Client::h1().send(req).await.status, 200);
    let spans = spans_eventually(&received, 4).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).unwrap();
    for name in ["authenticate", "rate_limit"] {
        let span = spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span: {spans:#?}"));
        assert_eq!(span.kind, SpanKind::Internal as i32);
        assert_eq!(span.parent_span_id, server.span_id, "{name} is a child of the server span");
        assert_eq!(span.trace_id, server.trace_id);
    }
    let limit = spans.iter().find(|s| s.name == "rate_limit").unwrap();
    assert_eq!(attribute(limit, "turnpike.rate_limit").as_deref(), Some("allowed"));
    // A refused credential is an authentication span with an error status.
    let req = Request::get(gw.url("/api/items")).header("x-api-key", "wrong").body(full("")).unwrap();
    assert_eq!(Client::h1().send(req).await.status, 401);
    let spans = spans_eventually(&received, 6).await;
    let failed =
        spans.iter().filter(|s| s.name == "authenticate").find(|s| s.status.as_ref().is_some_and(|st| st.code == 2));
    assert!(failed.is_some(), "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_decision_is_a_client_span_under_rate_limiting() {
    use turnpike_test::redis::{SHARED_REDIS, shared_redis};
    if !shared_redis("a_redis_decision_is_a_client_span_under_rate_limiting") {
        return;
    }
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let yaml = format!(
        r#"
server:
  watch: false
  tracing: {{ endpoint: "http://{collector}", interval: 20ms }}
  redis: {{ url: "redis://{SHARED_REDIS}", key_prefix: "turnpike:test:trace:{nanos}:", timeout: 5s }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams: {{ app: {{ endpoints: ["{upstream}"] }} }}
rate_limits:
  shared: {{ store: redis, limits: [{{ name: second, key: client_ip, limit: 100, per: 1s }}] }}
routes:
  - {{ id: api, match: {{ prefix: /api }}, upstream: app, rate_limit: {{ policies: [shared] }} }}
"#,
        collector = collector.addr(),
        upstream = upstream.addr()
    );
    let gw = TestGateway::start(&yaml).await;
    assert_eq!(Client::h1().get(&gw.url("/api/items")).await.status, 200);
    let spans = spans_eventually(&received, 4).await;
    let limit = spans.iter().find(|s| s.name == "rate_limit").unwrap_or_else(|| panic!("{spans:#?}"));
    let redis = spans.iter().find(|s| s.name == "redis").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(redis.kind, SpanKind::Client as i32);
    assert_eq!(redis.parent_span_id, limit.span_id, "the Redis call is a child of the rate_limit span");
    assert_eq!(attribute(redis, "db.system.name").as_deref(), Some("redis"));
    assert!(redis.start_time_unix_nano >= limit.start_time_unix_nano);
    assert!(redis.end_time_unix_nano <= limit.end_time_unix_nano);
}

/// One route to `upstream`, spans exported to `collector` in batches of `max_batch` or every `interval`.
fn batched(
    collector: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    max_batch: usize,
    interval: &str,
) -> String {
    format!(
        r#"
server:
  watch: false
  tracing: {{ endpoint: "http://{collector}", max_batch: {max_batch}, interval: {interval} }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams: {{ app: {{ endpoints: ["{upstream}"] }} }}
routes: [{{ id: api, match: {{ prefix: /api }}, upstream: app }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_out_when_a_batch_is_full_or_at_the_interval() {
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let yaml = |interval: &str| batched(collector.addr(), upstream.addr(), 4, interval);
    // An hour's interval: only full batches of 4 go out (each request is a server and an attempt span).
    let gw = TestGateway::start(&yaml("1h")).await;
    let client = Client::h1();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    spans_eventually(&received, 4).await;
    assert_eq!(collector.requests().len(), 1, "one export of a full batch");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.spans().len(), 4, "the last request's two spans wait for a batch to fill");
    assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    spans_eventually(&received, 8).await;
    assert_eq!(collector.requests().len(), 2);
    drop(gw);

    // A short interval sends what there is, a full batch or not.
    let gw = TestGateway::start(&yaml("50ms")).await;
    assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    spans_eventually(&received, 10).await;
    assert_eq!(collector.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_held_at_shutdown_reach_the_collector_before_the_gateway_stops() {
    let (collector, received) = grpc_receiver().await;
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    let gw = TestGateway::start(&batched(collector.addr(), upstream.addr(), 100, "1h")).await;
    let client = Client::h1();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/api/items")).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(received.spans().is_empty(), "neither a full batch nor the interval yet");
    assert_eq!(gw.shutdown().await, 0);
    // Shutdown returned: the exporter has already sent what it held, in one export.
    let spans = received.spans();
    assert_eq!(spans.len(), 6, "a server and an attempt span per request");
    assert_eq!(spans.iter().filter(|s| s.kind == SpanKind::Server as i32).count(), 3);
    assert_eq!(collector.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracestate_without_its_traceparent_is_not_passed_upstream() {
    let upstream = MockUpstream::start(|_| MockReply::text(200, "ok")).await;
    // W3C only; no exporter needed to propagate.
    let gw = TestGateway::start(&config(upstream.addr(), "endpoint: \"http://127.0.0.1:9\", sample_ratio: 0")).await;
    let client = Client::h1();
    let stray = Request::get(gw.url("/api/items"))
        .header("tracestate", "vendor=stale")
        .header("x-b3-sampled", "1")
        .body(full(""))
        .unwrap();
    assert_eq!(client.send(stray).await.status, 200);
    let too_long = Request::get(gw.url("/api/items"))
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
        .header("tracestate", format!("k={}", "v".repeat(600)))
        .body(full(""))
        .unwrap();
    assert_eq!(client.send(too_long).await.status, 200);
    let seen = upstream.requests();
    assert!(seen[0].headers.get("tracestate").is_none(), "{:?}", seen[0].headers);
    assert!(seen[0].headers.get("traceparent").is_some_and(|v| v.len() == 55));
    assert_eq!(seen[0].headers.get("x-b3-sampled").unwrap(), "1", "B3 is not spoken: its headers pass through");
    assert!(seen[1].headers.get("tracestate").is_none(), "over the size limit: dropped, {:?}", seen[1].headers);
    let parent = seen[1].headers.get("traceparent").unwrap().to_str().unwrap();
    assert!(parent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "the caller's trace continues: {parent}");
}
