//! `GatewayError`: every way the gateway itself can refuse or fail a request, and its one mapping to a status.
//!
//! The mapping functions are exhaustive matches with no wildcard arm, so a new variant cannot be added without deciding
//! its status, its side and whether it may be retried. Rendering to a response happens in one place only
//! (`turnpike-gateway`'s `respond.rs`); messages here are short and never carry internals or secrets.

use std::time::Duration;

use http::{HeaderValue, StatusCode};

/// Why a request is forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenKind {
    /// The authenticated caller lacks a role, scope or claim the route requires, or the policy engine said no.
    Authorization,
    /// The client address is not allowed on this route.
    Address,
    /// The `Origin` is not allowed (CORS).
    Origin,
}

impl ForbiddenKind {
    fn detail(self) -> &'static str {
        match self {
            ForbiddenKind::Authorization => "the caller is not allowed to do this",
            ForbiddenKind::Address => "requests from this address are not allowed",
            ForbiddenKind::Origin => "this origin is not allowed",
        }
    }
}

/// Who caused a failure: used for logs and metrics ("is it us or the backend?").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSide {
    /// The downstream client sent something the gateway refuses.
    Client,
    /// The upstream failed, was unreachable or too slow.
    Upstream,
    /// The gateway itself could not serve the request.
    Gateway,
}

