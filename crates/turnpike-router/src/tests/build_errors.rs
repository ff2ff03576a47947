//! Build errors: invalid fields, duplicates, unreachable routes, and what is deliberately not an
//! error.

use http::Method;

use super::support::*;
use crate::{BuildErrorKind, ValueMatch};

fn only(errors: &[crate::BuildError]) -> &crate::BuildError {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    &errors[0]
}

fn assert_invalid(spec: Spec, field: &str, needle: &str) {
    let errors = build_err(vec![spec]);
    let e = only(&errors);
    assert_eq!(e.kind, BuildErrorKind::Invalid, "{e:?}");
    assert_eq!(e.field, field, "{e:?}");
    assert!(e.message.contains(needle), "message `{}` lacks `{needle}`", e.message);
}

#[test]
fn rejects_invalid_hosts() {
    assert_invalid(exact("/", "x").hosts([""]), "hosts[0]", "empty");
    assert_invalid(exact("/", "x").hosts(["a.com", "api.*.com"]), "hosts[1]", "`*`");
    assert_invalid(exact("/", "x").hosts(["*example.com"]), "hosts[0]", "`*`");
    assert_invalid(exact("/", "x").hosts(["*.*.com"]), "hosts[0]", "`*`");
    assert_invalid(exact("/", "x").hosts(["a b.com"]), "hosts[0]", "invalid character");
    assert_invalid(exact("/", "x").hosts(["a.com:8080"]), "hosts[0]", "port");
    assert_invalid(exact("/", "x").hosts(["a..com"]), "hosts[0]", "empty label");
    assert_invalid(exact("/", "x").hosts(["*."]), "hosts[0]", "empty label");
    assert_invalid(exact("/", "x").hosts(["a.com", "A.com"]), "hosts[1]", "duplicate of hosts[0]");
}

#[test]
fn rejects_invalid_templates() {
    assert_invalid(tpl("/a/{id", "x"), "path", "unbalanced");
    assert_invalid(tpl("/a/id}", "x"), "path", "unbalanced");
    assert_invalid(tpl("/a/x{id}", "x"), "path", "whole segment");
    assert_invalid(tpl("/a/{id}.json", "x"), "path", "whole segment");
    assert_invalid(tpl("/a/{a}{b}", "x"), "path", "whole segment");
    assert_invalid(tpl("/a/{*rest}/b", "x"), "path", "last segment");
    assert_invalid(tpl("/a/{id}/{id}", "x"), "path", "duplicate parameter name `id`");
    assert_invalid(tpl("/a/{}", "x"), "path", "empty parameter name");
    assert_invalid(tpl("/a/{*}", "x"), "path", "empty parameter name");
    assert_invalid(tpl("/a/{1x}", "x"), "path", "invalid parameter name");
}

#[test]
fn rejects_paths_not_starting_with_slash_or_not_normalized() {
    assert_invalid(exact("a/b", "x"), "path", "must start with `/`");
    assert_invalid(tpl("users/{id}", "x"), "path", "must start with `/`");
    assert_invalid(prefix("", "x"), "path", "must start with `/`");
    assert_invalid(exact("/a//b", "x"), "path", "write `/a/b`");
    assert_invalid(exact("/a/../b", "x"), "path", "write `/b`");
    assert_invalid(exact("/%7euser", "x"), "path", "write `/~user`");
    assert_invalid(exact("/a b", "x"), "path", "invalid path");
    assert_invalid(exact("/a?b=1", "x"), "path", "`?`");
}

#[test]
fn rejects_invalid_regex_with_the_regex_crate_message() {
    let errors = build_err(vec![re("/a/(", "x")]);
    let e = only(&errors);
    assert_eq!((e.field.as_str(), e.kind), ("path", BuildErrorKind::Invalid));
    assert!(e.message.contains("unclosed group"), "{}", e.message);
}

#[test]
fn regex_cannot_escape_its_anchors() {
    // On its own `/admin)|(.*` is not a regex; it must not become one by being wrapped in
    // `\A(?:...)\z`.
    let errors = build_err(vec![re("/admin)|(.*", "x")]);
    assert_eq!(only(&errors).field, "path");
}

#[test]
fn rejects_invalid_rules_and_methods() {
    assert_invalid(exact("/", "x").header(hn("x-a"), ValueMatch::Regex("[".into())), "headers[0]", "invalid regex");
    assert_invalid(exact("/", "x").query("", ValueMatch::Present), "query[0]", "empty");
    assert_invalid(exact("/", "x").query("q", ValueMatch::Regex("(".into())), "query[0]", "invalid regex");
    assert_invalid(exact("/", "x").header(hn("x-a"), ValueMatch::Exact("a\nb".into())), "headers[0]", "never match");
    assert_invalid(
        exact("/", "x").header(hn("x-a"), ValueMatch::Present).header(hn("x-a"), ValueMatch::Present),
        "headers[1]",
        "duplicate of headers[0]",
    );
    assert_invalid(
        exact("/", "x").query("q", ValueMatch::Exact("1".into())).query("q", ValueMatch::Absent),
        "query[1]",
        "contradicts query[0]",
    );
    assert_invalid(exact("/", "x").methods([Method::GET, Method::POST, Method::GET]), "methods", "listed twice");
}

