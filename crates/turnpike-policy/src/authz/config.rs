//! The user-facing configuration of the `authorize` phase: a route's `authorize:` block.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::Duration;

/// Who may use a route: roles, scopes, claim rules and an optional external decision (OPA). Every requirement
/// given must hold. Without an identity (the request did not authenticate) a failed requirement answers 401;
/// with one, 403. See the authorization section of the docs for the rule language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizeConfig {
    /// The caller needs at least one of these roles. Empty: no role is needed.
    pub roles: Vec<String>,
    /// The caller needs all of these OAuth2 scopes (from the token's space-separated `scope` claim or its `scp`
    /// array). Empty: no scope is needed.
    pub scopes: Vec<String>,
    /// Rules that must all hold, e.g. `claims.tenant == header.x-tenant` or
    /// `claims.plan in [gold, silver] && !(identity.roles contains "banned")`.
    pub rules: Vec<String>,
    /// An external decision from Open Policy Agent, asked only when roles, scopes and rules pass.
    pub opa: Option<OpaConfig>,
    /// Requirements for particular methods (upper case: `POST`, `DELETE`). For a listed method they replace the
    /// route-level `roles`, `scopes`, `rules` and `opa` entirely; other methods use the route-level ones. `GET`
    /// does not cover `HEAD`: list both when they differ from the route level.
    pub methods: BTreeMap<String, MethodAuthorizeConfig>,
}

/// The requirements for one method; they replace the route-level ones for that method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MethodAuthorizeConfig {
    /// The caller needs at least one of these roles. Empty: no role is needed.
    pub roles: Vec<String>,
    /// The caller needs all of these OAuth2 scopes. Empty: no scope is needed.
    pub scopes: Vec<String>,
    /// Rules that must all hold.
    pub rules: Vec<String>,
    /// An external decision from Open Policy Agent, asked only when roles, scopes and rules pass.
    pub opa: Option<OpaConfig>,
}

/// Ask Open Policy Agent for a decision through its Data API (`POST <url>` with `{"input": ...}`). The answer
/// `{"result": true}` or `{"result": {"allow": true}}` allows; `false` or an undefined decision (no `result`)
/// denies. If OPA cannot be asked in time or answers something else, the request is refused with 503: never a
/// pass. Decisions, allow and deny alike, are cached for `cache_ttl`, keyed by a hash of the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpaConfig {
    /// The decision's Data API URL, `http(s)://host[:port]/v1/data/<package path>/<rule>`, e.g.
    /// `http://127.0.0.1:8181/v1/data/turnpike/allow`.
    pub url: String,
    /// How long to wait for a decision (connect, send, answer) before refusing the request with 503.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// How long a decision is reused for the same input. `0s` asks OPA for every request.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: Duration,
    /// Request headers sent to OPA in `input.headers` (names, any case). Only these are sent; `authorization`,
    /// `cookie` and `proxy-authorization` never are. Every header sent is part of the cache key, so a header
    /// that changes with every request (a request id) defeats the cache.
    #[serde(default)]
    pub include_headers: Vec<String>,
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(5)
}
