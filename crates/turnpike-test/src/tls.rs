//! TLS for tests: a throwaway PKI (a CA, server and client certificates, written as PEM files for configs), an
//! HTTPS client that can present a client certificate, and helpers for TLS upstreams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::client::{Body, BoxError, Reply};

/// A certificate authority that signs test certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A certificate with its key, PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The certificate (leaf only).
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        let cert_pem = cert.pem();
        Self { issuer: Issuer::new(params, key), cert_pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> TestCert {
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        self.sign(params)
    }

    /// A client certificate with common name `cn` (and the same name as a DNS SAN).
    pub fn client(&self, cn: &str) -> TestCert {
        let mut params = CertificateParams::new(vec![cn.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        self.sign(params)
    }

    /// A client certificate that expired yesterday.
    pub fn expired_client(&self, cn: &str) -> TestCert {
        let mut params = CertificateParams::new(vec![cn.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> TestCert {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        TestCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

impl TestCert {
    /// Writes `<name>.crt` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert PEM")
    }

    /// The key as DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

/// A client TLS config trusting `ca`, offering `alpn`, optionally presenting `client`.
pub fn client_config(ca: &TestCa, client: Option<&TestCert>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("CA PEM")).expect("root");
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder.with_client_auth_cert(vec![c.cert_der()], c.key_der()).expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A server TLS config for `cert` (no client authentication), offering `alpn`.
pub fn server_config(cert: &TestCert, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A server config that requires client certificates signed by `client_ca` (an upstream doing mutual TLS).
pub fn server_config_mtls(cert: &TestCert, client_ca: &TestCa, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(client_ca.cert_pem.as_bytes()).expect("CA PEM")).expect("CA root");
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().expect("client verifier");
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What a TLS request learned about the connection.
#[derive(Debug)]
pub struct TlsReply {
    /// The response.
    pub reply: Reply,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The server's certificate (leaf), DER.
    pub peer_cert: Option<CertificateDer<'static>>,
}

/// Connects to `addr` with TLS (SNI `server_name`), sends `req` over the protocol ALPN picked, reads the answer.
pub async fn send(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    req: Request<Body>,
) -> Result<TlsReply, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let peer_cert = session.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
    let io = TokioIo::new(tls);
    let mut req = req;
    if alpn.as_deref() == Some(b"h2") && req.uri().authority().is_none() {
        // HTTP/2 carries the authority in the request target.
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or(server_name).to_string();
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_string();
        *req.uri_mut() = format!("https://{host}{pq}").parse()?;
        req.headers_mut().remove("host");
    }
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    let reply = Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    };
    Ok(TlsReply { reply, alpn, peer_cert })
}

/// A GET request for `path` with `host`, ready for [`send`].
pub fn get(host: &str, path: &str) -> Request<Body> {
    Request::get(path).header("host", host).body(crate::client::empty()).expect("request")
}
