//! Traces: spans finished on the request path are pushed onto a bounded queue (never waited on: a full queue drops
//! and counts) and exported in batches over OTLP — gRPC or HTTP/protobuf — by a task of their own. The exporter is
//! woken only when a batch is full, or by its own interval: never once per span, which would cost every sampled
//! request a cross-thread wake-up. A collector that is down, slow or refusing costs requests nothing: failed
//! batches are dropped and counted.

pub mod otlp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use turnpike_core::trace::TraceId;

use self::otlp::{EncodedSpan, Envelope};

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`TraceService/Export` over HTTP/2 cleartext), usually port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`), usually port 4318.
    Http,
}

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// `http://host:port` (gRPC) or the full `http://host:port/v1/traces` (HTTP).
    pub endpoint: Uri,
    /// gRPC or HTTP.
    pub protocol: Protocol,
    /// Extra request headers (collector authentication). Never logged.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Resource attributes (`service.name` and the configured ones).
    pub resource: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
    /// Most spans per export.
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill.
    pub interval: Duration,
    /// Spans held while the exporter catches up; beyond, they are dropped and counted.
    pub queue: usize,
}

/// Exporter counters, for the metrics.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped: the queue was full, or their batch failed.
    pub dropped: AtomicU64,
    /// Export calls that failed (connect, timeout, non-success answer).
    pub failures: AtomicU64,
}

/// The request path's handle: record finished spans.
#[derive(Debug, Clone)]
pub struct Tracer {
    queue: Arc<Queue>,
    stats: Arc<TraceStats>,
}

/// Finished spans waiting for the exporter.
#[derive(Debug)]
struct Queue {
    spans: Mutex<Vec<EncodedSpan>>,
    /// Spans held at most.
    capacity: usize,
    /// A batch is full: the exporter should not wait for its interval.
    batch: usize,
    full: Notify,
    /// The process is stopping: send everything held, then end.
    closing: AtomicBool,
}

