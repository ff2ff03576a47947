//! The request path through the gateway. The order of the phases is a security property: read it top to bottom.
//!
//! ```text
//! 0 hygiene      identity headers a client sent are removed, whatever the route     414
//! 1 route        select on the normalized path                                     404 / 405 / 400
//! 2 admit        cheap guards before any crypto or I/O: address filters, CORS
//!                preflights (answered here), head and declared body sizes           403 / 431 / 413 / 204
//! 3 authenticate who is calling: JWT, API key, introspection, client certificate     401 / 503
//! 4 authorize    roles, scopes, claim rules, policy engine                           401 / 403 / 503
//! 5 rate_limit   limits keyed by client, consumer, user, route or request values     429
//! 6 cache_lookup (later)
//! 7 transform_request: body validation against the route's JSON Schema              400 / 413 / 415
//! 8 dispatch     forward to an endpoint of the route's upstream, with identity
//!                headers the upstream can trust                                     502 / 503 / 504
//! 9 transform_response: security headers, HSTS, CORS — on every answer, errors too
//! 10 cache_store (later)
//! 11 finish      access log: always runs, after early answers and errors too
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, STRICT_TRANSPORT_SECURITY};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use turnpike_core::request_id::random_u64;
use turnpike_core::{Body, BodyError, Cx, ForbiddenKind, GatewayError, Peer, RequestId, Scheme};
use turnpike_policy::auth::{AuthChain, AuthError, AuthInput};
use turnpike_policy::authz::{AuthzFailure, AuthzInput};
use turnpike_policy::cors::{Cors, CorsDecision};
use turnpike_policy::rate_limit::{Check, Held, Outcome, RateLimitHeaders, RateLimitInput};
use turnpike_policy::validate::BodyRejection;
use turnpike_router::{PathError, RequestView, Selection, normalize_path};
use turnpike_telemetry::metrics::RouteMetrics;
use turnpike_telemetry::trace::otlp::Attributes;
use turnpike_telemetry::trace::otlp::kind::{CLIENT, INTERNAL};

use crate::body::{BytesIn, Finish, ResponseBody, counter};
use crate::server::{Conn, RequestGuard};
use crate::snapshot::{Route, Snapshot, TrustIncoming};
use crate::{dispatch, proxy_headers, respond, spans};

/// What the phases decide about the answer, applied to every response in `transform_response`.
#[derive(Default)]
struct Answer {
    /// CORS headers for an allowed origin.
    cors: Option<HeaderMap>,
    /// Rate-limit headers (`RateLimit-Policy`, `RateLimit`), on every answer of a rate-limited route.
    rate_limit: Option<RateLimitHeaders>,
    /// Concurrency slots held until the response has been sent.
    held: Option<Held>,
    /// The matched route's metrics (when metrics are on).
    metrics: Option<Arc<RouteMetrics>>,
}

