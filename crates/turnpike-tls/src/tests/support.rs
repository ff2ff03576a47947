//! Test helpers: a CA and leaf certificates made with rcgen, files in a temporary directory, and a loopback TLS
//! server that reports what each handshake negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::client::TlsStream;
use turnpike_core::ClientCert;

pub(crate) const RSA2048_PKCS8: &str = include_str!("../testdata/rsa2048.pkcs8.pem");
pub(crate) const RSA2048_PKCS1: &str = include_str!("../testdata/rsa2048.pkcs1.pem");
pub(crate) const P384_PKCS8: &str = include_str!("../testdata/p384.pkcs8.pem");
pub(crate) const P384_SEC1: &str = include_str!("../testdata/p384.sec1.pem");
pub(crate) const RSA1024_PKCS8: &str = include_str!("../testdata/rsa1024.pkcs8.pem");
pub(crate) const P521_PKCS8: &str = include_str!("../testdata/p521.pkcs8.pem");

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("turnpike-tls-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` and returns the name (relative to the directory, as a config would give it).
    pub(crate) fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.0.join(name), contents).unwrap();
        name.to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Key types for test certificates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Alg {
    P256,
    P384,
    Ed25519,
    Rsa,
}

/// A fresh key (RSA and P-384 come from the fixtures: ring cannot generate RSA keys).
pub(crate) fn key(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        Alg::P384 => key_from_pem(P384_PKCS8, &rcgen::PKCS_ECDSA_P384_SHA384),
        Alg::Rsa => key_from_pem(RSA2048_PKCS8, &rcgen::PKCS_RSA_SHA256),
    }
}

fn key_from_pem(pem: &str, alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::from_pkcs8_pem_and_sign_algo(pem, alg).unwrap()
}

/// A certificate authority.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) cert_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

/// A leaf certificate with its key; `chain_pem` is the leaf followed by any intermediates.
pub(crate) struct Leaf {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

/// What a leaf should look like.
pub(crate) struct Spec {
    pub(crate) sans: Vec<SanType>,
    pub(crate) subject: Vec<(DnType, String)>,
    pub(crate) alg: Alg,
    pub(crate) expired: bool,
    pub(crate) client: bool,
}

impl Spec {
    /// A server certificate (ECDSA P-256) for DNS names (or IP addresses).
    pub(crate) fn server(names: &[&str]) -> Spec {
        let sans = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        Spec {
            sans,
            subject: vec![(DnType::CommonName, names.first().copied().unwrap_or("default").to_owned())],
            alg: Alg::P256,
            expired: false,
            client: false,
        }
    }

    /// A client certificate with subject `CN=<cn>,O=Example` and a URI SAN.
    pub(crate) fn client(cn: &str) -> Spec {
        Spec {
            sans: vec![SanType::URI(format!("spiffe://example.org/{cn}").as_str().try_into().unwrap())],
            subject: vec![(DnType::OrganizationName, "Example".into()), (DnType::CommonName, cn.into())],
            alg: Alg::P256,
            expired: false,
            client: true,
        }
    }

    pub(crate) fn alg(mut self, alg: Alg) -> Spec {
        self.alg = alg;
        self
    }

