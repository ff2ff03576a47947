//! The access log: one JSON object per request, written by its own thread so the request path never waits on I/O.
//!
//! Records are formatted on the worker straight into a buffer of its own, which a writer thread empties every
//! [`FLUSH_INTERVAL`], or as soon as a buffer holds [`WAKE_AT`] bytes (under load); when the buffer is full (stdout
//! blocked, disk slow) the record is dropped and counted rather than stalling requests. Every string is
//! JSON-escaped, control characters included, so a client cannot forge or break a log line.
//!
//! What a line holds is [`LogSettings`]: the fields, request headers and query logged, what is redacted (credentials
//! by default: `Authorization`, cookies, API-key headers, secret-looking query parameters), and the sampling of
//! successes and errors. The sink is stdout or a file, reopened on request (SIGUSR1, after logrotate moved it).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use turnpike_core::trace::{SpanId, TraceId};

use crate::names;

/// Everything the access log says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// The request id (ASCII: generated, or accepted from a trusted client only when made of safe characters).
    pub request_id: &'a [u8],
    /// The real client address.
    pub client: IpAddr,
    /// The request method.
    pub method: &'a str,
    /// The host the client addressed (a header's bytes: obs-text is written as U+FFFD).
    pub host: Option<&'a [u8]>,
    /// The normalized path, without the query.
    pub path: &'a str,
    /// `1.1` or `2`.
    pub protocol: &'static str,
    /// The listener's name.
    pub listener: &'a str,
    /// The route id, if one matched.
    pub route: Option<&'a str>,
    /// The upstream id, if the request was forwarded.
    pub upstream: Option<&'a str>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// The response status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Arrival to last byte.
    pub duration: Duration,
    /// When the last byte went (or the client left), on the monotonic clock: the line's `time`.
    pub end: tokio::time::Instant,
    /// Sending upstream to the response head.
    pub upstream_duration: Option<Duration>,
    /// Why retrying stopped early, if it did.
    pub retry_stopped: Option<&'static str>,
    /// What rate limiting decided, on rate-limited routes.
    pub rate_limit: Option<&'static str>,
    /// The limit that refused (or would have).
    pub rate_limit_by: Option<&'a str>,
    /// The gateway's error type, if it answered with an error.
    pub error: Option<&'static str>,
    /// The client went away before the response was complete.
    pub aborted: bool,
    /// The trace and the gateway's server span, when the request was traced.
    pub trace: Option<(TraceId, SpanId)>,
    /// The query string, as received.
    pub query: Option<&'a str>,
    /// The consumer (API client) the request authenticated as.
    pub consumer: Option<&'a str>,
    /// Values of the request headers [`LogSettings::headers`] names, in that order.
    pub headers: &'a [Option<http::HeaderValue>],
}

/// What the access log writes, compiled from the configuration (a reload replaces it).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Fields written (bits of [`FIELDS`]).
    fields: u64,
    /// Fields whose value is replaced by `[REDACTED]`.
    redacted: u64,
    /// Fields written with their value: `fields` but not `redacted`.
    plain: u64,
    /// Request headers logged as `http.request.header.<name>`, and whether their value is redacted.
    pub headers: Vec<(http::HeaderName, bool)>,
    /// Query parameters whose values are redacted (lower case).
    secret_params: Vec<String>,
    /// Share of successful requests logged.
    pub sample_successes: f64,
    /// Share of errors (status >= 400, or an error the gateway answered) logged.
    pub sample_errors: f64,
}

/// The value written in place of a redacted one.
pub const REDACTED: &str = "[REDACTED]";

/// Every field a line can carry, in the order written; all but `url.query` are on by default.
pub const FIELDS: [&str; 27] = [
    names::TIME,
    names::REQUEST_ID,
    names::CLIENT_ADDRESS,
    names::METHOD,
    names::SERVER_ADDRESS,
    names::URL_PATH,
    names::URL_QUERY,
    names::PROTOCOL_VERSION,
    names::LISTENER,
    names::ROUTE,
    names::UPSTREAM,
    names::ENDPOINT,
    names::ATTEMPTS,
    names::STATUS,
    names::BYTES_IN,
    names::BYTES_OUT,
    names::DURATION_MS,
    names::UPSTREAM_DURATION_MS,
    names::RETRY_STOPPED,
    names::CONSUMER,
    names::RATE_LIMIT,
    names::RATE_LIMIT_BY,
    names::ERROR_TYPE,
    names::TRACE_ID,
    names::SPAN_ID,
    names::ABORTED,
    names::REQUEST_HEADERS,
];

/// Request headers whose values are credentials: always redacted when logged.
pub const SECRET_HEADERS: [&str; 6] =
    ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"];

/// Query parameters whose values are redacted by default (matched case-insensitively).
pub const SECRET_PARAMS: [&str; 14] = [
    "access_token",
    "api_key",
    "api-key",
    "apikey",
    "auth",
    "code",
    "id_token",
    "key",
    "password",
    "refresh_token",
    "secret",
    "signature",
    "sig",
    "token",
];

fn bit(field: &str) -> Option<u64> {
    FIELDS.iter().position(|f| *f == field).map(|i| 1u64 << i)
}

/// Bytes of all the keys `,"<field>":"` of [`FIELDS`] together.
const KEYS_LEN: usize = {
    let mut len = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        len += FIELDS[i].len() + 5;
        i += 1;
    }
    len
};

/// `,"<field>":"` (the key and a string value's opening quote) for every field of [`FIELDS`], one after the
/// other, and where each one starts. Built at compile time, so a key written for a known field is a copy of known
/// length (a few moves, no `memcpy` call).
const KEYS: ([u8; KEYS_LEN], [usize; FIELDS.len() + 1]) = {
    let mut bytes = [0u8; KEYS_LEN];
    let mut starts = [0usize; FIELDS.len() + 1];
    let mut at = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        starts[i] = at;
        let name = FIELDS[i].as_bytes();
        bytes[at] = b',';
        bytes[at + 1] = b'"';
        let mut j = 0;
        while j < name.len() {
            bytes[at + 2 + j] = name[j];
            j += 1;
        }
        bytes[at + 2 + name.len()] = b'"';
        bytes[at + 3 + name.len()] = b':';
        bytes[at + 4 + name.len()] = b'"';
        at += name.len() + 5;
        i += 1;
    }
    starts[FIELDS.len()] = at;
    (bytes, starts)
};

/// The key `,"<field>":` of the field at `field` in [`FIELDS`].
#[inline(always)]
fn key(field: usize) -> &'static [u8] {
    &KEYS.0[KEYS.1[field]..KEYS.1[field + 1] - 1]
}

/// The key of the field at `field` in [`FIELDS`] and the opening quote of its value: `,"<field>":"`.
#[inline(always)]
fn key_quoted(field: usize) -> &'static [u8] {
    &KEYS.0[KEYS.1[field]..KEYS.1[field + 1]]
}

/// Positions in [`FIELDS`] (the writer tests bits, never names).
mod f {
    pub const TIME: usize = 0;
    pub const REQUEST_ID: usize = 1;
    pub const CLIENT_ADDRESS: usize = 2;
    pub const METHOD: usize = 3;
    pub const SERVER_ADDRESS: usize = 4;
    pub const URL_PATH: usize = 5;
    pub const URL_QUERY: usize = 6;
    pub const PROTOCOL_VERSION: usize = 7;
    pub const LISTENER: usize = 8;
    pub const ROUTE: usize = 9;
    pub const UPSTREAM: usize = 10;
    pub const ENDPOINT: usize = 11;
    pub const ATTEMPTS: usize = 12;
    pub const STATUS: usize = 13;
    pub const BYTES_IN: usize = 14;
    pub const BYTES_OUT: usize = 15;
    pub const DURATION_MS: usize = 16;
    pub const UPSTREAM_DURATION_MS: usize = 17;
    pub const RETRY_STOPPED: usize = 18;
    pub const CONSUMER: usize = 19;
    pub const RATE_LIMIT: usize = 20;
    pub const RATE_LIMIT_BY: usize = 21;
    pub const ERROR_TYPE: usize = 22;
    pub const TRACE_ID: usize = 23;
    pub const SPAN_ID: usize = 24;
    pub const ABORTED: usize = 25;
    pub const REQUEST_HEADERS: usize = 26;
}