/// Handles one request from arrival to response head; the body streams afterwards and `finish` runs at its end.
pub(crate) async fn handle(conn: RequestGuard, req: Request<Incoming>) -> Response<ResponseBody> {
    // One snapshot for the whole request: a reload while it runs does not change what it sees.
    let snap = conn.gateway.snapshot();
    let (parts, body) = req.into_parts();
    let request_id = request_id(&snap, &conn.peer, &parts.headers);
    let version = parts.version;
    let mut cx = Cx::new(request_id, conn.peer.clone(), parts.method.clone(), parts.uri.clone(), Instant::now());
    cx.host = host_value(&parts);
    cx.client_ip = proxy_headers::client_ip(&snap.server, conn.peer.addr.ip().to_canonical(), &parts.headers);
    if let Some(tracing) = &snap.server.tracing {
        cx.trace = Some(spans::begin(&parts.headers, tracing));
    }
    if !snap.server.log.headers.is_empty() {
        cx.log_headers = snap.server.log.headers.iter().map(|(name, _)| parts.headers.get(name).cloned()).collect();
    }
    let mut bytes_in = BytesIn::Known(0);
    let mut answer = Answer::default();

    let outcome = route_and_dispatch(&snap, &conn, &mut cx, parts, body, &mut bytes_in, &mut answer).await;

    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(err) => {
            // The one place a failure becomes a response.
            cx.error = Some(err.slug());
            cx.auth_failure = err.auth_failure();
            log_error(&cx, &err);
            respond::problem(&cx, &err, &snap.server.request_id_header).map(ResponseBody::local)
        }
    };
    // 9 transform_response, on every answer (errors too: a browser must be able to read a 401 from an allowed
    // origin, and security headers protect error pages as much as others).
    if let Some(held) = answer.held.take() {
        resp.body_mut().hold_slots(held);
    }
    let answer_metrics = answer.metrics.take();
    transform_response(&snap, &conn, resp.headers_mut(), answer);
    // 11 finish: attached to the body, so it runs when the last byte is sent (or the client goes away) and can
    // report the full duration and size.
    let telemetry = &conn.gateway.telemetry;
    // The access log samples here, before any formatting: errors and successes at their own ratios.
    let status = resp.status().as_u16();
    let log = snap.server.access_log
        && telemetry.access_log.enabled()
        && snap.server.log.keep(status >= 400 || cx.error.is_some(), random_u64);
    // Metrics are recorded while an admin listener can serve them; unmatched requests count under `route=""`.
    let metrics = snap
        .server
        .admin
        .as_ref()
        .map(|_| answer_metrics.unwrap_or_else(|| conn.gateway.state.unmatched_metrics.clone()));
    let traced = cx.trace.as_ref().is_some_and(|t| t.context.sampled) && telemetry.tracer.is_some();
    // Not `bool::then`: its closure would capture (copy) the request context before the box is written.
    let finish = if log || metrics.is_some() || traced {
        if metrics.is_some() {
            telemetry.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        // Allocated first and written in place: `Box::new` built the ~600-byte `Finish` on the stack and copied it.
        // The snapshot moves along (the request is done with it), for the log settings.
        Some(Box::write(Box::new_uninit(), Finish { cx, status, version, bytes_in, snap, log, metrics }))
    } else {
        None
    };
    // The request counts as in flight on its connection until the response has been sent.
    resp.body_mut().hold(conn, finish);
    resp
}

