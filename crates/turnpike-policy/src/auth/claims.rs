//! From a token's claims (a JWT payload, an introspection answer) to an [`Identity`]: which claims name the
//! subject, roles, plan and scopes, and which claims are sent upstream in headers.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use turnpike_core::{Identity, IdentitySource};

use crate::ConfigIssue;

/// Which claims make up the identity. Claim names may be dotted paths into nested objects
/// (`realm_access.roles`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// The claim holding the user id (`X-User-Id`).
    pub subject: String,
    /// The claim holding roles: an array of strings, or one space-separated string.
    pub roles: String,
    /// The claim holding the plan that picks rate limits.
    pub plan: String,
    /// Claims sent to the upstream as headers: claim name to header name (`email: x-user-email`). Arrays are
    /// joined with `, `; values that cannot be a header value are left out. Clients can never send these headers
    /// themselves: they are removed from every incoming request.
    pub headers: BTreeMap<String, String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self { subject: "sub".into(), roles: "roles".into(), plan: "plan".into(), headers: BTreeMap::new() }
    }
}

/// Compiled [`ClaimsConfig`].
#[derive(Debug, Clone)]
pub struct ClaimsMapping {
    subject: Vec<String>,
    roles: Vec<String>,
    plan: Vec<String>,
    headers: Vec<(Vec<String>, HeaderName)>,
}

impl ClaimsMapping {
    /// Compiles `config`; issue paths are relative to it (`headers.email`).
    pub fn compile(config: &ClaimsConfig) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut headers = Vec::new();
        for (claim, header) in &config.headers {
            match HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()) {
                Ok(name) => headers.push((split(claim), name)),
                Err(_) => issues
                    .push(ConfigIssue::new(format!("headers.{claim}"), format!("`{header}` is not a header name"))),
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self { subject: split(&config.subject), roles: split(&config.roles), plan: split(&config.plan), headers })
    }

    /// The headers this mapping may set (to be stripped from every client request).
    pub fn header_names(&self) -> impl Iterator<Item = &HeaderName> {
        self.headers.iter().map(|(_, name)| name)
    }

    /// Builds the identity for `claims`.
    pub fn identity(&self, source: IdentitySource, claims: Map<String, Value>) -> Identity {
        let mut identity = Identity::new(source, lookup(&claims, &self.subject).and_then(scalar_text).map(Arc::from));
        identity.roles = strings(lookup(&claims, &self.roles));
        identity.plan = lookup(&claims, &self.plan).and_then(scalar_text).map(Arc::from);
        identity.scopes = match claims.get("scope") {
            Some(scope) => strings(Some(scope)),
            None => strings(claims.get("scp")),
        };
        for (path, name) in &self.headers {
            if let Some(value) = lookup(&claims, path).and_then(header_value) {
                identity.headers.push((name.clone(), value));
            }
        }
        identity.claims = Some(Arc::new(claims));
        identity
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

/// The value at a dotted path; a top-level claim whose name contains dots is found too.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    if let Some(v) = claims.get(&path.join(".")) {
        return Some(v);
    }
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An array of strings, or one space-separated string.
fn strings(v: Option<&Value>) -> Vec<Arc<str>> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(Arc::from).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(Arc::from).collect(),
        _ => Vec::new(),
    }
}

fn header_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => serde_json::to_string(v).ok()?,
        other => scalar_text(other)?,
    };
    // HeaderValue refuses CR, LF and other controls, so a claim cannot inject a header.
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_identity_from_standard_and_nested_claims() {
        let mut config = ClaimsConfig { roles: "realm_access.roles".into(), ..ClaimsConfig::default() };
        config.headers.insert("email".into(), "X-User-Email".into());
        let mapping = ClaimsMapping::compile(&config).unwrap();
        let claims = serde_json::json!({
            "sub": "u-1", "plan": "pro", "scope": "orders:read orders:write", "email": "a@example.com",
            "realm_access": {"roles": ["admin", "ops"]}
        });
        let id = mapping.identity(IdentitySource::Jwt, claims.as_object().unwrap().clone());
        assert_eq!(id.subject.as_deref(), Some("u-1"));
        assert_eq!(id.plan.as_deref(), Some("pro"));
        assert!(id.has_role("ops") && id.has_scope("orders:write"));
        assert_eq!(id.headers, [(HeaderName::from_static("x-user-email"), HeaderValue::from_static("a@example.com"))]);
    }

    #[test]
    fn scp_arrays_and_unsafe_header_values() {
        let mut config = ClaimsConfig::default();
        config.headers.insert("name".into(), "x-user-name".into());
        let mapping = ClaimsMapping::compile(&config).unwrap();
        let claims = serde_json::json!({"sub": 42, "scp": ["a", "b"], "name": "evil\r\nx-injected: 1"});
        let id = mapping.identity(IdentitySource::Jwt, claims.as_object().unwrap().clone());
        assert_eq!(id.subject.as_deref(), Some("42"));
        assert!(id.has_scope("b"));
        assert!(id.headers.is_empty(), "a claim with CR/LF never becomes a header");
    }
}
