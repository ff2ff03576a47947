//! `${env:..}` / `${file:..}` substitution, re-resolution and redaction.

use serde::Deserialize;

use super::{Doc, TempDir, brief, load_env, no_env};
use crate::{NodeKind, Path, StrStyle, load_path};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    debug: Option<bool>,
}

#[test]
fn env_variables_are_substituted() {
    let loaded = load_env::<Server>(
        "host: ${env:HOST}\ntoken: \"Bearer ${env:TOKEN}\"\n",
        &[("HOST", "example.com"), ("TOKEN", "s3cret")],
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let server = loaded.value.unwrap();
    assert_eq!(server.host.as_deref(), Some("example.com"));
    assert_eq!(server.token.as_deref(), Some("Bearer s3cret"));
    let root = loaded.root.unwrap();
    assert!(root.get("host").unwrap().substituted);
}

#[test]
fn defaults_apply_when_unset_or_empty() {
    let loaded = load_env::<Server>(
        "host: ${env:HOST:-localhost}\ntoken: ${env:EMPTY:-fallback}\nport: ${env:PORT:-8080}\n",
        &[("EMPTY", "")],
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let server = loaded.value.unwrap();
    assert_eq!(server.host.as_deref(), Some("localhost"));
    assert_eq!(server.token.as_deref(), Some("fallback"));
    assert_eq!(server.port, Some(8080));
}

#[test]
fn several_substitutions_and_text_in_one_scalar() {
    let loaded = load_env::<Server>("host: ${env:A}.${env:B}-x:${env:C:-c}\n", &[("A", "one"), ("B", "two")]);
    assert_eq!(loaded.value.unwrap().host.as_deref(), Some("one.two-x:c"));
}

#[test]
fn missing_variable_without_default_is_an_error_at_the_scalar() {
    let loaded = load_env::<Server>("host: ${env:NOPE}\nport: 80\n", &[]);
    assert_eq!(brief(&loaded.errors), ["1:7 host: environment variable `NOPE` is not set"]);
    assert_eq!(loaded.errors[0].help.as_deref(), Some("set it, or give a default: `${env:NOPE:-default}`"));
    // The failed value is left out; the rest is read.
    let server = loaded.value.unwrap();
    assert_eq!((server.host, server.port), (None, Some(80)));
}

#[test]
fn a_failed_required_value_is_reported_once() {
    let loaded = load_env::<Doc>("routes:\n  - id: a\n    upstream: ${env:UP}\n", &[]);
    assert_eq!(brief(&loaded.errors), ["3:15 routes[a].upstream: environment variable `UP` is not set"]);
}

#[test]
fn double_dollar_is_a_literal() {
    let loaded = load_env::<Server>("host: $${env:HOST} costs $5\n", &[("HOST", "h")]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.value.unwrap().host.as_deref(), Some("${env:HOST} costs $5"));
    assert!(!loaded.root.unwrap().get("host").unwrap().substituted);
}

#[test]
fn unknown_and_unterminated_substitutions_are_errors() {
    let loaded = load_env::<Server>("host: ${HOST}\ntoken: ${env:X\n", &[("X", "1")]);
    assert_eq!(
        brief(&loaded.errors),
        ["1:7 host: unknown substitution `${HOST}`", "2:8 token: unterminated `${` in `${env:X`",]
    );
}

#[test]
fn plain_scalars_are_resolved_again_and_quoted_stay_strings() {
    let loaded = load_env::<Server>(
        "port: ${env:PORT}\ndebug: ${env:DEBUG}\nhost: \"${env:PORT}\"\n",
        &[("PORT", "9090"), ("DEBUG", "true")],
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let root = loaded.root.unwrap();
    assert_eq!(root.get("port").unwrap().kind, NodeKind::Int(9090));
    assert_eq!(root.get("debug").unwrap().kind, NodeKind::Bool(true));
    assert_eq!(root.get("host").unwrap().kind, NodeKind::Str("9090".into(), StrStyle::Quoted));
    let server = loaded.value.unwrap();
    assert_eq!((server.port, server.debug), (Some(9090), Some(true)));
}

#[test]
fn quoted_substituted_numbers_can_still_be_read_as_numbers() {
    let loaded = load_env::<Server>("port: \"${env:PORT}\"\n", &[("PORT", "443")]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.value.unwrap().port, Some(443));
}

#[test]
fn substituted_values_never_appear_in_messages() {
    let loaded = load_env::<Server>(
        "port: ${env:PORT}\ntoken: ${env:TOKEN}\ndebug: \"${env:TOKEN}\"\n",
        &[("PORT", "70000"), ("TOKEN", "hunter2")],
    );
    let messages: Vec<&str> = loaded.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        ["value <redacted> out of range for u16", "invalid type: string \"<redacted>\", expected a boolean",]
    );
    // Rendering shows the source line, which holds the reference, not the value.
    let rendered = loaded.render_errors();
    assert!(!rendered.contains("70000") && !rendered.contains("hunter2"), "{rendered}");
    assert!(rendered.contains("port: ${env:PORT}"), "{rendered}");
}

#[test]
fn config_error_at_redacts_substituted_nodes() {
    let loaded = load_env::<Server>("host: ${env:HOST}\n", &[("HOST", "internal.corp")]);
    let root = loaded.root.unwrap();
    let error = crate::ConfigError::at(&root, &Path::root().key("host"), "cannot resolve `internal.corp`");
    assert_eq!(error.message, "cannot resolve `<redacted>`");
}

#[test]
fn substituted_ids_are_not_shown_in_paths() {
    let loaded =
        load_env::<Doc>("routes:\n  - id: ${env:ID}\n    upstream: 5\n    timeout: 5\n", &[("ID", "secret-route")]);
    assert_eq!(
        brief(&loaded.errors),
        ["4:14 routes[0].timeout: duration `5` has no unit: add one, e.g. `5s` or `5ms`"]
    );
}

#[test]
fn keys_are_not_substituted() {
    let loaded = load_env::<serde_json::Value>("${env:K}: v\n", &[("K", "x")]);
    assert_eq!(loaded.value.unwrap(), serde_json::json!({"${env:K}": "v"}));
}

#[test]
fn files_are_read_relative_to_the_config_file() {
    let dir = TempDir::new("subst-file");
    dir.write("secrets/token", "from-file\n");
    let config = dir.write("conf/main.yaml", "token: ${file:../secrets/token}\nhost: ${file:missing:-none}\n");
    let loaded = load_path::<Server>(&config, &no_env);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let server = loaded.value.unwrap();
    assert_eq!(server.token.as_deref(), Some("from-file"));
    assert_eq!(server.host.as_deref(), Some("none"));
}

#[test]
fn missing_file_without_default_is_an_error() {
    let dir = TempDir::new("subst-missing-file");
    let config = dir.write("main.yaml", "token: ${file:nope.txt}\n");
    let loaded = load_path::<Server>(&config, &no_env);
    assert_eq!(loaded.errors.len(), 1);
    let e = &loaded.errors[0];
    assert!(e.message.starts_with("cannot read `${file:nope.txt}`"), "{e:?}");
    assert_eq!((e.path.as_str(), e.span.map(|s| s.line)), ("token", Some(1)));
}

#[test]
fn substituted_values_cannot_inject_structure() {
    let loaded = load_env::<serde_json::Value>("a: ${env:X}\n", &[("X", "{b: 1}\nc: [2]")]);
    assert_eq!(loaded.value.unwrap(), serde_json::json!({"a": "{b: 1}\nc: [2]"}));
}
