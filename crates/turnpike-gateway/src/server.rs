//! Serving one downstream connection: HTTP/1.1 and HTTP/2 (prior knowledge), slowloris deadlines, graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use turnpike_core::{Peer, Scheme};

use crate::gateway::Gateway;
use crate::snapshot::{ListenerProtocol, ListenerSettings};

/// What every request on a connection shares.
pub(crate) struct Conn {
    pub gateway: Arc<Gateway>,
    pub peer: Arc<Peer>,
    /// The listener's settings when the connection was accepted.
    pub listener: Arc<ListenerSettings>,
    /// Requests in flight and the time of the last one's end, for the head/idle watchdog.
    activity: Activity,
}

/// When a connection last did something useful. The watchdog in [`serve`] reads it to close connections that take
/// too long to send a request head or sit idle too long between requests (slowloris, abandoned keep-alives), with
/// one timer per connection rather than one per request.
struct Activity {
    since: Instant,
    in_flight: AtomicU32,
    last_end_nanos: AtomicU64,
}

/// Held by a response until it has been sent (or abandoned); marks the request in flight.
pub(crate) struct RequestGuard {
    conn: Arc<Conn>,
    /// The end time is already recorded ([`ended_at`](Self::ended_at)): dropping does not read the clock again.
    ended: bool,
}

impl Conn {
    /// Marks a request as in flight until the returned guard is dropped.
    pub(crate) fn begin(self: Arc<Self>) -> RequestGuard {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard { conn: self, ended: false }
    }
}

impl RequestGuard {
    /// Records when the request ended with a clock reading the caller already has (the `finish` phase's).
    pub(crate) fn ended_at(&mut self, end: Instant) {
        self.conn.activity.record_end(end);
        self.ended = true;
    }
}

impl Activity {
    fn record_end(&self, end: Instant) {
        let nanos = u64::try_from(end.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX);
        self.last_end_nanos.store(nanos, Ordering::Relaxed);
    }
}

impl std::ops::Deref for RequestGuard {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.conn.activity;
        if !self.ended {
            activity.record_end(Instant::now());
        }
        activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// Open downstream connections, so shutdown can wait for them to drain.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: AtomicUsize,
    drained: Notify,
}

pub(crate) struct Tracked<'a>(&'a Connections);

