//! OAuth2 token introspection (RFC 7662) for opaque tokens: the identity provider is asked whether a token is
//! active, with the gateway's client credentials; active answers are cached (bounded, until the earlier of the
//! token's `exp` and a configured maximum) in state that survives reloads. When the endpoint does not answer in
//! time, answers an error or nonsense, the request is refused with `Unavailable` (503), never let in.

mod cache;
mod config;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use turnpike_core::{Identity, IdentitySource, Registry};

pub use config::{ClientAuthMethod, IntrospectionCacheConfig, IntrospectionConfig};

use self::cache::{Cache, TokenDigest};
use super::claims::ClaimsMapping;
use super::token::{DEFAULT_MAX_TOKEN, FoundToken, TokenSources, strip_query_param};
use super::{AuthFailure, AuthInput, Presented};
use crate::ConfigIssue;
use crate::fetch::Fetcher;

/// Introspection state of every policy, kept across reloads (keyed by policy id, endpoint, client and claims
/// mapping: a reload that changes one of them starts with an empty cache).
pub type IntrospectionStates = Registry<String, IntrospectionState>;

/// How long outage warnings are held back after one was logged (the others go to the debug log).
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

type Outcome = Result<Arc<Identity>, AuthFailure>;

/// The runtime state of one introspection policy: the cache of active tokens and the calls in flight.
#[derive(Default)]
pub struct IntrospectionState {
    inner: Mutex<Inner>,
    last_warning: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Inner {
    cache: Cache,
    /// Calls in flight by token digest: concurrent requests with the same token share one call.
    inflight: HashMap<TokenDigest, Arc<OnceCell<Outcome>>>,
}

impl fmt::Debug for IntrospectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("IntrospectionState")
            .field("cached", &inner.cache.len())
            .field("in_flight", &inner.inflight.len())
            .finish()
    }
}

impl IntrospectionState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many tokens are cached.
    pub fn cached(&self) -> usize {
        self.lock().cache.len()
    }
}

/// Takes a call out of the in-flight map once it is done, or once no request waits for it any more (all of them
/// went away before it finished).
struct InflightGuard<'a> {
    state: &'a IntrospectionState,
    key: TokenDigest,
    cell: Option<Arc<OnceCell<Outcome>>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else { return };
        let mut inner = self.state.lock();
        if let Some(current) = inner.inflight.get(&self.key)
            && Arc::ptr_eq(current, &cell)
            && (cell.initialized() || Arc::strong_count(&cell) == 2)
        {
            inner.inflight.remove(&self.key);
        }
        // Dropped under the lock, so the next guard's count does not include this one.
        drop(cell);
        drop(inner);
    }
}

/// The compiled `introspection` authentication of a route.
pub struct IntrospectionAuth {
    id: String,
    url: String,
    client_id: String,
    client_secret: super::api_key::Secret,
    auth_method: ClientAuthMethod,
    timeout: std::time::Duration,
    token_type_hint: Option<String>,
    max_entries: usize,
    max_ttl: std::time::Duration,
    sources: TokenSources,
    claims: ClaimsMapping,
    forward_token: bool,
    /// The query parameters tokens may be read from: removed even when the token is forwarded.
    query_params: Vec<String>,
    fetcher: Fetcher,
    state: Arc<IntrospectionState>,
}

