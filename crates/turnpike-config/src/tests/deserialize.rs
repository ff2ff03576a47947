//! The recovering deserializer: types, enums, ranges, error positions and recovery.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Doc, Method, Policy, brief, load};
use crate::{Duration, Path, from_node};

#[test]
fn reads_a_whole_document() {
    let loaded = load::<Doc>(
        "listen: 0.0.0.0:8080\n\
         routes:\n\
         \x20 - id: orders\n\
         \x20   upstream: orders\n\
         \x20   timeout: 1m30s\n\
         \x20   match: {path: /orders, methods: [GET, POST]}\n\
         \x20   policies:\n\
         \x20     - cors\n\
         \x20     - rate_limit: {requests: 10, per: 1s}\n\
         \x20     - headers: {x-version: 2, x-debug: true}\n\
         upstreams:\n\
         \x20 orders:\n\
         \x20   endpoints: [10.0.0.1:80]\n\
         \x20   port: 8080\n\
         \x20   max_body: 10MiB\n",
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let doc = loaded.value.unwrap();
    let route = &doc.routes[0];
    assert_eq!(route.timeout, Some(Duration::from_secs(90)));
    let matcher = route.matcher.as_ref().unwrap();
    assert_eq!(matcher.path, "/orders");
    assert_eq!(matcher.methods, [Method::Get, Method::Post]);
    assert_eq!(route.policies[0], Policy::Cors);
    assert_eq!(route.policies[1], Policy::RateLimit { requests: 10, per: Duration::from_secs(1) });
    // Plain scalars can be read as strings, as written.
    let headers = BTreeMap::from([("x-debug".to_owned(), "true".to_owned()), ("x-version".to_owned(), "2".to_owned())]);
    assert_eq!(route.policies[2], Policy::Headers(headers));
    let upstream = &doc.upstreams["orders"];
    assert_eq!(upstream.port, Some(8080));
    assert_eq!(upstream.max_body.map(|b| b.0), Some(10 * 1024 * 1024));
}

#[test]
fn nested_error_points_at_the_value() {
    let loaded = load::<Doc>("routes:\n  - id: orders\n    upstream: o\n    match:\n      path: [a]\n");
    assert_eq!(brief(&loaded.errors), ["5:13 routes[orders].match.path: invalid type: sequence, expected a string"]);
}

#[test]
fn collects_independent_errors_with_original_indices() {
    let loaded = load::<Doc>(
        "routes:\n\
         \x20 - id: r0\n\
         \x20   upstrem: a\n\
         \x20   upstream: a\n\
         \x20 - id: r1\n\
         \x20   upstream: a\n\
         \x20 - id: r2\n\
         \x20   upstream: a\n\
         \x20   timeout: [1]\n\
         \x20 - id: r3\n\
         \x20   upstream: a\n\
         \x20 - id: r4\n",
    );
    assert_eq!(
        brief(&loaded.errors),
        [
            "3:5 routes[r0].upstrem: unknown field `upstrem`, expected one of `id`, `upstream`, `timeout`, `match`, `policies`",
            "9:14 routes[r2].timeout: invalid type: sequence, expected a duration: a number followed by a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`), e.g. `5s`, `250ms` or `1m30s`",
            "12:5 routes[r4]: missing field `upstream`",
        ]
    );
    assert_eq!(loaded.errors[0].help.as_deref(), Some("did you mean `upstream`?"));
    // The rest is recovered; dropped parts are gone, indices are the original ones.
    let doc = loaded.value.unwrap();
    let ids: Vec<&str> = doc.routes.iter().map(|r| r.id.value.as_str()).collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3"]);
    assert_eq!(doc.routes[2].timeout, None);
    assert_eq!(doc.routes[3].id.path, Path::root().key("routes").index(3).key("id"));
}

#[test]
fn a_dropped_required_value_does_not_also_report_a_missing_field() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstream: {x: 1}\n  - id: b\n    upstream: b\n");
    assert_eq!(brief(&loaded.errors), ["3:15 routes[a].upstream: invalid type: map, expected a string"]);
    let doc = loaded.value.unwrap();
    assert_eq!(doc.routes.len(), 1);
    assert_eq!(doc.routes[0].id.path, Path::root().key("routes").index(1).key("id"));
}

#[test]
fn removed_sequence_elements_keep_original_indices() {
    let loaded = load::<Doc>("routes:\n  - 1\n  - 2\n  - id: c\n    upstream: c\n");
    assert_eq!(
        brief(&loaded.errors),
        [
            "2:5 routes[0]: invalid type: integer `1`, expected struct Route",
            "3:5 routes[1]: invalid type: integer `2`, expected struct Route",
        ]
    );
    let doc = loaded.value.unwrap();
    assert_eq!(doc.routes[0].upstream.path.to_string(), "routes[2].upstream");
    assert_eq!((doc.routes[0].upstream.span.line, doc.routes[0].upstream.span.col), (5, 15));
}