impl Connections {
    pub(crate) fn track(&self) -> Tracked<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        Tracked(self)
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until no connection is open, or `deadline` passes; returns how many were still open.
    pub(crate) async fn drain(&self, deadline: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                if self.open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.open()
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Serves `stream` until the client closes it, a deadline expires, or shutdown drains it.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    stream: TcpStream,
    peer_addr: SocketAddr,
    listener: Arc<ListenerSettings>,
) {
    let connections = gateway.connections.clone();
    let _tracked = connections.track();
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(listener.address);
    // The head deadline runs from the accept: a TLS handshake and the first request head share it.
    let since = Instant::now();
    listener.metrics.accepted.fetch_add(1, Ordering::Relaxed);
    match &listener.tls {
        None => {
            let protocol = match listener.protocol {
                ListenerProtocol::Http1 => ListenerProtocol::Http1,
                ListenerProtocol::Http2 => ListenerProtocol::Http2,
                ListenerProtocol::Auto => match sniff(&stream, since + listener.header_timeout).await {
                    Some(protocol) => protocol,
                    None => return,
                },
            };
            let peer = Peer::new(peer_addr, local, listener.name.clone(), Scheme::Http);
            serve_http(gateway, TokioIo::new(stream), protocol, peer, &listener, since).await;
        }
        Some(tls) => {
            let handshake = tokio::time::timeout_at(since + listener.header_timeout, tls.acceptor().accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => {
                    listener.metrics.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    stream
                }
                Ok(Err(err)) => {
                    listener.metrics.tls_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer_addr, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    listener.metrics.tls_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer_addr, "TLS handshake not completed in time");
                    return;
                }
            };
            let (_, session) = stream.get_ref();
            // ALPN decides; a client that offered none gets what the listener speaks.
            let protocol = match session.alpn_protocol() {
                Some(b"h2") => ListenerProtocol::Http2,
                Some(_) => ListenerProtocol::Http1,
                None if listener.protocol == ListenerProtocol::Http2 => ListenerProtocol::Http2,
                None => ListenerProtocol::Http1,
            };
            let mut peer = Peer::new(peer_addr, local, listener.name.clone(), Scheme::Https);
            peer.client_cert = turnpike_tls::peer_client_cert(session).map(Arc::new);
            peer.server_name = session.server_name().map(Arc::from);
            serve_http(gateway, TokioIo::new(stream), protocol, peer, &listener, since).await;
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on an established connection (plain or TLS).
async fn serve_http<I>(
    gateway: Arc<Gateway>,
    io: I,
    protocol: ListenerProtocol,
    peer: Peer,
    listener: &Arc<ListenerSettings>,
    since: Instant,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = gateway.shutdown_signal();
    let activity = Activity { since, in_flight: AtomicU32::new(0), last_end_nanos: AtomicU64::new(0) };
    let conn = Arc::new(Conn { gateway, peer: Arc::new(peer), listener: listener.clone(), activity });
    let watched = conn.clone();
    let service = service_fn(move |req| {
        let conn = conn.clone().begin();
        async move { Ok::<_, Infallible>(crate::pipeline::handle(conn, req).await) }
    });
    match protocol {
        ListenerProtocol::Http2 => {
            // Boxed: HTTP/2 connection state is large, and it must not size every HTTP/1.1 connection's task.
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(listener.h2_max_concurrent_streams)
                .max_header_list_size(u32::try_from(listener.max_header_size).unwrap_or(u32::MAX))
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            Box::pin(drive(builder.serve_connection(io, service), &watched, shutdown)).await;
        }
        ListenerProtocol::Http1 | ListenerProtocol::Auto => {
            let mut builder = http1::Builder::new();
            builder
                // The head deadline is the watchdog's in `drive` (one timer per connection, not one per request).
                .header_read_timeout(None)
                // A backstop only: the gateway checks the configured limit itself so that it can answer with a
                // problem document; hyper's own refusal (a bare 431) applies to heads that do not fit twice that.
                .max_buf_size((listener.max_header_size as usize).saturating_mul(2).max(16 * 1024));
            // hyper parses up to 100 fields without allocating; the configured count is checked in `admit`, so
            // hyper's limit (a bare 431) only moves for configurations that allow more.
            if listener.max_headers > HYPER_INLINE_HEADERS {
                builder.max_headers(listener.max_headers.saturating_mul(2));
            }
            drive(builder.serve_connection(io, service), &watched, shutdown).await;
        }
    }
}

/// How many header fields hyper parses in place (its default limit).
const HYPER_INLINE_HEADERS: usize = 100;

/// The HTTP/2 connection preface (RFC 9113 §3.4): a client that starts with it speaks HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells HTTP/2 with prior knowledge from HTTP/1.1 by peeking at the first bytes, without consuming them (so no
/// rewind buffer sits in front of every read afterwards). `None`: the client closed, or sent nothing by `deadline`.
async fn sniff(stream: &TcpStream, deadline: Instant) -> Option<ListenerProtocol> {
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return Some(ListenerProtocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Some(ListenerProtocol::Http2);
        }
        // Part of the preface so far (rare): peeking again at once would see the same bytes, so wait a little.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// A served connection that can be asked to finish gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Runs a connection to its end, with the head/idle watchdog and graceful drain on shutdown.
///
/// The watchdog timer and the shutdown signal are polled only when they woke the task, not on every wake of the
/// connection (a `select!` would poll all three each time the socket is ready: measured at ~650 instructions per
/// request, 2 % of a proxied request).
async fn drive<C: Graceful>(connection: C, watched: &Conn, shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut connection = std::pin::pin!(connection);
    let timeout = watched.listener.header_timeout;
    let mut watchdog = std::pin::pin!(tokio::time::sleep_until(watched.activity.since + timeout));
    let mut stop = std::pin::pin!(async move {
        let mut shutdown = shutdown;
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let wakes = Wakes::new();
    loop {
        let event = std::future::poll_fn(|cx| {
            wakes.parent.register(cx.waker());
            if let std::task::Poll::Ready(result) = connection.as_mut().poll(cx) {
                return std::task::Poll::Ready(Event::Done(result));
            }
            if wakes.stop.take() && stop.as_mut().poll(&mut wakes.stop.context()).is_ready() {
                return std::task::Poll::Ready(Event::Shutdown);
            }
            if wakes.watchdog.take() && watchdog.as_mut().poll(&mut wakes.watchdog.context()).is_ready() {
                return std::task::Poll::Ready(Event::Watchdog);
            }
            std::task::Poll::Pending
        })
        .await;
        match event {
            Event::Done(result) => {
                log_end(result);
                return;
            }
            Event::Shutdown => break,
            Event::Watchdog => {
                let activity = &watched.activity;
                let now = Instant::now();
                // The timer is re-armed below: poll it again so it registers its waker for the new deadline.
                wakes.watchdog.arm();
                if activity.in_flight.load(Ordering::Acquire) > 0 {
                    // A request is being served; its own deadlines apply. Look again later.
                    watchdog.as_mut().reset(now + timeout);
                    continue;
                }
                let idle_since = activity.since + Duration::from_nanos(activity.last_end_nanos.load(Ordering::Relaxed));
                if now >= idle_since + timeout {
                    // No complete request head within `header_timeout` of the last response (or of the accept):
                    // a slow or idle client. Dropping the connection closes it.
                    tracing::debug!(peer = %watched.peer.addr, "closing connection: no request head in time");
                    return;
                }
                watchdog.as_mut().reset(idle_since + timeout);
            }
        }
    }
    // Draining: HTTP/1.1 closes after the response in flight, HTTP/2 sends GOAWAY and finishes open streams.
    connection.as_mut().graceful_shutdown();
    log_end(connection.await);
}

/// What ended a round of [`drive`].
enum Event {
    Done(Result<(), hyper::Error>),
    Shutdown,
    Watchdog,
}

/// The connection task's waker, shared by the wakers of the side branches of [`drive`].
#[derive(Default)]
struct ParentWaker(std::sync::Mutex<Option<std::task::Waker>>);

impl ParentWaker {
    fn register(&self, waker: &std::task::Waker) {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake(&self) {
        let waker = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A side branch's waker: notes that the branch woke, then wakes the connection task.
struct Branch {
    woken: std::sync::atomic::AtomicBool,
    parent: Arc<ParentWaker>,
}

impl std::task::Wake for Branch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.parent.wake();
    }
}

/// A side branch of [`drive`] with its own waker.
struct BranchWaker {
    branch: Arc<Branch>,
    waker: std::task::Waker,
}

impl BranchWaker {
    fn new(parent: &Arc<ParentWaker>) -> Self {
        // Woken from the start: every branch is polled once, which registers its waker.
        let branch = Arc::new(Branch { woken: std::sync::atomic::AtomicBool::new(true), parent: parent.clone() });
        Self { waker: std::task::Waker::from(branch.clone()), branch }
    }

    /// Whether the branch woke since it was last polled (and forgets it).
    fn take(&self) -> bool {
        self.branch.woken.load(Ordering::Acquire) && self.branch.woken.swap(false, Ordering::AcqRel)
    }

    /// Makes the branch be polled on the next round.
    fn arm(&self) {
        self.branch.woken.store(true, Ordering::Release);
    }

    fn context(&self) -> std::task::Context<'_> {
        std::task::Context::from_waker(&self.waker)
    }
}

/// The wakers of [`drive`]: the task's, the watchdog's and the shutdown signal's.
struct Wakes {
    parent: Arc<ParentWaker>,
    watchdog: BranchWaker,
    stop: BranchWaker,
}

impl Wakes {
    fn new() -> Self {
        let parent = Arc::new(ParentWaker::default());
        Self { watchdog: BranchWaker::new(&parent), stop: BranchWaker::new(&parent), parent }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "downstream connection ended with an error");
    }
}
