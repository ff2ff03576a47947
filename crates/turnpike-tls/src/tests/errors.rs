//! Configuration errors: every one reported at once, with its path and file, without key material; warnings
//! that do not stop a listener.

use super::support::*;
use crate::{CertificateConfig, ClientAuthConfig, ClientAuthMode, server_config};

fn cert(cert: &str, key: &str) -> CertificateConfig {
    CertificateConfig { cert: cert.into(), key: key.into(), names: vec![] }
}

#[test]
fn reports_every_problem_at_once_with_paths() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test"]);
    dir.write("a.crt", &a.chain_pem);
    dir.write("a.key", &a.key_pem);
    dir.write("b.key", &b.key_pem);
    dir.write("garbage.pem", "this is not PEM\n");
    dir.write("broken.pem", "-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n");
    let mut config = listener(vec![
        cert("missing.crt", "a.key"),          // 0: unreadable cert
        cert("a.crt", "b.key"),                // 1: key of another certificate
        cert("garbage.pem", "a.crt"),          // 2: no certificate; a key file holding only a certificate
        cert("broken.pem", "a.key"),           // 3: broken base64
        cert("/nonexistent/abs.crt", "a.key"), // 4: absolute path, unreadable
    ]);
    config.client_auth = Some(ClientAuthConfig { mode: ClientAuthMode::Require, ca: "no-ca.pem".into() });
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(
        paths(&issues),
        [
            "certificates[0].cert",
            "certificates[1].key",
            "certificates[2].cert",
            "certificates[2].key",
            "certificates[3].cert",
            "certificates[4].cert",
            "client_auth.ca",
        ],
        "{issues:#?}"
    );
    let message = |i: usize| issues[i].message.as_str();
    let d = dir.path().display();
    assert!(message(0).starts_with(&format!("cannot read {d}/missing.crt: ")), "{}", message(0));
    assert_eq!(message(1), format!("the private key in {d}/b.key does not match the certificate in {d}/a.crt"));
    assert!(message(2).starts_with(&format!("no certificate found in {d}/garbage.pem")), "{}", message(2));
    assert!(message(3).starts_with(&format!("no private key found in {d}/a.crt")), "{}", message(3));
    assert!(message(4).contains("broken.pem is not a valid PEM file"), "{}", message(4));
    assert!(message(5).starts_with("cannot read /nonexistent/abs.crt: "), "{}", message(5));
    assert!(message(6).starts_with(&format!("cannot read {d}/no-ca.pem")), "{}", message(6));
    assert_eq!(issues[1].to_string(), format!("certificates[1].key: {}", message(1)));
}

#[test]
fn messages_never_contain_key_material() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test"]);
    dir.write("a.crt", &a.chain_pem);
    dir.write("b.key", &b.key_pem);
    // A key whose base64 is broken half-way.
    let half = &b.key_pem[..b.key_pem.len() / 2];
    dir.write("broken.key", &format!("{half}\n-----END PRIVATE KEY-----\n"));
    let config = listener(vec![cert("a.crt", "b.key"), cert("a.crt", "broken.key")]);
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(issues.len(), 2, "{issues:#?}");
    for issue in &issues {
        for line in b.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!issue.message.contains(line), "{issue}");
            assert!(!issue.message.contains(&line[..16]), "{issue}");
        }
    }
}

#[test]
fn unsupported_and_encrypted_keys_are_named() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    dir.write("a.crt", &ca.leaf(&["a.test"]).chain_pem);
    dir.write("rsa1024.key", RSA1024_PKCS8);
    dir.write("p521.key", P521_PKCS8);
    dir.write(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQww\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let config =
        listener(vec![cert("a.crt", "rsa1024.key"), cert("a.crt", "p521.key"), cert("a.crt", "encrypted.key")]);
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["certificates[0].key", "certificates[1].key", "certificates[2].key"]);
    assert!(issues[0].message.contains("rsa1024.key is of an unsupported type or size"), "{}", issues[0]);
    assert!(issues[1].message.contains("p521.key is of an unsupported type or size"), "{}", issues[1]);
    assert!(issues[2].message.contains("encrypted.key is encrypted"), "{}", issues[2]);
}

