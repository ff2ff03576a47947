//! Tests of the JWT policy: tokens of every kind against static keys and a real JWKS/OIDC server on loopback
//! (normal, down, slow, garbage), the cache, reloads, the config, and the gateway signer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use turnpike_core::{Identity, IdentitySource};

use super::keys::{Candidates, KeyKind, KeySet, public_key_from_pem};
use super::*;

const RSA1_KEY: &str = include_str!("testdata/rsa1.key.pem");
const RSA1_PUB: &str = include_str!("testdata/rsa1.pub.pem");
const RSA2_KEY: &str = include_str!("testdata/rsa2.key.pem");
const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
const ISS: &str = "https://idp.test";

// ------------------------------------------------------------------------------------------------------------
// helpers

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> Value {
    json!({"sub": "u-1", "iss": ISS, "aud": "orders-api", "exp": now() + 300, "roles": ["admin", "ops"]})
}

/// A token put together by hand: any header, any signature.
fn raw_token(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string()), b64(claims.to_string()), b64(signature))
}

/// A key pair to sign test tokens with, and its public forms.
struct TestKey {
    alg: Algorithm,
    encoding: EncodingKey,
    private_pem: String,
    public_pem: String,
    /// Uncompressed EC point, Ed25519 bytes, or (n, e) for RSA.
    jwk_fields: Value,
}

impl TestKey {
    fn generate(alg: Algorithm) -> Self {
        let rcgen_alg = match alg {
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => panic!("use TestKey::rsa"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let private_pem = pair.serialize_pem();
        let raw = pair.public_key_raw();
        let (encoding, jwk_fields) = match alg {
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}),
            ),
            _ => {
                let half = (raw.len() - 1) / 2;
                let crv = if alg == Algorithm::ES256 { "P-256" } else { "P-384" };
                (
                    EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
                    json!({"kty": "EC", "crv": crv, "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..])}),
                )
            }
        };
        TestKey { alg, encoding, public_pem: pair.public_key_pem(), private_pem, jwk_fields }
    }

    fn rsa(private_pem: &str, alg: Algorithm) -> Self {
        let (_, der) = keys::pem_block(private_pem).unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let public_pem = rcgen::KeyPair::from_pem(private_pem).unwrap().public_key_pem();
        TestKey {
            alg,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            private_pem: private_pem.to_string(),
            public_pem,
            jwk_fields: json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)}),
        }
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk_fields.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }
}

