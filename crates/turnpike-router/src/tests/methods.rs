//! Methods: 405 with `Allow`, HEAD through GET, extension methods.

use http::Method;

use super::support::*;
use crate::ValueMatch;

#[test]
fn method_mismatch_answers_405_with_sorted_allow() {
    let r = build(vec![
        exact("/x", "post").methods([Method::POST]),
        exact("/x", "del").methods([Method::DELETE, Method::PUT]),
        tpl("/{p}", "put").methods([Method::PUT]),
    ]);
    assert_eq!(select(&r, &Req::get("/x")), Out::NotAllowed(vec![Method::DELETE, Method::POST, Method::PUT]));
}

#[test]
fn allow_lists_head_wherever_get_is_allowed() {
    let r = build(vec![exact("/x", "get").methods([Method::GET])]);
    assert_eq!(select(&r, &Req::get("/x").method(Method::POST)), Out::NotAllowed(vec![Method::GET, Method::HEAD]));
}

#[test]
fn get_route_matches_head() {
    let r = build(vec![exact("/x", "get").methods([Method::GET])]);
    assert_eq!(hit(&r, &Req::get("/x").method(Method::HEAD)), Some("get"));
}

#[test]
fn head_only_route_does_not_match_get() {
    let r = build(vec![exact("/x", "head").methods([Method::HEAD])]);
    assert_eq!(select(&r, &Req::get("/x")), Out::NotAllowed(vec![Method::HEAD]));
}

#[test]
fn path_mismatch_is_404_not_405() {
    let r = build(vec![exact("/x", "post").methods([Method::POST])]);
    assert_eq!(select(&r, &Req::get("/y")), Out::NotFound);
}

#[test]
fn routes_failing_rules_do_not_contribute_to_allow() {
    let r = build(vec![
        exact("/x", "post").methods([Method::POST]),
        exact("/x", "put-beta").methods([Method::PUT]).header(hn("x-beta"), ValueMatch::Present),
    ]);
    assert_eq!(select(&r, &Req::get("/x")), Out::NotAllowed(vec![Method::POST]));
    assert_eq!(select(&r, &Req::get("/x").header("x-beta", "1")), Out::NotAllowed(vec![Method::POST, Method::PUT]));
}

#[test]
fn allow_unions_methods_across_host_groups() {
    let r = build(vec![
        exact("/x", "host").hosts(["a.com"]).methods([Method::POST]),
        exact("/x", "any").methods([Method::PATCH]),
    ]);
    assert_eq!(select(&r, &Req::get("/x").host("a.com")), Out::NotAllowed(vec![Method::PATCH, Method::POST]));
}

#[test]
fn a_full_match_anywhere_beats_a_method_mismatch() {
    let r = build(vec![exact("/x", "post").methods([Method::POST]), prefix("/", "fallback")]);
    assert_eq!(hit(&r, &Req::get("/x")), Some("fallback"));
}

#[test]
fn extension_methods_match_and_appear_in_allow() {
    let purge = Method::from_bytes(b"PURGE").unwrap();
    let r = build(vec![exact("/x", "purge").methods([purge.clone()])]);
    assert_eq!(hit(&r, &Req::get("/x").method(purge.clone())), Some("purge"));
    assert_eq!(select(&r, &Req::get("/x")), Out::NotAllowed(vec![purge]));
}
