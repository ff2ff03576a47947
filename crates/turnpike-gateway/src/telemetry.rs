//! The gateway's telemetry sinks, process-wide and outside the snapshot (a reload keeps them).

use turnpike_telemetry::AccessLog;

/// Where the `finish` phase reports.
#[derive(Debug)]
pub struct Telemetry {
    /// The access log (disabled when `server.access_log.enabled` is false at startup).
    pub access_log: AccessLog,
}
