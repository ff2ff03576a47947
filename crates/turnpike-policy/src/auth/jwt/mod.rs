//! JWT authentication: a bearer token verified against an allow-list of algorithms and static keys, a secret, a
//! JWKS URL or OIDC discovery; claim checks; a verified-token cache; and the gateway-signed token for upstreams.
//!
//! The order of checks is the security argument, cheapest and most decisive first:
//!
//! 1. size: a token longer than `max_token_size` is refused before anything is parsed;
//! 2. cache: a token verified before under the same settings (found by a keyed hash of its signature, then
//!    compared whole) answers with its identity, until its `exp`;
//! 3. shape ([`inspect`]): three base64url parts, a JSON header with a string `alg` given once, a JSON object
//!    payload;
//! 4. algorithm: listed in `algorithms` (never `none`), no `crit` header;
//! 5. key: with a `kid`, only keys of that id (an unknown id may trigger one rate-limited refresh); the key's type
//!    must fit the algorithm: a secret verifies only `HS*` and a public key never does, which rules out algorithm
//!    confusion whatever the token says;
//! 6. signature;
//! 7. claims: `exp`/`nbf` with leeway, `iss`, `aud` (any of), required claims.
//!
//! Every refusal is an [`AuthFailure::Invalid`] whose reason goes to the debug log only: the client learns
//! nothing about why (which is also why a failed signature has one reason, whatever the key). A key source that
//! cannot be reached while no key was ever loaded is [`AuthFailure::Unavailable`] (`503`), never a pass.

mod cache;
mod config;
mod keys;
mod sign;
mod state;
mod verify;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderName;
use tokio::time::Instant;
use turnpike_core::{Identity, IdentitySource, Registry};

pub use self::config::{
    GatewayAlgorithm, GatewayTokenConfig, JwksConfig, JwtAlgorithm, JwtConfig, SecretString, StaticKeyConfig,
    TokenCacheConfig,
};
pub use self::sign::{GatewaySigner, SignError};
pub use self::state::{JwtState, JwtStats};
pub use self::verify::{JoseHeader, MAX_INSPECT_LEN, TokenParts, inspect};
pub use crate::auth::token::FoundToken;

use self::keys::{Candidates, KeySet, VerifyKey};
use self::state::{Client, KeySource, RefreshSettings, Trigger};
use self::verify::{ClaimRules, allowed_algorithm, signature_valid};
use super::claims::ClaimsMapping;
use super::token::TokenSources;
use super::{AuthFailure, AuthInput, Presented};
use crate::ConfigIssue;
use crate::fetch::Fetcher;

/// JWT states by policy id and key-source fingerprint: a reload that keeps the key source keeps the fetched keys,
/// the token cache and the refresh task; a new key source starts fresh.
pub type JwtStates = Registry<String, JwtState>;

/// The smallest `max_token_size` accepted.
const MIN_TOKEN_SIZE: u64 = 256;
const MAX_LEEWAY: Duration = Duration::from_secs(3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);
const MAX_CACHE_ENTRIES: usize = 10_000_000;
/// The shortest HMAC secret accepted: RFC 7518 3.2 asks for a key at least as long as the hash output.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// A compiled JWT policy: settings from the snapshot plus its shared [`JwtState`].
pub struct JwtAuth {
    id: Arc<str>,
    state: Arc<JwtState>,
    sources: TokenSources,
    claims: ClaimsMapping,
    algorithms: Vec<JwtAlgorithm>,
    rules: ClaimRules,
    max_token_size: usize,
    forward_token: bool,
    timeout: Duration,
    cache_max_entries: usize,
    cache_max_ttl: Duration,
    /// SHA-256 of the settings a cached identity depends on (algorithms, claim rules, claims mapping), mixed into
    /// cache keys: after a reload that changes them, no identity computed under the old ones is served.
    salt: [u8; 32],
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth").field("id", &self.id).field("state", &self.state).finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Compiles `config` for the policy `id`, taking its state from `states` (kept when the key source is
    /// unchanged). Reads `keys[].pem_file` and `jwks.ca` relative to `base_dir`; does no other I/O, no network,
    /// and starts no task (`turnpike validate` runs it). Returns every problem found, with paths relative to
    /// the policy's config.
    pub fn compile(
        id: &str,
        config: &JwtConfig,
        states: &JwtStates,
        base_dir: &Path,
    ) -> Result<JwtAuth, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut algorithms = config.algorithms.clone();
        algorithms.sort();
        algorithms.dedup();
        if algorithms.is_empty() {
            issues.push(ConfigIssue::new("algorithms", "list at least one algorithm"));
        }
        let source = compile_key_source(config, &algorithms, base_dir, &mut issues);
        check_limits(config, &mut issues);