fn hmac_token(alg: Algorithm, secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn config(value: Value) -> JwtConfig {
    serde_json::from_value(value).unwrap()
}

fn compile_with(value: Value, states: &JwtStates) -> JwtAuth {
    JwtAuth::compile("orders-jwt", &config(value), states, Path::new(".")).unwrap()
}

fn compile(value: Value) -> JwtAuth {
    compile_with(value, &JwtStates::default())
}

fn compile_err(value: Value) -> Vec<ConfigIssue> {
    JwtAuth::compile("orders-jwt", &config(value), &JwtStates::default(), Path::new(".")).unwrap_err()
}

fn rsa_config() -> Value {
    json!({"algorithms": ["RS256"], "keys": [{"kid": "r1", "pem": RSA1_PUB}], "issuer": ISS, "audiences": ["orders-api"]})
}

fn secret_config() -> Value {
    json!({"algorithms": ["HS256"], "secret": SECRET, "issuer": ISS})
}

fn request(uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut req = http::Request::get(uri).body(()).unwrap();
    for (name, value) in headers {
        req.headers_mut()
            .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    req
}

fn presented(auth: &JwtAuth, req: &http::Request<()>) -> Presented<FoundToken> {
    auth.presented(&AuthInput { method: req.method(), uri: req.uri(), headers: req.headers(), client_cert: None })
}

fn found(auth: &JwtAuth, token: &str) -> FoundToken {
    match presented(auth, &request("/", &[("authorization", &format!("Bearer {token}"))])) {
        Presented::Present(found) => found,
        other => panic!("token not presented: {other:?}"),
    }
}

async fn check(auth: &JwtAuth, token: &str) -> Result<Arc<Identity>, AuthFailure> {
    auth.verify(&found(auth, token)).await
}

// ------------------------------------------------------------------------------------------------------------
// a JWKS / OIDC server on loopback whose answers the test changes

#[derive(Clone)]
enum Answer {
    Jwks(Value),
    Slow(Duration, Value),
    Garbage(&'static str),
    Status(u16),
}

struct IdpShared {
    answer: Mutex<Answer>,
    issuer: Mutex<String>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
}

struct Idp {
    addr: SocketAddr,
    shared: Arc<IdpShared>,
    server: JoinHandle<()>,
}

impl Idp {
    async fn start(jwks: Value) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(IdpShared {
            answer: Mutex::new(Answer::Jwks(jwks)),
            issuer: Mutex::new(format!("http://{addr}")),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(Idp::answer(&shared, addr, req.uri().path()).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Idp { addr, shared, server }
    }

    async fn answer(shared: &IdpShared, addr: SocketAddr, path: &str) -> http::Response<Full<Bytes>> {
        let json = |status: u16, body: String| {
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
                json(200, json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/jwks")}).to_string())
            }
            "/jwks" => {
                shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
                let answer = shared.answer.lock().unwrap().clone();
                match answer {
                    Answer::Jwks(doc) => json(200, doc.to_string()),
                    Answer::Slow(delay, doc) => {
                        tokio::time::sleep(delay).await;
                        json(200, doc.to_string())
                    }
                    Answer::Garbage(text) => json(200, text.to_string()),
                    Answer::Status(status) => json(status, "{}".into()),
                }
            }
            _ => json(404, "{}".into()),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// Closes the port: connections are refused from now on.
    async fn down(&self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::task::yield_now().await;
        }
    }
}

fn jwks(keys: &[(&TestKey, &str)]) -> Value {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()})
}

/// Short intervals and timeouts, for real-time tests against the loopback server.
fn jwks_config(url: &str) -> Value {
    json!({
        "algorithms": ["ES256", "RS256"],
        "jwks_url": url,
        "issuer": ISS,
        "jwks": {"timeout": "300ms", "min_refresh_interval": "150ms", "refresh_interval": "10m"},
    })
}

/// How long past `jwks.timeout` a refused request may take in these tests (scheduling on a shared machine).
const SLACK: Duration = Duration::from_millis(400);

// ------------------------------------------------------------------------------------------------------------
// accepted tokens

#[tokio::test]
async fn accepts_a_valid_token_and_maps_the_identity() {
    let mut cfg = rsa_config();
    cfg["claims"] = json!({"headers": {"email": "x-user-email"}, "plan": "tier"});
    let auth = compile(cfg);
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let mut c = claims();
    c["email"] = json!("a@example.com");
    c["tier"] = json!("pro");
    c["scope"] = json!("orders:read orders:write");
    let identity = check(&auth, &rsa.sign(Some("r1"), &c)).await.unwrap();
    assert_eq!(identity.source, IdentitySource::Jwt);
    assert_eq!(identity.subject.as_deref(), Some("u-1"));
    assert!(identity.has_role("ops") && identity.has_scope("orders:write"));
    assert_eq!(identity.plan.as_deref(), Some("pro"));
    assert_eq!(
        identity.headers,
        [(HeaderName::from_static("x-user-email"), HeaderValue::from_static("a@example.com"))]
    );
    assert_eq!(auth.header_names(), [HeaderName::from_static("x-user-email")]);
    assert_eq!(auth.challenge(), "Bearer");
}

#[tokio::test]
async fn verifies_every_algorithm_family() {
    for (name, alg) in [("HS256", Algorithm::HS256), ("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)] {
        let auth = compile(json!({"algorithms": [name], "secret": SECRET}));
        let token = hmac_token(alg, SECRET.as_bytes(), None, &claims());
        assert!(check(&auth, &token).await.is_ok(), "{name}");
    }
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
    ] {
        let auth = compile(json!({"algorithms": [name], "keys": [{"pem": RSA1_PUB}]}));
        let key = TestKey::rsa(RSA1_KEY, alg);
        assert!(check(&auth, &key.sign(None, &claims())).await.is_ok(), "{name}");
        // the same key, another listed algorithm's signature: refused
        assert!(check(&auth, &rsa.with_alg_ref(alg_other(alg)).sign(None, &claims())).await.is_err(), "{name}");
    }
    for (name, alg) in [("ES256", Algorithm::ES256), ("ES384", Algorithm::ES384), ("EdDSA", Algorithm::EdDSA)] {
        let key = TestKey::generate(alg);
        let auth = compile(json!({"algorithms": [name], "keys": [{"kid": "k", "pem": key.public_pem}]}));
        let identity = check(&auth, &key.sign(Some("k"), &claims())).await.unwrap();
        assert_eq!(identity.subject.as_deref(), Some("u-1"), "{name}");
    }
}

fn alg_other(alg: Algorithm) -> Algorithm {
    if alg == Algorithm::RS256 { Algorithm::PS256 } else { Algorithm::RS256 }
}

impl TestKey {
    fn with_alg_ref(&self, alg: Algorithm) -> TestKey {
        TestKey::rsa(&self.private_pem, alg)
    }
}

#[tokio::test]
async fn verifies_tokens_of_keys_given_as_certificates_files_and_pkcs1() {
    let dir = temp_dir("certs");
    let ec = TestKey::generate(Algorithm::ES256);
    let ec_pair = rcgen::KeyPair::from_pem(&ec.private_pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["idp.test".to_string()]).unwrap().self_signed(&ec_pair).unwrap();
    std::fs::write(dir.join("ec-cert.pem"), cert.pem()).unwrap();
    let rsa_pair = rcgen::KeyPair::from_pem(RSA1_KEY).unwrap();
    let rsa_cert = rcgen::CertificateParams::new(vec!["idp.test".to_string()]).unwrap().self_signed(&rsa_pair).unwrap();
    let pkcs1 = {
        let (_, spki) = keys::pem_block(RSA1_PUB).unwrap();
        // SPKI: SEQUENCE { AlgorithmIdentifier, BIT STRING { 0, RSAPublicKey } }
        let mut outer = keys::Der::new(&spki);
        let mut info = keys::Der::new(outer.expect(0x30).unwrap());
        info.expect(0x30).unwrap();
        let bits = info.expect(0x03).unwrap();
        format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&bits[1..])
        )
    };
    let auth = JwtAuth::compile(
        "certs",
        &config(json!({
            "algorithms": ["ES256", "RS256"],
            "keys": [
                {"kid": "ec", "pem_file": "ec-cert.pem"},
                {"kid": "rsa-cert", "pem": rsa_cert.pem()},
                {"kid": "rsa-pkcs1", "pem": pkcs1},
            ],
        })),
        &JwtStates::default(),
        &dir,
    )
    .unwrap();
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    assert!(check(&auth, &ec.sign(Some("ec"), &claims())).await.is_ok());
    assert!(check(&auth, &rsa.sign(Some("rsa-cert"), &claims())).await.is_ok());
    assert!(check(&auth, &rsa.sign(Some("rsa-pkcs1"), &claims())).await.is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

// ------------------------------------------------------------------------------------------------------------
// claim checks

#[tokio::test]
async fn refuses_expired_tokens_within_the_leeway_only() {
    let auth = compile(secret_config());
    let sign = |exp: i64| hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": exp}));
    assert!(check(&auth, &sign(now() - 10)).await.is_ok(), "within the default 30s leeway");
    assert_eq!(check(&auth, &sign(now() - 60)).await.unwrap_err(), AuthFailure::Invalid("expired"));
    let mut strict = secret_config();
    strict["leeway"] = json!("0s");
    let strict = compile(strict);
    assert_eq!(check(&strict, &sign(now() - 1)).await.unwrap_err(), AuthFailure::Invalid("expired"));
    assert!(check(&strict, &sign(now() + 60)).await.is_ok());
}

#[tokio::test]
async fn refuses_tokens_not_yet_valid() {
    let auth = compile(secret_config());
    let sign = |nbf: i64| {
        hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": now() + 600, "nbf": nbf}))
    };
    assert_eq!(check(&auth, &sign(now() + 120)).await.unwrap_err(), AuthFailure::Invalid("not yet valid"));
    assert!(check(&auth, &sign(now() + 10)).await.is_ok(), "within the leeway");
    let odd = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": "tomorrow"}));
    assert_eq!(check(&auth, &odd).await.unwrap_err(), AuthFailure::Invalid("exp is not a number"));
}

#[tokio::test]
async fn refuses_tokens_without_exp_unless_allowed() {
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "sub": "u"}));
    assert_eq!(check(&compile(secret_config()), &token).await.unwrap_err(), AuthFailure::Invalid("no exp"));
    let mut cfg = secret_config();
    cfg["require_exp"] = json!(false);
    assert!(check(&compile(cfg), &token).await.is_ok());
}

#[tokio::test]
async fn checks_the_issuer_and_any_of_the_audiences() {
    let mut cfg = secret_config();
    cfg["audiences"] = json!(["orders-api", "billing-api"]);
    let auth = compile(cfg);
    let sign = |c: Value| hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &c);
    let exp = now() + 300;
    assert!(check(&auth, &sign(json!({"iss": ISS, "aud": "billing-api", "exp": exp}))).await.is_ok());
    assert!(check(&auth, &sign(json!({"iss": ISS, "aud": ["x", "orders-api"], "exp": exp}))).await.is_ok());
    let refused = [
        (json!({"iss": ISS, "aud": ["x", "y"], "exp": exp}), "wrong audience"),
        (json!({"iss": ISS, "aud": "x", "exp": exp}), "wrong audience"),
        (json!({"iss": ISS, "exp": exp}), "wrong audience"),
        (json!({"iss": "https://evil.test", "aud": "orders-api", "exp": exp}), "wrong issuer"),
        (json!({"aud": "orders-api", "exp": exp}), "wrong issuer"),
        (json!({"iss": [ISS], "aud": "orders-api", "exp": exp}), "wrong issuer"),
    ];
    for (c, why) in refused {
        assert_eq!(check(&auth, &sign(c.clone())).await.unwrap_err(), AuthFailure::Invalid(why), "{c}");
    }
}

#[tokio::test]
async fn requires_the_configured_claims() {
    let mut cfg = secret_config();
    cfg["required_claims"] = json!(["sub", "email"]);
    let auth = compile(cfg);
    let sign = |c: Value| hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &c);
    let exp = now() + 300;
    assert!(check(&auth, &sign(json!({"iss": ISS, "exp": exp, "sub": "u", "email": "e"}))).await.is_ok());
    for c in [json!({"iss": ISS, "exp": exp, "sub": "u"}), json!({"iss": ISS, "exp": exp, "sub": "u", "email": null})] {
        assert_eq!(check(&auth, &sign(c)).await.unwrap_err(), AuthFailure::Invalid("required claim missing"));
    }
}

