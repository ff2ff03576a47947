//! `JwtState`: what a JWT policy keeps across reloads: the current key set, the verified-token cache, and the
//! fetching of keys from a JWKS URL (single flight, rate-limited, a failure never replaces working keys), with
//! its background refresh task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::cache::TokenCache;
use super::keys::KeySet;
use crate::fetch::Fetcher;

/// While no key was ever loaded, a fetch may be retried this often at most (instead of `min_refresh_interval`),
/// so a gateway started while its identity provider was down recovers quickly.
const NO_KEYS_RETRY: Duration = Duration::from_secs(1);

/// Where the keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// `secret` or `keys`: loaded at compile time, never fetched.
    Static,
    /// A JWKS URL.
    Jwks { url: String, client: Client },
    /// OIDC discovery: the JWKS URL comes from the issuer's configuration document.
    Discovery { url: String, issuer: Option<String>, allow_http: bool, client: Client },
}

/// The HTTP client for the key source.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// The system's roots, loaded on first use (compiling never reads them).
    System,
    /// A configured private CA.
    Ca(Fetcher),
}

impl Client {
    fn fetcher(&self) -> Fetcher {
        match self {
            Client::System => Fetcher::system(),
            Client::Ca(fetcher) => fetcher.clone(),
        }
    }
}

/// The refresh settings of the newest compiled policy using this state (thresholds belong to the snapshot;
/// the running task reads them here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshSettings {
    pub(crate) refresh_interval: Duration,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) timeout: Duration,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// No key was ever loaded.
    NoKeys,
    /// A token names a `kid` the key set does not have.
    UnknownKid,
    /// The background interval.
    Interval,
}

/// Counters for metrics, the admin API and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JwtStats {
    /// Keys currently loaded.
    pub keys: usize,
    /// Signature checks made (a cache hit makes none).
    pub signature_checks: u64,
    /// Key fetches started (JWKS and discovery sources).
    pub fetches: u64,
    /// Key fetches that failed (the previous keys were kept).
    pub fetch_failures: u64,
    /// Tokens in the verified-token cache (some may have expired and not yet been swept).
    pub cached_tokens: usize,
}

#[derive(Debug, Default)]
struct Gate {
    /// When the last fetch started (rate limit).
    last_attempt: Option<Instant>,
    /// When the last fetch ended (callers that waited for it do not fetch again).
    last_done: Option<Instant>,
    /// The JWKS URL found by discovery, until a fetch fails.
    discovered: Option<String>,
}

/// Runtime state of one JWT policy, kept across reloads by the registry while its key source is unchanged.
pub struct JwtState {
    name: String,
    source: KeySource,
    keys: RwLock<Option<Arc<KeySet>>>,
    pub(crate) cache: TokenCache,
    gate: tokio::sync::Mutex<Gate>,
    settings: Mutex<RefreshSettings>,
    last_fetch_ok: AtomicBool,
    /// When the last fetch ended, whatever caused it: the background refresh is due an interval after it.
    last_fetch_done: Mutex<Option<Instant>>,
    task_started: AtomicBool,
    task: Mutex<Option<AbortHandle>>,
    signature_checks: AtomicU64,
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
}

