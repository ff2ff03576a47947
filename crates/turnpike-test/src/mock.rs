//! Scriptable mock upstreams: real HTTP/1.1 or HTTP/2 servers on 127.0.0.1:0 that record what they receive and
//! answer as the test says (status, headers, body, trailers, delay, a streamed body of any size, hang, close).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Request target as received (origin form for HTTP/1.1).
    pub uri: Uri,
    /// HTTP version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The body (empty in sink mode, where only its length is kept).
    pub body: Bytes,
    /// Body length in bytes.
    pub body_len: u64,
    /// Trailers, if any arrived.
    pub trailers: Option<HeaderMap>,
    /// Who connected (the gateway).
    pub peer: SocketAddr,
}

impl Recorded {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum MockReply {
    /// A response.
    Respond {
        /// Status code.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Bytes,
        /// Trailers sent after the body (HTTP/1.1 needs a `trailer` header naming them).
        trailers: Vec<(String, String)>,
        /// Wait this long before answering.
        delay: Duration,
    },
    /// A 200 with a generated body of `bytes` bytes, streamed in chunks (bounded memory).
    Stream {
        /// Total bytes.
        bytes: u64,
    },
    /// Never answer (the connection stays open).
    Hang,
    /// Close the connection without answering.
    Close,
}

impl MockReply {
    /// A JSON response.
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        MockReply::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
            trailers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        MockReply::Respond {
            status,
            headers: Vec::new(),
            body: body.into(),
            trailers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let MockReply::Respond { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        if let MockReply::Respond { trailers, .. } = &mut self {
            trailers.push((name.into(), value.into()));
        }
        self
    }

    /// Answers after `delay`.
    pub fn delay(mut self, d: Duration) -> Self {
        if let MockReply::Respond { delay, .. } = &mut self {
            *delay = d;
        }
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> MockReply + Send + Sync>;

/// A running mock upstream.
pub struct MockUpstream {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    received_bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
    kill: tokio::sync::watch::Sender<bool>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Collect,
    Sink,
}

impl MockUpstream {
    /// An HTTP/1.1 mock answering with `handler`.
    pub async fn start(handler: impl Fn(&Recorded) -> MockReply + Send + Sync + 'static) -> Self {
        Self::spawn(Arc::new(handler), false, Mode::Collect).await
    }

    /// An HTTP/2 (prior knowledge) mock answering with `handler`.
    pub async fn start_h2(handler: impl Fn(&Recorded) -> MockReply + Send + Sync + 'static) -> Self {
        Self::spawn(Arc::new(handler), true, Mode::Collect).await
    }

    /// Answers every request with 200 and a JSON description of it: `method`, `path`, `query`, `version`,
    /// `headers` (name -> list of values), `body` (as text) and `body_len`.
    pub async fn echo() -> Self {
        Self::start(echo_reply).await
    }

    /// Like [`echo`](Self::echo), over HTTP/2.
    pub async fn echo_h2() -> Self {
        Self::start_h2(echo_reply).await
    }

    /// Reads request bodies without keeping them (bounded memory) and answers `{"received": n}`.
    pub async fn sink() -> Self {
        Self::spawn(
            Arc::new(|r: &Recorded| MockReply::json(200, serde_json::json!({ "received": r.body_len }))),
            false,
            Mode::Sink,
        )
        .await
    }

    /// A mock serving HTTPS with `tls` (HTTP/2 when ALPN picks `h2`, else HTTP/1.1).
    pub async fn start_tls(
        handler: impl Fn(&Recorded) -> MockReply + Send + Sync + 'static,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::spawn_with(Arc::new(handler), false, Mode::Collect, Some(tls)).await
    }

    /// An HTTP/1.1 mock on `addr` (a port a killed mock used: the endpoint "comes back").
    pub async fn start_at(addr: SocketAddr, handler: impl Fn(&Recorded) -> MockReply + Send + Sync + 'static) -> Self {
        Self::spawn_on(addr, Arc::new(handler), false, Mode::Collect, None).await
    }

    /// Stops listening and closes every connection, like a process that died.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
        self.task.abort();
    }

    async fn spawn(handler: Handler, h2: bool, mode: Mode) -> Self {
        Self::spawn_with(handler, h2, mode, None).await
    }

    async fn spawn_with(
        handler: Handler,
        h2: bool,
        mode: Mode,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Self {
        Self::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler, h2, mode, tls).await
    }

    async fn spawn_on(
        addr: SocketAddr,
        handler: Handler,
        h2: bool,
        mode: Mode,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind mock upstream");
        let (kill, kill_rx) = tokio::sync::watch::channel(false);
        let addr = listener.local_addr().expect("mock addr");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let received_bytes = Arc::new(AtomicU64::new(0));
        let (rec, conns, received) = (recorded.clone(), connections.clone(), received_bytes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                conns.fetch_add(1, Ordering::Relaxed);
                let (handler, rec, received, tls) = (handler.clone(), rec.clone(), received.clone(), tls.clone());
                let killed = kill_rx.clone();
                tokio::spawn(async move {
                    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (handler, rec, received, close_tx) =
                            (handler.clone(), rec.clone(), received.clone(), close_tx.clone());
                        async move {
                            let recorded = record(req, peer, mode, &received).await;
                            let reply = handler(&recorded);
                            rec.lock().unwrap_or_else(|p| p.into_inner()).push(recorded);
                            respond(reply, &close_tx).await
                        }
                    });
                    let mut closed = close_rx;
                    let mut killed = killed;
                    if let Some(tls) = tls {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else { return };
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let io = TokioIo::new(stream);
                        if h2 {
                            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(io, service);
                            tokio::select! { _ = conn => {}, _ = closed.wait_for(|c| *c) => {}, _ = killed.wait_for(|k| *k) => {} }
                        } else {
                            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                            tokio::select! { _ = conn => {}, _ = closed.wait_for(|c| *c) => {}, _ = killed.wait_for(|k| *k) => {} }
                        }
                        return;
                    }
                    let io = TokioIo::new(stream);
                    if h2 {
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service);
                        tokio::select! { _ = conn => {}, _ = closed.wait_for(|c| *c) => {}, _ = killed.wait_for(|k| *k) => {} }
                    } else {
                        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                        tokio::select! { _ = conn => {}, _ = closed.wait_for(|c| *c) => {}, _ = killed.wait_for(|k| *k) => {} }
                    }
                });
            }
        });
        Self { addr, recorded, connections, received_bytes, task, kill }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests it received.
    pub fn count(&self) -> usize {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Request body bytes received so far (also while a body is still streaming in).
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes.load(Ordering::Relaxed)
    }
}

