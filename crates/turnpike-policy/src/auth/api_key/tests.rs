use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use turnpike_core::IdentitySource;

use super::*;

const ACME_KEY: &str = "acme-key-0123456789abcdef";
const ACME_NEW_KEY: &str = "acme-key-rotated-fedcba9876543210";
const GLOBEX_KEY: &str = "globex-key-00000000000000000";

fn hex(key: &str) -> String {
    sha256(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn consumer(id: &str, keys: Vec<KeyConfig>) -> ConsumerConfig {
    ConsumerConfig {
        id: id.into(),
        name: None,
        plan: Some("pro".into()),
        roles: vec!["partner".into()],
        metadata: [("team".to_string(), "payments".to_string())].into(),
        keys,
    }
}

fn plain(key: &str) -> KeyConfig {
    KeyConfig { sha256: None, key: Some(Secret::new(key)) }
}

fn digest(hex: &str) -> KeyConfig {
    KeyConfig { sha256: Some(hex.into()), key: None }
}

fn set(configs: &[ConsumerConfig]) -> Arc<ConsumerSet> {
    let (set, issues) = ConsumerSet::compile(configs, &[]);
    assert!(issues.is_empty(), "{issues:?}");
    Arc::new(set)
}

fn auth(config: ApiKeyConfig, consumers: &Arc<ConsumerSet>) -> ApiKeyAuth {
    ApiKeyAuth::compile(&config, consumers).unwrap()
}

fn with_query() -> ApiKeyConfig {
    ApiKeyConfig { query: Some("api_key".into()), ..ApiKeyConfig::default() }
}

fn presented(auth: &ApiKeyAuth, uri: &str, headers: &[(&str, &str)]) -> Presented<PresentedKey> {
    let uri: Uri = uri.parse().unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    auth.presented(&AuthInput { method: &Method::GET, uri: &uri, headers: &map, client_cert: None })
}

fn authenticate(auth: &ApiKeyAuth, uri: &str, headers: &[(&str, &str)]) -> Result<Arc<Identity>, AuthFailure> {
    match presented(auth, uri, headers) {
        Presented::Present(key) => auth.verify(&key),
        other => panic!("a key was expected, got {other:?}"),
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "turnpike-api-key-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_valid_key_in_the_header_becomes_the_consumers_identity() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let auth = auth(ApiKeyConfig::default(), &consumers);
    let identity = authenticate(&auth, "/orders", &[("x-api-key", ACME_KEY)]).unwrap();
    assert_eq!(identity.source, IdentitySource::ApiKey);
    assert_eq!(identity.subject.as_deref(), Some("acme"));
    assert_eq!(identity.plan.as_deref(), Some("pro"));
    assert!(identity.has_role("partner"));
    let consumer = identity.consumer.as_ref().unwrap();
    assert_eq!(&*consumer.name, "acme", "the name defaults to the id");
    assert_eq!(consumer.metadata["team"], "payments");
    assert!(Arc::ptr_eq(consumer, consumers.get("acme").unwrap()));

    let again = authenticate(&auth, "/orders", &[("x-api-key", ACME_KEY)]).unwrap();
    assert!(Arc::ptr_eq(&identity, &again), "identities are built once per consumer");
    assert_eq!(auth.challenge(), "ApiKey");
}

#[test]
fn a_key_in_the_query_is_accepted_only_when_enabled() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let header_only = auth(ApiKeyConfig::default(), &consumers);
    assert_eq!(presented(&header_only, &format!("/o?api_key={ACME_KEY}"), &[]), Presented::Absent);

    let auth = auth(with_query(), &consumers);
    let identity = authenticate(&auth, &format!("/o?x=1&api_key={ACME_KEY}"), &[]).unwrap();
    assert_eq!(identity.subject.as_deref(), Some("acme"));
    // Percent-encoding is decoded before hashing.
    let encoded = ACME_KEY.replace('-', "%2D");
    assert!(authenticate(&auth, &format!("/o?api_key={encoded}"), &[]).is_ok());
}

#[test]
fn an_unknown_key_is_invalid() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let auth = auth(with_query(), &consumers);
    assert_eq!(
        authenticate(&auth, "/", &[("x-api-key", "nope")]).unwrap_err(),
        AuthFailure::Invalid("unknown API key")
    );
    assert!(authenticate(&auth, "/?api_key=nope", &[]).is_err());
    assert_eq!(presented(&auth, "/", &[("authorization", "Bearer x")]), Presented::Absent);
}

#[test]
fn a_key_left_out_by_a_reload_is_refused_from_the_next_request_on() {
    let before = set(&[consumer("acme", vec![plain(ACME_KEY), plain(ACME_NEW_KEY)])]);
    let old = auth(ApiKeyConfig::default(), &before);
    assert!(authenticate(&old, "/", &[("x-api-key", ACME_KEY)]).is_ok());

    // A reload compiles a new consumer set and new policies from it.
    let after = set(&[consumer("acme", vec![plain(ACME_NEW_KEY)])]);
    let new = auth(ApiKeyConfig::default(), &after);
    assert_eq!(
        authenticate(&new, "/", &[("x-api-key", ACME_KEY)]).unwrap_err(),
        AuthFailure::Invalid("unknown API key")
    );
    assert!(authenticate(&new, "/", &[("x-api-key", ACME_NEW_KEY)]).is_ok());
}

#[test]
fn two_keys_of_one_consumer_both_work_during_a_rotation() {
    let consumers = set(&[
        consumer("acme", vec![digest(&hex(ACME_KEY)), plain(ACME_NEW_KEY)]),
        consumer("globex", vec![plain(GLOBEX_KEY)]),
    ]);
    assert_eq!((consumers.len(), consumers.key_count()), (2, 3));
    let auth = auth(ApiKeyConfig::default(), &consumers);
    let a = authenticate(&auth, "/", &[("x-api-key", ACME_KEY)]).unwrap();
    let b = authenticate(&auth, "/", &[("x-api-key", ACME_NEW_KEY)]).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let g = authenticate(&auth, "/", &[("x-api-key", GLOBEX_KEY)]).unwrap();
    assert_eq!(g.subject.as_deref(), Some("globex"));
}

#[test]
fn sha256_digests_and_plaintext_keys_are_equivalent() {
    let upper = hex(ACME_KEY).to_uppercase();
    for key in [digest(&hex(ACME_KEY)), digest(&upper), plain(ACME_KEY)] {
        let consumers = set(&[consumer("acme", vec![key])]);
        let auth = auth(ApiKeyConfig::default(), &consumers);
        assert!(authenticate(&auth, "/", &[("x-api-key", ACME_KEY)]).is_ok());
    }
}

#[test]
fn the_same_key_for_two_consumers_is_a_config_issue() {
    let (set, issues) = ConsumerSet::compile(
        &[consumer("acme", vec![plain(ACME_KEY)]), consumer("globex", vec![plain(GLOBEX_KEY), digest(&hex(ACME_KEY))])],
        &[],
    );
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].path, "consumers[globex].keys[1]");
    assert!(issues[0].message.contains("consumers[acme].keys[0]"), "{}", issues[0].message);
    assert_eq!(set.key_count(), 2, "the duplicate is left out");

    let (_, issues) = ConsumerSet::compile(&[consumer("acme", vec![plain(ACME_KEY), plain(ACME_KEY)])], &[]);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].path, "consumers[acme].keys[1]");
}

