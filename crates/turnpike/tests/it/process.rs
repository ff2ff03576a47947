//! Running the real binary: a child process that is killed if the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_turnpike")
}

/// Runs `turnpike args...` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run turnpike")
}

/// A scratch directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("turnpike-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `turnpike` process, stopped (SIGKILL) when dropped.
pub struct Gateway {
    pub child: Child,
    pub stdout: PathBuf,
}

impl Gateway {
    /// Starts `turnpike args...` with stdout and stderr going to files in `dir`.
    pub fn spawn(dir: &TempDir, args: &[&str]) -> Self {
        let stdout = dir.0.join("stdout.log");
        let child = Command::new(bin())
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(std::fs::File::create(dir.0.join("stderr.log")).expect("stderr file")))
            .spawn()
            .expect("spawn turnpike");
        Self { child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`; returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        // Counted in steps rather than read from a clock: this runs outside any runtime.
        for _ in 0..limit.as_millis().div_ceil(20) {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.try_wait().expect("try_wait").and_then(|s| s.code())
    }

    /// Everything the process wrote to stdout so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The address a listener configured with port 0 was bound to, from the gateway's `listening` log line (JSON log
/// format), waiting up to `limit`. Unlike picking a free port first, nothing else can take the port in between.
pub async fn bound_addr(gw: &Gateway, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        for line in gw.output().lines().filter(|l| l.contains("\"listening\"")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(bound) = v["fields"]["bound"].as_str().or(v["bound"].as_str())
            {
                return Some(bound.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until `addr` accepts connections, up to `limit`.
pub async fn wait_listening(addr: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Resident set size of process `pid` in bytes, from /proc (0 if it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
