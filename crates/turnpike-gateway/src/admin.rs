//! The admin listener: Prometheus metrics, liveness, readiness and a status summary, on an address of its own
//! (loopback by default), never on a proxy listener.
//!
//! - `GET /metrics`: Prometheus text format 0.0.4, or OpenMetrics 1.0 (with exemplars) when `Accept` asks for it.
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when the configuration is loaded, the listeners are bound, the gateway is not shutting down
//!   and every upstream in `server.admin.required_upstreams` has a healthy endpoint; else 503 with the reasons.
//! - `GET /status`: version, uptime, configuration hash and generation, last reload, upstream health (JSON).
//!
//! It runs on the main runtime, not on the workers, so a scrape never competes with proxied requests for a worker,
//! and reads only atomics and the current snapshot: scraping does not slow the request path down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use turnpike_core::RequestId;
use turnpike_telemetry::metrics::{self, Exposition, Format, RouteMetrics};
use turnpike_upstream::{BreakerPosition, Upstream};

use crate::gateway::Gateway;
use crate::respond::{PROBLEM_JSON, PROBLEM_TYPE_BASE};

/// A running admin listener.
#[derive(Debug)]
pub(crate) struct AdminServer {
    /// The configured address (what a reload compares).
    pub configured: SocketAddr,
    /// The bound address (differs for port 0).
    pub bound: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `address`; serving starts with [`start`](Self::start).
    pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(address).await
    }

    /// Serves `listener` on the current runtime until dropped.
    pub fn start(configured: SocketAddr, listener: TcpListener, gateway: Weak<Gateway>) -> std::io::Result<Self> {
        let bound = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let gateway = gateway.clone();
                        async move { Ok::<_, Infallible>(answer(&gateway, &req)) }
                    });
                    let mut builder = http1::Builder::new();
                    builder.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        tracing::info!(address = %bound, "admin listener serving /metrics /healthz /readyz /status");
        Ok(Self { configured, bound, task })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(gateway: &Weak<Gateway>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(gw) = gateway.upgrade() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", "the gateway is shutting down", req);
    };
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz" | "/status") {
        return problem(StatusCode::NOT_FOUND, "no-route", "no admin endpoint here", req);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "use GET", req);
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            respond(StatusCode::OK, format.content_type(), render_metrics(&gw, format).into_bytes())
        }
        "/healthz" => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/readyz" => {
            let problems = readiness(&gw);
            let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, &serde_json::json!({ "ready": problems.is_empty(), "problems": problems }))
        }
        _ => json(StatusCode::OK, &status(&gw)),
    }
}

/// Why the gateway is not ready (empty: ready).
fn readiness(gw: &Gateway) -> Vec<String> {
    let mut problems = Vec::new();
    if gw.is_shutting_down() {
        problems.push("shutting down".to_string());
    }
    let snap = gw.snapshot();
    let required = snap.server.admin.as_ref().map_or(&[][..], |a| &a.required_upstreams[..]);
    for id in required {
        match snap.upstreams.get(id) {
            Some(upstream) if healthy_endpoints(upstream) > 0 => {}
            Some(_) => problems.push(format!("upstream `{id}` has no healthy endpoint")),
            None => problems.push(format!("upstream `{id}` is not configured")),
        }
    }
    problems
}

fn healthy_endpoints(upstream: &Upstream) -> usize {
    upstream.endpoints.iter().filter(|e| e.endpoint.health.is_available()).count()
}

fn status(gw: &Gateway) -> serde_json::Value {
    let snap = gw.snapshot();
    let reload = gw.reload_status();
    let uptime = SystemTime::now().duration_since(gw.telemetry.started).unwrap_or_default();
    let mut upstreams: Vec<_> = snap.upstreams.values().collect();
    upstreams.sort_by(|a, b| a.id.cmp(&b.id));
    let now = Instant::now();
    let upstreams: Vec<_> = upstreams
        .into_iter()
        .map(|u| {
            let endpoints: Vec<_> = u
                .endpoints
                .iter()
                .map(|e| {
                    let mut entry = serde_json::json!({
                        "address": e.endpoint.addr.to_string(),
                        "healthy": e.endpoint.health.is_available(),
                        "in_flight": e.endpoint.in_flight(),
                    });
                    if let Some(settings) = u.breaker.as_ref().filter(|_| u.breaker_per_endpoint) {
                        entry["breaker"] = breaker_name(e.endpoint.breaker.position(settings, now)).into();
                    }
                    entry
                })
                .collect();
            let mut entry = serde_json::json!({
                "id": &*u.id,
                "healthy_endpoints": healthy_endpoints(u),
                "endpoints": endpoints,
            });
            if let Some(settings) = u.breaker.as_ref().filter(|_| !u.breaker_per_endpoint) {
                entry["breaker"] = breaker_name(u.state.breaker.position(settings, now)).into();
            }
            entry
        })
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime.as_secs(),
        "config": { "hash": format!("{:016x}", snap.config_hash), "generation": snap.generation },
        "reloads": {
            "succeeded": reload.succeeded,
            "failed": reload.failed,
            "last_error": reload.last_error,
        },
        "ready": readiness(gw).is_empty(),
        "connections": gw.connections.open(),
        "upstreams": upstreams,
    })
}