#[test]
fn bad_digests_ids_and_key_entries_are_config_issues() {
    let mut bad_hex = hex(ACME_KEY);
    bad_hex.replace_range(0..1, "g");
    let (set, issues) = ConsumerSet::compile(
        &[
            consumer(
                "acme",
                vec![digest(&bad_hex), digest("abc"), KeyConfig::default(), plain(""), plain(&"k".repeat(257))],
            ),
            consumer("bad id!", vec![plain(GLOBEX_KEY)]),
            consumer("acme", vec![]),
        ],
        &[],
    );
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "consumers[acme].keys[0].sha256",
            "consumers[acme].keys[1].sha256",
            "consumers[acme].keys[2]",
            "consumers[acme].keys[3].key",
            "consumers[acme].keys[4].key",
            "consumers[1].id",
            "consumers[acme].id",
        ],
        "{issues:?}"
    );
    assert!(issues[6].message.contains("already declared"));
    assert!(!issues.iter().any(|i| i.message.contains(&bad_hex)), "a digest (or a key pasted as one) is never quoted");
    assert_eq!((set.len(), set.key_count()), (1, 0));
}

#[test]
fn consumers_are_read_from_files() {
    let dir = TempDir::new();
    let yaml = dir.file(
        "consumers.yaml",
        &format!(
            "- id: globex\n  name: Globex\n  plan: free\n  keys:\n    - sha256: {}\n- id: initech\n  keys: [{{ key: {} }}]\n",
            hex(GLOBEX_KEY),
            "initech-key-0000000000000"
        ),
    );
    let json =
        dir.file("more.json", r#"[{"id": "hooli", "roles": ["admin"], "keys": [{"key": "hooli-key-0000000000000"}]}]"#);
    let (set, issues) = ConsumerSet::compile(&[consumer("acme", vec![plain(ACME_KEY)])], &[yaml, json]);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(set.len(), 4);
    assert_eq!(&*set.get("globex").unwrap().name, "Globex");
    let consumers = Arc::new(set);
    let auth = auth(ApiKeyConfig::default(), &consumers);
    assert_eq!(authenticate(&auth, "/", &[("x-api-key", GLOBEX_KEY)]).unwrap().plan.as_deref(), Some("free"));
    assert!(authenticate(&auth, "/", &[("x-api-key", "initech-key-0000000000000")]).is_ok());
    assert!(authenticate(&auth, "/", &[("x-api-key", "hooli-key-0000000000000")]).unwrap().has_role("admin"));
}

#[test]
fn a_broken_consumer_file_is_reported_with_positions() {
    let dir = TempDir::new();
    // Errors of the file (an unknown field) and semantic ones (a bad digest) are positioned alike.
    let broken = dir.file("broken.yaml", "- id: globex\n  plann: free\n  keys:\n    - sha256: nothex\n");
    let (_, issues) = ConsumerSet::compile(&[], &[dir.0.join("ok.json"), broken]);
    assert_eq!(issues.len(), 3, "{issues:?}");
    assert_eq!(issues[0].path, "consumer_files[0]");
    assert!(issues[0].message.contains("ok.json"), "{issues:?}");
    assert_eq!(issues[1].path, "consumer_files[1]");
    let file = dir.0.join("broken.yaml").display().to_string();
    assert!(issues[1].message.starts_with(&format!("{file}:2:3: unknown field `plann`")), "{issues:?}");
    assert!(issues[2].message.starts_with(&format!("{file}:4:15: `sha256` must be")), "{issues:?}");
    assert!(issues[2].message.ends_with("(at [globex].keys[0].sha256)"), "{issues:?}");

    // A consumer declared inline and in a file, the same key in both.
    let dup = dir.file("dup.yaml", &format!("- id: acme\n- id: other\n  keys: [{{ key: {ACME_KEY} }}]\n"));
    let (_, issues) = ConsumerSet::compile(&[consumer("acme", vec![plain(ACME_KEY)])], &[dup]);
    assert_eq!(issues.len(), 2, "{issues:?}");
    assert!(issues[0].message.contains("dup.yaml:1:7") && issues[0].message.contains("consumers[acme]"), "{issues:?}");
    assert!(
        issues[1].message.contains("dup.yaml:3:10") && issues[1].message.contains("already declared"),
        "{issues:?}"
    );

    let (_, issues) = ConsumerSet::compile(&[], &[dir.0.join("missing.yaml")]);
    assert!(issues[0].message.contains("missing.yaml"), "{issues:?}");
    assert!(!issues.iter().any(|i| i.message.contains(ACME_KEY)));
}

#[test]
fn a_malformed_or_conflicting_key_is_refused() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let auth = auth(with_query(), &consumers);
    let malformed =
        |uri: &str, headers: &[(&str, &str)]| matches!(presented(&auth, uri, headers), Presented::Malformed(_));
    assert!(malformed(&format!("/?api_key={ACME_KEY}"), &[("x-api-key", GLOBEX_KEY)]), "header and query differ");
    assert!(malformed("/", &[("x-api-key", ACME_KEY), ("x-api-key", ACME_KEY)]), "header twice");
    assert!(malformed(&format!("/?api_key={ACME_KEY}&api_key=x"), &[]), "query twice, different");
    assert!(malformed("/?api_key=", &[]), "empty query");
    assert!(malformed("/", &[("x-api-key", "")]), "empty header");
    assert!(malformed("/", &[("x-api-key", &"k".repeat(257))]), "too long");
    assert!(malformed(&format!("/?api_key={}", "k".repeat(257)), &[]), "too long in the query");
    // The same key in both places is fine.
    let same = presented(&auth, &format!("/?api_key={ACME_KEY}"), &[("x-api-key", ACME_KEY)]);
    assert!(matches!(&same, Presented::Present(k) if k.in_header && k.in_query), "{same:?}");
    assert!(matches!(
        presented(&auth, &format!("/?api_key={ACME_KEY}&api_key={ACME_KEY}"), &[]),
        Presented::Present(_)
    ));
}

