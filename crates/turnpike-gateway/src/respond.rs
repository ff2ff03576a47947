//! The one place where the gateway's own failures become responses: RFC 9457 `application/problem+json`.
//!
//! Every refusal and failure the gateway produces passes through [`problem`], so they all look alike to clients:
//! `type`, `title`, `status`, `detail`, `instance` (the request path, without the query: queries can carry
//! secrets) and `request_id`, the same id as the `X-Request-Id` header and the access log.

use http::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response};
use turnpike_core::{Body, Cx, GatewayError};

/// The media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The base of problem `type` URIs; the error's slug is appended (`.../no-route`).
pub const PROBLEM_TYPE_BASE: &str = "https://turnpike.dev/problems/";

/// Renders `err` for the request described by `cx`.
pub fn problem(cx: &Cx, err: &GatewayError, request_id_header: &HeaderName) -> Response<Body> {
    let status = err.status();
    let mut body = serde_json::json!({
        "type": format!("{PROBLEM_TYPE_BASE}{}", err.slug()),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": err.to_string(),
        "instance": cx.uri.path(),
        "request_id": cx.request_id.as_str(),
    });
    if let GatewayError::InvalidBody { errors } = err {
        // RFC 9457 extension member: where in the body each schema error is (JSON pointer) and what it is.
        body["errors"] = errors
            .iter()
            .map(|(pointer, detail)| serde_json::json!({ "pointer": pointer, "detail": detail }))
            .collect();
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(Body::full(bytes));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(request_id_header.clone(), cx.request_id.header_value().clone());
    match err {
        GatewayError::MethodNotAllowed { allow } => {
            headers.insert(ALLOW, allow.clone());
        }
        GatewayError::Unauthenticated { challenge, .. } => {
            headers.insert(WWW_AUTHENTICATE, challenge.clone());
        }
        GatewayError::AuthUnavailable { .. } => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        GatewayError::CircuitOpen { retry_after, .. } | GatewayError::RateLimited { retry_after } => {
            // Whole seconds, rounded up: never tell a client to come back before the breaker probes.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        GatewayError::UpstreamOverloaded { .. } => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    if err.closes_connection() {
        // The request body may be partly unread: the connection cannot carry another request (HTTP/1.1 only;
        // HTTP/2 ignores it and resets the stream instead).
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use turnpike_core::{Peer, RequestId, Scheme};

    /// A request context for a GET of `target` from a plain-HTTP listener.
    fn cx(target: &str) -> Cx {
        let peer = Arc::new(Peer::new(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            Arc::from("public"),
            Scheme::Http,
        ));
        Cx::new(RequestId::generate(), peer, http::Method::GET, target.parse().unwrap(), tokio::time::Instant::now())
    }

    #[test]
    fn problem_has_every_rfc9457_member_and_the_request_id() {
        let cx = cx("/nope?token=secret");
        let resp = problem(&cx, &GatewayError::NoRoute, &HeaderName::from_static("x-request-id"));
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(resp.headers()["x-request-id"], cx.request_id.as_str());
        let body = futures_body(resp.into_body());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "https://turnpike.dev/problems/no-route");
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["instance"], "/nope");
        assert_eq!(v["request_id"], cx.request_id.as_str());
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }

    #[test]
    fn unauthenticated_carries_the_challenge_and_schema_errors_their_pointers() {
        let cx = cx("/me");
        let id = HeaderName::from_static("x-request-id");
        let err = GatewayError::Unauthenticated {
            challenge: HeaderValue::from_static("Bearer realm=\"api\""),
            missing: true,
        };
        let resp = problem(&cx, &err, &id);
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"api\"");
        let err = GatewayError::InvalidBody { errors: vec![("/items/0".into(), "bad".into())] };
        let v: serde_json::Value = serde_json::from_slice(&futures_body(problem(&cx, &err, &id).into_body())).unwrap();
        assert_eq!(v["errors"][0]["pointer"], "/items/0");
    }

    fn futures_body(body: Body) -> bytes::Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { body.collect().await.unwrap().to_bytes() })
    }
}
