//! Opening TCP connections to endpoints, with a deadline.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint refused, reset or was unreachable.
    #[error("connect to {addr} failed")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connect did not complete within the deadline.
    #[error("connect to {addr} timed out")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol error).
    #[error("TLS handshake with {addr} failed")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP handshake on the new connection failed (HTTP/2 preface refused, ...).
    #[error("HTTP handshake with {addr} failed")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// Connects to `addr` within `timeout`, with Nagle's algorithm off (requests and responses are written whole).
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr }),
    };
    stream.set_nodelay(true).map_err(|source| ConnectError::Io { addr, source })?;
    Ok(stream)
}
