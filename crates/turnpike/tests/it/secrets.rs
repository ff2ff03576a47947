//! Secrets never leak: through the real binary with debug logs, no configured secret (JWT secret, plaintext API
//! key, introspection client secret) and no presented credential (API keys, bearer tokens, cookies) appears in the
//! process's output (access log and logs) or in a response body; `turnpike validate` does not print secrets that
//! sit next to (or in) a configuration error.

use std::process::{Command, Stdio};
use std::time::Duration;

use http::Request;
use serde_json::json;
use turnpike_test::client::{Body, empty};
use turnpike_test::{Client, MockReply, MockUpstream, Recorded};

use crate::process::{Gateway, TempDir, bound_addr, wait_listening};

const JWT_SECRET: &str = "jwt-hs256-secret-never-logged-0123456789";
const API_KEY: &str = "plain-api-key-never-logged-4242";
const CLIENT_SECRET: &str = "introspection-client-secret-never-logged";
/// base64("turnpike-gw:introspection-client-secret-never-logged"): the Basic credentials sent to the endpoint.
const CLIENT_BASIC_B64: &str = "dHVybnBpa2UtZ3c6aW50cm9zcGVjdGlvbi1jbGllbnQtc2VjcmV0LW5ldmVyLWxvZ2dlZA==";
const GOOD_OPAQUE: &str = "opaque-good-token-never-logged-77";
const BAD_OPAQUE: &str = "opaque-inactive-token-never-logged-78";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn sign(secret: &str, sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "exp": now() + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn gateway_config(port: u16, upstream: std::net::SocketAddr, idp: std::net::SocketAddr) -> String {
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        r#"
server:
  watch: false
listeners: [{{ name: public, address: "127.0.0.1:{port}" }}]
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
auth_policies:
  tokens: {{ jwt: {{ algorithms: [HS256], secret: "{JWT_SECRET}" }} }}
  session: {{ jwt: {{ algorithms: [HS256], secret: "{JWT_SECRET}", from: [{{ cookie: session }}] }} }}
  keys: {{ api_key: {{ header: x-api-key }} }}
  opaque:
    introspection:
      url: "http://{idp}/introspect"
      client_id: turnpike-gw
      client_secret: "{CLIENT_SECRET}"
      timeout: 500ms
  opaque_down:
    introspection:
      url: "http://{down}/introspect"
      client_id: turnpike-gw
      client_secret: "{CLIENT_SECRET}"
      timeout: 500ms
consumers:
  - id: acme
    plan: gold
    keys: [{{ key: "{API_KEY}" }}]
routes:
  - {{ id: jwt, match: {{ prefix: /jwt }}, upstream: app, auth: {{ policies: [tokens] }} }}
  - {{ id: web, match: {{ prefix: /web }}, upstream: app, auth: {{ policies: [session] }} }}
  - {{ id: key, match: {{ prefix: /key }}, upstream: app, auth: {{ policies: [keys] }} }}
  - {{ id: intro, match: {{ prefix: /intro }}, upstream: app, auth: {{ policies: [opaque] }} }}
  - {{ id: intro-down, match: {{ prefix: /down }}, upstream: app, auth: {{ policies: [opaque_down] }} }}
"#
    )
}

/// A request path, its headers, and the status it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

