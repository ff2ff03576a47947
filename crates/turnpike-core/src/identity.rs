//! `Identity`: who the caller is once the `authenticate` phase has run, and the client certificate a TLS
//! listener verified.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use http::{HeaderName, HeaderValue};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// A verified JSON Web Token.
    Jwt,
    /// An API key of a known consumer.
    ApiKey,
    /// An opaque token checked by OAuth2 token introspection (RFC 7662).
    Introspection,
    /// A client certificate verified by the listener (mTLS).
    ClientCertificate,
}

impl IdentitySource {
    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::Jwt => "jwt",
            IdentitySource::ApiKey => "api_key",
            IdentitySource::Introspection => "introspection",
            IdentitySource::ClientCertificate => "mtls",
        }
    }
}

/// A known API client, declared in the configuration with its keys, plan and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its id (what rate limits key on and `X-Consumer-Id` carries).
    pub id: Arc<str>,
    /// A display name.
    pub name: Arc<str>,
    /// Its plan (`free`, `pro`, ...), which picks rate limits.
    pub plan: Option<Arc<str>>,
    /// Roles granted to it.
    pub roles: Vec<Arc<str>>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
}

/// What a verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject distinguished name (`CN=svc-a,O=Example`).
    pub subject: String,
    /// Subject alternative names (DNS names, URIs, emails, IP addresses), as text.
    pub sans: Vec<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
}

/// The authenticated caller. Authorization reads it, rate limiting keys on it, and the identity headers sent to
/// upstreams are built from it. Shared (`Arc`) so a verified-token cache hit costs no copy.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How it was established.
    pub source: IdentitySource,
    /// The subject: user id (JWT `sub`, introspection `sub`), consumer id, or certificate subject.
    pub subject: Option<Arc<str>>,
    /// The consumer, when the caller is a known API client.
    pub consumer: Option<Arc<Consumer>>,
    /// The plan that picks rate limits (the consumer's, or a token claim's).
    pub plan: Option<Arc<str>>,
    /// Roles granted to the caller.
    pub roles: Vec<Arc<str>>,
    /// OAuth2 scopes (`scope` split on spaces, or `scp`).
    pub scopes: Vec<Arc<str>>,
    /// The token's claims (JWT payload or introspection response), for claim rules and claim headers.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The verified client certificate, when the connection had one.
    pub client_cert: Option<Arc<ClientCert>>,
    /// Extra headers for the upstream, computed by the method (configured claim-to-header mappings).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Every identity header for the upstream, computed once for a shared (cached) identity: the id of the
    /// header-name settings they were computed for, and the headers. Filled by the identity-header policy; a
    /// clone starts without one.
    pub upstream_headers: UpstreamHeaders,
}

/// The memo of an identity's upstream headers; cloning an identity does not clone it (a clone is about to be
/// changed).
#[derive(Debug, Default)]
pub struct UpstreamHeaders(OnceLock<(u64, HeaderList)>);

/// Headers for the upstream, shared.
pub type HeaderList = Arc<[(HeaderName, HeaderValue)]>;

impl Clone for UpstreamHeaders {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl UpstreamHeaders {
    /// The headers computed for the settings `id`, computing them with `make` the first time.
    pub fn get_or_init(&self, id: u64, make: impl Fn() -> Vec<(HeaderName, HeaderValue)>) -> HeaderList {
        let (memo_id, headers) = self.0.get_or_init(|| (id, make().into()));
        if *memo_id == id { headers.clone() } else { make().into() }
    }
}

impl Identity {
    /// An identity with only a source and subject; the rest empty.
    pub fn new(source: IdentitySource, subject: Option<Arc<str>>) -> Self {
        Self {
            source,
            subject,
            consumer: None,
            plan: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: None,
            client_cert: None,
            headers: Vec::new(),
            upstream_headers: UpstreamHeaders::default(),
        }
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    /// Whether the caller was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    /// A claim by name.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.claims.as_ref()?.get(name)
    }
}
