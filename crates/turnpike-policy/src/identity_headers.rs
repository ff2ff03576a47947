//! Identity headers the upstream can trust: set from the verified identity after authentication, and removed from
//! every incoming request first — on every route, authenticated or not, in any letter case and with `_` for `-`
//! (some servers read `X_User_Id` as `X-User-Id`) — so a client can never send them itself.

use http::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_core::{ClientCert, Identity};

use crate::ConfigIssue;

/// Names of the identity headers sent to upstreams.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// The subject (user id, consumer id, or certificate subject).
    pub user_id: String,
    /// Roles, comma separated.
    pub roles: String,
    /// Scopes, space separated.
    pub scopes: String,
    /// The consumer id, when the caller is a known consumer.
    pub consumer_id: String,
    /// The plan (the consumer's, or the token's `plan` claim).
    pub plan: String,
    /// How the caller authenticated (`jwt`, `api_key`, `introspection`, `mtls`).
    pub auth_method: String,
    /// Prefix of the client-certificate headers: `<prefix>-Subject`, `<prefix>-San`, `<prefix>-Fingerprint`.
    pub client_cert_prefix: String,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            user_id: "x-user-id".into(),
            roles: "x-user-roles".into(),
            scopes: "x-user-scopes".into(),
            consumer_id: "x-consumer-id".into(),
            plan: "x-consumer-plan".into(),
            auth_method: "x-auth-method".into(),
            client_cert_prefix: "x-client-cert".into(),
        }
    }
}

/// Compiled identity headers.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    user_id: HeaderName,
    roles: HeaderName,
    scopes: HeaderName,
    consumer_id: HeaderName,
    plan: HeaderName,
    auth_method: HeaderName,
    cert_subject: HeaderName,
    cert_san: HeaderName,
    cert_fingerprint: HeaderName,
    /// Every protected name, lowercase with `-`, plus extra names (claim headers of the auth policies).
    protected: Vec<String>,
    /// The shortest and longest protected names, to reject most headers with one length check.
    lengths: (usize, usize),
    /// Tells these settings apart from other compilations, for the per-identity memo of header values.
    id: u64,
}

