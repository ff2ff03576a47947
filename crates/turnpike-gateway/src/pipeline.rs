//! The request path through the gateway. The order of the phases is a security property: read it top to bottom.
//!
//! ```text
//! 1 route        select on the normalized path                                404 / 405 / 400
//! 2 admit        cheap guards before any crypto or I/O: sizes                 431 / 413
//! 3 authenticate (edge security)   4 authorize   5 rate_limit   6 cache_lookup   7 transform_request
//! 8 dispatch     forward to an endpoint of the route's upstream               502 / 503 / 504
//! 9 transform_response   10 cache_store
//! 11 finish      access log: always runs, after early answers and errors too
//! ```

use std::borrow::Cow;

use http::header::{CONTENT_LENGTH, HOST};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use turnpike_core::{Cx, GatewayError, Peer, RequestId};
use turnpike_router::{PathError, RequestView, Selection, normalize_path};

use crate::body::{BytesIn, Finish, ResponseBody};
use crate::server::{Conn, RequestGuard};
use crate::snapshot::{Snapshot, TrustIncoming};
use crate::{dispatch, proxy_headers, respond};

/// Handles one request from arrival to response head; the body streams afterwards and `finish` runs at its end.
pub(crate) async fn handle(conn: RequestGuard, req: Request<Incoming>) -> Response<ResponseBody> {
    // One snapshot for the whole request: a reload while it runs does not change what it sees.
    let snap = conn.gateway.snapshot();
    let request_id = request_id(&snap, &conn.peer, &req);
    let version = req.version();
    let mut cx = Cx::new(request_id, conn.peer.clone(), req.method().clone(), req.uri().clone(), Instant::now());
    cx.host = host_value(&req);
    cx.client_ip = proxy_headers::client_ip(&snap.server, conn.peer.addr.ip().to_canonical(), req.headers());
    let mut bytes_in = BytesIn::Known(0);

    let outcome = route_and_dispatch(&snap, &conn, &mut cx, req, &mut bytes_in).await;

    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(err) => {
            // The one place a failure becomes a response.
            cx.error = Some(err.slug());
            log_error(&cx, &err);
            respond::problem(&cx, &err, &snap.server.request_id_header).map(ResponseBody::local)
        }
    };
    // 11 finish: attached to the body, so it runs when the last byte is sent (or the client goes away) and can
    // report the full duration and size.
    let telemetry = &conn.gateway.telemetry;
    if snap.server.access_log && telemetry.access_log.enabled() {
        let status = resp.status().as_u16();
        resp.body_mut().set_finish(Box::new(Finish { cx, status, version, bytes_in, telemetry: telemetry.clone() }));
    }
    // The request counts as in flight on its connection until the response has been sent.
    resp.body_mut().hold(conn);
    resp
}

async fn route_and_dispatch(
    snap: &Snapshot,
    conn: &Conn,
    cx: &mut Cx,
    req: Request<Incoming>,
    bytes_in: &mut BytesIn,
) -> Result<Response<ResponseBody>, GatewayError> {
    // 1 route. Matching runs on the normalized path (percent-decoded unreserved characters, no dot segments, no
    // duplicate slashes), and that same path is what the upstream receives: `/public/../admin` reaches exactly what
    // `/admin` reaches.
    let path = normalize_path(req.uri().path()).map_err(path_error)?;
    let host = routing_host(&req);
    let view = RequestView {
        host: host.as_deref(),
        path: &path,
        method: req.method(),
        headers: req.headers(),
        query: req.uri().query(),
    };
    let matched = match snap.routes.select(&view) {
        Selection::Matched(m) => m,
        Selection::MethodNotAllowed { allow } => return Err(method_not_allowed(&allow)),
        Selection::NotFound => return Err(GatewayError::NoRoute),
    };
    let route = matched.value;
    cx.route = Some(route.id.clone());

    // 2 admit: cheap guards that need no I/O, before anything costly. A body announced as too large is refused
    // before it is read (and before `100 Continue` is sent).
    admit_sizes(conn, route, &req)?;

    // 3 authenticate .. 7 transform_request: added by the edge-security, rate-limit and transform work, here, in
    // this order.

    let upstream_path = match &route.rewrite {
        Some(rewrite) => {
            let mut out = String::with_capacity(path.len() + 16);
            rewrite.apply(&path, &matched.params, &mut out);
            Some(with_query(out, req.uri().query())?)
        }
        None => match &path {
            Cow::Owned(normalized) => Some(with_query(normalized.clone(), req.uri().query())?),
            Cow::Borrowed(_) => None,
        },
    };

    // 8 dispatch.
    dispatch::forward(snap, conn, cx, route, req, upstream_path, bytes_in).await
}

/// The request id: the client's, if it may be trusted and is well-formed, else a fresh one.
fn request_id(snap: &Snapshot, peer: &Peer, req: &Request<Incoming>) -> RequestId {
    let server = &snap.server;
    let trusted = match server.request_id_trust {
        TrustIncoming::Never => false,
        TrustIncoming::Always => true,
        TrustIncoming::TrustedProxies => server.is_trusted(peer.addr.ip().to_canonical()),
    };
    if trusted && let Some(id) = req.headers().get(&server.request_id_header).and_then(RequestId::accept) {
        return id;
    }
    RequestId::generate()
}

/// The host as the client sent it, for logs.
fn host_value(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(HOST).cloned(),
    }
}

/// The host routes match on: from the request target if absolute (HTTP/2, or absolute-form HTTP/1.1), else `Host`;
/// lowercase, without the port.
fn routing_host(req: &Request<Incoming>) -> Option<Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => req.headers().get(HOST)?.to_str().ok()?,
    };
    let host = strip_port(raw);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

fn strip_port(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// 431 for a request head over the listener's limits (size, field count); 413 for a declared body over the route's limit.
fn admit_sizes(conn: &Conn, route: &crate::snapshot::Route, req: &Request<Incoming>) -> Result<(), GatewayError> {
    if req.headers().len() > conn.listener.max_headers {
        return Err(GatewayError::TooManyHeaders { limit: conn.listener.max_headers });
    }
    let limit = conn.listener.max_header_size;
    let mut size = req.method().as_str().len() + req.uri().to_string_len_hint() + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size as u64 > limit {
        return Err(GatewayError::HeadersTooLarge { limit });
    }
    if let Some(len) = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
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
