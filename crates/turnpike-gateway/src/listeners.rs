//! The listener set: sockets keyed by their configured address (and name, for port 0), reconciled on reload by diff.
//! A listener whose address stays keeps its socket (no connection is refused or reset); new ones are bound before the new snapshot
//! is swapped in, so a reload that cannot bind changes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::gateway::Gateway;
use crate::snapshot::{ListenerKey, ListenerSettings};
use crate::workers::Workers;

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (listener `{name}`)")]
pub struct BindError {
    /// The listener's name.
    pub name: Arc<str>,
    /// Its configured address.
    pub address: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

struct Active {
    bound: SocketAddr,
    /// Held so the socket stays open while its accept loops run; each worker accepts on a clone.
    _socket: std::net::TcpListener,
    stop: watch::Sender<bool>,
}

/// The bound listeners.
#[derive(Default)]
pub(crate) struct ListenerSet {
    active: HashMap<ListenerKey, Active>,
}

/// New sockets bound for a reload, not yet accepting.
pub(crate) struct Prepared {
    fresh: Vec<(ListenerKey, std::net::TcpListener)>,
    keep: Vec<ListenerKey>,
}

impl ListenerSet {
    /// Binds every address in `wanted` that is not bound yet. On any failure nothing is kept.
    pub(crate) fn prepare(&self, wanted: &[Arc<ListenerSettings>]) -> Result<Prepared, BindError> {
        let mut fresh = Vec::new();
        for listener in wanted {
            let key = listener.key();
            if self.active.contains_key(&key) {
                continue;
            }
            let socket = bind(listener.address).map_err(|source| BindError {
                name: listener.name.clone(),
                address: listener.address,
                source,
            })?;
            fresh.push((key, socket));
        }
        Ok(Prepared { fresh, keep: wanted.iter().map(|l| l.key()).collect() })
    }

    /// Starts accepting on the new sockets and closes the ones no longer configured.
    pub(crate) fn commit(&mut self, prepared: Prepared, gateway: &Arc<Gateway>, workers: &Workers) {
        self.active.retain(|key, active| {
            let keep = prepared.keep.contains(key);
            if !keep {
                let _ = active.stop.send(true);
                tracing::info!(listener = %key, "listener closed");
            }
            keep
        });
        for (key, socket) in prepared.fresh {
            let address = key.address;
            let bound = socket.local_addr().unwrap_or(address);
            let (stop, stopped) = watch::channel(false);
            for handle in workers.handles() {
                match socket.try_clone() {
                    Ok(clone) => {
                        handle.spawn(accept_loop(gateway.clone(), clone, key.clone(), stopped.clone()));
                    }
                    Err(err) => tracing::error!(address = %address, error = %err, "cannot share listener socket"),
                }
            }
            tracing::info!(address = %address, bound = %bound, workers = workers.len(), "listening");
            self.active.insert(key, Active { bound, _socket: socket, stop });
        }
    }

    /// (key, bound address) of every listener.
    pub(crate) fn bound(&self) -> Vec<(ListenerKey, SocketAddr)> {
        self.active.iter().map(|(key, a)| (key.clone(), a.bound)).collect()
    }

    /// Stops accepting everywhere (shutdown).
    pub(crate) fn stop_all(&mut self) {
        for active in self.active.values() {
            let _ = active.stop.send(true);
        }
        self.active.clear();
    }
}

impl Drop for ListenerSet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    // Rebinding right after a restart must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn accept_loop(
    gateway: Arc<Gateway>,
    socket: std::net::TcpListener,
    key: ListenerKey,
    mut stop: watch::Receiver<bool>,
) {
    let address = key.address;
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(address = %address, error = %err, "cannot register listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Settings come from the snapshot current at accept time; a reload applies to new connections.
                let Some(settings) = gateway.snapshot().listener(&key).cloned() else { continue };
                tokio::spawn(crate::server::serve(gateway.clone(), stream, peer, settings));
            }
            Err(err) if is_transient(&err) => {}
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(address = %address, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(err.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
}
