//! Forwarding a request to an endpoint of the route's upstream and streaming the answer back.
//!
//! concurrency limit -> breaker -> (pick endpoint -> attempt within its deadline -> classify -> record health ->
//! retry within the budget, on another endpoint, after a backoff) -> breaker verdict -> stream the response.

use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use turnpike_core::{Body, BodyError, Cx, GatewayError};
use turnpike_telemetry::trace::otlp::{self, Attributes};
use turnpike_upstream::{
    Endpoint, HashOn, HostHeader, Outcome, Protocol, SendError, Tried, Unsent, Upstream, connect::ConnectError,
    stable_hash,
};

use crate::body::ResponseBody;
use crate::proxy_headers::{self, Forwarding};
use crate::server::Conn;
use crate::snapshot::{Route, Snapshot};

/// The request body, as far as retries are concerned.
enum Payload {
    /// Held whole (empty, or small enough to buffer): every attempt gets a copy.
    Replayable(Option<Bytes>),
    /// Streamed: sent once; until then it can still go elsewhere.
    Once(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Replayable(None) => Some(Body::empty()),
            Payload::Replayable(Some(bytes)) => Some(Body::full(bytes.clone())),
            Payload::Once(body) => body.take(),
        }
    }
}

/// Forwards `req` to the route's upstream. `upstream_path` replaces the path and query when the route rewrote or
/// the gateway normalized them.
pub(crate) async fn forward(
    snap: &Snapshot,
    conn: &Conn,
    cx: &mut Cx,
    route: &Route,
    mut head: http::request::Parts,
    body: Body,
    upstream_path: Option<PathAndQuery>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let upstream = route.target(&head.headers);
    let state = &upstream.state;
    cx.upstream = Some(upstream.id.clone());
    let start = Instant::now();
    let timeout = route.timeout.unwrap_or(upstream.timeouts.request);
    let deadline = start + timeout;

    let mut slot = match &upstream.limit {
        Some(limit) => Some(
            state
                .limiter
                .acquire(limit, deadline)
                .await
                .map_err(|_| GatewayError::UpstreamOverloaded { upstream: upstream.id.clone() })?,
        ),
        None => None,
    };
    let upstream_breaker = upstream.breaker.as_ref().filter(|_| !upstream.breaker_per_endpoint);
    let endpoint_breaker = upstream.breaker.as_ref().filter(|_| upstream.breaker_per_endpoint);
    let ticket = match upstream_breaker {
        Some(settings) => match state.breaker.admit(settings, start) {
            Ok(ticket) => Some(ticket),
            Err(retry_after) => {
                return match &upstream.fallback {
                    Some(fallback) => Ok(fallback_response(fallback, cx, &snap.server)),
                    None => Err(GatewayError::CircuitOpen { upstream: upstream.id.clone(), retry_after }),
                };
            }
        },
        None => None,
    };

    let downstream_version = head.version;
    proxy_headers::prepare_request(
        &mut head.headers,
        &Forwarding {
            settings: &snap.server,
            peer: &conn.peer,
            version: downstream_version,
            request_id: &cx.request_id,
        },
    );
    let path_and_query = match upstream_path {
        Some(pq) => pq,
        None => head.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    let client_authority = head.uri.authority().cloned();
    head.version = match upstream.protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };

    let policy = route.retry.as_ref().unwrap_or(&upstream.retry);
    // Only a request that may be sent again after it reached the upstream needs its body held and its head
    // copied; connect failures give the request back unsent.
    let replay = policy.retries_after_sending() && policy.may_replay(&head.method);
    let mut payload = if replay { buffer(body, policy.max_buffer).await? } else { Payload::Once(Some(body)) };
    if let Some(mirror) = &route.mirror
        && (turnpike_upstream::fast_random() % 1_000_000) < u64::from(mirror.per_million)
    {
        payload = mirror_request(mirror, &head, payload, &path_and_query, client_authority.as_ref()).await?;
    }
    // (The mirror may have buffered the body; that alone does not make the request retryable.)
    let template = (replay && matches!(payload, Payload::Replayable(_))).then(|| copy_head(&head));
    if template.is_some() {
        state.budget.request(&upstream.budget, start);
    }
    let key_hash = upstream.hash_on.as_ref().and_then(|on| hash_key(on, &head, cx));
    let mut first = Some(head);
    let mut unsent: Option<Request<Body>> = None;
    let mut tried = Tried::default();
    let mut attempt = 0u32;
    // Per-endpoint breakers that refused this request, and the soonest one probes again.
    let mut refused: (usize, Option<Duration>) = (0, None);
    loop {
        attempt += 1;
        let Some((index, endpoint)) = upstream.pick(&tried, key_hash) else {
            return Err(match refused.1 {
                Some(retry_after) => GatewayError::CircuitOpen { upstream: upstream.id.clone(), retry_after },
                None => GatewayError::NoHealthyEndpoint { upstream: upstream.id.clone() },
            });
        };
        tried.push(index);
        let endpoint_ticket = match endpoint_breaker {
            Some(settings) => match endpoint.breaker.admit(settings, Instant::now()) {
                Ok(ticket) => Some(ticket),
                Err(wait) => {
                    // Not an attempt: try another endpoint, and fail fast once every one has refused.
                    attempt -= 1;
                    refused = (refused.0 + 1, Some(refused.1.map_or(wait, |w| w.min(wait))));
                    if refused.0 > upstream.endpoints.len() {
                        let retry_after = refused.1.unwrap_or(wait);
                        return Err(GatewayError::CircuitOpen { upstream: upstream.id.clone(), retry_after });
                    }
                    continue;
                }
            },
            None => None,
        };
        cx.endpoint = Some(endpoint.addr);
        let req = match unsent.take() {
            Some(req) => {
                let (mut parts, body) = req.into_parts();
                retarget(upstream, endpoint, &mut parts, &path_and_query, client_authority.as_ref())?;
                Request::from_parts(parts, body)
            }
            None => {
                let mut parts = match first.take() {
                    Some(head) => head,
                    None => template.as_ref().map(copy_head).ok_or(GatewayError::Internal)?,
                };
                retarget(upstream, endpoint, &mut parts, &path_and_query, client_authority.as_ref())?;
                Request::from_parts(parts, payload.take().ok_or(GatewayError::Internal)?)
            }
        };

        // Each attempt is a span of its own; the upstream continues the trace under it.
        let mut req = req;
        let attempt_span = crate::spans::child(cx, &conn.gateway.telemetry);
        if let (Some(span), Some(trace), Some(tracing)) = (&attempt_span, &cx.trace, &snap.server.tracing) {
            trace.inject(span.id, req.headers_mut(), tracing.propagation);
        }
        let method = attempt_span.as_ref().filter(|s| s.recorded).map(|_| req.method().clone());
        let sent = if attempt == 1 { start } else { Instant::now() };
        let try_deadline = policy.per_try_timeout.map_or(deadline, |t| (sent + t).min(deadline));
        let mut exchange = endpoint.begin(upstream.pool.clone());
        cx.attempts += 1;
        let result = tokio::time::timeout_at(try_deadline, exchange.send(req, sent)).await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(sent);
        cx.upstream_duration = Some(elapsed);
        if snap.server.admin.is_some() {
            state.metrics.attempt(attempt > 1, elapsed, cx.trace.as_ref().and_then(|t| t.sampled_trace_id()));
        }
        if let (Some(span), Some(method)) = (attempt_span.filter(|s| s.recorded), method) {
            let (status, error) = match &result {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    (Some(status), (status >= 400).then_some("http error status"))
                }
                Ok(Err(_)) => (None, Some("upstream error")),
                Err(_) => (None, Some("timeout")),
            };
            let mut attributes = Attributes::new();
            attributes
                .string("http.request.method", method.as_str())
                .ip("server.address", endpoint.addr.ip())
                .int("server.port", i64::from(endpoint.addr.port()))
                .string("turnpike.upstream", &upstream.id);
            if let Some(status) = status {
                attributes.int("http.response.status_code", i64::from(status));
            }
            if attempt > 1 {
                attributes.int("http.request.resend_count", i64::from(attempt - 1));
            }
            let telemetry = &conn.gateway.telemetry;
            crate::spans::end(telemetry, cx, span, None, method.as_str(), otlp::kind::CLIENT, &attributes, error);
        }
        let can_replay = template.is_some();

        let (error, retryable) = match result {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let failed = upstream.is_failure_status(status);
                upstream.record(
                    index,
                    if failed { Outcome::ServerError } else { Outcome::Success },
                    Some(elapsed),
                    now,
                );
                if let (Some(ticket), Some(settings)) = (endpoint_ticket, endpoint_breaker) {
                    endpoint.breaker.record(ticket, failed, settings, now);
                }
                let retry = can_replay && policy.retries_status(status) && attempt < policy.attempts;
                if !retry || !may_retry(cx, upstream, deadline, now, true) {
                    if let (Some(ticket), Some(settings)) = (ticket, upstream_breaker) {
                        state.breaker.record(ticket, failed, settings, now);
                    }
                    let (mut head, body) = resp.into_parts();
                    proxy_headers::prepare_response(&mut head.headers, &snap.server, head.version, &cx.request_id);
                    head.version = downstream_version;
                    let body = stream_back(body, upstream);
                    if let Some(slot) = slot.take() {
                        // The request counts against the limit until its response body is done.
                        exchange.hold_slot(slot);
                    }
                    return Ok(Response::from_parts(head, ResponseBody::upstream(body, exchange)));
                }
                tracing::debug!(upstream = %upstream.id, endpoint = %endpoint.addr, status, "retrying on status");
                drop((resp, exchange));
                backoff(policy.backoff(attempt), deadline).await;
                continue;
            }
            Ok(Err(Unsent { error, request })) => {
                if let SendError::Exchange(err) = &error
                    && let Some(body_err) = find_body_error(err)
                {
                    // The client's body broke: not the endpoint's fault, and nothing to retry.
                    return Err(body_error(body_err));
                }
                let connect = matches!(error, SendError::Connect(_));
                let outcome = if connect { Outcome::ConnectFailure } else { Outcome::Failure };
                upstream.record(index, outcome, None, now);
                if let (Some(ticket), Some(settings)) = (endpoint_ticket, endpoint_breaker) {
                    endpoint.breaker.record(ticket, true, settings, now);
                }
                let allowed = if connect { policy.on.connect_failure } else { policy.on.reset };
                // A request that never left can go elsewhere whatever its method and body.
                let retryable = allowed && (request.is_some() || can_replay);
                unsent = request;
                (classify(error, upstream), retryable)
            }
            Err(_) => {
                upstream.record(index, Outcome::Failure, None, now);
                if let (Some(ticket), Some(settings)) = (endpoint_ticket, endpoint_breaker) {
                    endpoint.breaker.record(ticket, true, settings, now);
                }
                let per_try = try_deadline < deadline;
                let timeout = if per_try { try_deadline.saturating_duration_since(sent) } else { timeout };
                let error = GatewayError::UpstreamTimeout { upstream: upstream.id.clone(), timeout };
                (error, per_try && policy.on.timeout && can_replay)
            }
        };
        drop(exchange);
        if !retryable || attempt >= policy.attempts || !may_retry(cx, upstream, deadline, now, unsent.is_none()) {
            if retryable && attempt >= policy.attempts {
                cx.retry_stopped = Some("attempts_exhausted");
            }
            if let (Some(ticket), Some(settings)) = (ticket, upstream_breaker) {
                state.breaker.record(ticket, true, settings, now);
            }
            return Err(error);
        }
        tracing::debug!(upstream = %upstream.id, endpoint = %endpoint.addr, error = %error, "retrying");
        backoff(policy.backoff(attempt), deadline).await;
    }
}

