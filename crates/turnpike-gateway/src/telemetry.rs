//! The gateway's telemetry sinks, process-wide and outside the snapshot (a reload keeps them).

use std::sync::atomic::AtomicI64;

use turnpike_telemetry::AccessLog;
use turnpike_telemetry::trace::Tracer;

/// Where the `finish` phase reports.
#[derive(Debug)]
pub struct Telemetry {
    /// The access log (disabled when `server.access_log.enabled` is false at startup).
    pub access_log: AccessLog,
    /// Requests whose response has not been completely sent (counted while metrics are on).
    pub in_flight: AtomicI64,
    /// When the process started (seconds since the Unix epoch).
    pub started: std::time::SystemTime,
    /// The span exporter, when tracing is configured at startup.
    pub tracer: Option<Tracer>,
}

impl Telemetry {
    /// Sinks around `access_log` and `tracer`.
    pub fn new(access_log: AccessLog, tracer: Option<Tracer>) -> Self {
        Self { access_log, in_flight: AtomicI64::new(0), started: std::time::SystemTime::now(), tracer }
    }
}
