//! Authentication and authorization end to end: API keys (rotation, hashed keys, revocation by reload, opt-in query
//! keys), OAuth2 token introspection against a test endpoint, client certificates on TLS listeners, policy chains
//! (`any`, `all`, anonymous), and authorization (roles, scopes, claim rules, per-method requirements, OPA).
//!
//! The introspection endpoint and the OPA decision server are mock servers on 127.0.0.1:0 whose behaviour the test
//! switches through a shared mode and whose calls it counts.

use crate::support::Dir;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use http::{Method, Request};
use serde_json::{Value, json};
use turnpike_test::client::empty;
use turnpike_test::tls::{self, TestCa, TestCert};
use turnpike_test::{Client, MockReply, MockUpstream, Recorded, Reply, TestGateway};

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const JWT_SECRET: &str = "an-hs256-secret-for-the-auth-tests-0123456789";

/// A plain-HTTP gateway config: `sections` are top-level blocks (auth_policies, consumers), `routes` route items.
fn config(upstream: SocketAddr, sections: &str, routes: &str) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners: [{{ name: public, address: 127.0.0.1:0 }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
{sections}
routes:
{routes}
"#
    )
}

fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Request<turnpike_test::client::Body> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    Client::h1().send(request(Method::GET, &gw.url(path), headers)).await
}

async fn post(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    Client::h1().send(request(Method::POST, &gw.url(path), headers)).await
}

/// A header the echo upstream saw (its first value).
fn seen<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

fn is_problem(reply: &Reply) -> bool {
    reply.header("content-type").is_some_and(|c| c.starts_with("application/problem+json"))
}

/// A 401 problem+json with a `WWW-Authenticate` challenge.
#[track_caller]
fn assert_401(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 401, "{why}: {}", reply.text());
    assert!(is_problem(reply), "{why}: problem+json expected, got {:?}", reply.header("content-type"));
    assert!(reply.header("www-authenticate").is_some_and(|v| !v.is_empty()), "{why}: a 401 carries a challenge");
}

/// A 403 problem+json without a challenge: the caller is known, credentials would not change the answer.
#[track_caller]
fn assert_403(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 403, "{why}: {}", reply.text());
    assert!(is_problem(reply), "{why}: problem+json expected");
    assert!(reply.header("www-authenticate").is_none(), "{why}: a 403 carries no challenge");
}

