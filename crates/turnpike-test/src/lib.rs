//! Turnpike's test harness: a gateway started from a config string on 127.0.0.1:0, scriptable mock upstreams,
//! and HTTP/1.1 and HTTP/2 clients. Everything talks real HTTP over loopback.

pub mod client;
pub mod dns;
pub mod gateway;
pub mod mock;
pub mod raw;
pub mod redis;
pub mod tls;

pub use client::{Client, Reply};
pub use dns::DnsServer;
pub use gateway::{LogGate, TestGateway};
pub use mock::{MockReply, MockUpstream, Recorded};
pub use raw::{RawConn, RawResponse};

/// A free loopback port nobody listens on (bound, then released): connections to it are refused.
pub fn refused_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr
}

/// Polls `cond` every 5 ms until it holds or `limit` passes; returns whether it held. For waiting on a condition
/// without sleeping a guessed time.
pub async fn eventually(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cond()
}