        let max_token_size = usize::try_from(config.max_token_size.as_u64()).unwrap_or(usize::MAX).min(MAX_INSPECT_LEN);
        let sources = TokenSources::compile(&config.from, max_token_size).map_err(|mut e| issues.append(&mut e)).ok();
        let claims = ClaimsMapping::compile(&config.claims)
            .map_err(|e| issues.extend(e.into_iter().map(|i| prefixed("claims", i))))
            .ok();
        if config.issuer.as_deref().is_some_and(str::is_empty) {
            issues.push(ConfigIssue::new("issuer", "must not be empty (leave it out to not check `iss`)"));
        }
        for (i, aud) in config.audiences.iter().enumerate() {
            if aud.is_empty() {
                issues.push(ConfigIssue::new(format!("audiences[{i}]"), "must not be empty"));
            }
        }
        for (i, claim) in config.required_claims.iter().enumerate() {
            if claim.is_empty() {
                issues.push(ConfigIssue::new(format!("required_claims[{i}]"), "must not be empty"));
            }
        }
        let (Some(source), Some(sources), Some(claims), true) = (source, sources, claims, issues.is_empty()) else {
            return Err(issues);
        };

        let settings = RefreshSettings {
            refresh_interval: config.jwks.refresh_interval.as_std(),
            min_refresh_interval: config.jwks.min_refresh_interval.as_std(),
            timeout: config.jwks.timeout.as_std(),
        };
        let key = format!("{id}#{}", source.fingerprint);
        let CompiledSource { source, keys, .. } = source;
        let state = states.get_or_insert_with(&key, || JwtState::new(key.clone(), source, keys, settings));
        state.set_settings(settings);

