//! Path matcher semantics: exact, template, prefix, regex.

use super::support::*;

#[test]
fn exact_matches_only_the_same_path_and_trailing_slash_is_significant() {
    let r = build(vec![exact("/a/b", "ab"), exact("/", "root")]);
    assert_eq!(hit(&r, &Req::get("/a/b")), Some("ab"));
    assert_eq!(hit(&r, &Req::get("/a/b/")), None);
    assert_eq!(hit(&r, &Req::get("/a")), None);
    assert_eq!(hit(&r, &Req::get("/")), Some("root"));
}

#[test]
fn template_param_matches_one_non_empty_segment() {
    let r = build(vec![tpl("/users/{id}", "user")]);
    assert_eq!(select(&r, &Req::get("/users/42")), Out::Hit("user", params(&[("id", "42")])));
    assert_eq!(hit(&r, &Req::get("/users/")), None);
    assert_eq!(hit(&r, &Req::get("/users")), None);
    assert_eq!(hit(&r, &Req::get("/users/42/")), None);
    assert_eq!(hit(&r, &Req::get("/users/42/x")), None);
}

#[test]
fn template_captures_several_params() {
    let r = build(vec![tpl("/users/{id}/posts/{post}", "post")]);
    assert_eq!(select(&r, &Req::get("/users/7/posts/9")), Out::Hit("post", params(&[("id", "7"), ("post", "9")])));
}

#[test]
fn catch_all_matches_rest_after_slash_but_not_the_bare_prefix() {
    let r = build(vec![tpl("/files/{*p}", "files")]);
    assert_eq!(select(&r, &Req::get("/files/")), Out::Hit("files", params(&[("p", "")])));
    assert_eq!(select(&r, &Req::get("/files/x/y")), Out::Hit("files", params(&[("p", "x/y")])));
    assert_eq!(select(&r, &Req::get("/files/x/")), Out::Hit("files", params(&[("p", "x/")])));
    assert_eq!(hit(&r, &Req::get("/files")), None);
    assert_eq!(hit(&r, &Req::get("/filesx/y")), None);
}

#[test]
fn root_catch_all_matches_every_path() {
    let r = build(vec![tpl("/{*all}", "all")]);
    assert_eq!(select(&r, &Req::get("/")), Out::Hit("all", params(&[("all", "")])));
    assert_eq!(select(&r, &Req::get("/a/b")), Out::Hit("all", params(&[("all", "a/b")])));
}

#[test]
fn params_hold_encoded_bytes_as_in_the_normalized_path() {
    let r = build(vec![tpl("/f/{name}", "f")]);
    assert_eq!(select(&r, &Req::get("/f/a%2Fb")), Out::Hit("f", params(&[("name", "a%2Fb")])));
}

#[test]
fn prefix_is_segment_aware() {
    let r = build(vec![prefix("/api", "api")]);
    assert_eq!(hit(&r, &Req::get("/api")), Some("api"));
    assert_eq!(hit(&r, &Req::get("/api/")), Some("api"));
    assert_eq!(hit(&r, &Req::get("/api/x/y")), Some("api"));
    assert_eq!(hit(&r, &Req::get("/apix")), None);
    assert_eq!(hit(&r, &Req::get("/")), None);
}

#[test]
fn prefix_trailing_slash_is_ignored() {
    let r = build(vec![prefix("/api/", "api")]);
    assert_eq!(hit(&r, &Req::get("/api")), Some("api"));
    assert_eq!(hit(&r, &Req::get("/api/v1")), Some("api"));
}

#[test]
fn root_prefix_matches_everything() {
    let r = build(vec![prefix("/", "all")]);
    for p in ["/", "/a", "/a/b/", "/%2F"] {
        assert_eq!(hit(&r, &Req::get(p)), Some("all"), "{p}");
    }
}

#[test]
fn regex_is_anchored_at_both_ends() {
    let r = build(vec![re("/v[0-9]+", "v")]);
    assert_eq!(hit(&r, &Req::get("/v12")), Some("v"));
    assert_eq!(hit(&r, &Req::get("/v12/x")), None);
    assert_eq!(hit(&r, &Req::get("/x/v12")), None);
}

#[test]
fn regex_alternation_stays_anchored() {
    let r = build(vec![re("/a|/b", "ab")]);
    assert_eq!(hit(&r, &Req::get("/a")), Some("ab"));
    assert_eq!(hit(&r, &Req::get("/b")), Some("ab"));
    assert_eq!(hit(&r, &Req::get("/ab")), None);
    assert_eq!(hit(&r, &Req::get("/x/b")), None);
}

#[test]
fn regex_named_groups_become_params() {
    let r = build(vec![re(r"/orders/(?P<id>[0-9]+)(?:/(?P<part>[a-z]+))?", "order")]);
    assert_eq!(
        select(&r, &Req::get("/orders/12/items")),
        Out::Hit("order", params(&[("id", "12"), ("part", "items")]))
    );
    // An optional group that did not participate is absent.
    assert_eq!(select(&r, &Req::get("/orders/12")), Out::Hit("order", params(&[("id", "12")])));
    assert_eq!(hit(&r, &Req::get("/orders/x")), None);
}

#[test]
fn path_not_starting_with_slash_selects_nothing() {
    let r = build(vec![prefix("/", "all"), re(".*", "any")]);
    assert_eq!(hit(&r, &Req::get("*")), None);
    assert_eq!(hit(&r, &Req::get("")), None);
}

#[test]
fn more_than_inline_params_are_all_captured() {
    let t = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}";
    let r = build(vec![tpl(t, "many")]);
    let out = select(&r, &Req::get("/1/2/3/4/5/6/7/8/9/10"));
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let values = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    let expected: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().copied()).collect();
    assert_eq!(out, Out::Hit("many", params(&expected)));
    let req = Req::get("/1/2/3/4/5/6/7/8/9/10");
    let view = req.view();
    let crate::Selection::Matched(m) = r.select(&view) else { panic!("no match") };
    assert_eq!(m.params.get("j"), Some("10"));
    assert_eq!(m.params.get("zz"), None);
    assert_eq!(m.params.len(), 10);
}