#[test]
fn missing_field_points_at_the_mapping() {
    let loaded = load::<Doc>("upstreams:\n  users:\n    port: 80\n");
    assert_eq!(brief(&loaded.errors), ["3:5 upstreams.users: missing field `endpoints`"]);
}

#[test]
fn unknown_field_next_to_missing_field_reports_both() {
    let loaded = load::<Doc>("upstreams:\n  users:\n    endpoint: [a]\n");
    assert_eq!(
        brief(&loaded.errors),
        [
            "3:5 upstreams.users.endpoint: unknown field `endpoint`, expected one of `endpoints`, `port`, `max_body`",
            "3:5 upstreams.users: missing field `endpoints`",
        ]
    );
    assert_eq!(loaded.errors[0].help.as_deref(), Some("did you mean `endpoints`?"));
    // The upstream could not be built; the rest of the document still is.
    assert!(loaded.value.unwrap().upstreams.is_empty());
}

#[test]
fn unknown_variant_suggests_the_closest_name() {
    let loaded = load::<Doc>(
        "routes:\n  - id: a\n    upstream: a\n    policies:\n      - cros\n      - rate_limt: {requests: 1, per: 1s}\n      - headers: {a: b}\n",
    );
    assert_eq!(
        brief(&loaded.errors),
        [
            "5:9 routes[a].policies[0]: unknown variant `cros`, expected one of `cors`, `rate_limit`, `headers`",
            "6:9 routes[a].policies[1]: unknown variant `rate_limt`, expected one of `cors`, `rate_limit`, `headers`",
        ]
    );
    assert_eq!(loaded.errors[0].help.as_deref(), Some("did you mean `cors`?"));
    assert_eq!(loaded.errors[1].help.as_deref(), Some("did you mean `rate_limit`?"));
    let doc = loaded.value.unwrap();
    assert_eq!(doc.routes[0].policies.len(), 1);
}

#[test]
fn enum_variant_needing_a_value_written_bare_is_explained() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstream: a\n    policies: [rate_limit]\n");
    assert_eq!(
        brief(&loaded.errors),
        ["4:16 routes[a].policies[0]: variant `rate_limit` needs a value: write it as a mapping `rate_limit: ...`"]
    );
}

#[test]
fn enum_mapping_with_two_keys_is_an_error() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstream: a\n    policies:\n      - {cors: ~, headers: {}}\n");
    assert_eq!(
        brief(&loaded.errors),
        ["5:9 routes[a].policies[0]: expected a mapping with a single key (the variant of `Policy`), found 2 keys"]
    );
}

#[test]
fn error_inside_an_enum_value_is_reported_once() {
    let loaded = load::<Doc>(
        "routes:\n  - id: a\n    upstream: a\n    policies:\n      - rate_limit: {requests: -1, per: 1s}\n      - cors\n",
    );
    assert_eq!(
        brief(&loaded.errors),
        ["5:32 routes[a].policies[0].rate_limit.requests: value -1 out of range for u32"]
    );
    assert_eq!(loaded.value.unwrap().routes[0].policies, [Policy::Cors]);
}

#[test]
fn integers_are_range_checked() {
    let loaded = load::<Doc>("upstreams:\n  a:\n    endpoints: []\n    port: 70000\n");
    assert_eq!(brief(&loaded.errors), ["4:11 upstreams.a.port: value 70000 out of range for u16"]);
    // A bad optional value is dropped; the upstream remains.
    assert_eq!(loaded.value.unwrap().upstreams["a"].port, None);
}

#[test]
fn quoted_strings_are_not_numbers_or_booleans() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        port: Option<u16>,
        on: Option<bool>,
        ratio: Option<f64>,
    }
    let loaded = load::<T>("port: \"8080\"\non: 'true'\nratio: \"0.5\"\n");
    assert_eq!(
        brief(&loaded.errors),
        [
            "1:7 port: invalid type: string \"8080\", expected u16",
            "2:5 on: invalid type: string \"true\", expected a boolean",
            "3:8 ratio: invalid type: string \"0.5\", expected f64",
        ]
    );
}

#[test]
fn integers_are_accepted_as_floats() {
    #[derive(Debug, Deserialize)]
    struct T {
        ratio: f64,
    }
    let loaded = load::<T>("ratio: 2\n");
    assert!(loaded.errors.is_empty());
    assert_eq!(loaded.value.unwrap().ratio, 2.0);
}

#[test]
fn null_is_none_and_absent_options_default() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        a: Option<u8>,
        b: Option<u8>,
        #[serde(default)]
        c: Option<u8>,
    }
    let loaded = load::<T>("a: ~\nb: 3\n");
    let t = loaded.value.unwrap();
    assert_eq!((t.a, t.b, t.c), (None, Some(3), None));
}

