//! The command line: help, version, exit codes, validate, routes, schema.

use crate::process::{TempDir, run};

const VALID: &str = r#"
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  users: { endpoints: ["127.0.0.1:9"] }
routes:
  - id: users
    match: { prefix: /api/users, methods: [GET] }
    upstream: users
  - id: user
    match: { path: "/api/users/{id}" }
    upstream: users
"#;

#[test]
fn help_lists_commands_examples_and_exit_codes() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "validate", "routes", "schema", "demo", "reload", "Examples:", "Exit status"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["validate"]).status.code(), Some(2), "missing -c");
    assert_eq!(run(&["run", "-c", "x.yaml", "--workers", "0"]).status.code(), Some(2));
}

#[test]
fn validate_accepts_a_good_config() {
    let dir = TempDir::new("validate-ok");
    let file = dir.write("gateway.yaml", VALID);
    let out = run(&["validate", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 listeners, 1 upstreams, 2 routes)"));
}

#[test]
fn validate_reports_every_error_with_position_and_exits_1() {
    let dir = TempDir::new("validate-bad");
    let bad = VALID
        .replace("upstream: users\n  - id: user", "upstream: userz\n  - id: user")
        .replace("methods: [GET] }", "methods: [GET] }\n    timeout: 5 seconds");
    let file = dir.write("gateway.yaml", &bad);
    let out = run(&["validate", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("gateway.yaml:"), "file:line:col: {text}");
    assert!(text.contains("routes[users].timeout"), "{text}");
    assert!(text.contains("unknown upstream `userz`") && text.contains("did you mean `users`?"), "{text}");
    assert!(text.contains("2 errors"), "{text}");

    let json = run(&["validate", "-c", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e["line"].as_u64().unwrap() > 0 && e["col"].as_u64().unwrap() > 0));
}

#[test]
fn routes_prints_the_table_in_precedence_order() {
    let dir = TempDir::new("routes");
    let file = dir.write("gateway.yaml", VALID);
    let out = run(&["routes", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let template = text.find("~ /api/users/{id}").expect("template route listed");
    let prefix = text.find("^ /api/users").expect("prefix route listed");
    assert!(template < prefix, "the template outranks the prefix:\n{text}");
}

#[test]
fn schema_prints_json_schema_and_markdown() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["routes"]["description"].as_str().unwrap().contains("declared order"));
    let md = run(&["schema", "--format", "markdown"]);
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(text.starts_with("# Configuration reference"));
    assert!(text.contains("## RouteConfig"));
}

#[test]
fn docs_config_md_is_generated_from_the_schema() {
    let md = run(&["schema", "--format", "markdown"]);
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
        .expect("docs/config.md exists");
    assert!(
        committed == String::from_utf8_lossy(&md.stdout),
        "docs/config.md is stale: run `cargo run -p turnpike -- schema --format markdown > docs/config.md`"
    );
}