/// A failure the gateway answers itself, rendered as RFC 9457 `application/problem+json`.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the request's host and path.
    #[error("no route matches this request")]
    NoRoute,
    /// A route matches the path but not the method; `allow` is the `Allow` header value.
    #[error("method not allowed; allowed: {}", allow.to_str().unwrap_or(""))]
    MethodNotAllowed {
        /// The methods the matching routes accept, comma separated.
        allow: HeaderValue,
    },
    /// The request path cannot be normalized (bad percent-encoding, control characters, ...).
    #[error("invalid request path: {0}")]
    InvalidPath(&'static str),
    /// The request is malformed in a way the gateway detects (missing host, bad header value, ...).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request headers are larger than the listener allows.
    #[error("request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The request target is longer than the listener allows.
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The request has more header fields than the listener allows.
    #[error("request has more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The request body is larger than the route allows.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The client was too slow sending the request body.
    #[error("request body was not received in time")]
    ClientTimeout,
    /// The client went away or broke the request body stream.
    #[error("the client aborted the request body")]
    ClientAborted,
    /// The route needs credentials and the request has none, or they do not verify. `challenge` is the
    /// `WWW-Authenticate` value. The detail never says why a credential failed (logged instead).
    #[error("{}", if *missing { "credentials are required" } else { "the credentials are not valid" })]
    Unauthenticated {
        /// The `WWW-Authenticate` header value.
        challenge: HeaderValue,
        /// No credential was presented (as opposed to an invalid one).
        missing: bool,
    },
    /// The caller is known (or the request is refused before that) but may not do this.
    #[error("{}", kind.detail())]
    Forbidden {
        /// Why.
        kind: ForbiddenKind,
    },
    /// A service authentication or authorization depends on (key source, introspection, policy engine) cannot
    /// answer and nothing cached can stand in: the request is refused, never let through.
    #[error("the {service} service is unavailable")]
    AuthUnavailable {
        /// Which service (`introspection`, `jwks`, `policy`).
        service: &'static str,
    },
    /// The request body does not match the route's JSON Schema; each error is (JSON pointer, message).
    #[error("the request body does not match the schema")]
    InvalidBody {
        /// The validation errors.
        errors: Vec<(String, String)>,
    },
    /// The request body's media type is not the one the route accepts.
    #[error("the request body must be {expected}")]
    UnsupportedMediaType {
        /// The expected media type.
        expected: &'static str,
    },
    /// A rate limit refused the request.
    #[error("too many requests; retry after {} s", retry_after.as_secs())]
    RateLimited {
        /// When a request would be allowed again (the `Retry-After`, whole seconds).
        retry_after: Duration,
    },
    /// No endpoint of the upstream can be used.
    #[error("no endpoint of upstream `{upstream}` is available")]
    NoHealthyEndpoint {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
    },
    /// The upstream's circuit breaker is open: the request is refused without calling it.
    #[error("upstream `{upstream}` is failing; its circuit breaker is open")]
    CircuitOpen {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
        /// When the breaker lets requests through again (the `Retry-After`).
        retry_after: Duration,
    },
    /// The upstream's concurrency limit and queue are full: the request is shed.
    #[error("upstream `{upstream}` is at its concurrency limit")]
    UpstreamOverloaded {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
    },
    /// Connecting to the upstream endpoint failed (refused, unreachable, reset during connect).
    #[error("could not connect to upstream `{upstream}`")]
    UpstreamConnect {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
    },
    /// The upstream did not answer (or connect) within the configured timeout.
    #[error("upstream `{upstream}` did not respond within {}ms", timeout.as_millis())]
    UpstreamTimeout {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The upstream broke the exchange: reset, closed early, or answered with invalid HTTP.
    #[error("upstream `{upstream}` sent an invalid or incomplete response")]
    BadGateway {
        /// The upstream id.
        upstream: std::sync::Arc<str>,
    },
    /// The gateway is shutting down and takes no new requests on this connection.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// A bug or resource failure inside the gateway; the detail goes to the log, not to the client.
    #[error("internal gateway error")]
    Internal,
}

impl GatewayError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::InvalidPath(_) | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::HeadersTooLarge { .. } | GatewayError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::AuthUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            // 499 is nginx's "client closed request"; the client will not read it, but the access log will.
            GatewayError::ClientAborted => client_closed_request(),
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamConnect { .. } | GatewayError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side caused the failure.
    pub fn side(&self) -> ErrorSide {
        match self {
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidPath(_)
            | GatewayError::BadRequest(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::TooManyHeaders { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::UriTooLong { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ClientTimeout
            | GatewayError::ClientAborted
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden { .. }
            | GatewayError::InvalidBody { .. }
            | GatewayError::UnsupportedMediaType { .. } => ErrorSide::Client,
            GatewayError::AuthUnavailable { .. } => ErrorSide::Gateway,
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::BadGateway { .. } => ErrorSide::Upstream,
            GatewayError::ShuttingDown | GatewayError::Internal => ErrorSide::Gateway,
        }
    }

    /// Whether another attempt (on another endpoint) could succeed. The retry policy still decides whether the
    /// request may be replayed (method, body).
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::UpstreamConnect { .. } | GatewayError::NoHealthyEndpoint { .. } => true,
            GatewayError::UpstreamTimeout { .. } | GatewayError::BadGateway { .. } => true,
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidPath(_)
            | GatewayError::BadRequest(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::TooManyHeaders { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::UriTooLong { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ClientTimeout
            | GatewayError::ClientAborted
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden { .. }
            | GatewayError::AuthUnavailable { .. }
            | GatewayError::InvalidBody { .. }
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Internal => false,
        }
    }

    /// Why authentication or authorization refused the request, for metrics: `missing` or `invalid` credentials,
    /// `forbidden`, or the auth service `unavailable`; `None` for any other error.
    pub fn auth_failure(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unauthenticated { missing: true, .. } => Some("missing"),
            GatewayError::Unauthenticated { missing: false, .. } => Some("invalid"),
            GatewayError::Forbidden { kind: ForbiddenKind::Authorization } => Some("forbidden"),
            GatewayError::AuthUnavailable { .. } => Some("unavailable"),
            _ => None,
        }
    }

    /// A stable machine name for the error, used as the problem `type` suffix and the log's `error.type`.
    pub fn slug(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no-route",
            GatewayError::MethodNotAllowed { .. } => "method-not-allowed",
            GatewayError::InvalidPath(_) => "invalid-path",
            GatewayError::BadRequest(_) => "bad-request",
            GatewayError::HeadersTooLarge { .. } => "headers-too-large",
            GatewayError::TooManyHeaders { .. } => "too-many-headers",
            GatewayError::RateLimited { .. } => "rate-limited",
            GatewayError::UriTooLong { .. } => "uri-too-long",
            GatewayError::PayloadTooLarge { .. } => "payload-too-large",
            GatewayError::Unauthenticated { .. } => "unauthenticated",
            GatewayError::Forbidden { kind: ForbiddenKind::Authorization } => "forbidden",
            GatewayError::Forbidden { kind: ForbiddenKind::Address } => "address-denied",
            GatewayError::Forbidden { kind: ForbiddenKind::Origin } => "origin-denied",
            GatewayError::AuthUnavailable { .. } => "auth-unavailable",
            GatewayError::InvalidBody { .. } => "invalid-body",
            GatewayError::UnsupportedMediaType { .. } => "unsupported-media-type",
            GatewayError::ClientTimeout => "client-timeout",
            GatewayError::ClientAborted => "client-aborted",
            GatewayError::NoHealthyEndpoint { .. } => "no-healthy-endpoint",
            GatewayError::CircuitOpen { .. } => "circuit-open",
            GatewayError::UpstreamOverloaded { .. } => "upstream-overloaded",
            GatewayError::UpstreamConnect { .. } => "upstream-connect",
            GatewayError::UpstreamTimeout { .. } => "upstream-timeout",
            GatewayError::BadGateway { .. } => "bad-gateway",
            GatewayError::ShuttingDown => "shutting-down",
            GatewayError::Internal => "internal",
        }
    }

    /// Whether the connection to the client should be closed after answering (the request body may be unread).
    pub fn closes_connection(&self) -> bool {
        matches!(self, GatewayError::PayloadTooLarge { .. } | GatewayError::ClientTimeout | GatewayError::ClientAborted)
    }
}

fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        let up: std::sync::Arc<str> = "users".into();
        assert_eq!(GatewayError::UpstreamConnect { upstream: up.clone() }.status(), StatusCode::BAD_GATEWAY);
        let timeout = GatewayError::UpstreamTimeout { upstream: up, timeout: Duration::from_millis(250) };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(timeout.to_string(), "upstream `users` did not respond within 250ms");
        assert_eq!(timeout.side(), ErrorSide::Upstream);
    }

    #[test]
    fn client_errors_are_not_retryable() {
        assert!(!GatewayError::PayloadTooLarge { limit: 1 }.is_retryable());
        assert_eq!(GatewayError::ClientAborted.status().as_u16(), 499);
    }
}
