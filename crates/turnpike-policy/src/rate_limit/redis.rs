//! The shared store: rate-limit counters in Redis (`server.redis`), so that every gateway instance counts against
//! the same numbers. One [`RedisStore`] serves every policy whose `store` is `redis` or `hybrid`.
//!
//! **Keys.** A counter lives under `<key_prefix>{<logical key>}`: the whole logical key is the hash tag, so each
//! counter is one slot of a Redis Cluster and every script touches one key only. Every key has a TTL: about the
//! time after which its counter is back to its initial state (the window's end for a fixed window, two windows for
//! a sliding window, one window after the newest entry of a sliding log, the time to refill for a token bucket,
//! the theoretical arrival time for a leaky bucket, 60 s after the last request allowed for a concurrency limit),
//! so Redis holds only live counters.
//!
//! **Decisions.** Each algorithm is a Lua script (`redis/*.lua`, after `redis/prelude.lua`) that mirrors
//! [`Algorithm::take`] and [`Algorithm::give_back`] line for line, so a counter in Redis allows, refuses and
//! reports remaining units exactly as one in the local store would. A call pipelines one `EVALSHA` per item in
//! one round trip; a server that does not know a script (restarted, `SCRIPT FLUSH`, failed over) gets it again
//! through `EVAL` for the items it refused, in a second round trip. Items are decided independently: a
//! multi-item take is not atomic across keys (it does not need to be: the caller gives back what the other limits'
//! refusal made useless); when one item fails (a Redis error), the call fails and the others may have been taken.
//! A key holding another algorithm's counter (the limit changed algorithm in a reload) is started afresh by a take
//! and left alone by a give-back, as [`Algorithm::take`] does with a counter of another kind.
//!
//! **Servers.** Redis 5 or later, or Valkey (scripts replicated by effects, so they may read `TIME`). The client
//! talks to one server (a primary, or a proxy in front of a cluster): the keys are ready for Redis Cluster, but a
//! cluster-aware client is not built in.
//!
//! **Time.** The scripts read the time from Redis (`TIME`), so every instance shares one clock and window
//! boundaries agree whatever the gateways' clocks say. Inside Lua, times are whole microseconds (Lua numbers are
//! doubles: nanoseconds since the epoch would not be exact); windows are passed as `ns / 1000`, and durations come
//! back as nanoseconds (a leaky bucket's, whose emission interval need not be whole µs, are exact ns). Calendar
//! periods (day, week, month in a time zone) are computed here, with [`super::calendar::Calendar::bounds`] at the
//! gateway's clock, and passed to the script. The time a take was decided at is returned
//! ([`RedisVerdict::at`]) for [`RedisStore::give_back`].
//!
//! **Failures.** No I/O happens in [`RedisStore::new`]. The store connects on first use, in the background, with
//! one multiplexed connection; when it breaks (the server closed it, or it has answered nothing for a second while
//! calls time out) the next call reconnects, and reconnections that fail back off from 50 ms to 1 s, during which
//! calls fail at once. Every call is bounded by `server.redis.timeout`, connecting included: on a timeout, a broken
//! connection or a Redis error it returns [`StoreError`] and the policy's `on_store_error` decides. A take that
//! timed out may still have been applied by Redis (as with any remote counter).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::algorithm::{Algorithm, Nanos, Quota, Verdict, WindowSpan, emission_interval};
use super::config::RedisConfig;

/// How long a concurrency count lives after the last request it allowed: slots that were never given back (a
/// gateway crashed) are freed after that much quiet.
pub const CONCURRENCY_TTL: Duration = Duration::from_secs(60);

/// The longest a connection attempt may take (in the background: calls wait for it at most their timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection on which calls time out and nothing has succeeded for this long is dropped and made anew; one that
/// breaks younger than this counts as a failed attempt (backed off from).
const STALE_AFTER: Duration = Duration::from_secs(1);

/// Backoff between failed connection attempts: doubles from the first to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The least key TTL (ms) when a test drives time: the keys must outlive the test, whatever time it simulates.
const DRIVEN_MIN_TTL_MS: u64 = 600_000;

