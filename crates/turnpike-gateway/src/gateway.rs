//! The gateway: one `ArcSwap<Snapshot>`, the runtime state beside it, the listeners and workers — and the handle
//! the binary, the tests and the admin API drive it through (start, reload, shutdown).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use turnpike_telemetry::AccessLog;
use turnpike_telemetry::trace::Tracer;

use crate::admin::AdminServer;
use crate::config::{self, ConfigSource, Report};
use crate::listeners::{BindError, ListenerSet};
use crate::server::Connections;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::telemetry::Telemetry;
use crate::workers::Workers;

/// Where access-log lines go.
pub enum AccessLogSink {
    /// What the configuration says: `server.access_log.path`, else standard output (the default).
    Stdout,
    /// Any writer (tests capture lines this way).
    Writer(Box<dyn FnOnce() -> Box<dyn std::io::Write + Send> + Send>),
}

/// How to start a gateway.
pub struct StartOptions {
    /// The configuration to load.
    pub source: ConfigSource,
    /// Worker threads; `None` takes `server.workers` from the config, else one per CPU core.
    pub workers: Option<usize>,
    /// Where the access log goes (if the config enables it).
    pub access_log: AccessLogSink,
    /// Reload when the config file changes (only for file sources; the config's `server.watch` can turn it off).
    pub watch: bool,
}

impl StartOptions {
    /// Options for a config file, with defaults: workers from the config, access log on stdout, file watching on.
    pub fn file(path: impl Into<std::path::PathBuf>) -> Self {
        Self { source: ConfigSource::File(path.into()), workers: None, access_log: AccessLogSink::Stdout, watch: true }
    }
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(Report),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Worker threads could not be started.
    #[error("cannot start worker threads")]
    Workers(#[source] std::io::Error),
    /// The access-log file could not be opened.
    #[error("cannot open the access log {}", path.display())]
    AccessLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a reload was refused (the previous configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(Report),
    /// A new listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// The result of the last reload attempt, for logs and the admin API.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// The generation serving now.
    pub generation: u64,
    /// Successful reloads since start.
    pub succeeded: u64,
    /// Refused reloads since start.
    pub failed: u64,
    /// Why the last refused reload was refused, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the configuration serving now was loaded.
    pub loaded_at: std::time::SystemTime,
}

/// The gateway's shared core. Requests reach it through [`crate::server`]; everything else through
/// [`GatewayHandle`].
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    pub(crate) state: State,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) connections: Arc<Connections>,
    shutdown: watch::Sender<bool>,
    source: Mutex<ConfigSource>,
    reload_lock: Mutex<()>,
    listeners: Mutex<ListenerSet>,
    workers: Mutex<Workers>,
    status: Mutex<ReloadStatus>,
    generation: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The span exporter and how long one export may take: at shutdown it sends what it holds before it ends.
    exporter: Mutex<Option<(JoinHandle<()>, Duration)>>,
    admin: Mutex<Option<AdminServer>>,
}

impl Gateway {
    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether a shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The result of the reloads so far.
    pub(crate) fn reload_status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }
}

/// A running gateway.
#[derive(Clone)]
pub struct GatewayHandle {
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle").field("generation", &self.generation()).finish()
    }
}