        Ok(JwtAuth {
            id: Arc::from(id),
            state,
            sources,
            claims,
            algorithms,
            rules: ClaimRules {
                issuer: config.issuer.clone(),
                audiences: config.audiences.clone(),
                required: config.required_claims.clone(),
                leeway: config.leeway.as_std().as_secs_f64(),
                require_exp: config.require_exp,
            },
            max_token_size,
            forward_token: config.forward_token,
            timeout: config.jwks.timeout.as_std(),
            cache_max_entries: config.cache.max_entries,
            cache_max_ttl: config.cache.max_ttl.as_std(),
            salt: settings_digest(config),
        })
    }

    /// Whether the request carries a token in one of the configured places (see [`TokenSources::find`]).
    pub fn presented(&self, input: &AuthInput<'_>) -> Presented<FoundToken> {
        self.sources.find(input)
    }

    /// Verifies the token and returns the caller's identity. A token verified before comes from the cache
    /// without a signature check. Fails with [`AuthFailure::Invalid`] (the reason is for debug logs only) or,
    /// when the keys must be fetched and the key source does not answer within `jwks.timeout` while no key was
    /// ever loaded, [`AuthFailure::Unavailable`]`("jwks")`. Never waits longer than `jwks.timeout` for keys.
    pub async fn verify(&self, found: &FoundToken) -> Result<Arc<Identity>, AuthFailure> {
        let token = found.token.as_str();
        if token.len() > self.max_token_size {
            return Err(AuthFailure::Invalid("token too large"));
        }
        let cached = self.cache_max_entries > 0;
        if cached && let Some(identity) = self.state.cache.get(token, &self.salt, Instant::now()) {
            return Ok(identity);
        }
        let parts = inspect(token).map_err(AuthFailure::Invalid)?;
        let alg = allowed_algorithm(&parts.header, &self.algorithms).map_err(AuthFailure::Invalid)?;
        let kid = parts.header.kid.as_deref();
        let keys = self.key_set(kid, alg).await?;
        let candidates = match keys.candidates(kid, alg) {
            Candidates::Keys(keys) => keys,
            Candidates::WrongAlgorithm => return Err(AuthFailure::Invalid("algorithm does not fit the key")),
            Candidates::UnknownKid => return Err(AuthFailure::Invalid("unknown kid")),
            Candidates::NoKey => return Err(AuthFailure::Invalid("no key for the algorithm")),
        };
        if !candidates.into_iter().any(|key| self.check_signature(key, alg, &parts)) {
            return Err(AuthFailure::Invalid("invalid signature"));
        }
        let now = unix_now();
        let exp = self.rules.check(&parts.claims, now).map_err(AuthFailure::Invalid)?;
        let identity = Arc::new(self.claims.identity(IdentitySource::Jwt, parts.claims));
        if cached {
            let ttl = match exp {
                Some(exp) => Duration::try_from_secs_f64(exp - now).unwrap_or(Duration::ZERO).min(self.cache_max_ttl),
                None => self.cache_max_ttl,
            };
            let at = Instant::now();
            if !ttl.is_zero()
                && let Some(expires) = at.checked_add(ttl)
            {
                self.state.cache.insert(token, self.salt, identity.clone(), expires, self.cache_max_entries, at);
            }
        }
        Ok(identity)
    }

    /// Removes the token from the request before it is forwarded, unless `forward_token` is set.
    pub fn strip(&self, found: &FoundToken, parts: &mut http::request::Parts) {
        if !self.forward_token {
            self.sources.strip(found, parts);
        }
    }

    /// The `WWW-Authenticate` scheme of a refusal.
    pub fn challenge(&self) -> &'static str {
        "Bearer"
    }

    /// The claim headers this policy may set; the gateway removes them from every client request.
    pub fn header_names(&self) -> Vec<HeaderName> {
        self.claims.header_names().cloned().collect()
    }

    /// The policy's state (shared across reloads while the key source is unchanged).
    pub fn state(&self) -> &Arc<JwtState> {
        &self.state
    }

    /// The state's counters: keys, signature checks, fetches, cached tokens.
    pub fn stats(&self) -> JwtStats {
        self.state.stats()
    }

    /// The key set to verify with, fetching it when none was ever loaded, or when the token names a `kid` the
    /// set does not have (rate-limited, shared with concurrent callers, within `jwks.timeout`).
    async fn key_set(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Result<Arc<KeySet>, AuthFailure> {
        if !self.state.is_dynamic() {
            return self.state.current().ok_or(AuthFailure::Invalid("no key"));
        }
        self.state.ensure_refresh_task();
        // One deadline for everything this request may wait for.
        let deadline = Instant::now().checked_add(self.timeout).unwrap_or_else(Instant::now);
        let set = match self.state.current() {
            Some(set) => set,
            None => {
                self.state.refresh(Trigger::NoKeys, deadline).await;
                self.state.current().ok_or(AuthFailure::Unavailable("jwks"))?
            }
        };
        if kid.is_some() && matches!(set.candidates(kid, alg), Candidates::UnknownKid) {
            self.state.refresh(Trigger::UnknownKid, deadline).await;
            return Ok(self.state.current().unwrap_or(set));
        }
        Ok(set)
    }

    fn check_signature(&self, key: &VerifyKey, alg: JwtAlgorithm, parts: &TokenParts<'_>) -> bool {
        self.state.count_signature_check();
        signature_valid(key, alg, parts)
    }
}

/// Seconds since the Unix epoch, by the wall clock (what `exp` and `nbf` are written in).
pub(crate) fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn prefixed(prefix: &str, issue: ConfigIssue) -> ConfigIssue {
    let path = if issue.path.is_empty() { prefix.to_string() } else { format!("{prefix}.{}", issue.path) };
    ConfigIssue { path, message: issue.message }
}

struct CompiledSource {
    source: KeySource,
    keys: Option<KeySet>,
    fingerprint: String,
}

