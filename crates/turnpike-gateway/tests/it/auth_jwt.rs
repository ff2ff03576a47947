//! JWT authentication end to end: real HTTPS through a TLS listener (an rcgen certificate), a JWKS / OIDC server
//! started by the test whose behaviour it switches (normal, 500, slow, garbage, down) and whose fetches it counts,
//! and an echo upstream that shows what the gateway forwarded.
//!
//! Listener choice for the 100 KB token: the `public` (TLS) listener raises `max_header_size` to 256KiB so such a
//! token reaches the JWT policy, which refuses it (401) before parsing it; the `plain` listener keeps the 32KiB
//! default, where the same request is refused earlier with 431.

use crate::support::Dir;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use turnpike_test::client::empty;
use turnpike_test::tls::{self, TestCa};
use turnpike_test::{Client, MockUpstream, Reply, TestGateway};

const RSA1_KEY: &str = include_str!("../../../turnpike-policy/src/auth/jwt/testdata/rsa1.key.pem");
const RSA1_PUB: &str = include_str!("../../../turnpike-policy/src/auth/jwt/testdata/rsa1.pub.pem");
const RSA2_KEY: &str = include_str!("../../../turnpike-policy/src/auth/jwt/testdata/rsa2.key.pem");
const ISS: &str = "https://idp.test";
const AUD: &str = "orders-api";
const HOST: &str = "api.test";

/// Words a refusal must never contain: the client learns nothing about why its token was refused.
const TELLTALE: [&str; 9] = ["signature", "kid", "expired", "alg", "issuer", "audience", "crit", "nbf", "jwks"];

// ------------------------------------------------------------------------------------------------------------
// tokens

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "iss": ISS, "aud": AUD, "exp": now() + 300, "iat": now(),
        "roles": ["admin", "ops"], "email": format!("{sub}@example.com"), "jti": nonce(),
    })
}

/// A fresh value, so two tokens built from the same claims differ (the verified-token cache never answers).
fn nonce() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A signing key and its public forms.
struct TestKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk_fields: Value,
}

impl TestKey {
    fn rsa(private_pem: &str) -> Self {
        let der = match PrivateKeyDer::from_pem_slice(private_pem.as_bytes()).unwrap() {
            PrivateKeyDer::Pkcs8(der) => der,
            _ => panic!("the test RSA keys are PKCS#8"),
        };
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        TestKey {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            jwk_fields: json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)}),
        }
    }

    fn es256() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        let half = (raw.len() - 1) / 2;
        TestKey {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk_fields: json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..])}),
        }
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signs any JOSE header (one `jsonwebtoken::Header` cannot express, like `crit`).
    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
    }

    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk_fields.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }
}

fn jwks(keys: &[(&TestKey, &str)]) -> Value {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()})
}

fn raw_token(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string()), b64(claims.to_string()), b64(signature))
}

// ------------------------------------------------------------------------------------------------------------
// a controllable JWKS / OIDC server

/// How the identity provider answers `/jwks.json`.
#[derive(Debug, Clone)]
enum Mode {
    Normal,
    Status(u16),
    Slow(Duration),
    Garbage,
}

struct IdpShared {
    mode: Mutex<Mode>,
    jwks: Mutex<Value>,
    issuer: Mutex<String>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    connections: Mutex<Vec<AbortHandle>>,
}

/// A JWKS / OIDC discovery server on 127.0.0.1:0: `/.well-known/openid-configuration` and `/jwks.json`.
struct Idp {
    addr: SocketAddr,
    shared: Arc<IdpShared>,
    server: JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
        for conn in self.shared.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl Idp {
    async fn start(doc: Value) -> Idp {
        Self::start_with(doc, None).await
    }

    /// The same over HTTPS with `tls`.
    async fn start_tls(doc: Value, tls: Arc<rustls::ServerConfig>) -> Idp {
        Self::start_with(doc, Some(tls)).await
    }

    async fn start_with(doc: Value, tls: Option<Arc<rustls::ServerConfig>>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(IdpShared {
            mode: Mutex::new(Mode::Normal),
            jwks: Mutex::new(doc),
            issuer: Mutex::new(format!("http://{addr}")),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (shared, tls) = (serving.clone(), tls.clone());
                let conn = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, addr, req.uri().path()).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else { return };
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
                serving.connections.lock().unwrap().push(conn.abort_handle());
            }
        });
        Idp { addr, shared, server }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    fn set_jwks(&self, doc: Value) {
        *self.shared.jwks.lock().unwrap() = doc;
    }

    fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    /// Stops listening and cuts every open connection: from now on connections are refused.
    async fn down(&self) {
        self.server.abort();
        for conn in self.shared.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.server.is_finished() && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert!(self.server.is_finished());
    }
}

