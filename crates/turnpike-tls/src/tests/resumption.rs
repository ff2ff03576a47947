//! Session resumption on a listener: tickets (TLS 1.3 and 1.2) and turning it off.

use std::sync::Arc;

use rustls::{ClientConfig, HandshakeKind};

use super::support::*;
use crate::server_config;

async fn server(session_resumption: bool) -> (TempDir, Ca, Server) {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut config = listener(vec![write_leaf(&dir, "leaf", &ca.leaf(&["resume.test"]))]);
    config.session_resumption = session_resumption;
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    (dir, ca, server)
}

/// Two connections with one client config; returns the server's handshake kinds.
async fn twice(server: &mut Server, client: &Arc<ClientConfig>) -> [Option<HandshakeKind>; 2] {
    let mut kinds = [None, None];
    for kind in &mut kinds {
        let mut stream = connect(client, server.addr, "resume.test").await.unwrap();
        // Reading lets the client take in the session tickets sent after the handshake.
        roundtrip(&mut stream).await.unwrap();
        assert_eq!(stream.get_ref().1.handshake_kind(), server.next().await.unwrap().kind);
        *kind = stream.get_ref().1.handshake_kind();
    }
    kinds
}

fn client(ca: &Ca, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn second_tls13_connection_resumes() {
    let (_dir, ca, mut server) = server(true).await;
    let kinds = twice(&mut server, &client(&ca, &[&rustls::version::TLS13])).await;
    assert_eq!(kinds, [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]);
}

#[tokio::test]
async fn second_tls12_connection_resumes() {
    let (_dir, ca, mut server) = server(true).await;
    let kinds = twice(&mut server, &client(&ca, &[&rustls::version::TLS12])).await;
    assert_eq!(kinds, [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]);
}

#[tokio::test]
async fn resumption_off_makes_every_handshake_full() {
    let (_dir, ca, mut server) = server(false).await;
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let kinds = twice(&mut server, &client(&ca, versions)).await;
        assert_eq!(kinds, [Some(HandshakeKind::Full), Some(HandshakeKind::Full)]);
    }
}

#[tokio::test]
async fn sessions_from_before_a_reload_do_not_resume() {
    // Each build has its own ticket keys and cache, so a reload (a new CA bundle, say) re-authenticates.
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let config = listener(vec![write_leaf(&dir, "leaf", &ca.leaf(&["resume.test"]))]);
    let mut server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    let client = client(&ca, rustls::ALL_VERSIONS);
    let mut first = connect(&client, server.addr, "resume.test").await.unwrap();
    roundtrip(&mut first).await.unwrap();
    let _ = server.next().await;
    server.reload(server_config(&config, dir.path(), ALPN).unwrap().config);
    let mut second = connect(&client, server.addr, "resume.test").await.unwrap();
    roundtrip(&mut second).await.unwrap();
    assert_eq!(server.next().await.unwrap().kind, Some(HandshakeKind::Full));
}
