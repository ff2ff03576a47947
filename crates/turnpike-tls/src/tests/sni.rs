//! Certificate selection by SNI, and the certificate files' formats.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::support::*;
use crate::server_config;

struct Fixture {
    _dir: TempDir,
    server: Server,
    default: Leaf,
    exact: Leaf,
    wildcard: Leaf,
    deep_wildcard: Leaf,
}

/// Certificates: a default for `default.test`, `api.example.com`, `*.example.com`, `*.eu.example.com`.
async fn fixture() -> Fixture {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let default = ca.leaf(&["default.test"]);
    let exact = ca.leaf(&["api.example.com"]);
    let wildcard = ca.leaf(&["*.example.com"]);
    let deep_wildcard = ca.leaf(&["*.eu.example.com"]);
    let config = listener(vec![
        write_leaf(&dir, "default", &default),
        write_leaf(&dir, "wildcard", &wildcard),
        write_leaf(&dir, "deep", &deep_wildcard),
        write_leaf(&dir, "exact", &exact),
    ]);
    let tls = server_config(&config, dir.path(), ALPN).unwrap();
    let server = Server::start(tls.config).await;
    Fixture { _dir: dir, server, default, exact, wildcard, deep_wildcard }
}

#[tokio::test]
async fn exact_name_gets_its_certificate_even_when_a_wildcard_also_matches() {
    let mut f = fixture().await;
    let stream = connect(&client_any(ALPN), f.server.addr, "api.example.com").await.unwrap();
    assert_eq!(served(&stream), f.exact.der);
    assert_eq!(f.server.next().await.unwrap().sni.as_deref(), Some("api.example.com"));
}

#[tokio::test]
async fn subdomain_gets_the_most_specific_wildcard() {
    let f = fixture().await;
    let client = client_any(ALPN);
    let stream = connect(&client, f.server.addr, "shop.example.com").await.unwrap();
    assert_eq!(served(&stream), f.wildcard.der);
    let stream = connect(&client, f.server.addr, "paris.eu.example.com").await.unwrap();
    assert_eq!(served(&stream), f.deep_wildcard.der);
}

#[tokio::test]
async fn names_are_matched_without_regard_to_case() {
    let f = fixture().await;
    let stream = connect(&client_any(ALPN), f.server.addr, "API.Example.COM").await.unwrap();
    assert_eq!(served(&stream), f.exact.der);
}

#[tokio::test]
async fn unknown_name_gets_the_default_certificate() {
    let f = fixture().await;
    let client = client_any(ALPN);
    for name in ["other.test", "example.com", "a.b.c.example.com"] {
        let stream = connect(&client, f.server.addr, name).await.unwrap();
        assert_eq!(served(&stream), f.default.der, "{name}");
    }
}

#[tokio::test]
async fn client_without_sni_gets_the_default_certificate() {
    let mut f = fixture().await;
    let mut config = (*client_any(ALPN)).clone();
    config.enable_sni = false;
    let stream = connect(&Arc::new(config), f.server.addr, "api.example.com").await.unwrap();
    assert_eq!(served(&stream), f.default.der);
    assert_eq!(f.server.next().await.unwrap().sni, None);
}

#[tokio::test]
async fn verifying_client_accepts_the_chosen_certificates() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let config = listener(vec![
        write_leaf(&dir, "default", &ca.leaf(&["default.test"])),
        write_leaf(&dir, "wildcard", &ca.leaf(&["*.example.com"])),
    ]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    let client = client_trusting(&ca, None);
    for name in ["default.test", "x.example.com"] {
        let mut stream = connect(&client, server.addr, name).await.unwrap();
        roundtrip(&mut stream).await.unwrap();
    }
}

#[tokio::test]
async fn configured_names_replace_the_certificate_names() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let default = ca.leaf(&["default.test"]);
    let multi = ca.leaf(&["a.example.com", "b.example.com"]);
    let mut entry = write_leaf(&dir, "multi", &multi);
    entry.names = vec!["A.example.com.".into()];
    let config = listener(vec![write_leaf(&dir, "default", &default), entry]);
    let tls = server_config(&config, dir.path(), ALPN).unwrap();
    assert_eq!(tls.certificates[1].names, ["a.example.com"]);
    assert!(tls.warnings.is_empty(), "{:?}", tls.warnings);
    let server = Server::start(tls.config).await;
    let client = client_any(ALPN);
    assert_eq!(served(&connect(&client, server.addr, "a.example.com").await.unwrap()), multi.der);
    assert_eq!(served(&connect(&client, server.addr, "b.example.com").await.unwrap()), default.der);
}

