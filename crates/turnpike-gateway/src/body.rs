//! `ResponseBody`: the body sent to the client. It returns the upstream connection to its pool when the upstream
//! body ends, and runs the `finish` phase (access log) when the response is done — or abandoned by the client.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use turnpike_policy::rate_limit::Held;

use bytes::Bytes;
use http::Version;
use http_body::{Frame, SizeHint};
use turnpike_core::{Body, BoxError, Cx};
use turnpike_telemetry::metrics::RouteMetrics;
use turnpike_upstream::Exchange;

use crate::server::RequestGuard;
use crate::snapshot::Snapshot;

/// How many request body bytes arrived.
pub(crate) enum BytesIn {
    /// Known up front (no body, or the body was not read).
    Known(u64),
    /// Counted as the body streamed upstream.
    Counted(Arc<AtomicU64>),
}

/// What the `finish` phase needs once the response is over.
pub(crate) struct Finish {
    pub cx: Cx,
    pub status: u16,
    pub version: Version,
    pub bytes_in: BytesIn,
    /// The snapshot the request was served with (moved here from the request, not cloned): its log settings.
    pub snap: Arc<Snapshot>,
    /// Write the access-log record, as the snapshot's log settings say (`false`: not logged, or sampled out).
    pub log: bool,
    /// Record into these metrics (the route's, or those of unmatched requests).
    pub metrics: Option<Arc<RouteMetrics>>,
}

/// The body of every response the gateway sends.
pub struct ResponseBody {
    inner: Body,
    exchange: Option<Exchange>,
    ended: bool,
    bytes_out: u64,
    finish: Option<Box<Finish>>,
    _request: Option<RequestGuard>,
    /// Rate-limit concurrency slots, released when the response is over.
    _slots: Option<Box<Held>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").field("inner", &self.inner).field("ended", &self.ended).finish()
    }
}

impl ResponseBody {
    /// A body the gateway made itself.
    pub(crate) fn local(inner: Body) -> Self {
        Self { inner, exchange: None, ended: false, bytes_out: 0, finish: None, _request: None, _slots: None }
    }

    /// An upstream's body; `exchange` goes back to the pool once the body has been read to its end.
    pub(crate) fn upstream(inner: Body, exchange: Exchange) -> Self {
        Self { inner, exchange: Some(exchange), ended: false, bytes_out: 0, finish: None, _request: None, _slots: None }
    }

    /// Keeps the request marked in flight on its connection until this body is dropped, and attaches the `finish`
    /// phase (it reports through the connection's gateway), run when the body is done or dropped.
    pub(crate) fn hold(&mut self, request: RequestGuard, finish: Option<Box<Finish>>) {
        self._request = Some(request);
        self.finish = finish;
    }

    /// Holds rate-limit concurrency slots until this body is dropped (nothing to hold: nothing kept).
    pub(crate) fn hold_slots(&mut self, held: Held) {
        if !held.is_empty() {
            self._slots = Some(Box::new(held));
        }
    }

    fn end(&mut self) {
        self.ended = true;
        if let Some(mut exchange) = self.exchange.take() {
            exchange.release();
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_out += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.end();
                }
            }
            Poll::Ready(None) => this.end(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper may never poll a body it knows is empty (HEAD, 204, 304): that is an end too.
        if !self.ended && http_body::Body::is_end_stream(&self.inner) {
            self.end();
        }
        // `hold` sets the request whenever it sets `finish`.
        if let (Some(finish), Some(request)) = (self.finish.take(), &mut self._request) {
            let end = crate::finish::run(&finish, &request.gateway.telemetry, self.bytes_out, !self.ended);
            request.ended_at(end);
        }
    }
}

/// Counter for request body bytes, shared with the request body while it streams upstream.
pub(crate) fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

impl BytesIn {
    pub(crate) fn get(&self) -> u64 {
        match self {
            BytesIn::Known(n) => *n,
            BytesIn::Counted(c) => c.load(Ordering::Relaxed),
        }
    }
}