#[test]
fn no_certificate_is_an_error() {
    let issues = server_config(&listener(vec![]), std::path::Path::new("/"), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["certificates"]);
}

#[test]
fn bad_names_are_errors() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut entry = write_leaf(&dir, "a", &ca.leaf(&["a.test"]));
    entry.names = vec!["a.test".into(), "10.0.0.1".into(), "a.*.test".into(), "bad name".into(), "*.a.test".into()];
    let issues = server_config(&listener(vec![entry]), dir.path(), ALPN).unwrap_err();
    assert_eq!(
        paths(&issues),
        ["certificates[0].names[1]", "certificates[0].names[2]", "certificates[0].names[3]"],
        "{issues:#?}"
    );
}

#[test]
fn a_later_certificate_without_names_is_an_error() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let ip_only = ca.leaf(&["127.0.0.1"]);
    // First: fine (the default needs no name). Second: unreachable.
    let config = listener(vec![write_leaf(&dir, "ip", &ip_only), write_leaf(&dir, "ip2", &ip_only)]);
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["certificates[1].names"]);

    // Paths stay right when an earlier certificate failed to load.
    let mut config = config;
    config
        .certificates
        .insert(0, crate::CertificateConfig { cert: "missing".into(), key: "missing".into(), names: vec![] });
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(
        paths(&issues),
        ["certificates[0].cert", "certificates[0].key", "certificates[1].names", "certificates[2].names"]
    );
}

#[test]
fn ca_bundle_without_certificates_is_an_error() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut config = listener(vec![write_leaf(&dir, "a", &ca.leaf(&["a.test"]))]);
    config.client_auth = Some(ClientAuthConfig {
        mode: ClientAuthMode::Request,
        ca: dir.write("ca.pem", &ca.leaf(&["x.test"]).key_pem),
    });
    let issues = server_config(&config, dir.path(), ALPN).unwrap_err();
    assert_eq!(paths(&issues), ["client_auth.ca"]);
    assert!(issues[0].message.starts_with("no certificate found in"), "{}", issues[0]);
}

#[tokio::test]
async fn expired_certificate_is_a_warning_and_still_served() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let expired = ca.issue(Spec::server(&["old.test"]).expired());
    let tls = server_config(&listener(vec![write_leaf(&dir, "old", &expired)]), dir.path(), ALPN).unwrap();
    assert_eq!(paths(&tls.warnings), ["certificates[0].cert"]);
    assert!(tls.warnings[0].message.contains("expired at 2001-01-01T00:00:00Z"), "{}", tls.warnings[0]);
    assert!(tls.certificates[0].expired);
    assert!(tls.certificates[0].to_string().contains("EXPIRED at 2001-01-01T00:00:00Z"));
    let server = Server::start(tls.config).await;
    let stream = connect(&client_any(ALPN), server.addr, "old.test").await.unwrap();
    assert_eq!(served(&stream), expired.der);
}

#[test]
fn a_name_the_certificate_does_not_cover_is_a_warning() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let mut entry = write_leaf(&dir, "a", &ca.leaf(&["a.test", "*.b.test"]));
    entry.names = vec!["a.test".into(), "x.b.test".into(), "*.b.test".into(), "c.test".into(), "*.a.test".into()];
    let tls = server_config(&listener(vec![entry]), dir.path(), ALPN).unwrap();
    assert_eq!(paths(&tls.warnings), ["certificates[0].names", "certificates[0].names"]);
    assert!(tls.warnings[0].message.contains("does not cover `c.test`"), "{}", tls.warnings[0]);
    assert!(tls.warnings[1].message.contains("does not cover `*.a.test`"), "{}", tls.warnings[1]);
}

#[test]
fn warnings_are_logged_at_build() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let config = listener(vec![write_leaf(&dir, "old", &ca.issue(Spec::server(&["old.test"]).expired()))]);
    let (tls, logged) = warnings_logged(|| server_config(&config, dir.path(), ALPN));
    assert_eq!(logged, [tls.unwrap().warnings[0].message.clone()]);
}
