//! Serving one downstream connection: HTTP/1.1 and HTTP/2 (prior knowledge), slowloris deadlines, graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use turnpike_core::{Peer, Scheme};

use crate::gateway::Gateway;
use crate::snapshot::{ListenerProtocol, ListenerSettings};

/// What every request on a connection shares.
pub(crate) struct Conn {
    pub gateway: Arc<Gateway>,
    pub peer: Arc<Peer>,
    /// The listener's settings when the connection was accepted.
    pub listener: Arc<ListenerSettings>,
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
pub(crate) async fn serve(gateway: Arc<Gateway>, stream: TcpStream, peer_addr: SocketAddr, listener: Arc<ListenerSettings>) {
    let connections = gateway.connections.clone();
    let _tracked = connections.track();
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(listener.address);
    let peer = Arc::new(Peer::new(peer_addr, local, listener.name.clone(), Scheme::Http));
    let mut shutdown = gateway.shutdown_signal();
    let conn = Arc::new(Conn { gateway, peer, listener: listener.clone() });
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(crate::pipeline::handle(&conn, req).await) }
    });
    let io = TokioIo::new(stream);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listener.header_timeout)
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
    tokio::select! {
        result = connection.as_mut() => {
            log_end(result);
            return;
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
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