/// Ids of compiled [`IdentityHeaders`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl IdentityHeaders {
    /// Compiles `config`; `extra` are further headers only the gateway may set (claim-to-header mappings).
    pub fn compile(config: &IdentityHeadersConfig, extra: &[HeaderName]) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut name = |field: &str, value: String| match HeaderName::from_bytes(value.to_ascii_lowercase().as_bytes())
        {
            Ok(n) => n,
            Err(_) => {
                issues.push(ConfigIssue::new(field, format!("`{value}` is not a header name")));
                HeaderName::from_static("x-invalid")
            }
        };
        let prefix = config.client_cert_prefix.trim_end_matches('-');
        let compiled = Self {
            user_id: name("user_id", config.user_id.clone()),
            roles: name("roles", config.roles.clone()),
            scopes: name("scopes", config.scopes.clone()),
            consumer_id: name("consumer_id", config.consumer_id.clone()),
            plan: name("plan", config.plan.clone()),
            auth_method: name("auth_method", config.auth_method.clone()),
            cert_subject: name("client_cert_prefix", format!("{prefix}-subject")),
            cert_san: name("client_cert_prefix", format!("{prefix}-san")),
            cert_fingerprint: name("client_cert_prefix", format!("{prefix}-fingerprint")),
            protected: Vec::new(),
            lengths: (0, 0),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        let mut protected: Vec<String> = [
            &compiled.user_id,
            &compiled.roles,
            &compiled.scopes,
            &compiled.consumer_id,
            &compiled.plan,
            &compiled.auth_method,
            &compiled.cert_subject,
            &compiled.cert_san,
            &compiled.cert_fingerprint,
        ]
        .into_iter()
        .chain(extra)
        .map(|n| n.as_str().replace('_', "-"))
        .collect();
        protected.sort();
        protected.dedup();
        let lengths = (
            protected.iter().map(String::len).min().unwrap_or(0),
            protected.iter().map(String::len).max().unwrap_or(0),
        );
        Ok(Self { protected, lengths, ..compiled })
    }

    /// Removes every protected header from an incoming request, whatever its case or `_`/`-` spelling.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers.keys().filter(|name| self.is_protected(name)).cloned().collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    fn is_protected(&self, name: &HeaderName) -> bool {
        let bytes = name.as_str().as_bytes();
        if bytes.len() < self.lengths.0 || bytes.len() > self.lengths.1 {
            return false;
        }
        self.protected.iter().any(|p| {
            p.len() == bytes.len() && p.bytes().zip(bytes).all(|(a, &b)| a == if b == b'_' { b'-' } else { b })
        })
    }

    /// Sets the client-certificate headers (subject, SANs, SHA-256 fingerprint) of a certificate the listener
    /// verified.
    pub fn set_client_cert(&self, cert: &ClientCert, headers: &mut HeaderMap) {
        for (name, value) in [
            (&self.cert_subject, cert.subject.as_str()),
            (&self.cert_san, &cert.sans.join(",")),
            (&self.cert_fingerprint, &cert.fingerprint_sha256),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        }
    }

    /// Sets the identity headers for the upstream (after [`strip`](Self::strip)). Their values are computed once
    /// per identity and these settings: a cached identity (a returning token, a consumer's key) costs only the
    /// inserts.
    pub fn set(&self, identity: &Identity, headers: &mut HeaderMap) {
        let list = identity.upstream_headers.get_or_init(self.id, || self.compute(identity));
        // One growth of the map for all of them, not one rehash per insert that crosses the load factor.
        headers.reserve(list.len());
        for (name, value) in list.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }

    fn compute(&self, identity: &Identity) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(8);
        let mut put = |name: &HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                out.push((name.clone(), v));
            }
        };
        put(&self.auth_method, identity.source.as_str());
        if let Some(subject) = &identity.subject {
            put(&self.user_id, subject);
        }
        if !identity.roles.is_empty() {
            put(&self.roles, &identity.roles.iter().map(|r| &**r).collect::<Vec<_>>().join(","));
        }
        if !identity.scopes.is_empty() {
            put(&self.scopes, &identity.scopes.iter().map(|r| &**r).collect::<Vec<_>>().join(" "));
        }
        if let Some(consumer) = &identity.consumer {
            put(&self.consumer_id, &consumer.id);
        }
        if let Some(plan) = &identity.plan {
            put(&self.plan, plan);
        }
        if let Some(cert) = &identity.client_cert {
            put(&self.cert_subject, &cert.subject);
            put(&self.cert_san, &cert.sans.join(","));
            put(&self.cert_fingerprint, &cert.fingerprint_sha256);
        }
        out.extend(identity.headers.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use turnpike_core::IdentitySource;

    #[test]
    fn strips_spoofed_identity_headers_in_every_spelling() {
        let ih =
            IdentityHeaders::compile(&IdentityHeadersConfig::default(), &[HeaderName::from_static("x-user-email")])
                .unwrap();
        let mut h = HeaderMap::new();
        for name in ["x-user-id", "X-USER-ROLES", "x_user_id", "X_Consumer_Id", "x-user-email", "x-client-cert-subject"]
        {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("admin"));
        }
        h.insert("x-user-idx", HeaderValue::from_static("kept"));
        h.insert("content-type", HeaderValue::from_static("kept"));
        ih.strip(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"x-user-idx") && left.contains(&"content-type"));
    }

    #[test]
    fn sets_headers_from_the_verified_identity() {
        let ih = IdentityHeaders::compile(&IdentityHeadersConfig::default(), &[]).unwrap();
        let mut id = Identity::new(IdentitySource::Jwt, Some(Arc::from("u-1")));
        id.roles = vec![Arc::from("admin"), Arc::from("ops")];
        let mut h = HeaderMap::new();
        ih.set(&id, &mut h);
        assert_eq!(h["x-user-id"], "u-1");
        assert_eq!(h["x-user-roles"], "admin,ops");
        assert_eq!(h["x-auth-method"], "jwt");
        assert!(h.get("x-consumer-id").is_none());
    }
}
