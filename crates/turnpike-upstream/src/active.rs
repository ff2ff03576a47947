//! Active health checks: a task per endpoint probes it on an interval (an HTTP request, or only a TCP connect)
//! and marks it down after `unhealthy_threshold` failed probes in a row, up again after `healthy_threshold`
//! good ones.
//!
//! The task belongs to the endpoint's state entry: it holds only a weak reference, reads the current settings
//! on every round (a reload changes them in place, and the verdict so far is kept), ends when a reload removes
//! the check, and is aborted when no snapshot uses the endpoint any more.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use tokio::task::AbortHandle;

use crate::pool::{PoolSettings, Stream};
use crate::{Endpoint, Protocol};

/// The most response body a probe reads when it looks for `body_contains`.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// An HTTP request; healthy when the status is expected (and the body contains a string, when set).
    Http {
        /// The method (`GET`).
        method: Method,
        /// Path and query.
        path: String,
        /// The `Host` header (`None`: the endpoint's `ip:port`).
        host: Option<HeaderValue>,
        /// Statuses that count as healthy, as inclusive ranges.
        expected: Vec<(u16, u16)>,
        /// A string the body must contain.
        body_contains: Option<String>,
    },
    /// A TCP connect (and the TLS handshake, for a TLS upstream).
    Tcp,
}

/// An upstream's active check settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCheck {
    /// The probe.
    pub kind: ProbeKind,
    /// Time between probes.
    pub interval: Duration,
    /// A probe that takes longer fails.
    pub timeout: Duration,
    /// Good probes in a row that bring a down endpoint back.
    pub healthy_threshold: u32,
    /// Failed probes in a row that take an endpoint down.
    pub unhealthy_threshold: u32,
    /// Up to this much random time added to each interval, so the probes of many gateways do not arrive
    /// together.
    pub jitter: Duration,
}

/// What the task probes with: the check and the upstream's connection settings (TLS, connect timeout).
#[derive(Debug, Clone)]
struct Target {
    check: Arc<ActiveCheck>,
    pool: PoolSettings,
}

/// The checker of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    target: Mutex<Option<Target>>,
    task: Mutex<Option<AbortHandle>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Endpoint {
    /// Sets (or with `None`, removes) this endpoint's active check, starting its task when needed. Call it after
    /// every snapshot that lists the endpoint; outside a Tokio runtime nothing is started.
    pub fn set_active_check(self: &Arc<Self>, check: Option<Arc<ActiveCheck>>, pool: &PoolSettings) {
        let mut target = lock(&self.checker.target);
        match check {
            None => {
                *target = None;
                if let Some(task) = lock(&self.checker.task).take() {
                    task.abort();
                }
                // Without a checker, nothing would ever bring the endpoint back.
                self.health.set_active_up(true);
            }
            Some(check) => {
                *target = Some(Target { check, pool: pool.clone() });
                drop(target);
                let mut task = lock(&self.checker.task);
                if task.as_ref().is_some_and(|t| !t.is_finished()) {
                    return;
                }
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    *task = Some(runtime.spawn(check_loop(Arc::downgrade(self))).abort_handle());
                }
            }
        }
    }
}

async fn check_loop(endpoint: Weak<Endpoint>) {
    let (mut good, mut bad) = (0u32, 0u32);
    loop {
        let Some(ep) = endpoint.upgrade() else { return };
        let Some(target) = lock(&ep.checker.target).clone() else { return };
        let check = &target.check;
        let result = match tokio::time::timeout(check.timeout, probe(&ep, &target)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}ms", check.timeout.as_millis())),
        };
        match result {
            Ok(()) => {
                (good, bad) = (good.saturating_add(1), 0);
                if good >= check.healthy_threshold.max(1) {
                    if ep.health.set_active_up(true) {
                        tracing::info!(endpoint = %ep.addr, "active health check: endpoint is healthy again");
                    } else if ep.health.readmit_reachable() {
                        tracing::info!(endpoint = %ep.addr, "active health check: ejected endpoint answers again, re-admitted");
                    }
                }
            }
            Err(why) => {
                (good, bad) = (0, bad.saturating_add(1));
                if bad >= check.unhealthy_threshold.max(1) && ep.health.set_active_up(false) {
                    tracing::warn!(endpoint = %ep.addr, reason = %why, "active health check: endpoint is unhealthy");
                } else {
                    tracing::debug!(endpoint = %ep.addr, reason = %why, "active health check failed");
                }
            }
        }
        let pause = check.interval + jitter(check.jitter);
        drop(ep);
        tokio::time::sleep(pause).await;
    }
}

fn jitter(max: Duration) -> Duration {
    let us = max.as_micros() as u64;
    if us == 0 { Duration::ZERO } else { Duration::from_micros(crate::fast_random() % (us + 1)) }
}

async fn probe(ep: &Endpoint, target: &Target) -> Result<(), String> {
    let stream = ep.pool.connect(&target.pool).await.map_err(|e| e.to_string())?;
    let ProbeKind::Http { method, path, host, expected, body_contains } = &target.check.kind else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| {
        HeaderValue::from_str(ep.authority.as_str()).unwrap_or(HeaderValue::from_static("localhost"))
    });
    let mut builder =
        Request::builder().method(method.clone()).header(http::header::USER_AGENT, "turnpike-health-check");
    builder = match ep.pool.protocol() {
        Protocol::Http1 => builder.uri(path.as_str()).header(http::header::HOST, host),
        Protocol::Http2 => {
            let authority = host.to_str().unwrap_or(ep.authority.as_str()).to_string();
            let scheme = if target.pool.tls.is_some() { "https" } else { "http" };
            builder.uri(format!("{scheme}://{authority}{path}")).version(http::Version::HTTP_2)
        }
    };
    let req = builder.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = match stream {
        Stream::Plain(tcp) => send(ep.pool.protocol(), TokioIo::new(tcp), req).await?,
        Stream::Tls(tls) => send(ep.pool.protocol(), TokioIo::new(tls), req).await?,
    };
    let status = resp.status();
    if !expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&status.as_u16())) {
        return Err(format!("status {}", status.as_u16()));
    }
    let Some(needle) = body_contains else { return Ok(()) };
    let body = read_prefix(resp.into_body()).await?;
    if body.windows(needle.len().max(1)).any(|w| w == needle.as_bytes()) {
        Ok(())
    } else {
        Err("the body does not contain the expected text".into())
    }
}

async fn send<I>(
    protocol: Protocol,
    io: I,
    req: Request<http_body_util::Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    match protocol {
        Protocol::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.send_request(req).await.map_err(|e| e.to_string())
        }
        Protocol::Http2 => {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.send_request(req).await.map_err(|e| e.to_string())
        }
    }
}

async fn read_prefix(mut body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while out.len() < MAX_PROBE_BODY {
        match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
        }
    }
    out.truncate(MAX_PROBE_BODY);
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
