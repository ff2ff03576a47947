//! External decisions from Open Policy Agent through its Data API: the input document, the decision cache (state
//! that outlives snapshots, in [`OpaStates`]), and reading the answer. Every failure fails closed.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use ring::digest;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use turnpike_core::Identity;

use super::config::OpaConfig;
use super::expr::decode_component;
use super::{AuthzInput, OpaStates};
use crate::ConfigIssue;
use crate::fetch::Fetcher;

/// The most decisions one policy keeps; past it, expired ones are dropped, then all.
const MAX_CACHED: usize = 10_000;

/// The decision cache of one OPA policy (route and URL), kept across reloads.
#[derive(Debug, Default)]
pub struct OpaState {
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    allow: bool,
    expires: Instant,
}

impl OpaState {
    /// The number of decisions held (expired ones included until they are replaced or swept).
    pub fn cached_decisions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &[u8; 32], now: Instant) -> Option<bool> {
        self.lock().get(key).filter(|c| c.expires > now).map(|c| c.allow)
    }

    fn put(&self, key: [u8; 32], allow: bool, now: Instant, ttl: Duration) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, Cached { allow, expires: now + ttl });
    }
}

/// Why no decision could be had; the request is refused with 503.
#[derive(Debug)]
pub(crate) enum OpaError {
    /// The call failed (connect, timeout, status, body).
    Fetch(crate::fetch::FetchError),
    /// The answer is JSON but not a decision.
    Answer(&'static str),
}

impl std::fmt::Display for OpaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpaError::Fetch(e) => e.fmt(f),
            OpaError::Answer(why) => f.write_str(why),
        }
    }
}

/// A compiled [`OpaConfig`].
#[derive(Debug)]
pub(crate) struct Opa {
    pub(crate) url: String,
    timeout: Duration,
    ttl: Duration,
    headers: Vec<HeaderName>,
    state: Arc<OpaState>,
}

/// Headers never sent to OPA, whatever `include_headers` says: they carry credentials.
fn never_sent(name: &HeaderName) -> bool {
    name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION
}

impl Opa {
    /// Compiles `config`; issues go to `issues` under `path` (`opa`, `methods.POST.opa`). The state is keyed by
    /// `key` (the route id) and the URL.
    pub(crate) fn compile(
        key: &str,
        path: &str,
        config: &OpaConfig,
        states: &OpaStates,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Opa> {
        let before = issues.len();
        match config.url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty()) => {}
            _ => issues.push(ConfigIssue::new(
                format!("{path}.url"),
                format!("`{}` is not an http(s)://host[:port]/path URL", config.url),
            )),
        }
        if config.timeout.as_std().is_zero() {
            issues.push(ConfigIssue::new(format!("{path}.timeout"), "must be more than 0s"));
        }
        let mut headers = Vec::new();
        for (i, name) in config.include_headers.iter().enumerate() {
            let at = format!("{path}.include_headers[{i}]");
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(h) if never_sent(&h) => {
                    issues.push(ConfigIssue::new(at, format!("`{name}` carries credentials and is never sent to OPA")));
                }
                Ok(h) => {
                    if !headers.contains(&h) {
                        headers.push(h);
                    }
                }
                Err(_) => issues.push(ConfigIssue::new(at, format!("`{name}` is not a header name"))),
            }
        }
        if issues.len() > before {
            return None;
        }
        let state = states.get_or_insert_with(&format!("{key}\n{}", config.url), OpaState::default);
        Some(Opa {
            url: config.url.clone(),
            timeout: config.timeout.as_std(),
            ttl: config.cache_ttl.as_std(),
            headers,
            state,
        })
    }

    /// Asks for (or reuses) the decision for `input`.
    pub(crate) async fn decide(&self, input: &AuthzInput<'_>) -> Result<bool, OpaError> {
        let document = input_document(input, &self.headers);
        let key = (!self.ttl.is_zero()).then(|| cache_key(&document));
        if let Some(key) = &key
            && let Some(allow) = self.state.get(key, Instant::now())
        {
            return Ok(allow);
        }
        let body = json!({ "input": document });
        let answer = Fetcher::system().post_json(&self.url, &body, self.timeout).await.map_err(OpaError::Fetch)?;
        let allow = decision(&answer).map_err(OpaError::Answer)?;
        if let Some(key) = key {
            self.state.put(key, allow, Instant::now(), self.ttl);
        }
        Ok(allow)
    }
}

/// The decision in a Data API answer: `{"result": bool}`, `{"result": {"allow": bool}}`; no `result` (or no
/// `allow` in it) is an undefined decision, which denies.
pub(crate) fn decision(answer: &Value) -> Result<bool, &'static str> {
    let Value::Object(answer) = answer else {
        return Err("the answer is not a JSON object");
    };
    match answer.get("result") {
        None => Ok(false),
        Some(Value::Bool(allow)) => Ok(*allow),
        Some(Value::Object(result)) => match result.get("allow") {
            None => Ok(false),
            Some(Value::Bool(allow)) => Ok(*allow),
            Some(_) => Err("`result.allow` is not a boolean"),
        },
        Some(_) => Err("`result` is neither a boolean nor an object with `allow`"),
    }
}

/// The `input` document sent to OPA.
pub(crate) fn input_document(input: &AuthzInput<'_>, include_headers: &[HeaderName]) -> Value {
    let mut query = Map::new();
    for pair in input.uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let values = query.entry(decode_component(k).into_owned()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(Value::String(decode_component(v).into_owned()));
        }
    }
    let mut headers = Map::new();
    for name in include_headers {
        let mut values = input.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
        if let Some(first) = values.next() {
            let joined = values.fold(first.into_owned(), |mut acc, v| {
                acc.push_str(", ");
                acc.push_str(&v);
                acc
            });
            headers.insert(name.as_str().to_string(), Value::String(joined));
        }
    }
    json!({
        "method": input.method.as_str(),
        "path": input.uri.path(),
        "query": query,
        "headers": headers,
        "client_ip": input.client_ip.to_string(),
        "route": input.route,
        "identity": input.identity.map(identity_document),
    })
}

fn identity_document(id: &Identity) -> Value {
    let strs = |v: &[Arc<str>]| v.iter().map(|s| Value::String(s.to_string())).collect::<Vec<_>>();
    json!({
        "source": id.source.as_str(),
        "subject": id.subject.as_deref(),
        "consumer": id.consumer.as_ref().map(|c| &*c.id),
        "plan": id.plan.as_deref(),
        "roles": strs(&id.roles),
        "scopes": strs(&id.scopes),
        "claims": id.claims.as_deref(),
    })
}

/// SHA-256 of the canonical JSON of `document` (object keys sorted, no white space).
pub(crate) fn cache_key(document: &Value) -> [u8; 32] {
    let mut hasher = Hasher(digest::Context::new(&digest::SHA256));
    canonical(document, &mut hasher);
    let mut key = [0u8; 32];
    key.copy_from_slice(hasher.0.finish().as_ref());
    key
}

struct Hasher(digest::Context);

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn canonical(value: &Value, out: &mut Hasher) {
    match value {
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                canonical(item, out);
            }
            let _ = out.write_all(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let _ = out.write_all(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                let _ = serde_json::to_writer(&mut *out, k);
                let _ = out.write_all(b":");
                canonical(v, out);
            }
            let _ = out.write_all(b"}");
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}
