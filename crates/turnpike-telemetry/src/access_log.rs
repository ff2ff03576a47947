//! The access log: one JSON object per request, written by its own thread so the request path never waits on I/O.
//!
//! Records are formatted on the worker (cheap, no locks) and handed over through a bounded queue; when the queue is
//! full (stdout blocked, disk slow) the record is dropped and counted rather than stalling requests. Every string is
//! JSON-escaped, control characters included, so a client cannot forge or break a log line.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use turnpike_core::trace::{SpanId, TraceId};

use crate::names;

/// Everything the access log says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The real client address.
    pub client: IpAddr,
    /// The request method.
    pub method: &'a str,
    /// The host the client addressed.
    pub host: Option<&'a str>,
    /// The normalized path, without the query.
    pub path: &'a str,
    /// `1.1` or `2`.
    pub protocol: &'static str,
    /// The listener's name.
    pub listener: &'a str,
    /// The route id, if one matched.
    pub route: Option<&'a str>,
    /// The upstream id, if the request was forwarded.
    pub upstream: Option<&'a str>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// The response status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Arrival to last byte.
    pub duration: Duration,
    /// Sending upstream to the response head.
    pub upstream_duration: Option<Duration>,
    /// Why retrying stopped early, if it did.
    pub retry_stopped: Option<&'static str>,
    /// What rate limiting decided, on rate-limited routes.
    pub rate_limit: Option<&'static str>,
    /// The limit that refused (or would have).
    pub rate_limit_by: Option<&'a str>,
    /// The gateway's error type, if it answered with an error.
    pub error: Option<&'static str>,
    /// The client went away before the response was complete.
    pub aborted: bool,
    /// The trace and the gateway's server span, when the request was traced.
    pub trace: Option<(TraceId, SpanId)>,
}

/// Where access-log lines go.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("enabled", &self.tx.is_some()).finish()
    }
}

/// Records held in memory while the writer catches up; beyond this they are dropped and counted.
pub const DEFAULT_QUEUE: usize = 16_384;

impl AccessLog {
    /// An access log that writes nothing.
    pub fn disabled() -> Self {
        Self { tx: None, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// An access log on stdout (shared with process logs; each line is written whole).
    pub fn stdout() -> Self {
        Self::to_writer(|| Box::new(StdoutLines), DEFAULT_QUEUE)
    }

    /// An access log written by a dedicated thread to the writer `make` returns.
    pub fn to_writer(make: impl FnOnce() -> Box<dyn Write + Send> + Send + 'static, queue: usize) -> Self {
        let (tx, rx) = sync_channel(queue);
        let spawned = std::thread::Builder::new().name("turnpike-access-log".into()).spawn(move || {
            write_loop(rx, make());
        });
        match spawned {
            Ok(_) => Self { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)) },
            Err(err) => {
                tracing::error!(error = %err, "could not start the access-log writer; access log disabled");
                Self::disabled()
            }
        }
    }

    /// Whether records are written at all (callers skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Records that were dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one record; never blocks.
    pub fn log(&self, record: &AccessRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = Vec::with_capacity(512);
        format_record(&mut line, record, SystemTime::now());
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

fn write_loop(rx: Receiver<Vec<u8>>, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        batch.extend_from_slice(&first);
        // Drain what is already queued so one write carries many lines under load.
        while batch.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            // Nowhere to write (stdout closed): keep draining so the queue never blocks producers.
        }
        batch.clear();
    }
}

