//! End-to-end tests of the `turnpike` binary: the CLI, `run` with its signals and control socket, the demo's URL
//! contract, and bounded-memory streaming measured on the real process.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod demo;
mod process;
mod run;
mod secrets;
mod streaming;
