//! TLS through the gateway: HTTPS listeners (ALPN, SNI, HSTS), client certificates, certificate reload without
//! dropping connections, and TLS to upstreams.

use crate::support::Dir;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use turnpike_test::tls::{self, TestCa, TestCert};
use turnpike_test::{MockReply, MockUpstream, TestGateway};

fn https_config(dir: &Dir, upstream: std::net::SocketAddr, tls_extra: &str) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners:
  - name: public
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{ cert: {a_crt}, key: {a_key} }}
        - {{ cert: {b_crt}, key: {b_key} }}
{tls_extra}
    hsts: {{ max_age: 1d, include_subdomains: true }}
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
routes:
  - id: api
    upstream: app
"#,
        a_crt = dir.path("a.crt"),
        a_key = dir.path("a.key"),
        b_crt = dir.path("b.crt"),
        b_key = dir.path("b.key"),
    )
}

fn pki(dir: &Dir) -> (TestCa, TestCert, TestCert) {
    let ca = TestCa::new("Turnpike Test CA");
    let a = ca.server(&["a.test", "*.a.test"]);
    let b = ca.server(&["b.test"]);
    a.write(&dir.0, "a");
    b.write(&dir.0, "b");
    (ca, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_speaks_http2_and_http1_by_alpn_with_hsts() {
    let dir = Dir::new("tls-alpn");
    let (ca, a, _) = pki(&dir);
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&https_config(&dir, upstream.addr(), "")).await;

    let h2 =
        tls::send(gw.addr(), "a.test", tls::client_config(&ca, None, &[b"h2", b"http/1.1"]), tls::get("a.test", "/x"))
            .await
            .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.reply.status, 200);
    assert_eq!(h2.reply.header("strict-transport-security"), Some("max-age=86400; includeSubDomains"));
    assert_eq!(h2.peer_cert.unwrap(), a.cert_der(), "SNI a.test gets a's certificate");
    let echo = h2.reply.json();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    let h1 =
        tls::send(gw.addr(), "x.a.test", tls::client_config(&ca, None, &[b"http/1.1"]), tls::get("x.a.test", "/x"))
            .await
            .unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h1.reply.status, 200);
    assert_eq!(h1.peer_cert.unwrap(), a.cert_der(), "the wildcard name gets a's certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let dir = Dir::new("tls-sni");
    let (ca, a, b) = pki(&dir);
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&https_config(&dir, upstream.addr(), "")).await;
    let config = tls::client_config(&ca, None, &[b"http/1.1"]);
    let got_b = tls::send(gw.addr(), "b.test", config.clone(), tls::get("b.test", "/")).await.unwrap();
    assert_eq!(got_b.peer_cert.unwrap(), b.cert_der());
    // A name no certificate covers gets the default (first) certificate, which then fails verification for it.
    assert!(tls::send(gw.addr(), "c.test", config, tls::get("c.test", "/")).await.is_err());
    let _ = a;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_are_verified() {
    let dir = Dir::new("tls-mtls");
    let (ca, _, _) = pki(&dir);
    let clients = TestCa::new("Clients CA");
    std::fs::write(dir.0.join("clients.pem"), &clients.cert_pem).unwrap();
    let extra = format!("      client_auth: {{ mode: require, ca: {} }}", dir.path("clients.pem"));
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&https_config(&dir, upstream.addr(), &extra)).await;
    let try_with = |cert: Option<TestCert>| {
        let config = tls::client_config(&ca, cert.as_ref(), &[b"http/1.1"]);
        let addr = gw.addr();
        async move { tls::send(addr, "a.test", config, tls::get("a.test", "/")).await }
    };
    assert!(try_with(None).await.is_err(), "no certificate");
    assert!(try_with(Some(ca.client("svc-wrong-ca"))).await.is_err(), "a certificate from another CA");
    assert!(try_with(Some(clients.expired_client("svc-old"))).await.is_err(), "an expired certificate");
    let ok = try_with(Some(clients.client("svc-a"))).await.unwrap();
    assert_eq!(ok.reply.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_certificates_without_dropping_open_connections() {
    let dir = Dir::new("tls-reload");
    let (ca, a, _) = pki(&dir);
    let upstream = MockUpstream::echo().await;
    let config = https_config(&dir, upstream.addr(), "");
    let gw = TestGateway::start(&config).await;

    // One keep-alive HTTP/1.1 connection over TLS, opened before the reload.
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("a.test".to_string()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls::client_config(&ca, None, &[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let first = sender.send_request(tls::get("a.test", "/one")).await.unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();

    // Renewed certificate files, then a reload.
    let renewed = ca.server(&["a.test", "*.a.test"]);
    renewed.write(&dir.0, "a");
    gw.reload(&config).unwrap();

    sender.ready().await.unwrap();
    let second = sender.send_request(tls::get("a.test", "/two")).await.unwrap();
    assert_eq!(second.status(), 200, "the open connection carries on");
    let fresh = tls::send(gw.addr(), "a.test", tls::client_config(&ca, None, &[b"http/1.1"]), tls::get("a.test", "/"))
        .await
        .unwrap();
    assert_eq!(fresh.peer_cert.unwrap(), renewed.cert_der(), "new connections get the renewed certificate");
    assert_ne!(renewed.cert_der(), a.cert_der());
}

fn upstream_config(upstream: std::net::SocketAddr, tls: &str) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  secure:
    endpoints: ["{upstream}"]
    tls: {tls}
routes: [{{ id: api, upstream: secure }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_are_reached_over_verified_tls() {
    let dir = Dir::new("tls-upstream");
    let ca = TestCa::new("Internal CA");
    std::fs::write(dir.0.join("internal-ca.pem"), &ca.cert_pem).unwrap();
    let other = TestCa::new("Other CA");
    std::fs::write(dir.0.join("other-ca.pem"), &other.cert_pem).unwrap();
    let cert = ca.server(&["orders.internal"]);
    let upstream =
        MockUpstream::start_tls(|_| MockReply::text(200, "secret orders"), tls::server_config(&cert, &[b"http/1.1"]))
            .await;

    let trusted = format!("{{ ca: {}, server_name: orders.internal }}", dir.path("internal-ca.pem"));
    let gw = TestGateway::start(&upstream_config(upstream.addr(), &trusted)).await;
    let reply = turnpike_test::Client::h1().get(&gw.url("/x")).await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "secret orders"));

    let untrusted = format!("{{ ca: {}, server_name: orders.internal }}", dir.path("other-ca.pem"));
    let gw = TestGateway::start(&upstream_config(upstream.addr(), &untrusted)).await;
    assert_eq!(turnpike_test::Client::h1().get(&gw.url("/x")).await.status, 502, "a certificate from another CA");

    let wrong_name = format!("{{ ca: {}, server_name: payments.internal }}", dir.path("internal-ca.pem"));
    let gw = TestGateway::start(&upstream_config(upstream.addr(), &wrong_name)).await;
    assert_eq!(turnpike_test::Client::h1().get(&gw.url("/x")).await.status, 502, "a certificate for another name");

    let gw = TestGateway::start(&upstream_config(upstream.addr(), "{ insecure_skip_verify: true }")).await;
    assert_eq!(turnpike_test::Client::h1().get(&gw.url("/x")).await.status, 200, "explicitly unverified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_requiring_client_certificates_get_the_configured_one() {
    let dir = Dir::new("tls-upstream-mtls");
    let ca = TestCa::new("Internal CA");
    std::fs::write(dir.0.join("internal-ca.pem"), &ca.cert_pem).unwrap();
    let server = ca.server(&["orders.internal"]);
    let gateway_cert = ca.client("turnpike-gateway");
    let (cert, key) = gateway_cert.write(&dir.0, "gateway");
    let stranger = TestCa::new("Stranger CA").client("turnpike-gateway");
    let (bad_cert, bad_key) = stranger.write(&dir.0, "stranger");
    let upstream = MockUpstream::start_tls(
        |_| MockReply::text(200, "mutually authenticated"),
        tls::server_config_mtls(&server, &ca, &[b"http/1.1"]),
    )
    .await;
    let tls_with = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "{{ ca: {}, server_name: orders.internal, client_certificate: {{ cert: {}, key: {} }} }}",
            dir.path("internal-ca.pem"),
            cert.display(),
            key.display()
        )
    };

    let gw = TestGateway::start(&upstream_config(upstream.addr(), &tls_with(&cert, &key))).await;
    let reply = turnpike_test::Client::h1().get(&gw.url("/x")).await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "mutually authenticated"));

    let without = format!("{{ ca: {}, server_name: orders.internal }}", dir.path("internal-ca.pem"));
    let gw = TestGateway::start(&upstream_config(upstream.addr(), &without)).await;
    assert_eq!(turnpike_test::Client::h1().get(&gw.url("/x")).await.status, 502, "no client certificate");

    let gw = TestGateway::start(&upstream_config(upstream.addr(), &tls_with(&bad_cert, &bad_key))).await;
    assert_eq!(
        turnpike_test::Client::h1().get(&gw.url("/x")).await.status,
        502,
        "a certificate the upstream distrusts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_config_errors_name_the_field() {
    let dir = Dir::new("tls-errors");
    let source = turnpike_gateway::ConfigSource::text(
        "test.yaml",
        format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n    hsts: {{}}\n",
            dir.path("missing.crt"),
            dir.path("missing.key")
        ),
    );
    let err = turnpike_gateway::config::load_and_compile(&source, &turnpike_gateway::state::State::default(), 1)
        .expect_err("missing files");
    let text = err.to_string();
    assert!(text.contains("listeners[public].tls.certificates[0]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_and_their_failures_are_counted() {
    let dir = Dir::new("tls-metrics");
    let (ca, _, _) = pki(&dir);
    let upstream = MockUpstream::echo().await;
    let yaml = https_config(&dir, upstream.addr(), "")
        .replace("server: { watch: false }", "server: { watch: false, admin: { address: 127.0.0.1:0 } }");
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..2 {
        let ok =
            tls::send(gw.addr(), "a.test", tls::client_config(&ca, None, &[b"http/1.1"]), tls::get("a.test", "/x"))
                .await
                .unwrap();
        assert_eq!(ok.reply.status, 200);
    }
    // A client that does not trust the gateway's CA fails the handshake; so does plain HTTP on the TLS port.
    let stranger = TestCa::new("Someone Else");
    let refused =
        tls::send(gw.addr(), "a.test", tls::client_config(&stranger, None, &[b"http/1.1"]), tls::get("a.test", "/x"))
            .await;
    assert!(refused.is_err());
    let mut plain = turnpike_test::RawConn::connect(gw.addr()).await;
    let _ = plain.try_send(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n").await;
    let _ = plain.try_read_response(false).await;

    let admin = gw.handle.admin_addr().unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = turnpike_test::Client::h1().get(&format!("http://{admin}/metrics")).await.text();
        if text.contains("turnpike_tls_handshake_errors_total{listener=\"public\",reason=\"error\"} 2") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(text.contains("turnpike_tls_handshakes_total{listener=\"public\"} 2\n"), "{text}");
    assert!(text.contains("turnpike_tls_handshake_errors_total{listener=\"public\",reason=\"error\"} 2\n"), "{text}");
    assert!(text.contains("turnpike_tls_handshake_errors_total{listener=\"public\",reason=\"timeout\"} 0\n"), "{text}");
    assert!(text.contains("turnpike_downstream_connections_accepted_total{listener=\"public\"} 4\n"), "{text}");
}
