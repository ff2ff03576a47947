//! Rendering errors for people and as JSON.

use super::{Doc, load};
use crate::{ConfigError, ConfigErrors, SourceMap, did_you_mean};

#[test]
fn renders_errors_with_snippets_sorted_by_position() {
    let text = "routes:\n  - id: orders\n    upstream: orders\n  - id: users\n    upstrem: users\n    upstream: users\n    timeout: fast\n";
    let loaded = load::<Doc>(text);
    let expected = "\
error: unknown field `upstrem`, expected one of `id`, `upstream`, `timeout`, `match`, `policies`
 --> config.yaml:5:5
  |
5 |     upstrem: users
  |     ^^^^^^^
  = at: routes[users].upstrem
  = help: did you mean `upstream`?

error: invalid duration `fast`: expected a number followed by a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`), e.g. `5s`, `250ms` or `1m30s`
 --> config.yaml:7:14
  |
7 |     timeout: fast
  |              ^^^^
  = at: routes[users].timeout

2 errors
";
    assert_eq!(loaded.render_errors(), expected);
}

#[test]
fn gutter_widens_for_long_line_numbers() {
    let text = format!("{}upstreams:\n  a:\n    endpoints: []\n    prot: 1\n", "\n".repeat(8));
    let loaded = load::<Doc>(&text);
    let expected = "\
error: unknown field `prot`, expected one of `endpoints`, `port`, `max_body`
  --> config.yaml:12:5
   |
12 |     prot: 1
   |     ^^^^
   = at: upstreams.a.prot
   = help: did you mean `port`?

1 error
";
    assert_eq!(loaded.render_errors(), expected);
}

#[test]
fn errors_without_a_position_render_message_and_path() {
    let errors =
        ConfigErrors(vec![ConfigError::new("listeners overlap").with_path("listeners"), ConfigError::new("no routes")]);
    assert_eq!(
        errors.render(&SourceMap::new()),
        "error: listeners overlap\n  = at: listeners\n\nerror: no routes\n\n2 errors\n"
    );
}

#[test]
fn tabs_in_the_source_line_keep_carets_aligned() {
    let mut sources = SourceMap::new();
    let file = sources.add("t.json", "{\n\t\"a\": 1}\n", ".");
    let error = ConfigError::new("bad").with_span(crate::Span { file, line: 2, col: 2, end_line: 2, end_col: 5 });
    assert_eq!(
        ConfigErrors(vec![error]).render(&sources),
        "error: bad\n --> t.json:2:2\n  |\n2 | \t\"a\": 1}\n  | \t^^^\n\n1 error\n"
    );
}

#[test]
fn json_report_holds_every_field() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstrem: b\n");
    let report = ConfigErrors(loaded.errors.clone()).to_json(&loaded.sources);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {
                "message": "missing field `upstream`",
                "path": "routes[a]",
                "file": "config.yaml",
                "line": 2, "col": 5, "end_line": 2, "end_col": 6
            },
            {
                "message": "unknown field `upstrem`, expected one of `id`, `upstream`, `timeout`, `match`, `policies`",
                "path": "routes[a].upstrem",
                "file": "config.yaml",
                "line": 3, "col": 5, "end_line": 3, "end_col": 12,
                "help": "did you mean `upstream`?"
            }
        ])
    );
}

#[test]
fn did_you_mean_uses_edit_distance_and_prefixes() {
    let names = ["upstream", "timeout", "match", "id"];
    assert_eq!(did_you_mean("upstrem", &names), Some("upstream"));
    assert_eq!(did_you_mean("Timeout", &names), Some("timeout"));
    assert_eq!(did_you_mean("timeout_ms", &names), Some("timeout"));
    assert_eq!(did_you_mean("up", &names), None);
    assert_eq!(did_you_mean("upstr", &names), Some("upstream"));
    assert_eq!(did_you_mean("retries", &names), None);
    assert_eq!(did_you_mean("x", &names), None);
}

#[test]
fn config_errors_display_one_line_each() {
    let errors = ConfigErrors(vec![ConfigError::new("a").with_path("x.y"), ConfigError::new("b")]);
    assert_eq!(errors.to_string(), "a (at x.y)\nb");
}