fn echo_reply(r: &Recorded) -> MockReply {
    let mut headers = serde_json::Map::new();
    for name in r.headers.keys() {
        let values: Vec<serde_json::Value> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        headers.insert(name.as_str().to_string(), serde_json::Value::Array(values));
    }
    MockReply::json(
        200,
        serde_json::json!({
            "method": r.method.as_str(),
            "path": r.uri.path(),
            "query": r.uri.query(),
            "version": format!("{:?}", r.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&r.body),
            "body_len": r.body_len,
            "trailers": r.trailers.as_ref().map(|t| t.iter().map(|(k, v)| (k.as_str().to_string(), serde_json::Value::String(v.to_str().unwrap_or("").into()))).collect::<serde_json::Map<_, _>>()),
        }),
    )
}

async fn record(req: Request<Incoming>, peer: SocketAddr, mode: Mode, received: &AtomicU64) -> Recorded {
    let (parts, mut body) = req.into_parts();
    let mut collected = Vec::new();
    let mut len = 0u64;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        match frame.into_data() {
            Ok(data) => {
                len += data.len() as u64;
                received.fetch_add(data.len() as u64, Ordering::Relaxed);
                if mode == Mode::Collect {
                    collected.extend_from_slice(&data);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Recorded {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: Bytes::from(collected),
        body_len: len,
        trailers,
        peer,
    }
}

async fn respond(reply: MockReply, close: &tokio::sync::watch::Sender<bool>) -> Result<Response<MockBody>, Infallible> {
    match reply {
        MockReply::Respond { status, headers, body, trailers, delay } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut resp = Response::new(MockBody::Full { data: Some(body), trailers: to_map(&trailers) });
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                    resp.headers_mut().append(k, v);
                }
            }
            Ok(resp)
        }
        MockReply::Stream { bytes } => {
            let mut resp =
                Response::new(MockBody::Generated { remaining: bytes, chunk: Bytes::from(vec![b'x'; 64 * 1024]) });
            resp.headers_mut().insert("content-length", HeaderValue::from(bytes));
            Ok(resp)
        }
        MockReply::Hang => std::future::pending().await,
        MockReply::Close => {
            let _ = close.send(true);
            std::future::pending().await
        }
    }
}

fn to_map(pairs: &[(String, String)]) -> Option<HeaderMap> {
    if pairs.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            map.append(k, v);
        }
    }
    Some(map)
}

/// The mock's response body: a buffer (with optional trailers) or a generated stream.
pub enum MockBody {
    /// A buffer, then trailers.
    Full {
        /// The data, taken when sent.
        data: Option<Bytes>,
        /// The trailers, taken when sent.
        trailers: Option<HeaderMap>,
    },
    /// `remaining` bytes of `chunk` repeated.
    Generated {
        /// Bytes left.
        remaining: u64,
        /// The chunk sent repeatedly.
        chunk: Bytes,
    },
}

impl http_body::Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            MockBody::Full { data, trailers } => {
                if let Some(d) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            MockBody::Generated { remaining, chunk } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(chunk.len() as u64) as usize;
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full { data, trailers } => data.as_ref().is_none_or(|d| d.is_empty()) && trailers.is_none(),
            MockBody::Generated { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full { data, trailers: None } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            MockBody::Full { .. } => SizeHint::default(),
            MockBody::Generated { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
