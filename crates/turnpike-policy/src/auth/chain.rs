//! A route's authentication: its ordered list of policies, how they combine, and whether anonymous callers are let
//! in.
//!
//! - `require: any` (the default): the first policy, in the route's order, whose credential the request presents
//!   decides. A credential that is there but unusable (malformed, given twice with different values) is refused,
//!   and so is a request presenting two *different* credentials (a bearer token and an API key): it is never
//!   passed over to the next, possibly weaker, method. The same token read by two policies (JWT, then
//!   introspection, both from `Authorization`) is not a conflict: the first decides.
//! - `require: all`: every policy must verify (an API key for the application, a JWT for its user); the identities
//!   are merged, the first policy's subject first.
//! - Without a credential, the request is refused (401) unless the route says `anonymous: true`; a presented
//!   credential is verified even then, so a bad token never passes as anonymous.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;
use turnpike_core::{ClientCert, Identity};

use super::api_key::{ApiKeyAuth, PresentedKey};
use super::introspection::IntrospectionAuth;
use super::jwt::JwtAuth;
use super::mtls::MtlsAuth;
use super::token::FoundToken;
use super::{AuthFailure, AuthInput, Presented};

/// One authentication method, compiled.
#[derive(Debug)]
pub enum Method {
    /// JSON Web Tokens.
    Jwt(JwtAuth),
    /// API keys of consumers.
    ApiKey(ApiKeyAuth),
    /// OAuth2 token introspection.
    Introspection(IntrospectionAuth),
    /// Client certificates.
    Mtls(MtlsAuth),
}

impl Method {
    fn presented(&self, input: &AuthInput<'_>) -> Presented<Credential> {
        fn map<T>(p: Presented<T>, f: impl FnOnce(T) -> Credential) -> Presented<Credential> {
            match p {
                Presented::Absent => Presented::Absent,
                Presented::Present(v) => Presented::Present(f(v)),
                Presented::Malformed(why) => Presented::Malformed(why),
            }
        }
        match self {
            Method::Jwt(m) => map(m.presented(input), Credential::Token),
            Method::ApiKey(m) => map(m.presented(input), Credential::Key),
            Method::Introspection(m) => map(m.presented(input), Credential::Token),
            Method::Mtls(m) => map(m.presented(input), Credential::Cert),
        }
    }

    async fn verify(&self, credential: &Credential) -> Result<Arc<Identity>, AuthFailure> {
        match (self, credential) {
            (Method::Jwt(m), Credential::Token(t)) => m.verify(t).await,
            (Method::Introspection(m), Credential::Token(t)) => m.verify(t).await,
            (Method::ApiKey(m), Credential::Key(k)) => m.verify(k),
            (Method::Mtls(m), Credential::Cert(c)) => m.verify(c),
            _ => Err(AuthFailure::Invalid("credential of another method")),
        }
    }

    fn strip(&self, credential: &Credential, parts: &mut http::request::Parts) {
        match (self, credential) {
            (Method::Jwt(m), Credential::Token(t)) => m.strip(t, parts),
            (Method::Introspection(m), Credential::Token(t)) => m.strip(t, parts),
            (Method::ApiKey(m), Credential::Key(k)) => m.strip(k, parts),
            _ => {}
        }
    }

    /// The `WWW-Authenticate` scheme.
    pub fn challenge(&self) -> &'static str {
        match self {
            Method::Jwt(m) => m.challenge(),
            Method::ApiKey(m) => m.challenge(),
            Method::Introspection(m) => m.challenge(),
            Method::Mtls(m) => m.challenge(),
        }
    }

    /// Headers this method's identities may set (claim mappings): only the gateway may send them upstream.
    pub fn header_names(&self) -> Vec<http::HeaderName> {
        match self {
            Method::Jwt(m) => m.header_names(),
            Method::Introspection(m) => m.header_names(),
            Method::ApiKey(_) | Method::Mtls(_) => Vec::new(),
        }
    }
}

/// A named authentication policy (`auth_policies.<id>`), shared by the routes that list it.
#[derive(Debug)]
pub struct AuthPolicy {
    /// Its id.
    pub id: Arc<str>,
    /// Its method.
    pub method: Method,
}

/// A credential found in a request.
#[derive(Debug, Clone)]
enum Credential {
    Token(FoundToken),
    Key(PresentedKey),
    Cert(Arc<ClientCert>),
}

