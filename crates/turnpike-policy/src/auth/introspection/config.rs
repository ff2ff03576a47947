//! The user-facing configuration of OAuth2 token introspection (RFC 7662).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::Duration;

use crate::auth::api_key::Secret;
use crate::auth::claims::ClaimsConfig;
use crate::auth::token::TokenSourceConfig;

/// Opaque tokens checked by asking the identity provider's introspection endpoint (RFC 7662). Active tokens are
/// cached for a short while; when the endpoint does not answer in time, requests are refused (503), never let in.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint (`https://idp.example.com/oauth2/introspect`).
    pub url: String,
    /// The gateway's client id at the identity provider.
    pub client_id: String,
    /// The gateway's client secret: write it as `${env:NAME}` or `${file:PATH}`. It is never logged or shown.
    pub client_secret: Secret,
    /// How the client credentials are sent.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// How long to wait for the endpoint before refusing the request (503).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Where the token is read from. Default: `Authorization: Bearer <token>`.
    #[serde(default)]
    pub from: Vec<TokenSourceConfig>,
    /// The `token_type_hint` sent with each request; `null` to send none.
    #[serde(default = "default_hint")]
    pub token_type_hint: Option<String>,
    /// The cache of active tokens.
    #[serde(default)]
    pub cache: IntrospectionCacheConfig,
    /// Which fields of the introspection response make up the identity.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Forward the token to the upstream. Default: it is removed.
    #[serde(default)]
    pub forward_token: bool,
    /// A PEM file of CA certificates to verify the endpoint with, instead of the system's roots (relative to the
    /// config file's directory).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_hint() -> Option<String> {
    Some("access_token".into())
}

/// How the gateway authenticates to the introspection endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic authentication with the client id and secret.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// The cache of introspection results. Only active tokens are cached, each until the earlier of its `exp` and
/// `max_ttl`: a revoked token is accepted for at most `max_ttl`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IntrospectionCacheConfig {
    /// The most tokens kept; the oldest go first. `0` turns the cache off.
    pub max_entries: usize,
    /// The longest a result is reused. `0s` turns the cache off.
    pub max_ttl: Duration,
}

impl Default for IntrospectionCacheConfig {
    fn default() -> Self {
        Self { max_entries: 10_000, max_ttl: Duration::from_secs(60) }
    }
}
