//! Names that must not drift: access-log field names, shared by the writer, the docs and the tests.

/// Access-log field: event time, RFC 3339 UTC with milliseconds.
pub const TIME: &str = "time";
/// Access-log field: the request id.
pub const REQUEST_ID: &str = "request_id";
/// Access-log field: the real client address.
pub const CLIENT_ADDRESS: &str = "client.address";
/// Access-log field: the request method.
pub const METHOD: &str = "http.request.method";
/// Access-log field: the host the client addressed.
pub const SERVER_ADDRESS: &str = "server.address";
/// Access-log field: the request path (normalized, no query: queries may carry secrets).
pub const URL_PATH: &str = "url.path";
/// Access-log field: the query string (off by default; secret parameters redacted).
pub const URL_QUERY: &str = "url.query";
/// Access-log field: the consumer (API client) the request authenticated as.
pub const CONSUMER: &str = "consumer";
/// Access-log field prefix: logged request headers, `http.request.header.<name>` (credentials redacted).
pub const REQUEST_HEADERS: &str = "http.request.header";
/// Access-log field: the HTTP version of the downstream connection.
pub const PROTOCOL_VERSION: &str = "network.protocol.version";
/// Access-log field: the listener name.
pub const LISTENER: &str = "listener";
/// Access-log field: the route id.
pub const ROUTE: &str = "route";
/// Access-log field: the upstream id.
pub const UPSTREAM: &str = "upstream";
/// Access-log field: the endpoint of the last attempt.
pub const ENDPOINT: &str = "endpoint";
/// Access-log field: why retries stopped before the attempts ran out.
pub const RETRY_STOPPED: &str = "retry_stopped";
/// Access-log field: what rate limiting decided (`allowed`, `delayed`, `refused`, `shadow_refused`,
/// `store_error_allowed`, `store_error_refused`).
pub const RATE_LIMIT: &str = "rate_limit";
/// Access-log field: the limit that refused (or would have, in shadow mode), `policy/limit`.
pub const RATE_LIMIT_BY: &str = "rate_limit_by";
/// Access-log field: upstream attempts made.
pub const ATTEMPTS: &str = "attempts";
/// Access-log field: the response status.
pub const STATUS: &str = "http.response.status_code";
/// Access-log field: request body bytes received.
pub const BYTES_IN: &str = "http.request.body.size";
/// Access-log field: response body bytes sent.
pub const BYTES_OUT: &str = "http.response.body.size";
/// Access-log field: time from the request's arrival to the response's last byte, in milliseconds.
pub const DURATION_MS: &str = "duration_ms";
/// Access-log field: time from sending upstream to the response head, in milliseconds.
pub const UPSTREAM_DURATION_MS: &str = "upstream_duration_ms";
/// Access-log field: the gateway's error type when it answered with an error.
pub const ERROR_TYPE: &str = "error.type";
/// Access-log field: the W3C trace id, when the request was traced (hex, 32 digits).
pub const TRACE_ID: &str = "trace_id";
/// Access-log field: the gateway's server span id, when the request was traced (hex, 16 digits).
pub const SPAN_ID: &str = "span_id";
/// Access-log field: set when the client went away before the response was complete.
pub const ABORTED: &str = "aborted";
