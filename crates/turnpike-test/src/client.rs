//! Test clients: HTTP/1.1 and HTTP/2 (prior knowledge) over loopback, with whole-body replies.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The error type of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body.
pub type Body = BoxBody<Bytes, BoxError>;

/// A response read to its end.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// HTTP version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, if any.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// The body parsed as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP client with keep-alive.
#[derive(Clone)]
pub struct Client {
    inner: Legacy<HttpConnector, Body>,
}

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

impl Client {
    /// An HTTP/1.1 client.
    pub fn h1() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            inner: Legacy::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector),
        }
    }

    /// An HTTP/2 client with prior knowledge (h2c).
    pub fn h2() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { inner: Legacy::builder(TokioExecutor::new()).http2_only(true).build(connector) }
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Reply {
        self.send(Request::get(url).body(empty()).expect("valid request")).await
    }

    /// Sends `req`, reads the whole response; panics if the exchange fails (use [`try_send`](Self::try_send) to
    /// observe failures).
    pub async fn send(&self, req: Request<Body>) -> Reply {
        self.try_send(req).await.unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    /// Sends `req` and reads the whole response.
    pub async fn try_send(&self, req: Request<Body>) -> Result<Reply, BoxError> {
        let resp = self.inner.request(req).await?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }
}