impl fmt::Debug for IntrospectionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionAuth")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("timeout", &self.timeout)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl IntrospectionAuth {
    /// Compiles `config` for the policy `id`, taking its state from `states` (`ca` is resolved against
    /// `base_dir`). No network, no task. Issue paths are relative to the config (`url`, `from[0].header`,
    /// `claims.headers.email`).
    pub fn compile(
        id: &str,
        config: &IntrospectionConfig,
        states: &IntrospectionStates,
        base_dir: &Path,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        match config.url.parse::<http::Uri>() {
            Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) => {
                issues.push(ConfigIssue::new(
                    "url",
                    "the introspection endpoint must be an `https://` (or `http://`) URL",
                ));
            }
            Ok(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => {
                issues
                    .push(ConfigIssue::new("url", "credentials go in `client_id` and `client_secret`, not in the URL"));
            }
            Ok(uri) => {
                let loopback = uri.host().is_some_and(|h| {
                    h == "localhost"
                        || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                });
                if uri.scheme_str() == Some("http") && !loopback {
                    tracing::warn!(
                        policy = id,
                        "the introspection endpoint is plain http: tokens and the client secret cross the network unencrypted"
                    );
                }
            }
            Err(_) => issues.push(ConfigIssue::new("url", "not a valid URL")),
        }
        if config.client_id.is_empty() {
            issues.push(ConfigIssue::new("client_id", "the client id is empty"));
        }
        if config.client_secret.expose().is_empty() {
            issues.push(ConfigIssue::new("client_secret", "the client secret is empty"));
        }
        if config.timeout.as_std().is_zero() {
            issues.push(ConfigIssue::new("timeout", "the timeout must be more than zero"));
        }
        if config.token_type_hint.as_deref().is_some_and(str::is_empty) {
            issues.push(ConfigIssue::new("token_type_hint", "the hint is empty: write `null` to send none"));
        }
        let sources = TokenSources::compile(&config.from, DEFAULT_MAX_TOKEN).map_err(|e| issues.extend(e)).ok();
        let claims = ClaimsMapping::compile(&config.claims)
            .map_err(|e| {
                issues.extend(e.into_iter().map(|i| ConfigIssue::new(format!("claims.{}", i.path), i.message)))
            })
            .ok();
        let fetcher = match &config.ca {
            None => Some(Fetcher::system()),
            Some(ca) => {
                let path = base_dir.join(ca);
                match std::fs::read(&path) {
                    Ok(pem) => match Fetcher::with_ca_pem(&pem) {
                        Ok(fetcher) => Some(fetcher),
                        Err(e) => {
                            issues.push(ConfigIssue::new("ca", format!("`{}`: {e}", path.display())));
                            None
                        }
                    },
                    Err(e) => {
                        issues.push(ConfigIssue::new("ca", format!("cannot read `{}`: {e}", path.display())));
                        None
                    }
                }
            }
        };
        let (Some(sources), Some(claims), Some(fetcher), true) = (sources, claims, fetcher, issues.is_empty()) else {
            return Err(issues);
        };
        // What the cached identities depend on: change any of it and the cache starts empty.
        let key = format!(
            "{id}\n{}\n{}\n{}\n{:?}",
            config.url,
            config.client_id,
            serde_json::to_string(&config.claims).unwrap_or_default(),
            config.token_type_hint
        );
        let state = states.get_or_insert_with(&key, IntrospectionState::default);
        Ok(Self {
            id: id.to_string(),
            url: config.url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            auth_method: config.auth_method,
            timeout: config.timeout.as_std(),
            token_type_hint: config.token_type_hint.clone(),
            max_entries: config.cache.max_entries,
            max_ttl: config.cache.max_ttl.as_std(),
            sources,
            claims,
            forward_token: config.forward_token,
            query_params: config.from.iter().filter_map(|s| s.query.clone()).collect(),
            fetcher,
            state,
        })
    }

    /// Looks for the token (see [`TokenSources::find`]).
    pub fn presented(&self, input: &AuthInput<'_>) -> Presented<FoundToken> {
        self.sources.find(input)
    }

    /// Checks a token: a cached identity, or the endpoint's answer. `active: true` gives the identity (subject,
    /// roles, plan, scopes and headers from the answer per `claims`); `active: false`, an `exp` in the past or an
    /// `nbf` in the future give `Invalid`; no answer within `timeout`, an error status or an answer that is not an
    /// introspection response give `Unavailable("introspection")`.
    pub async fn verify(&self, found: &FoundToken) -> Result<Arc<Identity>, AuthFailure> {
        let key = digest(found.token.as_bytes());
        let cell = {
            let mut inner = self.state.lock();
            if let Some(identity) = inner.cache.get(&key, Instant::now()) {
                return Ok(identity);
            }
            inner.inflight.entry(key).or_default().clone()
        };
        // The guard owns the only clone of the cell this request holds, so that it can tell whether it is the
        // last request waiting.
        let guard = InflightGuard { state: &self.state, key, cell: Some(cell) };
        let Some(cell) = &guard.cell else { return Err(AuthFailure::Unavailable("introspection")) };
        let result =
            tokio::time::timeout(self.timeout, cell.get_or_init(|| self.introspect(&found.token, key))).await.cloned();
        drop(guard);
        match result {
            Ok(outcome) => outcome,
            Err(_) => {
                self.outage(format_args!("no answer within {:?}", self.timeout));
                Err(AuthFailure::Unavailable("introspection"))
            }
        }
    }

    /// One call to the endpoint; an active answer is cached.
    async fn introspect(&self, token: &str, key: TokenDigest) -> Outcome {
        let mut form: Vec<(&str, &str)> = vec![("token", token)];
        if let Some(hint) = &self.token_type_hint {
            form.push(("token_type_hint", hint));
        }
        let basic = match self.auth_method {
            ClientAuthMethod::ClientSecretBasic => Some((self.client_id.as_str(), self.client_secret.expose())),
            ClientAuthMethod::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose()));
                None
            }
        };
        let answer = match self.fetcher.post_form(&self.url, &form, basic, self.timeout).await {
            Ok(answer) => answer,
            Err(e) => {
                // FetchError names the host and what failed, never the request.
                self.outage(format_args!("{e}"));
                return Err(AuthFailure::Unavailable("introspection"));
            }
        };
        let (identity, lifetime) = self.interpret(answer)?;
        let lifetime = lifetime.map_or(self.max_ttl, |l| l.min(self.max_ttl));
        if !lifetime.is_zero() {
            let now = Instant::now();
            self.state.lock().cache.insert(key, identity.clone(), now + lifetime, self.max_entries);
        }
        Ok(identity)
    }

    /// The identity in an answer and how long it may be cached by the token's `exp` (`None`: no `exp`).
    fn interpret(&self, answer: Value) -> Result<(Arc<Identity>, Option<std::time::Duration>), AuthFailure> {
        let unavailable = |why: &str| {
            self.outage(format_args!("{why}"));
            AuthFailure::Unavailable("introspection")
        };
        let Value::Object(claims) = answer else { return Err(unavailable("the answer is not a JSON object")) };
        match claims.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(AuthFailure::Invalid("inactive token")),
            _ => return Err(unavailable("the answer has no boolean `active`")),
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or(()),
        };
        let exp = time("exp").map_err(|()| unavailable("`exp` is not a number"))?;
        let nbf = time("nbf").map_err(|()| unavailable("`nbf` is not a number"))?;
        if exp.is_some_and(|exp| exp <= now) {
            return Err(AuthFailure::Invalid("expired token"));
        }
        if nbf.is_some_and(|nbf| nbf > now) {
            return Err(AuthFailure::Invalid("token not valid yet"));
        }
        let lifetime = exp.map(|exp| std::time::Duration::try_from_secs_f64(exp - now).unwrap_or(self.max_ttl));
        Ok((Arc::new(self.claims.identity(IdentitySource::Introspection, claims)), lifetime))
    }

    /// Logs that the endpoint failed: a warning at most every [`WARN_EVERY`], the rest at debug level.
    fn outage(&self, what: fmt::Arguments<'_>) {
        let now = Instant::now();
        let mut last = self.state.last_warning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            drop(last);
            tracing::warn!(policy = %self.id, "token introspection failed, requests are refused: {what}");
        } else {
            drop(last);
            tracing::debug!(policy = %self.id, "token introspection failed: {what}");
        }
    }

    /// Removes the token from the request before it is forwarded: from everywhere it was found, or with
    /// `forward_token` only from the query string (a token in a URL is never passed on).
    pub fn strip(&self, found: &FoundToken, parts: &mut http::request::Parts) {
        if !self.forward_token {
            self.sources.strip(found, parts);
            return;
        }
        for param in &self.query_params {
            parts.uri = strip_query_param(&parts.uri, param);
        }
    }

    /// The `WWW-Authenticate` scheme of a refusal.
    pub fn challenge(&self) -> &'static str {
        "Bearer"
    }

    /// The headers this policy's identities set for the upstream (configured claim headers): the gateway removes
    /// them from every client request.
    pub fn header_names(&self) -> Vec<http::HeaderName> {
        self.claims.header_names().cloned().collect()
    }
}

fn digest(bytes: &[u8]) -> TokenDigest {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
