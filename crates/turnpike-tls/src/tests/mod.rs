//! Tests: real TLS handshakes over loopback, with certificates made by rcgen.

mod config;
mod errors;
mod mtls;
mod protocol;
mod reload;
mod resumption;
mod sni;
mod support;
mod upstream;
