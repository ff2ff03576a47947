//! The `authorize` phase: may this caller do this? Roles, scopes and claim rules are checked locally; an external
//! decision from Open Policy Agent is asked only when they pass. Without an identity a refusal is a 401 (the
//! gateway adds `WWW-Authenticate`), with one a 403; an OPA that cannot answer is a 503, never a pass.
//!
//! - [`config`]: the route's `authorize:` block.
//! - [`expr`]: the rule language (`claims.tenant == header.x-tenant`).
//! - [`opa`]: the OPA Data API client, its input document and its decision cache.

pub mod config;
pub mod expr;
pub mod opa;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use turnpike_core::{Identity, Registry};

pub use config::{AuthorizeConfig, MethodAuthorizeConfig, OpaConfig};
pub use expr::{Rule, RuleError, parse_rule};
pub use opa::OpaState;

use crate::ConfigIssue;
use opa::Opa;

/// The OPA decision caches, by route id and URL: they survive reloads while a snapshot uses them.
pub type OpaStates = Registry<String, OpaState>;

/// What the `authorize` phase sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthzInput<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The request target (rules read its path and query; OPA gets both).
    pub uri: &'a http::Uri,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// Who the caller is, if the `authenticate` phase established it.
    pub identity: Option<&'a Identity>,
    /// The client's address (after trusted proxies).
    pub client_ip: IpAddr,
    /// The route id.
    pub route: &'a str,
}

/// Why a request is not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzFailure {
    /// A requirement failed and there is no identity: the gateway answers 401 with `WWW-Authenticate`.
    Unauthenticated,
    /// A requirement failed for an authenticated caller: 403. The reason is for debug logs only.
    Forbidden(&'static str),
    /// The policy engine could not decide (down, too slow, a broken answer): 503, fail closed.
    Unavailable,
}

/// A route's compiled authorization: route-level requirements and per-method replacements.
#[derive(Debug)]
pub struct Authorizer {
    base: Requirements,
    methods: Vec<(http::Method, Requirements)>,
}

/// One set of requirements; all must hold.
#[derive(Debug)]
struct Requirements {
    /// At least one of these.
    roles: Vec<Box<str>>,
    /// All of these.
    scopes: Vec<Box<str>>,
    /// All of these, with their text for debug logs.
    rules: Vec<(Box<str>, Rule)>,
    opa: Option<Opa>,
}

/// The fields [`AuthorizeConfig`] and [`MethodAuthorizeConfig`] share.
struct Spec<'c> {
    roles: &'c [String],
    scopes: &'c [String],
    rules: &'c [String],
    opa: Option<&'c OpaConfig>,
}

impl Requirements {
    fn compile(key: &str, prefix: &str, spec: Spec<'_>, states: &OpaStates, issues: &mut Vec<ConfigIssue>) -> Self {
        let Spec { roles, scopes, rules, opa } = spec;
        for (i, role) in roles.iter().enumerate() {
            if role.trim().is_empty() {
                issues.push(ConfigIssue::new(format!("{prefix}roles[{i}]"), "a role name cannot be empty"));
            }
        }
        for (i, scope) in scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                issues.push(ConfigIssue::new(
                    format!("{prefix}scopes[{i}]"),
                    "a scope is one non-empty word: list each scope separately",
                ));
            }
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, text) in rules.iter().enumerate() {
            match parse_rule(text) {
                Ok(rule) => compiled.push((text.as_str().into(), rule)),
                Err(e) => issues.push(ConfigIssue::new(format!("{prefix}rules[{i}]"), e.to_string())),
            }
        }
        let opa = opa.and_then(|c| Opa::compile(key, &format!("{prefix}opa"), c, states, issues));
        Requirements {
            roles: roles.iter().map(|r| r.as_str().into()).collect(),
            scopes: scopes.iter().map(|s| s.as_str().into()).collect(),
            rules: compiled,
            opa,
        }
    }

    async fn check(&self, input: &AuthzInput<'_>) -> Result<(), AuthzFailure> {
        // Without an identity, authenticating might change the answer: 401, not 403.
        let refuse = |reason| match input.identity {
            None => AuthzFailure::Unauthenticated,
            Some(_) => AuthzFailure::Forbidden(reason),
        };
        if !self.roles.is_empty() && !input.identity.is_some_and(|id| self.roles.iter().any(|r| id.has_role(r))) {
            return Err(refuse("missing role"));
        }
        if !self.scopes.is_empty() && !input.identity.is_some_and(|id| self.scopes.iter().all(|s| id.has_scope(s))) {
            return Err(refuse("missing scope"));
        }
        for (text, rule) in &self.rules {
            if !rule.evaluate(input) {
                tracing::debug!(route = input.route, rule = &**text, "authorization rule does not hold");
                return Err(refuse("rule does not hold"));
            }
        }
        if let Some(opa) = &self.opa {
            match opa.decide(input).await {
                Ok(true) => {}
                Ok(false) => return Err(refuse("denied by opa")),
                Err(e) => {
                    tracing::warn!(route = input.route, url = %opa.url, error = %e, "no decision from opa: refused");
                    return Err(AuthzFailure::Unavailable);
                }
            }
        }
        Ok(())
    }
}

impl Authorizer {
    /// Compiles a route's `authorize:` block. `key` (the route id) keys the OPA decision cache in `opa`, so a
    /// reload keeps it. Issue paths are relative to the block (`rules[1]`, `methods.POST.roles[0]`). No network.
    pub fn compile(key: &str, config: &AuthorizeConfig, opa: &OpaStates) -> Result<Authorizer, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let c = config;
        let spec = Spec { roles: &c.roles, scopes: &c.scopes, rules: &c.rules, opa: c.opa.as_ref() };
        let base = Requirements::compile(key, "", spec, opa, &mut issues);
        let mut methods = Vec::with_capacity(config.methods.len());
        for (name, m) in &config.methods {
            let prefix = format!("methods.{name}.");
            let spec = Spec { roles: &m.roles, scopes: &m.scopes, rules: &m.rules, opa: m.opa.as_ref() };
            let requirements = Requirements::compile(key, &prefix, spec, opa, &mut issues);
            match http::Method::from_bytes(name.as_bytes()) {
                Ok(_) if name.bytes().any(|b| b.is_ascii_lowercase()) => issues.push(ConfigIssue::new(
                    format!("methods.{name}"),
                    format!("method names are case-sensitive and upper case: `{}`", name.to_ascii_uppercase()),
                )),
                Ok(method) => methods.push((method, requirements)),
                Err(_) => issues.push(ConfigIssue::new(format!("methods.{name}"), format!("`{name}` is not a method"))),
            }
        }
        if issues.is_empty() { Ok(Authorizer { base, methods }) } else { Err(issues) }
    }

    /// Checks the requirements for the request's method: roles, scopes and rules first (local and cheap), then
    /// OPA only if they pass.
    pub async fn authorize(&self, input: &AuthzInput<'_>) -> Result<(), AuthzFailure> {
        let requirements =
            self.methods.iter().find(|(m, _)| m == input.method).map_or(&self.base, |(_, requirements)| requirements);
        requirements.check(input).await
    }
}