/// Why access-log settings are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSettingsError {
    /// A field name that does not exist (with the index in its list and the list's name).
    UnknownField(&'static str, usize, String),
    /// A header name that is not one.
    BadHeader(usize, String),
    /// A sampling ratio outside 0..=1.
    BadRatio(&'static str),
}

impl LogSettings {
    /// Compiles the settings. `fields`: the fields to write (`None`: every field but `url.query`; the headers'
    /// field is written when `headers` names some). `redact`: fields whose values are masked. `headers`: request
    /// headers to log (credential headers and `secret_headers` are masked). `secret_params`: query parameters
    /// masked besides [`SECRET_PARAMS`].
    pub fn new(
        fields: Option<&[String]>,
        redact: &[String],
        headers: &[String],
        secret_headers: &[String],
        secret_params: &[String],
        sample_successes: f64,
        sample_errors: f64,
    ) -> Result<Self, Vec<LogSettingsError>> {
        let mut errors = Vec::new();
        let mask = |list: &[String], which: &'static str, errors: &mut Vec<LogSettingsError>| {
            let mut mask = 0;
            for (i, name) in list.iter().enumerate() {
                match bit(name) {
                    Some(b) => mask |= b,
                    None => errors.push(LogSettingsError::UnknownField(which, i, name.clone())),
                }
            }
            mask
        };
        let all = (1u64 << FIELDS.len()) - 1;
        let fields = match fields {
            Some(list) => mask(list, "fields", &mut errors),
            None => all & !(1 << f::URL_QUERY),
        };
        let redacted = mask(redact, "redact", &mut errors);
        let secret: Vec<String> = SECRET_HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(secret_headers.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let mut logged = Vec::new();
        for (i, name) in headers.iter().enumerate() {
            match http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(header) => {
                    let masked = secret.iter().any(|s| s == header.as_str());
                    logged.push((header, masked));
                }
                Err(_) => errors.push(LogSettingsError::BadHeader(i, name.clone())),
            }
        }
        for (which, ratio) in [("sample.successes", sample_successes), ("sample.errors", sample_errors)] {
            if !(0.0..=1.0).contains(&ratio) {
                errors.push(LogSettingsError::BadRatio(which));
            }
        }
        let secret_params =
            SECRET_PARAMS.iter().map(|p| p.to_string()).chain(secret_params.iter().map(|p| p.to_ascii_lowercase()));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            fields,
            redacted,
            plain: fields & !redacted,
            headers: logged,
            secret_params: secret_params.collect(),
            sample_successes,
            sample_errors,
        })
    }

    /// Whether a request with this outcome is logged (sampled by `random`, uniform in 0..2^64, drawn only when the
    /// ratio is below 1).
    pub fn keep(&self, error: bool, random: impl FnOnce() -> u64) -> bool {
        let ratio = if error { self.sample_errors } else { self.sample_successes };
        ratio >= 1.0 || (random() as f64) < ratio * u64::MAX as f64
    }

    fn on(&self, field: usize) -> bool {
        self.fields & (1 << field) != 0
    }

    /// On and not masked.
    fn written(&self, field: usize) -> bool {
        self.plain & (1 << field) != 0
    }

    fn masked(&self, field: usize) -> bool {
        self.redacted & (1 << field) != 0
    }
}

impl Default for LogSettings {
    /// Every field but the query; nothing sampled out.
    fn default() -> Self {
        Self::new(None, &[], &[], &[], &[], 1.0, 1.0).unwrap_or_else(|_| Self {
            fields: 0,
            redacted: 0,
            plain: 0,
            headers: Vec::new(),
            secret_params: Vec::new(),
            sample_successes: 1.0,
            sample_errors: 1.0,
        })
    }
}

/// Where access-log lines go.
///
/// Lines are formatted straight into a buffer of the calling thread's own (one of [`SHARDS`], each behind an
/// uncontended lock), and a writer thread of its own swaps the buffers out and writes them every
/// [`FLUSH_INTERVAL`]: no allocation, no channel and no thread wake-up per line. A buffer that passes [`WAKE_AT`]
/// wakes the writer early (once per round): under load lines go out in writes of about that size, the buffers stay
/// small enough to stay in cache, and a burst does not fill them before the interval is up. A buffer that reached
/// its share of the configured size (the writer is behind: a full disk, a blocked pipe) drops new lines and counts
/// them; the size is shared among the buffers in use (threads that logged), so a process of one worker can hold all
/// of it.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    dropped: Arc<AtomicU64>,
    /// Set to have the writer reopen its file before the next write.
    reopen: Arc<AtomicBool>,
}

/// A shard's lines, `bytes[..used]`; the rest of `bytes` is room for more, zeroed once when it was added and
/// reused in every round after. The writer swaps `bytes` and `used` for its spare ones; `claimed` stays.
#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    used: usize,
    /// A thread has logged into this buffer: it counts in [`Shared::in_use`].
    claimed: bool,
}

struct Shared {
    shards: Vec<Mutex<Buffer>>,
    /// Bytes all shards together may hold.
    buffer: usize,
    /// Shards claimed (threads have logged into them).
    in_use: AtomicUsize,
    /// Bytes one shard may hold: its share of `buffer` among the shards in use.
    limit: AtomicUsize,
    /// Bytes in a shard that wake the writer before its interval is up.
    wake_at: AtomicUsize,
    /// The writer was woken early in this round (so one line, not each, wakes it).
    woken: AtomicBool,
    /// The writer thread (woken early by `flush`).
    writer: std::sync::OnceLock<std::thread::Thread>,
    /// Completed write rounds, and a signal for each.
    rounds: Mutex<u64>,
    round_done: std::sync::Condvar,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("enabled", &self.shared.is_some()).finish()
    }
}

/// Bytes held in memory while the writer catches up (all buffers together); beyond this lines are dropped and
/// counted.
pub const DEFAULT_BUFFER: usize = 8 << 20;
/// Buffers lines are spread over (threads pick one each, round robin).
pub const SHARDS: usize = 16;
/// How often the writer writes what the buffers hold.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes in one buffer that wake the writer at once (or a quarter of the buffer's share, if that is less): the size
/// of the writes under load. The kernel's work per byte written to a file falls as writes grow (larger page-cache
/// folios, fewer per-write costs), while the two buffers a worker alternates between, formatted into and then read
/// by the write, must stay in its core's cache. Measured on ext4 with two processes sharing a core
/// (`bench/side_by_side.sh`): from 128 KiB to 512 KiB the writer thread's CPU per request fell by 40 % and the
/// process's by 0 to 1.6 % from run to run; 1 MiB took 1.3 % more than 512 KiB (its 2 MiB of buffers no longer stay
/// in a 1 MiB L2 cache).
pub const WAKE_AT: usize = 512 * 1024;

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS
    };
}

impl AccessLog {
    /// An access log that writes nothing.
    pub fn disabled() -> Self {
        Self { shared: None, dropped: Arc::new(AtomicU64::new(0)), reopen: Arc::new(AtomicBool::new(false)) }
    }

    /// An access log on stdout (shared with process logs; each line is written whole).
    pub fn stdout() -> Self {
        Self::stdout_with_buffer(DEFAULT_BUFFER)
    }

    /// An access log on stdout holding up to `buffer` bytes while stdout is slow.
    pub fn stdout_with_buffer(buffer: usize) -> Self {
        Self::to_writer(|| Box::new(StdoutLines), buffer)
    }

    /// An access log appended to the file at `path` (created if needed), reopened at the same path by
    /// [`reopen`](Self::reopen) — what logrotate's `postrotate` asks for with SIGUSR1.
    pub fn to_file(path: &std::path::Path, buffer: usize) -> std::io::Result<Self> {
        let open = |path: &std::path::Path| std::fs::OpenOptions::new().create(true).append(true).open(path);
        let first = open(path)?;
        let path = path.to_path_buf();
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let file = ReopeningFile { file: first, path, flag, open, reserve: Reserve::default() };
        let mut log = Self::to_writer(move || Box::new(file), buffer);
        log.reopen = reopen;
        Ok(log)
    }

