//! Configuration validation: every error reported at once with its field path and source position, JSON and
//! directory sources, `${env:..}`/`${file:..}` substitution that never leaks a value, the generated JSON Schema and
//! Markdown reference, and a gateway that refuses to start on an invalid configuration.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use turnpike_gateway::config::{ConfigSource, load_and_compile, schema};
use turnpike_gateway::state::State;
use turnpike_gateway::{Report, Snapshot, StartError};
use turnpike_test::TestGateway;

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("turnpike-it-config-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory and returns its full path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compile(source: &ConfigSource) -> Result<Snapshot, Report> {
    load_and_compile(source, &State::default(), 1)
}

fn compile_ok(source: &ConfigSource) -> Snapshot {
    compile(source).unwrap_or_else(|report| panic!("the config is valid, but:\n{report}"))
}

fn compile_err(source: &ConfigSource) -> Report {
    match compile(source) {
        Ok(_) => panic!("the config is invalid, but it compiled"),
        Err(report) => report,
    }
}

/// The one error at `path`, with its position as `(line, col)`.
fn error_at<'a>(report: &'a Report, path: &str) -> (&'a turnpike_config::ConfigError, (u32, u32)) {
    let found: Vec<_> = report.errors.0.iter().filter(|e| e.path == path).collect();
    assert_eq!(found.len(), 1, "expected one error at `{path}`:\n{report}");
    let span = found[0].span.unwrap_or_else(|| panic!("the error at `{path}` has a position"));
    (found[0], (span.line, span.col))
}

/// Every kind of error at once: syntax-level (unknown field, wrong type, bad duration) and semantic (unknown
/// upstream, duplicate id, invalid regex, duplicate and unreachable routes, invalid listener address).
const BROKEN: &str = "\
listeners:
  - name: public
    address: 127.0.0.1:99999