    pub(crate) fn expired(mut self) -> Spec {
        self.expired = true;
        self
    }
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = key(Alg::P256);
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert_pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, name: &str) -> Ca {
        let key = key(Alg::P256);
        let params = ca_params(name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Ca { cert_pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// A server leaf (ECDSA P-256) for `names`.
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        self.issue(Spec::server(names))
    }

    pub(crate) fn issue(&self, spec: Spec) -> Leaf {
        let key = key(spec.alg);
        let mut params = CertificateParams::default();
        params.subject_alt_names = spec.sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in spec.subject {
            params.distinguished_name.push(ty, value);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![if spec.client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2999, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// A leaf issued by `intermediate`, with the intermediate appended to its chain.
    pub(crate) fn chained(intermediate: &Ca, names: &[&str]) -> Leaf {
        let mut leaf = intermediate.leaf(names);
        leaf.chain_pem.push_str(&intermediate.cert_pem);
        leaf
    }

    pub(crate) fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2999, 1, 1);
    params
}

/// A self-signed server certificate (no CA).
pub(crate) fn self_signed(names: &[&str]) -> Leaf {
    let key = key(Alg::P256);
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Leaf { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
}

/// Writes a leaf as `<stem>.crt` / `<stem>.key` and returns its config entry.
pub(crate) fn write_leaf(dir: &TempDir, stem: &str, leaf: &Leaf) -> crate::CertificateConfig {
    crate::CertificateConfig {
        cert: dir.write(&format!("{stem}.crt"), &leaf.chain_pem),
        key: dir.write(&format!("{stem}.key"), &leaf.key_pem),
        names: Vec::new(),
    }
}

/// A listener config with these certificates and defaults otherwise.
pub(crate) fn listener(certificates: Vec<crate::CertificateConfig>) -> crate::ServerTlsConfig {
    crate::ServerTlsConfig {
        certificates,
        client_auth: None,
        min_version: crate::TlsVersion::Tls12,
        session_resumption: true,
    }
}

pub(crate) const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What the server saw of one handshake.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) sni: Option<String>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) version: Option<ProtocolVersion>,
    pub(crate) kind: Option<HandshakeKind>,
    pub(crate) client_cert: Option<ClientCert>,
}

/// A loopback TLS server: accepts with the config current at accept time (as the gateway does), reports each
/// handshake, then echoes what it reads.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<Result<Accepted, String>>,
    config: watch::Sender<Arc<ServerConfig>>,
}

impl Server {
    pub(crate) async fn start(config: Arc<ServerConfig>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, reports) = mpsc::unbounded_channel();
        let (config, rx) = watch::channel(config);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&*rx.borrow()));
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let conn = tls.get_ref().1;
                            let _ = tx.send(Ok(Accepted {
                                sni: conn.server_name().map(str::to_owned),
                                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                                version: conn.protocol_version(),
                                kind: conn.handshake_kind(),
                                client_cert: crate::peer_client_cert(conn),
                            }));
                            let mut buf = [0u8; 1024];
                            loop {
                                match tls.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if tls.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            }
        });
        Server { addr, reports, config }
    }

    /// Serves new connections with `config` (a reload); open connections are not touched.
    pub(crate) fn reload(&self, config: Arc<ServerConfig>) {
        self.config.send_replace(config);
    }

    /// The next handshake's outcome on the server side.
    pub(crate) async fn next(&mut self) -> Result<Accepted, String> {
        self.reports.recv().await.unwrap()
    }
}

/// Connects and completes the client side of the handshake.
pub(crate) async fn connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connect_to(config, addr, name).await
}

pub(crate) async fn connect_to(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await
}

/// Sends a line and reads the echo: proves the connection works (and lets the client read session tickets).
pub(crate) async fn roundtrip(stream: &mut TlsStream<TcpStream>) -> std::io::Result<()> {
    stream.write_all(b"ping\n").await?;
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping\n");
    Ok(())
}

/// The certificate the server presented on this connection.
pub(crate) fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// A client trusting `ca`, TLS 1.2 and 1.3, optionally with a client certificate.
pub(crate) fn client_trusting(ca: &Ca, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_root_certificates(ca.roots());
    Arc::new(match cert {
        Some(leaf) => {
            let chain =
                CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// A client that accepts any server certificate (to see which one the server picked) and offers `alpn`.
pub(crate) fn client_any(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let config = crate::UpstreamTlsConfig { insecure_skip_verify: true, ..Default::default() };
    crate::client_config(&config, Path::new("/"), alpn).unwrap()
}

/// The issue paths, for compact assertions.
pub(crate) fn paths(issues: &[crate::TlsIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.path.as_str()).collect()
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `f` and returns the messages of the `WARN` events it logged.
pub(crate) fn warnings_logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};

    struct Recorder(Arc<Mutex<Vec<String>>>);
    struct Message(String);
    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
    impl tracing::Subscriber for Recorder {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().unwrap().push(message.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    let logged = Arc::new(Mutex::new(Vec::new()));
    let out = tracing::subscriber::with_default(Recorder(Arc::clone(&logged)), f);
    let messages = logged.lock().unwrap().clone();
    (out, messages)
}