// ------------------------------------------------------------------------------------------------------------
// refused before or at the signature

#[tokio::test]
async fn refuses_a_wrong_signature_with_one_reason_whatever_the_cause() {
    let auth = compile(rsa_config());
    let good = TestKey::rsa(RSA1_KEY, Algorithm::RS256).sign(Some("r1"), &claims());
    let other_key = TestKey::rsa(RSA2_KEY, Algorithm::RS256).sign(Some("r1"), &claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut changed = claims();
    changed["sub"] = json!("admin");
    let tampered = format!("{head}.{}.{signature}", b64(changed.to_string()));
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let truncated = good[..good.len() - 10].to_string();
    let bad_base64 = format!("{}.{}.{}", head, rest.split_once('.').unwrap().0, "!!not-base64!!");
    let empty = format!("{}.{}.", head, rest.split_once('.').unwrap().0);
    for token in [other_key, tampered, flipped, truncated, bad_base64, empty] {
        assert_eq!(check(&auth, &token).await.unwrap_err(), AuthFailure::Invalid("invalid signature"), "{token}");
    }
    assert!(check(&auth, &good).await.is_ok());
}

#[tokio::test]
async fn refuses_alg_none_in_every_spelling_before_any_signature_check() {
    let auth = compile(secret_config());
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        for signature in [&b""[..], b"sig"] {
            let token = raw_token(json!({"alg": alg, "typ": "JWT"}), &claims(), signature);
            let refused = check(&auth, &token).await.unwrap_err();
            assert_eq!(refused, AuthFailure::Invalid("algorithm not supported"), "{alg}");
        }
    }
    assert_eq!(auth.stats().signature_checks, 0);
}

#[tokio::test]
async fn refuses_hs256_signed_with_the_rsa_public_key() {
    // The classic confusion: the attacker knows the public key and signs HS256 with its bytes as the secret.
    let auth = compile(rsa_config());
    let mut forged = Vec::new();
    for secret in [RSA1_PUB.as_bytes(), RSA1_PUB.trim().as_bytes(), &keys::pem_block(RSA1_PUB).unwrap().1] {
        forged.push(hmac_token(Algorithm::HS256, secret, Some("r1"), &claims()));
        forged.push(hmac_token(Algorithm::HS256, secret, None, &claims()));
    }
    for token in &forged {
        assert_eq!(check(&auth, token).await.unwrap_err(), AuthFailure::Invalid("algorithm not allowed"));
    }
    assert_eq!(auth.stats().signature_checks, 0);
    // Allowing HS256 next to public keys is a configuration error, so no key set can ever hold both...
    let mut mixed = rsa_config();
    mixed["algorithms"] = json!(["RS256", "HS256"]);
    let issues = compile_err(mixed);
    assert!(issues.iter().any(|i| i.path == "algorithms" && i.message.contains("HS256")), "{issues:?}");
    // ...and even a key set holding an RSA key never offers it for HS256.
    let rsa = public_key_from_pem(RSA1_PUB).unwrap();
    let set = KeySet::new(vec![VerifyKey::public(Some("r1".into()), &rsa, None)]);
    assert!(matches!(set.candidates(Some("r1"), JwtAlgorithm::Hs256), Candidates::WrongAlgorithm));
    assert!(matches!(set.candidates(None, JwtAlgorithm::Hs256), Candidates::NoKey));
}

#[tokio::test]
async fn refuses_tokens_whose_alg_does_not_fit_the_key() {
    let p256 = TestKey::generate(Algorithm::ES256);
    let p384 = TestKey::generate(Algorithm::ES384);
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let auth = compile(json!({
        "algorithms": ["ES256", "ES384", "RS256"],
        "keys": [{"kid": "p256", "pem": p256.public_pem}, {"kid": "p384", "pem": p384.public_pem}, {"kid": "rsa", "pem": RSA1_PUB}],
    }));
    // An ES384 token pointing at the P-256 key, an RS256 token pointing at an EC key: refused before crypto.
    let wrong =
        [p384.sign(Some("p256"), &claims()), rsa.sign(Some("p384"), &claims()), p256.sign(Some("rsa"), &claims())];
    for token in wrong {
        assert_eq!(check(&auth, &token).await.unwrap_err(), AuthFailure::Invalid("algorithm does not fit the key"));
    }
    assert_eq!(auth.stats().signature_checks, 0);
    assert!(check(&auth, &p384.sign(Some("p384"), &claims())).await.is_ok());
    // Without a kid, only keys that fit the alg are tried.
    assert!(check(&auth, &p256.sign(None, &claims())).await.is_ok());
    assert_eq!(auth.stats().signature_checks, 2);
    // An unknown kid with static keys is refused.
    assert_eq!(
        check(&auth, &p256.sign(Some("nope"), &claims())).await.unwrap_err(),
        AuthFailure::Invalid("unknown kid")
    );
}

#[tokio::test]
async fn refuses_unsupported_crit_headers() {
    let auth = compile(secret_config());
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!(null)] {
        let header = json!({"alg": "HS256", "typ": "JWT", "crit": crit, "b64": false});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims().to_string()));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        let token = format!("{input}.{signature}");
        assert_eq!(
            check(&auth, &token).await.unwrap_err(),
            AuthFailure::Invalid("crit header not supported"),
            "{crit}"
        );
    }
}

