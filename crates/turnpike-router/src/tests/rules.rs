//! Header and query rules.

use super::support::*;
use crate::ValueMatch;

#[test]
fn header_exact_is_case_sensitive_and_any_value_counts() {
    let r = build(vec![exact("/", "v2").header(hn("x-version"), ValueMatch::Exact("v2".into()))]);
    assert_eq!(hit(&r, &Req::get("/").header("x-version", "v2")), Some("v2"));
    assert_eq!(hit(&r, &Req::get("/").header("x-version", "V2")), None);
    assert_eq!(hit(&r, &Req::get("/").header("x-version", "v1").header("x-version", "v2")), Some("v2"));
    // Values are not split on commas.
    assert_eq!(hit(&r, &Req::get("/").header("x-version", "v1, v2")), None);
}

#[test]
fn header_present_and_absent() {
    let r = build(vec![
        exact("/", "present").header(hn("x-a"), ValueMatch::Present),
        exact("/", "absent").header(hn("x-b"), ValueMatch::Absent),
    ]);
    assert_eq!(hit(&r, &Req::get("/").header("x-a", "")), Some("present"));
    assert_eq!(hit(&r, &Req::get("/")), Some("absent"));
    assert_eq!(hit(&r, &Req::get("/").header("x-b", "1")), None);
}

#[test]
fn header_regex_must_match_the_whole_value() {
    let r = build(vec![exact("/", "mobile").header(hn("user-agent"), ValueMatch::Regex("Mobile/[0-9]+".into()))]);
    assert_eq!(hit(&r, &Req::get("/").header("user-agent", "Mobile/12")), Some("mobile"));
    assert_eq!(hit(&r, &Req::get("/").header("user-agent", "Foo Mobile/12")), None);
    assert_eq!(hit(&r, &Req::get("/").header("user-agent", "Mobile/12 Foo")), None);
    assert_eq!(hit(&r, &Req::get("/").header("user-agent", "x").header("user-agent", "Mobile/1")), Some("mobile"));
}

#[test]
fn all_rules_must_hold() {
    let r = build(vec![
        exact("/", "both").header(hn("x-a"), ValueMatch::Present).query("q", ValueMatch::Exact("1".into())),
    ]);
    assert_eq!(hit(&r, &Req::get("/").header("x-a", "1").query("q=1")), Some("both"));
    assert_eq!(hit(&r, &Req::get("/").header("x-a", "1")), None);
    assert_eq!(hit(&r, &Req::get("/").query("q=1")), None);
}

#[test]
fn query_exact_decodes_plus_and_percent() {
    let r = build(vec![exact("/", "hit").query("the name", ValueMatch::Exact("a b/c".into()))]);
    assert_eq!(hit(&r, &Req::get("/").query("the+name=a+b%2Fc")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("the%20name=a%20b%2fc")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("the+name=a+b")), None);
}

#[test]
fn query_repeated_parameter_any_value_counts() {
    let r = build(vec![exact("/", "hit").query("tag", ValueMatch::Exact("b".into()))]);
    assert_eq!(hit(&r, &Req::get("/").query("tag=a&tag=b&x=1")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("tag=a&tag=c")), None);
}

#[test]
fn query_present_absent_and_missing_query() {
    let r = build(vec![
        exact("/", "debug").query("debug", ValueMatch::Present),
        exact("/", "no-cache-flag").query("nocache", ValueMatch::Absent),
    ]);
    assert_eq!(hit(&r, &Req::get("/").query("debug")), Some("debug"));
    assert_eq!(hit(&r, &Req::get("/").query("a=1&debug=&b")), Some("debug"));
    assert_eq!(hit(&r, &Req::get("/")), Some("no-cache-flag"));
    assert_eq!(hit(&r, &Req::get("/").query("nocache=1")), None);
    // A name only prefixed by the rule's name is another parameter.
    assert_eq!(hit(&r, &Req::get("/").query("debugger=1")), Some("no-cache-flag"));
}

#[test]
fn query_regex_matches_decoded_value_as_a_whole() {
    let r = build(vec![exact("/", "hit").query("id", ValueMatch::Regex("[0-9]+ [a-z]+".into()))]);
    assert_eq!(hit(&r, &Req::get("/").query("id=12+ab")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("id=12%20ab")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("id=x12+ab")), None);
}

#[test]
fn query_malformed_escape_is_taken_literally() {
    let r = build(vec![exact("/", "hit").query("p", ValueMatch::Exact("100%".into()))]);
    assert_eq!(hit(&r, &Req::get("/").query("p=100%")), Some("hit"));
    assert_eq!(hit(&r, &Req::get("/").query("p=100%25")), Some("hit"));
}
