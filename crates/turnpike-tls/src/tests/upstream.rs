//! TLS to upstreams: trust, server names, client certificates, `insecure_skip_verify`.

use rustls::pki_types::ServerName;

use super::support::*;
use crate::{
    CertificateConfig, ClientAuthConfig, ClientAuthMode, UpstreamTlsConfig, client_config, server_config, server_name,
};

/// An upstream server with a certificate from `ca` for `names`.
async fn upstream(ca: &Ca, names: &[&str]) -> (TempDir, Server) {
    let dir = TempDir::new();
    let config = listener(vec![write_leaf(&dir, "up", &ca.leaf(names))]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    (dir, server)
}

fn with_ca(dir: &TempDir, ca: &Ca) -> UpstreamTlsConfig {
    UpstreamTlsConfig { ca: Some(dir.write("upstream-ca.pem", &ca.cert_pem)), ..Default::default() }
}

#[tokio::test]
async fn verifies_the_upstream_against_the_ca_file() {
    let ca = Ca::new("Upstream CA");
    let (dir, mut server) = upstream(&ca, &["backend.internal"]).await;
    let config = with_ca(&dir, &ca);
    let client = client_config(&config, dir.path(), ALPN).unwrap();
    let name = server_name(&config, "backend.internal").unwrap();
    let mut stream = connect_to(&client, server.addr, name).await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    let accepted = server.next().await.unwrap();
    assert_eq!(accepted.sni.as_deref(), Some("backend.internal"));
    assert_eq!(accepted.alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn refuses_an_upstream_certificate_from_another_ca() {
    let ca = Ca::new("Upstream CA");
    let (dir, server) = upstream(&Ca::new("Rogue CA"), &["backend.internal"]).await;
    let client = client_config(&with_ca(&dir, &ca), dir.path(), ALPN).unwrap();
    let err = connect(&client, server.addr, "backend.internal").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn refuses_an_upstream_certificate_for_another_name() {
    let ca = Ca::new("Upstream CA");
    let (dir, server) = upstream(&ca, &["other.internal"]).await;
    let client = client_config(&with_ca(&dir, &ca), dir.path(), ALPN).unwrap();
    let err = connect(&client, server.addr, "backend.internal").await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn server_name_override_lets_an_ip_endpoint_verify_a_named_certificate() {
    let ca = Ca::new("Upstream CA");
    let (dir, mut server) = upstream(&ca, &["backend.internal"]).await;
    let plain = with_ca(&dir, &ca);
    let client = client_config(&plain, dir.path(), ALPN).unwrap();

    // By IP without an override, the certificate does not match.
    let by_ip = server_name(&plain, "127.0.0.1").unwrap();
    assert!(connect_to(&client, server.addr, by_ip).await.is_err());
    let _ = server.next().await;

    let config = UpstreamTlsConfig { server_name: Some("backend.internal".into()), ..plain };
    let client = client_config(&config, dir.path(), ALPN).unwrap();
    let name = server_name(&config, "127.0.0.1").unwrap();
    let mut stream = connect_to(&client, server.addr, name).await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    assert_eq!(server.next().await.unwrap().sni.as_deref(), Some("backend.internal"));
}

#[tokio::test]
async fn an_ip_endpoint_verifies_against_ip_names() {
    let ca = Ca::new("Upstream CA");
    let (dir, mut server) = upstream(&ca, &["127.0.0.1"]).await;
    let config = with_ca(&dir, &ca);
    let client = client_config(&config, dir.path(), ALPN).unwrap();
    let mut stream = connect_to(&client, server.addr, server_name(&config, "127.0.0.1").unwrap()).await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    assert_eq!(server.next().await.unwrap().sni, None);
}

#[tokio::test]
async fn presents_the_client_certificate_to_an_upstream_that_requires_one() {
    let server_ca = Ca::new("Upstream CA");
    let client_ca = Ca::new("Gateway CA");
    let dir = TempDir::new();
    let mut listener_config = listener(vec![write_leaf(&dir, "up", &server_ca.leaf(&["backend.internal"]))]);
    listener_config.client_auth =
        Some(ClientAuthConfig { mode: ClientAuthMode::Require, ca: dir.write("gateway-ca.pem", &client_ca.cert_pem) });
    let mut server = Server::start(server_config(&listener_config, dir.path(), ALPN).unwrap().config).await;

    // Without a client certificate: refused.
    let anonymous = with_ca(&dir, &server_ca);
    let client = client_config(&anonymous, dir.path(), ALPN).unwrap();
    if let Ok(mut stream) = connect(&client, server.addr, "backend.internal").await {
        assert!(roundtrip(&mut stream).await.is_err());
    }
    assert!(server.next().await.is_err());

    let gateway = client_ca.issue(Spec::client("gateway"));
    let config = UpstreamTlsConfig {
        client_certificate: Some(write_leaf(&dir, "gateway", &gateway)),
        ..with_ca(&dir, &server_ca)
    };
    let client = client_config(&config, dir.path(), ALPN).unwrap();
    let mut stream = connect(&client, server.addr, "backend.internal").await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    let identity = server.next().await.unwrap().client_cert.unwrap();
    assert_eq!(identity.subject, "CN=gateway,O=Example");
    assert_eq!(identity.fingerprint_sha256, sha256(&gateway.der));
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let dir = TempDir::new();
    let leaf = self_signed(&["self.signed"]);
    let config = listener(vec![write_leaf(&dir, "self", &leaf)]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;

    let strict = client_config(&UpstreamTlsConfig::default(), dir.path(), ALPN);
    if let Ok(strict) = strict {
        assert!(connect(&strict, server.addr, "self.signed").await.is_err(), "system roots must refuse it");
    }

    let insecure = UpstreamTlsConfig { insecure_skip_verify: true, ..Default::default() };
    let client = client_config(&insecure, dir.path(), ALPN).unwrap();
    // Any name, even one the certificate does not have.
    for name in ["self.signed", "anything.else"] {
        let mut stream = connect(&client, server.addr, name).await.unwrap();
        roundtrip(&mut stream).await.unwrap();
        assert_eq!(served(&stream), leaf.der);
    }
}

#[tokio::test]
async fn system_roots_do_not_trust_a_private_ca() {
    let ca = Ca::new("Private CA");
    let (dir, server) = upstream(&ca, &["backend.internal"]).await;
    match client_config(&UpstreamTlsConfig::default(), dir.path(), ALPN) {
        Ok(client) => {
            let err = connect(&client, server.addr, "backend.internal").await.unwrap_err();
            assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        }
        // A machine without a CA store: the error says so.
        Err(issues) => assert!(issues[0].message.contains("operating system"), "{issues:?}"),
    }
}

#[tokio::test]
async fn sessions_resume_with_the_same_client_config() {
    let ca = Ca::new("Upstream CA");
    let (dir, mut server) = upstream(&ca, &["backend.internal"]).await;
    let client = client_config(&with_ca(&dir, &ca), dir.path(), ALPN).unwrap();
    let mut first = connect(&client, server.addr, "backend.internal").await.unwrap();
    roundtrip(&mut first).await.unwrap();
    assert_eq!(first.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
    let mut second = connect(&client, server.addr, "backend.internal").await.unwrap();
    roundtrip(&mut second).await.unwrap();
    assert_eq!(second.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    assert_eq!(server.next().await.unwrap().kind, Some(rustls::HandshakeKind::Full));
    assert_eq!(server.next().await.unwrap().kind, Some(rustls::HandshakeKind::Resumed));
}

#[test]
fn reports_every_client_config_problem_at_once() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut client_certificate = write_leaf(&dir, "c", &ca.issue(Spec::client("gw")));
    client_certificate.names = vec!["gw.test".into()];
    let config = UpstreamTlsConfig {
        ca: Some("missing-ca.pem".into()),
        server_name: Some("not a name".into()),
        client_certificate: Some(client_certificate),
        insecure_skip_verify: true,
    };
    let issues = client_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["server_name", "insecure_skip_verify", "client_certificate.names"], "{issues:#?}");

    let config = UpstreamTlsConfig {
        ca: Some("missing-ca.pem".into()),
        client_certificate: Some(CertificateConfig { cert: "c.crt".into(), key: "nope.key".into(), names: vec![] }),
        ..Default::default()
    };
    let issues = client_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["ca", "client_certificate.key"], "{issues:#?}");
}

#[test]
fn server_name_comes_from_the_override_or_the_endpoint_host() {
    let plain = UpstreamTlsConfig::default();
    let dns = |s: &str| ServerName::try_from(s.to_owned()).unwrap();
    assert_eq!(server_name(&plain, "api.internal").unwrap(), dns("api.internal"));
    assert_eq!(server_name(&plain, "API.internal.").unwrap(), dns("API.internal"));
    assert_eq!(
        server_name(&plain, "10.0.0.7").unwrap(),
        ServerName::IpAddress("10.0.0.7".parse::<std::net::IpAddr>().unwrap().into())
    );
    assert_eq!(
        server_name(&plain, "[::1]").unwrap(),
        ServerName::IpAddress("::1".parse::<std::net::IpAddr>().unwrap().into())
    );
    assert_eq!(server_name(&plain, "::1").unwrap(), server_name(&plain, "[::1]").unwrap());
    let issue = server_name(&plain, "bad host").unwrap_err();
    assert_eq!(issue.path, "server_name");
    assert!(issue.message.contains("set `server_name`"), "{issue}");

    let named = UpstreamTlsConfig { server_name: Some("backend.internal".into()), ..Default::default() };
    assert_eq!(server_name(&named, "10.0.0.7").unwrap(), dns("backend.internal"));
}

#[test]
fn insecure_skip_verify_warns_on_every_build() {
    let config = UpstreamTlsConfig { insecure_skip_verify: true, ..Default::default() };
    for _ in 0..2 {
        let (built, warnings) = warnings_logged(|| client_config(&config, std::path::Path::new("/"), ALPN));
        assert!(built.is_ok());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("insecure_skip_verify") && warnings[0].contains("ANY certificate"),
            "{warnings:?}"
        );
    }
    let dir = TempDir::new();
    let secure = with_ca(&dir, &Ca::new("Test CA"));
    let (_, warnings) = warnings_logged(|| client_config(&secure, dir.path(), ALPN));
    assert!(warnings.is_empty(), "{warnings:?}");
}
