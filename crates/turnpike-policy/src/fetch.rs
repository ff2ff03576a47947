//! A small HTTP(S) client for the control plane: JWKS and OIDC discovery documents, token introspection, policy
//! decisions. One connection per call (these calls are rare and cached), an overall deadline, a bounded response
//! body, and TLS verified against the system roots or a given CA. Never used on the request path's hot loop.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest response body accepted (a JWKS or an introspection answer is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a call failed. Messages name the URL's host, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The deadline passed.
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// Connecting or the TLS handshake failed.
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The exchange failed.
    #[error("HTTP exchange with {host} failed: {reason}")]
    Http {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an unexpected status.
    #[error("{host} answered {status}")]
    Status {
        /// The host.
        host: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is not the JSON expected.
    #[error("{host} sent an invalid body: {reason}")]
    Body {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
}

/// A control-plane HTTP client.
#[derive(Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A client that verifies servers against `tls`.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }

    /// A client that verifies servers against the system's trusted roots (loaded once per process).
    pub fn system() -> Self {
        static SYSTEM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        let tls = SYSTEM.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!("no system root certificates found: HTTPS calls to identity providers will fail");
            }
            Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        });
        Self { tls: tls.clone() }
    }

    /// A client that trusts only the CA certificates in `pem` (a private identity provider, tests).
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("invalid PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("invalid CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no certificate in the CA file".into());
        }
        Ok(Self::new(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())))
    }

    /// `GET url` expecting `200` and a JSON body.
    pub async fn get_json(&self, url: &str, timeout: Duration) -> Result<serde_json::Value, FetchError> {
        let uri = parse(url)?;
        let req = Request::get(uri).header(ACCEPT, "application/json").body(Bytes::new());
        let resp = self.send(req.map_err(|e| FetchError::Url(e.to_string()))?, timeout).await?;
        json_body(url, resp)
    }

    /// `POST url` with a form body (`application/x-www-form-urlencoded`), optional HTTP Basic credentials,
    /// expecting `200` and a JSON body.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<serde_json::Value, FetchError> {
        let uri = parse(url)?;
        let body =
            form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let mut req = Request::post(uri)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .map_err(|e| FetchError::Url(e.to_string()))?;
        if let Some((user, password)) = basic {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                form_encode(user),
                form_encode(password)
            ));
            let value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|e| FetchError::Url(e.to_string()))?;
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let resp = self.send(req, timeout).await?;
        json_body(url, resp)
    }

    /// `POST url` with a JSON body, expecting `200` and a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, FetchError> {
        let uri = parse(url)?;
        let req = Request::post(uri)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
            .map_err(|e| FetchError::Url(e.to_string()))?;
        let resp = self.send(req, timeout).await?;
        json_body(url, resp)
    }

    /// Sends `req` (absolute URI) and reads the whole response, within `timeout`.
    pub async fn send(&self, req: Request<Bytes>, timeout: Duration) -> Result<Response<Bytes>, FetchError> {
        let host = req.uri().host().unwrap_or("").to_string();
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(host)),
        }
    }

    async fn exchange(&self, mut req: Request<Bytes>) -> Result<Response<Bytes>, FetchError> {
        let uri = req.uri().clone();
        let host = uri.host().unwrap_or("").to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tcp = TcpStream::connect((connect_host.as_str(), port))
            .await
            .map_err(|e| FetchError::Connect { host: host.clone(), reason: e.to_string() })?;
        let _ = tcp.set_nodelay(true);
        // Origin form on the wire, with Host.
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        *req.uri_mut() = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/").parse().unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(&authority) {
            req.headers_mut().insert(HOST, value);
        }
        req.headers_mut().insert(USER_AGENT, HeaderValue::from_static("turnpike"));
        let req = req.map(Full::new);
        let http_err = |e: hyper::Error| FetchError::Http { host: host.clone(), reason: e.to_string() };
        let resp = if https {
            let name = rustls_pki_types::ServerName::try_from(connect_host.clone())
                .map_err(|e| FetchError::Url(format!("invalid host name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| FetchError::Connect { host: host.clone(), reason: e.to_string() })?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(http_err)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(http_err)?
        } else {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(http_err)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(http_err)?
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Body { host: host.clone(), reason: e.to_string() })?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

fn parse(url: &str) -> Result<Uri, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_string()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(uri),
        _ => Err(FetchError::Url(url.to_string())),
    }
}

fn json_body(url: &str, resp: Response<Bytes>) -> Result<serde_json::Value, FetchError> {
    let host = url.parse::<Uri>().ok().and_then(|u| u.host().map(str::to_string)).unwrap_or_default();
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status { host, status: resp.status() });
    }
    serde_json::from_slice(resp.body()).map_err(|e| FetchError::Body { host, reason: e.to_string() })
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert!(parse("https://idp.example.com/jwks").is_ok());
        assert!(parse("ftp://idp.example.com/").is_err());
        assert!(parse("/relative").is_err());
    }

    #[tokio::test]
    async fn unreachable_server_fails_within_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Fetcher::system().get_json(&format!("http://127.0.0.1:{port}/x"), Duration::from_secs(2)).await;
        assert!(matches!(err, Err(FetchError::Connect { .. })), "{err:?}");
    }
}