#[tokio::test]
async fn serves_the_intermediates_from_the_certificate_file() {
    let root = Ca::new("Root CA");
    let intermediate = root.intermediate("Intermediate CA");
    let dir = TempDir::new();
    let leaf = Ca::chained(&intermediate, &["chain.test"]);
    let config = listener(vec![write_leaf(&dir, "leaf", &leaf)]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    let mut stream = connect(&client_trusting(&root, None), server.addr, "chain.test").await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap().len(), 2);
}

#[tokio::test]
async fn loads_rsa_ecdsa_and_ed25519_keys_in_every_pem_format() {
    let ca = Ca::new("Test CA");
    // (key type, the key file's text: None = as rcgen writes it, PKCS#8)
    let cases: [(Alg, Option<&str>, &str); 6] = [
        (Alg::Rsa, None, "RSA PKCS#8"),
        (Alg::Rsa, Some(RSA2048_PKCS1), "RSA PKCS#1"),
        (Alg::P256, None, "P-256 PKCS#8"),
        (Alg::P384, None, "P-384 PKCS#8"),
        (Alg::P384, Some(P384_SEC1), "P-384 SEC1"),
        (Alg::Ed25519, None, "Ed25519 PKCS#8"),
    ];
    for (alg, key_text, what) in cases {
        let dir = TempDir::new();
        let mut leaf = ca.issue(Spec::server(&["keys.test"]).alg(alg));
        if let Some(text) = key_text {
            leaf.key_pem = text.to_owned();
        }
        let config = listener(vec![write_leaf(&dir, "leaf", &leaf)]);
        let tls = server_config(&config, dir.path(), ALPN).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let server = Server::start(tls.config).await;
        let mut stream = connect(&client_trusting(&ca, None), server.addr, "keys.test").await.unwrap();
        roundtrip(&mut stream).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[tokio::test]
async fn cert_and_key_may_share_one_file() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let leaf = ca.leaf(&["combined.test"]);
    let both = dir.write("both.pem", &format!("{}{}", leaf.key_pem, leaf.chain_pem));
    let config = listener(vec![crate::CertificateConfig { cert: both.clone(), key: both, names: vec![] }]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    let mut stream = connect(&client_trusting(&ca, None), server.addr, "combined.test").await.unwrap();
    roundtrip(&mut stream).await.unwrap();
}

/// Accepts any certificate but offers only RSA signature schemes, like an old client that cannot verify ECDSA.
#[derive(Debug)]
struct RsaOnlyClient(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for RsaOnlyClient {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256]
    }
}

#[tokio::test]
async fn same_name_with_ecdsa_and_rsa_serves_what_the_client_can_verify() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let ecdsa = ca.issue(Spec::server(&["dual.test"]).alg(Alg::P256));
    let rsa = ca.issue(Spec::server(&["dual.test"]).alg(Alg::Rsa));
    let config = listener(vec![write_leaf(&dir, "ecdsa", &ecdsa), write_leaf(&dir, "rsa", &rsa)]);
    let tls = server_config(&config, dir.path(), ALPN).unwrap();
    assert_eq!(tls.certificates.iter().map(|c| c.key_type).collect::<Vec<_>>(), ["ECDSA", "RSA"]);
    let server = Server::start(tls.config).await;

    let modern = client_any(ALPN);
    assert_eq!(served(&connect(&modern, server.addr, "dual.test").await.unwrap()), ecdsa.der);

    let provider = rustls::crypto::ring::default_provider();
    let old = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RsaOnlyClient(provider.signature_verification_algorithms)))
        .with_no_client_auth();
    assert_eq!(served(&connect(&Arc::new(old), server.addr, "dual.test").await.unwrap()), rsa.der);
}

#[test]
fn summary_describes_names_subject_and_expiry() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let config = listener(vec![write_leaf(&dir, "site", &ca.leaf(&["site.test", "*.site.test"]))]);
    let tls = server_config(&config, dir.path(), ALPN).unwrap();
    let summary = &tls.certificates[0];
    assert_eq!(summary.names, ["site.test", "*.site.test"]);
    assert_eq!(summary.subject, "CN=site.test");
    assert_eq!(summary.not_after, "2999-01-01T00:00:00Z");
    assert!(!summary.expired);
    assert_eq!(summary.key_type, "ECDSA");
    assert_eq!(summary.file, dir.path().join("site.crt"));
    assert_eq!(
        summary.to_string(),
        format!(
            "site.test, *.site.test -> CN=site.test (ECDSA, expires 2999-01-01T00:00:00Z, {})",
            summary.file.display()
        )
    );
    assert_eq!(tls.files, [dir.path().join("site.crt"), dir.path().join("site.key")]);
}