async fn route_and_dispatch(
    snap: &Snapshot,
    conn: &Conn,
    cx: &mut Cx,
    mut parts: Parts,
    body: Incoming,
    bytes_in: &mut BytesIn,
    answer: &mut Answer,
) -> Result<Response<ResponseBody>, GatewayError> {
    // 0 hygiene: identity headers are the gateway's to set. Whatever a client sent under those names (in any case,
    // with `_` for `-`) is removed first, on every route, authenticated or not.
    snap.server.identity_headers.strip(&mut parts.headers);
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > conn.listener.max_uri_length {
        return Err(GatewayError::UriTooLong { limit: conn.listener.max_uri_length });
    }
    // A redirect listener answers everything with the same URL over HTTPS: nothing is routed over plain HTTP.
    if let Some(port) = conn.listener.redirect_https {
        return redirect_https(&parts, port);
    }

    // 1 route. Matching runs on the normalized path (percent-decoded unreserved characters, no dot segments, no
    // duplicate slashes), and that same path is what the upstream receives: `/public/../admin` reaches exactly what
    // `/admin` reaches.
    let path = normalize_path(parts.uri.path()).map_err(path_error)?;
    let host = routing_host(&parts);
    let view = RequestView {
        host: host.as_deref(),
        path: &path,
        method: &parts.method,
        headers: &parts.headers,
        query: parts.uri.query(),
    };
    let matched = match snap.routes.select(&view) {
        Selection::Matched(m) => m,
        Selection::MethodNotAllowed { allow } => {
            // A CORS preflight is an OPTIONS request about another method: answer it for the route that method
            // would reach, even when that route does not list OPTIONS.
            if Cors::is_preflight(&parts.method, &parts.headers)
                && let Some(requested) = Cors::requested_method(&parts.headers)
                && let Selection::Matched(m) = snap.routes.select(&RequestView { method: &requested, ..view })
                && let Some(cors) = &m.value.cors
            {
                cx.route = Some(m.value.id.clone());
                return preflight(cors, &parts);
            }
            return Err(method_not_allowed(&allow));
        }
        Selection::NotFound => return Err(GatewayError::NoRoute),
    };
    let route = matched.value;
    cx.route = Some(route.id.clone());
    if snap.server.admin.is_some() {
        answer.metrics = Some(route.metrics.clone());
    }

    // 2 admit: cheap guards that need no I/O, before anything costly. The address filters use the real client
    // address (a trusted proxy's report, else the peer).
    for filter in [&snap.server.ip_filter, &route.ip_filter].into_iter().flatten() {
        if !filter.allows(cx.client_ip) {
            return Err(GatewayError::Forbidden { kind: ForbiddenKind::Address });
        }
    }
    if let Some(cors) = &route.cors {
        match cors.decide(&parts.method, &parts.headers) {
            CorsDecision::None => {}
            CorsDecision::Actual(headers) => answer.cors = Some(headers),
            CorsDecision::Preflight(_) | CorsDecision::Refused if Cors::is_preflight(&parts.method, &parts.headers) => {
                return preflight(cors, &parts);
            }
            CorsDecision::Preflight(_) | CorsDecision::Refused => {}
        }
    }
    // A body announced as too large is refused before it is read (and before `100 Continue` is sent).
    admit_sizes(conn, route, &parts)?;

    // 3 authenticate: who is calling. A refused credential never falls through to a weaker method, and the
    // reason stays in the debug log.
    let authenticated = match &route.auth {
        Some(chain) => {
            let input = AuthInput {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                client_cert: conn.peer.client_cert.as_ref(),
            };
            // Boxed: the authentication future (key fetches, introspection calls) is large, and unboxed it would make
            // every request's future larger, and moved, on routes without authentication too.
            let span = spans::recorded_child(cx, &conn.gateway.telemetry);
            let result = Box::pin(chain.authenticate(&input)).await;
            if let Some(span) = span {
                let error = result.as_ref().err().map(|_| "refused");
                let mut attributes = Attributes::new();
                attributes.string("turnpike.route", &route.id);
                spans::end(&conn.gateway.telemetry, cx, span, None, "authenticate", INTERNAL, &attributes, error);
            }
            match result {
                Ok(authenticated) => {
                    cx.identity = authenticated.identity.clone();
                    Some((chain, authenticated))
                }
                Err(err) => return Err(auth_error(cx, chain, err)),
            }
        }
        None => None,
    };
    // 4 authorize: what the caller may do here. Without an identity a refusal is 401 (credentials could change
    // the answer), with one 403.
    if let Some(authorizer) = &route.authorize {
        // Rules and the policy engine see the normalized path, the one routing matched and the upstream gets.
        let normalized_uri = match &path {
            Cow::Owned(normalized) => Some(with_query(normalized.clone(), parts.uri.query())?.into()),
            Cow::Borrowed(_) => None,
        };
        let input = AuthzInput {
            method: &parts.method,
            uri: normalized_uri.as_ref().unwrap_or(&parts.uri),
            headers: &parts.headers,
            identity: cx.identity.as_deref(),
            client_ip: cx.client_ip,
            route: &route.id,
        };
        Box::pin(authorizer.authorize(&input)).await.map_err(|failure| match failure {
            AuthzFailure::Unauthenticated => GatewayError::Unauthenticated {
                challenge: route.auth.as_ref().map_or(HeaderValue::from_static("Bearer"), |c| c.challenge().clone()),
                missing: true,
            },
            AuthzFailure::Forbidden(reason) => {
                tracing::debug!(request_id = %cx.request_id, reason, "authorization refused");
                GatewayError::Forbidden { kind: ForbiddenKind::Authorization }
            }
            AuthzFailure::Unavailable => GatewayError::AuthUnavailable { service: "policy" },
        })?;
    }
    // 5 rate_limit: after authentication, so limits can key on who is calling (and pick the caller's plan), and
    // after authorization, so a caller refused anyway uses up nothing.
    if let Some(limits) = &route.rate_limit {
        let input = RateLimitInput {
            method: &parts.method,
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            params: &matched.params,
            route: &route.id,
            client_ip: cx.client_ip,
            identity: cx.identity.as_deref(),
        };
        let span = spans::recorded_child(cx, &conn.gateway.telemetry);
        let decision = match limits.check(&input, &conn.gateway.state.rate_limits.clock) {
            Check::Decided(decision) => decision,
            // Boxed like authentication: asking Redis is a large future that other requests should not carry.
            Check::Shared(shared) => {
                let redis = spans::recorded_child(cx, &conn.gateway.telemetry);
                let decision = Box::pin(shared.ask()).await;
                if let Some(redis) = redis {
                    let failed = matches!(decision.outcome, Outcome::StoreErrorAllowed | Outcome::StoreErrorRefused);
                    let mut attributes = Attributes::new();
                    attributes.string("db.system.name", "redis");
                    let error = failed.then_some("store unavailable");
                    spans::end(&conn.gateway.telemetry, cx, redis, span.as_ref(), "redis", CLIENT, &attributes, error);
                }
                decision
            }
        };
        if let Some(span) = span {
            let mut attributes = Attributes::new();
            attributes.string("turnpike.rate_limit", decision.outcome.as_str());
            spans::end(&conn.gateway.telemetry, cx, span, None, "rate_limit", INTERNAL, &attributes, None);
        }
        cx.rate_limit = Some(decision.outcome.as_str());
        cx.rate_limit_by = decision.limit;
        answer.rate_limit = Some(decision.headers);
        if decision.outcome.refuses() {
            return Err(GatewayError::RateLimited { retry_after: decision.retry_after });
        }
        if !decision.delay.is_zero() {
            // Shaping: the request leaves at its place in the even schedule (at most the policy's `max_delay`).
            tokio::time::sleep(decision.delay).await;
        }
        answer.held = Some(decision.held);
    }
    // 6 cache_lookup: later, here.

    let upstream_path = match &route.rewrite {
        Some(rewrite) => {
            let mut out = String::with_capacity(path.len() + 16);
            rewrite.apply(&path, &matched.params, &mut out);
            Some(with_query(out, parts.uri.query())?)
        }
        None => match &path {
            Cow::Owned(normalized) => Some(with_query(normalized.clone(), parts.uri.query())?),
            Cow::Borrowed(_) => None,
        },
    };

    // The upstream gets the identity, never the credential (unless a policy forwards it).
    let upstream_path = match authenticated {
        Some((chain, authenticated)) => {
            let query_len = parts.uri.query().map_or(0, str::len);
            chain.strip(&authenticated, &mut parts);
            match upstream_path {
                // A credential removed from the query must be removed from the rewritten target too.
                Some(pq) if parts.uri.query().map_or(0, str::len) != query_len => {
                    Some(with_query(pq.path().to_owned(), parts.uri.query())?)
                }
                other => other,
            }
        }
        None => upstream_path,
    };
    set_identity_headers(snap, conn, cx, route, &mut parts.headers)?;

    // 7 transform_request: a body the route validates is read (bounded) and checked after authentication, so an
    // anonymous client cannot make the gateway buffer and parse bodies on protected routes.
    let body = match &route.validate {
        Some(validator) => {
            let limit = validator.max_size().min(route.max_body_size);
            let bytes = Box::pin(read_body(body, limit, conn)).await?;
            validator.check(parts.headers.get(CONTENT_TYPE), &bytes).map_err(|rejection| match rejection {
                BodyRejection::MediaType => GatewayError::UnsupportedMediaType { expected: "application/json" },
                BodyRejection::InvalidJson(reason) => {
                    GatewayError::InvalidBody { errors: vec![(String::new(), reason)] }
                }
                BodyRejection::Schema(errors) => GatewayError::InvalidBody { errors },
            })?;
            *bytes_in = BytesIn::Known(bytes.len() as u64);
            Body::full(bytes)
        }
        None => stream_body(body, route, conn, snap.server.access_log, bytes_in),
    };

    // 8 dispatch.
    dispatch::forward(snap, conn, cx, route, parts, body, upstream_path).await
}