impl Credential {
    /// Whether two credentials (of different policies) say different things: a conflict in `any` mode.
    fn conflicts_with(&self, other: &Credential) -> bool {
        match (self, other) {
            // The connection's certificate is not a request credential: it conflicts with nothing.
            (Credential::Cert(_), _) | (_, Credential::Cert(_)) => false,
            (Credential::Token(a), Credential::Token(b)) => a.token != b.token,
            (Credential::Key(a), Credential::Key(b)) => a != b,
            (Credential::Token(_), Credential::Key(_)) | (Credential::Key(_), Credential::Token(_)) => true,
        }
    }
}

/// How a route's policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// The first policy whose credential is presented decides.
    Any,
    /// Every policy must verify.
    All,
}

/// Why authentication refused a request. The reasons are for debug logs; clients get a bare 401 or 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, and the route is not anonymous.
    Missing,
    /// A credential is there but unusable.
    Malformed(&'static str),
    /// Two different credentials.
    Conflict,
    /// The credential does not verify.
    Invalid(&'static str),
    /// The service that checks it is unavailable (`jwks`, `introspection`).
    Unavailable(&'static str),
}

impl From<AuthFailure> for AuthError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Invalid(why) => AuthError::Invalid(why),
            AuthFailure::Unavailable(service) => AuthError::Unavailable(service),
        }
    }
}

/// A request that passed authentication: its identity (none for an anonymous caller) and the credentials to
/// remove before forwarding.
#[derive(Debug, Default)]
pub struct Authenticated {
    /// The caller; `None` when the route let an anonymous caller in.
    pub identity: Option<Arc<Identity>>,
    used: Vec<(usize, Credential)>,
}

/// A route's compiled `auth`.
#[derive(Debug)]
pub struct AuthChain {
    policies: Vec<Arc<AuthPolicy>>,
    require: Require,
    anonymous: bool,
    challenge: HeaderValue,
    invalid_challenge: HeaderValue,
    /// `require: all`: merged identities by the identities they were merged from (a returning token and key give
    /// the same shared identities, so their merge is reused, memoized upstream headers included).
    merged: Mutex<HashMap<MergeKey, Merged>>,
}

/// The addresses of the identities merged, in policy order (unused slots 0).
type MergeKey = [usize; MAX_MERGED];
/// The most policies whose merge is memoized.
const MAX_MERGED: usize = 4;
/// The most merged identities kept per route; the memo starts over when full.
const MAX_MERGE_MEMO: usize = 4096;

#[derive(Debug)]
struct Merged {
    /// The identities merged: held so their addresses cannot be reused while the entry lives.
    _from: Vec<Arc<Identity>>,
    identity: Arc<Identity>,
}

