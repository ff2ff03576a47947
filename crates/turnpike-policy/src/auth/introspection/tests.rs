//! Against a real RFC 7662 endpoint on loopback that the test controls: its answers per token, outages (slow,
//! 5xx, garbage, down), the client credentials it requires, and how many calls it got.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::auth::api_key::Secret;
use crate::auth::claims::ClaimsConfig;
use crate::auth::token::percent_decode;

const CLIENT_ID: &str = "gateway";
const SECRET: &str = "s3cr3t-client-secret-value";

#[derive(Clone)]
enum Behavior {
    Normal,
    Slow(Duration),
    Status(u16),
    Body(&'static str),
}

/// An introspection endpoint.
struct Idp {
    calls: AtomicUsize,
    behavior: Mutex<Behavior>,
    /// How the last caller authenticated (`basic`, `post`) and the hint it sent.
    last: Mutex<Option<(&'static str, Option<String>)>>,
    /// `exp` given to a token the first time it was seen (`short` tokens).
    exps: Mutex<HashMap<String, u64>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Idp {
    async fn start() -> (Arc<Idp>, String) {
        let idp = Arc::new(Idp {
            calls: AtomicUsize::new(0),
            behavior: Mutex::new(Behavior::Normal),
            last: Mutex::new(None),
            exps: Mutex::new(HashMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/introspect", listener.local_addr().unwrap());
        let server = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let idp = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| idp.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (idp, url)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let behavior = self.behavior.lock().unwrap().clone();
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let form: HashMap<String, String> = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        match behavior {
            Behavior::Normal => {}
            Behavior::Slow(delay) => tokio::time::sleep(delay).await,
            Behavior::Status(status) => return Ok(reply(status, "{\"error\": \"boom\"}")),
            Behavior::Body(text) => return Ok(reply(200, text)),
        }
        use base64::Engine;
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
        let basic_ok = parts.headers.get("authorization").is_some_and(|v| v == basic.as_str());
        let post_ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(SECRET);
        // Exactly one way of authenticating the client (RFC 6749 section 2.3).
        let in_header = parts.headers.contains_key("authorization");
        let in_form = form.contains_key("client_id") || form.contains_key("client_secret");
        let method = match (in_header, in_form) {
            (true, false) if basic_ok => "basic",
            (false, true) if post_ok => "post",
            _ => return Ok(reply(401, "{\"error\": \"invalid_client\"}")),
        };
        *self.last.lock().unwrap() = Some((method, form.get("token_type_hint").cloned()));
        if parts.headers.get("content-type").is_none_or(|v| v != "application/x-www-form-urlencoded") {
            return Ok(reply(400, "{\"error\": \"invalid_request\"}"));
        }
        let token = form.get("token").cloned().unwrap_or_default();
        let now = unix_now();
        let answer = match token.as_str() {
            "inactive" => json!({"active": false}),
            "expired" => json!({"active": true, "sub": "u-old", "exp": now - 60}),
            "not-yet" => json!({"active": true, "sub": "u-new", "nbf": now + 3600}),
            "no-exp" => json!({"active": true, "sub": "u-forever"}),
            t if t.starts_with("short") => {
                let exp = *self.exps.lock().unwrap().entry(t.to_string()).or_insert(now + 2);
                json!({"active": true, "sub": "u-short", "exp": exp})
            }
            t => match t.strip_prefix("tok-") {
                Some(user) => json!({
                    "active": true, "sub": user, "client_id": "app", "scope": "orders:read orders:write",
                    "roles": ["reader"], "plan": "pro", "email": format!("{user}@example.com"), "exp": now + 3600,
                    "token_type": "Bearer"
                }),
                None => json!({"active": false}),
            },
        };
        Ok(reply(200, &answer.to_string()))
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    resp
}

fn config(url: &str, extra: Value) -> IntrospectionConfig {
    let mut value = json!({
        "url": url, "client_id": CLIENT_ID, "client_secret": SECRET, "timeout": "500ms",
        "claims": {"headers": {"email": "x-user-email"}}
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut value, extra) {
        base.extend(extra);
    }
    serde_json::from_value(value).unwrap()
}

fn compile(url: &str, extra: Value) -> IntrospectionAuth {
    IntrospectionAuth::compile("orders", &config(url, extra), &IntrospectionStates::default(), Path::new(".")).unwrap()
}

fn found(auth: &IntrospectionAuth, token: &str) -> FoundToken {
    let req = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
    let input = AuthInput { method: req.method(), uri: req.uri(), headers: req.headers(), client_cert: None };
    match auth.presented(&input) {
        Presented::Present(found) => found,
        other => panic!("a token was expected, got {other:?}"),
    }
}

async fn verify(auth: &IntrospectionAuth, token: &str) -> Result<Arc<Identity>, AuthFailure> {
    auth.verify(&found(auth, token)).await
}

#[tokio::test]
async fn an_active_token_becomes_an_identity_with_its_claims_and_scopes() {
    let (idp, url) = Idp::start().await;
    let auth = compile(&url, json!({}));
    let identity = verify(&auth, "tok-alice").await.unwrap();
    assert_eq!(identity.source, IdentitySource::Introspection);
    assert_eq!(identity.subject.as_deref(), Some("alice"));
    assert!(identity.has_scope("orders:read") && identity.has_scope("orders:write"));
    assert!(identity.has_role("reader"));
    assert_eq!(identity.plan.as_deref(), Some("pro"));
    assert_eq!(identity.claim("client_id"), Some(&json!("app")));
    assert_eq!(
        identity.headers,
        [(http::HeaderName::from_static("x-user-email"), "alice@example.com".parse().unwrap())]
    );
    assert_eq!(*idp.last.lock().unwrap(), Some(("basic", Some("access_token".to_string()))));
    assert_eq!(auth.header_names(), [http::HeaderName::from_static("x-user-email")]);
    assert_eq!(auth.challenge(), "Bearer");
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let (idp, url) = Idp::start().await;
    let auth = compile(&url, json!({"auth_method": "client_secret_post", "token_type_hint": null}));
    assert!(verify(&auth, "tok-bob").await.is_ok());
    assert_eq!(*idp.last.lock().unwrap(), Some(("post", None)));

    // Wrong credentials: the endpoint refuses the gateway, which is an outage for the request, never a pass.
    for method in ["client_secret_basic", "client_secret_post"] {
        let wrong = compile(&url, json!({"auth_method": method, "client_secret": "wrong"}));
        assert_eq!(verify(&wrong, "tok-bob").await.unwrap_err(), AuthFailure::Unavailable("introspection"));
    }
}

#[tokio::test]
async fn an_inactive_token_is_invalid_and_not_cached() {
    let (idp, url) = Idp::start().await;
    let auth = compile(&url, json!({}));
    for _ in 0..2 {
        assert_eq!(verify(&auth, "inactive").await.unwrap_err(), AuthFailure::Invalid("inactive token"));
    }
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn an_exp_in_the_past_or_an_nbf_in_the_future_is_invalid() {
    let (_idp, url) = Idp::start().await;
    let auth = compile(&url, json!({}));
    assert_eq!(verify(&auth, "expired").await.unwrap_err(), AuthFailure::Invalid("expired token"));
    assert_eq!(verify(&auth, "not-yet").await.unwrap_err(), AuthFailure::Invalid("token not valid yet"));
}

#[tokio::test]
async fn repeated_tokens_are_answered_from_the_cache_across_reloads() {
    let (idp, url) = Idp::start().await;
    let states = IntrospectionStates::default();
    let config = config(&url, json!({}));
    let auth = IntrospectionAuth::compile("orders", &config, &states, Path::new(".")).unwrap();
    let first = verify(&auth, "tok-carol").await.unwrap();
    for _ in 0..5 {
        assert!(Arc::ptr_eq(&first, &verify(&auth, "tok-carol").await.unwrap()));
    }
    assert_eq!(idp.calls(), 1);
    assert!(verify(&auth, "no-exp").await.is_ok());
    assert!(verify(&auth, "no-exp").await.is_ok());
    assert_eq!(idp.calls(), 2);

    // A reload compiles the policy again: same id and endpoint, same cache.
    let reloaded = IntrospectionAuth::compile("orders", &config, &states, Path::new(".")).unwrap();
    drop(auth);
    assert!(verify(&reloaded, "tok-carol").await.is_ok());
    assert_eq!(idp.calls(), 2);
    // Another policy, or a changed claims mapping, starts empty.
    let other = IntrospectionAuth::compile("billing", &config, &states, Path::new(".")).unwrap();
    assert!(verify(&other, "tok-carol").await.is_ok());
    let remapped = IntrospectionConfig { claims: ClaimsConfig::default(), ..config.clone() };
    let remapped = IntrospectionAuth::compile("orders", &remapped, &states, Path::new(".")).unwrap();
    assert!(verify(&remapped, "tok-carol").await.unwrap().headers.is_empty());
    assert_eq!(idp.calls(), 4);
}

#[tokio::test]
async fn the_cache_is_bounded_by_the_tokens_exp() {
    let (idp, url) = Idp::start().await;
    let auth = compile(&url, json!({}));
    // `short` expires one to two seconds from now (exp is in whole seconds).
    assert!(verify(&auth, "short").await.is_ok());
    assert!(verify(&auth, "short").await.is_ok());
    assert_eq!(idp.calls(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Past its exp the cache no longer answers, and the endpoint's answer (same exp) is refused.
    assert_eq!(verify(&auth, "short").await.unwrap_err(), AuthFailure::Invalid("expired token"));
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn the_cache_is_bounded_by_max_ttl_and_max_entries() {
    let (idp, url) = Idp::start().await;
    let auth = compile(&url, json!({"cache": {"max_ttl": "200ms", "max_entries": 1}}));
    assert!(verify(&auth, "tok-dave").await.is_ok());
    assert!(verify(&auth, "tok-dave").await.is_ok());
    assert_eq!(idp.calls(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(verify(&auth, "tok-dave").await.is_ok());
    assert_eq!(idp.calls(), 2, "max_ttl passed");
    assert!(verify(&auth, "tok-erin").await.is_ok());
    assert!(verify(&auth, "tok-dave").await.is_ok());
    assert_eq!(idp.calls(), 4, "one entry only: erin evicted dave");
    assert_eq!(auth.state.cached(), 1);

    let uncached = compile(&url, json!({"cache": {"max_entries": 0}}));
    assert!(verify(&uncached, "tok-dave").await.is_ok());
    assert!(verify(&uncached, "tok-dave").await.is_ok());
    assert_eq!(idp.calls(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_token_share_one_call() {
    let (idp, url) = Idp::start().await;
    idp.set(Behavior::Slow(Duration::from_millis(200)));
    let auth = Arc::new(compile(&url, json!({"timeout": "2s"})));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (auth, found) = (auth.clone(), found(&auth, "tok-frank"));
        tasks.spawn(async move { auth.verify(&found).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().subject.as_deref(), Some("frank"));
    }
    assert_eq!(idp.calls(), 1);
    assert_eq!(auth.state.lock().inflight.len(), 0);
}

#[tokio::test]
async fn a_request_that_goes_away_leaves_no_call_in_flight() {
    let (idp, url) = Idp::start().await;
    idp.set(Behavior::Slow(Duration::from_secs(5)));
    let auth = compile(&url, json!({"timeout": "2s"}));
    let found = found(&auth, "tok-gina");
    assert!(tokio::time::timeout(Duration::from_millis(100), auth.verify(&found)).await.is_err());
    assert_eq!(auth.state.lock().inflight.len(), 0);
}

/// The outcome of one verification during an outage, and how long it took.
async fn during_outage(auth: &IntrospectionAuth, token: &str) -> (Result<Arc<Identity>, AuthFailure>, Duration) {
    let start = Instant::now();
    let result = verify(auth, token).await;
    (result, start.elapsed())
}

#[tokio::test]
async fn an_outage_is_unavailable_within_the_timeout_never_a_pass() {
    let (idp, url) = Idp::start().await;
    let timeout = Duration::from_millis(300);
    let margin = Duration::from_millis(400);
    let auth = compile(&url, json!({"timeout": "300ms"}));
    let outages = [
        Behavior::Slow(Duration::from_secs(5)),
        Behavior::Status(500),
        Behavior::Status(503),
        Behavior::Body("<html>oops</html>"),
        Behavior::Body("[1, 2]"),
        Behavior::Body("{\"sub\": \"no-active\"}"),
        Behavior::Body("{\"active\": \"true\"}"),
        Behavior::Body("{\"active\": true, \"exp\": \"soon\"}"),
    ];
    for (i, behavior) in outages.into_iter().enumerate() {
        idp.set(behavior);
        let (result, took) = during_outage(&auth, &format!("tok-outage{i}")).await;
        assert_eq!(result.unwrap_err(), AuthFailure::Unavailable("introspection"), "outage {i}");
        assert!(took < timeout + margin, "outage {i} took {took:?}");
    }
    assert_eq!(auth.state.cached(), 0, "failures are never cached");

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = compile(&format!("http://127.0.0.1:{port}/introspect"), json!({"timeout": "300ms"}));
    let (result, took) = during_outage(&down, "tok-henry").await;
    assert_eq!(result.unwrap_err(), AuthFailure::Unavailable("introspection"));
    assert!(took < timeout + margin, "took {took:?}");

    // Back to normal: the same token now passes (the failure was not remembered).
    idp.set(Behavior::Normal);
    assert!(verify(&auth, "tok-outage0").await.is_ok());
}

#[tokio::test]
async fn the_token_is_stripped_unless_forwarded_and_never_from_the_query() {
    let (_idp, url) = Idp::start().await;
    let from = json!([{"header": "authorization"}, {"query": "access_token"}]);
    for (forward, header_kept) in [(false, false), (true, true)] {
        let auth = compile(&url, json!({"from": from, "forward_token": forward}));
        let req =
            Request::get("/o?access_token=tok-ivy&x=1").header("authorization", "Bearer tok-ivy").body(()).unwrap();
        let (mut parts, ()) = req.into_parts();
        let input = AuthInput { method: &parts.method, uri: &parts.uri, headers: &parts.headers, client_cert: None };
        let Presented::Present(found) = auth.presented(&input) else { panic!("token expected") };
        assert!(auth.verify(&found).await.is_ok());
        auth.strip(&found, &mut parts);
        assert_eq!(parts.uri, "/o?x=1");
        assert_eq!(parts.headers.contains_key("authorization"), header_kept);
    }
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_debug_output_or_errors() {
    let (idp, url) = Idp::start().await;
    let config = config(&url, json!({}));
    let auth = compile(&url, json!({}));
    let mut texts = vec![format!("{config:?}"), format!("{config:#?}"), serde_json::to_string(&config).unwrap()];
    texts.push(format!("{:?}", verify(&auth, "tok-secret-user-token").await));
    texts.push(format!("{:?}", verify(&auth, "inactive").await));
    idp.set(Behavior::Status(500));
    texts.push(format!("{:?}", verify(&auth, "tok-other-secret-token").await));
    texts.push(format!("{auth:?}"));
    let bad = IntrospectionConfig { client_id: String::new(), url: "ftp://x".into(), ..config.clone() };
    texts.push(format!("{:?}", IntrospectionAuth::compile("x", &bad, &IntrospectionStates::default(), Path::new("."))));
    for text in &texts {
        for secret in [SECRET, "tok-secret-user-token", "tok-other-secret-token"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert!(texts[0].contains("<redacted>") && texts[2].contains("<redacted>"));
}

#[test]
fn config_errors_are_issues_at_their_fields() {
    let states = IntrospectionStates::default();
    let issues = |extra: Value| -> Vec<String> {
        let config = config("https://idp.example.com/introspect", extra);
        match IntrospectionAuth::compile("p", &config, &states, Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(issues) => issues.into_iter().map(|i| i.path).collect(),
        }
    };
    assert!(issues(json!({})).is_empty());
    assert_eq!(issues(json!({"url": "idp.example.com/introspect"})), ["url"]);
    assert_eq!(issues(json!({"url": "https://user:pw@idp.example.com/introspect"})), ["url"]);
    assert_eq!(issues(json!({"client_id": "", "client_secret": ""})), ["client_id", "client_secret"]);
    assert_eq!(issues(json!({"timeout": "0s", "token_type_hint": ""})), ["timeout", "token_type_hint"]);
    assert_eq!(issues(json!({"from": [{"cookie": "a", "query": "b"}]})), ["from[0]"]);
    assert_eq!(issues(json!({"claims": {"headers": {"email": "bad header"}}})), ["claims.headers.email"]);
    assert_eq!(issues(json!({"ca": "missing-ca.pem"})), ["ca"]);

    let defaults = config("https://idp.example.com/introspect", json!({}));
    assert_eq!(defaults.auth_method, ClientAuthMethod::ClientSecretBasic);
    assert_eq!(defaults.timeout, turnpike_config::Duration::from_millis(500));
    assert_eq!(defaults.cache, IntrospectionCacheConfig::default());
    assert_eq!(defaults.token_type_hint.as_deref(), Some("access_token"));
    assert!(!defaults.forward_token);
    let mut unknown = serde_json::to_value(&defaults).unwrap();
    unknown["cach"] = json!({});
    assert!(serde_json::from_value::<IntrospectionConfig>(unknown).is_err());
}

#[tokio::test]
async fn a_private_ca_is_read_relative_to_the_config() {
    let dir = std::env::temp_dir().join(format!("turnpike-introspection-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["idp.internal".to_string()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a certificate").unwrap();
    let states = IntrospectionStates::default();
    let with = |ca: &str| {
        let config = config("https://idp.internal/introspect", json!({"ca": ca}));
        IntrospectionAuth::compile("p", &config, &states, &dir).map(|_| ())
    };
    assert!(with("ca.pem").is_ok());
    let issues = with("garbage.pem").unwrap_err();
    assert_eq!(issues[0].path, "ca");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_secret_wrapper_hides_its_value() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn the_config_schema_documents_every_field() {
    let schema = serde_json::to_value(schemars::schema_for!(IntrospectionConfig)).unwrap();
    crate::auth::api_key::tests::assert_documented(&schema);
}
