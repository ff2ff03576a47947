//! Turnpike's data plane: the configuration document and its compilation into a snapshot, the listeners and worker
//! threads, the request pipeline (`pipeline.rs`, read it first), dispatch, and the one place errors become
//! responses (`respond.rs`).
//!
//! The binary drives it through [`GatewayHandle`]: start from a [`StartOptions`], reload, shut down.

mod admin;
mod body;
pub mod config;
pub mod control;
mod discovery;
mod dispatch;
mod finish;
mod gateway;
mod listeners;
mod pipeline;
mod proxy_headers;
pub mod respond;
mod server;
pub mod snapshot;
mod spans;
pub mod state;
mod telemetry;
mod watch;
mod workers;

pub use config::{ConfigSource, Report};
pub use gateway::{AccessLogSink, GatewayHandle, ReloadError, ReloadStatus, StartError, StartOptions};
pub use listeners::BindError;
pub use snapshot::Snapshot;