/// A 503 problem+json: the service that decides is unavailable; never a pass.
#[track_caller]
fn assert_503(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 503, "{why}: {}", reply.text());
    assert!(is_problem(reply), "{why}: problem+json expected");
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An HS256 token signed with [`JWT_SECRET`] (or `secret`), valid for an hour, with `claims` added.
fn jwt_with(secret: &str, claims: Value) -> String {
    let mut payload = json!({ "exp": now() + 3600, "iat": now() });
    for (k, v) in claims.as_object().unwrap() {
        payload[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn jwt(claims: Value) -> String {
    jwt_with(JWT_SECRET, claims)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A form field of an `application/x-www-form-urlencoded` body (the test tokens need no decoding).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

// ---------------------------------------------------------------------------------------------------------------
// API keys

const ACME_OLD: &str = "acme-key-old-0001";
const ACME_NEW: &str = "acme-key-new-0002";
const BETA_KEY: &str = "beta-hashed-key-0003";

fn consumers_yaml() -> String {
    format!(
        r#"
consumers:
  - id: acme
    name: Acme Corp
    plan: gold
    roles: [reader, writer]
    metadata: {{ team: payments }}
    keys: [{{ key: {ACME_OLD} }}, {{ key: {ACME_NEW} }}]
  - id: beta
    plan: free
    roles: [reader]
    keys: [{{ sha256: "{}" }}]
"#,
        sha256_hex(BETA_KEY.as_bytes())
    )
}

fn key_config(upstream: SocketAddr, consumers: &str) -> String {
    let sections = format!(
        "auth_policies:\n  keys: {{ api_key: {{ header: x-api-key }} }}\n  qkeys: {{ api_key: {{ header: x-api-key, query: api_key }} }}\n{consumers}"
    );
    let routes = r#"
  - id: api
    match: { prefix: /api }
    upstream: app
    auth: { policies: [keys] }
  - id: query
    match: { prefix: /q }
    upstream: app
    auth: { policies: [qkeys] }
"#;
    config(upstream, &sections, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_identify_the_consumer_and_are_not_forwarded() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&key_config(upstream.addr(), &consumers_yaml())).await;

    // Both keys of a consumer work at once (rotation).
    for key in [ACME_OLD, ACME_NEW] {
        let reply = get(&gw, "/api/me", &[("x-api-key", key)]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.json();
        assert_eq!(seen(&echo, "x-consumer-id"), Some("acme"));
        assert_eq!(seen(&echo, "x-consumer-plan"), Some("gold"));
        assert_eq!(seen(&echo, "x-user-roles"), Some("reader,writer"));
        assert_eq!(seen(&echo, "x-auth-method"), Some("api_key"));
        assert!(echo["headers"].get("x-api-key").is_none(), "the key is not forwarded: {echo}");
    }

    // A key configured only as its SHA-256 digest.
    let reply = get(&gw, "/api/me", &[("x-api-key", BETA_KEY)]).await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!((seen(&echo, "x-consumer-id"), seen(&echo, "x-consumer-plan")), (Some("beta"), Some("free")));
    assert!(echo["headers"].get("x-api-key").is_none());

    // Unknown, missing, and the digest itself presented as a key.
    assert_401(&get(&gw, "/api/me", &[("x-api-key", "no-such-key-9999")]).await, "unknown key");
    assert_401(&get(&gw, "/api/me", &[]).await, "no key");
    let digest = sha256_hex(BETA_KEY.as_bytes());
    assert_401(&get(&gw, "/api/me", &[("x-api-key", &digest)]).await, "the digest is not the key");
    let refused = get(&gw, "/api/me", &[("x-api-key", "no-such-key-9999")]).await;
    assert!(refused.header("www-authenticate").unwrap().contains("ApiKey"), "{:?}", refused.headers);
    // Identity headers a client sends itself never pass, even with a valid key.
    let spoofed = get(&gw, "/api/me", &[("x-api-key", BETA_KEY), ("x-consumer-id", "acme"), ("x-user-roles", "admin")])
        .await
        .json();
    assert_eq!(seen(&spoofed, "x-consumer-id"), Some("beta"));
    assert_eq!(seen(&spoofed, "x-user-roles"), Some("reader"));
    assert_eq!(upstream.count(), 4, "only authenticated requests reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_by_a_reload_is_refused_from_the_next_request() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&key_config(upstream.addr(), &consumers_yaml())).await;
    assert_eq!(get(&gw, "/api/x", &[("x-api-key", ACME_OLD)]).await.status, 200);

    let rotated = consumers_yaml().replace(&format!("{{ key: {ACME_OLD} }}, "), "");
    assert!(!rotated.contains(ACME_OLD));
    gw.reload(&key_config(upstream.addr(), &rotated)).unwrap();
    assert_401(&get(&gw, "/api/x", &[("x-api-key", ACME_OLD)]).await, "revoked key");
    assert_eq!(get(&gw, "/api/x", &[("x-api-key", ACME_NEW)]).await.status, 200, "the other key still works");
    assert_eq!(get(&gw, "/api/x", &[("x-api-key", BETA_KEY)]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_a_consumer_file_is_refused_after_a_reload() {
    let dir = Dir::new("auth-consumer-file");
    let file = dir.path("consumers.yaml");
    let write = |keys: &[&str]| {
        let keys = keys.iter().map(|k| format!("{{ key: {k} }}")).collect::<Vec<_>>().join(", ");
        std::fs::write(&file, format!("- id: filed\n  plan: pro\n  roles: [reader]\n  keys: [{keys}]\n")).unwrap();
    };
    write(&[ACME_OLD, ACME_NEW]);
    let upstream = MockUpstream::echo().await;
    // An absolute path: relative ones are taken from the config's directory.
    let yaml = key_config(upstream.addr(), &format!("consumer_files: [\"{file}\"]\n"));
    let gw = TestGateway::start(&yaml).await;
    for key in [ACME_OLD, ACME_NEW] {
        let reply = get(&gw, "/api/x", &[("x-api-key", key)]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(seen(&reply.json(), "x-consumer-id"), Some("filed"));
    }

    write(&[ACME_NEW]);
    gw.reload(&yaml).unwrap();
    assert_401(&get(&gw, "/api/x", &[("x-api-key", ACME_OLD)]).await, "key revoked in the file");
    let reply = get(&gw, "/api/x", &[("x-api-key", ACME_NEW)]).await;
    assert_eq!((reply.status.as_u16(), seen(&reply.json(), "x-consumer-plan")), (200, Some("pro")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_keys_are_opt_in_removed_before_forwarding_and_never_logged() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&key_config(upstream.addr(), &consumers_yaml())).await;

    let reply = get(&gw, &format!("/q/items?a=1&api_key={ACME_NEW}&b=two"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(seen(&echo, "x-consumer-id"), Some("acme"));
    let query = echo["query"].as_str().unwrap_or_default();
    assert!(!query.contains("api_key") && !query.contains(ACME_NEW), "the key is removed: {query}");
    assert!(query.contains("a=1") && query.contains("b=two"), "other parameters are kept: {query}");

    // A wrong key in the query is refused, and is not logged either.
    assert_401(&get(&gw, "/q/items?api_key=wrong-query-key-77&c=3", &[]).await, "wrong query key");

    let log = gw.access_log(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let raw = gw.access_log_raw();
    assert!(!raw.contains(ACME_NEW), "the accepted key is in the access log: {raw}");
    assert!(!raw.contains("wrong-query-key-77"), "the refused key is in the access log: {raw}");
    assert!(raw.contains("a=1") || raw.contains("/q/items"), "the request is logged: {raw}");

    // Without the `query` opt-in, a key in the URL is not a credential.
    assert_401(&get(&gw, &format!("/api/items?api_key={ACME_NEW}"), &[]).await, "query key without opt-in");
    assert_eq!(upstream.count(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Introspection

const CLIENT_ID: &str = "turnpike-gw";
const CLIENT_SECRET: &str = "intro-client-secret-42";
/// `Basic base64(turnpike-gw:intro-client-secret-42)`.
const CLIENT_BASIC: &str = "Basic dHVybnBpa2UtZ3c6aW50cm8tY2xpZW50LXNlY3JldC00Mg==";

const NORMAL: u8 = 0;
const FAIL_500: u8 = 1;
const SLOW: u8 = 2;

/// A test RFC 7662 endpoint: checks the client credentials, knows `tok-alice` and `tok-bob` (active) and nothing
/// else (inactive). Its mode switches it to answering 500 or answering after 3 s.
async fn introspection_endpoint(mode: Arc<AtomicU8>) -> MockUpstream {
    MockUpstream::start(move |r: &Recorded| {
        let active = |sub: &str, scope: &str| {
            json!({ "active": true, "sub": sub, "scope": scope, "exp": now() + 3600, "client_id": "app" })
        };
        let answer = || {
            if r.method != Method::POST || r.header("authorization") != Some(CLIENT_BASIC) {
                return MockReply::json(401, json!({ "error": "invalid_client" }));
            }
            match form_field(&r.body, "token").as_deref() {
                Some("tok-alice") => MockReply::json(200, active("alice", "orders:read orders:write")),
                Some("tok-bob") => MockReply::json(200, active("bob", "orders:read")),
                _ => MockReply::json(200, json!({ "active": false })),
            }
        };
        match mode.load(Ordering::SeqCst) {
            FAIL_500 => MockReply::text(500, "idp broken"),
            SLOW => answer().delay(Duration::from_secs(3)),
            _ => answer(),
        }
    })
    .await
}

fn introspection_config(upstream: SocketAddr, endpoint: SocketAddr, secret: &str) -> String {
    let sections = format!(
        r#"auth_policies:
  opaque:
    introspection:
      url: http://{endpoint}/oauth2/introspect
      client_id: {CLIENT_ID}
      client_secret: {secret}
      timeout: 500ms
"#
    );
    let routes = r#"
  - id: orders
    match: { prefix: /orders }
    upstream: app
    auth: { policies: [opaque] }
    authorize: { scopes: [orders:read] }
  - id: admin
    match: { prefix: /admin }
    upstream: app
    auth: { policies: [opaque] }
    authorize: { scopes: [admin] }
"#;
    config(upstream, &sections, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_identifies_active_tokens_refuses_inactive_ones_and_caches() {
    let upstream = MockUpstream::echo().await;
    let idp = introspection_endpoint(Arc::new(AtomicU8::new(NORMAL))).await;
    let gw = TestGateway::start(&introspection_config(upstream.addr(), idp.addr(), CLIENT_SECRET)).await;

    let reply = get(&gw, "/orders/1", &[("authorization", "Bearer tok-alice")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(seen(&echo, "x-user-id"), Some("alice"));
    assert_eq!(seen(&echo, "x-user-scopes"), Some("orders:read orders:write"));
    assert_eq!(seen(&echo, "x-auth-method"), Some("introspection"));
    assert!(echo["headers"].get("authorization").is_none(), "the token is not forwarded");
    let calls = idp.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("authorization"), Some(CLIENT_BASIC), "client_secret_basic");
    assert_eq!(form_field(&calls[0].body, "token").as_deref(), Some("tok-alice"));

    // Cached: the endpoint is not asked again.
    assert_eq!(get(&gw, "/orders/2", &[("authorization", "Bearer tok-alice")]).await.status, 200);
    assert_eq!(idp.count(), 1, "the active token was cached");

    // Scopes from the introspection answer drive authorization.
    assert_403(&get(&gw, "/admin", &[("authorization", "Bearer tok-alice")]).await, "scope admin missing");

    // Inactive.
    assert_401(&get(&gw, "/orders/1", &[("authorization", "Bearer tok-revoked")]).await, "inactive token");
    assert_401(&get(&gw, "/orders/1", &[]).await, "no token");
    let inactive = get(&gw, "/orders/1", &[("authorization", "Bearer tok-revoked")]).await;
    assert!(inactive.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_with_wrong_client_credentials_never_lets_in() {
    let upstream = MockUpstream::echo().await;
    let idp = introspection_endpoint(Arc::new(AtomicU8::new(NORMAL))).await;
    let gw = TestGateway::start(&introspection_config(upstream.addr(), idp.addr(), "not-the-secret")).await;
    let reply = get(&gw, "/orders/1", &[("authorization", "Bearer tok-alice")]).await;
    assert!(matches!(reply.status.as_u16(), 401 | 503), "{}: {}", reply.status, reply.text());
    assert!(is_problem(&reply));
    assert_eq!(idp.count(), 1);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_failures_fail_closed_and_fast() {
    let upstream = MockUpstream::echo().await;
    let mode = Arc::new(AtomicU8::new(FAIL_500));
    let idp = introspection_endpoint(mode.clone()).await;
    let gw = TestGateway::start(&introspection_config(upstream.addr(), idp.addr(), CLIENT_SECRET)).await;
    let bearer = [("authorization", "Bearer tok-bob")];

    // 500 from the endpoint.
    let reply = get(&gw, "/orders/1", &bearer).await;
    assert_503(&reply, "endpoint answered 500");
    assert_eq!(idp.count(), 1);

    // Slower than the 500ms timeout.
    mode.store(SLOW, Ordering::SeqCst);
    let started = Instant::now();
    let reply = get(&gw, "/orders/1", &bearer).await;
    let elapsed = started.elapsed();
    assert_503(&reply, "endpoint too slow");
    assert!(elapsed < Duration::from_millis(1500), "refused after {elapsed:?}, the timeout is 500ms");

    // Back to normal: the failures were not cached.
    mode.store(NORMAL, Ordering::SeqCst);
    let reply = get(&gw, "/orders/1", &bearer).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&reply.json(), "x-user-id"), Some("bob"));

    // Connection refused.
    let down = turnpike_test::refused_addr();
    let gw = TestGateway::start(&introspection_config(upstream.addr(), down, CLIENT_SECRET)).await;
    let started = Instant::now();
    let reply = get(&gw, "/orders/1", &bearer).await;
    assert_503(&reply, "endpoint down");
    assert!(started.elapsed() < Duration::from_millis(1500), "refused after {:?}", started.elapsed());
    assert_eq!(upstream.count(), 1, "only the request made while the endpoint worked got through");
}

// ---------------------------------------------------------------------------------------------------------------
// Client certificates

struct Pki {
    dir: Dir,
    ca: TestCa,
    clients: TestCa,
}

fn pki(name: &str) -> Pki {
    let dir = Dir::new(name);
    let ca = TestCa::new("Turnpike Server CA");
    ca.server(&["gw.test"]).write(&dir.0, "server");
    let clients = TestCa::new("Turnpike Clients CA");
    std::fs::write(dir.0.join("clients.pem"), &clients.cert_pem).unwrap();
    Pki { dir, ca, clients }
}

fn mtls_config(pki: &Pki, upstream: SocketAddr, mode: &str) -> String {
    format!(
        r#"
server: {{ watch: false }}
listeners:
  - name: public
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{ cert: {crt}, key: {key} }}
      client_auth: {{ mode: {mode}, ca: {ca} }}
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
auth_policies:
  certs: {{ mtls: {{ subject: common_name, roles: [service] }} }}
  by_fingerprint: {{ mtls: {{ subject: fingerprint }} }}
  keys: {{ api_key: {{ header: x-api-key }} }}
{consumers}
routes:
  - id: fp
    match: {{ prefix: /fp }}
    upstream: app
    auth: {{ policies: [by_fingerprint] }}
  - id: svc
    match: {{ prefix: /svc }}
    upstream: app
    auth: {{ policies: [certs] }}
  - id: both
    match: {{ prefix: /both }}
    upstream: app
    auth: {{ policies: [certs, keys], require: all }}
"#,
        crt = pki.dir.path("server.crt"),
        key = pki.dir.path("server.key"),
        ca = pki.dir.path("clients.pem"),
        consumers = consumers_yaml(),
    )
}

async fn tls_get(
    gw: &TestGateway,
    pki: &Pki,
    cert: Option<&TestCert>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, turnpike_test::client::BoxError> {
    let mut builder = Request::get(path).header("host", "gw.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let config = tls::client_config(&pki.ca, cert, &[b"http/1.1"]);
    tls::send(gw.addr(), "gw.test", config, builder.body(empty()).unwrap()).await.map(|r| r.reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_become_the_identity() {
    let pki = pki("mtls-require");
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&mtls_config(&pki, upstream.addr(), "require")).await;

    assert!(tls_get(&gw, &pki, None, "/svc", &[]).await.is_err(), "no certificate: handshake refused");
    let foreign = pki.ca.client("svc-a");
    assert!(tls_get(&gw, &pki, Some(&foreign), "/svc", &[]).await.is_err(), "certificate from another CA");
    let expired = pki.clients.expired_client("svc-a");
    assert!(tls_get(&gw, &pki, Some(&expired), "/svc", &[]).await.is_err(), "expired certificate");
    assert_eq!(upstream.count(), 0);

    let cert = pki.clients.client("svc-a");
    let spoof = [
        ("x-client-cert-subject", "CN=admin"),
        ("X_Client_Cert_Fingerprint", "00"),
        ("x-client-cert-san", "DNS:admin"),
        ("x-user-id", "admin"),
    ];
    let reply = tls_get(&gw, &pki, Some(&cert), "/svc/x", &spoof).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(seen(&echo, "x-user-id"), Some("svc-a"), "the common name is the subject");
    assert_eq!(seen(&echo, "x-auth-method"), Some("mtls"));
    assert_eq!(seen(&echo, "x-user-roles"), Some("service"));
    let subject = seen(&echo, "x-client-cert-subject").unwrap();
    assert!(subject.contains("CN=svc-a") && !subject.contains("admin"), "{subject}");
    let san = seen(&echo, "x-client-cert-san").unwrap();
    assert!(san.contains("svc-a") && !san.contains("admin"), "{san}");
    assert_eq!(seen(&echo, "x-client-cert-fingerprint"), Some(sha256_hex(&cert.cert_der()).as_str()));
    for header in ["x-client-cert-subject", "x-client-cert-san", "x-client-cert-fingerprint", "x-user-id"] {
        assert_eq!(echo["headers"][header].as_array().map(Vec::len), Some(1), "{header}: only the gateway's value");
    }
    assert!(echo["headers"].get("x_client_cert_fingerprint").is_none());

    // Another subject source: the certificate's SHA-256 fingerprint names the caller.
    let reply = tls_get(&gw, &pki, Some(&cert), "/fp", &[("x-user-id", "admin")]).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(seen(&reply.json(), "x-user-id"), Some(sha256_hex(&cert.cert_der()).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_client_certificates_and_require_all_with_an_api_key() {
    let pki = pki("mtls-request");
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&mtls_config(&pki, upstream.addr(), "request")).await;
    let cert = pki.clients.client("svc-b");

    // Without a certificate the handshake succeeds and the route refuses: 401 with a challenge.
    let reply = tls_get(&gw, &pki, None, "/svc", &[("x-client-cert-subject", "CN=svc-b")]).await.unwrap();
    assert_401(&reply, "no certificate on an mtls route");
    assert!(reply.header("www-authenticate").unwrap().contains("ClientCertificate"));
    // A certificate that does not verify is still refused (handshake or 401), never let in.
    let foreign = pki.ca.client("svc-b");
    if let Ok(reply) = tls_get(&gw, &pki, Some(&foreign), "/svc", &[]).await {
        assert_401(&reply, "certificate from another CA");
    }
    let expired = pki.clients.expired_client("svc-b");
    if let Ok(reply) = tls_get(&gw, &pki, Some(&expired), "/svc", &[]).await {
        assert_401(&reply, "expired certificate");
    }
    let reply = tls_get(&gw, &pki, Some(&cert), "/svc", &[]).await.unwrap();
    assert_eq!((reply.status.as_u16(), seen(&reply.json(), "x-user-id")), (200, Some("svc-b")));

    // require: all — the certificate and the key are both needed; the identities are merged.
    assert_401(&tls_get(&gw, &pki, Some(&cert), "/both", &[]).await.unwrap(), "certificate without key");
    assert_401(&tls_get(&gw, &pki, None, "/both", &[("x-api-key", ACME_NEW)]).await.unwrap(), "key without cert");
    assert_401(
        &tls_get(&gw, &pki, Some(&cert), "/both", &[("x-api-key", "no-such-key-9999")]).await.unwrap(),
        "certificate with a wrong key",
    );
    let reply = tls_get(&gw, &pki, Some(&cert), "/both", &[("x-api-key", ACME_NEW)]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(seen(&echo, "x-user-id"), Some("svc-b"), "the first policy's subject");
    assert_eq!(seen(&echo, "x-consumer-id"), Some("acme"));
    assert_eq!(seen(&echo, "x-consumer-plan"), Some("gold"));
    let roles = seen(&echo, "x-user-roles").unwrap();
    assert!(roles.contains("service") && roles.contains("writer"), "roles are united: {roles}");
    assert_eq!(seen(&echo, "x-client-cert-fingerprint"), Some(sha256_hex(&cert.cert_der()).as_str()));
    assert!(echo["headers"].get("x-api-key").is_none());
    assert_eq!(upstream.count(), 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Chains

fn chain_config(upstream: SocketAddr) -> String {
    let sections = format!(
        r#"auth_policies:
  tokens: {{ jwt: {{ algorithms: [HS256], secret: "{JWT_SECRET}" }} }}
  keys: {{ api_key: {{ header: x-api-key }} }}
{}"#,
        consumers_yaml()
    );
    let routes = r#"
  - id: any
    match: { prefix: /any }
    upstream: app
    auth: { policies: [tokens, keys] }
  - id: open
    match: { prefix: /open }
    upstream: app
    auth: { policies: [tokens, keys], anonymous: true }
"#;
    config(upstream, &sections, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_chains_take_one_credential_and_refuse_conflicts() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&chain_config(upstream.addr())).await;
    let token = jwt(json!({ "sub": "user-7", "roles": ["reader"] }));
    let bearer = format!("Bearer {token}");

    let reply = get(&gw, "/any", &[("x-api-key", ACME_NEW)]).await;
    assert_eq!((reply.status.as_u16(), seen(&reply.json(), "x-consumer-id")), (200, Some("acme")), "key alone");
    let reply = get(&gw, "/any", &[("authorization", &bearer)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!((seen(&echo, "x-user-id"), seen(&echo, "x-auth-method")), (Some("user-7"), Some("jwt")));
    assert!(echo["headers"].get("authorization").is_none());

    assert_401(&get(&gw, "/any", &[("authorization", &bearer), ("x-api-key", ACME_NEW)]).await, "two credentials");
    assert_401(&get(&gw, "/any", &[("x-api-key", ACME_NEW), ("x-api-key", ACME_OLD)]).await, "key header twice");
    assert_401(&get(&gw, "/any", &[("x-api-key", "")]).await, "empty key");
    let missing = get(&gw, "/any", &[]).await;
    assert_401(&missing, "no credential");
    let challenge = missing.header("www-authenticate").unwrap();
    assert!(challenge.contains("Bearer") && challenge.contains("ApiKey"), "every scheme is offered: {challenge}");
    // A bad token is not passed over to the next method.
    let bad = get(&gw, "/any", &[("authorization", "Bearer not.a.jwt")]).await;
    assert_401(&bad, "garbage token");
    assert!(bad.header("www-authenticate").unwrap().contains("invalid_token"));
    let forged = format!("Bearer {}", jwt_with("another-secret-of-at-least-32-bytes!!", json!({ "sub": "x" })));
    assert_401(&get(&gw, "/any", &[("authorization", &forged)]).await, "token signed with another secret");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_routes_let_credential_less_callers_in_but_verify_presented_credentials() {
    let upstream = MockUpstream::echo().await;
    let gw = TestGateway::start(&chain_config(upstream.addr())).await;

    let reply = get(&gw, "/open", &[("x-user-id", "root"), ("x-consumer-id", "acme")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    for header in ["x-user-id", "x-consumer-id", "x-consumer-plan", "x-user-roles", "x-auth-method"] {
        assert!(echo["headers"].get(header).is_none(), "anonymous caller got {header}: {echo}");
    }
    assert_401(&get(&gw, "/open", &[("x-api-key", "no-such-key-9999")]).await, "bad key on an anonymous route");
    assert_401(&get(&gw, "/open", &[("authorization", "Bearer garbage")]).await, "bad token on an anonymous route");
    assert_401(&get(&gw, "/open", &[("x-api-key", ACME_NEW), ("x-api-key", BETA_KEY)]).await, "malformed");
    let reply = get(&gw, "/open", &[("x-api-key", BETA_KEY)]).await;
    assert_eq!((reply.status.as_u16(), seen(&reply.json(), "x-consumer-id")), (200, Some("beta")));
    assert_eq!(upstream.count(), 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Authorization

fn authz_config(upstream: SocketAddr, opa: SocketAddr, opa_down: SocketAddr) -> String {
    let sections = format!(
        r#"auth_policies:
  tokens: {{ jwt: {{ algorithms: [HS256], secret: "{JWT_SECRET}" }} }}
  keys: {{ api_key: {{ header: x-api-key }} }}
{}
  - id: nobody
    keys: [{{ key: nobody-key-0004 }}]
"#,
        consumers_yaml()
    );
    let routes = format!(
        r#"
  - id: roles
    match: {{ prefix: /roles }}
    upstream: app
    auth: {{ policies: [keys] }}
    authorize:
      roles: [reader]
      methods: {{ POST: {{ roles: [writer] }} }}
  - id: scoped
    match: {{ prefix: /scoped }}
    upstream: app
    auth: {{ policies: [tokens] }}
    authorize: {{ scopes: ["orders:read"] }}
  - id: tenant
    match: {{ prefix: /tenant }}
    upstream: app
    auth: {{ policies: [tokens] }}
    authorize: {{ rules: ["claims.tenant == header.x-tenant", "claims.plan in [gold, silver]"] }}
  - id: maybe
    match: {{ prefix: /maybe }}
    upstream: app
    auth: {{ policies: [keys], anonymous: true }}
    authorize: {{ roles: [reader] }}
  - id: opa
    match: {{ prefix: /opa }}
    upstream: app
    auth: {{ policies: [keys] }}
    authorize:
      opa: {{ url: "http://{opa}/v1/data/turnpike/allow", timeout: 500ms, cache_ttl: 300ms, include_headers: [x-tenant, authorization] }}
  - id: opa-down
    match: {{ prefix: /opadown }}
    upstream: app
    auth: {{ policies: [keys] }}
    authorize:
      opa: {{ url: "http://{opa_down}/v1/data/turnpike/allow", timeout: 500ms }}
"#
    );
    config(upstream, &sections, &routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opa_include_headers_never_takes_credential_headers() {
    // `authorization` in include_headers is a config error: credentials are never sent to OPA.
    let source = turnpike_gateway::ConfigSource::text(
        "test.yaml",
        authz_config(turnpike_test::refused_addr(), turnpike_test::refused_addr(), turnpike_test::refused_addr()),
    );
    let err = turnpike_gateway::config::load_and_compile(&source, &turnpike_gateway::state::State::default(), 1)
        .expect_err("authorization is refused in include_headers");
    assert!(err.to_string().contains("include_headers"), "{err}");
}

fn authz_config_ok(upstream: SocketAddr, opa: SocketAddr, opa_down: SocketAddr) -> String {
    authz_config(upstream, opa, opa_down)
        .replace("include_headers: [x-tenant, authorization]", "include_headers: [x-tenant]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scopes_rules_and_methods_answer_403_to_known_callers_and_401_to_anonymous_ones() {
    let upstream = MockUpstream::echo().await;
    let down = turnpike_test::refused_addr();
    let gw = TestGateway::start(&authz_config_ok(upstream.addr(), down, down)).await;

    // Roles, per method.
    assert_eq!(get(&gw, "/roles", &[("x-api-key", BETA_KEY)]).await.status, 200, "reader may GET");
    assert_403(&post(&gw, "/roles", &[("x-api-key", BETA_KEY)]).await, "reader may not POST");
    assert_eq!(post(&gw, "/roles", &[("x-api-key", ACME_NEW)]).await.status, 200, "writer may POST");
    assert_403(&get(&gw, "/roles", &[("x-api-key", "nobody-key-0004")]).await, "no role");
    assert_401(&get(&gw, "/roles", &[]).await, "no credential");

    // Scopes: the space-separated `scope` claim or the `scp` array.
    let bearer = |claims: Value| format!("Bearer {}", jwt(claims));
    let ok = bearer(json!({ "sub": "u1", "scope": "profile orders:read" }));
    assert_eq!(get(&gw, "/scoped", &[("authorization", &ok)]).await.status, 200);
    let scp = bearer(json!({ "sub": "u1", "scp": ["orders:read"] }));
    assert_eq!(get(&gw, "/scoped", &[("authorization", &scp)]).await.status, 200);
    let lacking = bearer(json!({ "sub": "u1", "scope": "profile orders:write" }));
    assert_403(&get(&gw, "/scoped", &[("authorization", &lacking)]).await, "scope missing");

    // Claim rules against request headers.
    let t1 = bearer(json!({ "sub": "u2", "tenant": "t1", "plan": "gold" }));
    assert_eq!(get(&gw, "/tenant", &[("authorization", &t1), ("x-tenant", "t1")]).await.status, 200);
    assert_403(&get(&gw, "/tenant", &[("authorization", &t1), ("x-tenant", "t2")]).await, "other tenant");
    assert_403(&get(&gw, "/tenant", &[("authorization", &t1)]).await, "no tenant header");
    let bronze = bearer(json!({ "sub": "u2", "tenant": "t1", "plan": "bronze" }));
    assert_403(&get(&gw, "/tenant", &[("authorization", &bronze), ("x-tenant", "t1")]).await, "plan not listed");
    let no_tenant = bearer(json!({ "sub": "u2", "plan": "gold" }));
    assert_403(&get(&gw, "/tenant", &[("authorization", &no_tenant), ("x-tenant", "t1")]).await, "no claim");

    // An anonymous caller on an anonymous route with requirements: 401, credentials could change the answer.
    let anon = get(&gw, "/maybe", &[]).await;
    assert_401(&anon, "anonymous caller, roles required");
    assert!(anon.header("www-authenticate").unwrap().contains("ApiKey"));
    assert_eq!(get(&gw, "/maybe", &[("x-api-key", BETA_KEY)]).await.status, 200);
    assert_403(&get(&gw, "/maybe", &[("x-api-key", "nobody-key-0004")]).await, "known caller without the role");
    assert_eq!(upstream.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opa_decides_is_cached_and_fails_closed() {
    let upstream = MockUpstream::echo().await;
    let mode = Arc::new(AtomicU8::new(NORMAL));
    let opa_mode = mode.clone();
    let opa = MockUpstream::start(move |r: &Recorded| {
        if opa_mode.load(Ordering::SeqCst) == FAIL_500 {
            return MockReply::text(500, "opa broken");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            return MockReply::json(400, json!({ "code": "invalid_parameter" }));
        };
        let input = &body["input"];
        let writer = input["identity"]["roles"].as_array().is_some_and(|roles| roles.contains(&json!("writer")));
        let allow = writer && input["headers"]["x-tenant"] == "t1";
        MockReply::json(200, json!({ "result": { "allow": allow } }))
    })
    .await;
    let gw = TestGateway::start(&authz_config_ok(upstream.addr(), opa.addr(), turnpike_test::refused_addr())).await;
    let acme = [("x-api-key", ACME_NEW), ("x-tenant", "t1")];

    let reply = get(&gw, "/opa/x?page=2", &acme).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let asked = opa.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].uri.path(), "/v1/data/turnpike/allow");
    let input: Value = serde_json::from_slice(&asked[0].body).unwrap();
    let input = &input["input"];
    assert_eq!(input["method"], "GET");
    assert_eq!(input["path"], "/opa/x");
    assert_eq!(input["query"]["page"], json!(["2"]));
    assert_eq!(input["route"], "opa");
    assert_eq!(input["identity"]["consumer"], "acme");
    assert_eq!(input["identity"]["plan"], "gold");
    assert_eq!(input["headers"], json!({ "x-tenant": "t1" }), "only the included headers");
    assert!(!String::from_utf8_lossy(&asked[0].body).contains(ACME_NEW), "the key is never sent to OPA");

    // The same input again: the cached decision.
    assert_eq!(get(&gw, "/opa/x?page=2", &acme).await.status, 200);
    assert_eq!(opa.count(), 1, "decision cached");

    // Deny: 403, cached too.
    let beta = [("x-api-key", BETA_KEY), ("x-tenant", "t1")];
    assert_403(&get(&gw, "/opa/x", &beta).await, "OPA denies");
    assert_403(&get(&gw, "/opa/x", &beta).await, "OPA denies (cached)");
    assert_eq!(opa.count(), 2);
    assert_403(&get(&gw, "/opa/x", &[("x-api-key", ACME_NEW), ("x-tenant", "t2")]).await, "other tenant");
    assert_eq!(opa.count(), 3);

    // After cache_ttl (300ms) the decision is asked again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while opa.count() == 3 && Instant::now() < deadline {
        assert_eq!(get(&gw, "/opa/x?page=2", &acme).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(opa.count(), 4, "the cached decision expired");

    // OPA failing: 503, never a pass (a new input, so nothing is cached for it).
    mode.store(FAIL_500, Ordering::SeqCst);
    assert_503(&get(&gw, "/opa/y", &acme).await, "OPA answers 500");
    // OPA unreachable.
    let started = Instant::now();
    assert_503(&get(&gw, "/opadown/x", &acme).await, "OPA down");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // No OPA call for a caller that did not authenticate.
    let before = opa.count();
    assert_401(&get(&gw, "/opa/x", &[]).await, "no credential");
    assert_eq!(opa.count(), before);
}
