//! Serving one downstream connection: HTTP/1.1 and HTTP/2 (prior knowledge), slowloris deadlines, graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
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
pub(crate) struct RequestGuard(Arc<Conn>);

impl Conn {
    /// Marks a request as in flight until the returned guard is dropped.
    pub(crate) fn begin(self: Arc<Self>) -> RequestGuard {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self)
    }
}

impl std::ops::Deref for RequestGuard {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0.activity;
        let nanos = u64::try_from(activity.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.last_end_nanos.store(nanos, Ordering::Relaxed);
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
    let peer = Arc::new(Peer::new(peer_addr, local, listener.name.clone(), Scheme::Http));
    let mut shutdown = gateway.shutdown_signal();
    let since = Instant::now();
    let activity = Activity { since, in_flight: AtomicU32::new(0), last_end_nanos: AtomicU64::new(0) };
    let conn = Arc::new(Conn { gateway, peer, listener: listener.clone(), activity });
    let watched = conn.clone();
    let service = service_fn(move |req| {
        let conn = conn.clone().begin();
        async move { Ok::<_, Infallible>(crate::pipeline::handle(conn, req).await) }
    });
    let io = TokioIo::new(stream);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The head deadline is the watchdog's below (one timer per connection, not one per request).
        .header_read_timeout(None)
        .max_headers(listener.max_headers)
        // A backstop only: the gateway checks the configured limit itself so that it can answer with a problem
        // document; hyper's own refusal (a bare 431) applies to heads that do not fit twice that buffer.
        .max_buf_size((listener.max_header_size as usize).saturating_mul(2).max(16 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(listener.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(listener.max_header_size).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = match listener.protocol {
        ListenerProtocol::Auto => builder,
        ListenerProtocol::Http1 => builder.http1_only(),
        ListenerProtocol::Http2 => builder.http2_only(),
    };
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let timeout = listener.header_timeout;
    let watchdog = tokio::time::sleep_until(since + timeout);
    let mut watchdog = std::pin::pin!(watchdog);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                log_end(result);
                return;
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = watchdog.as_mut() => {
                let activity = &watched.activity;
                let now = Instant::now();
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

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "downstream connection ended with an error");
    }
}
