//! The user-facing configuration of the `jwt` authentication method and of the gateway-signed token.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::{ByteSize, Duration};

use crate::auth::claims::ClaimsConfig;
use crate::auth::token::TokenSourceConfig;

/// A signature algorithm a token may use (the JWS `alg` header). `none` is not one: unsigned tokens are always
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, with a shared `secret`.
    #[serde(rename = "HS256")]
    Hs256,
    /// HMAC with SHA-384, with a shared `secret`.
    #[serde(rename = "HS384")]
    Hs384,
    /// HMAC with SHA-512, with a shared `secret`.
    #[serde(rename = "HS512")]
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (an RSA key of 2048 to 8192 bits).
    #[serde(rename = "RS256")]
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    #[serde(rename = "RS384")]
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    #[serde(rename = "RS512")]
    Rs512,
    /// RSASSA-PSS with SHA-256.
    #[serde(rename = "PS256")]
    Ps256,
    /// RSASSA-PSS with SHA-384.
    #[serde(rename = "PS384")]
    Ps384,
    /// RSASSA-PSS with SHA-512.
    #[serde(rename = "PS512")]
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ES384")]
    Es384,
    /// EdDSA with an Ed25519 key.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [JwtAlgorithm; 12] = [
        Self::Hs256,
        Self::Hs384,
        Self::Hs512,
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// The JWS name (`RS256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with exactly this JWS name (case-sensitive, as RFC 7515 says); `None` for `none` and
    /// anything unsupported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether it is an HMAC algorithm (verified with a shared secret rather than a public key).
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::Hs256 => A::HS256,
            Self::Hs384 => A::HS384,
            Self::Hs512 => A::HS512,
            Self::Rs256 => A::RS256,
            Self::Rs384 => A::RS384,
            Self::Rs512 => A::RS512,
            Self::Ps256 => A::PS256,
            Self::Ps384 => A::PS384,
            Self::Ps512 => A::PS512,
            Self::Es256 => A::ES256,
            Self::Es384 => A::ES384,
            Self::EdDsa => A::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A secret string (the JWT policy's name for [`crate::Secret`]).
pub type SecretString = crate::Secret;

/// JSON Web Token authentication: where the token is read from, which keys verify it, and which claims it must
/// carry. Give exactly one key source: `secret`, `keys`, `jwks_url` or `discovery`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The algorithms tokens may be signed with (required, at least one). A token whose `alg` is not listed, or
    /// is `none`, is refused before any key is looked at. HMAC algorithms (`HS*`) need `secret`; the others need
    /// public keys (`keys`, `jwks_url` or `discovery`): the two never mix, so a public key can never be used as an
    /// HMAC secret.
    pub algorithms: Vec<JwtAlgorithm>,
    /// The shared secret for `HS256`/`HS384`/`HS512`, at least 32 bytes; usually `${env:JWT_SECRET}`. Never
    /// logged or shown in errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// Static public keys: RSA, EC (P-256, P-384) or Ed25519, as SPKI `PUBLIC KEY` PEM, PKCS#1 `RSA PUBLIC KEY`
    /// PEM or an X.509 `CERTIFICATE` (its public key is used; its dates and issuer are not checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<StaticKeyConfig>,
    /// A JWKS document to fetch the keys from (`https://idp.example.com/.well-known/jwks.json`). Keys are
    /// fetched on first use, cached, refreshed in the background and when a token names an unknown `kid`; if the
    /// URL stops answering, the keys already fetched keep working. `https` is required unless the host is a
    /// loopback address or `jwks.allow_http` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// An OpenID Connect issuer: its `{discovery}/.well-known/openid-configuration` document names the JWKS
    /// (`jwks_uri`), used as `jwks_url` is. When `issuer` is set, the document's `issuer` must equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    /// The required `iss` claim, compared exactly. Strongly recommended: without it, any token the keys sign is
    /// accepted, whoever it was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted audiences: the token's `aud` (a string or an array) must contain at least one of them. Empty:
    /// `aud` is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Claims that must be present and not `null` (`sub`, `email`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// Clock skew allowed when checking `exp` and `nbf`, at most `1h`. Default `30s`.
    #[serde(default = "default_leeway")]
    pub leeway: Duration,
    /// Whether a token without `exp` is refused. Default `true`: a token that never expires is a credential
    /// that can never be taken back.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// Where the token is read from, in order. Default: `Authorization: Bearer <token>`. The same token in
    /// several places is accepted; different tokens are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<TokenSourceConfig>,
    /// The longest token accepted, from `256B` to `64KiB`; longer ones are refused before any parsing. Default
    /// `8KiB`.
    #[serde(default = "default_max_token_size")]
    pub max_token_size: ByteSize,
    /// Whether the verified token is forwarded to the upstream. Default `false`: it is removed from the header,
    /// cookie or query parameter it came in, and the upstream sees the identity headers instead.
    #[serde(default)]
    pub forward_token: bool,
    /// Which claims make up the identity (subject, roles, plan) and which claims are sent upstream as headers.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// How keys from `jwks_url` or `discovery` are fetched and refreshed.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// The verified-token cache: a token seen before costs a hash lookup instead of a signature check.
    #[serde(default)]
    pub cache: TokenCacheConfig,
}

