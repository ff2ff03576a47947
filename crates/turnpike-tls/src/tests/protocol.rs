//! ALPN and TLS versions.

use std::sync::Arc;

use rustls::{ClientConfig, ProtocolVersion};

use super::support::*;
use crate::{TlsVersion, server_config};

async fn server(min_version: TlsVersion, alpn: &[&[u8]]) -> (TempDir, Ca, Server) {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut config = listener(vec![write_leaf(&dir, "leaf", &ca.leaf(&["proto.test"]))]);
    config.min_version = min_version;
    let server = Server::start(server_config(&config, dir.path(), alpn).unwrap().config).await;
    (dir, ca, server)
}

fn client_with(ca: &Ca, versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[tokio::test]
async fn alpn_picks_h2_when_the_client_offers_it() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls12, ALPN).await;
    let client = client_with(&ca, rustls::ALL_VERSIONS, &[b"http/1.1", b"h2"]);
    let stream = connect(&client, server.addr, "proto.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(server.next().await.unwrap().alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn alpn_falls_back_to_http11() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls12, ALPN).await;
    let client = client_with(&ca, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let stream = connect(&client, server.addr, "proto.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.next().await.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn http11_only_listener_never_negotiates_h2() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls12, &[b"http/1.1"]).await;
    let client = client_with(&ca, rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"]);
    let stream = connect(&client, server.addr, "proto.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.next().await.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_without_alpn_is_accepted_without_a_protocol() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls12, ALPN).await;
    let mut stream = connect(&client_with(&ca, rustls::ALL_VERSIONS, &[]), server.addr, "proto.test").await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    assert_eq!(server.next().await.unwrap().alpn, None);
}

#[tokio::test]
async fn default_accepts_tls12_and_tls13() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls12, ALPN).await;
    for (version, expected) in
        [(&rustls::version::TLS12, ProtocolVersion::TLSv1_2), (&rustls::version::TLS13, ProtocolVersion::TLSv1_3)]
    {
        let client = client_with(&ca, &[version], ALPN);
        let mut stream = connect(&client, server.addr, "proto.test").await.unwrap();
        roundtrip(&mut stream).await.unwrap();
        assert_eq!(server.next().await.unwrap().version, Some(expected));
    }
}

#[tokio::test]
async fn tls13_only_refuses_a_tls12_client() {
    let (_dir, ca, mut server) = server(TlsVersion::Tls13, ALPN).await;
    let old = client_with(&ca, &[&rustls::version::TLS12], ALPN);
    assert!(connect(&old, server.addr, "proto.test").await.is_err());
    assert!(server.next().await.is_err());

    let modern = client_with(&ca, rustls::ALL_VERSIONS, ALPN);
    let mut stream = connect(&modern, server.addr, "proto.test").await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    assert_eq!(server.next().await.unwrap().version, Some(ProtocolVersion::TLSv1_3));
}