    /// An access log written by a dedicated thread to the writer `make` returns, holding up to `buffer` bytes.
    pub fn to_writer(make: impl FnOnce() -> Box<dyn Write + Send> + Send + 'static, buffer: usize) -> Self {
        Self::with_interval(make, buffer, FLUSH_INTERVAL)
    }

    /// [`to_writer`](Self::to_writer), writing every `interval` (when no buffer passes its wake-up size first).
    fn with_interval(
        make: impl FnOnce() -> Box<dyn Write + Send> + Send + 'static,
        buffer: usize,
        interval: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Buffer::default())).collect(),
            buffer,
            in_use: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
            writer: std::sync::OnceLock::new(),
            rounds: Mutex::new(0),
            round_done: std::sync::Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new().name("turnpike-access-log".into()).spawn(move || {
            write_loop(weak, make(), interval);
        });
        match spawned {
            Ok(handle) => Self {
                shared: Some({
                    let _ = shared.writer.set(handle.thread().clone());
                    shared
                }),
                dropped: Arc::new(AtomicU64::new(0)),
                reopen: Arc::new(AtomicBool::new(false)),
            },
            Err(err) => {
                tracing::error!(error = %err, "could not start the access-log writer; access log disabled");
                Self::disabled()
            }
        }
    }

    /// Whether records are written at all (callers skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Records that were dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out every line logged so far, waiting up to `limit` for the writer (at shutdown: buffered lines
    /// would be lost with the process).
    pub fn flush(&self, limit: Duration) {
        let Some(shared) = &self.shared else { return };
        let Some(writer) = shared.writer.get() else { return };
        let deadline = tokio::time::Instant::now() + limit;
        let mut rounds = shared.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        // A round under way may have passed this thread's buffer already: wait for the next one to end too.
        let wanted = *rounds + 2;
        while *rounds < wanted {
            writer.unpark();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let wait = left.min(Duration::from_millis(10));
            rounds = shared.round_done.wait_timeout(rounds, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Has a file log reopen its path before its next write (after a rotation moved the file away).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Adds one record to this thread's buffer; never blocks on I/O.
    pub fn log(&self, record: &AccessRecord<'_>, settings: &LogSettings) {
        let Some(shared) = &self.shared else { return };
        let query = logged_query(record, settings);
        let query = query.as_deref();
        let unix_nanos = crate::time::unix_nanos(record.end);
        let shard = SHARD.with(|s| *s);
        let mut buffer = shared.shards[shard].lock().unwrap_or_else(PoisonError::into_inner);
        if !buffer.claimed {
            buffer.claimed = true;
            shared.claim();
        }
        let (limit, wake_at) = (shared.limit.load(Ordering::Relaxed), shared.wake_at.load(Ordering::Relaxed));
        let Buffer { bytes, used, .. } = &mut *buffer;
        let written = if *used < limit {
            // Room is added (and zeroed) by doubling, once: it is reused in every round after.
            let step = (bytes.len() * 2).max(wake_at * 2);
            append_line(bytes, *used, step, |room| format_line(room, record, unix_nanos, query, settings))
        } else {
            None
        };
        let Some(written) = written else {
            drop(buffer);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        *used += written;
        let wake = *used >= wake_at && !shared.woken.load(Ordering::Relaxed);
        drop(buffer);
        if wake
            && !shared.woken.swap(true, Ordering::AcqRel)
            && let Some(writer) = shared.writer.get()
        {
            writer.unpark();
        }
    }
}

impl Shared {
    /// One more shard in use: the buffer is shared among one more (rare: once per thread that logs).
    #[cold]
    fn claim(&self) {
        let in_use = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = (self.buffer / in_use).max(4096);
        self.limit.store(limit, Ordering::Relaxed);
        self.wake_at.store(WAKE_AT.min(limit / 4), Ordering::Relaxed);
    }
}

/// Every `interval` (or when woken: a buffer passed its wake-up size, or a flush), swaps each buffer for an empty
/// one and writes what it held; ends (after a last write) when the log is dropped.
fn write_loop(shared: std::sync::Weak<Shared>, mut out: Box<dyn Write + Send>, interval: Duration) {
    let mut spare = Buffer::default();
    loop {
        std::thread::park_timeout(interval);
        let Some(shared) = shared.upgrade() else { return };
        // Before the buffers are emptied: a buffer filling up again during this round wakes the next one.
        shared.woken.store(false, Ordering::Release);
        let mut wrote = false;
        for shard in &shared.shards {
            {
                let mut buffer = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if buffer.used == 0 {
                    continue;
                }
                std::mem::swap(&mut buffer.bytes, &mut spare.bytes);
                std::mem::swap(&mut buffer.used, &mut spare.used);
            }
            // Nowhere to write (stdout closed, disk full): the lines are lost, the buffers keep cycling.
            let _ = out.write_all(spare.bytes.get(..spare.used).unwrap_or_default());
            spare.used = 0;
            wrote = true;
        }
        if wrote {
            let _ = out.flush();
        }
        *shared.rounds.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        shared.round_done.notify_all();
    }
}

/// A file reopened at its path when the flag says so.
struct ReopeningFile<F> {
    file: std::fs::File,
    path: std::path::PathBuf,
    flag: Arc<AtomicBool>,
    open: F,
    reserve: Reserve,
}

impl<F: Fn(&std::path::Path) -> std::io::Result<std::fs::File>> Write for ReopeningFile<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.flag.swap(false, Ordering::AcqRel) {
            match (self.open)(&self.path) {
                Ok(file) => {
                    self.file = file;
                    self.reserve = Reserve::default();
                }
                // Keep writing to the old file rather than lose lines; say so once per attempt.
                Err(err) => eprintln!("turnpike: cannot reopen the access log {}: {err}", self.path.display()),
            }
        }
        self.reserve.ahead_of(&self.file, buf.len());
        let written = self.file.write(buf)?;
        self.reserve.end += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Bytes of a log file's blocks reserved ahead of its end at a time.
pub const RESERVE_AHEAD: u64 = 1 << 20;

/// The blocks of a log file reserved ahead of its writes (`fallocate` keeping the size: readers see the same size
/// and bytes; `du` counts up to [`RESERVE_AHEAD`] more). Each page written into reserved blocks costs the file
/// system less than one it must reserve as the page is written: measured on ext4, the kernel's CPU per MB written
/// in 128 KiB appends fell by a quarter. A file system that cannot reserve (a pipe, some network file systems) is
/// written as before.
#[derive(Debug, Default)]
struct Reserve {
    /// Where this log believes the file ends (its own writes counted).
    end: u64,
    /// Blocks are reserved up to here.
    until: u64,
    /// Reserving failed once: the file system does not.
    off: bool,
}

impl Reserve {
    /// Reserves the next [`RESERVE_AHEAD`] bytes when a write of `len` bytes would pass the reserved ones.
    fn ahead_of(&mut self, file: &std::fs::File, len: usize) {
        if self.off || self.end + len as u64 <= self.until {
            return;
        }
        // Where the file really ends (a rotation may have truncated it, another process appended): reserved from
        // there.
        let Ok(meta) = file.metadata() else {
            self.off = true;
            return;
        };
        if !meta.is_file() {
            self.off = true;
            return;
        }
        self.end = meta.len();
        let ahead = RESERVE_AHEAD.max(len as u64);
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{FallocateFlags, fallocate};
            match fallocate(file, FallocateFlags::KEEP_SIZE, self.end, ahead) {
                Ok(()) => self.until = self.end + ahead,
                Err(_) => self.off = true,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = ahead;
            self.off = true;
        }
    }
}

struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// Formats one record as a JSON line (with the trailing newline) at the end of `out`, as `settings` say, stamped
/// `now`.
pub fn format_record(out: &mut Vec<u8>, r: &AccessRecord<'_>, now: SystemTime, settings: &LogSettings) {
    let query = logged_query(r, settings);
    let (start, unix_nanos) = (out.len(), crate::time::system_nanos(now));
    // Room for this line only: `out` is the caller's.
    let written =
        append_line(out, start, 0, |room| format_line(room, r, unix_nanos, query.as_deref(), settings)).unwrap_or(0);
    out.truncate(start + written);
}

/// Formats a line into `bytes[used..]`, in [`ROOM`] bytes kept there; a line that does not fit is formatted again
/// in room for the longest it can be. When room is short `bytes` grows to `step` bytes, or to what the line needs if
/// that is more. The bytes written.
#[inline(always)]
fn append_line(
    bytes: &mut Vec<u8>,
    used: usize,
    step: usize,
    format: impl Fn(&mut [u8]) -> Result<usize, usize>,
) -> Option<usize> {
    let mut room = ROOM;
    loop {
        if bytes.len().saturating_sub(used) < room {
            grow(bytes, step.max(used + room));
        }
        match format(bytes.get_mut(used..)?) {
            Ok(written) => return Some(written),
            // Longer than the room (a long path or header).
            Err(needed) if needed > room => room = needed,
            Err(_) => return None,
        }
    }
}

/// Zero-fills `bytes` up to `len` (rarely: out of line).
#[cold]
#[inline(never)]
fn grow(bytes: &mut Vec<u8>, len: usize) {
    bytes.resize(len, 0);
}

/// The query as logged (secret parameters' values redacted), when it is logged.
#[inline(always)]
fn logged_query(r: &AccessRecord<'_>, settings: &LogSettings) -> Option<String> {
    r.query.filter(|_| settings.on(f::URL_QUERY)).map(|query| redact_query(query, &settings.secret_params))
}

/// Room a buffer keeps ahead of its lines: most lines fit (a longer one is formatted again in room made for it).
const ROOM: usize = 2048;

/// Where a line is formatted: what is left of the room made for it. Two words: it lives in registers while a line
/// is written (no length or capacity reloaded from memory after each byte stored, as with a `Vec`), and the helpers
/// that are not inlined take it and give it back in registers. A write that does not fit empties the room, so every
/// write after it finds none: a room found empty at the end was too small (or exactly filled: the line is then
/// formatted again, in room for the longest it can be, [`line_bound`]).
struct Cursor<'r>(&'r mut [u8]);

impl<'r> Cursor<'r> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        if let Some((to, rest)) = std::mem::take(&mut self.0).split_at_mut_checked(bytes.len()) {
            to.copy_from_slice(bytes);
            self.0 = rest;
        }
    }

    /// Copies all `N` bytes of `bytes` (a copy of known length) but keeps only the first `keep`.
    #[inline(always)]
    fn put_first<const N: usize>(&mut self, bytes: &[u8; N], keep: usize) {
        let rest = std::mem::take(&mut self.0);
        if let Some(to) = rest.get_mut(..N) {
            to.copy_from_slice(bytes);
            if let Some((_, rest)) = rest.split_at_mut_checked(keep) {
                self.0 = rest;
            }
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some((to, rest)) = std::mem::take(&mut self.0).split_first_mut() {
            *to = b;
            self.0 = rest;
        }
    }

    /// Given the room it was made with, the bytes written; `None` when the room ran out.
    fn end(self, room: usize) -> Option<usize> {
        (!self.0.is_empty()).then(|| room - self.0.len())
    }

    /// This cursor, moved out (to a function that returns it: passed by value, it stays in registers).
    #[inline(always)]
    fn take(&mut self) -> Self {
        Cursor(std::mem::take(&mut self.0))
    }

    /// A number in decimal (one copy of this code for every number of a line).
    #[inline(always)]
    fn u64(&mut self, v: u64) {
        *self = write_u64(self.take(), v);
    }

    /// An address without `fmt` (this runs for every line): IPv4 through a table of octets, each copied as four
    /// bytes of which the digits and the dot are kept; IPv6 through `Display`.
    #[inline(always)]
    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                let (text, len) = ipv4_text(v4);
                self.put_first(&text, len);
            }
            IpAddr::V6(v6) => *self = write_ipv6(self.take(), v6),
        }
    }

    /// `bytes` as a JSON string: quotes, backslashes and every control character (including DEL) escaped, bytes
    /// that are not UTF-8 (a header's obs-text) replaced by U+FFFD. The opening quote is the caller's (it ends the
    /// key).
    #[inline(always)]
    fn string_rest(&mut self, bytes: &[u8]) {
        *self = write_string_rest(self.take(), bytes);
    }
}

