//! Tests of the Redis store against a real server: the shared one at 127.0.0.1:6379 (skipped, loudly, when it is
//! not there, unless `CI=true`), and `redis-server` children for failures, authentication and TLS.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::super::algorithm::{Algorithm, Counter, Nanos, Quota, SECOND, Verdict, WindowSpan};
use super::super::calendar::{Calendar, CalendarUnit};
use super::super::config::RedisConfig;
use super::{RedisGiveBack, RedisStore, RedisTake, RedisVerdict, StoreError};
use crate::Secret;

const SHARED: &str = "127.0.0.1:6379";
const MS: Nanos = 1_000_000;

/// Whether the shared Redis answers; if not, says so loudly (and fails under `CI=true`).
fn shared_redis() -> bool {
    let reachable = SHARED
        .parse()
        .ok()
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    if !reachable {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "redis not reachable at {SHARED} (CI=true)");
        eprintln!("SKIPPED: redis not reachable at {SHARED}");
    }
    reachable
}

/// Whether `redis-server` can be run (for the tests that start their own).
fn redis_server_available() -> bool {
    let available = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !available {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "redis-server not found (CI=true)");
        eprintln!("SKIPPED: redis-server not found");
    }
    available
}

fn random() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        url: url.into(),
        username: None,
        password: None,
        ca_file: None,
        timeout: turnpike_config::Duration(Duration::from_secs(1)),
        key_prefix: format!("turnpike-test:{:016x}:", random()),
    }
}

/// A store on the shared Redis with a prefix of its own; its keys are deleted when it is dropped.
struct Shared {
    store: RedisStore,
    prefix: String,
}