impl Tracer {
    /// Starts the exporter task on the current runtime.
    pub fn start(config: ExporterConfig) -> (Self, JoinHandle<()>) {
        let queue = Arc::new(Queue {
            spans: Mutex::new(Vec::new()),
            capacity: config.queue.max(1),
            batch: config.max_batch.max(1),
            full: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let stats = Arc::new(TraceStats::default());
        let task = tokio::spawn(export_loop(Arc::downgrade(&queue), config, stats.clone()));
        (Self { queue, stats }, task)
    }

    /// Hands a finished span to the exporter; drops it (counted) when the queue is full.
    pub fn record(&self, span: EncodedSpan) {
        let held = {
            let mut spans = self.queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
            if spans.len() >= self.queue.capacity {
                drop(spans);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            spans.push(span);
            spans.len()
        };
        if held == self.queue.batch {
            self.queue.full.notify_one();
        }
    }

    /// Asks the exporter to send every span held now, without waiting for its interval, and then to end: the
    /// process is stopping. Spans recorded after this may be lost.
    pub fn close(&self) {
        self.queue.closing.store(true, Ordering::Release);
        self.queue.full.notify_one();
    }

    /// The exporter's counters.
    pub fn stats(&self) -> &Arc<TraceStats> {
        &self.stats
    }
}

/// Whether a new trace (one with no sampled caller to follow) is recorded: the trace-id ratio sampler of the
/// OpenTelemetry spec, so every service that samples by ratio agrees on the same traces.
pub fn sample_by_ratio(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id.0[8..]);
    // The low 56 bits are the random part W3C Trace Context level 2 asks for.
    let value = u64::from_be_bytes(low) & ((1 << 56) - 1);
    (value as f64) < ratio * (1u64 << 56) as f64
}

/// Every `interval`, or as soon as a batch is full, exports what the queue holds, a batch at a time; ends (after a
/// last export) when every [`Tracer`] is gone or [`Tracer::close`] was called and the queue is empty.
async fn export_loop(queue: std::sync::Weak<Queue>, config: ExporterConfig, stats: Arc<TraceStats>) {
    let envelope = Envelope::new(&config.resource, "turnpike", env!("CARGO_PKG_VERSION"));
    let mut client = Client::default();
    let mut backlog = false;
    loop {
        let (spans, last) = {
            let Some(queue) = queue.upgrade() else { return };
            if !backlog {
                let _ = tokio::time::timeout(config.interval, queue.full.notified()).await;
            }
            let mut held = queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
            let take = held.len().min(queue.batch);
            let spans: Vec<EncodedSpan> =
                if take == held.len() { std::mem::take(&mut *held) } else { held.drain(..take).collect() };
            let closing = queue.closing.load(Ordering::Acquire);
            // A full batch still waiting goes out next, without waiting for the interval; when closing, any batch.
            backlog = held.len() >= queue.batch || (closing && !held.is_empty());
            (spans, (closing || Arc::strong_count(&queue) == 1) && held.is_empty())
        };
        if !spans.is_empty() {
            export_batch(&mut client, &config, &stats, &envelope, spans).await;
        }
        if last {
            return;
        }
    }
}

async fn export_batch(
    client: &mut Client,
    config: &ExporterConfig,
    stats: &TraceStats,
    envelope: &Envelope,
    spans: Vec<EncodedSpan>,
) {
    let count = spans.len() as u64;
    // Room for a gRPC message's frame header, written in place by the client.
    let body = envelope.encode(&spans, GRPC_FRAME);
    match tokio::time::timeout(config.timeout, client.export(config, body)).await {
        Ok(Ok(())) => {
            stats.exported.fetch_add(count, Ordering::Relaxed);
        }
        result => {
            let error = match result {
                Ok(Err(err)) => err,
                _ => "timed out".to_string(),
            };
            stats.failures.fetch_add(1, Ordering::Relaxed);
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            client.reset();
            tracing::warn!(endpoint = %config.endpoint, error, spans = count, "trace export failed; spans dropped");
        }
    }
}

/// Bytes of a gRPC message's frame header: a compression flag (0) and the message's length (4 bytes, big-endian).
const GRPC_FRAME: usize = 5;

/// One connection to the collector, opened on first use and again after a failure.
#[derive(Default)]
struct Client {
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    h1: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn reset(&mut self) {
        self.h2 = None;
        self.h1 = None;
    }

    /// Sends `message`: an encoded request behind [`GRPC_FRAME`] bytes kept for the frame header.
    async fn export(&mut self, config: &ExporterConfig, mut message: Vec<u8>) -> Result<(), String> {
        let authority = config.endpoint.authority().ok_or("the endpoint has no host")?.clone();
        let (path, content_type, body) = match config.protocol {
            Protocol::Grpc => {
                // A gRPC message: uncompressed flag, 4-byte big-endian length, the protobuf bytes.
                let len = u32::try_from(message.len().saturating_sub(GRPC_FRAME)).map_err(|_| "batch too large")?;
                if let Some(header) = message.get_mut(1..GRPC_FRAME) {
                    header.copy_from_slice(&len.to_be_bytes());
                }
                (
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    "application/grpc",
                    Bytes::from(message),
                )
            }
            Protocol::Http => {
                let path = config.endpoint.path_and_query().map_or("/v1/traces", |p| p.as_str());
                let path = if path == "/" { "/v1/traces" } else { path };
                (path, "application/x-protobuf", Bytes::from(message).slice(GRPC_FRAME..))
            }
        };
        let uri = Uri::builder().scheme("http").authority(authority.clone()).path_and_query(path).build();
        let mut req = Request::builder().method(Method::POST).uri(uri.map_err(|e| e.to_string())?);
        if let Some(headers) = req.headers_mut() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            if config.protocol == Protocol::Grpc {
                headers.insert(TE, HeaderValue::from_static("trailers"));
            }
            for (name, value) in &config.headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = match config.protocol {
            Protocol::Grpc => {
                if self.h2.as_ref().is_none_or(|s| s.is_closed()) {
                    let io = connect(authority.as_str()).await?;
                    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                    tokio::spawn(conn);
                    self.h2 = Some(send);
                }
                let send = self.h2.as_mut().ok_or("no connection")?;
                send.send_request(req).await.map_err(|e| e.to_string())?
            }
            Protocol::Http => {
                if self.h1.as_ref().is_none_or(|s| s.is_closed()) {
                    let io = connect(authority.as_str()).await?;
                    let (send, conn) =
                        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
                    tokio::spawn(conn);
                    self.h1 = Some(send);
                }
                let send = self.h1.as_mut().ok_or("no connection")?;
                send.ready().await.map_err(|e| e.to_string())?;
                send.send_request(req).await.map_err(|e| e.to_string())?
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let collected = resp.into_body().collect().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("collector answered {status}"));
        }
        if config.protocol == Protocol::Grpc {
            let trailers = collected.trailers().cloned().unwrap_or_default();
            grpc_ok(&headers, &trailers)?;
        }
        Ok(())
    }
}

/// gRPC success is `grpc-status: 0`, in the trailers (or the headers of a trailers-only answer).
fn grpc_ok(headers: &HeaderMap, trailers: &HeaderMap) -> Result<(), String> {
    let status = trailers.get("grpc-status").or_else(|| headers.get("grpc-status"));
    match status.map(HeaderValue::as_bytes) {
        Some(b"0") => Ok(()),
        Some(code) => {
            let message = trailers.get("grpc-message").or_else(|| headers.get("grpc-message"));
            let message = message.and_then(|m| m.to_str().ok()).unwrap_or("");
            Err(format!("grpc-status {} {message}", String::from_utf8_lossy(code)))
        }
        None => Err("no grpc-status".into()),
    }
}

async fn connect(authority: &str) -> Result<TokioIo<TcpStream>, String> {
    let stream = TcpStream::connect(authority).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(TokioIo::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_is_decided_by_the_trace_id() {
        let mut id = [0u8; 16];
        assert!(sample_by_ratio(TraceId(id), 0.5));
        id[9] = 0xff;
        assert!(!sample_by_ratio(TraceId(id), 0.5));
        assert!(sample_by_ratio(TraceId(id), 1.0));
        assert!(!sample_by_ratio(TraceId([1; 16]), 0.0));
        let sampled = (0..10_000).filter(|_| sample_by_ratio(TraceId::random(), 0.01)).count();
        assert!((50..200).contains(&sampled), "about 1 %: {sampled}");
    }

    #[test]
    fn grpc_status_is_read_from_trailers_or_headers() {
        let mut ok = HeaderMap::new();
        ok.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(grpc_ok(&HeaderMap::new(), &ok).is_ok());
        assert!(grpc_ok(&ok, &HeaderMap::new()).is_ok());
        let mut bad = HeaderMap::new();
        bad.insert("grpc-status", HeaderValue::from_static("14"));
        bad.insert("grpc-message", HeaderValue::from_static("unavailable"));
        assert_eq!(grpc_ok(&HeaderMap::new(), &bad).unwrap_err(), "grpc-status 14 unavailable");
        assert!(grpc_ok(&HeaderMap::new(), &HeaderMap::new()).is_err());
    }
}
