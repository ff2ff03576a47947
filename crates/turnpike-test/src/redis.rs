//! Redis for tests: the machine's shared server on 127.0.0.1:6379 (tests skip loudly without it, and fail under
//! `CI=true`), and `redis-server` children of a test's own, on free ports, which it can stop and resume.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared server's address.
pub const SHARED_REDIS: &str = "127.0.0.1:6379";

/// Whether the shared Redis answers `PING`. If not, prints a loud `SKIPPED` line for `test` and returns false;
/// under `CI=true` a missing service fails the test instead.
pub fn shared_redis(test: &str) -> bool {
    if ping(SHARED_REDIS.parse().expect("a socket address")) {
        return true;
    }
    assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{test}: redis not reachable at {SHARED_REDIS} (CI=true)");
    eprintln!("SKIPPED {test}: redis not reachable at {SHARED_REDIS} (start redis-server to run it)");
    false
}

/// Whether `redis-server` can be started; if not, a loud `SKIPPED` (a failure under `CI=true`).
pub fn redis_server_available(test: &str) -> bool {
    let ok = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !ok {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{test}: redis-server not found (CI=true)");
        eprintln!("SKIPPED {test}: redis-server not found");
    }
    ok
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A `redis-server` of the test's own on a free loopback port (nothing saved to disk), killed when dropped.
pub struct ChildRedis {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl ChildRedis {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        let port = crate::refused_addr().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        for _ in 0..200 {
            if ping(server.addr) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on {}", server.addr);
    }

    /// `redis://<addr>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops it (`SIGSTOP`): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Resumes it (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for ChildRedis {
    fn drop(&mut self) {
        let _ = self.signal_quiet("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildRedis {
    fn signal_quiet(&self, signal: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status()
    }
}