impl JwtConfig {
    /// A config with these algorithms, every other field at its default and no key source yet (set one of
    /// `secret`, `keys`, `jwks_url`, `discovery`): for programmatic use, tests and fuzzing.
    pub fn new(algorithms: Vec<JwtAlgorithm>) -> Self {
        Self {
            algorithms,
            secret: None,
            keys: Vec::new(),
            jwks_url: None,
            discovery: None,
            issuer: None,
            audiences: Vec::new(),
            required_claims: Vec::new(),
            leeway: default_leeway(),
            require_exp: true,
            from: Vec::new(),
            max_token_size: default_max_token_size(),
            forward_token: false,
            claims: ClaimsConfig::default(),
            jwks: JwksConfig::default(),
            cache: TokenCacheConfig::default(),
        }
    }
}

/// One static public key; give exactly one of `pem` and `pem_file`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticKeyConfig {
    /// The key id: a token whose header names a `kid` is verified only with the key of that id. A key without
    /// `kid` is tried for every token whose `kid` matches no other key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The key as PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A PEM file, relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem_file: Option<PathBuf>,
}

/// Fetching keys from a JWKS URL or through OIDC discovery.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// How often the keys are fetched again in the background (after a failed fetch: every
    /// `min_refresh_interval` until one succeeds). Default `10m`, at most `7d`.
    pub refresh_interval: Duration,
    /// The shortest time between two fetches caused by tokens naming an unknown `kid`: a storm of random `kid`s
    /// costs at most one fetch per interval, and such tokens are refused meanwhile. At most `refresh_interval`.
    /// Default `30s`.
    pub min_refresh_interval: Duration,
    /// The longest a request waits for the key source (a first fetch, or a fetch for an unknown `kid`), at most
    /// `60s`; past it the request is refused (`503` when no key was ever fetched). Default `3s`.
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted for the identity provider's HTTPS (a private CA), relative to the
    /// config file's directory. Default: the system's trusted roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Allow plain `http://` key URLs to non-loopback hosts. Default `false`: whoever can change the JWKS in
    /// transit can sign any token, so only use this on a network you trust as much as the gateway itself.
    pub allow_http: bool,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(3),
            ca: None,
            allow_http: false,
        }
    }
}

/// The verified-token cache. It holds verified tokens in memory (found by a keyed hash, compared whole) until
/// they expire or are evicted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConfig {
    /// The most tokens kept (about: the cache is split into shards that each keep their share). `0` disables
    /// the cache. Default `10000`.
    pub max_entries: usize,
    /// The longest a verified token is trusted without checking it again, at most `1d`; never past the token's
    /// own `exp`. Default `5m`.
    pub max_ttl: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self { max_entries: 10_000, max_ttl: Duration::from_secs(300) }
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_true() -> bool {
    true
}

fn default_max_token_size() -> ByteSize {
    ByteSize::kib(8)
}

/// The algorithm of the gateway-signed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum GatewayAlgorithm {
    /// ECDSA on P-256 (a PKCS#8 `PRIVATE KEY`). Recommended: small, fast, verified with a public key.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (a PKCS#8 `PRIVATE KEY`).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (a PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, 2048 bits or more).
    #[serde(rename = "RS256")]
    Rs256,
    /// HMAC with SHA-256 and a shared `secret` (every verifying service then holds a key that can sign too).
    #[serde(rename = "HS256")]
    Hs256,
}

impl GatewayAlgorithm {
    /// As a verification algorithm.
    pub fn algorithm(self) -> JwtAlgorithm {
        match self {
            Self::Es256 => JwtAlgorithm::Es256,
            Self::EdDsa => JwtAlgorithm::EdDsa,
            Self::Rs256 => JwtAlgorithm::Rs256,
            Self::Hs256 => JwtAlgorithm::Hs256,
        }
    }
}

/// A short-lived JWT the gateway signs for the upstream, carrying the verified identity (`sub`, roles, scopes,
/// plan, consumer), so services can check who is calling without trusting plain headers. Give the key as exactly
/// one of `key_pem`, `key_file` (`ES256`, `EdDSA`, `RS256`) or `secret` (`HS256`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokenConfig {
    /// The signature algorithm.
    pub algorithm: GatewayAlgorithm,
    /// The private key as PKCS#8 PEM text (usually `${file:...}` or `${env:...}`). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<SecretString>,
    /// A PEM file holding the private key, relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The shared secret for `HS256`, at least 32 bytes. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// The `iss` claim (required): how services recognise the gateway's tokens.
    pub issuer: String,
    /// The `aud` claim, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How long a token is valid (`exp` = now + `ttl`), from `1s` to `1h`. Default `60s`.
    #[serde(default = "default_gateway_ttl")]
    pub ttl: Duration,
    /// The request header that carries the token to the upstream. Default `x-gateway-token`. Clients cannot set
    /// it: the gateway replaces it.
    #[serde(default = "default_gateway_header")]
    pub header: String,
    /// The `kid` header, so services can pick the key from a key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

fn default_gateway_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_gateway_header() -> String {
    "x-gateway-token".into()
}
