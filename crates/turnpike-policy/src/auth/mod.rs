//! The `authenticate` phase: who is calling. One module per method; this module holds what they share.
//!
//! A method first says whether the request *presents* its credential ([`Presented`], cheap and synchronous), then
//! verifies it. The gateway tries a route's methods in order: the first whose credential is present decides; a
//! malformed or conflicting credential is refused, never passed over to a weaker method.

pub mod api_key;
mod chain;
pub mod claims;
pub mod introspection;
pub mod jwt;
pub mod mtls;
pub mod token;

use std::sync::Arc;

pub use chain::{AuthChain, AuthError, AuthPolicy, Authenticated, Method, Require};

use turnpike_core::ClientCert;

/// What an authentication method sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The request target (query parameters may carry credentials).
    pub uri: &'a http::Uri,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The client certificate the listener verified, if any.
    pub client_cert: Option<&'a Arc<ClientCert>>,
}

/// Whether a request carries a method's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented<T> {
    /// No credential for this method: the next method may apply.
    Absent,
    /// One credential.
    Present(T),
    /// A credential is there but unusable: unparseable, oversized, or given twice with different values. The
    /// request is refused (401); the reason goes to the debug log only.
    Malformed(&'static str),
}

/// Why a presented credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// It does not verify (bad signature, expired, unknown key, revoked, ...): 401. The reason is for the debug log,
    /// never for the client.
    Invalid(&'static str),
    /// The service needed to check it (key source, introspection endpoint) does not answer and nothing cached can
    /// stand in: 503, never a pass. The value names the service (`jwks`, `introspection`).
    Unavailable(&'static str),
}