/// The key source: static keys parsed, URLs checked, and a fingerprint of everything that makes the keys what
/// they are (so a changed secret, key, URL or CA gets fresh state).
fn compile_key_source(
    config: &JwtConfig,
    algorithms: &[JwtAlgorithm],
    base_dir: &Path,
    issues: &mut Vec<ConfigIssue>,
) -> Option<CompiledSource> {
    let given =
        [config.secret.is_some(), !config.keys.is_empty(), config.jwks_url.is_some(), config.discovery.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        issues.push(ConfigIssue::new("", "give exactly one key source: `secret`, `keys`, `jwks_url` or `discovery`"));
        return None;
    }
    let names = |pick: fn(&JwtAlgorithm) -> bool| {
        algorithms.iter().copied().filter(pick).map(JwtAlgorithm::name).collect::<Vec<_>>().join(", ")
    };
    let mut fp = ring::digest::Context::new(&ring::digest::SHA256);
    let before = issues.len();

    if let Some(secret) = &config.secret {
        if secret.expose().len() < MIN_SECRET_LEN {
            issues.push(ConfigIssue::new("secret", format!("must be at least {MIN_SECRET_LEN} bytes")));
        }
        let public = names(|a| !a.is_hmac());
        if !public.is_empty() {
            issues.push(ConfigIssue::new(
                "algorithms",
                format!("{public} need a public key (`keys`, `jwks_url` or `discovery`): `secret` only verifies HS256, HS384 and HS512"),
            ));
        }
        fp.update(b"secret\0");
        fp.update(secret.expose().as_bytes());
        let keys = KeySet::new(vec![VerifyKey::secret(None, secret.expose().as_bytes())]);
        return (issues.len() == before).then(|| finish(KeySource::Static, Some(keys), fp));
    }

    let hmac = names(|a| a.is_hmac());
    if !hmac.is_empty() {
        issues.push(ConfigIssue::new(
            "algorithms",
            format!("{hmac} need `secret`: public keys are never used as HMAC secrets"),
        ));
    }

    if !config.keys.is_empty() {
        let mut loaded = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            let text = match (&key.pem, &key.pem_file) {
                (Some(pem), None) => pem.clone(),
                (None, Some(file)) => match std::fs::read_to_string(base_dir.join(file)) {
                    Ok(text) => text,
                    Err(e) => {
                        issues.push(ConfigIssue::new(
                            format!("{path}.pem_file"),
                            format!("cannot read `{}`: {e}", file.display()),
                        ));
                        continue;
                    }
                },
                _ => {
                    issues.push(ConfigIssue::new(path, "give exactly one of `pem` and `pem_file`"));
                    continue;
                }
            };
            let field = if key.pem.is_some() { "pem" } else { "pem_file" };
            let public = match keys::public_key_from_pem(&text) {
                Ok(public) => public,
                Err(e) => {
                    issues.push(ConfigIssue::new(format!("{path}.{field}"), e));
                    continue;
                }
            };
            if !algorithms.iter().any(|a| public.kind.fits(*a)) {
                issues.push(ConfigIssue::new(
                    path.clone(),
                    format!("{}, but no algorithm in `algorithms` uses it", public.kind.describe()),
                ));
            }
            if let Some(kid) = &key.kid
                && config.keys[..i].iter().any(|k| k.kid.as_ref() == Some(kid))
            {
                issues.push(ConfigIssue::new(format!("{path}.kid"), format!("`{kid}` is used by another key")));
            }
            fp.update(b"key\0");
            fp.update(key.kid.as_deref().unwrap_or("").as_bytes());
            fp.update(b"\0");
            fp.update(&public.der);
            loaded.push(VerifyKey::public(key.kid.clone(), &public, None));
        }
        return (issues.len() == before).then(|| finish(KeySource::Static, Some(KeySet::new(loaded)), fp));
    }

    let allow_http = config.jwks.allow_http;
    let client = match &config.jwks.ca {
        None => Client::System,
        Some(file) => match std::fs::read(base_dir.join(file)) {
            Ok(pem) => {
                fp.update(b"ca\0");
                fp.update(&pem);
                match Fetcher::with_ca_pem(&pem) {
                    Ok(fetcher) => Client::Ca(fetcher),
                    Err(e) => {
                        issues.push(ConfigIssue::new("jwks.ca", e));
                        Client::System
                    }
                }
            }
            Err(e) => {
                issues.push(ConfigIssue::new("jwks.ca", format!("cannot read `{}`: {e}", file.display())));
                Client::System
            }
        },
    };
    fp.update(if allow_http { b"http\0" } else { b"https\0" });
    let source = if let Some(url) = &config.jwks_url {
        if let Err(e) = check_key_url(url, allow_http) {
            issues.push(ConfigIssue::new("jwks_url", e));
        }
        fp.update(b"jwks\0");
        fp.update(url.as_bytes());
        KeySource::Jwks { url: url.clone(), client }
    } else {
        let base = config.discovery.as_deref().unwrap_or_default();
        if let Err(e) = check_key_url(base, allow_http) {
            issues.push(ConfigIssue::new("discovery", e));
        }
        let url = discovery_url(base);
        fp.update(b"discovery\0");
        fp.update(url.as_bytes());
        // The issuer is checked against the discovery document, so it is part of the key source here.
        fp.update(b"\0");
        fp.update(config.issuer.as_deref().unwrap_or("").as_bytes());
        KeySource::Discovery { url, issuer: config.issuer.clone(), allow_http, client }
    };
    (issues.len() == before).then(|| finish(source, None, fp))
}

