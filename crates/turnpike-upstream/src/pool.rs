//! Keep-alive connection pools, one per endpoint, shared by every worker thread.
//!
//! HTTP/1.1 connections wait in a LIFO stack (the warmest connection is reused first, the coldest expire first);
//! an exchange hands its connection back when the response body has been read to the end, with no extra task.
//! HTTP/2 endpoints share one multiplexed connection. A request that a reused connection never started (it closed
//! while idle) is sent again on a fresh connection, so keep-alive races with an upstream's idle timeout stay
//! invisible to clients.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use turnpike_core::Body;

use crate::connect::{self, ConnectError};

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge (h2c), one multiplexed connection per endpoint.
    Http2,
}

/// Pool settings of an upstream (they live in the snapshot; the pool itself lives in state).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// TLS towards the endpoints (`None`: plain TCP). The server name comes from the endpoint.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Deadline for opening a connection.
    pub connect_timeout: Duration,
    /// How long an unused connection is kept.
    pub idle_timeout: Duration,
    /// The most idle connections kept per endpoint.
    pub max_idle: usize,
}

/// Why sending a request upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection failed while sending the request or reading the response head.
    #[error("upstream exchange failed")]
    Exchange(#[source] hyper::Error),
}

/// A failed send: the error, and the request when it was never sent.
#[derive(Debug)]
pub struct Unsent {
    /// What went wrong.
    pub error: SendError,
    /// The request, when no byte of it reached the endpoint.
    pub request: Option<Request<Body>>,
}

/// Counters of one pool, for metrics and tests.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections opened.
    pub connects: AtomicU64,
    /// Requests sent on a reused connection.
    pub reuses: AtomicU64,
    /// Connections currently open.
    pub open: AtomicI64,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// A connection to an endpoint, plain or over TLS.
pub(crate) enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// The connections of one endpoint.
pub(crate) struct Pool {
    addr: SocketAddr,
    protocol: Protocol,
    /// The TLS server name (SNI, and the name verified) when the upstream uses TLS.
    server_name: Option<rustls_pki_types::ServerName<'static>>,
    idle: Mutex<VecDeque<Idle>>,
    shared: Mutex<Option<http2::SendRequest<Body>>>,
    stats: Arc<PoolStats>,
}

/// A connection taken from the pool for one exchange.
pub struct Checkout {
    sender: Sender,
    reused: bool,
}

impl Pool {
    pub(crate) fn new(
        addr: SocketAddr,
        protocol: Protocol,
        server_name: Option<rustls_pki_types::ServerName<'static>>,
    ) -> Self {
        Self {
            addr,
            protocol,
            server_name,
            idle: Mutex::new(VecDeque::new()),
            shared: Mutex::new(None),
            stats: Arc::new(PoolStats::default()),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Takes a ready connection: a pooled one if any is alive, else a new one.
    /// `now` is the caller's idea of the current time (read once per request), used to expire idle connections.
    pub(crate) async fn checkout(&self, settings: &PoolSettings, now: Instant) -> Result<Checkout, ConnectError> {
        match self.protocol {
            Protocol::Http1 => {
                while let Some(idle) = self.pop_idle(settings.idle_timeout, now) {
                    let mut sender = idle.sender;
                    if sender.is_closed() {
                        continue;
                    }
                    // Normally ready already: the previous response was read to its end before the connection came
                    // back. If its task has not caught up yet, this resolves on its next poll.
                    if sender.is_ready() || sender.ready().await.is_ok() {
                        self.stats.reuses.fetch_add(1, Ordering::Relaxed);
                        return Ok(Checkout { sender: Sender::H1(sender), reused: true });
                    }
                }
                let sender = self.connect_h1(settings).await?;
                Ok(Checkout { sender: Sender::H1(sender), reused: false })
            }
            Protocol::Http2 => {
                let shared = lock(&self.shared).as_ref().filter(|s| !s.is_closed()).cloned();
                if let Some(mut sender) = shared
                    && sender.ready().await.is_ok()
                {
                    self.stats.reuses.fetch_add(1, Ordering::Relaxed);
                    return Ok(Checkout { sender: Sender::H2(sender), reused: true });
                }
                let fresh = self.connect_h2(settings).await?;
                if let Sender::H2(sender) = &fresh.sender {
                    *lock(&self.shared) = Some(sender.clone());
                }
                Ok(fresh)
            }
        }
    }

    fn pop_idle(&self, idle_timeout: Duration, now: Instant) -> Option<Idle> {
        let mut idle = lock(&self.idle);
        let newest = idle.pop_back()?;
        if now.saturating_duration_since(newest.since) >= idle_timeout {
            // The newest has expired, so all older ones have too.
            idle.clear();
            return None;
        }
        Some(newest)
    }

    async fn connect_h1(&self, settings: &PoolSettings) -> Result<http1::SendRequest<Body>, ConnectError> {
        match self.connect(settings).await? {
            Stream::Plain(tcp) => self.handshake_h1(TokioIo::new(tcp)).await,
            Stream::Tls(tls) => self.handshake_h1(TokioIo::new(tls)).await,
        }
    }

    async fn connect_h2(&self, settings: &PoolSettings) -> Result<Checkout, ConnectError> {
        let sender = match self.connect(settings).await? {
            Stream::Plain(tcp) => self.handshake_h2(TokioIo::new(tcp)).await?,
            Stream::Tls(tls) => self.handshake_h2(TokioIo::new(tls)).await?,
        };
        Ok(Checkout { sender: Sender::H2(sender), reused: false })
    }

    /// TCP, then TLS when the upstream uses it, all within the connect deadline.
    pub(crate) async fn connect(&self, settings: &PoolSettings) -> Result<Stream, ConnectError> {
        let started = Instant::now();
        let tcp = connect::tcp(self.addr, settings.connect_timeout).await?;
        let (Some(config), Some(name)) = (&settings.tls, &self.server_name) else { return Ok(Stream::Plain(tcp)) };
        let left = settings.connect_timeout.saturating_sub(started.elapsed());
        let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), tcp);
        match tokio::time::timeout(left, handshake).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(source)) => Err(ConnectError::Tls { addr: self.addr, source }),
            Err(_) => Err(ConnectError::Timeout { addr: self.addr }),
        }
    }

    async fn handshake_h1<I>(&self, io: I) -> Result<http1::SendRequest<Body>, ConnectError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr: self.addr, source })?;
        self.spawn_connection(conn);
        Ok(sender)
    }

    async fn handshake_h2<I>(&self, io: I) -> Result<http2::SendRequest<Body>, ConnectError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr: self.addr, source })?;
        self.spawn_connection(conn);
        Ok(sender)
    }

    fn spawn_connection<F>(&self, conn: F)
    where
        F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let stats = self.stats.clone();
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(endpoint = %addr, error = %err, "upstream connection ended with an error");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Returns an HTTP/1.1 connection after its exchange ended cleanly.
    fn release(&self, sender: http1::SendRequest<Body>, settings: &PoolSettings) {
        if sender.is_closed() || settings.max_idle == 0 {
            return;
        }
        let mut idle = lock(&self.idle);
        idle.push_back(Idle { sender, since: Instant::now() });
        while idle.len() > settings.max_idle {
            idle.pop_front();
        }
    }

    /// Closes connections idle for longer than `idle_timeout`, and closed ones.
    pub(crate) fn sweep(&self, idle_timeout: Duration) {
        let mut idle = lock(&self.idle);
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < idle_timeout);
        drop(idle);
        let mut shared = lock(&self.shared);
        if shared.as_ref().is_some_and(|s| s.is_closed()) {
            *shared = None;
        }
    }

    /// Number of idle HTTP/1.1 connections (for tests and metrics).
    pub(crate) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }
}