#[test]
fn numeric_keys_deserialize_into_integer_maps() {
    #[derive(Debug, Deserialize)]
    struct T {
        pages: BTreeMap<u16, String>,
    }
    let loaded = load::<T>("pages:\n  404: not found\n  500: oops\n  abc: x\n");
    assert_eq!(brief(&loaded.errors), ["4:3 pages.abc: invalid type: string \"abc\", expected u16"]);
    let t = loaded.value.unwrap();
    assert_eq!(t.pages.keys().copied().collect::<Vec<_>>(), [404, 500]);
}

#[test]
fn a_root_of_the_wrong_type_gives_no_value() {
    let loaded = load::<Doc>("- a\n- b\n");
    assert!(loaded.value.is_none());
    assert_eq!(brief(&loaded.errors), ["1:1 : invalid type: sequence, expected struct Doc"]);
}

#[test]
fn missing_field_at_the_root_gives_no_value() {
    #[derive(Debug, Deserialize)]
    struct T {
        #[allow(dead_code)]
        name: String,
    }
    let loaded = load::<T>("other: 1\n");
    assert!(loaded.value.is_none());
    assert_eq!(brief(&loaded.errors), ["1:1 : missing field `name`"]);
}

#[test]
fn internally_tagged_enum_errors_find_their_key() {
    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Auth {
        ApiKey {
            #[allow(dead_code)]
            header: String,
        },
        Jwt {
            #[allow(dead_code)]
            issuer: String,
        },
    }
    #[derive(Debug, Deserialize)]
    struct T {
        auth: Vec<Auth>,
    }
    let loaded = load::<T>(
        "auth:\n  - type: api_key\n    headr: x\n  - type: jwd\n    issuer: me\n  - type: jwt\n    issuer: ok\n",
    );
    assert_eq!(
        brief(&loaded.errors),
        [
            "2:5 auth[0]: missing field `header`",
            "3:5 auth[0].headr: unknown field `headr`, expected `header`",
            "4:11 auth[1].type: unknown variant `jwd`, expected `api_key` or `jwt`",
        ]
    );
    assert_eq!(loaded.errors[2].help.as_deref(), Some("did you mean `jwt`?"));
    assert_eq!(loaded.value.unwrap().auth.len(), 1);
}

#[test]
fn errors_stop_at_the_cap() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {}
    let text: String = (0..250).map(|i| format!("k{i}: 1\n")).collect();
    let (value, errors) = from_node::<T>(
        &crate::parse_str(&mut crate::SourceMap::new(), "t.yaml", &text, std::path::Path::new(".")).0.unwrap(),
    );
    assert!(value.is_none());
    assert_eq!(errors.len(), crate::MAX_ERRORS + 1);
    assert_eq!(errors[crate::MAX_ERRORS].message, "too many errors, stopped after 200");
}

#[test]
fn spanned_values_carry_span_and_path() {
    let loaded = load::<Doc>("routes:\n  - id: orders\n    upstream: users\n");
    let doc = loaded.value.unwrap();
    let upstream = &doc.routes[0].upstream;
    assert_eq!(&**upstream, "users");
    assert_eq!((upstream.span.line, upstream.span.col, upstream.span.end_col), (3, 15, 20));
    let root = loaded.root.unwrap();
    assert_eq!(root.display_path(&upstream.path), "routes[orders].upstream");
    // A semantic check can report at the value.
    let error = crate::ConfigError::at(&root, &upstream.path, "unknown upstream `users`");
    assert_eq!(brief(&[error]), ["3:15 routes[orders].upstream: unknown upstream `users`"]);
}

#[test]
fn spanned_only_works_with_this_loader() {
    let result = serde_json::from_str::<crate::Spanned<String>>("\"x\"");
    assert!(result.is_err());
}

#[test]
fn tuples_and_unit_structs_deserialize() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Marker;
    #[derive(Debug, Deserialize)]
    struct T {
        pair: (u8, String),
        marker: Marker,
        letter: char,
    }
    let loaded = load::<T>("pair: [1, two]\nmarker: ~\nletter: x\n");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let t = loaded.value.unwrap();
    assert_eq!(t.pair, (1, "two".to_owned()));
    assert_eq!(t.marker, Marker);
    assert_eq!(t.letter, 'x');
}

#[test]
fn a_short_tuple_after_a_dropped_element_is_not_reported_again() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct T {
        pair: (u8, u8),
        other: Option<u8>,
    }
    let loaded = load::<T>("pair: [1, x]\nother: 300\n");
    assert_eq!(
        brief(&loaded.errors),
        ["1:11 pair[1]: invalid type: string \"x\", expected u8", "2:8 other: value 300 out of range for u8",]
    );
    assert!(loaded.value.is_none());
}

#[test]
fn config_error_at_a_missing_path_points_at_the_nearest_ancestor() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstream: b\n");
    let root = loaded.root.unwrap();
    let path = Path::root().key("routes").index(0).key("timeout");
    let error = crate::ConfigError::at(&root, &path, "a timeout is required here");
    assert_eq!(brief(&[error]), ["2:5 routes[a].timeout: a timeout is required here"]);
}