#[test]
fn reports_every_error_at_once_ordered_by_route() {
    let errors = build_err(vec![
        exact("/ok", "ok"),
        tpl("/a/{x", "bad-template").hosts(["bad host"]),
        re("(", "bad-regex"),
        exact("/ok", "dup"),
    ]);
    let got: Vec<(usize, &str, BuildErrorKind)> = errors.iter().map(|e| (e.route, e.field.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        vec![
            (1, "hosts[0]", BuildErrorKind::Invalid),
            (1, "path", BuildErrorKind::Invalid),
            (2, "path", BuildErrorKind::Invalid),
            (3, "", BuildErrorKind::Duplicate { of: 0 }),
        ]
    );
    assert_eq!(errors[3].to_string(), "route 3: duplicate of route 0");
    assert!(errors[0].to_string().starts_with("route 1: hosts[0]: "));
}

#[test]
fn reports_identical_routes_as_duplicates_of_the_first() {
    let a = || {
        tpl("/u/{id}", "a")
            .hosts(["b.com", "a.com"])
            .methods([Method::POST, Method::GET])
            .header(hn("x-a"), ValueMatch::Present)
            .query("q", ValueMatch::Absent)
    };
    // Same sets in another order, and a template equal up to param names.
    let b = tpl("/u/{user}", "b")
        .hosts(["A.com", "b.com"])
        .methods([Method::GET, Method::POST])
        .query("q", ValueMatch::Absent)
        .header(hn("x-a"), ValueMatch::Present);
    let errors = build_err(vec![a(), b, a()]);
    let kinds: Vec<_> = errors.iter().map(|e| (e.route, e.kind)).collect();
    assert_eq!(kinds, vec![(1, BuildErrorKind::Duplicate { of: 0 }), (2, BuildErrorKind::Duplicate { of: 0 })]);
}

#[test]
fn get_and_get_head_are_the_same_method_set() {
    let errors =
        build_err(vec![exact("/x", "a").methods([Method::GET]), exact("/x", "b").methods([Method::GET, Method::HEAD])]);
    assert_eq!(only(&errors).kind, BuildErrorKind::Duplicate { of: 0 });
}

#[test]
fn prefixes_equal_up_to_a_trailing_slash_are_duplicates() {
    let errors = build_err(vec![prefix("/api", "a"), prefix("/api/", "b")]);
    assert_eq!(only(&errors).kind, BuildErrorKind::Duplicate { of: 0 });
}

#[test]
fn same_path_with_different_methods_is_fine() {
    build(vec![
        exact("/x", "get").methods([Method::GET]),
        exact("/x", "post").methods([Method::POST]),
        exact("/x", "any"),
    ]);
}

#[test]
fn method_subset_of_an_earlier_method_list_is_unreachable() {
    let errors = build_err(vec![
        exact("/x", "get-post").methods([Method::GET, Method::POST]),
        exact("/x", "get").methods([Method::GET]),
    ]);
    let e = only(&errors);
    assert_eq!((e.route, e.kind), (1, BuildErrorKind::Unreachable { shadowed_by: 0 }));
}

#[test]
fn head_only_route_after_a_get_route_is_unreachable() {
    let errors =
        build_err(vec![exact("/x", "get").methods([Method::GET]), exact("/x", "head").methods([Method::HEAD])]);
    assert_eq!(only(&errors).kind, BuildErrorKind::Unreachable { shadowed_by: 0 });
}

#[test]
fn get_only_route_after_any_method_route_is_reachable_because_method_lists_rank_first() {
    let r = build(vec![exact("/x", "any"), exact("/x", "get").methods([Method::GET])]);
    assert_eq!(hit(&r, &Req::get("/x")), Some("get"));
}

#[test]
fn any_method_route_after_an_any_method_route_on_a_superset_of_hosts_is_unreachable() {
    let errors = build_err(vec![exact("/x", "wide").hosts(["a.com", "b.com"]), exact("/x", "narrow").hosts(["a.com"])]);
    assert_eq!(only(&errors).kind, BuildErrorKind::Unreachable { shadowed_by: 0 });
}

#[test]
fn route_reachable_in_one_of_its_host_groups_is_fine() {
    build(vec![exact("/x", "a").hosts(["a.com"]), exact("/x", "ab").hosts(["a.com", "b.com"])]);
}

#[test]
fn shadowing_needs_the_same_rules() {
    // Fewer rules rank later but the earlier route does not cover every request of the later one.
    build(vec![
        exact("/x", "beta").header(hn("x-beta"), ValueMatch::Present),
        exact("/x", "plain"),
        exact("/x", "other-beta").header(hn("x-beta"), ValueMatch::Exact("2".into())),
    ]);
}

#[test]
fn less_specific_route_after_a_more_specific_one_is_fine() {
    build(vec![exact("/a/b", "exact"), tpl("/a/{x}", "template"), re("/a/.*", "regex"), prefix("/a", "prefix")]);
}

#[test]
fn shadowed_in_each_group_by_different_routes_is_unreachable() {
    let errors = build_err(vec![
        exact("/x", "a").hosts(["a.com"]).methods([Method::GET, Method::POST]),
        exact("/x", "b").hosts(["b.com"]).methods([Method::GET]),
        exact("/x", "ab").hosts(["a.com", "b.com"]).methods([Method::GET]),
    ]);
    assert_eq!(only(&errors).kind, BuildErrorKind::Unreachable { shadowed_by: 0 });
}
