//! A gateway under test: started in-process from a YAML string, its access log captured.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use turnpike_gateway::{AccessLogSink, ConfigSource, GatewayHandle, ReloadError, StartOptions};

/// A running gateway with its access log captured in memory.
pub struct TestGateway {
    /// The gateway.
    pub handle: GatewayHandle,
    log: Arc<Mutex<Vec<u8>>>,
}

#[derive(Clone)]
struct SharedBuf {
    log: Arc<Mutex<Vec<u8>>>,
    gate: LogGate,
}

/// Holds the access-log writer in its `write` call until opened: a disk or pipe that stopped taking lines.
#[derive(Clone, Default)]
pub struct LogGate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl LogGate {
    /// A gate that holds every write until [`open`](Self::open).
    pub fn closed() -> Self {
        Self::default()
    }

    fn open_now() -> Self {
        let gate = Self::default();
        gate.open();
        gate
    }

    /// Lets the writer through, now and from now on.
    pub fn open(&self) {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.0.1.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.gate.wait();
        self.log.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TestGateway {
    /// Starts a gateway from `yaml` with two workers. Listeners should use port 0.
    pub async fn start(yaml: &str) -> Self {
        Self::try_start(yaml, 2).await.unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Starts a gateway from `yaml` with `workers` worker threads, or says why it did not start.
    pub async fn try_start(yaml: &str, workers: usize) -> Result<Self, turnpike_gateway::StartError> {
        Self::try_start_gated(yaml, workers, LogGate::open_now()).await
    }

    /// Starts a gateway whose access-log writer waits at `gate` before each write.
    pub async fn start_with_log_gate(yaml: &str, gate: LogGate) -> Self {
        Self::try_start_gated(yaml, 2, gate).await.unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    async fn try_start_gated(yaml: &str, workers: usize, gate: LogGate) -> Result<Self, turnpike_gateway::StartError> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = SharedBuf { log: log.clone(), gate };
        let options = StartOptions {
            source: ConfigSource::text("test.yaml", yaml),
            workers: Some(workers),
            access_log: AccessLogSink::Writer(Box::new(move || Box::new(sink))),
            watch: false,
        };
        let handle = GatewayHandle::start(options).await?;
        Ok(Self { handle, log })
    }

    /// The bound address of the listener named `name`.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        self.handle.listener_addr(name).unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// The bound address of the listener named `public`.
    pub fn addr(&self) -> SocketAddr {
        self.addr_of("public")
    }

    /// `http://<public listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// Replaces the configuration with `yaml` and reloads.
    pub fn reload(&self, yaml: &str) -> Result<u64, ReloadError> {
        self.handle.set_source(ConfigSource::text("test.yaml", yaml));
        self.handle.reload()
    }

    /// Access-log lines written so far, parsed. Waits briefly for the writer thread to catch up with `expected`
    /// lines (the log is written asynchronously by design).
    pub async fn access_log(&self, expected: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let lines = self.access_log_now();
            if lines.len() >= expected {
                return lines;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.access_log_now()
    }

    fn access_log_now(&self) -> Vec<serde_json::Value> {
        let raw = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&raw)
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The raw access-log text.
    pub fn access_log_raw(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Shuts the gateway down (drains) and returns how many connections were cut.
    pub async fn shutdown(&self) -> usize {
        self.handle.shutdown().await
    }
}