upstreams:
  orders:
    endpoints: [\"127.0.0.1:9001\"]
    connect_timeout: 5 seconds
  users:
    endpoints: [\"127.0.0.1:9002\"]
routes:
  - id: orders
    match: { prefix: /orders }
    upstream: order
  - id: users
    match: { prefix: /users }
    upstream: users
    colour: blue
  - id: items
    match: { prefix: /items }
    upstream: users
    max_body_size: [1]
  - id: users
    match: { prefix: /people }
    upstream: users
  - id: files
    match: { regex: \"/files/(unclosed\" }
    upstream: users
  - id: same-a
    match: { path: /same, methods: [GET] }
    upstream: users
  - id: same-b
    match: { path: /same, methods: [GET] }
    upstream: users
  - id: both
    match: { path: /both, methods: [GET, POST] }
    upstream: users
  - id: get-only
    match: { path: /both, methods: [GET] }
    upstream: users
";

#[test]
fn validate_reports_every_error_at_once_with_path_and_position() {
    let report = compile_err(&ConfigSource::text("test.yaml", BROKEN));
    assert_eq!(report.len(), 9, "one error per problem, no more, no less:\n{report}");

    let (e, at) = error_at(&report, "listeners[public].address");
    assert_eq!(e.message, "`127.0.0.1:99999` is not an `ip:port` address (like `127.0.0.1:8080` or `[::]:8080`)");
    assert_eq!(at, (3, 14));

    let (e, at) = error_at(&report, "upstreams.orders.connect_timeout");
    assert!(e.message.starts_with("invalid duration `5 seconds`"), "{}", e.message);
    assert_eq!(at, (7, 22));

    let (e, at) = error_at(&report, "routes[orders].upstream");
    assert_eq!(e.message, "unknown upstream `order`");
    assert_eq!(e.help.as_deref(), Some("did you mean `orders`?"));
    assert_eq!(at, (13, 15));

    let (e, at) = error_at(&report, "routes[users].colour");
    // The list of expected fields grows with the route's policies; its start is what a reader needs.
    assert!(
        e.message.starts_with("unknown field `colour`, expected one of `id`, `match`, `upstream`, `split`"),
        "{}",
        e.message
    );
    assert_eq!(at, (17, 5));

    let (e, at) = error_at(&report, "routes[items].max_body_size");
    assert!(e.message.starts_with("invalid type: sequence, expected a size"), "{}", e.message);
    assert_eq!(at, (21, 20));

    let (e, at) = error_at(&report, "routes[users].id");
    assert_eq!(e.message, "route id `users` is used twice (first at line 14)");
    assert_eq!(at, (22, 9));

    let (e, at) = error_at(&report, "routes[files].match.regex");
    assert!(e.message.starts_with("invalid regex"), "{}", e.message);
    assert!(e.message.contains("unclosed group"), "{}", e.message);
    assert_eq!(at, (26, 21));

    let (e, at) = error_at(&report, "routes[same-b]");
    assert_eq!(e.message, "this route matches exactly the same requests as route `same-a`, declared before it");
    assert_eq!(at, (31, 5));

    let (e, at) = error_at(&report, "routes[get-only]");
    assert!(
        e.message.starts_with("this route can never be selected: every request it matches is taken by route `both`"),
        "{}",
        e.message
    );
    assert_eq!(at, (37, 5));

    // The rendered report: every error with file:line:col, the source line, a caret line, the path and help.
    let rendered = report.to_string();
    for location in [
        "test.yaml:3:14",
        "test.yaml:7:22",
        "test.yaml:13:15",
        "test.yaml:17:5",
        "test.yaml:21:20",
        "test.yaml:22:9",
        "test.yaml:26:21",
        "test.yaml:31:5",
        "test.yaml:37:5",
    ] {
        assert!(rendered.contains(&format!("--> {location}\n")), "no `{location}` in:\n{rendered}");
    }
    assert!(rendered.contains("13 |     upstream: order\n"), "{rendered}");
    assert!(rendered.contains("   |               ^^^^^\n"), "{rendered}");
    assert!(rendered.contains("= at: routes[orders].upstream\n"), "{rendered}");
    assert!(rendered.contains("= help: did you mean `orders`?\n"), "{rendered}");
    assert!(rendered.contains("3 |     address: 127.0.0.1:99999\n"), "{rendered}");
    assert!(rendered.ends_with("9 errors\n"), "{rendered}");
    // Sorted by position: the listener error (line 3) comes before the upstream one (line 13).
    assert!(rendered.find("test.yaml:3:14") < rendered.find("test.yaml:13:15"));

    // The machine-readable form holds the same positions.
    let json = report.to_json();
    let orders = json
        .as_array()
        .expect("an array")
        .iter()
        .find(|e| e["path"] == "routes[orders].upstream")
        .expect("the unknown upstream error");
    assert_eq!(
        (orders["file"].as_str(), orders["line"].as_u64(), orders["col"].as_u64()),
        (Some("test.yaml"), Some(13), Some(15))
    );
}

#[test]
fn unreachable_route_error_names_the_shadowing_route_only_by_id() {
    let report = compile_err(&ConfigSource::text(
        "test.yaml",
        "listeners:\n  - { name: public, address: 127.0.0.1:0 }\nupstreams:\n  u: { endpoints: [\"127.0.0.1:9002\"] }\nroutes:\n  - { id: other, match: { path: /other }, upstream: u }\n  - { id: both, match: { path: /both, methods: [GET, POST] }, upstream: u }\n  - { id: get-only, match: { path: /both, methods: [GET] }, upstream: u }\n",
    ));
    assert_eq!(report.len(), 1, "{report}");
    let (e, at) = error_at(&report, "routes[get-only]");
    assert_eq!(at, (8, 5));
    assert!(e.message.contains("route `both`"), "{}", e.message);
    // A router-internal index ("route 1", counted from 0 over the routes that compiled) points a reader at the wrong
    // route, and the explanation should not repeat itself.
    assert!(!e.message.contains("route 1 "), "the message leaks an internal route index: {}", e.message);
    assert_eq!(e.message.matches("can never be selected").count(), 1, "{}", e.message);
}

#[test]
fn valid_config_compiles_into_a_snapshot() {
    let snapshot = compile_ok(&ConfigSource::text(
        "ok.yaml",
        "listeners:\n  - { name: public, address: 127.0.0.1:0 }\nupstreams:\n  users: { endpoints: [\"127.0.0.1:9002\"] }\nroutes:\n  - { id: users, match: { prefix: /users }, upstream: users }\n",
    ));
    assert_eq!(snapshot.listeners.len(), 1);
    assert_eq!(&*snapshot.listeners[0].name, "public");
    assert_eq!(snapshot.routes.len(), 1);
    assert!(snapshot.upstreams.contains_key("users"));
}

#[test]
fn json_config_is_accepted_and_its_errors_have_positions() {
    let json = r#"{
  "listeners": [{ "name": "public", "address": "127.0.0.1:0", "header_timeout": "2s" }],
  "upstreams": { "users": { "endpoints": ["127.0.0.1:9002"], "connect_timeout": "250ms" } },
  "routes": [
    { "id": "user", "match": { "path": "/users/{id}", "methods": ["GET"] }, "upstream": "users",
      "rewrite": { "path": "/u/{id}" } },
    { "id": "all", "upstream": "users" }
  ]
}
"#;
    let snapshot = compile_ok(&ConfigSource::text("gateway.json", json));
    assert_eq!(&*snapshot.listeners[0].name, "public");
    assert_eq!(snapshot.listeners[0].header_timeout, std::time::Duration::from_secs(2));
    assert_eq!(snapshot.upstreams["users"].timeouts.connect, std::time::Duration::from_millis(250));
    assert_eq!(snapshot.routes.len(), 2);

    let broken = json.replace("\"header_timeout\": \"2s\"", "\"header_timeout\": \"2s\", \"bogus\": true");
    let report = compile_err(&ConfigSource::text("gateway.json", &broken));
    assert_eq!(report.len(), 1, "{report}");
    let (e, at) = error_at(&report, "listeners[public].bogus");
    assert!(e.message.starts_with("unknown field `bogus`"), "{}", e.message);
    assert_eq!(at, (2, 87));
    assert!(report.to_string().contains("--> gateway.json:2:87\n"), "{report}");
}

#[test]
fn config_directory_is_merged_in_file_name_order() {
    let dir = TempDir::new("merge");
    // Written in the reverse of their name order, so creation order cannot explain the result. Hidden files and
    // other extensions are not part of the config.
    dir.write(
        "40-routes-b.yaml",
        "routes:\n  - { id: b1, match: { prefix: /b }, upstream: orders }\n  - { id: b2, match: { path: /b/x }, upstream: users }\n",
    );
    dir.write(
        "30-routes-a.yaml",
        "routes:\n  - { id: a1, match: { prefix: /a }, upstream: users }\n  - { id: a2, match: { path: /a/x }, upstream: orders }\n",
    );
    dir.write(
        "20-upstreams.yml",
        "upstreams:\n  users: { endpoints: [\"127.0.0.1:9002\"] }\n  orders: { endpoints: [\"127.0.0.1:9001\"] }\n",
    );
    dir.write("10-listeners.json", r#"{ "listeners": [{ "name": "public", "address": "127.0.0.1:0" }] }"#);
    dir.write(".hidden.yaml", "this: is: not: valid: yaml: [");
    dir.write("notes.txt", "not a config file");

    let snapshot = compile_ok(&ConfigSource::File(dir.path().to_path_buf()));
    assert_eq!(&*snapshot.listeners[0].name, "public");
    let mut upstreams: Vec<&str> = snapshot.upstreams.keys().map(|k| &**k).collect();
    upstreams.sort_unstable();
    assert_eq!(upstreams, ["orders", "users"]);
    // Declaration order of the merged routes: the files' sequences concatenated in name order.
    let mut declared: Vec<(usize, String)> =
        snapshot.routes.in_precedence_order().iter().map(|r| (r.route, r.value.id.to_string())).collect();
    declared.sort();
    let ids: Vec<&str> = declared.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "b1", "b2"]);
}

#[test]
fn key_defined_in_two_files_is_an_error_naming_both() {
    let dir = TempDir::new("conflict");
    dir.write("10-base.yaml", "listeners:\n  - { name: public, address: 127.0.0.1:0 }\nserver:\n  watch: false\n");
    let first = dir.write("20-upstreams.yaml", "upstreams:\n  users: { endpoints: [\"127.0.0.1:9002\"] }\n");
    let second = dir.write(
        "30-more.yaml",
        "server:\n  watch: true\nupstreams:\n  orders: { endpoints: [\"127.0.0.1:9001\"] }\n  users: { endpoints: [\"127.0.0.1:9003\"] }\n",
    );
    let report = compile_err(&ConfigSource::File(dir.path().to_path_buf()));
    assert_eq!(report.len(), 2, "{report}");

    let (e, at) = error_at(&report, "upstreams.users");
    assert_eq!(e.message, format!("`upstreams.users` is already defined at {}:2:3", first.display()));
    assert_eq!(at, (5, 3));
    let file = e.span.map(|s| report.sources.name(s.file).to_owned());
    assert_eq!(file, Some(second.display().to_string()), "the error points into the second file");

    let (e, at) = error_at(&report, "server.watch");
    assert!(e.message.starts_with("`server.watch` is already defined at "), "{}", e.message);
    assert!(e.message.contains("10-base.yaml:4:3"), "{}", e.message);
    assert_eq!(at, (2, 3));

    let rendered = report.to_string();
    assert!(rendered.contains(&format!("--> {}:5:3\n", second.display())), "{rendered}");
    assert!(rendered.contains(&format!("{}:2:3", first.display())), "{rendered}");
}

#[test]
fn env_and_file_references_are_substituted() {
    let dir = TempDir::new("subst");
    dir.write("address.txt", "127.0.0.1:0\n");
    let endpoint = dir.write("endpoint.txt", "127.0.0.1:9555");
    let unset = "TURNPIKE_IT_CONFIG_SURELY_UNSET_7F3A9C";
    let yaml = format!(
        r#"
listeners:
  - name: "${{env:PATH}}"
    address: ${{file:address.txt}}
    max_headers: ${{env:{unset}:-57}}
  - name: ${{env:{unset}:-second}}
    address: "${{file:missing.txt:-127.0.0.2:0}}"
upstreams:
  users:
    endpoints: ["${{file:{endpoint}}}"]
    host_header: {{ fixed: "$${{kept}}.example.com" }}
routes:
  - id: users
    upstream: users
"#,
        endpoint = endpoint.display()
    );
    let source = ConfigSource::Text { name: "subst.yaml".into(), text: yaml, base_dir: dir.path().to_path_buf() };
    let snapshot = compile_ok(&source);

    let path = std::env::var("PATH").expect("PATH is set");
    assert_eq!(&*snapshot.listeners[0].name, path);
    assert_eq!(
        snapshot.listeners[0].address,
        "127.0.0.1:0".parse().expect("addr"),
        "relative to base_dir, newline trimmed"
    );
    assert_eq!(snapshot.listeners[0].max_headers, 57, "an unquoted substitution is read as a number");
    assert_eq!(&*snapshot.listeners[1].name, "second");
    assert_eq!(snapshot.listeners[1].address, "127.0.0.2:0".parse().expect("addr"), "a missing file takes the default");
    let users = &snapshot.upstreams["users"];
    assert_eq!(users.endpoints[0].endpoint.addr, "127.0.0.1:9555".parse().expect("addr"), "absolute file path");
    match &users.host {
        turnpike_upstream::HostHeader::Fixed(v) => assert_eq!(v, "${kept}.example.com", "`$${{` is a literal `${{`"),
        other => panic!("expected a fixed host header, got {other:?}"),
    }
}

#[test]
fn substituted_values_never_appear_in_errors() {
    let dir = TempDir::new("secret");
    let secret = "s3cr3t-Value-9d2e";
    dir.write("secret.txt", secret);
    let path_value = std::env::var("PATH").expect("PATH is set");
    let yaml = r#"
listeners:
  - name: public
    address: ${file:secret.txt}
upstreams:
  users:
    endpoints: ["127.0.0.1:9002"]
    connect_timeout: ${file:secret.txt}
routes:
  - id: from-file
    upstream: "${file:secret.txt}"
  - id: from-env
    upstream: "${env:PATH}"
  - id: mixed
    upstream: "users-${file:secret.txt}"
"#;
    let source =
        ConfigSource::Text { name: "secret.yaml".into(), text: yaml.to_owned(), base_dir: dir.path().to_path_buf() };
    let report = compile_err(&source);
    assert_eq!(report.len(), 5, "{report}");
    // The errors are there, at the fields whose values came from outside...
    for path in [
        "listeners[public].address",
        "upstreams.users.connect_timeout",
        "routes[from-file].upstream",
        "routes[from-env].upstream",
        "routes[mixed].upstream",
    ] {
        let (e, _) = error_at(&report, path);
        assert!(e.message.contains("<redacted>"), "{path}: {}", e.message);
    }
    // ...but no message, help, path, rendering or JSON report shows those values.
    let rendered = report.to_string();
    let json = report.to_json().to_string();
    for e in &report.errors.0 {
        let all = format!("{} {} {}", e.message, e.path, e.help.as_deref().unwrap_or(""));
        assert!(!all.contains(secret) && !all.contains(&path_value), "leaked in: {all}");
    }
    assert!(!rendered.contains(secret) && !rendered.contains(&path_value), "{rendered}");
    assert!(!json.contains(secret) && !json.contains(&path_value), "{json}");
    // The snippet shows the reference as written, which is safe.
    assert!(rendered.contains("address: ${file:secret.txt}"), "{rendered}");
}

#[test]
fn json_schema_describes_every_section_and_field() {
    let schema = schema::json_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false, "unknown top-level keys are errors");
    assert!(schema["required"].as_array().is_some_and(|r| r.contains(&Value::from("listeners"))));
    let props = schema["properties"].as_object().expect("top-level properties");
    for (section, doc) in [
        ("listeners", "Where the gateway accepts client connections. At least one."),
        ("upstreams", "Named pools of endpoints that routes forward to, by id."),
        ("routes", "Routes, in declared order."),
        ("server", "Process-wide settings."),
    ] {
        let description = props[section]["description"].as_str().unwrap_or_default();
        assert!(description.starts_with(doc), "{section}: {description:?}");
    }

    let defs = schema["$defs"].as_object().expect("$defs");
    let route = &defs["RouteConfig"];
    assert_eq!(route["additionalProperties"], false);
    assert_eq!(
        route["properties"]["upstream"]["description"],
        "The id of the upstream it forwards to. Give this or `split`."
    );
    assert!(route["required"].as_array().is_some_and(|r| r.contains(&Value::from("id"))));

    // Every reference resolves, and every field of every object has a description (its doc comment).
    let mut refs = Vec::new();
    collect_refs(&schema, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(defs.contains_key(name), "dangling $ref {r}");
    }
    for (name, def) in defs.iter().chain([(&"Document".to_owned(), &schema)]) {
        if let Some(props) = def["properties"].as_object() {
            for (field, prop) in props {
                let described = prop["description"].as_str().is_some_and(|d| !d.trim().is_empty());
                assert!(described, "{name}.{field} has no description");
            }
        }
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn markdown_reference_covers_every_section() {
    let markdown = schema::markdown();
    assert!(markdown.starts_with("# Configuration reference\n"));
    for section in ["server", "listeners", "upstreams", "routes"] {
        assert!(markdown.contains(&format!("| `{section}` |")), "no row for `{section}`");
    }
    // Every type of the schema has its own section, and the routing fields are documented.
    let schema = schema::json_schema();
    for name in schema["$defs"].as_object().expect("$defs").keys() {
        assert!(markdown.contains(&format!("\n## {name}\n")), "no section for {name}");
    }
    assert!(markdown.contains("| `strip_prefix` |") || markdown.contains("strip_prefix"), "rewrite is documented");
    assert!(markdown.contains("segment-aware"), "the prefix doc comment is included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_to_start_with_an_invalid_config_and_reports_every_error() {
    let err = match TestGateway::try_start(BROKEN, 1).await {
        Ok(_) => panic!("the gateway started with an invalid config"),
        Err(err) => err,
    };
    let StartError::Config(report) = &err else { panic!("expected a config error, got {err}") };
    assert_eq!(report.len(), 9, "{report}");
    let paths: Vec<&str> = report.errors.0.iter().map(|e| e.path.as_str()).collect();
    for path in ["listeners[public].address", "routes[orders].upstream", "routes[same-b]", "routes[get-only]"] {
        assert!(paths.contains(&path), "no error at {path}: {paths:?}");
    }
    let shown = err.to_string();
    assert!(shown.starts_with("invalid configuration:\n"), "{shown}");
    assert!(shown.contains("--> test.yaml:13:15"), "the start error renders every error with its position: {shown}");
    assert!(shown.contains("9 errors"), "{shown}");
}

#[test]
fn resilience_settings_are_checked_with_paths() {
    let text = "\
server: { dns: { nameservers: [dns.example] } }
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  orders:
    endpoints: [\"127.0.0.1:9001\"]
    balance: consistent_hash
    health_check: { interval: 0s }
    circuit_breaker: { success_threshold: 9 }
    retry: { attempts: 0, statuses: [700] }
  users:
    endpoints: [\"127.0.0.1:9002\"]
    hash_on: client_ip
routes:
  - id: both
    match: { prefix: /both }
    upstream: orders
    split: [{ upstream: users, weight: 1 }]
  - id: canary
    match: { prefix: /canary }
    split: [{ upstream: order, weight: 5 }, { upstream: users, weight: 95 }]
    mirror: { upstream: users, percent: 150 }
";
    let report = compile_err(&ConfigSource::text("resilience.yaml", text));
    for path in [
        "upstreams.orders.hash_on",
        "upstreams.orders.health_check.interval",
        "upstreams.orders.health_check.path",
        "upstreams.orders.circuit_breaker.success_threshold",
        "upstreams.orders.retry.attempts",
        "upstreams.orders.retry.statuses[0]",
        "upstreams.users.hash_on",
        "routes[both].split",
        "routes[canary].split[0].upstream",
        "routes[canary].mirror.percent",
        "server.dns.nameservers[0]",
    ] {
        let (_, (line, _)) = error_at(&report, path);
        assert!(line > 0, "{path}");
    }
    let (unknown, _) = error_at(&report, "routes[canary].split[0].upstream");
    assert_eq!(unknown.help.as_deref(), Some("did you mean `orders`?"));
}