impl AuthChain {
    /// A chain over `policies` (in order); at least one policy unless `anonymous`.
    pub fn new(policies: Vec<Arc<AuthPolicy>>, require: Require, anonymous: bool) -> Self {
        let mut schemes: Vec<&'static str> = Vec::new();
        for p in &policies {
            let scheme = p.method.challenge();
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        let header = |invalid: bool| {
            let text = schemes
                .iter()
                .map(|&s| match s {
                    // RFC 6750 3.1: a bearer token that was presented but does not verify.
                    "Bearer" if invalid => "Bearer realm=\"turnpike\", error=\"invalid_token\"".to_string(),
                    s => format!("{s} realm=\"turnpike\""),
                })
                .collect::<Vec<_>>()
                .join(", ");
            HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer realm=\"turnpike\""))
        };
        Self {
            policies,
            require,
            anonymous,
            challenge: header(false),
            invalid_challenge: header(true),
            merged: Mutex::new(HashMap::new()),
        }
    }

    /// The `WWW-Authenticate` value of a 401: every scheme the route accepts.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// The `WWW-Authenticate` value of a 401 for a credential that was presented and refused.
    pub fn invalid_challenge(&self) -> &HeaderValue {
        &self.invalid_challenge
    }

    /// Whether anonymous callers are let in.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// A one-line description: the policy ids joined by `|` (any of) or `+` (all of), `?` at the end when
    /// anonymous callers are let in too.
    pub fn summary(&self) -> String {
        let sep = match self.require {
            Require::Any => "|",
            Require::All => "+",
        };
        let ids: Vec<&str> = self.policies.iter().map(|p| &*p.id).collect();
        format!("{}{}", ids.join(sep), if self.anonymous { "?" } else { "" })
    }

    /// The route's policies, in order.
    pub fn policies(&self) -> &[Arc<AuthPolicy>] {
        &self.policies
    }

    /// Authenticates a request.
    pub async fn authenticate(&self, input: &AuthInput<'_>) -> Result<Authenticated, AuthError> {
        let mut present: Vec<(usize, Credential)> = Vec::new();
        for (i, policy) in self.policies.iter().enumerate() {
            match policy.method.presented(input) {
                Presented::Absent => {}
                Presented::Present(credential) => present.push((i, credential)),
                Presented::Malformed(why) => return Err(AuthError::Malformed(why)),
            }
        }
        match self.require {
            Require::Any => {
                let Some((first, credential)) = present.first() else {
                    return if self.anonymous { Ok(Authenticated::default()) } else { Err(AuthError::Missing) };
                };
                if present[1..].iter().any(|(_, other)| credential.conflicts_with(other)) {
                    return Err(AuthError::Conflict);
                }
                let identity = self.policies[*first].method.verify(credential).await?;
                Ok(Authenticated { identity: Some(identity), used: present })
            }
            Require::All => {
                if present.is_empty() && self.anonymous {
                    return Ok(Authenticated::default());
                }
                if present.len() < self.policies.len() {
                    return Err(AuthError::Missing);
                }
                let mut identities = Vec::with_capacity(present.len());
                for (i, credential) in &present {
                    identities.push(self.policies[*i].method.verify(credential).await?);
                }
                Ok(Authenticated { identity: Some(self.merge_all(identities)), used: present })
            }
        }
    }

    /// One identity from several, memoized by the identities' addresses.
    fn merge_all(&self, identities: Vec<Arc<Identity>>) -> Arc<Identity> {
        if let [only] = identities.as_slice() {
            return only.clone();
        }
        let key = (identities.len() <= MAX_MERGED).then(|| {
            let mut key = [0usize; MAX_MERGED];
            for (slot, id) in key.iter_mut().zip(&identities) {
                *slot = Arc::as_ptr(id) as usize;
            }
            key
        });
        let lock = || self.merged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = &key
            && let Some(found) = lock().get(key)
        {
            return found.identity.clone();
        }
        let mut merged = (*identities[0]).clone();
        for other in &identities[1..] {
            merged = merge(merged, other);
        }
        let merged = Arc::new(merged);
        if let Some(key) = key {
            let mut memo = lock();
            if memo.len() >= MAX_MERGE_MEMO {
                memo.clear();
            }
            memo.insert(key, Merged { _from: identities, identity: merged.clone() });
        }
        merged
    }

    /// Removes the credentials of an authenticated request before it is forwarded (each policy's
    /// `forward_token` / `forward_key` decides for its own).
    pub fn strip(&self, authenticated: &Authenticated, parts: &mut http::request::Parts) {
        for (i, credential) in &authenticated.used {
            self.policies[*i].method.strip(credential, parts);
        }
    }
}