async fn answer(shared: &IdpShared, addr: SocketAddr, path: &str) -> http::Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match path {
        "/.well-known/openid-configuration" => {
            shared.discovery_hits.fetch_add(1, Ordering::SeqCst);
            let issuer = shared.issuer.lock().unwrap().clone();
            reply(200, json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/jwks.json")}).to_string())
        }
        "/jwks.json" => {
            shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let mode = shared.mode.lock().unwrap().clone();
            let doc = shared.jwks.lock().unwrap().to_string();
            match mode {
                Mode::Normal => reply(200, doc),
                Mode::Status(status) => reply(status, "{\"error\": \"boom\"}".into()),
                Mode::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    reply(200, doc)
                }
                Mode::Garbage => reply(200, "<html>definitely not a key set".into()),
            }
        }
        _ => reply(404, "{}".into()),
    }
}

// ------------------------------------------------------------------------------------------------------------
// the gateway

/// A gateway with a TLS listener `public` (max_header_size 256KiB) and a plain listener `plain` (defaults), an
/// echo upstream, the auth policies `policies` (a JSON object of id to policy) and these routes:
/// `/api` (policy `main`), `/anon` (`main`, anonymous), `/open` (no auth), plus `extra_routes`.
struct Env {
    gw: TestGateway,
    upstream: MockUpstream,
    ca: TestCa,
    yaml: String,
    _dir: Dir,
}

impl Env {
    async fn start(name: &str, policies: Value, server_extra: &str, extra_routes: &str) -> Env {
        let dir = Dir::new(name);
        let ca = TestCa::new("Turnpike JWT Test CA");
        let (cert, key) = ca.server(&[HOST]).write(&dir.0, "api");
        let upstream = MockUpstream::echo().await;
        let yaml = format!(
            r#"
server:
  watch: false
{server_extra}
listeners:
  - name: public
    address: 127.0.0.1:0
    max_header_size: 256KiB
    tls:
      certificates:
        - {{ cert: "{cert}", key: "{key}" }}
  - name: plain
    address: 127.0.0.1:0
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
auth_policies: {policies}
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: app
    auth: {{ policies: [main] }}
  - id: anon
    match: {{ prefix: /anon }}
    upstream: app
    auth: {{ policies: [main], anonymous: true }}
  - id: open
    match: {{ prefix: /open }}
    upstream: app
{extra_routes}
"#,
            cert = cert.display(),
            key = key.display(),
            upstream = upstream.addr(),
        );
        let gw = TestGateway::start(&yaml).await;
        Env { gw, upstream, ca, yaml, _dir: dir }
    }

    /// `GET path` over HTTPS (HTTP/1.1 or HTTP/2 by ALPN) with `headers`.
    async fn https(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.https_alpn(path, headers, &[b"h2", b"http/1.1"]).await
    }

    async fn https_alpn(&self, path: &str, headers: &[(&str, &str)], alpn: &[&[u8]]) -> Reply {
        let mut req = Request::get(path).header("host", HOST);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let config = tls::client_config(&self.ca, None, alpn);
        tls::send(self.gw.addr_of("public"), HOST, config, req.body(empty()).unwrap()).await.unwrap().reply
    }