/// A refused authentication as the client sees it: a bare 401 (or 503), the reason in the debug log only.
fn auth_error(cx: &Cx, chain: &AuthChain, err: AuthError) -> GatewayError {
    let reason = match err {
        AuthError::Missing => "no credential",
        AuthError::Malformed(why) | AuthError::Invalid(why) => why,
        AuthError::Conflict => "conflicting credentials",
        AuthError::Unavailable(service) => {
            tracing::warn!(request_id = %cx.request_id, route = cx.route.as_deref(), service, "authentication service unavailable");
            return GatewayError::AuthUnavailable { service };
        }
    };
    tracing::debug!(request_id = %cx.request_id, route = cx.route.as_deref(), reason, "authentication refused");
    match err {
        AuthError::Missing => GatewayError::Unauthenticated { challenge: chain.challenge().clone(), missing: true },
        _ => GatewayError::Unauthenticated { challenge: chain.invalid_challenge().clone(), missing: false },
    }
}

/// Identity headers for the upstream: from the identity, the verified client certificate, and the gateway-signed
/// token when the route asks for it. (Any such header the client sent was removed in phase 0.)
fn set_identity_headers(
    snap: &Snapshot,
    conn: &Conn,
    cx: &Cx,
    route: &Route,
    headers: &mut HeaderMap,
) -> Result<(), GatewayError> {
    let identity_headers = &snap.server.identity_headers;
    if let Some(identity) = &cx.identity {
        identity_headers.set(identity, headers);
        if route.gateway_token
            && let Some(signer) = &snap.server.gateway_token
        {
            let token = signer.sign(identity).map_err(|err| {
                tracing::error!(request_id = %cx.request_id, error = %err, "cannot sign the gateway token");
                GatewayError::Internal
            })?;
            let value = HeaderValue::try_from(token).map_err(|_| GatewayError::Internal)?;
            headers.insert(signer.header().clone(), value);
        }
    }
    if let Some(cert) = &conn.peer.client_cert
        && cx.identity.as_ref().is_none_or(|id| id.client_cert.is_none())
    {
        identity_headers.set_client_cert(cert, headers);
    }
    Ok(())
}