impl Checkout {
    /// Whether the connection was reused from the pool.
    pub fn reused(&self) -> bool {
        self.reused
    }
}

/// One request/response exchange with an endpoint: counts as in flight from creation to drop, and hands its
/// connection back to the pool when [`Exchange::release`] is called after the response body ended.
pub struct Exchange {
    endpoint: Arc<crate::Endpoint>,
    conn: Option<Sender>,
    settings: PoolSettings,
    /// The upstream's concurrency slot, given back with the exchange.
    slot: Option<crate::Slot>,
}

/// Alias kept for readers who look for the pooled connection type.
pub type PooledConn = Exchange;

impl Exchange {
    pub(crate) fn new(endpoint: Arc<crate::Endpoint>, settings: PoolSettings) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { endpoint, conn: None, settings, slot: None }
    }

    /// Holds the upstream's concurrency slot until the exchange ends (its response body read or abandoned).
    pub fn hold_slot(&mut self, slot: crate::Slot) {
        self.slot = Some(slot);
    }

    /// The endpoint this exchange talks to.
    pub fn endpoint(&self) -> &Arc<crate::Endpoint> {
        &self.endpoint
    }

    /// Sends `req` on a pooled or new connection and waits for the response head. `now` is the time the caller
    /// read when it started the attempt (it saves a clock read here).
    ///
    /// `req`'s URI must be in origin form (`/path?query`) for HTTP/1.1 and absolute for HTTP/2. A request that a
    /// reused connection never started (it had closed while idle) is sent once more on a fresh connection. When
    /// the request was never sent (no connection could be opened, or the connection refused it before writing),
    /// it comes back with the error, so the caller can send it elsewhere whatever its method and body.
    pub async fn send(&mut self, req: Request<Body>, now: Instant) -> Result<Response<Incoming>, Unsent> {
        let pool = &self.endpoint.pool;
        let checkout = match pool.checkout(&self.settings, now).await {
            Ok(checkout) => checkout,
            Err(err) => return Err(Unsent { error: err.into(), request: Some(req) }),
        };
        let reused = checkout.reused;
        match checkout.sender {
            Sender::H1(mut sender) => match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.conn = Some(Sender::H1(sender));
                    Ok(resp)
                }
                Err(mut err) => match err.take_message() {
                    Some(req) if reused => {
                        let mut sender = match pool.connect_h1(&self.settings).await {
                            Ok(sender) => sender,
                            Err(err) => return Err(Unsent { error: err.into(), request: Some(req) }),
                        };
                        match sender.try_send_request(req).await {
                            Ok(resp) => {
                                self.conn = Some(Sender::H1(sender));
                                Ok(resp)
                            }
                            Err(mut err) => {
                                let request = err.take_message();
                                Err(Unsent { error: SendError::Exchange(err.into_error()), request })
                            }
                        }
                    }
                    request => Err(Unsent { error: SendError::Exchange(err.into_error()), request }),
                },
            },
            Sender::H2(mut sender) => match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.conn = Some(Sender::H2(sender));
                    Ok(resp)
                }
                Err(mut err) => {
                    let request = err.take_message();
                    Err(Unsent { error: SendError::Exchange(err.into_error()), request })
                }
            },
        }
    }

    /// Hands the connection back to the pool: call it once the response body has been read to its end.
    pub fn release(&mut self) {
        if let Some(Sender::H1(sender)) = self.conn.take() {
            self.endpoint.pool.release(sender, &self.settings);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // A connection not released here is dropped: its response was not read to the end, so it cannot be reused.
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