impl std::fmt::Debug for JwtState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtState").field("name", &self.name).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Drop for JwtState {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl JwtState {
    pub(crate) fn new(name: String, source: KeySource, keys: Option<KeySet>, settings: RefreshSettings) -> Self {
        Self {
            name,
            source,
            keys: RwLock::new(keys.map(Arc::new)),
            cache: TokenCache::default(),
            gate: tokio::sync::Mutex::new(Gate::default()),
            settings: Mutex::new(settings),
            last_fetch_ok: AtomicBool::new(true),
            last_fetch_done: Mutex::new(None),
            task_started: AtomicBool::new(false),
            task: Mutex::new(None),
            signature_checks: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetch_failures: AtomicU64::new(0),
        }
    }

    /// The registry key (policy id and key-source fingerprint).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current counters.
    pub fn stats(&self) -> JwtStats {
        JwtStats {
            keys: self.current().map_or(0, |k| k.len()),
            signature_checks: self.signature_checks.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            fetch_failures: self.fetch_failures.load(Ordering::Relaxed),
            cached_tokens: self.cache.len(),
        }
    }

    pub(crate) fn count_signature_check(&self) {
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        !matches!(self.source, KeySource::Static)
    }

    /// The current key set; `None` until a fetch succeeded.
    pub(crate) fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_settings(&self, settings: RefreshSettings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    fn settings(&self) -> RefreshSettings {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the background refresh task once, for fetched keys. It holds only a weak reference and is aborted
    /// when the state is dropped.
    pub(crate) fn ensure_refresh_task(self: &Arc<Self>) {
        if !self.is_dynamic()
            || self.task_started.load(Ordering::Acquire)
            || self.task_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let handle = tokio::spawn(refresh_loop(Arc::downgrade(self)));
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.abort_handle());
    }

    /// Fetches the keys unless another caller just did or the rate limit says no, waiting at most until
    /// `deadline` (for the fetch in flight, or for its own). Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self, trigger: Trigger, deadline: Instant) {
        if !self.is_dynamic() {
            return;
        }
        let asked = Instant::now();
        let Ok(mut gate) = tokio::time::timeout_at(deadline, self.gate.lock()).await else { return };
        if gate.last_done.is_some_and(|done| done >= asked) {
            return; // a fetch ended while this caller waited: its result is what a new one would get
        }
        let settings = self.settings();
        if trigger != Trigger::Interval {
            let min = if self.current().is_some() {
                settings.min_refresh_interval
            } else {
                settings.min_refresh_interval.min(NO_KEYS_RETRY)
            };
            let now = Instant::now();
            if gate.last_attempt.and_then(|t| t.checked_add(min)).is_some_and(|next| now < next) {
                return;
            }
        }
        gate.last_attempt = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch(&mut gate, deadline).await;
        let done = Instant::now();
        gate.last_done = Some(done);
        *self.last_fetch_done.lock().unwrap_or_else(PoisonError::into_inner) = Some(done);
        match result {
            Ok((set, skipped)) => {
                self.last_fetch_ok.store(true, Ordering::Relaxed);
                tracing::debug!(policy = %self.name, keys = set.len(), skipped, ?trigger, "jwt keys fetched");
                self.install(set);
            }
            Err(error) => {
                self.last_fetch_ok.store(false, Ordering::Relaxed);
                self.fetch_failures.fetch_add(1, Ordering::Relaxed);
                gate.discovered = None;
                let kept = self.current().map_or(0, |k| k.len());
                tracing::warn!(policy = %self.name, %error, kept_keys = kept, ?trigger,
                    "jwt key fetch failed; keeping the keys already loaded");
            }
        }
    }

    /// Swaps in a new key set. When a key disappeared (rotated out, maybe revoked), cached tokens are forgotten
    /// so none signed by it is accepted any more without a signature check.
    fn install(&self, set: KeySet) {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let removed = keys.as_ref().is_some_and(|old| !set.contains_all(old));
        *keys = Some(Arc::new(set));
        drop(keys);
        if removed {
            self.cache.clear();
        }
    }

    async fn fetch(&self, gate: &mut Gate, deadline: Instant) -> Result<(KeySet, usize), String> {
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let (url, client) = match &self.source {
            KeySource::Static => return Err("static keys are not fetched".into()),
            KeySource::Jwks { url, client } => (url.clone(), client),
            KeySource::Discovery { url, issuer, allow_http, client } => match &gate.discovered {
                Some(jwks) => (jwks.clone(), client),
                None => {
                    let doc = client.fetcher().get_json(url, remaining()).await.map_err(|e| e.to_string())?;
                    let jwks = discovered_jwks_uri(&doc, issuer.as_deref(), *allow_http)?;
                    gate.discovered = Some(jwks.clone());
                    (jwks, client)
                }
            },
        };
        let doc = client.fetcher().get_json(&url, remaining()).await.map_err(|e| e.to_string())?;
        KeySet::from_jwks(&doc).map_err(str::to_string)
    }

    /// When the background refresh is next due: `refresh_interval` after the last fetch, `min_refresh_interval`
    /// after a failed one (or while none has ended yet).
    fn next_refresh_due(&self) -> Instant {
        let settings = self.settings();
        let now = Instant::now();
        let Some(last) = *self.last_fetch_done.lock().unwrap_or_else(PoisonError::into_inner) else {
            return now + settings.min_refresh_interval;
        };
        let healthy = self.last_fetch_ok.load(Ordering::Relaxed) && self.current().is_some();
        let interval = if healthy { settings.refresh_interval } else { settings.min_refresh_interval };
        last.checked_add(interval).unwrap_or(now + settings.refresh_interval)
    }
}

/// The `jwks_uri` of an OIDC configuration document, checked.
fn discovered_jwks_uri(doc: &Value, issuer: Option<&str>, allow_http: bool) -> Result<String, String> {
    if let Some(expected) = issuer {
        match doc.get("issuer").and_then(Value::as_str) {
            Some(found) if found == expected => {}
            Some(found) => return Err(format!("discovery document names issuer `{found}`, expected `{expected}`")),
            None => return Err("discovery document has no `issuer`".into()),
        }
    }
    let jwks = doc.get("jwks_uri").and_then(Value::as_str).ok_or("discovery document has no `jwks_uri`")?;
    super::check_key_url(jwks, allow_http)?;
    Ok(jwks.to_string())
}

/// The background refresh: sleeps until the next refresh is due (a fetch caused by a request in between moves it
/// later), then fetches. Holds the state only while fetching, so dropping the state ends it (`Drop` also aborts
/// it, so it does not even wait for its timer).
async fn refresh_loop(weak: Weak<JwtState>) {
    loop {
        let due = match weak.upgrade() {
            Some(state) => state.next_refresh_due(),
            None => return,
        };
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
            continue;
        }
        let Some(state) = weak.upgrade() else { return };
        let deadline = Instant::now() + state.settings().timeout;
        state.refresh(Trigger::Interval, deadline).await;
    }
}
