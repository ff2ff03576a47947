//! Turnpike's policies: one module per policy, each with its user-facing config types (`config.rs`), the compiled
//! policy and its phase method, and its runtime state kept outside snapshots.
//!
//! - [`auth`]: the `authenticate` phase: JWT (static keys, JWKS, OIDC discovery), API keys of consumers, OAuth2
//!   token introspection, client certificates.
//! - [`authz`]: the `authorize` phase: roles, scopes, claim rules, external decisions through OPA.
//! - edge guards for the `admit` phase: [`ip_filter`], [`cors`], [`validate`] (JSON Schema of request bodies).
//! - [`identity_headers`]: identity headers upstreams can trust (stripped from clients, set from the identity).
//! - [`headers`]: security headers on responses.
//! - [`fetch`]: the small HTTP(S) client policies use to reach identity providers and policy engines.

pub mod auth;
pub mod authz;
pub mod cors;
pub mod fetch;
pub mod headers;
pub mod identity_headers;
pub mod ip_filter;
pub mod rate_limit;
pub mod validate;

/// A secret in the configuration (an HMAC secret, a plaintext API key, a client secret), never shown: `Debug`
/// prints `<redacted>`, serializing writes `<redacted>`, and there is no `Display`, so it cannot reach a log line,
/// an error message or a config dump. Write it as `${env:NAME}` or `${file:PATH}` rather than literally.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it (hashing it, signing with it, sending it to the
    /// identity provider).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// A configuration problem found while compiling a policy: `path` is relative to the policy's own config
/// (`jwks_url`, `keys[1].pem`), the gateway prefixes it with where the policy sits in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The field, relative to the policy's config; empty for the policy as a whole.
    pub path: String,
    /// What is wrong, lowercase, without secrets.
    pub message: String,
}

impl ConfigIssue {
    /// An issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}