impl Shared {
    fn new() -> Option<Self> {
        if !shared_redis() {
            return None;
        }
        let config = config(&format!("redis://{SHARED}"));
        Some(Self { store: RedisStore::new(&config).unwrap(), prefix: config.key_prefix })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{{{key}}}", self.prefix)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Ok(mut conn) = sync_conn(SHARED) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

fn sync_conn(addr: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{addr}"))?.get_connection_with_timeout(Duration::from_secs(2))
}

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn assert_same(context: &str, expected: Verdict, got: Verdict) {
    let close = |a: Nanos, b: Nanos| a.abs_diff(b) <= 1000;
    assert!(
        expected.allowed == got.allowed
            && expected.remaining == got.remaining
            && close(expected.reset, got.reset)
            && close(expected.retry_after, got.retry_after)
            && close(expected.delay, got.delay),
        "{context}:\n  rust:  {expected:?}\n  redis: {got:?}"
    );
}

/// Drives `Algorithm::take` / `give_back` on a local counter and the store (with the time override) through the
/// same pseudo-random sequence of time steps (whole µs, at most `max_step`; mostly multiples of `max_step / 15`
/// from a round start, so that times fall exactly on window boundaries and expiries), costs, give-backs and
/// batches: identical decisions and remaining counts, times within 1 µs.
async fn differential(name: &str, algorithm: Algorithm, quota: Quota, start_us: u64, max_step: Nanos, steps: usize) {
    let Some(shared) = Shared::new() else { return };
    let store = &shared.store;
    let mut rng = Rng(name.bytes().fold(17, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let mut counter = algorithm.fresh(quota);
    let mut now_us = start_us;
    let mut taken: Vec<(Nanos, u64)> = Vec::new();
    let (mut allowed, mut refused, mut given, mut batches) = (0, 0, 0, 0);
    let key = "differential";
    for step in 0..steps {
        let quantum = (max_step / 15_000).max(1);
        now_us = match rng.below(10) {
            // Off the grid.
            0 | 1 => now_us + 1 + rng.below(max_step / 1000),
            // Back on it.
            2 => now_us.next_multiple_of(quantum),
            _ => now_us + quantum * (1 + rng.below(15)),
        };
        let now = now_us * 1000;
        let roll = rng.below(100);
        let give_odds = if algorithm == Algorithm::Concurrency { 40 } else { 10 };
        if roll < give_odds && !taken.is_empty() {
            let (taken_at, cost) = taken.swap_remove(rng.below(taken.len() as u64) as usize);
            algorithm.give_back(quota, &mut counter, now, taken_at, cost);
            let item = RedisGiveBack { key, algorithm: &algorithm, quota, cost, taken_at };
            store.give_back_at(&[item], Some(now)).await.unwrap();
            given += 1;
            continue;
        }
        if roll < give_odds + 10 {
            // A batch: the most units, up to `want`, that a take allows.
            let want = 1 + rng.below(quota.limit + 2);
            // A concurrency limit grants one slot at a time.
            let mut units = if algorithm == Algorithm::Concurrency { 1 } else { want };
            let (granted, expected) = loop {
                let mut attempt = counter.clone();
                let verdict = algorithm.take(quota, &mut attempt, now, units);
                if verdict.allowed || units == 1 {
                    counter = attempt;
                    break (if verdict.allowed { units } else { 0 }, verdict);
                }
                units -= 1;
            };
            let item = RedisTake { key, algorithm: &algorithm, quota, cost: want };
            let (got_granted, got) = store.take_batch_at(&item, want, Some(now)).await.unwrap();
            let context = format!("{name} step {step} at {now_us} µs: batch of up to {want}");
            assert_eq!(granted, got_granted, "{context}: units granted");
            assert_same(&context, expected, got.verdict);
            if granted > 0 {
                taken.push((got.at, granted));
            }
            batches += 1;
            continue;
        }
        let cost = match rng.below(20) {
            0 => quota.limit + 1,
            1..=5 => 2 + rng.below(2),
            _ => 1,
        };
        let expected = algorithm.take(quota, &mut counter, now, cost);
        let item = RedisTake { key, algorithm: &algorithm, quota, cost };
        let got = store.take_at(&[item], Some(now)).await.unwrap();
        let context = format!("{name} step {step} at {now_us} µs: cost {cost}");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].at, now, "{context}: the time used");
        assert_same(&context, expected, got[0].verdict);
        if expected.allowed {
            allowed += 1;
            taken.push((now, cost));
        } else {
            refused += 1;
        }
    }
    // The sequence exercised both sides of every decision.
    assert!(allowed > steps / 10 && refused > steps / 20, "{name}: {allowed} allowed, {refused} refused");
    assert!(given > 0 && batches > 0);
}

/// 2026-03-20T00:00:00Z, in µs: sequences of days cross the end of March (daylight saving time in Europe).
const START: u64 = 1_773_964_800_000_000;

#[tokio::test]
async fn fixed_window_every_matches_algorithm() {
    let algorithm = Algorithm::FixedWindow(WindowSpan::Every(SECOND));
    differential("fixed_every", algorithm, Quota { limit: 10, burst: 10 }, START, 150 * MS, 1500).await;
    let algorithm = Algorithm::FixedWindow(WindowSpan::Every(1234 * MS));
    differential("fixed_every_odd", algorithm, Quota { limit: 7, burst: 7 }, START + 777, 300 * MS, 800).await;
}

#[tokio::test]
async fn fixed_window_calendar_matches_algorithm() {
    let day = Calendar::new(CalendarUnit::Day, "Europe/Paris").unwrap();
    let algorithm = Algorithm::FixedWindow(WindowSpan::Calendar(day));
    differential("fixed_calendar", algorithm, Quota { limit: 20, burst: 20 }, START, 3 * 3600 * SECOND, 800).await;
}

#[tokio::test]
async fn sliding_log_matches_algorithm() {
    let algorithm = Algorithm::SlidingLog { window: SECOND };
    differential("sliding_log", algorithm, Quota { limit: 10, burst: 10 }, START, 150 * MS, 1500).await;
}

#[tokio::test]
async fn sliding_window_matches_algorithm() {
    let algorithm = Algorithm::SlidingWindow { window: SECOND };
    differential("sliding_window", algorithm, Quota { limit: 10, burst: 10 }, START, 150 * MS, 1500).await;
    let algorithm = Algorithm::SlidingWindow { window: 700 * MS };
    differential("sliding_window_odd", algorithm, Quota { limit: 7, burst: 7 }, START + 3, 200 * MS, 800).await;
}

#[tokio::test]
async fn token_bucket_matches_algorithm() {
    let algorithm = Algorithm::TokenBucket { window: SECOND };
    differential("token_bucket", algorithm, Quota { limit: 10, burst: 15 }, START, 150 * MS, 1500).await;
    let algorithm = Algorithm::TokenBucket { window: 3 * SECOND };
    differential("token_bucket_odd", algorithm, Quota { limit: 7, burst: 3 }, START + 11, 900 * MS, 800).await;
}

#[tokio::test]
async fn leaky_bucket_policing_matches_algorithm() {
    // 1 s / 3: an emission interval of 333,333,333 ns, not whole µs.
    let algorithm = Algorithm::LeakyBucket { window: SECOND, max_delay: None };
    differential("leaky_police", algorithm, Quota { limit: 3, burst: 4 }, START, 375 * MS, 1500).await;
    // 250 ms: times fall on the bucket's boundaries.
    let algorithm = Algorithm::LeakyBucket { window: SECOND, max_delay: None };
    differential("leaky_police_even", algorithm, Quota { limit: 4, burst: 2 }, START, 375 * MS, 1000).await;
}

#[tokio::test]
async fn leaky_bucket_shaping_matches_algorithm() {
    let algorithm = Algorithm::LeakyBucket { window: SECOND, max_delay: Some(SECOND) };
    differential("leaky_shape", algorithm, Quota { limit: 3, burst: 1 }, START, 375 * MS, 1500).await;
    let algorithm = Algorithm::LeakyBucket { window: SECOND, max_delay: Some(500 * MS) };
    differential("leaky_shape_even", algorithm, Quota { limit: 4, burst: 1 }, START, 375 * MS, 1000).await;
}

#[tokio::test]
async fn concurrency_matches_algorithm() {
    differential("concurrency", Algorithm::Concurrency, Quota { limit: 5, burst: 5 }, START, 10 * MS, 1500).await;
}

#[tokio::test]
async fn scripts_are_reloaded_after_script_flush() {
    let Some(shared) = Shared::new() else { return };
    let algorithm = Algorithm::TokenBucket { window: 3600 * SECOND };
    let item = RedisTake { key: "flush", algorithm: &algorithm, quota: Quota { limit: 10, burst: 10 }, cost: 1 };
    assert_eq!(shared.store.take(&[item]).await.unwrap()[0].verdict.remaining, 9);
    let mut conn = sync_conn(SHARED).unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    let sha = &shared.store.scripts.token_bucket.sha;
    let known: Vec<bool> = redis::cmd("SCRIPT").arg("EXISTS").arg(sha).query(&mut conn).unwrap();
    assert_eq!(known, [false]);
    // The counter goes on where it was.
    assert_eq!(shared.store.take(&[item, item]).await.unwrap()[1].verdict.remaining, 7);
    let known: Vec<bool> = redis::cmd("SCRIPT").arg("EXISTS").arg(sha).query(&mut conn).unwrap();
    assert_eq!(known, [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_are_exact() {
    let Some(shared) = Shared::new() else { return };
    let shared = Arc::new(shared);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let algorithm = Algorithm::TokenBucket { window: 3600 * SECOND };
                let quota = Quota { limit: 100, burst: 100 };
                let mut allowed = 0;
                for _ in 0..4 {
                    let item = RedisTake { key: "contended", algorithm: &algorithm, quota, cost: 1 };
                    allowed += u32::from(shared.store.take(&[item]).await.unwrap()[0].verdict.allowed);
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    assert_eq!(allowed, 100);
}

#[tokio::test]
async fn one_call_decides_several_keys_independently() {
    let Some(shared) = Shared::new() else { return };
    let bucket = Algorithm::TokenBucket { window: SECOND };
    let fixed = Algorithm::FixedWindow(WindowSpan::Every(60 * SECOND));
    let log = Algorithm::SlidingLog { window: SECOND };
    let items = [
        RedisTake { key: "a", algorithm: &bucket, quota: Quota { limit: 5, burst: 5 }, cost: 2 },
        RedisTake { key: "b", algorithm: &fixed, quota: Quota { limit: 1, burst: 1 }, cost: 2 },
        RedisTake { key: "c", algorithm: &log, quota: Quota { limit: 3, burst: 3 }, cost: 1 },
    ];
    let verdicts = shared.store.take(&items).await.unwrap();
    let summary: Vec<(bool, u64)> = verdicts.iter().map(|v| (v.verdict.allowed, v.verdict.remaining)).collect();
    assert_eq!(summary, [(true, 3), (false, 1), (true, 2)]);
    // Decided by the Redis clock, close to this machine's.
    assert!(verdicts.iter().all(|v| v.at.abs_diff(verdicts[0].at) < SECOND));
    assert!(verdicts[0].at.abs_diff(super::wall_clock()) < 5 * SECOND);

    // Giving back what `a` and `c` took: they are whole again.
    let back: Vec<RedisGiveBack<'_>> = [&items[0], &items[2]]
        .iter()
        .zip([verdicts[0], verdicts[2]])
        .map(|(item, v)| RedisGiveBack {
            key: item.key,
            algorithm: item.algorithm,
            quota: item.quota,
            cost: item.cost,
            taken_at: v.at,
        })
        .collect();
    shared.store.give_back(&back).await.unwrap();
    let again = shared.store.take(&[items[0], items[2]]).await.unwrap();
    assert_eq!((again[0].verdict.remaining, again[1].verdict.remaining), (3, 2));
    assert!(shared.store.take(&[]).await.unwrap().is_empty());
    shared.store.give_back(&[]).await.unwrap();
}

#[tokio::test]
async fn every_key_gets_a_ttl() {
    let Some(shared) = Shared::new() else { return };
    let day = Calendar::new(CalendarUnit::Day, "UTC").unwrap();
    let cases = [
        ("fixed", Algorithm::FixedWindow(WindowSpan::Every(SECOND)), 1000),
        ("calendar", Algorithm::FixedWindow(WindowSpan::Calendar(day)), 86_400_000),
        ("log", Algorithm::SlidingLog { window: SECOND }, 1000),
        ("sliding", Algorithm::SlidingWindow { window: SECOND }, 2000),
        // One of ten tokens refills in 100 ms; one leaky interval is 100 ms.
        ("bucket", Algorithm::TokenBucket { window: SECOND }, 101),
        ("leaky", Algorithm::LeakyBucket { window: SECOND, max_delay: None }, 100),
        ("shape", Algorithm::LeakyBucket { window: SECOND, max_delay: Some(SECOND) }, 1000),
        ("concurrency", Algorithm::Concurrency, 60_000),
    ];
    let mut conn = sync_conn(SHARED).unwrap();
    for (key, algorithm, most) in &cases {
        let item = RedisTake { key, algorithm, quota: Quota { limit: 10, burst: 10 }, cost: 1 };
        let taken = shared.store.take(&[item]).await.unwrap();
        assert!(taken[0].verdict.allowed, "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(shared.key(key)).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= *most, "{key}: PTTL {ttl} ms, expected 1..={most}");
    }
    // A give-back does not create a key.
    let bucket = Algorithm::TokenBucket { window: SECOND };
    let item =
        RedisGiveBack { key: "never", algorithm: &bucket, quota: Quota { limit: 1, burst: 1 }, cost: 1, taken_at: 0 };
    shared.store.give_back(&[item]).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS").arg(shared.key("never")).query(&mut conn).unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn a_limit_that_changes_algorithm_starts_afresh() {
    let Some(shared) = Shared::new() else { return };
    let quota = Quota { limit: 3, burst: 3 };
    let algorithms = [
        Algorithm::TokenBucket { window: 3600 * SECOND },
        Algorithm::SlidingLog { window: 3600 * SECOND },
        Algorithm::FixedWindow(WindowSpan::Every(3600 * SECOND)),
        Algorithm::SlidingWindow { window: 3600 * SECOND },
        Algorithm::LeakyBucket { window: 3600 * SECOND, max_delay: None },
        Algorithm::Concurrency,
        Algorithm::TokenBucket { window: 3600 * SECOND },
    ];
    for algorithm in &algorithms {
        // A give-back meant for another algorithm's counter leaves it alone.
        let back = RedisGiveBack { key: "same", algorithm, quota, cost: 1, taken_at: super::wall_clock() };
        shared.store.give_back(&[back]).await.unwrap();
        let item = RedisTake { key: "same", algorithm, quota, cost: 1 };
        let first = shared.store.take(&[item]).await.unwrap()[0].verdict;
        let second = shared.store.take(&[item]).await.unwrap()[0].verdict;
        assert_eq!((first.allowed, first.remaining), (true, 2), "{}", algorithm.kind());
        assert_eq!((second.allowed, second.remaining), (true, 1), "{}", algorithm.kind());
    }
}

#[tokio::test]
async fn batches_take_what_fits() {
    let Some(shared) = Shared::new() else { return };
    let bucket = Algorithm::TokenBucket { window: 3600 * SECOND };
    let item = RedisTake { key: "batch", algorithm: &bucket, quota: Quota { limit: 25, burst: 25 }, cost: 1 };
    let mut granted = Vec::new();
    for _ in 0..4 {
        let (units, verdict) = shared.store.take_batch(&item, 10).await.unwrap();
        granted.push((units, verdict.verdict.allowed, verdict.verdict.remaining));
    }
    assert_eq!(granted, [(10, true, 15), (10, true, 5), (5, true, 0), (0, false, 0)]);
    let concurrency = Algorithm::Concurrency;
    let item = RedisTake { key: "batch-c", algorithm: &concurrency, quota: Quota { limit: 1, burst: 1 }, cost: 1 };
    assert_eq!(shared.store.take_batch(&item, 10).await.unwrap().0, 1);
    assert_eq!(shared.store.take_batch(&item, 10).await.unwrap().0, 0);
}

#[test]
fn configs_are_checked_without_connecting() {
    let bad = |url: &str| RedisStore::new(&config(url)).unwrap_err();
    assert!(bad("http://127.0.0.1:6379").contains("not a redis URL"));
    assert!(bad("redis+unix:///tmp/redis.sock").contains("scheme"));
    let err = bad("redis://user:hunter2@127.0.0.1:6379");
    assert!(err.contains("username") && !err.contains("hunter2"), "{err}");
    assert!(bad("redis://127.0.0.1:6379/x").contains("database"));
    assert!(bad("redis://127.0.0.1:6379/?protocol=resp3").contains("query"));
    assert!(bad("rediss://127.0.0.1:6379/#insecure").contains("fragment"));

    let mut with_ca = config("redis://127.0.0.1:6379");
    with_ca.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(RedisStore::new(&with_ca).unwrap_err().contains("rediss"));
    with_ca.url = "rediss://127.0.0.1:6380".into();
    assert!(RedisStore::new(&with_ca).unwrap_err().contains("/nonexistent/ca.pem"));
    let empty = TempDir::new();
    let path = empty.0.join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    with_ca.ca_file = Some(path.display().to_string());
    assert!(RedisStore::new(&with_ca).unwrap_err().contains("no certificate"));

    let mut braces = config("redis://127.0.0.1:6379");
    braces.key_prefix = "rl:{x}:".into();
    assert!(RedisStore::new(&braces).unwrap_err().contains("key_prefix"));

    // No I/O: a host that does not exist is fine until used.
    let store = RedisStore::new(&config("redis://redis.invalid:6390/3")).unwrap();
    assert!(format!("{store:?}").contains("redis.invalid:6390/3"));
    RedisStore::new(&config("redis://[::1]")).unwrap();
}

#[test]
fn errors_display_without_secrets() {
    assert_eq!(StoreError::Timeout.to_string(), "redis did not answer in time");
    assert!(StoreError::Connection("refused".into()).to_string().contains("refused"));
    assert!(StoreError::Script("OOM".into()).to_string().contains("OOM"));
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("turnpike-redis-test-{:016x}", random()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of the test's own, killed when dropped.
struct ChildRedis {
    child: Child,
    port: u16,
}

impl ChildRedis {
    /// Starts one on `port` (with `extra` arguments) and waits until it accepts connections.
    fn start(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port };
        server.wait_ready(port);
        server
    }

    fn wait_ready(&self, port: u16) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for ChildRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn take_one(store: &RedisStore) -> Result<RedisVerdict, StoreError> {
    let algorithm = Algorithm::TokenBucket { window: SECOND };
    let item =
        RedisTake { key: "k", algorithm: &algorithm, quota: Quota { limit: 1_000_000, burst: 1_000_000 }, cost: 1 };
    store.take(&[item]).await.map(|verdicts| verdicts[0])
}

/// Takes until one succeeds; panics after `within`.
async fn until_ok(store: &RedisStore, within: Duration) -> RedisVerdict {
    let start = Instant::now();
    loop {
        match take_one(store).await {
            Ok(verdict) => return verdict,
            Err(err) if start.elapsed() < within => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("still failing after {within:?}: {err}"),
        }
    }
}

#[tokio::test]
async fn timeouts_are_bounded_and_the_store_recovers() {
    if !redis_server_available() {
        return;
    }
    let port = free_port();
    let mut server = ChildRedis::start(port, &[]);
    let timeout = Duration::from_millis(100);
    let mut config = config(&format!("redis://127.0.0.1:{port}"));
    config.timeout = turnpike_config::Duration(timeout);
    let store = RedisStore::new(&config).unwrap();
    until_ok(&store, Duration::from_secs(5)).await;

    // A server that stops answering (it keeps the connection open): every call fails within the timeout, for
    // long enough that the store also gives up on the connection and tries new ones.
    server.signal("STOP");
    let stopped = Instant::now();
    let mut calls = 0;
    while stopped.elapsed() < Duration::from_millis(2500) {
        let start = Instant::now();
        let result = take_one(&store).await;
        let elapsed = start.elapsed();
        assert!(result.is_err(), "a stopped server answered");
        assert!(elapsed <= timeout + Duration::from_millis(100), "a call took {elapsed:?}");
        calls += 1;
    }
    assert!(calls >= 10);
    server.signal("CONT");
    until_ok(&store, Duration::from_secs(5)).await;

    // A server that dies: calls fail fast; restarted on the same port (without the scripts), it is used again.
    let _ = server.child.kill();
    let _ = server.child.wait();
    for _ in 0..20 {
        let start = Instant::now();
        assert!(take_one(&store).await.is_err());
        assert!(start.elapsed() <= timeout + Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server = ChildRedis::start(server.port, &[]);
    let verdict = until_ok(&store, Duration::from_secs(5)).await;
    assert_eq!(verdict.verdict.remaining, 999_999, "a fresh server, a fresh counter");
    drop(server);
}

#[test]
fn a_connection_attempt_lost_with_its_runtime_is_made_again() {
    if !redis_server_available() {
        return;
    }
    let port = free_port();
    let server = ChildRedis::start(port, &[]);
    let mut config = config(&format!("redis://127.0.0.1:{port}"));
    config.timeout = turnpike_config::Duration(Duration::from_millis(100));
    let store = RedisStore::new(&config).unwrap();
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The first call starts connecting to a server that does not answer, then its runtime goes away.
    server.signal("STOP");
    runtime().block_on(async { assert_eq!(take_one(&store).await.unwrap_err(), StoreError::Timeout) });
    server.signal("CONT");
    runtime().block_on(async { until_ok(&store, Duration::from_secs(6)).await });
}

#[tokio::test]
async fn credentials_are_used() {
    if !redis_server_available() {
        return;
    }
    let port = free_port();
    let _server = ChildRedis::start(
        port,
        &["--requirepass", "secret", "--user", "alice", "on", ">wonderland", "~*", "&*", "+@all"],
    );
    let url = format!("redis://127.0.0.1:{port}");
    let store_with = |username: Option<&str>, password: Option<&str>| {
        let mut config = config(&url);
        config.username = username.map(str::to_string);
        config.password = password.map(Secret::new);
        RedisStore::new(&config).unwrap()
    };

    for (username, password) in [(None, None), (None, Some("wrong")), (Some("alice"), Some("secret"))] {
        let err = take_one(&store_with(username, password)).await.unwrap_err();
        assert!(matches!(err, StoreError::Connection(_)), "{err}");
        assert!(!err.to_string().contains("wrong") && !err.to_string().contains("secret"), "{err}");
    }
    until_ok(&store_with(None, Some("secret")), Duration::from_secs(5)).await;
    until_ok(&store_with(Some("alice"), Some("wonderland")), Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tls_with_a_ca_file() {
    if !redis_server_available() {
        return;
    }
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = TempDir::new();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let file = |name: &str, contents: String| {
        let path = dir.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let ca = file("ca.pem", ca_cert.pem());
    let cert = file("server.pem", server_cert.pem());
    let key = file("server.key", server_key.serialize_pem());

    let port = free_port();
    let tls_port = port.to_string();
    let _server = ChildRedis::start(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );

    let mut config = config(&format!("rediss://localhost:{port}"));
    config.ca_file = Some(ca);
    let store = RedisStore::new(&config).unwrap();
    let verdict = until_ok(&store, Duration::from_secs(5)).await;
    assert!(verdict.verdict.allowed);

    // Without the CA, the server's certificate is not trusted.
    config.ca_file = None;
    let err = take_one(&RedisStore::new(&config).unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Connection(_)), "{err}");
}

#[test]
fn the_counter_types_of_algorithm_rs_are_mirrored() {
    // A reminder for whoever adds a counter type: it needs a script and a differential test.
    let quota = Quota { limit: 1, burst: 1 };
    let kinds = [
        Algorithm::FixedWindow(WindowSpan::Every(SECOND)).fresh(quota),
        Algorithm::SlidingLog { window: SECOND }.fresh(quota),
        Algorithm::SlidingWindow { window: SECOND }.fresh(quota),
        Algorithm::TokenBucket { window: SECOND }.fresh(quota),
        Algorithm::LeakyBucket { window: SECOND, max_delay: None }.fresh(quota),
        Algorithm::Concurrency.fresh(quota),
    ];
    for counter in kinds {
        match counter {
            Counter::Window { .. }
            | Counter::Log(_)
            | Counter::Sliding { .. }
            | Counter::Bucket { .. }
            | Counter::Tat(_)
            | Counter::InFlight(_) => {}
        }
    }
}