/// The request body, streamed to the upstream with the route's size limit and the listener's idle timeout.
fn stream_body(body: Incoming, route: &Route, conn: &Conn, count: bool, bytes_in: &mut BytesIn) -> Body {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Body::empty();
    }
    let mut body = Body::stream(body).with_limit(route.max_body_size).with_idle_timeout(conn.listener.body_timeout);
    if count {
        let bytes = counter();
        *bytes_in = BytesIn::Counted(bytes.clone());
        body = body.with_counter(bytes);
    }
    body
}

/// Reads a whole request body, at most `limit` bytes, each chunk within the listener's body timeout.
async fn read_body(body: Incoming, limit: u64, conn: &Conn) -> Result<Bytes, GatewayError> {
    let body = Body::stream(body).with_limit(limit).with_idle_timeout(conn.listener.body_timeout);
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(match err.downcast_ref::<BodyError>() {
            Some(BodyError::TooLarge { limit }) => GatewayError::PayloadTooLarge { limit: *limit },
            Some(BodyError::Timeout(_)) => GatewayError::ClientTimeout,
            _ => GatewayError::ClientAborted,
        }),
    }
}

/// 308 to `https://host[:port]/path?query`; 400 without a usable host.
fn redirect_https(parts: &Parts, port: u16) -> Result<Response<ResponseBody>, GatewayError> {
    let host = routing_host(parts).ok_or(GatewayError::BadRequest("a redirect to HTTPS needs a Host header"))?;
    let host = host.trim_end_matches('.');
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)) {
        return Err(GatewayError::BadRequest("the Host header is not a host name"));
    }
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location =
        if port == 443 { format!("https://{host}{target}") } else { format!("https://{host}:{port}{target}") };
    let location = HeaderValue::from_str(&location).map_err(|_| GatewayError::BadRequest("invalid request target"))?;
    let mut resp = Response::new(ResponseBody::local(Body::empty()));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(http::header::LOCATION, location);
    Ok(resp)
}