/// The upstream's configured answer while its breaker is open.
fn fallback_response(
    fallback: &turnpike_upstream::Fallback,
    cx: &mut Cx,
    server: &crate::snapshot::ServerSettings,
) -> Response<ResponseBody> {
    cx.error = Some("circuit-open");
    let body = match &fallback.body {
        Some(bytes) => Body::full(bytes.clone()),
        None => Body::empty(),
    };
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = fallback.status;
    let headers = resp.headers_mut();
    if fallback.body.is_some() {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in &fallback.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(server.request_id_header.clone(), cx.request_id.header_value().clone());
    resp
}

/// Sends a copy of the request to the mirror upstream in a task of its own (fire and forget: the response is
/// discarded and the client never waits for it). The body is held for the copy when it is small enough; a
/// request with a larger or unknown-length body is not mirrored. Gives the payload back for the real request.
async fn mirror_request(
    mirror: &crate::snapshot::Mirror,
    head: &http::request::Parts,
    payload: Payload,
    path_and_query: &PathAndQuery,
    client_authority: Option<&Authority>,
) -> Result<Payload, GatewayError> {
    let payload = match payload {
        Payload::Once(Some(body)) => buffer(body, mirror.max_body).await?,
        other => other,
    };
    let bytes = match &payload {
        Payload::Replayable(bytes) => bytes.clone(),
        Payload::Once(_) => return Ok(payload),
    };
    let upstream = mirror.upstream.clone();
    let in_flight = &upstream.state.mirrored;
    if in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= mirror.max_in_flight {
        in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        tracing::debug!(upstream = %upstream.id, "mirror skipped: too many copies in flight");
        return Ok(payload);
    }
    let mut parts = copy_head(head);
    let Some((index, endpoint)) = upstream.pick(&Tried::default(), None) else {
        in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        return Ok(payload);
    };
    let endpoint = endpoint.clone();
    if retarget(&upstream, &endpoint, &mut parts, path_and_query, client_authority).is_err() {
        in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        return Ok(payload);
    }
    shadow_host(&mut parts);
    let body = bytes.map_or_else(Body::empty, Body::full);
    tokio::spawn(async move {
        let sent = Instant::now();
        let mut exchange = endpoint.begin(upstream.pool.clone());
        let outcome = tokio::time::timeout(upstream.timeouts.request, async {
            let resp = exchange.send(Request::from_parts(parts, body), sent).await.map_err(|_| ())?;
            // Read the answer to its end (and drop it), so the connection can be reused.
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return Err(());
                }
            }
            Ok(())
        })
        .await;
        match outcome {
            Ok(Ok(())) => {
                exchange.release();
                upstream.record(index, Outcome::Success, Some(sent.elapsed()), Instant::now());
            }
            _ => upstream.record(index, Outcome::Failure, None, Instant::now()),
        }
        upstream.state.mirrored.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    });
    Ok(payload)
}

