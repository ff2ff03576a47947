//! Reload: building again re-reads the files; new handshakes get the new certificate, open connections go on.

use super::support::*;
use crate::server_config;

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_open_connections() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let old = ca.leaf(&["app.test"]);
    let config = listener(vec![write_leaf(&dir, "app", &old)]);
    let server = Server::start(server_config(&config, dir.path(), ALPN).unwrap().config).await;
    let client = client_trusting(&ca, None);
    let mut open = connect(&client, server.addr, "app.test").await.unwrap();
    roundtrip(&mut open).await.unwrap();
    assert_eq!(served(&open), old.der);

    // The certificate is renewed on disk (same file names, new key), then the configuration is built again.
    let renewed = ca.leaf(&["app.test"]);
    write_leaf(&dir, "app", &renewed);
    let tls = server_config(&config, dir.path(), ALPN).unwrap();
    server.reload(tls.config);

    let mut fresh = connect(&client, server.addr, "app.test").await.unwrap();
    roundtrip(&mut fresh).await.unwrap();
    assert_eq!(served(&fresh), renewed.der);
    // The connection opened before the reload still works, with the certificate it was given.
    roundtrip(&mut open).await.unwrap();
    assert_eq!(served(&open), old.der);
}

#[test]
fn a_failed_rebuild_leaves_nothing_half_built() {
    // A reload whose files are broken returns errors; the caller keeps the previous ServerTls.
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let config = listener(vec![write_leaf(&dir, "app", &ca.leaf(&["app.test"]))]);
    let before = server_config(&config, dir.path(), ALPN).unwrap();
    dir.write("app.key", &ca.leaf(&["other.test"]).key_pem);
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["certificates[0].key"]);
    assert_eq!(before.certificates[0].names, ["app.test"]);
}
