//! Precedence inside a host group.

use http::Method;

use super::support::*;
use crate::ValueMatch;

#[test]
fn exact_beats_template_beats_regex_beats_prefix() {
    let r = build(vec![
        prefix("/users", "prefix"),
        re("/users/.*", "regex"),
        tpl("/users/{id}", "template"),
        exact("/users/me", "exact"),
    ]);
    assert_eq!(hit(&r, &Req::get("/users/me")), Some("exact"));
    assert_eq!(hit(&r, &Req::get("/users/42")), Some("template"));
    assert_eq!(hit(&r, &Req::get("/users/42/x")), Some("regex"));
    assert_eq!(hit(&r, &Req::get("/users")), Some("prefix"));
}

#[test]
fn static_segment_beats_param_beats_catch_all_at_first_difference() {
    let r = build(vec![tpl("/a/{*rest}", "catch"), tpl("/a/{x}/c", "param"), tpl("/a/b/{y}", "static")]);
    // `/a/b/c` matches all three: the static `b` wins at segment 2.
    assert_eq!(select(&r, &Req::get("/a/b/c")), Out::Hit("static", params(&[("y", "c")])));
    assert_eq!(select(&r, &Req::get("/a/z/c")), Out::Hit("param", params(&[("x", "z")])));
    assert_eq!(select(&r, &Req::get("/a/z/d")), Out::Hit("catch", params(&[("rest", "z/d")])));
}

#[test]
fn first_difference_decides_even_against_later_static_segments() {
    // Segment 2 differs (static vs param), so `/a/b/{x}` wins though `/a/{p}/c` has a static last
    // segment.
    let r = build(vec![tpl("/a/{p}/c", "later-static"), tpl("/a/b/{x}", "earlier-static")]);
    assert_eq!(hit(&r, &Req::get("/a/b/c")), Some("earlier-static"));
}

#[test]
fn falls_back_to_less_specific_template_when_deeper_branch_fails() {
    let r = build(vec![tpl("/a/b/c", "abc"), tpl("/a/{x}/d", "xd")]);
    // The static branch `/a/b` has no `d` child: backtrack to the param branch.
    assert_eq!(select(&r, &Req::get("/a/b/d")), Out::Hit("xd", params(&[("x", "b")])));
}

#[test]
fn longer_prefix_wins() {
    let r = build(vec![prefix("/", "root"), prefix("/api", "api"), prefix("/api/v1", "v1")]);
    assert_eq!(hit(&r, &Req::get("/api/v1/x")), Some("v1"));
    assert_eq!(hit(&r, &Req::get("/api/v2")), Some("api"));
    assert_eq!(hit(&r, &Req::get("/other")), Some("root"));
}

#[test]
fn regexes_rank_in_declared_order() {
    let r = build(vec![re("/x/.*", "first"), re("/x/[0-9]+", "second")]);
    assert_eq!(hit(&r, &Req::get("/x/1")), Some("first"));
}

#[test]
fn more_rules_first_on_equal_path() {
    let r = build(vec![
        tpl("/p/{id}", "plain"),
        tpl("/p/{id}", "beta").header(hn("x-beta"), ValueMatch::Present),
        tpl("/p/{id}", "beta-debug").header(hn("x-beta"), ValueMatch::Present).query("debug", ValueMatch::Present),
    ]);
    assert_eq!(hit(&r, &Req::get("/p/1")), Some("plain"));
    assert_eq!(hit(&r, &Req::get("/p/1").header("x-beta", "1")), Some("beta"));
    assert_eq!(hit(&r, &Req::get("/p/1").header("x-beta", "1").query("debug")), Some("beta-debug"));
}

#[test]
fn method_list_before_any_method_on_equal_path_and_rules() {
    let r = build(vec![exact("/users", "any"), exact("/users", "get").methods([Method::GET])]);
    assert_eq!(hit(&r, &Req::get("/users")), Some("get"));
    assert_eq!(hit(&r, &Req::get("/users").method(Method::POST)), Some("any"));
}

#[test]
fn declared_order_breaks_remaining_ties() {
    let r = build(vec![
        tpl("/t/{a}", "first").methods([Method::GET]),
        tpl("/t/{b}", "second").methods([Method::POST]),
        tpl("/t/{c}", "third").methods([Method::GET, Method::PUT]),
    ]);
    assert_eq!(select(&r, &Req::get("/t/1")), Out::Hit("first", params(&[("a", "1")])));
    assert_eq!(select(&r, &Req::get("/t/1").method(Method::PUT)), Out::Hit("third", params(&[("c", "1")])));
}

#[test]
fn path_specificity_beats_rule_count() {
    let r =
        build(vec![tpl("/a/{x}", "param-with-rules").header(hn("x-a"), ValueMatch::Present), tpl("/a/b", "static")]);
    assert_eq!(hit(&r, &Req::get("/a/b").header("x-a", "1")), Some("static"));
}

#[test]
fn a_candidate_failing_rules_lets_the_next_one_match() {
    let r = build(vec![
        exact("/x", "needs-header").header(hn("x-a"), ValueMatch::Exact("1".into())),
        tpl("/{p}", "template"),
        prefix("/", "fallback"),
    ]);
    assert_eq!(hit(&r, &Req::get("/x").header("x-a", "1")), Some("needs-header"));
    assert_eq!(hit(&r, &Req::get("/x").header("x-a", "2")), Some("template"));
    assert_eq!(hit(&r, &Req::get("/x/y")), Some("fallback"));
}
