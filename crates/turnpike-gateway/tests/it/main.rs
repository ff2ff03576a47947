//! End-to-end tests of the gateway: real HTTP through a gateway on 127.0.0.1:0 to mock upstreams.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod auth_jwt;
mod config;
mod edge;
mod forwarding;
mod limits;
mod observability;
mod rate_limit;
mod rate_limit_shared;
mod reload;
mod resilience;
mod routing;
mod smoke;
mod support;
mod tls;
mod tracing;