fn finish(source: KeySource, keys: Option<KeySet>, fp: ring::digest::Context) -> CompiledSource {
    let digest = fp.finish();
    let fingerprint = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    CompiledSource { source, keys, fingerprint }
}

/// `{issuer}/.well-known/openid-configuration`, unless the URL already names the document.
fn discovery_url(base: &str) -> String {
    const WELL_KNOWN: &str = "/.well-known/openid-configuration";
    if base.ends_with(WELL_KNOWN) { base.to_string() } else { format!("{}{WELL_KNOWN}", base.trim_end_matches('/')) }
}

/// A key URL must be absolute `https`, or `http` to a loopback host (or anywhere with `allow_http`).
pub(crate) fn check_key_url(url: &str, allow_http: bool) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "`{url}` is plain http: whoever can alter it can sign tokens; use https (or set `jwks.allow_http`)"
        )),
        _ => Err(format!("`{url}` is not an http(s) URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_limits(config: &JwtConfig, issues: &mut Vec<ConfigIssue>) {
    let size = config.max_token_size.as_u64();
    if !(MIN_TOKEN_SIZE..=MAX_INSPECT_LEN as u64).contains(&size) {
        issues.push(ConfigIssue::new("max_token_size", "must be from 256B to 64KiB"));
    }
    if config.leeway.as_std() > MAX_LEEWAY {
        issues.push(ConfigIssue::new("leeway", "must be at most 1h"));
    }
    let jwks = &config.jwks;
    if jwks.timeout.as_std().is_zero() || jwks.timeout.as_std() > MAX_TIMEOUT {
        issues.push(ConfigIssue::new("jwks.timeout", "must be more than 0s and at most 60s"));
    }
    if jwks.refresh_interval.as_std().is_zero() || jwks.refresh_interval.as_std() > MAX_REFRESH_INTERVAL {
        issues.push(ConfigIssue::new("jwks.refresh_interval", "must be more than 0s and at most 7d"));
    }
    if jwks.min_refresh_interval.as_std().is_zero() || jwks.min_refresh_interval > jwks.refresh_interval {
        issues
            .push(ConfigIssue::new("jwks.min_refresh_interval", "must be more than 0s and at most `refresh_interval`"));
    }
    if config.cache.max_entries > MAX_CACHE_ENTRIES {
        issues.push(ConfigIssue::new("cache.max_entries", format!("must be at most {MAX_CACHE_ENTRIES}")));
    }
    let ttl = config.cache.max_ttl.as_std();
    if config.cache.max_entries > 0 && (ttl.is_zero() || ttl > MAX_CACHE_TTL) {
        issues.push(ConfigIssue::new("cache.max_ttl", "must be more than 0s and at most 1d"));
    }
}

/// SHA-256 of the settings a cached identity depends on.
fn settings_digest(config: &JwtConfig) -> [u8; 32] {
    let settings = serde_json::json!([
        config.algorithms,
        config.issuer,
        config.audiences,
        config.required_claims,
        config.leeway,
        config.require_exp,
        config.claims,
    ]);
    let digest = ring::digest::digest(&ring::digest::SHA256, settings.to_string().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