/// One request against one limit, for [`RedisStore::take`].
#[derive(Debug, Clone, Copy)]
pub struct RedisTake<'a> {
    /// The logical key (policy, limit, request values), without the store's prefix.
    pub key: &'a str,
    /// How the limit counts.
    pub algorithm: &'a Algorithm,
    /// The caller's numbers.
    pub quota: Quota,
    /// Units the request takes.
    pub cost: u64,
}

/// What an allowed [`RedisTake`] took, given back by [`RedisStore::give_back`].
#[derive(Debug, Clone, Copy)]
pub struct RedisGiveBack<'a> {
    /// The logical key of the take.
    pub key: &'a str,
    /// The limit's algorithm.
    pub algorithm: &'a Algorithm,
    /// The caller's numbers.
    pub quota: Quota,
    /// The units the take took.
    pub cost: u64,
    /// [`RedisVerdict::at`] of the take.
    pub taken_at: Nanos,
}

/// A decision of the store: the verdict, and the Redis time it was made at (ns since the epoch, whole µs), to pass
/// as [`RedisGiveBack::taken_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisVerdict {
    /// What the limit says, as [`Algorithm::take`] would.
    pub verdict: Verdict,
    /// When it was decided, by the Redis server's clock.
    pub at: Nanos,
}

/// Why the store could not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Redis did not answer within `server.redis.timeout` (connecting included).
    Timeout,
    /// No connection: refused, closed, TLS or authentication failed, or waiting before the next attempt.
    Connection(String),
    /// Redis answered with an error (a script failed, out of memory, ...) or an unexpected reply.
    Script(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The messages come from the client and the server: neither includes the password.
        match self {
            StoreError::Timeout => f.write_str("redis did not answer in time"),
            StoreError::Connection(reason) => write!(f, "no redis connection: {reason}"),
            StoreError::Script(reason) => write!(f, "redis error: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The shared Redis store of rate-limit counters (one per `server.redis`).
pub struct RedisStore {
    link: Arc<Link>,
    scripts: Scripts,
    timeout: Duration,
    prefix: String,
    /// `host:port/db`, for `Debug`.
    target: String,
    /// Sliding log members are `<nonce_base><counter>:<unit>`: unique across calls and instances.
    nonce_base: u64,
    nonce: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a script is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Take,
    Batch,
    Give,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Take => "take",
            Op::Batch => "batch",
            Op::Give => "give",
        }
    }
}

impl RedisStore {
    /// Checks `config` and returns the store; no I/O (but reading `ca_file`): it connects on first use and
    /// reconnects by itself. Errors: the URL does not parse, its scheme is not `redis` or `rediss`, it carries
    /// credentials, a query or a fragment (give `username` and `password`), `ca_file` is given for `redis://`, is
    /// unreadable or holds no certificate, or `key_prefix` has a brace (it would become the hash tag).
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let url = redis::parse_redis_url(&config.url).ok_or("`url`: not a redis URL (redis://host:port/db)")?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            scheme => return Err(format!("`url`: the scheme must be redis or rediss, not {scheme}")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            // Not echoed: it holds a secret.
            return Err("`url`: give credentials in `username` and `password`, not in the URL".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("`url`: only host, port and database are read; remove the query or fragment".into());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("`url`: no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port().unwrap_or(6379);
        let db = match url.path().trim_matches('/') {
            "" => 0,
            db => db.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| format!("`url`: bad database `{db}`"))?,
        };
        if config.key_prefix.contains(['{', '}']) {
            return Err("`key_prefix`: no `{` or `}` (each counter's key is its hash tag)".into());
        }
        let target = format!("{host}:{port}/{db}");

        let addr = if tls {
            ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose());
        }
        let info = addr.into_connection_info().map_err(|err| format!("`url`: {err}"))?.set_redis_settings(settings);
        let client = match &config.ca_file {
            None => Client::open(info),
            Some(_) if !tls => return Err("`ca_file` is for `rediss://` URLs".into()),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|err| format!("`ca_file` {path}: {err}"))?;
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| format!("`ca_file` {path}: {err}"))?;
                if certs.is_empty() {
                    return Err(format!("`ca_file` {path}: no certificate in it"));
                }
                Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
            }
        }
        .map_err(|err| format!("`url`: {err}"))?;

        let timeout = config.timeout.0;
        let connect_timeout = CONNECT_TIMEOUT.max(timeout);
        // Calls are bounded here, by `timeout`: the client's own response timeout is off.
        let connection_config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(connect_timeout)).set_response_timeout(None);
        let nonce_base = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
            hasher.finish()
        };
        Ok(Self {
            link: Arc::new(Link {
                client,
                config: connection_config,
                connect_timeout,
                state: Mutex::new(LinkState::Down { retry_at: None, failures: 0, error: String::new() }),
                changed: Notify::new(),
                next_id: AtomicU64::new(1),
            }),
            scripts: Scripts::new(),
            timeout,
            prefix: config.key_prefix.clone(),
            target,
            nonce_base,
            nonce: AtomicU64::new(0),
        })
    }

    /// Decides every item, in one round trip: each is taken from its own key by its algorithm, as
    /// [`Algorithm::take`] would, independently of the others. The verdicts come in the order of `items`, each with
    /// the Redis time it was decided at (for [`RedisStore::give_back`]). Bounded by `server.redis.timeout`.
    pub async fn take(&self, items: &[RedisTake<'_>]) -> Result<Vec<RedisVerdict>, StoreError> {
        self.take_at(items, None).await
    }

    /// Gives back what allowed takes took (another limit refused the request, or a concurrency slot was
    /// released), as [`Algorithm::give_back`] would, at the Redis time. Bounded by `server.redis.timeout`.
    pub async fn give_back(&self, items: &[RedisGiveBack<'_>]) -> Result<(), StoreError> {
        self.give_back_at(items, None).await
    }

    /// Hybrid mode: takes as many units as fit, up to `want` (0 counts as 1), at once from one key: the largest
    /// cost [`Algorithm::take`] would allow now. Returns the units granted (`0..=want`) and the verdict of taking
    /// them (remaining, reset; a shaping leaky bucket's delay is the last unit's); when none fit, the refusal of a
    /// single unit (with its `retry_after`). A concurrency limit grants 0 or 1.
    pub async fn take_batch(&self, item: &RedisTake<'_>, want: u64) -> Result<(u64, RedisVerdict), StoreError> {
        self.take_batch_at(item, want, None).await
    }

    /// [`Self::take`] at `now` (tests drive time; `None`: the Redis clock).
    async fn take_at(&self, items: &[RedisTake<'_>], now: Option<Nanos>) -> Result<Vec<RedisVerdict>, StoreError> {
        let calls: Vec<Call<'_>> = items
            .iter()
            .map(|item| self.call(Op::Take, item.key, item.algorithm, item.quota, item.cost, None, now))
            .collect();
        let replies = self.run(&calls).await?;
        replies.iter().map(|reply| decode(reply).map(|(verdict, _)| verdict)).collect()
    }

    /// [`Self::give_back`] at `now`.
    async fn give_back_at(&self, items: &[RedisGiveBack<'_>], now: Option<Nanos>) -> Result<(), StoreError> {
        let calls: Vec<Call<'_>> = items
            .iter()
            .map(|item| self.call(Op::Give, item.key, item.algorithm, item.quota, item.cost, Some(item.taken_at), now))
            .collect();
        self.run(&calls).await.map(drop)
    }

    /// [`Self::take_batch`] at `now`.
    async fn take_batch_at(
        &self,
        item: &RedisTake<'_>,
        want: u64,
        now: Option<Nanos>,
    ) -> Result<(u64, RedisVerdict), StoreError> {
        let call = self.call(Op::Batch, item.key, item.algorithm, item.quota, want.max(1), None, now);
        let replies = self.run(std::slice::from_ref(&call)).await?;
        let reply = replies.first().ok_or_else(|| StoreError::Script("no reply".into()))?;
        let (verdict, granted) = decode(reply)?;
        Ok((granted, verdict))
    }

    /// The script call for one item.
    #[allow(clippy::too_many_arguments)]
    fn call<'s>(
        &'s self,
        op: Op,
        key: &str,
        algorithm: &Algorithm,
        quota: Quota,
        cost: u64,
        taken_at: Option<Nanos>,
        now: Option<Nanos>,
    ) -> Call<'s> {
        let us = |ns: Nanos| (ns / 1000).max(1).to_string();
        let nonce = if matches!(algorithm, Algorithm::SlidingLog { .. }) && op != Op::Give {
            format!("{:x}.{:x}", self.nonce_base, self.nonce.fetch_add(1, Ordering::Relaxed))
        } else {
            String::new()
        };
        let mut args = vec![
            op.as_str().to_string(),
            now.map_or(String::new(), |now| (now / 1000).to_string()),
            if now.is_some() { DRIVEN_MIN_TTL_MS } else { 1 }.to_string(),
            quota.limit.to_string(),
            quota.burst.to_string(),
            cost.to_string(),
            taken_at.map_or(String::new(), |at| (at / 1000).to_string()),
            nonce,
        ];
        let script = match algorithm {
            Algorithm::FixedWindow(WindowSpan::Every(window)) => {
                args.push(us(*window));
                &self.scripts.fixed_window
            }
            Algorithm::FixedWindow(WindowSpan::Calendar(calendar)) => {
                let (start, end) = calendar.bounds(now.unwrap_or_else(wall_clock));
                args.extend([String::new(), (start / 1000).to_string(), (end / 1000).to_string()]);
                args.push(taken_at.map_or(String::new(), |at| (calendar.bounds(at).0 / 1000).to_string()));
                &self.scripts.fixed_window
            }
            Algorithm::SlidingLog { window } => {
                args.push(us(*window));
                &self.scripts.sliding_log
            }
            Algorithm::SlidingWindow { window } => {
                args.push(us(*window));
                &self.scripts.sliding_window
            }
            Algorithm::TokenBucket { window } => {
                args.push(us(*window));
                &self.scripts.token_bucket
            }
            Algorithm::LeakyBucket { window, max_delay } => {
                args.push(emission_interval(*window, quota.limit).to_string());
                args.push(max_delay.map_or(String::new(), |delay| delay.to_string()));
                &self.scripts.leaky_bucket
            }
            Algorithm::Concurrency => {
                args.push(CONCURRENCY_TTL.as_micros().to_string());
                &self.scripts.concurrency
            }
        };
        Call { script, key: self.redis_key(key), args }
    }

    /// `<prefix>{<key>}`: the logical key is the hash tag.
    fn redis_key(&self, key: &str) -> String {
        let mut redis_key = String::with_capacity(self.prefix.len() + key.len() + 2);
        redis_key.push_str(&self.prefix);
        redis_key.push('{');
        redis_key.push_str(key);
        redis_key.push('}');
        redis_key
    }

    /// Runs the calls in one pipeline (a second one for scripts the server did not know), within the timeout.
    async fn run(&self, calls: &[Call<'_>]) -> Result<Vec<Value>, StoreError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + self.timeout;
        let (mut conn, id) = match tokio::time::timeout_at(deadline, self.link.connection()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(StoreError::Timeout),
        };
        match tokio::time::timeout_at(deadline, execute(&mut conn, calls)).await {
            Err(_) => {
                self.link.timed_out(id);
                Err(StoreError::Timeout)
            }
            // The pipeline as a whole failed (closed, reset, a protocol error): the connection is done for.
            Ok(Err(err)) => {
                self.link.failed(id, err.to_string());
                Err(StoreError::Connection(err.to_string()))
            }
            Ok(Ok(values)) => {
                let error = values.iter().find_map(|value| match value {
                    Value::ServerError(err) => Some(err),
                    _ => None,
                });
                match error {
                    None => {
                        self.link.succeeded(id);
                        Ok(values)
                    }
                    // The server wants credentials the connection did not give, or closes it.
                    Some(err)
                        if matches!(err.code(), "NOAUTH" | "WRONGPASS")
                            || err.details().is_some_and(|details| details.starts_with("Protocol error")) =>
                    {
                        self.link.failed(id, err.to_string());
                        Err(StoreError::Connection(err.to_string()))
                    }
                    Some(err) => {
                        self.link.succeeded(id);
                        Err(StoreError::Script(err.to_string()))
                    }
                }
            }
        }
    }
}

/// One script call: `EVALSHA <sha> 1 <key> <args>`.
struct Call<'s> {
    script: &'s LuaScript,
    key: String,
    args: Vec<String>,
}

impl Call<'_> {
    fn command(&self, eval: bool) -> Cmd {
        let mut cmd = if eval { redis::cmd("EVAL") } else { redis::cmd("EVALSHA") };
        cmd.arg(if eval { &self.script.code } else { &self.script.sha }).arg(1).arg(&self.key).arg(&self.args);
        cmd
    }
}

