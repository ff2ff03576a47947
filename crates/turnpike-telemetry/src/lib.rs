//! Turnpike's telemetry: process logs (JSON or pretty, on stdout), the access log and Prometheus metrics.
//!
//! Every name that must not drift is a constant: access-log fields in [`names`], metrics in [`metrics::CATALOG`].

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod names;
mod time;
pub mod trace;

pub use access_log::{AccessLog, AccessRecord};
pub use logging::LogFormat;