/// `base` completed by `other`: what `base` lacks is taken from `other`; roles and scopes are united.
fn merge(mut base: Identity, other: &Identity) -> Identity {
    if base.subject.is_none() {
        base.subject = other.subject.clone();
    }
    if base.consumer.is_none() {
        base.consumer = other.consumer.clone();
    }
    if base.plan.is_none() {
        base.plan = other.plan.clone();
    }
    for role in &other.roles {
        if !base.has_role(role) {
            base.roles.push(role.clone());
        }
    }
    for scope in &other.scopes {
        if !base.has_scope(scope) {
            base.scopes.push(scope.clone());
        }
    }
    if base.claims.is_none() {
        base.claims = other.claims.clone();
    }
    if base.client_cert.is_none() {
        base.client_cert = other.client_cert.clone();
    }
    for (name, value) in &other.headers {
        if !base.headers.iter().any(|(n, _)| n == name) {
            base.headers.push((name.clone(), value.clone()));
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::auth::api_key::{ApiKeyConfig, ConsumerConfig, ConsumerSet, KeyConfig, Secret};
    use crate::auth::mtls::MtlsConfig;

    fn consumers() -> Arc<ConsumerSet> {
        let consumer = |id: &str, key: &str| ConsumerConfig {
            id: id.into(),
            name: None,
            plan: Some("gold".into()),
            roles: vec!["reader".into()],
            metadata: BTreeMap::new(),
            keys: vec![KeyConfig { sha256: None, key: Some(Secret::new(key)) }],
        };
        let (set, issues) =
            ConsumerSet::compile(&[consumer("acme", "key-acme-0001"), consumer("beta", "key-beta-0001")], &[]);
        assert!(issues.is_empty(), "{issues:?}");
        Arc::new(set)
    }

    fn key_policy(id: &str, header: &str) -> Arc<AuthPolicy> {
        let config = ApiKeyConfig { header: header.into(), ..ApiKeyConfig::default() };
        let method = Method::ApiKey(ApiKeyAuth::compile(&config, &consumers()).unwrap());
        Arc::new(AuthPolicy { id: id.into(), method })
    }

    fn mtls_policy() -> Arc<AuthPolicy> {
        Arc::new(AuthPolicy {
            id: "certs".into(),
            method: Method::Mtls(MtlsAuth::compile(&MtlsConfig::default()).unwrap()),
        })
    }

    fn cert() -> Arc<ClientCert> {
        Arc::new(ClientCert {
            subject: "CN=svc-a".into(),
            sans: vec!["DNS:svc-a.internal".into()],
            fingerprint_sha256: "ab".repeat(32),
        })
    }

    async fn run(
        chain: &AuthChain,
        headers: &[(&str, &str)],
        cert: Option<&Arc<ClientCert>>,
    ) -> Result<Authenticated, AuthError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let uri: http::Uri = "/x".parse().unwrap();
        let input = AuthInput { method: &http::Method::GET, uri: &uri, headers: &map, client_cert: cert };
        chain.authenticate(&input).await
    }

    #[tokio::test]
    async fn any_mode_first_present_decides_and_conflicts_are_refused() {
        let chain =
            AuthChain::new(vec![key_policy("a", "x-api-key"), key_policy("b", "x-other-key")], Require::Any, false);
        let ok = run(&chain, &[("x-other-key", "key-beta-0001")], None).await.unwrap();
        assert_eq!(ok.identity.unwrap().consumer.as_ref().unwrap().id.as_ref(), "beta");
        assert_eq!(run(&chain, &[], None).await.unwrap_err(), AuthError::Missing);
        assert!(matches!(run(&chain, &[("x-api-key", "nope-nope-nope")], None).await, Err(AuthError::Invalid(_))));
        // Different keys in the two places: refused, not settled by order.
        let both = [("x-api-key", "key-acme-0001"), ("x-other-key", "key-beta-0001")];
        assert_eq!(run(&chain, &both, None).await.unwrap_err(), AuthError::Conflict);
        // A bad first credential is not passed over to the second method.
        let bad_first = [("x-api-key", "wrong-wrong-wrong"), ("x-other-key", "wrong-wrong-wrong")];
        assert!(matches!(run(&chain, &bad_first, None).await, Err(AuthError::Invalid(_))));
        let twice = [("x-api-key", "key-acme-0001"), ("x-api-key", "key-beta-0001")];
        assert!(matches!(run(&chain, &twice, None).await, Err(AuthError::Malformed(_))));
        assert_eq!(chain.challenge(), "ApiKey realm=\"turnpike\"");
    }

    #[tokio::test]
    async fn anonymous_must_be_explicit_and_bad_credentials_never_pass_as_anonymous() {
        let chain = AuthChain::new(vec![key_policy("a", "x-api-key")], Require::Any, true);
        assert!(run(&chain, &[], None).await.unwrap().identity.is_none());
        assert!(matches!(run(&chain, &[("x-api-key", "wrong-wrong-wrong")], None).await, Err(AuthError::Invalid(_))));
    }

    #[tokio::test]
    async fn all_mode_merges_identities() {
        let chain = AuthChain::new(vec![mtls_policy(), key_policy("a", "x-api-key")], Require::All, false);
        let c = cert();
        assert_eq!(run(&chain, &[], Some(&c)).await.unwrap_err(), AuthError::Missing);
        let ok = run(&chain, &[("x-api-key", "key-acme-0001")], Some(&c)).await.unwrap();
        let id = ok.identity.unwrap();
        assert_eq!(id.subject.as_deref(), Some("svc-a"));
        assert_eq!(id.consumer.as_ref().unwrap().id.as_ref(), "acme");
        assert_eq!(id.plan.as_deref(), Some("gold"));
        assert!(id.client_cert.is_some() && id.has_role("reader"));
        assert_eq!(chain.challenge(), "ClientCertificate realm=\"turnpike\", ApiKey realm=\"turnpike\"");
    }

    #[tokio::test]
    async fn a_certificate_does_not_conflict_with_a_request_credential() {
        let chain = AuthChain::new(vec![key_policy("a", "x-api-key"), mtls_policy()], Require::Any, false);
        let c = cert();
        let ok = run(&chain, &[("x-api-key", "key-acme-0001")], Some(&c)).await.unwrap();
        assert_eq!(ok.identity.unwrap().consumer.as_ref().unwrap().id.as_ref(), "acme");
        let by_cert = run(&chain, &[], Some(&c)).await.unwrap();
        assert_eq!(by_cert.identity.unwrap().subject.as_deref(), Some("svc-a"));
    }
}