impl GatewayHandle {
    /// Loads and compiles the configuration, binds its listeners and starts serving. Background tasks (file
    /// watch, pool sweeping) run on the calling tokio runtime.
    pub async fn start(options: StartOptions) -> Result<Self, StartError> {
        let state = State::default();
        let snapshot = config::load_and_compile(&options.source, &state, 1).map_err(StartError::Config)?;
        let workers = options.workers.or(snapshot.server.workers).unwrap_or_else(default_workers);
        let workers = Workers::start(workers).map_err(StartError::Workers)?;
        let buffer = snapshot.server.access_log_buffer;
        let access_log = if snapshot.server.access_log {
            match (options.access_log, &snapshot.server.access_log_path) {
                (AccessLogSink::Stdout, Some(path)) => AccessLog::to_file(path, buffer)
                    .map_err(|source| StartError::AccessLog { path: path.clone(), source })?,
                (AccessLogSink::Stdout, None) => AccessLog::stdout_with_buffer(buffer),
                (AccessLogSink::Writer(make), _) => AccessLog::to_writer(make, buffer),
            }
        } else {
            AccessLog::disabled()
        };
        // The span exporter runs on this runtime, beside the admin listener, never on a worker.
        let (tracer, tracer_task) = match &snapshot.server.tracing {
            Some(tracing) => {
                let (tracer, task) = Tracer::start(tracing.exporter.clone());
                (Some(tracer), Some((task, tracing.exporter.timeout)))
            }
            None => (None, None),
        };
        let listeners = ListenerSet::default();
        let prepared = listeners.prepare(&snapshot.listeners)?;
        let watch_file = match (&options.source, options.watch && snapshot.server.watch) {
            (ConfigSource::File(path), true) => Some(path.clone()),
            _ => None,
        };
        let (shutdown, _) = watch::channel(false);
        let gateway = Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            state,
            telemetry: Arc::new(Telemetry::new(access_log, tracer)),
            connections: Arc::new(Connections::default()),
            shutdown,
            source: Mutex::new(options.source),
            reload_lock: Mutex::new(()),
            listeners: Mutex::new(ListenerSet::default()),
            workers: Mutex::new(workers),
            status: Mutex::new(ReloadStatus {
                generation: 1,
                succeeded: 0,
                failed: 0,
                last_error: None,
                loaded_at: std::time::SystemTime::now(),
            }),
            generation: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
            exporter: Mutex::new(tracer_task),
            admin: Mutex::new(None),
        });
        {
            let workers = lock(&gateway.workers);
            let mut set = lock(&gateway.listeners);
            *set = listeners;
            set.commit(prepared, &gateway, &workers);
        }
        if let Some(admin) = &handle_snapshot(&gateway).server.admin {
            let listener = AdminServer::bind(admin.address).await.map_err(|source| BindError {
                name: Arc::from("admin"),
                address: admin.address,
                source,
            })?;
            let server = AdminServer::start(admin.address, listener, Arc::downgrade(&gateway))
                .map_err(|source| BindError { name: Arc::from("admin"), address: admin.address, source })?;
            *lock(&gateway.admin) = Some(server);
        }
        apply_active_checks(&handle_snapshot(&gateway));
        let handle = Self { gateway };
        handle.spawn_background(watch_file);
        tracing::info!(generation = 1, "gateway started");
        Ok(handle)
    }

    fn spawn_background(&self, watch_file: Option<std::path::PathBuf>) {
        let mut tasks = lock(&self.gateway.tasks);
        tasks.push(tokio::spawn(sweep_pools(Arc::downgrade(&self.gateway))));
        tasks.push(tokio::spawn(crate::discovery::run(Arc::downgrade(&self.gateway))));
        if let Some(path) = watch_file {
            match crate::watch::spawn(path, self.clone()) {
                Ok(task) => tasks.push(task),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch the config file; reload with SIGHUP or `turnpike reload`")
                }
            }
        }
    }

    /// Loads, validates and compiles the configuration again, and swaps it in in one atomic step. Requests in
    /// flight finish on the snapshot they started with; listeners whose address stays keep their sockets. A bad
    /// configuration is refused and the current one keeps serving.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let gw = &self.gateway;
        let _one_at_a_time = lock(&gw.reload_lock);
        if *gw.shutdown.borrow() {
            return Err(ReloadError::ShuttingDown);
        }
        let generation = gw.generation.load(Ordering::Relaxed) + 1;
        let source = lock(&gw.source).clone();
        let result = config::load_and_compile(&source, &gw.state, generation).map_err(ReloadError::Config).and_then(
            |snapshot| {
                let mut listeners = lock(&gw.listeners);
                let prepared = listeners.prepare(&snapshot.listeners)?;
                let admin = prepare_admin(gw, snapshot.server.admin.as_ref())?;
                warn_exporter_change(&gw.snapshot(), &snapshot);
                let snapshot = Arc::new(snapshot);
                gw.snapshot.store(snapshot.clone());
                listeners.commit(prepared, gw, &lock(&gw.workers));
                if let Some(admin) = admin {
                    *lock(&gw.admin) = admin;
                }
                apply_active_checks(&snapshot);
                Ok(generation)
            },
        );
        let mut status = lock(&gw.status);
        match &result {
            Ok(generation) => {
                gw.generation.store(*generation, Ordering::Relaxed);
                status.generation = *generation;
                status.succeeded += 1;
                status.last_error = None;
                status.loaded_at = std::time::SystemTime::now();
                tracing::info!(generation, "configuration reloaded");
            }
            Err(err) => {
                status.failed += 1;
                status.last_error = Some(err.to_string());
                tracing::error!(error = %err, "reload refused; the previous configuration keeps serving");
            }
        }
        result
    }

    /// Replaces the configuration source used by the next [`reload`](Self::reload).
    pub fn set_source(&self, source: ConfigSource) {
        *lock(&self.gateway.source) = source;
    }

    pub(crate) fn from_gateway(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Gateway> {
        Arc::downgrade(&self.gateway)
    }

    pub(crate) fn upgrade(gateway: &std::sync::Weak<Gateway>) -> Option<Self> {
        gateway.upgrade().map(|gateway| Self { gateway })
    }

    /// The generation serving now (1 for the first configuration).
    pub fn generation(&self) -> u64 {
        self.gateway.generation.load(Ordering::Relaxed)
    }

    /// The result of the reloads so far.
    pub fn reload_status(&self) -> ReloadStatus {
        self.gateway.reload_status()
    }

    /// The address the admin listener is bound to, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        lock(&self.gateway.admin).as_ref().map(|a| a.bound)
    }

    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.gateway.snapshot()
    }

    /// The address a listener is actually bound to (differs from the configured one for port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let snapshot = self.snapshot();
        let key = snapshot.listeners.iter().find(|l| &*l.name == name)?.key();
        lock(&self.gateway.listeners).bound().into_iter().find(|(k, _)| *k == key).map(|(_, bound)| bound)
    }

    /// Open downstream connections.
    pub fn open_connections(&self) -> usize {
        self.gateway.connections.open()
    }

    /// Pool counters summed over an upstream's endpoints: (connections opened, requests on reused connections,
    /// connections open now).
    pub fn pool_totals(&self, upstream: &str) -> Option<(u64, u64, i64)> {
        let snapshot = self.snapshot();
        let upstream = snapshot.upstreams.get(upstream)?;
        let mut totals = (0, 0, 0);
        for e in &upstream.endpoints {
            let stats = e.endpoint.pool_stats();
            totals.0 += stats.connects.load(Ordering::Relaxed);
            totals.1 += stats.reuses.load(Ordering::Relaxed);
            totals.2 += stats.open.load(Ordering::Relaxed);
        }
        Some(totals)
    }

    /// The span exporter's counters, when tracing is on.
    pub fn trace_stats(&self) -> Option<Arc<turnpike_telemetry::trace::TraceStats>> {
        self.gateway.telemetry.tracer.as_ref().map(|t| t.stats().clone())
    }

    /// Reopens the access-log file at its path (SIGUSR1, after logrotate moved it); nothing for stdout.
    pub fn reopen_access_log(&self) {
        self.gateway.telemetry.access_log.reopen();
    }

    /// Access-log records dropped because the writer could not keep up.
    pub fn access_log_dropped(&self) -> u64 {
        self.gateway.telemetry.access_log.dropped()
    }

    /// Stops accepting, lets in-flight requests finish up to `server.shutdown_timeout`, then stops the workers.
    /// Returns the number of connections that were still open at the deadline (and were cut).
    pub async fn shutdown(&self) -> usize {
        let gw = &self.gateway;
        let deadline = gw.snapshot().server.shutdown_timeout;
        lock(&gw.listeners).stop_all();
        gw.shutdown.send_replace(true);
        for task in lock(&gw.tasks).drain(..) {
            task.abort();
        }
        let left = gw.connections.drain(deadline).await;
        // The admin listener stays up while connections drain (`/readyz` says so), then goes.
        lock(&gw.admin).take();
        let gateway = gw.clone();
        let _ = tokio::task::spawn_blocking(move || {
            lock(&gateway.workers).stop();
            // The last responses' lines are in the access log's buffers: write them before the process goes.
            gateway.telemetry.access_log.flush(Duration::from_secs(2));
        })
        .await;
        // Every request has finished: the spans they recorded go to the collector, within one export's timeout.
        let exporter = lock(&gw.exporter).take();
        if let (Some(tracer), Some((mut task, timeout))) = (&gw.telemetry.tracer, exporter) {
            tracer.close();
            if tokio::time::timeout(timeout + Duration::from_millis(500), &mut task).await.is_err() {
                task.abort();
                tracing::warn!("span exporter did not finish at shutdown; the spans it held are dropped");
            }
        }
        tracing::info!(cut = left, "gateway stopped");
        left
    }
}