/// Sends the calls pipelined; those the server answered `NOSCRIPT` are sent again with their script (`EVAL`,
/// which also loads it: on a cluster, on the node that needs it). Server errors stay in the values.
async fn execute(conn: &mut MultiplexedConnection, calls: &[Call<'_>]) -> redis::RedisResult<Vec<Value>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(call.command(false));
    }
    let mut values: Vec<Value> = pipe.query_async(conn).await?;
    let missing: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, value)| matches!(value, Value::ServerError(err) if err.code() == "NOSCRIPT"))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for &i in &missing {
            if let Some(call) = calls.get(i) {
                pipe.add_command(call.command(true));
            }
        }
        let again: Vec<Value> = pipe.query_async(conn).await?;
        for (i, value) in missing.into_iter().zip(again) {
            if let Some(slot) = values.get_mut(i) {
                *slot = value;
            }
        }
    }
    if values.len() != calls.len() {
        return Err(redis::RedisError::from((redis::ErrorKind::Client, "a reply is missing")));
    }
    Ok(values)
}

/// A take or batch reply: `{allowed, remaining, reset_ns, retry_after_ns, delay_ns, now_us, granted}`.
fn decode(value: &Value) -> Result<(RedisVerdict, u64), StoreError> {
    let bad = || StoreError::Script(format!("unexpected reply {value:?}"));
    let Value::Array(fields) = value else { return Err(bad()) };
    let mut numbers = [0u64; 7];
    if fields.len() != numbers.len() {
        return Err(bad());
    }
    for (number, field) in numbers.iter_mut().zip(fields) {
        let Value::Int(n) = field else { return Err(bad()) };
        *number = u64::try_from(*n).unwrap_or(0);
    }
    let [allowed, remaining, reset, retry_after, delay, now_us, granted] = numbers;
    let verdict = Verdict { allowed: allowed == 1, remaining, reset, retry_after, delay };
    Ok((RedisVerdict { verdict, at: now_us.saturating_mul(1000) }, granted))
}