#[tokio::test]
async fn refuses_garbage() {
    let auth = compile(secret_config());
    let good = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let garbage = vec![
        "garbage".to_string(),
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        "...".to_string(),
        format!("{good}.extra"),
        format!("{head}.{payload}"),
        format!("{head}=.{payload}.{signature}"),
        format!(".{payload}.{signature}"),
        format!("{head}..{signature}"),
        format!("{}.{payload}.{signature}", b64("not json")),
        format!("{}.{payload}.{signature}", b64("[1,2]")),
        format!("{}.{payload}.{signature}", b64(r#"{"alg": 256}"#)),
        format!("{}.{payload}.{signature}", b64(r#"{"typ": "JWT"}"#)),
        format!("{}.{payload}.{signature}", b64(r#"{"alg": "HS256", "alg": "none"}"#)),
        format!("{}.{payload}.{signature}", b64(r#"{"alg": "HS256", "kid": 7}"#)),
        format!("{head}.{}.{signature}", b64("[]")),
        format!("{head}.{}.{signature}", b64("\"claims\"")),
        format!("{head}.{}.{signature}", b64("{\"sub\": ")),
        format!("{head}.%%%.{signature}"),
    ];
    for token in garbage {
        match check(&auth, &token).await {
            Err(AuthFailure::Invalid(_)) => {}
            other => panic!("{token}: {other:?}"),
        }
    }
    assert_eq!(auth.stats().signature_checks, 0, "garbage never reaches the signature check");
}

#[tokio::test]
async fn refuses_a_100_kb_token_before_parsing() {
    let auth = compile(secret_config());
    let huge = format!("{}.{}.{}", b64("{\"alg\":\"HS256\"}"), "A".repeat(100 * 1024), "sig");
    let req = request("/", &[("authorization", &format!("Bearer {huge}"))]);
    assert_eq!(presented(&auth, &req), Presented::Malformed("token too large"));
    assert_eq!(inspect(&huge).unwrap_err(), "token too large");
    // Also when the configured limit is the largest allowed.
    let mut cfg = secret_config();
    cfg["max_token_size"] = json!("64KiB");
    assert_eq!(presented(&compile(cfg), &req), Presented::Malformed("token too large"));
}

// ------------------------------------------------------------------------------------------------------------
// where the token is

#[tokio::test]
async fn reads_tokens_from_a_header_a_cookie_or_a_query_parameter() {
    let mut cfg = secret_config();
    cfg["from"] = json!([{"header": "x-token"}, {"cookie": "session"}, {"query": "access_token"}]);
    let auth = compile(cfg);
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &claims());
    let requests = [
        request("/", &[("x-token", &token)]),
        request("/", &[("cookie", &format!("a=1; session={token}"))]),
        request(&format!("/orders?access_token={token}&page=2"), &[]),
    ];
    for req in requests {
        let Presented::Present(found) = presented(&auth, &req) else { panic!("{req:?}") };
        assert!(auth.verify(&found).await.is_ok());
        let (mut parts, ()) = req.into_parts();
        auth.strip(&found, &mut parts);
        assert!(parts.headers.get("x-token").is_none());
        assert!(!parts.headers.get("cookie").is_some_and(|c| c.to_str().unwrap().contains("session")));
        assert!(!parts.uri.to_string().contains("access_token"));
    }
    // Authorization: Bearer is not a configured place here.
    assert_eq!(presented(&auth, &request("/", &[("authorization", &format!("Bearer {token}"))])), Presented::Absent);
}

#[tokio::test]
async fn refuses_conflicting_tokens_and_keeps_forwarded_ones() {
    let mut cfg = secret_config();
    cfg["from"] = json!([{"header": "authorization"}, {"query": "access_token"}]);
    let auth = compile(cfg.clone());
    let a = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &claims());
    let b = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": now() + 60}));
    let both = request(&format!("/?access_token={b}"), &[("authorization", &format!("Bearer {a}"))]);
    assert!(matches!(presented(&auth, &both), Presented::Malformed(_)));
    let same = request(&format!("/?access_token={a}"), &[("authorization", &format!("Bearer {a}"))]);
    assert!(matches!(presented(&auth, &same), Presented::Present(_)));
    assert_eq!(presented(&auth, &request("/", &[("authorization", "Basic dXNlcjpwdw==")])), Presented::Absent);

    cfg["forward_token"] = json!(true);
    let forwarding = compile(cfg);
    let req = request("/", &[("authorization", &format!("Bearer {a}"))]);
    let Presented::Present(found) = presented(&forwarding, &req) else { panic!() };
    let (mut parts, ()) = req.into_parts();
    forwarding.strip(&found, &mut parts);
    assert!(parts.headers.get("authorization").is_some(), "forward_token keeps the token");
}

// ------------------------------------------------------------------------------------------------------------
// the verified-token cache

#[tokio::test]
async fn a_cache_hit_skips_the_signature_check() {
    let auth = compile(rsa_config());
    let token = TestKey::rsa(RSA1_KEY, Algorithm::RS256).sign(Some("r1"), &claims());
    let first = check(&auth, &token).await.unwrap();
    assert_eq!(auth.stats().signature_checks, 1);
    for _ in 0..10 {
        let again = check(&auth, &token).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the cached identity itself");
    }
    assert_eq!(auth.stats().signature_checks, 1);
    assert_eq!(auth.stats().cached_tokens, 1);
}

#[tokio::test]
async fn refused_tokens_are_never_cached() {
    let auth = compile(rsa_config());
    let expired = TestKey::rsa(RSA1_KEY, Algorithm::RS256)
        .sign(Some("r1"), &json!({"iss": ISS, "aud": "orders-api", "exp": now() - 100}));
    let wrong = TestKey::rsa(RSA2_KEY, Algorithm::RS256).sign(Some("r1"), &claims());
    for _ in 0..3 {
        assert!(check(&auth, &expired).await.is_err());
        assert!(check(&auth, &wrong).await.is_err());
    }
    assert_eq!(auth.stats().signature_checks, 6);
    assert_eq!(auth.stats().cached_tokens, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_expires_at_its_exp() {
    let auth = compile(secret_config());
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": now() + 60}));
    check(&auth, &token).await.unwrap();
    tokio::time::advance(Duration::from_secs(58)).await;
    check(&auth, &token).await.unwrap();
    assert_eq!(auth.stats().signature_checks, 1, "still cached before exp");
    tokio::time::advance(Duration::from_secs(3)).await;
    // Past exp the entry is gone: the token is checked again (the wall clock did not move, so it passes).
    check(&auth, &token).await.unwrap();
    assert_eq!(auth.stats().signature_checks, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_is_checked_again_after_max_ttl() {
    let mut cfg = secret_config();
    cfg["cache"] = json!({"max_ttl": "10s"});
    let auth = compile(cfg);
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": now() + 3600}));
    check(&auth, &token).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    check(&auth, &token).await.unwrap();
    assert_eq!(auth.stats().signature_checks, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    check(&auth, &token).await.unwrap();
    assert_eq!(auth.stats().signature_checks, 2);
}

#[tokio::test]
async fn the_cache_stays_bounded_and_can_be_disabled() {
    let mut cfg = secret_config();
    cfg["cache"] = json!({"max_entries": 32});
    let auth = compile(cfg.clone());
    for i in 0..500 {
        let token =
            hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "exp": now() + 60, "n": i}));
        check(&auth, &token).await.unwrap();
    }
    assert!(auth.stats().cached_tokens <= 32, "{}", auth.stats().cached_tokens);

    cfg["cache"] = json!({"max_entries": 0});
    let uncached = compile(cfg);
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &claims());
    check(&uncached, &token).await.unwrap();
    check(&uncached, &token).await.unwrap();
    assert_eq!(uncached.stats().signature_checks, 2);
    assert_eq!(uncached.stats().cached_tokens, 0);
}

// ------------------------------------------------------------------------------------------------------------
// reloads

#[tokio::test]
async fn a_reload_keeps_the_state_while_the_key_source_is_unchanged() {
    let states = JwtStates::default();
    let first = compile_with(rsa_config(), &states);
    let token = TestKey::rsa(RSA1_KEY, Algorithm::RS256).sign(Some("r1"), &claims());
    check(&first, &token).await.unwrap();
    // A change that leaves keys and claim rules alone (forwarding the token) keeps even the cached tokens.
    let mut forwarding = rsa_config();
    forwarding["forward_token"] = json!(true);
    let second = compile_with(forwarding.clone(), &states);
    assert!(Arc::ptr_eq(first.state(), second.state()));
    drop(first);
    let third = compile_with(forwarding, &states);
    assert!(Arc::ptr_eq(second.state(), third.state()));
    check(&third, &token).await.unwrap();
    assert_eq!(third.stats().signature_checks, 1, "the token cached before the reload is still cached");

    // Another key, another URL, another secret: fresh state.
    let mut other_key = rsa_config();
    other_key["keys"] = json!([{"kid": "r1", "pem": TestKey::rsa(RSA2_KEY, Algorithm::RS256).public_pem}]);
    assert!(!Arc::ptr_eq(third.state(), compile_with(other_key, &states).state()));
    let a = compile_with(jwks_config("https://a.test/jwks"), &states);
    let b = compile_with(jwks_config("https://b.test/jwks"), &states);
    let a_again = compile_with(jwks_config("https://a.test/jwks"), &states);
    assert!(!Arc::ptr_eq(a.state(), b.state()));
    assert!(Arc::ptr_eq(a.state(), a_again.state()));
    let mut other_secret = secret_config();
    let s1 = compile_with(other_secret.clone(), &states);
    other_secret["secret"] = json!("another-secret-that-is-32-bytes-long");
    assert!(!Arc::ptr_eq(s1.state(), compile_with(other_secret, &states).state()));
    assert!(!s1.state().name().contains(SECRET), "the registry key never shows the secret");
}

#[tokio::test]
async fn a_reload_that_changes_the_claim_rules_never_serves_identities_cached_under_the_old_ones() {
    let states = JwtStates::default();
    let mut cfg = secret_config();
    cfg["audiences"] = json!(["a"]);
    let before = compile_with(cfg.clone(), &states);
    let token =
        hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &json!({"iss": ISS, "aud": "a", "exp": now() + 60}));
    check(&before, &token).await.unwrap();
    cfg["audiences"] = json!(["b"]);
    let after = compile_with(cfg, &states);
    assert!(Arc::ptr_eq(before.state(), after.state()));
    assert_eq!(check(&after, &token).await.unwrap_err(), AuthFailure::Invalid("wrong audience"));
    assert!(check(&before, &token).await.is_ok(), "the old snapshot keeps its own answers");
}

// ------------------------------------------------------------------------------------------------------------
// JWKS and discovery against a real server

#[tokio::test]
async fn fetches_the_jwks_on_first_use_and_verifies() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let idp = Idp::start(jwks(&[(&k1, "k1"), (&rsa, "r1")])).await;
    let auth = compile(jwks_config(&idp.jwks_url()));
    assert_eq!(idp.hits(), 0, "compiling fetches nothing");
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    assert!(check(&auth, &rsa.sign(Some("r1"), &claims())).await.is_ok());
    assert_eq!(idp.hits(), 1);
    assert_eq!(auth.stats().keys, 2);
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refresh_and_a_rotated_key_verifies() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let k2 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let auth = compile(jwks_config(&idp.jwks_url()));
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    assert_eq!(idp.hits(), 1);

    idp.set(Answer::Jwks(jwks(&[(&k1, "k1"), (&k2, "k2")])));
    let rotated = k2.sign(Some("k2"), &claims());
    // Right after a fetch the rate limit holds: refused without asking the server.
    assert_eq!(check(&auth, &rotated).await.unwrap_err(), AuthFailure::Invalid("unknown kid"));
    assert_eq!(idp.hits(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(check(&auth, &rotated).await.is_ok(), "kid k2 fetched");
    assert_eq!(idp.hits(), 2);
    assert!(check(&auth, &k1.sign(Some("k1"), &json!({"iss": ISS, "exp": now() + 99}))).await.is_ok());
    assert_eq!(idp.hits(), 2);
    // A kid still unknown after the refresh is refused as invalid.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(check(&auth, &k2.sign(Some("k3"), &claims())).await.unwrap_err(), AuthFailure::Invalid("unknown kid"));
    assert_eq!(idp.hits(), 3);
}

#[tokio::test]
async fn a_burst_of_1000_unknown_kids_causes_a_handful_of_fetches() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let auth = Arc::new(compile(jwks_config(&idp.jwks_url())));
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = idp.hits();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let auth = auth.clone();
        let token = raw_token(json!({"alg": "ES256", "kid": format!("random-{i}")}), &claims(), b"not-a-signature");
        burst.spawn(async move { check(&auth, &token).await });
    }
    let started = tokio::time::Instant::now();
    while let Some(result) = burst.join_next().await {
        assert_eq!(result.unwrap().unwrap_err(), AuthFailure::Invalid("unknown kid"));
    }
    let fetches = idp.hits() - before;
    assert!((1..=3).contains(&fetches), "{fetches} fetches for 1000 unknown kids");
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK * 3);
    assert!(check(&auth, &k1.sign(Some("k1"), &json!({"iss": ISS, "exp": now() + 77}))).await.is_ok());
}

#[tokio::test]
async fn a_jwks_outage_keeps_the_cached_keys_working() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let auth = compile(jwks_config(&idp.jwks_url()));
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    idp.down().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(check(&auth, &k1.sign(Some("kx"), &claims())).await.unwrap_err(), AuthFailure::Invalid("unknown kid"));
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);
    assert!(auth.stats().fetch_failures >= 1);
    // New tokens (not cached) of the known key verify with the keys fetched before the outage.
    for i in 0..5 {
        assert!(check(&auth, &k1.sign(Some("k1"), &json!({"iss": ISS, "exp": now() + 60 + i}))).await.is_ok());
    }
    assert_eq!(auth.stats().keys, 1);
}

#[tokio::test]
async fn a_slow_jwks_keeps_the_cached_keys_and_never_holds_a_request_past_the_timeout() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let auth = compile(jwks_config(&idp.jwks_url()));
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    idp.set(Answer::Slow(Duration::from_secs(3), jwks(&[(&k1, "k1")])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(check(&auth, &k1.sign(Some("kx"), &claims())).await.unwrap_err(), AuthFailure::Invalid("unknown kid"));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_millis(300) + SLACK, "{waited:?}");
    let started = tokio::time::Instant::now();
    assert!(check(&auth, &k1.sign(Some("k1"), &json!({"iss": ISS, "exp": now() + 42}))).await.is_ok());
    assert!(started.elapsed() < Duration::from_millis(100), "a known kid never waits for the key source");
}

#[tokio::test]
async fn a_garbage_jwks_answer_never_replaces_the_keys() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let auth = compile(jwks_config(&idp.jwks_url()));
    assert!(check(&auth, &k1.sign(Some("k1"), &claims())).await.is_ok());
    let answers = [
        Answer::Garbage("<html>oops</html>"),
        Answer::Garbage("{\"keys\": \"no\"}"),
        Answer::Status(500),
        Answer::Status(404),
        Answer::Jwks(json!({"keys": []})),
        Answer::Jwks(json!({"keys": [{"kty": "oct", "k": b64(SECRET), "kid": "k1"}]})),
        Answer::Jwks(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "k1"}]})),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        idp.set(answer);
        let before = idp.hits();
        // The next fetch gets the garbage, whether an unknown kid or the background retry asks for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while idp.hits() == before {
            assert!(tokio::time::Instant::now() < deadline, "answer {i} never fetched");
            let refused = check(&auth, &k1.sign(Some("kx"), &json!({"iss": ISS, "exp": now() + 300 + i as i64}))).await;
            assert_eq!(refused.unwrap_err(), AuthFailure::Invalid("unknown kid"));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(auth.stats().keys, 1, "answer {i}");
        assert!(check(&auth, &k1.sign(Some("k1"), &json!({"iss": ISS, "exp": now() + 100 + i as i64}))).await.is_ok());
    }
    assert!(auth.stats().fetch_failures >= 6, "{:?}", auth.stats());
}