/// `Host: api.example.com` becomes `api.example.com-shadow` (Envoy's convention), so the mirror can tell copies
/// from real traffic.
fn shadow_host(parts: &mut http::request::Parts) {
    let host = match parts.uri.authority() {
        Some(authority) => authority.as_str().to_string(),
        None => match parts.headers.get(HOST).and_then(|h| h.to_str().ok()) {
            Some(h) => h.to_string(),
            None => return,
        },
    };
    let shadowed = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => format!("{name}-shadow:{port}"),
        _ => format!("{host}-shadow"),
    };
    if parts.uri.authority().is_some() {
        let mut uri = parts.uri.clone().into_parts();
        uri.authority = Authority::try_from(shadowed.as_str()).ok().or(uri.authority);
        if let Ok(u) = Uri::from_parts(uri) {
            parts.uri = u;
        }
    } else if let Ok(value) = HeaderValue::from_str(&shadowed) {
        parts.headers.insert(HOST, value);
    }
}

/// Whether a retry may start now: time is left and, for a request the upstream already received (`charge`),
/// the upstream's retry budget has room. Says why not in the access log.
fn may_retry(cx: &mut Cx, upstream: &Upstream, deadline: Instant, now: Instant, charge: bool) -> bool {
    if now >= deadline {
        cx.retry_stopped = Some("deadline");
        return false;
    }
    if charge && !upstream.state.budget.try_retry(&upstream.budget, now) {
        cx.retry_stopped = Some("budget_exhausted");
        tracing::debug!(upstream = %upstream.id, "retry budget exhausted");
        return false;
    }
    true
}