fn breaker_name(position: BreakerPosition) -> &'static str {
    match position {
        BreakerPosition::Closed => "closed",
        BreakerPosition::Open => "open",
        BreakerPosition::HalfOpen => "half_open",
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One scrape: every family of the catalog that has series.
fn render_metrics(gw: &Gateway, format: Format) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let snap = gw.snapshot();
    let reload = gw.reload_status();
    let mut out = Exposition::new(format);
    out.info(&metrics::BUILD, &[env!("CARGO_PKG_VERSION")]);
    out.gauge(&metrics::START_TIME, &[], unix_seconds(gw.telemetry.started).floor());
    out.info(&metrics::CONFIG, &[&format!("{:016x}", snap.config_hash), &snap.generation.to_string()]);
    out.counter(&metrics::CONFIG_RELOADS, &["success"], reload.succeeded);
    out.counter(&metrics::CONFIG_RELOADS, &["failure"], reload.failed);
    out.gauge(&metrics::CONFIG_LAST_SUCCESS, &[], unix_seconds(reload.loaded_at));

    // Routes of the snapshot serving now and of any older one still finishing requests, sorted for stable output;
    // requests no route matched under `route=""`.
    let mut live = gw.state.route_metrics.live();
    live.sort_by(|a, b| a.0.cmp(&b.0));
    let mut routes: Vec<(&str, &RouteMetrics)> = vec![("", &gw.state.unmatched_metrics)];
    routes.extend(live.iter().map(|(id, m)| (&**id, &**m)));
    metrics::write_routes(&mut out, &routes);
    out.gauge(&metrics::HTTP_IN_FLIGHT, &[], gw.telemetry.in_flight.load(Relaxed) as f64);
    out.gauge(&metrics::DOWNSTREAM_CONNECTIONS, &[], gw.connections.open() as f64);
    let listeners: Vec<(&str, bool, &turnpike_telemetry::metrics::ListenerMetrics)> =
        snap.listeners.iter().map(|l| (&*l.name, l.tls.is_some(), &*l.metrics)).collect();
    metrics::write_listeners(&mut out, &listeners);

    let mut live = gw.state.upstreams.live();
    live.sort_by(|a, b| a.0.cmp(&b.0));
    let states: Vec<(&str, &turnpike_telemetry::metrics::UpstreamMetrics)> =
        live.iter().map(|(id, s)| (&**id, &s.metrics)).collect();
    metrics::write_upstreams(&mut out, &states);

    let mut upstreams: Vec<&Arc<Upstream>> = snap.upstreams.values().collect();
    upstreams.sort_by(|a, b| a.id.cmp(&b.id));
    let endpoints: Vec<(&str, String, &Arc<turnpike_upstream::Endpoint>)> = upstreams
        .iter()
        .flat_map(|u| u.endpoints.iter().map(|e| (&*u.id, e.endpoint.addr.to_string(), &e.endpoint)))
        .collect();
    for (u, addr, e) in &endpoints {
        out.gauge(&metrics::UPSTREAM_CONNECTIONS, &[u, addr], e.pool_stats().open.load(Relaxed) as f64);
    }
    for (u, addr, e) in &endpoints {
        out.counter(&metrics::UPSTREAM_CONNECTS, &[u, addr], e.pool_stats().connects.load(Relaxed));
    }
    for (u, addr, e) in &endpoints {
        out.counter(&metrics::UPSTREAM_REUSES, &[u, addr], e.pool_stats().reuses.load(Relaxed));
    }
    for (u, addr, e) in &endpoints {
        out.gauge(&metrics::UPSTREAM_HEALTHY, &[u, addr], f64::from(u8::from(e.health.is_available())));
    }
    let now = Instant::now();
    for u in &upstreams {
        let Some(settings) = &u.breaker else { continue };
        let positions: Vec<(String, BreakerPosition)> = if u.breaker_per_endpoint {
            u.endpoints
                .iter()
                .map(|e| (e.endpoint.addr.to_string(), e.endpoint.breaker.position(settings, now)))
                .collect()
        } else {
            // One breaker for the whole upstream: `endpoint=""`.
            vec![(String::new(), u.state.breaker.position(settings, now))]
        };
        for (addr, position) in positions {
            for state in [BreakerPosition::Closed, BreakerPosition::Open, BreakerPosition::HalfOpen] {
                let value = f64::from(u8::from(position == state));
                out.gauge(&metrics::UPSTREAM_BREAKER, &[&u.id, &addr, breaker_name(state)], value);
            }
        }
    }
    for u in &upstreams {
        out.gauge(&metrics::UPSTREAM_HEALTHY_ENDPOINTS, &[&u.id], healthy_endpoints(u) as f64);
    }
    out.counter(&metrics::ACCESS_LOG_DROPPED, &[], gw.telemetry.access_log.dropped());
    if let Some(tracer) = &gw.telemetry.tracer {
        let stats = tracer.stats();
        out.counter(&metrics::TRACE_SPANS_EXPORTED, &[], stats.exported.load(Relaxed));
        out.counter(&metrics::TRACE_SPANS_DROPPED, &[], stats.dropped.load(Relaxed));
        out.counter(&metrics::TRACE_EXPORT_FAILURES, &[], stats.failures.load(Relaxed));
    }
    out.finish()
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", serde_json::to_vec(body).unwrap_or_default())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An RFC 9457 problem, shaped like the proxy's own (`respond.rs`).
fn problem(status: StatusCode, slug: &str, detail: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = RequestId::generate();
    let body = serde_json::json!({
        "type": format!("{PROBLEM_TYPE_BASE}{slug}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": req.uri().path(),
        "request_id": request_id.as_str(),
    });
    let mut resp = respond(status, PROBLEM_JSON, serde_json::to_vec(&body).unwrap_or_default());
    resp.headers_mut().insert("x-request-id", request_id.header_value().clone());
    resp
}