fn stripped(auth: &ApiKeyAuth, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::get(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let (mut parts, ()) = builder.body(()).unwrap().into_parts();
    let input = AuthInput { method: &parts.method, uri: &parts.uri, headers: &parts.headers, client_cert: None };
    let Presented::Present(key) = auth.presented(&input) else { panic!("key expected") };
    auth.strip(&key, &mut parts);
    parts
}

#[test]
fn the_query_parameter_and_the_header_are_stripped() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let auth = auth(with_query(), &consumers);
    let parts = stripped(&auth, &format!("/o?a=1&api_key={ACME_KEY}&b=2"), &[("x-other", "y")]);
    assert_eq!(parts.uri, "/o?a=1&b=2");
    assert_eq!(parts.headers["x-other"], "y");
    let parts = stripped(&auth, "/o?a=1", &[("x-api-key", ACME_KEY)]);
    assert!(parts.headers.get("x-api-key").is_none());
    assert_eq!(parts.uri, "/o?a=1");
    let parts = stripped(&auth, &format!("/o?api_key={ACME_KEY}"), &[("x-api-key", ACME_KEY)]);
    assert_eq!(parts.uri, "/o");
    assert!(parts.headers.get("x-api-key").is_none());
}

#[test]
fn forward_key_keeps_the_header_but_never_the_query_parameter() {
    let consumers = set(&[consumer("acme", vec![plain(ACME_KEY)])]);
    let auth = auth(ApiKeyConfig { forward_key: true, header: "X-Key".into(), ..with_query() }, &consumers);
    let parts = stripped(&auth, &format!("/o?api_key={ACME_KEY}"), &[("x-key", ACME_KEY)]);
    assert_eq!(parts.headers["x-key"], ACME_KEY);
    assert_eq!(parts.uri, "/o");
}