async fn backoff(wait: Duration, deadline: Instant) {
    if !wait.is_zero() {
        tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
    }
}

/// Holds a small body so it can be sent more than once; a large or unknown-length one stays a stream.
async fn buffer(body: Body, max: u64) -> Result<Payload, GatewayError> {
    if body.is_end_stream() {
        return Ok(Payload::Replayable(None));
    }
    match body.size_hint().exact() {
        Some(len) if len <= max => match body.collect().await {
            Ok(collected) => Ok(Payload::Replayable(Some(collected.to_bytes()))),
            Err(err) => Err(match err.downcast_ref::<BodyError>() {
                Some(e) => body_error(e),
                None => GatewayError::ClientAborted,
            }),
        },
        _ => Ok(Payload::Once(Some(body))),
    }
}

/// A copy of a request head for another attempt (extensions are not carried over).
fn copy_head(head: &http::request::Parts) -> http::request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = head.method.clone();
    parts.uri = head.uri.clone();
    parts.version = head.version;
    parts.headers = head.headers.clone();
    parts
}

/// The bytes consistent hashing hashes, hashed.
fn hash_key(on: &HashOn, head: &http::request::Parts, cx: &Cx) -> Option<u64> {
    match on {
        HashOn::Header(name) => head.headers.get(name).map(|v| stable_hash(v.as_bytes())),
        HashOn::Cookie(name) => crate::snapshot::cookie(&head.headers, name).map(|v| stable_hash(v.as_bytes())),
        HashOn::ClientIp => Some(match cx.client_ip {
            std::net::IpAddr::V4(ip) => stable_hash(&ip.octets()),
            std::net::IpAddr::V6(ip) => stable_hash(&ip.octets()),
        }),
        HashOn::Path => Some(stable_hash(cx.uri.path().as_bytes())),
    }
}

