//! Host groups: exact, wildcard (longest suffix first), any-host fallback.

use http::Method;

use super::support::*;

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let r = build(vec![
        prefix("/", "any"),
        prefix("/", "wild").hosts(["*.example.com"]),
        prefix("/", "exact").hosts(["api.example.com"]),
    ]);
    assert_eq!(hit(&r, &Req::get("/").host("api.example.com")), Some("exact"));
    assert_eq!(hit(&r, &Req::get("/").host("www.example.com")), Some("wild"));
    assert_eq!(hit(&r, &Req::get("/").host("example.org")), Some("any"));
    assert_eq!(hit(&r, &Req::get("/")), Some("any"));
}

#[test]
fn wildcard_prefers_longest_suffix() {
    let r = build(vec![prefix("/", "short").hosts(["*.example.com"]), prefix("/", "long").hosts(["*.eu.example.com"])]);
    assert_eq!(hit(&r, &Req::get("/").host("a.eu.example.com")), Some("long"));
    assert_eq!(hit(&r, &Req::get("/").host("a.b.eu.example.com")), Some("long"));
    assert_eq!(hit(&r, &Req::get("/").host("eu.example.com")), Some("short"));
    assert_eq!(hit(&r, &Req::get("/").host("a.us.example.com")), Some("short"));
}

#[test]
fn wildcard_does_not_match_the_bare_suffix() {
    let r = build(vec![prefix("/", "wild").hosts(["*.example.com"])]);
    assert_eq!(hit(&r, &Req::get("/").host("example.com")), None);
    assert_eq!(hit(&r, &Req::get("/").host("badexample.com")), None);
    assert_eq!(hit(&r, &Req::get("/").host(".example.com")), None);
}

#[test]
fn falls_back_to_any_host_when_exact_group_has_no_match_for_the_path() {
    let r = build(vec![exact("/only", "exact-host").hosts(["api.example.com"]), prefix("/", "any-host")]);
    assert_eq!(hit(&r, &Req::get("/only").host("api.example.com")), Some("exact-host"));
    assert_eq!(hit(&r, &Req::get("/other").host("api.example.com")), Some("any-host"));
}

#[test]
fn a_more_specific_host_group_wins_even_with_a_less_specific_path() {
    let r = build(vec![exact("/a/b", "any-host-exact"), prefix("/", "host-prefix").hosts(["api.example.com"])]);
    assert_eq!(hit(&r, &Req::get("/a/b").host("api.example.com")), Some("host-prefix"));
    assert_eq!(hit(&r, &Req::get("/a/b").host("other.com")), Some("any-host-exact"));
}

#[test]
fn falls_back_to_next_group_when_method_does_not_match() {
    let r =
        build(vec![exact("/x", "host-post").hosts(["api.example.com"]).methods([Method::POST]), exact("/x", "any")]);
    assert_eq!(hit(&r, &Req::get("/x").host("api.example.com")), Some("any"));
    assert_eq!(hit(&r, &Req::get("/x").host("api.example.com").method(Method::POST)), Some("host-post"));
}

#[test]
fn hosts_are_case_insensitive_and_ignore_a_trailing_dot() {
    let r = build(vec![prefix("/", "exact").hosts(["API.Example.com"]), prefix("/", "wild").hosts(["*.Example.ORG"])]);
    assert_eq!(hit(&r, &Req::get("/").host("api.example.com")), Some("exact"));
    assert_eq!(hit(&r, &Req::get("/").host("API.EXAMPLE.COM")), Some("exact"));
    assert_eq!(hit(&r, &Req::get("/").host("api.example.com.")), Some("exact"));
    assert_eq!(hit(&r, &Req::get("/").host("X.example.org")), Some("wild"));
}

#[test]
fn a_route_with_several_hosts_is_in_each_group() {
    let r = build(vec![exact("/", "multi").hosts(["a.com", "*.b.com"]), exact("/", "any")]);
    assert_eq!(hit(&r, &Req::get("/").host("a.com")), Some("multi"));
    assert_eq!(hit(&r, &Req::get("/").host("x.b.com")), Some("multi"));
    assert_eq!(hit(&r, &Req::get("/").host("c.com")), Some("any"));
}

#[test]
fn request_without_host_only_reaches_any_host_routes() {
    let r = build(vec![prefix("/", "hosted").hosts(["a.com"])]);
    assert_eq!(hit(&r, &Req::get("/")), None);
}

#[test]
fn ipv6_literal_hosts_are_exact_hosts() {
    let r = build(vec![prefix("/", "v6").hosts(["[::1]"])]);
    assert_eq!(hit(&r, &Req::get("/").host("[::1]")), Some("v6"));
}

#[test]
fn wildcard_matches_hosts_with_many_labels() {
    let r = build(vec![prefix("/", "short").hosts(["*.com"]), prefix("/", "long").hosts(["*.eu.example.com"])]);
    let deep = format!("{}eu.example.com", "x.".repeat(500));
    assert_eq!(hit(&r, &Req::get("/").host(&deep)), Some("long"));
    let other = format!("{}example.com", "x.".repeat(500));
    assert_eq!(hit(&r, &Req::get("/").host(&other)), Some("short"));
}