#[tokio::test]
async fn with_no_keys_and_the_source_unreachable_requests_are_unavailable_within_the_timeout() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let token = k1.sign(Some("k1"), &claims());

    let down = Idp::start(jwks(&[(&k1, "k1")])).await;
    down.down().await;
    let auth = compile(jwks_config(&down.jwks_url()));
    let started = tokio::time::Instant::now();
    assert_eq!(check(&auth, &token).await.unwrap_err(), AuthFailure::Unavailable("jwks"));
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);

    let slow = Idp::start(json!({})).await;
    slow.set(Answer::Slow(Duration::from_secs(3), jwks(&[(&k1, "k1")])));
    let auth = compile(jwks_config(&slow.jwks_url()));
    let started = tokio::time::Instant::now();
    assert_eq!(check(&auth, &token).await.unwrap_err(), AuthFailure::Unavailable("jwks"));
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK, "{:?}", started.elapsed());

    let garbage = Idp::start(json!({})).await;
    garbage.set(Answer::Garbage("nope"));
    let auth = compile(jwks_config(&garbage.jwks_url()));
    assert_eq!(check(&auth, &token).await.unwrap_err(), AuthFailure::Unavailable("jwks"));
    // When the source comes back, the next fetch (after a short retry pause) loads the keys.
    garbage.set(Answer::Jwks(jwks(&[(&k1, "k1")])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(check(&auth, &token).await.is_ok());
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_checks_the_issuer() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let issuer = idp.base();
    let mut cfg = jwks_config("unused");
    cfg.as_object_mut().unwrap().remove("jwks_url");
    cfg["discovery"] = json!(issuer);
    cfg["issuer"] = json!(issuer);
    let auth = compile(cfg.clone());
    let c = json!({"iss": issuer, "exp": now() + 60, "sub": "u"});
    assert!(check(&auth, &k1.sign(Some("k1"), &c)).await.is_ok());
    assert_eq!(idp.shared.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.hits(), 1);

    cfg["issuer"] = json!("https://someone-else.test");
    let mismatch = compile(cfg);
    let c = json!({"iss": "https://someone-else.test", "exp": now() + 60});
    assert_eq!(check(&mismatch, &k1.sign(Some("k1"), &c)).await.unwrap_err(), AuthFailure::Unavailable("jwks"));
    assert_eq!(idp.hits(), 1, "a discovery document for another issuer is not followed");
}

#[tokio::test]
async fn the_background_refresh_follows_rotation_and_stops_with_the_state() {
    let k1 = TestKey::generate(Algorithm::ES256);
    let k2 = TestKey::generate(Algorithm::ES256);
    let idp = Idp::start(jwks(&[(&k1, "k1")])).await;
    let mut cfg = jwks_config(&idp.jwks_url());
    cfg["jwks"]["refresh_interval"] = json!("300ms");
    cfg["jwks"]["min_refresh_interval"] = json!("100ms");
    let states = JwtStates::default();
    let auth = compile_with(cfg, &states);
    let old = k1.sign(Some("k1"), &claims());
    assert!(check(&auth, &old).await.is_ok());
    // k1 rotated out: the background refresh (no request involved) picks the new set up.
    idp.set(Answer::Jwks(jwks(&[(&k2, "k2")])));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while idp.hits() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while auth.stats().keys != 1 || check(&auth, &k2.sign(Some("k2"), &claims())).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "new keys not installed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The removed key's cached tokens were forgotten with it.
    assert_eq!(check(&auth, &old).await.unwrap_err(), AuthFailure::Invalid("unknown kid"));

    let state = Arc::downgrade(auth.state());
    drop(auth);
    // (the refresh task holds the state for the length of a fetch at most)
    while state.upgrade().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "something still holds the state");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(states.live().is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = idp.hits();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(idp.hits(), after_drop, "the refresh task ended with its state");
}

// ------------------------------------------------------------------------------------------------------------
// keys and JWKS parsing

#[test]
fn jwks_parsing_skips_keys_it_must_not_or_cannot_use() {
    let ec = TestKey::generate(Algorithm::ES256);
    let ed = TestKey::generate(Algorithm::EdDSA);
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let mut enc = ec.jwk("enc");
    enc["use"] = json!("enc");
    let mut wrap_only = ec.jwk("wrap");
    wrap_only["key_ops"] = json!(["wrapKey"]);
    let mut bad_alg = rsa.jwk("rsa-es");
    bad_alg["alg"] = json!("ES256");
    let mut unknown_alg = rsa.jwk("rsa-x");
    unknown_alg["alg"] = json!("RS1");
    let doc = json!({"keys": [
        ec.jwk("ec"), ed.jwk("ed"), rsa.jwk("rsa"), enc, wrap_only, bad_alg, unknown_alg,
        {"kty": "oct", "k": b64(SECRET), "kid": "hmac"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
        {"kty": "OKP", "crv": "X25519", "x": b64([0u8; 32]), "kid": "x25519"},
        {"kty": "RSA", "n": b64([0xffu8; 128]), "e": "AQAB", "kid": "rsa-1024"},
        {"kty": "RSA", "kid": "no-n"},
        "not an object",
    ]});
    let (set, skipped) = KeySet::from_jwks(&doc).unwrap();
    assert_eq!((set.len(), skipped), (3, 10));
    assert!(matches!(set.candidates(Some("ec"), JwtAlgorithm::Es256), Candidates::Keys(k) if k.len() == 1));
    assert!(matches!(set.candidates(Some("hmac"), JwtAlgorithm::Hs256), Candidates::UnknownKid));
    assert!(KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": "AAAA"}]})).is_err());
    assert!(KeySet::from_jwks(&json!([1, 2])).is_err());
}

#[test]
fn a_jwk_alg_restricts_its_key() {
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let mut jwk = rsa.jwk("r");
    jwk["alg"] = json!("PS256");
    let (set, _) = KeySet::from_jwks(&json!({"keys": [jwk]})).unwrap();
    assert!(matches!(set.candidates(Some("r"), JwtAlgorithm::Ps256), Candidates::Keys(_)));
    assert!(matches!(set.candidates(Some("r"), JwtAlgorithm::Rs256), Candidates::WrongAlgorithm));
}

#[test]
fn reads_public_keys_and_refuses_private_or_weak_ones() {
    assert_eq!(public_key_from_pem(RSA1_PUB).unwrap().kind, KeyKind::Rsa);
    assert_eq!(public_key_from_pem(&TestKey::generate(Algorithm::ES384).public_pem).unwrap().kind, KeyKind::EcP384);
    assert_eq!(public_key_from_pem(&TestKey::generate(Algorithm::EdDSA).public_pem).unwrap().kind, KeyKind::Ed25519);
    let private = public_key_from_pem(RSA1_KEY).unwrap_err();
    assert!(private.contains("private key"), "{private}");
    assert!(!private.contains("MII"), "no key material in messages");
    assert!(public_key_from_pem("hello").is_err());
    assert!(public_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    assert!(public_key_from_pem("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").is_err());
    // A 1024-bit RSA key is refused.
    let weak = keys::rsa_public_key_der(&[0xff; 128], &[1, 0, 1]);
    assert!(weak.is_none());
}

// ------------------------------------------------------------------------------------------------------------
// configuration

#[test]
fn config_issues_name_every_field_and_never_show_the_secret() {
    let issues = compile_err(json!({
        "algorithms": ["HS256", "RS256"],
        "secret": "short-secret-123",
        "issuer": "",
        "audiences": [""],
        "required_claims": [""],
        "leeway": "2h",
        "max_token_size": "1MiB",
        "jwks": {"timeout": "0s", "refresh_interval": "1m", "min_refresh_interval": "5m"},
        "cache": {"max_ttl": "0s"},
        "from": [{"header": "x", "cookie": "y"}],
        "claims": {"headers": {"email": "not a header"}},
    }));
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for path in [
        "secret",
        "algorithms",
        "issuer",
        "audiences[0]",
        "required_claims[0]",
        "leeway",
        "max_token_size",
        "jwks.timeout",
        "jwks.min_refresh_interval",
        "cache.max_ttl",
        "from[0]",
        "claims.headers.email",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    for issue in &issues {
        assert!(!issue.message.contains("short-secret"), "{issue:?}");
    }
    let cfg = config(json!({"algorithms": ["HS256"], "secret": "short-secret-123"}));
    assert!(!format!("{cfg:?}").contains("short-secret"));
    assert!(!serde_json::to_string(&cfg).unwrap().contains("short-secret"));
}

#[test]
fn config_needs_exactly_one_key_source_and_safe_urls() {
    let none = compile_err(json!({"algorithms": ["RS256"]}));
    assert_eq!(none[0].path, "");
    let two =
        compile_err(json!({"algorithms": ["RS256"], "keys": [{"pem": RSA1_PUB}], "jwks_url": "https://a.test/jwks"}));
    assert_eq!(two[0].path, "");
    let empty = compile_err(json!({"algorithms": [], "jwks_url": "https://a.test/jwks"}));
    assert!(empty.iter().any(|i| i.path == "algorithms"));
    let http = compile_err(json!({"algorithms": ["RS256"], "jwks_url": "http://idp.example.com/jwks"}));
    assert_eq!(http[0].path, "jwks_url");
    assert!(http[0].message.contains("https"));
    compile(json!({"algorithms": ["RS256"], "jwks_url": "http://idp.internal/jwks", "jwks": {"allow_http": true}}));
    compile(json!({"algorithms": ["RS256"], "jwks_url": "http://localhost:8080/jwks"}));
    compile(json!({"algorithms": ["RS256"], "discovery": "https://idp.example.com/realms/x"}));
    let relative = compile_err(json!({"algorithms": ["RS256"], "discovery": "/realms/x"}));
    assert_eq!(relative[0].path, "discovery");
    let private = compile_err(json!({"algorithms": ["RS256"], "keys": [{"pem": RSA1_KEY}]}));
    assert_eq!(private[0].path, "keys[0].pem");
    let unused = compile_err(json!({"algorithms": ["ES256"], "keys": [{"pem": RSA1_PUB}]}));
    assert_eq!(unused[0].path, "keys[0]");
    let both = compile_err(json!({"algorithms": ["RS256"], "keys": [{"pem": RSA1_PUB, "pem_file": "x.pem"}]}));
    assert_eq!(both[0].path, "keys[0]");
    let missing = compile_err(json!({"algorithms": ["RS256"], "keys": [{"pem_file": "does-not-exist.pem"}]}));
    assert_eq!(missing[0].path, "keys[0].pem_file");
    let dup = compile_err(
        json!({"algorithms": ["RS256"], "keys": [{"kid": "a", "pem": RSA1_PUB}, {"kid": "a", "pem": RSA1_PUB}]}),
    );
    assert_eq!(dup[0].path, "keys[1].kid");
    let rsa_with_secret = compile_err(json!({"algorithms": ["RS256"], "secret": SECRET}));
    assert_eq!(rsa_with_secret[0].path, "algorithms");
    let bad_ca =
        compile_err(json!({"algorithms": ["RS256"], "jwks_url": "https://a.test/j", "jwks": {"ca": "nope.pem"}}));
    assert_eq!(bad_ca[0].path, "jwks.ca");
}

#[test]
fn config_refuses_unknown_fields_and_the_none_algorithm() {
    assert!(serde_json::from_value::<JwtConfig>(json!({"algorithms": ["RS256"], "jwks_uri": "x"})).is_err());
    assert!(serde_json::from_value::<JwtConfig>(json!({"algorithms": ["none"]})).is_err());
    assert!(serde_json::from_value::<JwtConfig>(json!({"algorithms": ["rs256"]})).is_err());
    assert!(serde_json::from_value::<JwtConfig>(json!({"jwks_url": "x"})).is_err(), "algorithms is required");
    for alg in JwtAlgorithm::ALL {
        assert_eq!(serde_json::to_value(alg).unwrap(), json!(alg.name()));
        assert_eq!(JwtAlgorithm::from_name(alg.name()), Some(alg));
    }
}

#[test]
fn every_config_field_is_documented_in_the_schema() {
    fn check(schema: &Value, defs: &Value, seen: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap();
            if !seen.iter().any(|s| s == name) {
                seen.push(name.to_string());
                check(&defs[name], defs, seen);
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (field, prop) in props {
                assert!(prop.get("description").is_some(), "`{field}` has no doc comment: {prop}");
                check(prop, defs, seen);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(inner) = schema.get(key) {
                check(inner, defs, seen);
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for inner in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
                check(inner, defs, seen);
            }
        }
    }
    for schema in [schemars::schema_for!(JwtConfig), schemars::schema_for!(GatewayTokenConfig)] {
        let schema = serde_json::to_value(schema).unwrap();
        let defs = schema.get("$defs").cloned().unwrap_or(json!({}));
        check(&schema, &defs, &mut Vec::new());
    }
}

#[test]
fn the_documented_yaml_example_loads_and_compiles() {
    let dir = temp_dir("yaml");
    let ca = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/idp-ca.pem"), ca.pem()).unwrap();
    let yaml = r#"
algorithms: [RS256, ES256]
jwks_url: https://idp.example.com/.well-known/jwks.json
issuer: https://idp.example.com
audiences: [orders-api]
required_claims: [sub]
leeway: 30s
require_exp: true
from:
  - header: authorization
  - cookie: session
max_token_size: 8KiB
forward_token: false
claims: { subject: sub, roles: realm_access.roles, plan: plan, headers: { email: x-user-email } }
jwks: { refresh_interval: 10m, min_refresh_interval: 30s, timeout: 3s, ca: certs/idp-ca.pem }
cache: { max_entries: 10000, max_ttl: 5m }
"#;
    let loaded = turnpike_config::load_str::<JwtConfig>("jwt.yaml", yaml, &dir, &|_| None);
    assert!(loaded.is_ok(), "{}", loaded.render_errors());
    let cfg = loaded.value.unwrap();
    assert_eq!(cfg.algorithms, [JwtAlgorithm::Rs256, JwtAlgorithm::Es256]);
    let auth = JwtAuth::compile("orders", &cfg, &JwtStates::default(), &dir).unwrap();
    assert_eq!(auth.header_names(), [HeaderName::from_static("x-user-email")]);

    let secret_yaml = "algorithms: [HS256]\nsecret: ${env:JWT_SECRET}\nissuer: https://idp.example.com\n";
    let env = |name: &str| (name == "JWT_SECRET").then(|| SECRET.to_string());
    let loaded = turnpike_config::load_str::<JwtConfig>("jwt.yaml", secret_yaml, &dir, &env);
    assert!(loaded.is_ok(), "{}", loaded.render_errors());
    let cfg = loaded.value.unwrap();
    assert_eq!(cfg.secret.as_ref().map(SecretString::expose), Some(SECRET));
    JwtAuth::compile("orders", &cfg, &JwtStates::default(), &dir).unwrap();

    let typo =
        turnpike_config::load_str::<JwtConfig>("jwt.yaml", "algorithms: [RS256]\njwks_uri: x\n", &dir, &|_| None);
    assert!(!typo.is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compiling_does_no_network_and_starts_no_task() {
    // No runtime here: a spawn would panic, a fetch could not run.
    let auth = compile(jwks_config("https://idp.invalid/jwks"));
    assert_eq!(auth.stats(), JwtStats::default());
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turnpike-jwt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ------------------------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_decodes_without_verifying_and_never_panics() {
    let token = raw_token(json!({"alg": "RS256", "kid": "k", "typ": "JWT", "x": 1}), &json!({"sub": "u"}), b"sig");
    let parts = inspect(&token).unwrap();
    assert_eq!(parts.header.alg, "RS256");
    assert_eq!(parts.header.kid.as_deref(), Some("k"));
    assert!(!parts.header.crit);
    assert_eq!(parts.claims["sub"], "u");
    assert_eq!(format!("{}.{}", parts.signing_input, parts.signature), token);
    for input in ["", ".", "..", "...", "a.b.c", "\u{0}.\u{0}.\u{0}", "é.é.é", "eyJ.eyJ.x", "e30.e30.", "e30.e30.e30"]
    {
        let _ = inspect(input);
    }
    assert!(inspect("e30.e30.").is_err(), "a header without alg");
    let nested = format!("{}.{}.x", b64(format!("{}{}", "[".repeat(200), "]".repeat(200))), b64("{}"));
    assert!(inspect(&nested).is_err());
    let deep_claims = raw_token(json!({"alg": "HS256"}), &json!({"a": {"b": {"c": [1, 2, {"d": null}]}}}), b"s");
    assert!(inspect(&deep_claims).is_ok());
}

#[test]
fn verify_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let auth = compile(secret_config());
    let token = hmac_token(Algorithm::HS256, SECRET.as_bytes(), None, &claims());
    let found = found(&auth, &token);
    let future = auth.verify(&found);
    assert_send(&future);
}

// ------------------------------------------------------------------------------------------------------------
// the gateway-signed token

fn signer_config(value: Value) -> GatewayTokenConfig {
    serde_json::from_value(value).unwrap()
}

fn sample_identity() -> Identity {
    let mut identity = Identity::new(IdentitySource::Jwt, Some(Arc::from("u-1")));
    identity.roles = vec![Arc::from("admin")];
    identity.scopes = vec![Arc::from("orders:read"), Arc::from("orders:write")];
    identity.plan = Some(Arc::from("pro"));
    identity
}

#[tokio::test]
async fn the_gateway_signer_round_trips_through_the_public_key() {
    let ec = TestKey::generate(Algorithm::ES256);
    let ed = TestKey::generate(Algorithm::EdDSA);
    let rsa = TestKey::rsa(RSA1_KEY, Algorithm::RS256);
    let cases = [("ES256", &ec), ("EdDSA", &ed), ("RS256", &rsa)];
    for (alg, key) in cases {
        let signer = GatewaySigner::compile(
            &signer_config(json!({"algorithm": alg, "key_pem": key.private_pem, "issuer": "turnpike", "audience": "orders", "kid": "gw-1"})),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(signer.header(), "x-gateway-token");
        let token = signer.sign(&sample_identity()).unwrap();
        // Verified by the service with the public key...
        let verifier = compile(json!({
            "algorithms": [alg], "keys": [{"kid": "gw-1", "pem": key.public_pem}],
            "issuer": "turnpike", "audiences": ["orders"], "leeway": "0s",
        }));
        let identity = check(&verifier, &token).await.unwrap();
        assert_eq!(identity.subject.as_deref(), Some("u-1"), "{alg}");
        assert!(identity.has_role("admin") && identity.has_scope("orders:write"), "{alg}");
        assert_eq!(identity.plan.as_deref(), Some("pro"));
        assert_eq!(identity.claim("auth"), Some(&json!("jwt")));
        let exp = identity.claim("exp").unwrap().as_i64().unwrap();
        assert!((now() + 55..=now() + 61).contains(&exp), "{alg}: ttl 60s");
        // ...and by the JWKS it publishes.
        let jwks = signer.public_jwks().unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(key.alg);
        validation.set_issuer(&["turnpike"]);
        validation.set_audience(&["orders"]);
        let decoded =
            jsonwebtoken::decode::<Value>(&token, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation)
                .unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("gw-1"));
        assert_ne!(signer.sign(&sample_identity()).unwrap(), token, "a fresh jti each time");
    }
    let hs = GatewaySigner::compile(
        &signer_config(json!({"algorithm": "HS256", "secret": SECRET, "issuer": "turnpike", "header": "X-Identity"})),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(hs.header(), "x-identity");
    assert!(hs.public_jwks().is_none());
    let token = hs.sign(&sample_identity()).unwrap();
    assert!(
        check(&compile(json!({"algorithms": ["HS256"], "secret": SECRET, "issuer": "turnpike"})), &token).await.is_ok()
    );
}

#[test]
fn the_gateway_signer_refuses_wrong_keys_without_showing_them() {
    let ec = TestKey::generate(Algorithm::ES256);
    let cases = [
        (json!({"algorithm": "ES256", "issuer": "t"}), ""),
        (json!({"algorithm": "ES256", "key_pem": ec.private_pem, "secret": SECRET, "issuer": "t"}), ""),
        (json!({"algorithm": "RS256", "key_pem": ec.private_pem, "issuer": "t"}), "key_pem"),
        (json!({"algorithm": "ES256", "key_pem": ec.public_pem, "issuer": "t"}), "key_pem"),
        (json!({"algorithm": "ES256", "key_pem": "junk", "issuer": "t"}), "key_pem"),
        (json!({"algorithm": "ES256", "key_file": "missing.pem", "issuer": "t"}), "key_file"),
        (json!({"algorithm": "ES256", "secret": SECRET, "issuer": "t"}), "secret"),
        (json!({"algorithm": "HS256", "secret": "short", "issuer": "t"}), "secret"),
        (json!({"algorithm": "HS256", "key_pem": ec.private_pem, "issuer": "t"}), "key_pem"),
        (json!({"algorithm": "HS256", "secret": SECRET, "issuer": ""}), "issuer"),
        (json!({"algorithm": "HS256", "secret": SECRET, "issuer": "t", "ttl": "2h"}), "ttl"),
        (json!({"algorithm": "HS256", "secret": SECRET, "issuer": "t", "header": "bad header"}), "header"),
    ];
    for (cfg, path) in cases {
        let issues = GatewaySigner::compile(&signer_config(cfg.clone()), Path::new(".")).unwrap_err();
        assert!(issues.iter().any(|i| i.path == path), "{cfg}: {issues:?}");
        for issue in &issues {
            assert!(!issue.message.contains("MII") && !issue.message.contains(SECRET), "{issue:?}");
        }
    }
    assert!(
        serde_json::from_value::<GatewayTokenConfig>(json!({"algorithm": "PS256", "secret": SECRET, "issuer": "t"}))
            .is_err()
    );
    let cfg = signer_config(json!({"algorithm": "ES256", "key_pem": ec.private_pem, "issuer": "t"}));
    assert!(!format!("{cfg:?}").contains("PRIVATE"));
}
