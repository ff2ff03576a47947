//! `Body`: the one body type of requests and responses passing through the gateway, streaming by default.
//!
//! A body is empty, a buffer the gateway made, or a stream from a peer. A stream can carry a size limit (413) and an
//! idle timeout (the peer sent nothing for too long); both are enforced frame by frame, so memory stays bounded
//! whatever the body's size.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use tokio::time::{Instant, Sleep};

/// The error type of bodies: any error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a streamed body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More bytes arrived than the limit allows.
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The peer sent nothing for longer than the idle timeout.
    #[error("body stalled for more than {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The peer broke the stream (reset, closed early, protocol error).
    #[error("body stream broken")]
    Aborted(#[source] hyper::Error),
}

/// A request or response body.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(Stream),
    Boxed(BoxBody<Bytes, BoxError>),
}

/// A body streamed from a peer, with its guards.
struct Stream {
    inner: hyper::body::Incoming,
    limit: u64,
    seen: u64,
    idle: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
    counter: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Stream(_) => "stream",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// A body made of one buffer.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() { Self::empty() } else { Self { kind: Kind::Full(Some(bytes)) } }
    }

    /// A body streamed from a peer, with no limit and no idle timeout yet.
    pub fn stream(inner: hyper::body::Incoming) -> Self {
        Self {
            kind: Kind::Stream(Stream {
                inner,
                limit: u64::MAX,
                seen: 0,
                idle: None,
                sleep: None,
                progressed: false,
                counter: None,
            }),
        }
    }

    /// Any other body (a transform's output, a test's stream).
    pub fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self { kind: Kind::Boxed(BoxBody::new(body.map_err(Into::into))) }
    }

    /// Refuses the stream with [`BodyError::TooLarge`] once more than `limit` bytes have passed.
    pub fn with_limit(mut self, limit: u64) -> Self {
        if let Kind::Stream(s) = &mut self.kind {
            s.limit = limit;
        }
        self
    }

    /// Fails the stream with [`BodyError::Timeout`] when the peer sends nothing for `idle`.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        if let Kind::Stream(s) = &mut self.kind {
            s.idle = Some(idle);
        }
        self
    }

    /// Adds the number of data bytes that pass to `counter` (for the access log).
    pub fn with_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        if let Kind::Stream(s) = &mut self.kind {
            s.counter = Some(counter);
        }
        self
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream.poll_frame(cx).map_err(Into::into),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(stream) => stream.inner.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(stream) => stream.inner.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl Stream {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        use http_body::Body as _;
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    self.seen += len;
                    self.progressed = true;
                    if let Some(counter) = &self.counter {
                        counter.fetch_add(len, Ordering::Relaxed);
                    }
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: self.limit })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(BodyError::Aborted(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = self.idle else { return Poll::Pending };
                // The timer is made lazily: a body that arrives in one read never touches the timer wheel.
                match &mut self.sleep {
                    None => self.sleep = Some(Box::pin(tokio::time::sleep(idle))),
                    Some(sleep) if self.progressed => sleep.as_mut().reset(Instant::now() + idle),
                    Some(_) => {}
                }
                self.progressed = false;
                if let Some(sleep) = &mut self.sleep {
                    ready!(sleep.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(BodyError::Timeout(idle))));
                }
                Poll::Pending
            }
        }
    }
}