#[test]
fn a_key_never_appears_in_debug_output_or_errors() {
    let configs = [consumer("acme", vec![plain(ACME_KEY), digest(&hex(GLOBEX_KEY))])];
    let consumers = set(&configs);
    let auth = auth(with_query(), &consumers);
    let mut texts = vec![
        format!("{configs:?}"),
        format!("{configs:#?}"),
        serde_json::to_string(&configs).unwrap(),
        format!("{consumers:?}"),
        format!("{auth:?}"),
    ];
    for (uri, headers) in [
        (format!("/?api_key={ACME_KEY}"), vec![("x-api-key", ACME_KEY)]),
        (format!("/?api_key={ACME_KEY}"), vec![("x-api-key", GLOBEX_KEY)]),
        ("/".to_string(), vec![("x-api-key", ACME_KEY), ("x-api-key", ACME_KEY)]),
    ] {
        let presented = presented(&auth, &uri, &headers);
        texts.push(format!("{presented:?}"));
        if let Presented::Present(key) = &presented {
            texts.push(format!("{:?}", auth.verify(key)));
        }
    }
    texts.push(format!("{:?}", authenticate(&auth, "/", &[("x-api-key", "wrong-key-wrong-key")])));
    let (_, issues) =
        ConsumerSet::compile(&[consumer("a", vec![plain(ACME_KEY)]), consumer("b", vec![plain(ACME_KEY)])], &[]);
    texts.push(format!("{issues:?}"));
    for (i, text) in texts.iter().enumerate() {
        for secret in [ACME_KEY, GLOBEX_KEY, "wrong-key-wrong-key", &hex(ACME_KEY), &hex("wrong-key-wrong-key")] {
            assert!(!text.contains(secret), "{text}");
        }
        // Digests appear only where the config holds them.
        assert!(i < 3 || !text.contains(&hex(GLOBEX_KEY)), "{text}");
    }
    assert!(texts[0].contains("<redacted>"));
}

#[test]
fn config_defaults_and_bad_names() {
    let config: ApiKeyConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, ApiKeyConfig::default());
    assert_eq!(config.header, "x-api-key");
    assert!(serde_json::from_str::<ApiKeyConfig>(r#"{"headr": "x"}"#).is_err());
    let consumers = set(&[]);
    let issues = ApiKeyAuth::compile(
        &ApiKeyConfig { header: "bad header".into(), query: Some(String::new()), forward_key: false },
        &consumers,
    )
    .unwrap_err();
    assert_eq!(issues.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(), ["header", "query"]);
    let key: KeyConfig = serde_json::from_str(r#"{"key": "abc"}"#).unwrap();
    assert_eq!(key.key.as_ref().map(Secret::expose), Some("abc"));
}

/// Every property of `schema` (and of its definitions) has a description.
pub(crate) fn assert_documented(schema: &serde_json::Value) {
    fn walk(value: &serde_json::Value, at: &str) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        assert!(prop.get("description").is_some(), "{at}.{name} has no description: {prop}");
                    }
                }
                for (k, v) in map {
                    walk(v, &format!("{at}.{k}"));
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, at)),
            _ => {}
        }
    }
    walk(schema, "");
}

#[test]
fn the_config_schema_documents_every_field() {
    for schema in [
        serde_json::to_value(schemars::schema_for!(Vec<ConsumerConfig>)).unwrap(),
        serde_json::to_value(schemars::schema_for!(ApiKeyConfig)).unwrap(),
    ] {
        assert_documented(&schema);
    }
    let schema = serde_json::to_value(schemars::schema_for!(KeyConfig)).unwrap();
    assert_eq!(schema["$defs"]["Secret"]["type"], "string", "{schema}");
}
