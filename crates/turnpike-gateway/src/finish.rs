//! The `finish` phase: runs once per request, after the response is complete or abandoned — also after early
//! answers and errors — and reports it: metrics, the server span, then the access log.

use std::sync::atomic::Ordering;

use http::Version;
use tokio::time::Instant;
use turnpike_telemetry::AccessRecord;
use turnpike_telemetry::metrics::RequestSample;

use crate::body::Finish;
use crate::telemetry::Telemetry;

/// Reports a finished request (by reference: the request context stays where it is, in its box); returns the clock
/// reading it took as the request's end.
pub(crate) fn run(finish: &Finish, telemetry: &Telemetry, bytes_out: u64, aborted: bool) -> Instant {
    let Finish { cx, status, version, bytes_in, snap, log, metrics } = finish;
    let (status, version) = (*status, *version);
    // One clock read: the duration, and (placed on the wall clock) the access log's `time`.
    let end = Instant::now();
    let duration = end.saturating_duration_since(cx.start);
    if let Some(metrics) = metrics {
        telemetry.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics.record(&RequestSample {
            method: &cx.method,
            status,
            duration,
            bytes_in: bytes_in.get(),
            bytes_out,
            error: cx.error,
            rate_limit: cx.rate_limit,
            auth_failure: cx.auth_failure,
            trace_id: cx.trace.as_ref().and_then(|t| t.sampled_trace_id()),
        });
    }
    crate::spans::end_server(telemetry, cx, status, protocol(version));
    if !*log {
        return end;
    }
    let settings = &snap.server.log;
    let log = &telemetry.access_log;
    log.log(
        &AccessRecord {
            request_id: cx.request_id.as_bytes(),
            client: cx.client_ip,
            method: cx.method.as_str(),
            host: cx.host.as_ref().map(http::HeaderValue::as_bytes),
            path: cx.uri.path(),
            protocol: protocol(version),
            listener: &cx.peer.listener,
            route: cx.route.as_deref(),
            upstream: cx.upstream.as_deref(),
            endpoint: cx.endpoint,
            attempts: cx.attempts,
            status,
            bytes_in: bytes_in.get(),
            bytes_out,
            duration,
            end,
            upstream_duration: cx.upstream_duration,
            retry_stopped: cx.retry_stopped,
            rate_limit: cx.rate_limit,
            rate_limit_by: cx.rate_limit_by.as_deref(),
            error: cx.error,
            aborted,
            trace: cx.trace.as_ref().map(|t| (t.context.trace_id, t.context.span_id)),
            query: cx.uri.query(),
            consumer: cx.identity.as_ref().and_then(|i| i.consumer.as_ref()).map(|c| &*c.id),
            headers: &cx.log_headers,
        },
        settings,
    );
    end
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "2",
        Version::HTTP_10 => "1.0",
        Version::HTTP_09 => "0.9",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
