//! Client certificates on a listener (mutual TLS) and the identity they give.

use rcgen::{DnType, SanType};

use super::support::*;
use crate::{ClientAuthConfig, ClientAuthMode, client_cert_info, server_config};

struct Fixture {
    _dir: TempDir,
    server_ca: Ca,
    client_ca: Ca,
    server: Server,
}

async fn fixture(mode: ClientAuthMode) -> Fixture {
    let server_ca = Ca::new("Server CA");
    let client_ca = Ca::new("Client CA");
    let dir = TempDir::new();
    let mut config = listener(vec![write_leaf(&dir, "leaf", &server_ca.leaf(&["mtls.test"]))]);
    config.client_auth = Some(ClientAuthConfig { mode, ca: dir.write("clients.pem", &client_ca.cert_pem) });
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    Fixture { _dir: dir, server_ca, client_ca, server }
}

/// Connects with `cert` and returns the server's outcome; on failure the client cannot use the connection either.
async fn handshake(f: &mut Fixture, cert: Option<&Leaf>) -> Result<Accepted, String> {
    let client = client_trusting(&f.server_ca, cert);
    let connected = connect(&client, f.server.addr, "mtls.test").await;
    let accepted = f.server.next().await;
    match connected {
        Ok(mut stream) => {
            let works = roundtrip(&mut stream).await.is_ok();
            assert_eq!(works, accepted.is_ok(), "client and server disagree: {accepted:?}");
        }
        Err(e) => assert!(accepted.is_err(), "client failed ({e}) but the server accepted"),
    }
    accepted
}

#[tokio::test]
async fn require_refuses_a_client_without_certificate() {
    let mut f = fixture(ClientAuthMode::Require).await;
    let err = handshake(&mut f, None).await.unwrap_err();
    assert!(err.contains("peer sent no certificates") || err.contains("NoCertificatesPresented"), "{err}");
}

#[tokio::test]
async fn require_refuses_a_certificate_from_another_ca() {
    let mut f = fixture(ClientAuthMode::Require).await;
    let stranger = Ca::new("Other CA").issue(Spec::client("svc-x"));
    let err = handshake(&mut f, Some(&stranger)).await.unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn require_refuses_an_expired_certificate() {
    let mut f = fixture(ClientAuthMode::Require).await;
    let expired = f.client_ca.issue(Spec::client("svc-old").expired());
    let err = handshake(&mut f, Some(&expired)).await.unwrap_err();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
}

#[tokio::test]
async fn require_refuses_a_server_certificate_used_as_client_certificate() {
    // The client CA issued it, but for server authentication only (extended key usage).
    let mut f = fixture(ClientAuthMode::Require).await;
    let wrong_usage = f.client_ca.leaf(&["svc.test"]);
    assert!(handshake(&mut f, Some(&wrong_usage)).await.is_err());
}

#[tokio::test]
async fn require_accepts_a_valid_certificate_and_gives_its_identity() {
    let mut f = fixture(ClientAuthMode::Require).await;
    let cert = f.client_ca.issue(Spec::client("svc-a"));
    let accepted = handshake(&mut f, Some(&cert)).await.unwrap();
    let identity = accepted.client_cert.expect("identity");
    assert_eq!(identity.subject, "CN=svc-a,O=Example");
    assert_eq!(identity.sans, ["URI:spiffe://example.org/svc-a"]);
    assert_eq!(identity.fingerprint_sha256, sha256(&cert.der));
    assert_eq!(client_cert_info(&cert.der), Some(identity));
}

#[tokio::test]
async fn request_accepts_a_client_without_certificate_and_gives_no_identity() {
    let mut f = fixture(ClientAuthMode::Request).await;
    let accepted = handshake(&mut f, None).await.unwrap();
    assert_eq!(accepted.client_cert, None);
}

#[tokio::test]
async fn request_verifies_a_certificate_that_is_sent() {
    let mut f = fixture(ClientAuthMode::Request).await;
    let stranger = Ca::new("Other CA").issue(Spec::client("svc-x"));
    assert!(handshake(&mut f, Some(&stranger)).await.is_err());
    let cert = f.client_ca.issue(Spec::client("svc-b"));
    let accepted = handshake(&mut f, Some(&cert)).await.unwrap();
    assert_eq!(accepted.client_cert.unwrap().subject, "CN=svc-b,O=Example");
}

#[tokio::test]
async fn resumed_session_keeps_the_client_identity() {
    let mut f = fixture(ClientAuthMode::Require).await;
    let cert = f.client_ca.issue(Spec::client("svc-r"));
    let client = client_trusting(&f.server_ca, Some(&cert));
    let mut first = connect(&client, f.server.addr, "mtls.test").await.unwrap();
    roundtrip(&mut first).await.unwrap();
    let first_identity = f.server.next().await.unwrap().client_cert.unwrap();
    let mut second = connect(&client, f.server.addr, "mtls.test").await.unwrap();
    roundtrip(&mut second).await.unwrap();
    let accepted = f.server.next().await.unwrap();
    assert_eq!(accepted.kind, Some(rustls::HandshakeKind::Resumed));
    assert_eq!(accepted.client_cert, Some(first_identity));
}

#[test]
fn identity_formats_subject_and_every_kind_of_san() {
    let ca = Ca::new("Test CA");
    let mut spec = Spec::client("ignored");
    spec.subject = vec![
        (DnType::CountryName, "FR".into()),
        (DnType::OrganizationName, "Example, Inc.".into()),
        (DnType::OrganizationalUnitName, "#ops".into()),
        (DnType::CommonName, " svc+a\r\n ".into()),
    ];
    spec.sans = vec![
        SanType::DnsName("svc.example.com".try_into().unwrap()),
        SanType::URI("spiffe://example.org/ns/a".try_into().unwrap()),
        SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
        SanType::IpAddress("10.1.2.3".parse().unwrap()),
        SanType::IpAddress("2001:db8::1".parse().unwrap()),
    ];
    let cert = ca.issue(spec);
    let info = client_cert_info(&cert.der).unwrap();
    assert_eq!(info.subject, r"CN=\ svc\+a\0D\0A\ ,OU=\#ops,O=Example\, Inc.,C=FR");
    assert_eq!(
        info.sans,
        [
            "DNS:svc.example.com",
            "URI:spiffe://example.org/ns/a",
            "email:ops@example.com",
            "IP:10.1.2.3",
            "IP:2001:db8::1"
        ]
    );
    assert_eq!(info.fingerprint_sha256.len(), 64);
    assert_eq!(info.fingerprint_sha256, sha256(&cert.der));
}

#[test]
fn identity_of_garbage_is_none() {
    let garbage = rustls::pki_types::CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert_eq!(client_cert_info(&garbage), None);
}