    /// `GET path` over plain HTTP/1.1 with `headers`.
    async fn plain(&self, client: &Client, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(format!("http://{}{path}", self.gw.addr_of("plain")));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        client.send(req.body(empty()).unwrap()).await
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A refusal as the client must see it: 401, problem+json, a Bearer challenge, and no hint of the reason.
#[track_caller]
fn assert_refused(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{case}");
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
    let body = reply.text().to_ascii_lowercase();
    for word in TELLTALE {
        assert!(!body.contains(word), "{case}: the refusal says `{word}`: {body}");
        assert!(!challenge.to_ascii_lowercase().contains(word), "{case}: the challenge says `{word}`: {challenge}");
    }
    assert_eq!(reply.json()["type"], "https://turnpike.dev/problems/unauthenticated", "{case}");
}

#[track_caller]
fn assert_unavailable(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 503, "{case}: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{case}");
    assert_eq!(reply.json()["type"], "https://turnpike.dev/problems/auth-unavailable", "{case}");
}

/// The upstream's view of one header (every value), from the echo body.
fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

/// Sends requests until one answers `status`, within `limit`; returns the last reply.
async fn until_status<F, Fut>(limit: Duration, status: u16, mut send: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + limit;
    loop {
        let reply = send().await;
        if reply.status == status || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jwks_policy(url: &str, jwks: Value) -> Value {
    let mut policy = json!({
        "algorithms": ["RS256", "ES256"],
        "jwks_url": url,
        "issuer": ISS,
        "audiences": [AUD],
        "claims": {"headers": {"email": "x-user-email"}},
    });
    policy["jwks"] = jwks;
    policy
}

fn static_policy() -> Value {
    json!({
        "algorithms": ["RS256"],
        "keys": [{"kid": "r1", "pem": RSA1_PUB}],
        "issuer": ISS,
        "audiences": [AUD],
        "claims": {"headers": {"email": "x-user-email"}},
    })
}

// ------------------------------------------------------------------------------------------------------------
// 1. the token matrix

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_matrix_over_https_with_a_jwks_server() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let r2 = TestKey::rsa(RSA2_KEY);
    let e1 = TestKey::es256();
    let idp = Idp::start(jwks(&[(&r1, "r1"), (&e1, "e1")])).await;
    let policy = jwks_policy(&idp.jwks_url(), json!({"timeout": "1s", "min_refresh_interval": "200ms"}));
    let env = Env::start("matrix", json!({"main": {"jwt": policy}}), "", "").await;

    // Valid RS256 (over HTTP/2) and ES256 (over HTTP/1.1): 200, and the upstream sees the verified identity.
    let rs = env.https("/api/me", &[("authorization", &bearer(&r1.sign(Some("r1"), &claims("u-1"))))]).await;
    assert_eq!(rs.status, 200, "{}", rs.text());
    let echo = rs.json();
    assert_eq!(echo["version"], "HTTP/1.1", "the gateway speaks HTTP/1.1 to the echo upstream");
    assert_eq!(seen(&echo, "x-user-id"), ["u-1"]);
    assert_eq!(seen(&echo, "x-user-roles"), ["admin,ops"]);
    assert_eq!(seen(&echo, "x-user-email"), ["u-1@example.com"]);
    assert_eq!(seen(&echo, "x-auth-method"), ["jwt"]);
    assert!(seen(&echo, "authorization").is_empty(), "the token is not forwarded: {echo}");
    let es = env
        .https_alpn("/api/me", &[("authorization", &bearer(&e1.sign(Some("e1"), &claims("u-2"))))], &[b"http/1.1"])
        .await;
    assert_eq!(es.status, 200, "{}", es.text());
    assert_eq!(seen(&es.json(), "x-user-id"), ["u-2"]);

    let mut expired = claims("u-1");
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims("u-1");
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_iss = claims("u-1");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = claims("u-1");
    wrong_aud["aud"] = json!("another-api");
    let confusion = jsonwebtoken::encode(
        &Header { kid: Some("r1".into()), ..Header::new(Algorithm::HS256) },
        &claims("u-1"),
        &EncodingKey::from_secret(RSA1_PUB.as_bytes()),
    )
    .unwrap();
    let crit = r1.sign_raw(&json!({"alg": "RS256", "kid": "r1", "crit": ["exp"], "exp": 1}), &claims("u-1"));
    let refused: Vec<(&str, String)> = vec![
        ("expired", r1.sign(Some("r1"), &expired)),
        ("not yet valid", r1.sign(Some("r1"), &not_yet)),
        ("wrong issuer", r1.sign(Some("r1"), &wrong_iss)),
        ("wrong audience", r1.sign(Some("r1"), &wrong_aud)),
        ("wrong signature", r2.sign(Some("r1"), &claims("u-1"))),
        ("ES256 token under the RSA kid", e1.sign(Some("r1"), &claims("u-1"))),
        ("alg none", raw_token(json!({"alg": "none", "typ": "JWT"}), &claims("u-1"), b"")),
        ("alg none with kid", raw_token(json!({"alg": "none", "kid": "r1"}), &claims("u-1"), b"")),
        ("HS256 signed with the RSA public key", confusion),
        ("crit header", crit),
        ("garbage", "not-a-jwt".into()),
        ("three garbage parts", "a.b.c".into()),
        ("truncated", r1.sign(Some("r1"), &claims("u-1")).rsplit_once('.').unwrap().0.to_string()),
    ];
    for (case, token) in &refused {
        let reply = env.https("/api/me", &[("authorization", &bearer(token))]).await;
        assert_refused(&reply, case);
        assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"), "{case}");
    }
    // No token at all: a 401 with the plain challenge.
    let missing = env.https("/api/me", &[]).await;
    assert_refused(&missing, "no token");

    // A 100 KB token: refused quickly by the policy (max_token_size) on the listener that lets such a head in...
    let huge = "a".repeat(100 * 1024);
    let started = Instant::now();
    let reply = env.https("/api/me", &[("authorization", &bearer(&huge))]).await;
    assert_refused(&reply, "100 KB token");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let started = Instant::now();
    let reply = env.https_alpn("/api/me", &[("authorization", &bearer(&huge))], &[b"http/1.1"]).await;
    assert_refused(&reply, "100 KB token over HTTP/1.1");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // ...and with 431 by the listener's default head limit (32KiB) before any auth on the other.
    let plain = env.plain(&Client::h1(), "/api/me", &[("authorization", &bearer(&huge))]).await;
    assert_eq!(plain.status, 431, "{}", plain.text());

    assert_eq!(env.upstream.count(), 2, "only the two valid tokens reached the upstream");

    // Key rotation: a token naming a kid the JWKS does not have is refused...
    let rotated = r2.sign(Some("r2"), &claims("u-3"));
    let reply = env.https("/api/me", &[("authorization", &bearer(&rotated))]).await;
    assert_refused(&reply, "unknown kid");
    // ...until the identity provider publishes the key: then a refresh brings it in and the token passes.
    idp.set_jwks(jwks(&[(&r1, "r1"), (&e1, "e1"), (&r2, "r2")]));
    let (env_ref, auth) = (&env, bearer(&rotated));
    let auth = auth.as_str();
    let reply = until_status(Duration::from_secs(10), 200, || async move {
        env_ref.https("/api/me", &[("authorization", auth)]).await
    })
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&reply.json(), "x-user-id"), ["u-3"]);
    // The old keys still work.
    let reply = env.https("/api/me", &[("authorization", &bearer(&r1.sign(Some("r1"), &claims("u-1"))))]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_eddsa_keys_and_algorithm_allow_list() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed = TestKey {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk_fields: json!({}),
    };
    let policy = json!({"algorithms": ["EdDSA"], "keys": [{"pem": pair.public_key_pem()}], "issuer": ISS});
    let env = Env::start("eddsa", json!({"main": {"jwt": policy}}), "", "").await;
    let ok = env.https("/api/x", &[("authorization", &bearer(&ed.sign(None, &claims("ed-user"))))]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(seen(&ok.json(), "x-user-id"), ["ed-user"]);
    // An RS256 token is refused: the algorithm is not on the allow-list.
    let rs = TestKey::rsa(RSA1_KEY).sign(None, &claims("ed-user"));
    assert_refused(&env.https("/api/x", &[("authorization", &bearer(&rs))]).await, "RS256 on an EdDSA policy");
    // A token without exp is refused (require_exp defaults to true).
    let mut no_exp = claims("ed-user");
    no_exp.as_object_mut().unwrap().remove("exp");
    let reply = env.https("/api/x", &[("authorization", &bearer(&ed.sign(None, &no_exp)))]).await;
    assert_refused(&reply, "no exp");
}

// ------------------------------------------------------------------------------------------------------------
// 2. the key source failing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_keys_survive_a_failing_jwks_server_and_no_request_waits_past_the_timeout() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let idp = Idp::start(jwks(&[(&r1, "r1")])).await;
    let timeout = Duration::from_millis(500);
    let bound = timeout + Duration::from_secs(1);
    // A short background refresh interval, so background fetches also run into every failure mode.
    let policy = jwks_policy(
        &idp.jwks_url(),
        json!({"timeout": "500ms", "min_refresh_interval": "100ms", "refresh_interval": "300ms"}),
    );
    let env = Env::start("failing", json!({"main": {"jwt": policy}}), "", "").await;
    let client = Client::h1();
    let valid = || bearer(&r1.sign(Some("r1"), &claims("u-1")));
    assert_eq!(env.plain(&client, "/api/x", &[("authorization", &valid())]).await.status, 200);

    let modes = [
        ("500", Mode::Status(500)),
        ("garbage", Mode::Garbage),
        ("slow", Mode::Slow(timeout * 6)),
        ("down", Mode::Normal), // the server is stopped below
    ];
    for (case, mode) in modes {
        if case == "down" {
            idp.down().await;
        } else {
            idp.set_mode(mode);
        }
        // Let at least one background refresh hit the failing source (not for `down`: nothing is counted).
        let before = idp.jwks_hits();
        if case != "down" {
            assert!(turnpike_test::eventually(Duration::from_secs(5), || idp.jwks_hits() > before).await, "{case}");
        }
        // Known keys keep working (fresh tokens: the verified-token cache is not what answers).
        for _ in 0..3 {
            let started = Instant::now();
            let reply = env.plain(&client, "/api/x", &[("authorization", &valid())]).await;
            assert_eq!(reply.status, 200, "{case}: {}", reply.text());
            assert!(started.elapsed() < bound, "{case}: a valid token waited {:?}", started.elapsed());
        }
        // A token naming an unknown kid makes the gateway ask the failing source: refused, within the timeout.
        let unknown = r1.sign(Some(&format!("unknown-{}", nonce())), &claims("u-1"));
        let started = Instant::now();
        let reply = env.plain(&client, "/api/x", &[("authorization", &bearer(&unknown))]).await;
        assert_refused(&reply, case);
        assert!(started.elapsed() < bound, "{case}: an unknown kid waited {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_jwks_never_answered_refuses_with_503() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let bound = Duration::from_millis(500) + Duration::from_secs(1);
    let down = format!("http://{}/jwks.json", turnpike_test::refused_addr());
    let failing = Idp::start(jwks(&[(&r1, "r1")])).await;
    failing.set_mode(Mode::Status(500));
    let garbage = Idp::start(jwks(&[(&r1, "r1")])).await;
    garbage.set_mode(Mode::Garbage);
    let slow = Idp::start(jwks(&[(&r1, "r1")])).await;
    slow.set_mode(Mode::Slow(Duration::from_secs(5)));
    for (case, url) in
        [("down", down), ("500", failing.jwks_url()), ("garbage", garbage.jwks_url()), ("slow", slow.jwks_url())]
    {
        let policy = jwks_policy(&url, json!({"timeout": "500ms", "min_refresh_interval": "100ms"}));
        let env = Env::start(&format!("503-{case}"), json!({"main": {"jwt": policy}}), "", "").await;
        for _ in 0..3 {
            let started = Instant::now();
            let reply = env.https("/api/x", &[("authorization", &bearer(&r1.sign(Some("r1"), &claims("u-1"))))]).await;
            assert_unavailable(&reply, case);
            assert!(reply.header("retry-after").is_some(), "{case}");
            assert!(started.elapsed() < bound, "{case}: waited {:?}", started.elapsed());
        }
        assert_eq!(env.upstream.count(), 0, "{case}: nothing passed");
    }

    // When the identity provider comes back, the gateway recovers by itself (no reload, no restart).
    let policy = jwks_policy(&failing.jwks_url(), json!({"timeout": "500ms", "min_refresh_interval": "100ms"}));
    let env = Env::start("503-recovers", json!({"main": {"jwt": policy}}), "", "").await;
    let token = bearer(&r1.sign(Some("r1"), &claims("u-1")));
    assert_unavailable(&env.https("/api/x", &[("authorization", &token)]).await, "still failing");
    failing.set_mode(Mode::Normal);
    let (env_ref, auth) = (&env, token.as_str());
    let reply = until_status(Duration::from_secs(10), 200, || async move {
        env_ref.https("/api/x", &[("authorization", auth)]).await
    })
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

// ------------------------------------------------------------------------------------------------------------
// 3. a storm of unknown kids

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_unknown_kids_costs_a_handful_of_fetches() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let idp = Idp::start(jwks(&[(&r1, "r1")])).await;
    // The default min_refresh_interval (30s): at most one fetch for unknown kids per 30s.
    let policy = jwks_policy(&idp.jwks_url(), json!({"timeout": "1s"}));
    let env = Arc::new(Env::start("storm", json!({"main": {"jwt": policy}}), "", "").await);
    let client = Client::h1();
    assert_eq!(
        env.plain(&client, "/api/x", &[("authorization", &bearer(&r1.sign(Some("r1"), &claims("u"))))]).await.status,
        200
    );
    let after_first = idp.jwks_hits();
    assert_eq!(after_first, 1);

    let storm = async {
        let mut statuses = Vec::new();
        for batch in 0..20 {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..50 {
                let (env, client) = (env.clone(), client.clone());
                let token = raw_token(
                    json!({"alg": "ES256", "kid": format!("random-{batch}-{i}-{}", nonce())}),
                    &claims("u"),
                    b"not-a-signature",
                );
                tasks.spawn(async move { env.plain(&client, "/api/x", &[("authorization", &bearer(&token))]).await });
            }
            while let Some(reply) = tasks.join_next().await {
                statuses.push(reply.unwrap());
            }
        }
        statuses
    };
    let replies = tokio::time::timeout(Duration::from_secs(120), storm).await.expect("the storm took too long");
    assert_eq!(replies.len(), 1000);
    for reply in &replies {
        assert_refused(reply, "random kid");
    }
    let fetches = idp.jwks_hits() - after_first;
    assert!(fetches <= 5, "1000 unknown kids caused {fetches} JWKS fetches");
    assert_eq!(env.upstream.count(), 1);
}

// ------------------------------------------------------------------------------------------------------------
// 4. OIDC discovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_over_loopback_http() {
    let e1 = TestKey::es256();
    let idp = Idp::start(jwks(&[(&e1, "e1")])).await;
    let issuer = idp.base();
    let policy = json!({"algorithms": ["ES256"], "discovery": issuer, "issuer": issuer, "audiences": [AUD]});
    let env = Env::start("discovery", json!({"main": {"jwt": policy}}), "", "").await;
    let mut c = claims("oidc-user");
    c["iss"] = json!(issuer);
    let reply = env.https("/api/x", &[("authorization", &bearer(&e1.sign(Some("e1"), &c)))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&reply.json(), "x-user-id"), ["oidc-user"]);
    assert!(idp.discovery_hits() >= 1 && idp.jwks_hits() >= 1);
    // A token from another issuer is refused.
    let reply = env.https("/api/x", &[("authorization", &bearer(&e1.sign(Some("e1"), &claims("x"))))]).await;
    assert_refused(&reply, "issuer differs from the discovered one");

    // A discovery document naming another issuer than the configured one is not trusted: no keys, 503.
    let policy = json!({"algorithms": ["ES256"], "discovery": issuer, "issuer": "https://other.test",
        "jwks": {"timeout": "500ms"}});
    let env = Env::start("discovery-mismatch", json!({"main": {"jwt": policy}}), "", "").await;
    let mut c = claims("oidc-user");
    c["iss"] = json!("https://other.test");
    let reply = env.https("/api/x", &[("authorization", &bearer(&e1.sign(Some("e1"), &c)))]).await;
    assert_unavailable(&reply, "issuer mismatch in discovery");
}

// ------------------------------------------------------------------------------------------------------------
// 5. spoofed identity headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_never_taken_from_the_client() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let env = Env::start("spoof", json!({"main": {"jwt": static_policy()}}), "", "").await;
    let token = bearer(&r1.sign(Some("r1"), &claims("u-1")));
    let spoofed: [(&str, &str); 6] = [
        ("X-User-Id", "admin"),
        ("x_user_id", "admin"),
        ("X-USER-ID", "root"),
        ("x-user-roles", "superuser"),
        ("X-User-Email", "admin@example.com"),
        ("x-auth-method", "mtls"),
    ];
    let names = ["x-user-id", "x_user_id", "x-user-roles", "x-user-email", "x-auth-method"];
    for alpn in [&[&b"h2"[..]][..], &[&b"http/1.1"[..]][..]] {
        let mut headers = spoofed.to_vec();
        headers.push(("authorization", &token));
        let reply = env.https_alpn("/api/x", &headers, alpn).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.json();
        assert_eq!(seen(&echo, "x-user-id"), ["u-1"], "{echo}");
        assert!(seen(&echo, "x_user_id").is_empty(), "{echo}");
        assert_eq!(seen(&echo, "x-user-roles"), ["admin,ops"]);
        assert_eq!(seen(&echo, "x-user-email"), ["u-1@example.com"]);
        assert_eq!(seen(&echo, "x-auth-method"), ["jwt"]);

        // Without a token on an anonymous route, and on a route without auth: none of them.
        for path in ["/anon/x", "/open/x"] {
            let reply = env.https_alpn(path, &spoofed, alpn).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            let echo = reply.json();
            for name in names {
                assert!(seen(&echo, name).is_empty(), "{path}: {name} reached the upstream: {echo}");
            }
        }
    }
    // The exact spellings on the wire (HTTP/1.1 clients keep the case they were given): still only the verified
    // value, once.
    let mut conn = turnpike_test::RawConn::connect(env.gw.addr_of("plain")).await;
    conn.send(format!(
        "GET /api/x HTTP/1.1\r\nHost: {HOST}\r\nX-USER-ID: root\r\nX_User_Id: admin\r\nx-user-id: admin\r\n\
         X-User-Email: admin@example.com\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    let raw = conn.read_response().await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    let echo = raw.json();
    assert_eq!(seen(&echo, "x-user-id"), ["u-1"], "{echo}");
    assert!(seen(&echo, "x_user_id").is_empty(), "{echo}");
    assert_eq!(seen(&echo, "x-user-email"), ["u-1@example.com"], "{echo}");

    // A bad token on the anonymous route is refused, never passed as anonymous.
    let bad = bearer(&TestKey::rsa(RSA2_KEY).sign(Some("r1"), &claims("u-1")));
    assert_refused(&env.https("/anon/x", &[("authorization", &bad)]).await, "bad token on an anonymous route");
}

// ------------------------------------------------------------------------------------------------------------
// 6. the token is not forwarded

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_removed_before_forwarding_unless_configured() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let mut forward = static_policy();
    forward["forward_token"] = json!(true);
    let mut query = static_policy();
    query["from"] = json!([{"query": "access_token"}]);
    let policies = json!({"main": {"jwt": static_policy()}, "fwd": {"jwt": forward}, "q": {"jwt": query}});
    let routes = r#"
  - id: fwd
    match: { prefix: /fwd }
    upstream: app
    auth: { policies: [fwd] }
  - id: q
    match: { prefix: /q }
    upstream: app
    auth: { policies: [q] }
"#;
    let env = Env::start("strip", policies, "", routes).await;

    let token = r1.sign(Some("r1"), &claims("u-1"));
    let reply = env.https("/api/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200);
    assert!(seen(&reply.json(), "authorization").is_empty(), "{}", reply.text());

    let reply = env.https("/fwd/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(seen(&reply.json(), "authorization"), [bearer(&token)]);

    // From the query: the parameter is removed, the others kept, and the access log never holds the token.
    let query_token = r1.sign(Some("r1"), &claims("query-user"));
    let reply = env.https(&format!("/q/items?a=1&access_token={query_token}&b=2"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["query"], "a=1&b=2", "{echo}");
    assert_eq!(seen(&echo, "x-user-id"), ["query-user"]);
    assert!(!echo.to_string().contains(&query_token));
    let refused_token = "refused-query-token-0123456789";
    assert_refused(&env.https(&format!("/q/items?access_token={refused_token}"), &[]).await, "query garbage");
    let log = env.gw.access_log(4).await;
    assert_eq!(log.len(), 4, "{log:?}");
    let raw = env.gw.access_log_raw();
    assert!(!raw.contains(&query_token), "the access log holds the token: {raw}");
    assert!(!raw.contains(refused_token), "the access log holds the refused token: {raw}");
    assert!(!raw.contains(&token), "the access log holds the header token: {raw}");
}

// ------------------------------------------------------------------------------------------------------------
// 7. the gateway-signed token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_signed_token_reaches_the_upstream_and_verifies() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let signer = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let gateway_token = json!({
        "algorithm": "ES256", "key_pem": signer.serialize_pem(), "issuer": "turnpike-test",
        "audience": "internal", "ttl": "30s", "kid": "gw-1",
    });
    let server = format!("  gateway_token: {gateway_token}");
    let routes = r#"
  - id: signed
    match: { prefix: /signed }
    upstream: app
    auth: { policies: [main], gateway_token: true }
"#;
    let env = Env::start("gwtoken", json!({"main": {"jwt": static_policy()}}), &server, routes).await;
    let token = bearer(&r1.sign(Some("r1"), &claims("u-1")));
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";

    let reply = env.https("/signed/x", &[("authorization", &token), ("x-gateway-token", forged)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let values = seen(&reply.json(), "x-gateway-token");
    assert_eq!(values.len(), 1, "{values:?}");
    assert_ne!(values[0], forged);

    let key = jsonwebtoken::DecodingKey::from_ec_pem(signer.public_key_pem().as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_issuer(&["turnpike-test"]);
    validation.set_audience(&["internal"]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(&values[0], &key, &validation).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some("gw-1"));
    let c = data.claims;
    assert_eq!(c["sub"], "u-1");
    assert_eq!(c["iss"], "turnpike-test");
    assert_eq!(c["auth"], "jwt");
    let exp = c["exp"].as_i64().unwrap();
    assert!(exp > now() && exp <= now() + 30 + 1, "exp {exp} is not within the 30s ttl of {}", now());

    // A client-sent gateway token is stripped everywhere else: on an authenticated route without
    // gateway_token, on an anonymous route and on a public route.
    for (path, headers) in [
        ("/api/x", vec![("authorization", token.as_str()), ("x-gateway-token", forged)]),
        ("/anon/x", vec![("X-Gateway-Token", forged)]),
        ("/open/x", vec![("x_gateway_token", forged)]),
    ] {
        let reply = env.https(path, &headers).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let echo = reply.json();
        assert!(seen(&echo, "x-gateway-token").is_empty(), "{path}: {echo}");
        assert!(seen(&echo, "x_gateway_token").is_empty(), "{path}: {echo}");
    }
    // No token on the signed route: 401, nothing signed.
    assert_refused(&env.https("/signed/x", &[]).await, "no token on the signed route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_cookies_and_rewritten_queries_are_removed_too() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let mut both = static_policy();
    both["from"] = json!([{"header": "authorization"}, {"query": "access_token"}, {"cookie": "session"}]);
    let routes = r#"
  - id: rewritten
    match: { prefix: /rw }
    rewrite: { strip_prefix: /rw }
    upstream: app
    auth: { policies: [many] }
  - id: many
    match: { prefix: /many }
    upstream: app
    auth: { policies: [many] }
"#;
    let env = Env::start("sources", json!({"main": {"jwt": static_policy()}, "many": {"jwt": both}}), "", routes).await;
    let token = r1.sign(Some("r1"), &claims("u-1"));

    // A cookie: only that cookie is removed.
    let cookie = format!("theme=dark; session={token}; lang=en");
    let reply = env.https("/many/x", &[("cookie", &cookie)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(seen(&echo, "x-user-id"), ["u-1"]);
    assert!(!echo.to_string().contains(&token), "the token reached the upstream: {echo}");
    assert_eq!(seen(&echo, "cookie").join("; "), "theme=dark; lang=en");

    // A query parameter on a rewritten route, and on a path the gateway normalizes: removed from the target the
    // upstream receives.
    for (path, upstream_path) in [("/rw/items", "/items"), ("/many//a/./b", "/many/a/b")] {
        let reply = env.https(&format!("{path}?x=1&access_token={token}"), &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["path"], upstream_path, "{echo}");
        assert_eq!(echo["query"], "x=1", "{path}: {echo}");
        assert!(!echo.to_string().contains(&token), "{path}: the token reached the upstream: {echo}");
    }
    // The same token in several places is one credential, and every copy is removed.
    let reply = env
        .https(&format!("/many/x?access_token={token}"), &[("authorization", &bearer(&token)), ("cookie", &cookie)])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!reply.text().contains(&token), "{}", reply.text());

    // Two different tokens, or the header given twice: refused, never settled by order.
    let other = r1.sign(Some("r1"), &claims("u-2"));
    let reply = env.https(&format!("/many/x?access_token={other}"), &[("authorization", &bearer(&token))]).await;
    assert_refused(&reply, "different tokens in header and query");
    let (first, second) = (bearer(&token), bearer(&other));
    let reply = env.https_alpn("/api/x", &[("authorization", &first), ("authorization", &second)], &[b"h2"]).await;
    assert_refused(&reply, "authorization given twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_token_is_not_trusted_past_its_exp_nor_after_its_key_is_removed() {
    // exp: the cache keeps a verified token at most until its exp (leeway 0 makes the boundary exact).
    let r1 = TestKey::rsa(RSA1_KEY);
    let mut policy = static_policy();
    policy["leeway"] = json!("0s");
    let env = Env::start("cache-exp", json!({"main": {"jwt": policy}}), "", "").await;
    let mut short = claims("u-1");
    short["exp"] = json!(now() + 2);
    let token = bearer(&r1.sign(Some("r1"), &short));
    assert_eq!(env.https("/api/x", &[("authorization", &token)]).await.status, 200);
    assert_eq!(env.https("/api/x", &[("authorization", &token)]).await.status, 200, "a second time, from the cache");
    let (env_ref, auth) = (&env, token.as_str());
    let reply = until_status(Duration::from_secs(10), 401, || async move {
        env_ref.https("/api/x", &[("authorization", auth)]).await
    })
    .await;
    assert_refused(&reply, "expired after being cached");

    // A key removed from the JWKS: tokens it signed are refused after the next refresh, cached or not.
    let r2 = TestKey::rsa(RSA2_KEY);
    let idp = Idp::start(jwks(&[(&r1, "r1"), (&r2, "r2")])).await;
    let policy = jwks_policy(
        &idp.jwks_url(),
        json!({"timeout": "1s", "min_refresh_interval": "100ms", "refresh_interval": "200ms"}),
    );
    let env = Env::start("cache-rotation", json!({"main": {"jwt": policy}}), "", "").await;
    let old = bearer(&r1.sign(Some("r1"), &claims("u-1")));
    let new = bearer(&r2.sign(Some("r2"), &claims("u-2")));
    for _ in 0..2 {
        assert_eq!(env.https("/api/x", &[("authorization", &old)]).await.status, 200);
    }
    idp.set_jwks(jwks(&[(&r2, "r2")]));
    let (env_ref, auth) = (&env, old.as_str());
    let reply = until_status(Duration::from_secs(10), 401, || async move {
        env_ref.https("/api/x", &[("authorization", auth)]).await
    })
    .await;
    assert_refused(&reply, "signed by a removed key");
    assert_eq!(env.https("/api/x", &[("authorization", &new)]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_fetched_keys_unless_the_key_source_changes() {
    let r1 = TestKey::rsa(RSA1_KEY);
    let idp = Idp::start(jwks(&[(&r1, "r1")])).await;
    let policy = jwks_policy(&idp.jwks_url(), json!({"timeout": "500ms", "min_refresh_interval": "100ms"}));
    let env = Env::start("reload", json!({"main": {"jwt": policy}}), "", "").await;
    let valid = || bearer(&r1.sign(Some("r1"), &claims("u-1")));
    assert_eq!(env.https("/api/x", &[("authorization", &valid())]).await.status, 200);
    idp.down().await;

    // Same key source: the keys fetched before the reload keep working although the source is down.
    env.gw.reload(&env.yaml).unwrap();
    let reply = env.https("/api/x", &[("authorization", &valid())]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Another key source (down): fresh state, no keys, 503.
    let down = format!("http://{}/jwks.json", turnpike_test::refused_addr());
    env.gw.reload(&env.yaml.replace(&idp.jwks_url(), &down)).unwrap();
    let reply = env.https("/api/x", &[("authorization", &valid())]).await;
    assert_unavailable(&reply, "after switching to a key source that is down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_is_verified_against_the_configured_ca() {
    let e1 = TestKey::es256();
    let idp_ca = TestCa::new("Private IdP CA");
    let idp_cert = idp_ca.server(&["127.0.0.1"]);
    let idp = Idp::start_tls(jwks(&[(&e1, "e1")]), tls::server_config(&idp_cert, &[b"http/1.1"])).await;
    let url = format!("https://{}/jwks.json", idp.addr);
    let dir = Dir::new("jwt-idp-ca");
    let ca_file = dir.0.join("idp-ca.pem");
    std::fs::write(&ca_file, &idp_ca.cert_pem).unwrap();
    let token = bearer(&e1.sign(Some("e1"), &claims("tls-user")));

    // Trusting the IdP's private CA: the keys are fetched over HTTPS.
    let policy = jwks_policy(&url, json!({"timeout": "1s", "ca": ca_file.display().to_string()}));
    let env = Env::start("jwks-https", json!({"main": {"jwt": policy}}), "", "").await;
    let reply = env.https("/api/x", &[("authorization", &token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&reply.json(), "x-user-id"), ["tls-user"]);
    assert_eq!(idp.jwks_hits(), 1);

    // With the system roots only, the IdP's certificate is not trusted: no keys, 503, and no JWKS was served.
    let policy = jwks_policy(&url, json!({"timeout": "1s"}));
    let env = Env::start("jwks-https-untrusted", json!({"main": {"jwt": policy}}), "", "").await;
    assert_unavailable(&env.https("/api/x", &[("authorization", &token)]).await, "untrusted IdP certificate");
    assert_eq!(idp.jwks_hits(), 1, "the untrusted handshake never got to an HTTP request");
}