fn req(url: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_presented_credentials_never_reach_logs_or_error_bodies() {
    // A plain-text upstream: an echo would put the request's credentials in the response body itself.
    let upstream = MockUpstream::start(|_| MockReply::text(200, "upstream ok")).await;
    let idp = MockUpstream::start(|r: &Recorded| {
        let body = String::from_utf8_lossy(&r.body);
        if body.contains(&format!("token={GOOD_OPAQUE}")) {
            MockReply::json(200, json!({ "active": true, "sub": "alice", "exp": now() + 3600 }))
        } else {
            MockReply::json(200, json!({ "active": false }))
        }
    })
    .await;
    let dir = TempDir::new("secrets");
    let file = dir.write("gateway.yaml", &gateway_config(0, upstream.addr(), idp.addr()));
    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let child = Command::new(crate::process::bin())
        .args(["run", "-c", file.to_str().unwrap(), "--workers", "2", "--no-control-socket", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .expect("spawn turnpike");
    let mut gw = Gateway { child, stdout: stdout.clone() };
    let addr = bound_addr(&gw, Duration::from_secs(10)).await;
    let addr = addr.unwrap_or_else(|| panic!("gateway did not start: {}", gw.output()));
    assert!(wait_listening(&addr, Duration::from_secs(10)).await, "gateway did not start: {}", gw.output());
    let url = |path: &str| format!("http://{addr}{path}");

    let valid_jwt = sign(JWT_SECRET, "user-1");
    let forged_jwt = sign("some-other-secret-that-is-32-bytes-long!", "user-1");
    let garbage = "garbage-bearer-token-never-logged-99";
    let wrong_key = "wrong-api-key-never-logged-1313";
    let cookie_value = "cookie-value-never-logged-5151";
    let valid_jwt_bearer = format!("Bearer {valid_jwt}");
    let forged_bearer = format!("Bearer {forged_jwt}");
    let garbage_bearer = format!("Bearer {garbage}");
    let good_opaque = format!("Bearer {GOOD_OPAQUE}");
    let bad_opaque = format!("Bearer {BAD_OPAQUE}");
    let session_cookie = format!("session={valid_jwt}; theme=dark");
    let garbage_cookie = format!("session={cookie_value}");
    let other_cookie = format!("tracking={cookie_value}");

    let client = Client::h1();
    let mut bodies = Vec::new();
    let cases: Vec<Case<'_>> = vec![
        ("/key/a", vec![("x-api-key", API_KEY)], 200),
        ("/key/b", vec![("x-api-key", wrong_key)], 401),
        ("/key/c", vec![("x-api-key", API_KEY), ("x-api-key", wrong_key)], 401),
        ("/key/d", vec![("x-api-key", API_KEY), ("cookie", &other_cookie)], 200),
        ("/jwt/a", vec![("authorization", &valid_jwt_bearer)], 200),
        ("/jwt/b", vec![("authorization", &forged_bearer)], 401),
        ("/jwt/c", vec![("authorization", &garbage_bearer)], 401),
        ("/jwt/d", vec![("authorization", &valid_jwt_bearer), ("cookie", &other_cookie)], 200),
        ("/web/a", vec![("cookie", &session_cookie)], 200),
        ("/web/b", vec![("cookie", &garbage_cookie)], 401),
        ("/intro/a", vec![("authorization", &good_opaque)], 200),
        ("/intro/b", vec![("authorization", &bad_opaque)], 401),
        ("/down/a", vec![("authorization", &good_opaque)], 503),
        ("/key/e", vec![("authorization", &garbage_bearer), ("cookie", &other_cookie)], 401),
    ];
    for (path, headers, status) in &cases {
        let reply = client.send(req(&url(path), headers)).await;
        assert_eq!(reply.status.as_u16(), *status, "{path}: {}", reply.text());
        bodies.push((path.to_string(), reply.text(), format!("{:?}", reply.headers)));
    }
    assert_eq!(idp.count(), 2, "the live endpoint was asked for both opaque tokens");
    assert_eq!(
        idp.requests()[0].header("authorization"),
        Some(format!("Basic {CLIENT_BASIC_B64}").as_str()),
        "the endpoint got the client secret (so the test's secret is in use)"
    );

    // Every request is in the access log before the process stops.
    let logged = turnpike_test::eventually(Duration::from_secs(5), || {
        cases.iter().all(|(path, _, _)| gw.output().contains(path))
    })
    .await;
    assert!(logged, "access log incomplete: {}", gw.output());
    drop(client);
    gw.signal("TERM");
    let status = gw.wait(Duration::from_secs(20));
    assert_eq!(
        status,
        Some(0),
        "no clean exit after SIGTERM: {}",
        gw.output().lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let out = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    let output = format!("{out}\n{err}");
    // Debug logging is on: the refusals are logged with their reasons (and the access log has every request).
    assert!(output.contains("authentication refused"), "debug logs expected: {output}");
    assert!(output.contains("authentication service unavailable"), "the outage is logged: {output}");

    let signature = |token: &str| token.rsplit('.').next().unwrap().to_string();
    let secrets: Vec<(&str, String)> = vec![
        ("jwt secret", JWT_SECRET.to_string()),
        ("api key", API_KEY.to_string()),
        ("client secret", CLIENT_SECRET.to_string()),
        ("basic credentials", CLIENT_BASIC_B64.to_string()),
        ("valid jwt", valid_jwt.clone()),
        ("valid jwt signature", signature(&valid_jwt)),
        ("forged jwt", forged_jwt.clone()),
        ("forged jwt signature", signature(&forged_jwt)),
        ("garbage bearer", garbage.to_string()),
        ("wrong key", wrong_key.to_string()),
        ("cookie value", cookie_value.to_string()),
        ("opaque token", GOOD_OPAQUE.to_string()),
        ("inactive opaque token", BAD_OPAQUE.to_string()),
    ];
    for (what, secret) in &secrets {
        assert!(!output.contains(secret.as_str()), "the {what} is in the process output:\n{output}");
        for (path, body, headers) in &bodies {
            assert!(!body.contains(secret.as_str()), "the {what} is in the response body of {path}: {body}");
            assert!(!headers.contains(secret.as_str()), "the {what} is in the response headers of {path}");
        }
    }
}

fn write_and_validate(dir: &TempDir, name: &str, yaml: &str, env: &[(&str, &str)]) -> String {
    let file = dir.write(name, yaml);
    let mut all = String::new();
    for format in ["text", "json"] {
        let out = Command::new(crate::process::bin())
            .args(["validate", "-c", file.to_str().unwrap(), "--format", format])
            .envs(env.iter().copied())
            .output()
            .expect("run turnpike validate");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name} ({format}) must be invalid: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

const BASE: &str = r#"
listeners: [{ name: public, address: "127.0.0.1:0" }]
upstreams:
  app: { endpoints: ["127.0.0.1:9"] }
routes:
  - { id: api, upstream: app, auth: { policies: [tokens, keys, opaque] } }
"#;

#[test]
fn validate_does_not_print_secrets_next_to_errors() {
    let dir = TempDir::new("validate-secrets");
    // Errors on the lines right next to literal secrets.
    let next_to = format!(
        r#"{BASE}
auth_policies:
  tokens:
    jwt:
      secret: "{JWT_SECRET}"
      algorithms: [HS257]
  keys: {{ api_key: {{ header: "bad header" }} }}
  opaque:
    introspection:
      url: "http://127.0.0.1:9/introspect"
      client_id: turnpike-gw
      client_secret: "{CLIENT_SECRET}"
      timeout: forever
consumers:
  - id: "not an id!"
    keys:
      - key: "{API_KEY}"
        sha256: "not-hex"
"#
    );
    let out = write_and_validate(&dir, "next-to.yaml", &next_to, &[]);
    assert!(out.contains("HS257") || out.contains("algorithms"), "the errors are reported: {out}");
    assert!(out.contains("timeout"), "{out}");
    for secret in [JWT_SECRET, CLIENT_SECRET, API_KEY] {
        assert!(!out.contains(secret), "validate printed a secret next to an error:\n{out}");
    }

    // Secrets from the environment, wrong where they are (too short, unknown field beside them).
    let env_config = format!(
        r#"{BASE}
auth_policies:
  tokens: {{ jwt: {{ algorithms: [HS256], secret: "${{env:TP_IT_JWT_SECRET}}" }} }}
  keys: {{ api_key: {{}} }}
  opaque:
    introspection:
      url: "http://127.0.0.1:9/introspect"
      client_id: turnpike-gw
      client_secret: "${{env:TP_IT_CLIENT_SECRET}}"
      colour: red
consumers:
  - id: acme
    keys: [{{ key: "${{env:TP_IT_API_KEY}}", sha256: "00" }}]
"#
    );
    let short = "short-env-jwt-secret";
    let env = [("TP_IT_JWT_SECRET", short), ("TP_IT_CLIENT_SECRET", CLIENT_SECRET), ("TP_IT_API_KEY", API_KEY)];
    let out = write_and_validate(&dir, "env.yaml", &env_config, &env);
    assert!(out.contains("colour"), "{out}");
    for secret in [short, CLIENT_SECRET, API_KEY] {
        assert!(!out.contains(secret), "validate printed a secret from the environment:\n{out}");
    }
}

#[test]
fn validate_does_not_print_a_literal_secret_on_the_line_of_an_error() {
    let dir = TempDir::new("validate-literal");
    // The secret itself is wrong (too short).
    let short = "short-literal-secret";
    let yaml = format!(
        "{BASE}\nauth_policies:\n  tokens: {{ jwt: {{ algorithms: [HS256], secret: \"{short}\" }} }}\n  keys: {{ api_key: {{}} }}\n  opaque: {{ api_key: {{}} }}\n"
    );
    let out = write_and_validate(&dir, "literal.yaml", &yaml, &[]);
    assert!(out.contains("32 bytes"), "the error is reported: {out}");
    assert!(!out.contains(short), "validate printed the secret:\n{out}");

    // A valid secret next to an error on the same line (flow style).
    let yaml = format!(
        "{BASE}\nauth_policies:\n  tokens: {{ jwt: {{ algorithms: [HS257], secret: \"{JWT_SECRET}\" }} }}\n  keys: {{ api_key: {{}} }}\n  opaque: {{ api_key: {{}} }}\nconsumers: [{{ id: \"bad id!\", keys: [{{ key: \"{API_KEY}\" }}] }}]\n"
    );
    let out = write_and_validate(&dir, "flow.yaml", &yaml, &[]);
    assert!(out.contains("HS257"), "the error is reported: {out}");
    for secret in [JWT_SECRET, API_KEY] {
        assert!(!out.contains(secret), "validate printed a secret next to an error:\n{out}");
    }
}