fn body_error(err: &BodyError) -> GatewayError {
    match err {
        BodyError::TooLarge { limit } => GatewayError::PayloadTooLarge { limit: *limit },
        BodyError::Timeout(_) => GatewayError::ClientTimeout,
        BodyError::Aborted(_) => GatewayError::ClientAborted,
    }
}

fn stream_back(body: Incoming, upstream: &Upstream) -> Body {
    Body::stream(body).with_idle_timeout(upstream.timeouts.read)
}

/// Points a request head at `endpoint`: origin form (`/path?q`) for HTTP/1.1, absolute for HTTP/2 (whose
/// `:authority` carries the host), and `Host` per the upstream's host policy. `client_authority` is the
/// authority of an absolute request target from the client.
fn retarget(
    upstream: &Upstream,
    endpoint: &Endpoint,
    parts: &mut http::request::Parts,
    path_and_query: &PathAndQuery,
    client_authority: Option<&Authority>,
) -> Result<(), GatewayError> {
    let headers = &mut parts.headers;
    // The common case: HTTP/1.1 on both sides, `Host` kept as the client sent it — nothing to rewrite.
    if upstream.protocol == Protocol::Http1
        && matches!(upstream.host, HostHeader::Preserve)
        && client_authority.is_none()
        && headers.contains_key(HOST)
    {
        parts.uri = Uri::from(path_and_query.clone());
        return Ok(());
    }
    let client_host: Option<HeaderValue> = match client_authority {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => headers.get(HOST).cloned(),
    };
    let host: Option<HeaderValue> = match &upstream.host {
        HostHeader::Preserve => client_host,
        HostHeader::Endpoint => HeaderValue::from_str(endpoint.authority.as_str()).ok(),
        HostHeader::Fixed(value) => Some(value.clone()),
    };
    match upstream.protocol {
        Protocol::Http1 => {
            let host = match host {
                Some(host) => host,
                None => HeaderValue::from_str(endpoint.authority.as_str()).map_err(|_| GatewayError::Internal)?,
            };
            headers.insert(HOST, host);
            parts.uri = Uri::from(path_and_query.clone());
        }
        Protocol::Http2 => {
            headers.remove(HOST);
            let authority = match host.as_ref().and_then(|h| Authority::try_from(h.as_bytes()).ok()) {
                Some(authority) => authority,
                None => endpoint.authority.clone(),
            };
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path_and_query.clone());
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| GatewayError::BadRequest("cannot build the upstream request target"))?;
        }
    }
    Ok(())
}

/// Maps a failed exchange to what the client is told. A request body that broke (too large, too slow, client gone)
/// is the client's failure, not the upstream's.
fn classify(err: SendError, upstream: &Upstream) -> GatewayError {
    let id = upstream.id.clone();
    match err {
        SendError::Connect(ConnectError::Timeout { .. }) => {
            GatewayError::UpstreamTimeout { upstream: id, timeout: upstream.timeouts.connect }
        }
        SendError::Connect(ConnectError::Io { addr, source }) => {
            tracing::debug!(endpoint = %addr, error = %source, "upstream connect failed");
            GatewayError::UpstreamConnect { upstream: id }
        }
        SendError::Connect(ConnectError::Tls { addr, source }) => {
            tracing::warn!(endpoint = %addr, error = %source, "upstream TLS handshake failed");
            GatewayError::BadGateway { upstream: id }
        }
        SendError::Connect(ConnectError::Handshake { addr, source }) => {
            tracing::debug!(endpoint = %addr, error = %source, "upstream handshake failed");
            GatewayError::BadGateway { upstream: id }
        }
        SendError::Exchange(err) => {
            tracing::debug!(error = %err, source = ?std::error::Error::source(&err), "upstream exchange failed");
            GatewayError::BadGateway { upstream: id }
        }
    }
}

fn find_body_error(err: &hyper::Error) -> Option<&BodyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(body_err) = e.downcast_ref::<BodyError>() {
            return Some(body_err);
        }
        source = e.source();
    }
    None
}