/// Formats one record as a JSON line (with the trailing newline).
pub fn format_record(out: &mut Vec<u8>, r: &AccessRecord<'_>, now: SystemTime) {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(names::TIME.as_bytes());
    out.extend_from_slice(b"\":\"");
    crate::time::write_rfc3339_millis(out, now);
    out.push(b'"');
    field_str(out, names::REQUEST_ID, r.request_id);
    field_display(out, names::CLIENT_ADDRESS, &r.client, true);
    field_str(out, names::METHOD, r.method);
    if let Some(host) = r.host {
        field_str(out, names::SERVER_ADDRESS, host);
    }
    field_str(out, names::URL_PATH, r.path);
    field_str(out, names::PROTOCOL_VERSION, r.protocol);
    field_str(out, names::LISTENER, r.listener);
    if let Some(route) = r.route {
        field_str(out, names::ROUTE, route);
    }
    if let Some(upstream) = r.upstream {
        field_str(out, names::UPSTREAM, upstream);
    }
    if let Some(endpoint) = r.endpoint {
        field_display(out, names::ENDPOINT, &endpoint, true);
    }
    if r.attempts > 0 {
        field_display(out, names::ATTEMPTS, &r.attempts, false);
    }
    field_display(out, names::STATUS, &r.status, false);
    field_display(out, names::BYTES_IN, &r.bytes_in, false);
    field_display(out, names::BYTES_OUT, &r.bytes_out, false);
    field_millis(out, names::DURATION_MS, r.duration);
    if let Some(d) = r.upstream_duration {
        field_millis(out, names::UPSTREAM_DURATION_MS, d);
    }
    if let Some(why) = r.retry_stopped {
        field_str(out, names::RETRY_STOPPED, why);
    }
    if let Some(decision) = r.rate_limit {
        field_str(out, names::RATE_LIMIT, decision);
    }
    if let Some(by) = r.rate_limit_by {
        field_str(out, names::RATE_LIMIT_BY, by);
    }
    if let Some(error) = r.error {
        field_str(out, names::ERROR_TYPE, error);
    }
    if let Some((trace_id, span_id)) = r.trace {
        key(out, names::TRACE_ID);
        write_json_string(out, &trace_id.to_hex());
        key(out, names::SPAN_ID);
        write_json_string(out, &span_id.to_hex());
    }
    if r.aborted {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(names::ABORTED.as_bytes());
        out.extend_from_slice(b"\":true");
    }
    out.extend_from_slice(b"}\n");
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    write_json_string(out, value);
}

fn field_display(out: &mut Vec<u8>, name: &str, value: &dyn std::fmt::Display, quoted: bool) {
    key(out, name);
    if quoted {
        out.push(b'"');
    }
    let _ = write!(out, "{value}");
    if quoted {
        out.push(b'"');
    }
}

fn field_millis(out: &mut Vec<u8>, name: &str, d: Duration) {
    key(out, name);
    let micros = d.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// Writes `s` as a JSON string: quotes, backslashes and every control character (including DEL) escaped.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord<'static> {
        AccessRecord {
            request_id: "abc",
            client: "10.0.0.1".parse().unwrap(),
            method: "GET",
            host: Some("api.example.com"),
            path: "/api/users",
            protocol: "1.1",
            listener: "public",
            route: Some("users"),
            upstream: Some("users"),
            endpoint: Some("127.0.0.1:9101".parse().unwrap()),
            attempts: 1,
            status: 200,
            bytes_in: 0,
            bytes_out: 512,
            duration: Duration::from_micros(1234),
            upstream_duration: Some(Duration::from_micros(900)),
            retry_stopped: None,
            rate_limit: None,
            rate_limit_by: None,
            error: None,
            aborted: false,
            trace: Some((TraceId([0xab; 16]), SpanId([0xcd; 8]))),
        }
    }

    #[test]
    fn record_is_one_json_line_with_every_field() {
        let mut out = Vec::new();
        format_record(&mut out, &record(), SystemTime::UNIX_EPOCH);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[names::STATUS], 200);
        assert_eq!(v[names::ROUTE], "users");
        assert_eq!(v[names::ENDPOINT], "127.0.0.1:9101");
        assert_eq!(v[names::DURATION_MS], 1.234);
        assert_eq!(v[names::TIME], "1970-01-01T00:00:00.000Z");
        assert_eq!(v[names::TRACE_ID], "ab".repeat(16));
        assert_eq!(v[names::SPAN_ID], "cd".repeat(8));
    }

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut r = record();
        r.path = "/a\r\n{\"forged\":1}\u{1b}[31m";
        let mut out = Vec::new();
        format_record(&mut out, &r, SystemTime::UNIX_EPOCH);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(!out.contains(&0x1b));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[names::URL_PATH], "/a\r\n{\"forged\":1}\u{1b}[31m");
    }

    #[test]
    fn full_queue_drops_and_counts_instead_of_blocking() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::park();
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = AccessLog::to_writer(|| Box::new(Stuck), 4);
        for _ in 0..100 {
            log.log(&record());
        }
        assert!(log.dropped() >= 90, "dropped {}", log.dropped());
    }
}