/// Now by this machine's clock, ns since the epoch (calendar periods are computed by the gateway).
fn wall_clock() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A script: its code (prelude and algorithm) and SHA-1.
struct LuaScript {
    code: String,
    sha: String,
}

impl LuaScript {
    fn new(body: &str) -> Self {
        let code = format!("{}\n{body}", include_str!("redis/prelude.lua"));
        let sha = redis::Script::new(&code).get_hash().to_string();
        Self { code, sha }
    }
}

struct Scripts {
    fixed_window: LuaScript,
    sliding_log: LuaScript,
    sliding_window: LuaScript,
    token_bucket: LuaScript,
    leaky_bucket: LuaScript,
    concurrency: LuaScript,
}

impl Scripts {
    fn new() -> Self {
        Self {
            fixed_window: LuaScript::new(include_str!("redis/fixed_window.lua")),
            sliding_log: LuaScript::new(include_str!("redis/sliding_log.lua")),
            sliding_window: LuaScript::new(include_str!("redis/sliding_window.lua")),
            token_bucket: LuaScript::new(include_str!("redis/token_bucket.lua")),
            leaky_bucket: LuaScript::new(include_str!("redis/leaky_bucket.lua")),
            concurrency: LuaScript::new(include_str!("redis/concurrency.lua")),
        }
    }
}

