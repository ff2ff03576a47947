//! Turnpike's telemetry: process logs (JSON or pretty, on stdout) and the access log.
//!
//! Metric names and tracing join here in later work; every name that must not drift is a constant in [`names`].

pub mod access_log;
pub mod logging;
pub mod names;
mod time;

pub use access_log::{AccessLog, AccessRecord};
pub use logging::LogFormat;
