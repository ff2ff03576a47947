use super::*;

fn sample(method: &Method, status: u16, micros: u64) -> RequestSample<'_> {
    RequestSample {
        method,
        status,
        duration: Duration::from_micros(micros),
        bytes_in: 10,
        bytes_out: 300,
        error: None,
        rate_limit: None,
        auth_failure: None,
        trace_id: None,
    }
}

#[test]
fn an_observation_on_a_bound_falls_in_that_bucket() {
    let h = Histogram::seconds();
    h.observe(1_000, None); // exactly 1 ms: le="0.001"
    h.observe(1_001, None); // just above: le="0.0025"
    h.observe(60_000_000, None); // 60 s: +Inf only
    let counts: Vec<u64> = h.counts().iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts[0], 1);
    assert_eq!(counts[1], 1);
    assert_eq!(counts[DURATION_BUCKETS.len()], 1);
    assert_eq!(h.count(), 3);
}

#[test]
fn the_bucket_search_counts_the_bounds_below_every_value() {
    for b in [&SECONDS, &BYTES] {
        let real = &b.limits[..b.bounds.len()];
        // Each limit is its bound in integer units (rounded at compile time), and the padding is past every value.
        for (limit, bound) in real.iter().zip(b.bounds) {
            assert_eq!(*limit, (bound * b.scale).round() as u64, "{bound}");
        }
        assert!(b.limits[b.bounds.len()..].iter().all(|&l| l == u64::MAX));
        // Every bound, its neighbours, zero and the largest value.
        let mut values = vec![0, 1, u64::MAX - 1, u64::MAX];
        for &limit in real {
            values.extend([limit - 1, limit, limit + 1]);
        }
        for units in values {
            let expected = real.iter().filter(|&&limit| limit < units).count();
            assert_eq!(b.bucket(units), expected, "{units}");
        }
    }
}

#[test]
fn text_format_names_counters_with_total_and_writes_cumulative_buckets() {
    let m = RouteMetrics::default();
    m.record(&sample(&Method::GET, 200, 2_000));
    m.record(&sample(&Method::GET, 204, 20_000));
    m.record(&sample(&Method::from_bytes(b"PURGE").unwrap(), 503, 20_000));
    let mut out = Exposition::new(Format::Text);
    write_routes(&mut out, &[("users", &m)]);
    let text = out.finish();
    assert!(text.contains("# TYPE turnpike_http_requests_total counter\n"), "{text}");
    assert!(text.contains("turnpike_http_requests_total{route=\"users\",method=\"GET\",status_class=\"2xx\"} 2\n"));
    assert!(text.contains("turnpike_http_requests_total{route=\"users\",method=\"_OTHER\",status_class=\"5xx\"} 1\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_bucket{route=\"users\",le=\"0.001\"} 0\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_bucket{route=\"users\",le=\"0.0025\"} 1\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_bucket{route=\"users\",le=\"0.025\"} 3\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_bucket{route=\"users\",le=\"+Inf\"} 3\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_sum{route=\"users\"} 0.042\n"));
    assert!(text.contains("turnpike_http_request_duration_seconds_count{route=\"users\"} 3\n"));
    assert!(!text.contains("# EOF"));
    // Each family is introduced once.
    assert_eq!(text.matches("# TYPE turnpike_http_request_duration_seconds ").count(), 1);
}

#[test]
fn openmetrics_carries_exemplars_and_ends_with_eof() {
    let m = RouteMetrics::default();
    let mut s = sample(&Method::POST, 201, 3_000);
    s.trace_id = Some([0xab; 16]);
    m.record(&s);
    let mut out = Exposition::new(Format::OpenMetrics);
    write_routes(&mut out, &[("orders", &m)]);
    let text = out.finish();
    assert!(text.contains("# TYPE turnpike_http_requests counter\n"), "{text}");
    assert!(text.contains("turnpike_http_requests_total{route=\"orders\",method=\"POST\",status_class=\"2xx\"} 1\n"));
    let bucket = text
        .lines()
        .find(|l| l.starts_with("turnpike_http_request_duration_seconds_bucket{route=\"orders\",le=\"0.005\"}"))
        .unwrap();
    assert!(bucket.starts_with(&format!(
        "{} 1 # {{trace_id=\"{}\"}} 0.003 ",
        bucket.split(' ').next().unwrap(),
        "ab".repeat(16)
    )));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn label_values_are_escaped() {
    let mut out = Exposition::new(Format::Text);
    out.counter(&UPSTREAM_ATTEMPTS, &["a\"b\\c\nd"], 1);
    assert!(out.finish().contains("turnpike_upstream_attempts_total{upstream=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

#[test]
fn errors_auth_failures_and_rate_limit_outcomes_are_counted_by_their_closed_names() {
    let m = RouteMetrics::default();
    let mut s = sample(&Method::GET, 401, 100);
    s.error = Some("unauthenticated");
    s.auth_failure = Some("missing");
    m.record(&s);
    let mut s = sample(&Method::GET, 429, 100);
    s.error = Some("rate-limited");
    s.rate_limit = Some("refused");
    m.record(&s);
    let mut out = Exposition::new(Format::Text);
    write_routes(&mut out, &[("api", &m)]);
    let text = out.finish();
    assert!(text.contains("turnpike_http_errors_total{route=\"api\",error_type=\"unauthenticated\"} 1\n"), "{text}");
    assert!(text.contains("turnpike_http_errors_total{route=\"api\",error_type=\"rate-limited\"} 1\n"));
    assert!(text.contains("turnpike_auth_failures_total{route=\"api\",reason=\"missing\"} 1\n"));
    assert!(text.contains("turnpike_rate_limit_decisions_total{route=\"api\",outcome=\"refused\"} 1\n"));
}

#[test]
fn upstream_attempts_count_retries() {
    let m = UpstreamMetrics::default();
    m.attempt(false, Duration::from_millis(7), None);
    m.attempt(true, Duration::from_millis(7), None);
    m.attempt(true, Duration::from_millis(7), None);
    m.attempt(false, Duration::from_millis(1), None);
    let mut out = Exposition::new(Format::Text);
    write_upstreams(&mut out, &[("users", &m)]);
    let text = out.finish();
    assert!(text.contains("turnpike_upstream_attempts_total{upstream=\"users\"} 4\n"), "{text}");
    assert!(text.contains("turnpike_upstream_retries_total{upstream=\"users\"} 2\n"));
    assert!(text.contains("turnpike_upstream_response_duration_seconds_count{upstream=\"users\"} 4\n"));
}

#[test]
fn the_catalog_has_unique_prefixed_names() {
    let mut names: Vec<&str> = CATALOG.iter().map(|d| d.name).collect();
    assert!(names.iter().all(|n| n.starts_with("turnpike_")));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CATALOG.len());
    assert!(
        catalog_markdown().contains("| `turnpike_http_requests_total` | counter | `route`, `method`, `status_class` |")
    );
}
