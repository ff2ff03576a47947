//! The user-facing configuration of API keys: consumers with their keys, and how a route reads the key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::Secret;

/// A known API client: who it is, its plan and roles, and the API keys it authenticates with. It becomes the
/// identity of the requests it makes (`X-Consumer-Id`), which rate limits key on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// A unique id: letters, digits, `.`, `_` and `-`. It is the identity's subject.
    pub id: String,
    /// A display name. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Its plan (`free`, `pro`, ...), which rate limits can pick limits by.
    #[serde(default)]
    pub plan: Option<String>,
    /// Roles granted to it, for authorization rules.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Free-form string metadata (`team: payments`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Its API keys. Several keys are accepted at once, so a key can be rotated: add the new key, move the client
    /// over, remove the old key and reload. A consumer without keys cannot authenticate with a key.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

/// One API key: give exactly one of `sha256` (preferred: the configuration never holds the key) and `key`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The SHA-256 digest of the key, 64 hexadecimal digits (upper or lower case), e.g. the output of
    /// `printf %s "$KEY" | sha256sum`. Preferred over `key`.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key itself (at most 256 bytes), hashed when the configuration is loaded and never kept. Prefer
    /// `sha256`; if you use this, write it as `${env:NAME}` or `${file:PATH}` rather than literally.
    #[serde(default)]
    pub key: Option<Secret>,
}

/// How a route reads API keys: from a header, and optionally (opt-in) from a query parameter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    /// The request header carrying the key.
    pub header: String,
    /// A query parameter that may carry the key instead (absent: keys in the URL are not accepted). URLs end up
    /// in browser histories and other systems' logs, so prefer the header. The parameter is always removed
    /// before the request is forwarded.
    pub query: Option<String>,
    /// Forward the key header to the upstream. Default: it is removed (the upstream gets the consumer's identity
    /// headers instead). A key given in the query string is removed either way.
    pub forward_key: bool,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        Self { header: "x-api-key".into(), query: None, forward_key: false }
    }
}
