//! Traces: spans finished on the request path are encoded straight into the batch their export request will be sent
//! from (a bounded queue of batches, never waited on: a full queue drops and counts), and exported over OTLP — gRPC
//! or HTTP/protobuf — by a task of their own. The exporter is
//! woken only when a batch is full, or by its own interval: never once per span, which would cost every sampled
//! request a cross-thread wake-up. A collector that is down, slow or refusing costs requests nothing: failed
//! batches are dropped and counted.

pub mod otlp;

use std::collections::VecDeque;
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

use self::otlp::{Attributes, Batch, Envelope, SpanData};

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
    held: Mutex<Held>,
    /// Spans held at most.
    capacity: usize,
    /// Spans in a full batch: the exporter does not wait for its interval to send one.
    batch: usize,
    /// Bytes each batch keeps for its request's header.
    room: usize,
    full: Notify,
    /// The process is stopping: send everything held, then end.
    closing: AtomicBool,
}

/// The batches waiting, oldest first; spans are added to the last one until it is full.
#[derive(Debug, Default)]
struct Held {
    batches: VecDeque<Batch>,
    /// Spans in all of them.
    spans: usize,
    /// Bytes of spans in the batch sent last: a new batch starts with room for as many.
    last_bytes: usize,
}

/// Bytes of spans a new batch has room for at least (a few spans; it grows as needed).
const MIN_BATCH_BYTES: usize = 4096;

impl Tracer {
    /// Starts the exporter task on the current runtime.
    pub fn start(config: ExporterConfig) -> (Self, JoinHandle<()>) {
        let envelope = Envelope::new(&config.resource, "turnpike", env!("CARGO_PKG_VERSION"));
        let queue = Arc::new(Queue {
            held: Mutex::new(Held::default()),
            capacity: config.queue.max(1),
            batch: config.max_batch.max(1),
            room: envelope.room(GRPC_FRAME),
            full: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let stats = Arc::new(TraceStats::default());
        let task = tokio::spawn(export_loop(Arc::downgrade(&queue), config, envelope, stats.clone()));
        (Self { queue, stats }, task)
    }

    /// Hands a finished span with its attributes to the exporter, encoded into the batch being filled; drops it
    /// (counted) when the queue is full.
    pub fn record(&self, span: &SpanData<'_>, attributes: &Attributes) {
        let queue = &*self.queue;
        let full = {
            let mut guard = queue.held.lock().unwrap_or_else(PoisonError::into_inner);
            let held = &mut *guard;
            if held.spans >= queue.capacity {
                drop(guard);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if held.batches.back().is_none_or(|b| b.spans() >= queue.batch) {
                held.batches.push_back(Batch::new(queue.room, held.last_bytes.max(MIN_BATCH_BYTES)));
            }
            let Some(batch) = held.batches.back_mut() else { return };
            batch.push(span, attributes);
            held.spans += 1;
            batch.spans() == queue.batch
        };
        if full {
            queue.full.notify_one();
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

/// Every `interval`, or as soon as a batch is full, exports the oldest batch; ends (after a last export) when every
/// [`Tracer`] is gone or [`Tracer::close`] was called and the queue is empty.
async fn export_loop(
    queue: std::sync::Weak<Queue>,
    config: ExporterConfig,
    envelope: Envelope,
    stats: Arc<TraceStats>,
) {
    let mut client = Client::default();
    let mut backlog = false;
    loop {
        let (batch, last) = {
            let Some(queue) = queue.upgrade() else { return };
            if !backlog {
                let _ = tokio::time::timeout(config.interval, queue.full.notified()).await;
            }
            let mut guard = queue.held.lock().unwrap_or_else(PoisonError::into_inner);
            let held = &mut *guard;
            let batch = held.batches.pop_front();
            if let Some(batch) = &batch {
                held.spans -= batch.spans();
                held.last_bytes = batch.bytes();
            }
            let closing = queue.closing.load(Ordering::Acquire);
            // A full batch still waiting goes out next, without waiting for the interval; when closing, any batch.
            backlog =
                held.batches.front().is_some_and(|b| b.spans() >= queue.batch) || (closing && !held.batches.is_empty());
            (batch, (closing || Arc::strong_count(&queue) == 1) && held.batches.is_empty())
        };
        if let Some(batch) = batch.filter(|b| b.spans() > 0) {
            export_batch(&mut client, &config, &stats, &envelope, batch).await;
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
    batch: Batch,
) {
    let count = batch.spans() as u64;
    // The request's header is written in front of the spans, after room for a gRPC message's frame header, which
    // the client writes in place.
    let (buf, start) = envelope.finish(batch);
    match tokio::time::timeout(config.timeout, client.export(config, buf, start)).await {
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

    /// Sends the encoded request in `buf` from `start`, behind [`GRPC_FRAME`] bytes kept for the frame header.
    async fn export(&mut self, config: &ExporterConfig, mut buf: Vec<u8>, start: usize) -> Result<(), String> {
        let authority = config.endpoint.authority().ok_or("the endpoint has no host")?.clone();
        let message = start + GRPC_FRAME;
        if buf.len() < message {
            return Err("no room for the frame header".into());
        }
        let (path, content_type, body) = match config.protocol {
            Protocol::Grpc => {
                // A gRPC message: uncompressed flag, 4-byte big-endian length, the protobuf bytes.
                let len = u32::try_from(buf.len() - message).map_err(|_| "batch too large")?;
                if let Some(header) = buf.get_mut(start + 1..message) {
                    header.copy_from_slice(&len.to_be_bytes());
                }
                (
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    "application/grpc",
                    Bytes::from(buf).slice(start..),
                )
            }
            Protocol::Http => {
                let path = config.endpoint.path_and_query().map_or("/v1/traces", |p| p.as_str());
                let path = if path == "/" { "/v1/traces" } else { path };
                (path, "application/x-protobuf", Bytes::from(buf).slice(message..))
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
    fn spans_fill_batches_up_to_the_queue_and_are_dropped_beyond_it() {
        let envelope = Envelope::new(&[], "turnpike", "1");
        let queue = Arc::new(Queue {
            held: Mutex::default(),
            capacity: 5,
            batch: 2,
            room: envelope.room(GRPC_FRAME),
            full: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let tracer = Tracer { queue: queue.clone(), stats: Arc::default() };
        let span = SpanData {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            trace_state: "",
            name: "GET",
            kind: otlp::kind::SERVER,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            error: None,
        };
        let mut attributes = Attributes::new();
        attributes.string("url.path", "/a");
        for _ in 0..7 {
            tracer.record(&span, &attributes);
        }
        let mut held = queue.held.lock().unwrap();
        assert_eq!(held.batches.iter().map(Batch::spans).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(held.spans, 5);
        assert_eq!(tracer.stats().dropped.load(Ordering::Relaxed), 2, "the queue holds five");
        // The first full batch woke the exporter (a permit is stored until it waits).
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let woken =
            runtime.block_on(async { tokio::time::timeout(Duration::from_millis(1), queue.full.notified()).await });
        assert!(woken.is_ok());
        // The same span twice takes twice the bytes of once: each is encoded once, into its batch.
        assert_eq!(held.batches[0].bytes(), 2 * held.batches[2].bytes());
        let (buf, start) = envelope.finish(held.batches.pop_front().unwrap());
        assert_eq!(&buf[start..start + GRPC_FRAME], &[0; GRPC_FRAME], "room for the gRPC frame header");
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
