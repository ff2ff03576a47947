//! The spans of one request: its trace context is decided on arrival (continued from the caller, or new and
//! sampled by ratio), child spans time the phases that may wait (authentication, rate limiting and its Redis
//! call, each upstream attempt), and the server span ends in `finish`. Only sampled traces record anything; every
//! traced request still sends a context upstream so the services behind keep the trace id.

use std::time::SystemTime;

use tokio::time::Instant;
use turnpike_core::Cx;
use turnpike_core::trace::{Incoming, RequestTrace, SpanContext, SpanId, TraceId};
use turnpike_telemetry::trace::otlp::{self, Attributes, SpanData};
use turnpike_telemetry::trace::sample_by_ratio;

use crate::snapshot::TracingSettings;
use crate::telemetry::Telemetry;

/// The trace of a request that just arrived.
pub(crate) fn begin(headers: &http::HeaderMap, settings: &TracingSettings) -> RequestTrace {
    let Incoming { caller, stale } = Incoming::scan(headers, settings.propagation);
    let (trace_id, sampled, trace_state, parent) = match caller {
        Some(c) => (c.trace_id, c.sampled, c.trace_state, Some(c.span_id)),
        None => {
            let id = TraceId::random();
            (id, sample_by_ratio(id, settings.sample_ratio), None, None)
        }
    };
    let start_unix_nanos = if sampled { unix_nanos(SystemTime::now()) } else { 0 };
    RequestTrace {
        context: SpanContext { trace_id, span_id: SpanId::random(), sampled, trace_state },
        parent,
        start_unix_nanos,
        stale_headers: stale,
    }
}

/// A child span being timed.
#[derive(Debug)]
pub(crate) struct Child {
    /// Its id (sent upstream as the parent of what the upstream does).
    pub id: SpanId,
    start: Instant,
    /// Whether it is exported when it ends (the trace is sampled and an exporter runs): callers build attributes
    /// only then.
    pub recorded: bool,
}

/// Starts a child span of the server span for every traced request (an upstream attempt needs its id for
/// propagation even when nothing is recorded).
pub(crate) fn child(cx: &Cx, telemetry: &Telemetry) -> Option<Child> {
    let trace = cx.trace.as_ref()?;
    let recorded = trace.context.sampled && telemetry.tracer.is_some();
    // The clock is read only for a span that will be recorded (the start of one that is not is never used).
    let start = if recorded { Instant::now() } else { cx.start };
    Some(Child { id: SpanId::random(), start, recorded })
}

/// Starts a child span only when it will be recorded (phases that propagate nothing).
pub(crate) fn recorded_child(cx: &Cx, telemetry: &Telemetry) -> Option<Child> {
    child(cx, telemetry).filter(|c| c.recorded)
}

/// Ends a child span of `parent` (`None`: of the server span): records it when the trace is sampled and an
/// exporter runs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn end(
    telemetry: &Telemetry,
    cx: &Cx,
    child: Child,
    parent: Option<&Child>,
    name: &str,
    kind: i32,
    attributes: &Attributes,
    error: Option<&str>,
) {
    let (Some(trace), Some(tracer)) = (&cx.trace, &telemetry.tracer) else { return };
    if !trace.context.sampled {
        return;
    }
    let parent = parent.map_or(trace.context.span_id, |p| p.id);
    tracer.record(&span(trace, cx, child.id, Some(parent), name, kind, child.start, error), attributes);
}

/// Ends the server span (in `finish`, after the last byte).
pub(crate) fn end_server(telemetry: &Telemetry, cx: &Cx, status: u16, protocol: &str) {
    let (Some(trace), Some(tracer)) = (&cx.trace, &telemetry.tracer) else { return };
    if !trace.context.sampled {
        return;
    }
    // `<method> <route>` (without `fmt`: this runs for every sampled request).
    let method = cx.method.as_str();
    let mut name = String::with_capacity(method.len() + 1 + cx.route.as_ref().map_or(0, |r| r.len()));
    name.push_str(method);
    if let Some(route) = &cx.route {
        name.push(' ');
        name.push_str(route);
    }
    let mut attributes = Attributes::new();
    attributes
        .string("http.request.method", cx.method.as_str())
        .string("url.path", cx.uri.path())
        .string("url.scheme", cx.peer.scheme.as_str())
        .int("http.response.status_code", i64::from(status))
        .ip("client.address", cx.client_ip)
        .string("network.protocol.version", protocol)
        .string("turnpike.request_id", cx.request_id.as_str());
    if let Some(host) = cx.host.as_ref().and_then(|h| h.to_str().ok()) {
        attributes.string("server.address", host);
    }
    if let Some(route) = &cx.route {
        attributes.string("turnpike.route", route);
    }
    if let Some(upstream) = &cx.upstream {
        attributes.string("turnpike.upstream", upstream);
    }
    if let Some(error) = cx.error {
        attributes.string("error.type", error);
    }
    // A server span is an error for 5xx only: a 4xx is the client's problem (OpenTelemetry HTTP conventions).
    let error = (status >= 500).then(|| cx.error.unwrap_or("server error"));
    let span = span(trace, cx, trace.context.span_id, trace.parent, &name, otlp::kind::SERVER, cx.start, error);
    tracer.record(&span, &attributes);
}

/// A span of `cx`'s trace, ending now.
#[allow(clippy::too_many_arguments)]
fn span<'a>(
    trace: &'a RequestTrace,
    cx: &Cx,
    id: SpanId,
    parent: Option<SpanId>,
    name: &'a str,
    kind: i32,
    start: Instant,
    error: Option<&'a str>,
) -> SpanData<'a> {
    // Times on the monotonic clock, placed on the wall clock by the request's start.
    let at = |instant: Instant| {
        let offset = instant.saturating_duration_since(cx.start).as_nanos();
        trace.start_unix_nanos.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    };
    SpanData {
        trace_id: trace.context.trace_id.0,
        span_id: id.0,
        parent_span_id: parent.map(|p| p.0),
        trace_state: trace.context.trace_state.as_ref().and_then(|s| s.to_str().ok()).unwrap_or_default(),
        name,
        kind,
        start_time_unix_nano: at(start),
        end_time_unix_nano: at(Instant::now()),
        error,
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
