//! `Identity`: who the caller is once the `authenticate` phase has run.

use std::sync::Arc;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// A verified JSON Web Token.
    Jwt,
    /// An API key of a known consumer.
    ApiKey,
    /// An opaque token checked by OAuth2 introspection.
    Introspection,
    /// A verified client certificate.
    ClientCertificate,
}

/// The authenticated caller. Rate limiting keys on it; identity headers to upstreams are built from it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How it was established.
    pub source: IdentitySource,
    /// The subject (user id, certificate subject, ...), when there is one.
    pub subject: Option<Arc<str>>,
    /// The consumer (API client) id, when the caller is a known consumer.
    pub consumer: Option<Arc<str>>,
    /// The consumer's or token's plan, used to pick rate limits.
    pub plan: Option<Arc<str>>,
    /// Roles granted to the caller.
    pub roles: Vec<Arc<str>>,
}