/// The admin listener a reload needs: `None` when it stays as it is, `Some(None)` to stop it, `Some(Some(_))` for a
/// new one, bound before the new configuration is swapped in (a bind failure refuses the reload).
fn prepare_admin(
    gw: &Arc<Gateway>,
    wanted: Option<&crate::snapshot::AdminSettings>,
) -> Result<Option<Option<AdminServer>>, BindError> {
    let current = lock(&gw.admin).as_ref().map(|a| a.configured);
    match (current, wanted) {
        (Some(now), Some(admin)) if now == admin.address => Ok(None),
        (None, None) => Ok(None),
        (_, None) => Ok(Some(None)),
        (_, Some(admin)) => {
            let error = |source| BindError { name: Arc::from("admin"), address: admin.address, source };
            // A std bind: reload runs outside async code; the socket is handed to tokio on the runtime.
            let socket = std::net::TcpListener::bind(admin.address).map_err(error)?;
            socket.set_nonblocking(true).map_err(error)?;
            let listener = tokio::net::TcpListener::from_std(socket).map_err(error)?;
            Ok(Some(Some(AdminServer::start(admin.address, listener, Arc::downgrade(gw)).map_err(error)?)))
        }
    }
}

/// The span exporter is started with the process; a reload applies the sampling ratio and the propagation
/// formats, and says so when the exporter's own settings changed.
fn warn_exporter_change(old: &Snapshot, new: &Snapshot) {
    let exporter = |s: &Snapshot| {
        s.server.tracing.as_ref().map(|t| {
            let mut source = t.source.clone();
            source.sample_ratio = 0.0;
            source.propagation.clear();
            source
        })
    };
    if exporter(old) != exporter(new) {
        tracing::warn!("server.tracing exporter settings changed: they take effect on restart");
    }
}

/// One worker per CPU core.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Closes idle upstream connections past their idle timeout, even when no request comes to notice them.
async fn sweep_pools(gateway: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else { return };
        let snapshot = gateway.snapshot();
        for upstream in snapshot.upstreams.values() {
            for e in &upstream.endpoints {
                e.endpoint.sweep(upstream.pool.idle_timeout);
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn handle_snapshot(gateway: &Gateway) -> Arc<Snapshot> {
    gateway.snapshot.load_full()
}

/// Starts, retargets or stops the active health checks of every upstream of `snapshot`. Endpoints no snapshot
/// lists any more stop theirs when their state is dropped.
fn apply_active_checks(snapshot: &Snapshot) {
    for upstream in snapshot.upstreams.values() {
        upstream.apply_active_checks();
    }
}
