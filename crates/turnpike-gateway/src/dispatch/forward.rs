//! Forwarding a request to an endpoint of the route's upstream and streaming the answer back.
//!
//! pick endpoint -> prepare head -> send within the route's deadline -> classify failures -> stream the response.
//! Health, breakers and retries extend this loop in the upstream-resilience work.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header::HOST};
use hyper::body::Incoming;
use tokio::time::Instant;
use turnpike_core::{Body, BodyError, Cx, GatewayError};
use turnpike_upstream::{Endpoint, HostHeader, Protocol, SendError, Upstream, connect::ConnectError};

use crate::body::ResponseBody;
use crate::proxy_headers::{self, Forwarding};
use crate::server::Conn;
use crate::snapshot::{Route, Snapshot};

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
    let upstream = &route.upstream;
    cx.upstream = Some(upstream.id.clone());
    let endpoint = upstream.pick().ok_or_else(|| GatewayError::NoHealthyEndpoint { upstream: upstream.id.clone() })?;
    cx.endpoint = Some(endpoint.addr);

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
    head.uri = upstream_uri(upstream, endpoint, head.uri, upstream_path, &mut head.headers)?;
    head.version = match upstream.protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };

    let mut exchange = endpoint.begin(upstream.pool.clone());
    cx.attempts += 1;
    let sent = Instant::now();
    let outcome = tokio::time::timeout(route.timeout, exchange.send(Request::from_parts(head, body), sent)).await;
    cx.upstream_duration = Some(sent.elapsed());
    let resp = match outcome {
        Ok(Ok(resp)) => resp,
        Ok(Err(err)) => return Err(classify(err, upstream)),
        Err(_) => return Err(GatewayError::UpstreamTimeout { upstream: upstream.id.clone(), timeout: route.timeout }),
    };

    let (mut head, body) = resp.into_parts();
    proxy_headers::prepare_response(&mut head.headers, &snap.server, head.version, &cx.request_id);
    head.version = downstream_version;
    let body = stream_back(body, upstream);
    Ok(Response::from_parts(head, ResponseBody::upstream(body, exchange)))
}

fn stream_back(body: Incoming, upstream: &Upstream) -> Body {
    Body::stream(body).with_idle_timeout(upstream.timeouts.read)
}

/// The request target for the upstream: origin form (`/path?q`) for HTTP/1.1, absolute for HTTP/2 (whose
/// `:authority` carries the host). Sets `Host` per the upstream's host policy.
fn upstream_uri(
    upstream: &Upstream,
    endpoint: &Endpoint,
    original: Uri,
    upstream_path: Option<PathAndQuery>,
    headers: &mut http::HeaderMap,
) -> Result<Uri, GatewayError> {
    let path_and_query = match upstream_path {
        Some(pq) => pq,
        None => original.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    // The common case: HTTP/1.1 on both sides, `Host` kept as the client sent it — nothing to rewrite.
    if upstream.protocol == Protocol::Http1
        && matches!(upstream.host, HostHeader::Preserve)
        && original.authority().is_none()
        && headers.contains_key(HOST)
    {
        return Ok(Uri::from(path_and_query));
    }
    let client_host: Option<HeaderValue> = match original.authority() {
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
            match host {
                Some(host) => {
                    headers.insert(HOST, host);
                }
                None => {
                    headers.insert(
                        HOST,
                        HeaderValue::from_str(endpoint.authority.as_str()).map_err(|_| GatewayError::Internal)?,
                    );
                }
            }
            Ok(Uri::from(path_and_query))
        }
        Protocol::Http2 => {
            headers.remove(HOST);
            let authority = match host.as_ref().and_then(|h| Authority::try_from(h.as_bytes()).ok()) {
                Some(authority) => authority,
                None => endpoint.authority.clone(),
            };
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(authority);
            parts.path_and_query = Some(path_and_query);
            Uri::from_parts(parts).map_err(|_| GatewayError::BadRequest("cannot build the upstream request target"))
        }
    }
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
            if let Some(body_err) = find_body_error(&err) {
                return match body_err {
                    BodyError::TooLarge { limit } => GatewayError::PayloadTooLarge { limit: *limit },
                    BodyError::Timeout(_) => GatewayError::ClientTimeout,
                    BodyError::Aborted(_) => GatewayError::ClientAborted,
                };
            }
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