/// [`Cursor::string_rest`], once in the code. Most values need no escaping: they are checked eight bytes at a time
/// and copied whole.
#[inline(never)]
fn write_string_rest<'r>(mut c: Cursor<'r>, bytes: &[u8]) -> Cursor<'r> {
    if needs_escaping(bytes) {
        c = write_escaped(c, bytes);
    } else {
        c.put(bytes);
    }
    c.byte(b'"');
    c
}

/// [`Cursor::u64`]: the small numbers (status codes, attempts, most sizes and milliseconds) as copies of known
/// length.
#[inline(never)]
fn write_u64(mut c: Cursor<'_>, v: u64) -> Cursor<'_> {
    let d = |n: u64| b'0' + (n % 10) as u8;
    if v < 10 {
        c.byte(d(v));
    } else if v < 100 {
        c.put(&[d(v / 10), d(v)]);
    } else if v < 1000 {
        c.put(&[d(v / 100), d(v / 10), d(v)]);
    } else if v < 10_000 {
        c.put(&[d(v / 1000), d(v / 100), d(v / 10), d(v)]);
    } else {
        c.put(itoa::Buffer::new().format(v).as_bytes());
    }
    c
}

/// A masked field: its key and [`REDACTED`] (rare: out of line).
#[cold]
#[inline(never)]
fn write_redacted(mut c: Cursor<'_>, field: usize) -> Cursor<'_> {
    c.put(key_quoted(field));
    write_string_rest(c, REDACTED.as_bytes())
}

/// The most a line of `r` can take: every key, every string at its longest escaped (six bytes per byte), numbers
/// and addresses at their longest.
fn line_bound(r: &AccessRecord<'_>, query: Option<&str>, settings: &LogSettings) -> usize {
    let len = |s: Option<&str>| s.map_or(0, str::len);
    let strings = r.request_id.len()
        + r.method.len()
        + r.host.map_or(0, <[u8]>::len)
        + r.path.len()
        + len(query)
        + r.protocol.len()
        + r.listener.len()
        + len(r.route)
        + len(r.upstream)
        + len(r.retry_stopped)
        + len(r.consumer)
        + len(r.rate_limit)
        + len(r.rate_limit_by)
        + len(r.error);
    let headers: usize = settings
        .headers
        .iter()
        .zip(r.headers)
        .map(|((name, _), value)| {
            let value = value.as_ref().map_or(0, |v| v.len()).max(REDACTED.len());
            names::REQUEST_HEADERS.len() + name.as_str().len() + 6 * value + 8
        })
        .sum();
    // Time, addresses, numbers, ids, `[REDACTED]` in place of any value, braces: less than this.
    const FIXED: usize = 1024;
    KEYS_LEN + FIXED + 6 * (strings + REDACTED.len() * FIELDS.len()) + headers
}

/// IPv6 through `Display` (rare: through a small buffer).
#[inline(never)]
fn write_ipv6(mut c: Cursor<'_>, ip: std::net::Ipv6Addr) -> Cursor<'_> {
    let mut text = [0u8; 48];
    let mut rest = &mut text[..];
    let _ = write!(rest, "{ip}");
    let len = 48 - rest.len();
    c.put(&text[..len]);
    c
}

/// Formats one record into `room`; returns the bytes written, or (`Err`) room it surely fits in when it did not fit
/// (formatting again in that much room writes it). Never inlined: inlined into its caller, the cursor's slice no
/// longer stays in registers (measured: 50 % more instructions per line). What every field repeats (escaping a
/// string, writing a number, a redacted value) is a call, not inlined code: the function was 27 KB of machine code
/// with it inlined at each field, 8 KB without (valgrind's simulated instruction cache: 147 misses per line then,
/// 95 now, for 105 more instructions).
#[inline(never)]
fn format_line(
    room: &mut [u8],
    r: &AccessRecord<'_>,
    unix_nanos: u64,
    query: Option<&str>,
    settings: &LogSettings,
) -> Result<usize, usize> {
    let size = room.len();
    let mut w = Line { c: Cursor(room), settings };
    if w.open(f::TIME, true) {
        w.c.put(&crate::time::rfc3339_millis(unix_nanos));
        w.c.byte(b'"');
    }
    // Request ids, methods and protocols hold no character JSON escapes (their types refuse them).
    w.plain(f::REQUEST_ID, r.request_id);
    if w.open(f::CLIENT_ADDRESS, true) {
        w.c.ip(r.client);
        w.c.byte(b'"');
    }
    w.plain(f::METHOD, r.method.as_bytes());
    w.str(f::SERVER_ADDRESS, r.host);
    w.str(f::URL_PATH, Some(r.path.as_bytes()));
    w.str(f::URL_QUERY, query.map(str::as_bytes));
    w.plain(f::PROTOCOL_VERSION, r.protocol.as_bytes());
    w.str(f::LISTENER, Some(r.listener.as_bytes()));
    w.str(f::ROUTE, r.route.map(str::as_bytes));
    w.str(f::UPSTREAM, r.upstream.map(str::as_bytes));
    if let Some(endpoint) = r.endpoint
        && w.open(f::ENDPOINT, true)
    {
        if endpoint.is_ipv6() {
            w.c.byte(b'[');
        }
        w.c.ip(endpoint.ip());
        w.c.put(if endpoint.is_ipv6() { b"]:" } else { b":" });
        w.c.u64(u64::from(endpoint.port()));
        w.c.byte(b'"');
    }
    w.int(f::ATTEMPTS, (r.attempts > 0).then_some(u64::from(r.attempts)));
    w.int(f::STATUS, Some(u64::from(r.status)));
    w.int(f::BYTES_IN, Some(r.bytes_in));
    w.int(f::BYTES_OUT, Some(r.bytes_out));
    w.millis(f::DURATION_MS, Some(r.duration));
    w.millis(f::UPSTREAM_DURATION_MS, r.upstream_duration);
    w.str(f::RETRY_STOPPED, r.retry_stopped.map(str::as_bytes));
    w.str(f::CONSUMER, r.consumer.map(str::as_bytes));
    w.str(f::RATE_LIMIT, r.rate_limit.map(str::as_bytes));
    w.str(f::RATE_LIMIT_BY, r.rate_limit_by.map(str::as_bytes));
    w.str(f::ERROR_TYPE, r.error.map(str::as_bytes));
    if let Some((trace_id, span_id)) = r.trace {
        w.plain(f::TRACE_ID, &trace_id.hex_digits());
        w.plain(f::SPAN_ID, &span_id.hex_digits());
    }
    if r.aborted && w.open(f::ABORTED, false) {
        w.c.put(b"true");
    }
    if settings.on(f::REQUEST_HEADERS) {
        for ((name, secret), value) in settings.headers.iter().zip(r.headers) {
            let Some(value) = value else { continue };
            w.c.put(b",\"");
            w.c.put(names::REQUEST_HEADERS.as_bytes());
            w.c.byte(b'.');
            // A header name is lower-case ASCII without quotes.
            w.c.put(name.as_str().as_bytes());
            w.c.put(b"\":\"");
            if *secret || settings.masked(f::REQUEST_HEADERS) {
                w.c.string_rest(REDACTED.as_bytes());
            } else {
                w.c.string_rest(value.as_bytes());
            }
        }
    }
    w.c.put(b"}\n");
    let Some(written) = w.c.end(size) else {
        // Room for the longest this line can be: more than this room (which it did not fit).
        return Err(line_bound(r, query, settings).max(size + 1));
    };
    // Every key was written with a leading comma: the first one's becomes the opening brace (there is none when no
    // field is: then the line is `}` and a newline).
    if written == 2 {
        return format_empty(room);
    }
    if let Some(comma) = room.first_mut() {
        *comma = b'{';
    }
    Ok(written)
}

/// The line of no field.
#[cold]
fn format_empty(room: &mut [u8]) -> Result<usize, usize> {
    let size = room.len();
    let mut c = Cursor(room);
    c.put(b"{}\n");
    c.end(size).ok_or(size + 4)
}

/// An IPv4 address in dotted decimal without `fmt`: the first `len` bytes of the array. Each octet's digits and dot
/// come from a table as four bytes (zero past them), put in place in one 128-bit register. (Copied into an array on
/// the stack, four bytes at a time, and read back as 16, the read waited for every store before it to reach the
/// cache, the line formatted so far included: at two addresses a line, that was half of the formatting's time on
/// an Intel Xeon.)
#[inline(always)]
pub(crate) fn ipv4_text(ip: std::net::Ipv4Addr) -> ([u8; 16], usize) {
    let mut text = 0u128;
    let mut len = 0;
    for octet in ip.octets() {
        let (digits, n) = OCTETS[usize::from(octet)];
        // At most 12 bytes in before the last octet: the shift stays below 128.
        text |= u128::from(u32::from_le_bytes(digits)) << (8 * len);
        len += n;
    }
    // Without the last octet's dot.
    (text.to_le_bytes(), len - 1)
}

/// Every octet's decimal digits followed by a dot (padded to four bytes), and how many of those bytes count.
const OCTETS: [([u8; 4], usize); 256] = {
    let mut table = [([0u8; 4], 0usize); 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        table[i] = if o >= 100 {
            ([b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + o / 10, b'0' + o % 10, b'.', 0], 3)
        } else {
            ([b'0' + o, b'.', 0, 0], 2)
        };
        i += 1;
    }
    table
};

/// The query with the values of secret parameters replaced (names compared case-insensitively, after
/// percent-decoding is not needed: secret names are plain ASCII).
fn redact_query(query: &str, secret: &[String]) -> String {
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret.iter().any(|s| s.eq_ignore_ascii_case(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// One line being written: fields that are off are skipped, masked ones get [`REDACTED`].
struct Line<'r, 's> {
    c: Cursor<'r>,
    settings: &'s LogSettings,
}

impl Line<'_, '_> {
    /// Writes the key of `field` (`,"name":`, and the value's opening quote when `quoted`) if the field is on and
    /// not masked, and says so; writes `"[REDACTED]"` for a masked one.
    #[inline(always)]
    fn open(&mut self, field: usize, quoted: bool) -> bool {
        if self.settings.written(field) {
            self.c.put(if quoted { key_quoted(field) } else { key(field) });
            return true;
        }
        if self.settings.on(field) {
            self.c = write_redacted(self.c.take(), field);
        }
        false
    }

    #[inline(always)]
    fn str(&mut self, field: usize, value: Option<&[u8]>) {
        let Some(value) = value else { return };
        if self.open(field, true) {
            self.c.string_rest(value);
        }
    }

    /// A string value that needs no escaping.
    #[inline(always)]
    fn plain(&mut self, field: usize, value: &[u8]) {
        if self.open(field, true) {
            self.c.put(value);
            self.c.byte(b'"');
        }
    }

    #[inline(always)]
    fn int(&mut self, field: usize, value: Option<u64>) {
        let Some(value) = value else { return };
        if self.open(field, false) {
            self.c.u64(value);
        }
    }

    #[inline(always)]
    fn millis(&mut self, field: usize, value: Option<Duration>) {
        let Some(d) = value else { return };
        if self.open(field, false) {
            let micros = d.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(d.subsec_micros()));
            self.c.u64(micros / 1000);
            let frac = micros % 1000;
            self.c.put(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
        }
    }
}

/// Bytes a JSON string cannot hold as they are: control characters, DEL, `"` and `\`.
const ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x7f] = true;
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The slow path of [`Cursor::string_rest`]: runs of plain bytes between the escaped ones, at `at`; returns where
/// it ended.
#[cold]
#[inline(never)]
fn write_escaped<'r>(mut c: Cursor<'r>, bytes: &[u8]) -> Cursor<'r> {
    let text = String::from_utf8_lossy(bytes);
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if ESCAPE[usize::from(b)] {
            c.put(&bytes[start..i]);
            let (sequence, len) = escape(b);
            c.put(&sequence[..len]);
            start = i + 1;
        }
    }
    c.put(&bytes[start..]);
    c
}

/// Whether any byte of `bytes` is one [`ESCAPE`] marks, or not ASCII (then it is checked as UTF-8).
#[inline]
fn needs_escaping(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        found |= <[u8; 8]>::try_from(chunk).map_or(0, |c| escapes_in(u64::from_le_bytes(c)));
    }
    // The last 1..7 bytes: within the last eight when there are that many (bytes checked twice are harmless),
    // one at a time otherwise.
    let rest = chunks.remainder();
    if rest.is_empty() {
        return found != 0;
    }
    match bytes.len().checked_sub(8).and_then(|at| <[u8; 8]>::try_from(&bytes[at..]).ok()) {
        Some(last) => found |= escapes_in(u64::from_le_bytes(last)),
        None => return rest.iter().any(|&b| ESCAPE[usize::from(b)] || b >= 0x80),
    }
    found != 0
}

/// Non-zero when a byte of `word` needs escaping or is not ASCII (the high bit of the first such byte is set; bits
/// above it may be set for bytes that do not).
fn escapes_in(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let equal = |c: u8| {
        let x = word ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    below(0x20) | equal(b'"') | equal(b'\\') | equal(0x7f) | (word & HIGHS)
}

/// The escape sequence of one byte [`ESCAPE`] marks (its first `len` bytes).
fn escape(b: u8) -> ([u8; 6], usize) {
    match b {
        b'"' => (*b"\\\"\0\0\0\0", 2),
        b'\\' => (*b"\\\\\0\0\0\0", 2),
        b'\n' => (*b"\\n\0\0\0\0", 2),
        b'\r' => (*b"\\r\0\0\0\0", 2),
        b'\t' => (*b"\\t\0\0\0\0", 2),
        b => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            ([b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]], 6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write` puts through a cursor.
    fn written(write: impl FnOnce(&mut Cursor<'_>)) -> Vec<u8> {
        let mut room = vec![0; 4096];
        let mut c = Cursor(&mut room);
        write(&mut c);
        let n = c.end(4096).unwrap();
        room.truncate(n);
        room
    }

    fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend(written(|c| {
            c.byte(b'"');
            c.string_rest(bytes);
        }));
    }

    fn record() -> AccessRecord<'static> {
        AccessRecord {
            request_id: b"abc",
            client: "10.0.0.1".parse().unwrap(),
            method: "GET",
            host: Some(b"api.example.com"),
            path: "/api/users",
            protocol: "1.1",
            listener: "public",
            route: Some("users"),
            upstream: Some("users"),
            endpoint: Some("127.0.0.1:9101".parse().unwrap()),
            attempts: 1,
            status: 200,
            bytes_in: 0,
            bytes_out: 512,
            duration: Duration::from_micros(1234),
            end: tokio::time::Instant::now(),
            upstream_duration: Some(Duration::from_micros(900)),
            retry_stopped: None,
            rate_limit: None,
            rate_limit_by: None,
            error: None,
            aborted: false,
            trace: Some((TraceId([0xab; 16]), SpanId([0xcd; 8]))),
            query: Some("page=2&access_token=abc123&Password=hunter2&q=x"),
            consumer: Some("acme"),
            headers: &[],
        }
    }

    #[test]
    fn record_is_one_json_line_with_every_field() {
        let mut out = Vec::new();
        format_record(&mut out, &record(), SystemTime::UNIX_EPOCH, &LogSettings::default());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[names::STATUS], 200);
        assert_eq!(v[names::ROUTE], "users");
        assert_eq!(v[names::ENDPOINT], "127.0.0.1:9101");
        assert_eq!(v[names::DURATION_MS], 1.234);
        assert_eq!(v[names::TIME], "1970-01-01T00:00:00.000Z");
        assert_eq!(v[names::TRACE_ID], "ab".repeat(16));
        assert_eq!(v[names::SPAN_ID], "cd".repeat(8));
    }

    #[test]
    fn every_byte_needing_escape_is_escaped_wherever_it_stands() {
        // Byte by byte with the table: what the word-at-a-time scan must agree with.
        fn reference(s: &str) -> Vec<u8> {
            let mut out = vec![b'"'];
            for &b in s.as_bytes() {
                if ESCAPE[usize::from(b)] {
                    let (sequence, len) = escape(b);
                    out.extend_from_slice(&sequence[..len]);
                } else {
                    out.push(b)
                }
            }
            out.push(b'"');
            out
        }
        let specials = ['\0', '\n', '\r', '\t', '\u{1b}', '\u{1f}', '"', '\\', '\u{7f}', ' ', '~', 'é', '\u{80}'];
        for len in 0..20 {
            for at in 0..len {
                for special in specials {
                    for background in ['a', ']', '\u{1f}'] {
                        let s: String = (0..len)
                            .map(|i| {
                                if i == at {
                                    special
                                } else if i % 3 == 2 {
                                    background
                                } else {
                                    'x'
                                }
                            })
                            .collect();
                        let mut out = Vec::new();
                        write_json_string(&mut out, s.as_bytes());
                        assert_eq!(out, reference(&s), "{s:?}");
                        assert!(!out[1..out.len() - 1].iter().any(|&b| b < 0x20 || b == 0x7f), "{s:?}");
                        let back: String = serde_json::from_slice(&out).unwrap();
                        assert_eq!(back, s);
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_addresses_and_keys_are_written_as_fmt_would() {
        for v in (0..=20_000u64).chain([99_999, 100_000, 1 << 40, u64::MAX]) {
            assert_eq!(written(|c| c.u64(v)), v.to_string().as_bytes());
        }
        for a in 0..=255u8 {
            for ip in [std::net::Ipv4Addr::new(a, 0, 255 - a, a / 3), std::net::Ipv4Addr::new(9, a, 10, 100)] {
                assert_eq!(written(|c| c.ip(IpAddr::V4(ip))), ip.to_string().as_bytes());
            }
        }
        assert_eq!(written(|c| c.ip("2001:db8::1".parse().unwrap())), b"2001:db8::1");
        for (i, name) in FIELDS.iter().enumerate() {
            assert_eq!(key(i), format!(",\"{name}\":").as_bytes());
            assert_eq!(key_quoted(i), format!(",\"{name}\":\"").as_bytes());
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_and_utf8_is_kept() {
        let mut r = record();
        r.host = Some(b"h\xffst\x80.example");
        r.path = "/caf\u{e9}/\u{1f600}";
        let mut out = Vec::new();
        format_record(&mut out, &r, SystemTime::UNIX_EPOCH, &LogSettings::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[names::SERVER_ADDRESS], "h\u{fffd}st\u{fffd}.example");
        assert_eq!(v[names::URL_PATH], "/caf\u{e9}/\u{1f600}");
    }

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut r = record();
        r.path = "/a\r\n{\"forged\":1}\u{1b}[31m";
        let mut out = Vec::new();
        format_record(&mut out, &r, SystemTime::UNIX_EPOCH, &LogSettings::default());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(!out.contains(&0x1b));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[names::URL_PATH], "/a\r\n{\"forged\":1}\u{1b}[31m");
    }

    #[test]
    fn full_queue_drops_and_counts_instead_of_blocking() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::park();
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = AccessLog::to_writer(|| Box::new(Stuck), 4);
        for _ in 0..100 {
            log.log(&record(), &LogSettings::default());
        }
        // Kept: at most what fits in this thread's buffer (4 KiB) twice — the one the stuck writer took (woken at a
        // quarter of it) and the one filled since.
        let mut line = Vec::new();
        format_record(&mut line, &record(), SystemTime::UNIX_EPOCH, &LogSettings::default());
        let kept = 2 * 4096usize.div_ceil(line.len());
        assert!(log.dropped() >= (100 - kept) as u64, "dropped {}", log.dropped());
    }

    #[test]
    fn the_buffer_is_shared_among_the_threads_that_log() {
        /// A writer stuck in its first write for good (a blocked pipe), saying when it got there.
        struct Stuck(Arc<AtomicBool>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                self.0.store(true, Ordering::Release);
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let settings = LogSettings::default();
        let mut line = Vec::new();
        format_record(&mut line, &record(), SystemTime::UNIX_EPOCH, &settings);
        let stuck = Arc::new(AtomicBool::new(false));
        let flag = stuck.clone();
        let log = AccessLog::to_writer(move || Box::new(Stuck(flag)), 64 * 1024);
        // One thread logging holds the whole 64 KiB (not a sixteenth), besides what the stuck writer took.
        let lines = 60 * 1024 / line.len();
        for _ in 0..lines {
            log.log(&record(), &settings);
        }
        assert_eq!(log.dropped(), 0);
        for _ in 0..400 {
            if stuck.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stuck.load(Ordering::Acquire), "the writer took the first buffer");
        // A second thread: each now holds half; the second one's lines past its 32 KiB are dropped.
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..lines {
                    log.log(&record(), &settings);
                }
            });
        });
        let beyond = lines - 32 * 1024 / line.len();
        let dropped = log.dropped() as usize;
        assert!((beyond - 1..=beyond + 1).contains(&dropped), "dropped {dropped}, about {beyond} expected");
    }

    fn line(r: &AccessRecord<'_>, settings: &LogSettings) -> serde_json::Value {
        let mut out = Vec::new();
        format_record(&mut out, r, SystemTime::UNIX_EPOCH, settings);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn credentials_in_headers_and_query_are_redacted_by_default() {
        let headers = strings(&["user-agent", "Authorization", "cookie", "x-api-key", "x-tenant-secret"]);
        let fields = strings(&["request_id", "url.query", "http.request.header"]);
        let settings =
            LogSettings::new(Some(&fields), &[], &headers, &strings(&["x-tenant-secret"]), &[], 1.0, 1.0).unwrap();
        let values = [
            Some(http::HeaderValue::from_static("curl/8")),
            Some(http::HeaderValue::from_static("Bearer eyJhbGciOi.secret.sig")),
            Some(http::HeaderValue::from_static("session=abcdef")),
            Some(http::HeaderValue::from_static("k-123456")),
            Some(http::HeaderValue::from_static("tenant-pw")),
        ];
        let mut r = record();
        r.headers = &values;
        let v = line(&r, &settings);
        assert_eq!(v["http.request.header.user-agent"], "curl/8");
        assert_eq!(v["http.request.header.authorization"], REDACTED);
        assert_eq!(v["http.request.header.cookie"], REDACTED);
        assert_eq!(v["http.request.header.x-api-key"], REDACTED);
        assert_eq!(v["http.request.header.x-tenant-secret"], REDACTED);
        assert_eq!(v["url.query"], "page=2&access_token=[REDACTED]&Password=[REDACTED]&q=x");
        assert!(v.get(names::STATUS).is_none(), "only the chosen fields");
        let text = v.to_string();
        for secret in ["eyJhbGciOi", "abcdef", "k-123456", "tenant-pw", "abc123", "hunter2"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn the_query_is_off_by_default_and_any_field_can_be_redacted() {
        let v = line(&record(), &LogSettings::default());
        assert!(v.get(names::URL_QUERY).is_none());
        assert_eq!(v[names::CONSUMER], "acme");
        let settings =
            LogSettings::new(None, &strings(&["client.address", "consumer"]), &[], &[], &[], 1.0, 1.0).unwrap();
        let v = line(&record(), &settings);
        assert_eq!(v[names::CLIENT_ADDRESS], REDACTED);
        assert_eq!(v[names::CONSUMER], REDACTED);
        assert_eq!(v[names::STATUS], 200);
    }

    #[test]
    fn a_chosen_field_set_is_written_in_order_and_an_empty_one_is_an_empty_object() {
        let only = |fields: &[&str]| {
            let settings = LogSettings::new(Some(&strings(fields)), &[], &[], &[], &[], 1.0, 1.0).unwrap();
            let mut out = Vec::new();
            format_record(&mut out, &record(), SystemTime::UNIX_EPOCH, &settings);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(only(&[]), "{}\n");
        assert_eq!(only(&["http.response.status_code"]), "{\"http.response.status_code\":200}\n");
        assert_eq!(
            only(&["http.response.status_code", "http.request.method", "time"]),
            "{\"time\":\"1970-01-01T00:00:00.000Z\",\"http.request.method\":\"GET\",\"http.response.status_code\":200}\n"
        );
    }

    #[test]
    fn unknown_fields_and_bad_ratios_are_refused() {
        let err = LogSettings::new(
            Some(&strings(&["status"])),
            &strings(&["nope"]),
            &strings(&["bad header"]),
            &[],
            &[],
            2.0,
            1.0,
        )
        .unwrap_err();
        assert!(err.contains(&LogSettingsError::UnknownField("fields", 0, "status".into())));
        assert!(err.contains(&LogSettingsError::UnknownField("redact", 0, "nope".into())));
        assert!(err.contains(&LogSettingsError::BadHeader(0, "bad header".into())));
        assert!(err.contains(&LogSettingsError::BadRatio("sample.successes")));
    }

    #[test]
    fn sampling_keeps_errors_and_a_share_of_successes() {
        let settings = LogSettings::new(None, &[], &[], &[], &[], 0.01, 1.0).unwrap();
        let kept = (0..100_000u64).filter(|i| settings.keep(false, || i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).count();
        assert!((500..1500).contains(&kept), "about 1 %: {kept}");
        assert!((0..1000u64).all(|i| settings.keep(true, || i.wrapping_mul(0x9e37_79b9_7f4a_7c15))));
    }

    #[test]
    fn a_file_log_is_reopened_at_its_path() {
        let dir = std::env::temp_dir().join(format!("turnpike-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::to_file(&path, 16).unwrap();
        let settings = LogSettings::default();
        log.log(&record(), &settings);
        let wait = |p: &std::path::Path, lines: usize| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0) >= lines {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(wait(&path, 1));
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(&record(), &settings);
        assert!(wait(&path, 1), "a new file at the same path");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 1, "the old file kept its line");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_log_reserves_blocks_ahead_without_changing_what_readers_see() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("turnpike-reserve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut reserve = Reserve::default();
        let mut expected = Vec::new();
        let write = |file: &mut std::fs::File, reserve: &mut Reserve, bytes: &[u8], expected: &mut Vec<u8>| {
            reserve.ahead_of(file, bytes.len());
            file.write_all(bytes).unwrap();
            reserve.end += bytes.len() as u64;
            expected.extend_from_slice(bytes);
        };
        write(&mut file, &mut reserve, &[b'a'; 100], &mut expected);
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 100, "the size is what was written");
        if reserve.off {
            eprintln!("NOTE: {} cannot reserve blocks; nothing to check", dir.display());
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        assert!(meta.blocks() * 512 >= RESERVE_AHEAD, "blocks reserved ahead: {}", meta.blocks() * 512);
        // Past the first reservation, in writes the size of a buffer's.
        for i in 0..20u8 {
            write(&mut file, &mut reserve, &vec![b'b' + i; 100_000], &mut expected);
        }
        assert!(reserve.until >= expected.len() as u64 && reserve.until > RESERVE_AHEAD);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        // Truncated under the log (logrotate's copytruncate): the reservation went with the blocks. The log finds
        // out when it believes it passed what it reserved (at most RESERVE_AHEAD later), and reserves from the real
        // end.
        file.set_len(0).unwrap();
        expected.clear();
        for i in 0..12u8 {
            write(&mut file, &mut reserve, &vec![b'A' + i; 100_000], &mut expected);
        }
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 1_200_000);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert!(meta.blocks() * 512 >= meta.len() + RESERVE_AHEAD / 2, "reserved again: {}", meta.blocks() * 512);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A writer that keeps what is written, shared with the test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_buffer_past_its_wake_up_size_is_written_before_the_interval() {
        let sink = Sink::default();
        let written = sink.0.clone();
        // One thread logs: its buffer holds all 16 KiB and wakes the writer at 4 KiB; left alone the writer would
        // sleep for an hour.
        let log = AccessLog::with_interval(move || Box::new(sink), 16 * 1024, Duration::from_secs(3600));
        let settings = LogSettings::default();
        let mut line = Vec::new();
        format_record(&mut line, &record(), SystemTime::UNIX_EPOCH, &settings);
        let lines = 4096 / line.len() + 1;
        for _ in 0..lines {
            log.log(&record(), &settings);
        }
        for _ in 0..2000 {
            if written.lock().unwrap().len() >= lines * line.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = written.lock().unwrap().clone();
        assert_eq!(out.len(), lines * line.len(), "every line, written without waiting for the interval");
        assert_eq!(log.dropped(), 0);
        for l in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn a_line_longer_than_its_room_says_what_it_needs_and_fits_in_that() {
        let settings = LogSettings::new(None, &[], &strings(&["user-agent"]), &[], &[], 1.0, 1.0).unwrap();
        let agent = [http::HeaderValue::from_bytes(b"agent\"\\\t").ok()];
        let mut r = record();
        r.headers = &agent;
        let mut path = String::from("/");
        for i in 0..700 {
            path.push(if i % 7 == 0 { '\u{1}' } else { 'p' });
        }
        r.path = &path;
        let mut reference = Vec::new();
        format_record(&mut reference, &r, SystemTime::UNIX_EPOCH, &settings);
        assert!(reference.len() > 1000, "{}", reference.len());
        // Every room too small, by one byte or by most of the line, asks for at least what the line takes.
        for size in 0..reference.len() {
            let mut room = vec![0; size];
            let needed = format_line(&mut room, &r, 0, None, &settings).unwrap_err();
            assert!(needed >= reference.len() && needed > size, "{size}: {needed}");
            let mut room = vec![0; needed];
            let n = format_line(&mut room, &r, 0, None, &settings).unwrap();
            assert_eq!(room[..n], reference[..], "{size}");
        }
        // Through the log: a line longer than the room a buffer keeps is written whole, after the lines before it.
        let sink = Sink::default();
        let seen = sink.0.clone();
        let log = AccessLog::to_writer(move || Box::new(sink), DEFAULT_BUFFER);
        let longer = format!("{path}{}", "\u{2}".repeat(ROOM));
        r.path = &longer;
        let mut long = Vec::new();
        format_record(&mut long, &r, SystemTime::UNIX_EPOCH, &settings);
        assert!(long.len() > 6 * ROOM);
        log.log(&record(), &settings);
        log.log(&r, &settings);
        log.log(&record(), &settings);
        log.flush(Duration::from_secs(5));
        let out = seen.lock().unwrap().clone();
        let lines: Vec<serde_json::Value> =
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1][names::URL_PATH], longer.as_str());
        assert_eq!(lines[2][names::URL_PATH], "/api/users");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_room_made_for_a_line_that_did_not_fit_always_fits_it() {
        // The longest lines: every field on, IPv6 addresses, the largest numbers, every string escaped at six bytes
        // a byte, and many logged headers, empty and redacted or long and escaped.
        let names: Vec<String> = (0..40).map(|i| format!("x-header-{i}")).collect();
        let values: Vec<Option<http::HeaderValue>> = (0..40)
            .map(|i| Some(http::HeaderValue::from_bytes(&if i % 2 == 0 { vec![] } else { vec![b'"'; 300] }).unwrap()))
            .collect();
        let control = "\u{1}".repeat(200);
        let control = control.as_str();
        let mut r: AccessRecord<'_> = record();
        (r.client, r.endpoint) = ("2001:db8::1".parse().unwrap(), Some("[2001:db8::2]:65535".parse().unwrap()));
        (r.bytes_in, r.bytes_out, r.attempts) = (u64::MAX, u64::MAX, u32::MAX);
        (r.duration, r.upstream_duration) = (Duration::MAX, Some(Duration::MAX));
        (r.path, r.listener, r.route, r.upstream) = (control, control, Some(control), Some(control));
        (r.consumer, r.rate_limit_by, r.query) = (Some(control), Some(control), Some(control));
        (r.retry_stopped, r.rate_limit, r.error, r.aborted) = (Some("budget"), Some("over"), Some("timeout"), true);
        r.headers = &values;
        let secret: Vec<String> = names.iter().step_by(2).cloned().collect();
        let all: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
        for (fields, redact) in [(&all, &[][..]), (&all, &all[..])] {
            let settings = LogSettings::new(Some(fields), redact, &names, &secret, &[], 1.0, 1.0).unwrap();
            let query = logged_query(&r, &settings);
            let bound = line_bound(&r, query.as_deref(), &settings);
            let mut room = vec![0; bound];
            let n = format_line(&mut room, &r, 0, query.as_deref(), &settings).expect("fits in its bound");
            assert!(n > ROOM, "longer than the room a buffer keeps: {n}");
            serde_json::from_slice::<serde_json::Value>(&room[..n]).unwrap();
        }
    }

    #[test]
    fn flush_writes_every_line_logged_before_it() {
        let sink = Sink::default();
        let seen = sink.clone();
        let log = AccessLog::to_writer(move || Box::new(sink), DEFAULT_BUFFER);
        let settings = LogSettings::default();
        for _ in 0..25 {
            log.log(&record(), &settings);
        }
        log.flush(Duration::from_secs(5));
        assert_eq!(seen.0.lock().unwrap().iter().filter(|&&b| b == b'\n').count(), 25);
    }

    #[test]
    fn field_positions_match_the_names() {
        let positions = [
            (f::TIME, names::TIME),
            (f::REQUEST_ID, names::REQUEST_ID),
            (f::CLIENT_ADDRESS, names::CLIENT_ADDRESS),
            (f::METHOD, names::METHOD),
            (f::SERVER_ADDRESS, names::SERVER_ADDRESS),
            (f::URL_PATH, names::URL_PATH),
            (f::URL_QUERY, names::URL_QUERY),
            (f::PROTOCOL_VERSION, names::PROTOCOL_VERSION),
            (f::LISTENER, names::LISTENER),
            (f::ROUTE, names::ROUTE),
            (f::UPSTREAM, names::UPSTREAM),
            (f::ENDPOINT, names::ENDPOINT),
            (f::ATTEMPTS, names::ATTEMPTS),
            (f::STATUS, names::STATUS),
            (f::BYTES_IN, names::BYTES_IN),
            (f::BYTES_OUT, names::BYTES_OUT),
            (f::DURATION_MS, names::DURATION_MS),
            (f::UPSTREAM_DURATION_MS, names::UPSTREAM_DURATION_MS),
            (f::RETRY_STOPPED, names::RETRY_STOPPED),
            (f::CONSUMER, names::CONSUMER),
            (f::RATE_LIMIT, names::RATE_LIMIT),
            (f::RATE_LIMIT_BY, names::RATE_LIMIT_BY),
            (f::ERROR_TYPE, names::ERROR_TYPE),
            (f::TRACE_ID, names::TRACE_ID),
            (f::SPAN_ID, names::SPAN_ID),
            (f::ABORTED, names::ABORTED),
            (f::REQUEST_HEADERS, names::REQUEST_HEADERS),
        ];
        assert_eq!(positions.len(), FIELDS.len());
        for (i, name) in positions {
            assert_eq!(FIELDS[i], name);
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["10.0.0.1", "255.255.255.0", "0.0.0.0", "2001:db8::1", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(String::from_utf8(written(|c| c.ip(ip))).unwrap(), ip.to_string());
        }
        let mut r = record();
        r.endpoint = Some("[2001:db8::2]:8443".parse().unwrap());
        let v = line(&r, &LogSettings::default());
        assert_eq!(v[names::ENDPOINT], "[2001:db8::2]:8443");
        assert_eq!(v[names::CLIENT_ADDRESS], "10.0.0.1");
    }
}
