//! Turnpike's TLS machinery (rustls, ring): listener certificates chosen by SNI, client certificate verification
//! and identity, and TLS to upstreams.
//!
//! - [`server_config`] reads a listener's certificates, keys and CA bundle into a [`ServerTls`]; a reload calls it
//!   again, so renewed certificates serve new connections while open ones keep theirs.
//! - [`client_cert_info`] / [`peer_client_cert`] turn a verified client certificate into a
//!   [`turnpike_core::ClientCert`] (subject, SANs, SHA-256 fingerprint).
//! - [`client_config`] and [`server_name`] build TLS to an upstream's endpoints.
//!
//! Only TLS 1.2 and 1.3 are spoken, with the ring provider's forward-secret AEAD cipher suites. Configuration
//! errors come back as [`TlsIssue`]s, all at once, each with its path inside the `tls:` section.

#![warn(missing_docs)]

mod client;
mod config;
mod identity;
mod load;
mod server;
mod sni;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use client::{client_config, server_name};
pub use config::{CertificateConfig, ClientAuthConfig, ClientAuthMode, ServerTlsConfig, TlsVersion, UpstreamTlsConfig};
pub use identity::{client_cert_info, peer_client_cert};
pub use server::{CertificateSummary, ServerTls, server_config};

/// A problem with a TLS configuration: where (`certificates[1].key`, relative to the `tls:` section) and what.
/// Messages name the file concerned and never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsIssue {
    /// The field path inside the `tls:` section, e.g. `certificates[1].key` or `client_auth.ca`; empty for the
    /// section as a whole.
    pub path: String,
    /// What is wrong, lowercase, naming the file.
    pub message: String,
}

impl TlsIssue {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        TlsIssue { path: path.into(), message: message.into() }
    }
}

/// The crypto provider every configuration is built with: ring, with rustls' default (forward-secret AEAD) suites.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