/// The connection: made in the background on demand, shared by every call, dropped when it breaks.
struct Link {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    state: Mutex<LinkState>,
    /// Signalled when a connection attempt ends.
    changed: Notify,
    next_id: AtomicU64,
}

enum LinkState {
    /// No connection: the next call starts an attempt, once `retry_at` has passed.
    Down { retry_at: Option<Instant>, failures: u32, error: String },
    /// An attempt is under way (started at `since`; one that outlived its timeout, its task lost with its
    /// runtime, is started again).
    Connecting { since: Instant },
    /// Connected; `id` tells this connection from later ones. `failures`: attempts that failed before it, and
    /// connections that broke young (a server that accepts connections and then drops them is backed off from).
    Up { conn: MultiplexedConnection, id: u64, since: Instant, last_ok: Instant, failures: u32 },
}

impl LinkState {
    /// Down after `failures` failed attempts and one more: the next waits 50 ms, doubling up to 1 s.
    fn down_after(failures: u32, error: String) -> Self {
        let backoff = BACKOFF.0.saturating_mul(1 << failures.min(10)).min(BACKOFF.1);
        LinkState::Down { retry_at: Some(Instant::now() + backoff), failures: failures.saturating_add(1), error }
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, once there is one. Fails at once while waiting to retry a failed attempt.
    async fn connection(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64), StoreError> {
        loop {
            // Registered before looking, so the end of an attempt cannot be missed.
            let attempt_ended = self.changed.notified();
            {
                let mut state = self.lock();
                match &*state {
                    LinkState::Up { conn, id, .. } => return Ok((conn.clone(), *id)),
                    LinkState::Connecting { since } if since.elapsed() <= self.connect_timeout + STALE_AFTER => {}
                    LinkState::Connecting { .. } => {
                        *state = LinkState::Connecting { since: Instant::now() };
                        tokio::spawn(Arc::clone(self).connect(0));
                    }
                    LinkState::Down { retry_at, failures, error } => {
                        if retry_at.is_some_and(|at| Instant::now() < at) {
                            return Err(StoreError::Connection(error.clone()));
                        }
                        let failures = *failures;
                        *state = LinkState::Connecting { since: Instant::now() };
                        tokio::spawn(Arc::clone(self).connect(failures));
                    }
                }
            }
            attempt_ended.await;
        }
    }

    /// One connection attempt (not cancelled by the calls that wait for it).
    async fn connect(self: Arc<Self>, failures: u32) {
        let attempt = self.client.get_multiplexed_async_connection_with_config(&self.config);
        let error = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(conn)) => {
                if failures > 0 {
                    tracing::info!("rate limits: redis connection restored");
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                *self.lock() = LinkState::Up { conn, id, since: now, last_ok: now, failures };
                self.changed.notify_waiters();
                return;
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("connecting took over {} ms", self.connect_timeout.as_millis()),
        };
        if failures == 0 {
            tracing::warn!(%error, "rate limits: cannot connect to redis");
        }
        *self.lock() = LinkState::down_after(failures, error);
        self.changed.notify_waiters();
    }

    /// A call on connection `id` answered.
    fn succeeded(&self, id: u64) {
        if let LinkState::Up { id: current, last_ok, .. } = &mut *self.lock()
            && *current == id
        {
            *last_ok = Instant::now();
        }
    }

    /// Connection `id` broke: the next call makes a new one (at once, unless it broke young).
    fn failed(&self, id: u64, error: String) {
        let mut state = self.lock();
        if let LinkState::Up { id: current, since, failures, .. } = &*state
            && *current == id
        {
            if since.elapsed() < STALE_AFTER {
                *state = LinkState::down_after(*failures, error);
            } else {
                tracing::warn!(%error, "rate limits: redis connection lost");
                *state = LinkState::Down { retry_at: None, failures: 0, error };
            }
        }
    }

    /// A call on connection `id` timed out: drop the connection if nothing has succeeded on it for a while (the
    /// server or the network is stuck; a new connection finds out whether it is still there).
    fn timed_out(&self, id: u64) {
        let mut state = self.lock();
        if matches!(&*state, LinkState::Up { id: current, last_ok, .. } if *current == id && last_ok.elapsed() > STALE_AFTER)
        {
            tracing::warn!("rate limits: redis stopped answering, reconnecting");
            *state = LinkState::Down { retry_at: None, failures: 0, error: "redis stopped answering".into() };
        }
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