/// Answers a CORS preflight: 204 with the CORS headers, or 403 for an origin, method or header not allowed.
fn preflight(cors: &Cors, parts: &Parts) -> Result<Response<ResponseBody>, GatewayError> {
    match cors.decide(&parts.method, &parts.headers) {
        CorsDecision::Preflight(headers) => {
            let mut resp = Response::new(ResponseBody::local(Body::empty()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            *resp.headers_mut() = headers;
            Ok(resp)
        }
        _ => Err(GatewayError::Forbidden { kind: ForbiddenKind::Origin }),
    }
}

/// Headers every answer gets, upstream's or the gateway's own.
fn transform_response(snap: &Snapshot, conn: &Conn, headers: &mut HeaderMap, answer: Answer) {
    snap.server.security_headers.apply(headers);
    if conn.peer.scheme == Scheme::Https
        && let Some(hsts) = &conn.listener.hsts
    {
        headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if let Some(rate_limit) = &answer.rate_limit {
        rate_limit.apply(headers);
    }
    if let Some(cors) = answer.cors {
        for (name, value) in cors.iter() {
            if name == http::header::VARY {
                headers.append(name, value.clone());
            } else {
                headers.insert(name, value.clone());
            }
        }
    }
}

/// The request id: the client's, if it may be trusted and is well-formed, else a fresh one.
fn request_id(snap: &Snapshot, peer: &Peer, headers: &HeaderMap) -> RequestId {
    let server = &snap.server;
    let trusted = match server.request_id_trust {
        TrustIncoming::Never => false,
        TrustIncoming::Always => true,
        TrustIncoming::TrustedProxies => server.is_trusted(peer.addr.ip().to_canonical()),
    };
    if trusted && let Some(id) = headers.get(&server.request_id_header).and_then(RequestId::accept) {
        return id;
    }
    RequestId::generate()
}

/// The host as the client sent it, for logs.
fn host_value(parts: &Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    }
}

/// The host routes match on: from the request target if absolute (HTTP/2, or absolute-form HTTP/1.1), else `Host`;
/// lowercase, without the port.
fn routing_host(parts: &Parts) -> Option<Cow<'_, str>> {
    let raw = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => parts.headers.get(HOST)?.to_str().ok()?,
    };
    let host = strip_port(raw);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

fn strip_port(authority: &str) -> &str {
    // One pass over a short string (this runs for every request): the host starts after the last `@` (userinfo
    // of an absolute target) and ends at the last `:` when only digits follow it.
    let bytes = authority.as_bytes();
    let (mut start, mut colon) = (0, None);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'@' => (start, colon) = (i + 1, None),
            b':' => colon = Some(i),
            _ => {}
        }
    }
    let host = &authority[start..];
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match colon {
        Some(i) if bytes[i + 1..].iter().all(u8::is_ascii_digit) => &authority[start..i],
        _ => host,
    }
}

/// 431 for a request head over the listener's limits (size, field count); 413 for a declared body over the route's limit.
fn admit_sizes(conn: &Conn, route: &Route, req: &Parts) -> Result<(), GatewayError> {
    if req.headers.len() > conn.listener.max_headers {
        return Err(GatewayError::TooManyHeaders { limit: conn.listener.max_headers });
    }
    let limit = conn.listener.max_header_size;
    let mut size = req.method.as_str().len() + req.uri.to_string_len_hint() + 12;
    for (name, value) in &req.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    if size as u64 > limit {
        return Err(GatewayError::HeadersTooLarge { limit });
    }
    if let Some(len) = req.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > route.max_body_size
    {
        return Err(GatewayError::PayloadTooLarge { limit: route.max_body_size });
    }
    Ok(())
}

trait UriLen {
    fn to_string_len_hint(&self) -> usize;
}

impl UriLen for http::Uri {
    /// The length of the request target, without formatting it.
    fn to_string_len_hint(&self) -> usize {
        self.path_and_query().map_or(1, |pq| pq.as_str().len()) + self.authority().map_or(0, |a| a.as_str().len())
    }
}

fn path_error(err: PathError) -> GatewayError {
    GatewayError::InvalidPath(match err {
        PathError::NotAbsolute => "the path must start with `/`",
        PathError::InvalidEscape { .. } => "the path has an invalid percent-escape",
        PathError::ForbiddenByte { .. } => "the path has a control character, space or backslash",
    })
}

fn with_query(mut path: String, query: Option<&str>) -> Result<PathAndQuery, GatewayError> {
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    PathAndQuery::try_from(path).map_err(|_| GatewayError::InvalidPath("the rewritten path is not a valid URI path"))
}

fn method_not_allowed(allow: &[Method]) -> GatewayError {
    let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    GatewayError::MethodNotAllowed { allow: HeaderValue::from_str(&list).unwrap_or(HeaderValue::from_static("")) }
}

fn log_error(cx: &Cx, err: &GatewayError) {
    use turnpike_core::ErrorSide;
    match err.side() {
        ErrorSide::Client => {
            tracing::debug!(request_id = %cx.request_id, error = %err, "request refused");
        }
        ErrorSide::Upstream => {
            tracing::warn!(request_id = %cx.request_id, route = cx.route.as_deref(), upstream = cx.upstream.as_deref(),
                endpoint = cx.endpoint.map(tracing::field::display), error = %err, "upstream failure");
        }
        ErrorSide::Gateway => {
            tracing::error!(request_id = %cx.request_id, error = %err, "gateway failure");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("api.example.com:8080"), "api.example.com");
        assert_eq!(strip_port("api.example.com"), "api.example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("user@host:1"), "host");
    }
}
