//! Path rewrites.

use super::support::*;
use crate::{PathMatch, Rewrite, Selection};

fn rewrite(path_match: PathMatch, rw: Rewrite, path: &str) -> String {
    let compiled = rw.compile(&path_match).unwrap();
    let router = build(vec![crate::RouteSpec::new(path_match, "r")]);
    let req = Req::get(path);
    let view = req.view();
    let Selection::Matched(m) = router.select(&view) else { panic!("{path} did not match") };
    let mut out = String::from("garbage");
    compiled.apply(path, &m.params, &mut out);
    out
}

#[test]
fn strip_prefix_removes_a_segment_aware_prefix() {
    let p = || PathMatch::Prefix("/api".into());
    assert_eq!(rewrite(p(), Rewrite::StripPrefix("/api".into()), "/api/users"), "/users");
    assert_eq!(rewrite(p(), Rewrite::StripPrefix("/api".into()), "/api"), "/");
    assert_eq!(rewrite(p(), Rewrite::StripPrefix("/api/".into()), "/api/"), "/");
    assert_eq!(rewrite(PathMatch::Prefix("/".into()), Rewrite::StripPrefix("/api".into()), "/apix"), "/apix");
    assert_eq!(rewrite(PathMatch::Prefix("/".into()), Rewrite::StripPrefix("/".into()), "/a/b"), "/a/b");
}

#[test]
fn template_fills_template_params() {
    let p = || PathMatch::Template("/u/{id}/p/{post}".into());
    assert_eq!(rewrite(p(), Rewrite::Template("/users/{id}/posts/{post}".into()), "/u/7/p/9"), "/users/7/posts/9");
    assert_eq!(rewrite(p(), Rewrite::Template("/v2/{post}.json".into()), "/u/7/p/9"), "/v2/9.json");
}

#[test]
fn template_fills_catch_all_without_doubling_slashes() {
    let p = || PathMatch::Template("/files/{*rest}".into());
    let rw = || Rewrite::Template("/static/{*rest}".into());
    assert_eq!(rewrite(p(), rw(), "/files/a/b"), "/static/a/b");
    assert_eq!(rewrite(p(), rw(), "/files/"), "/static/");
    assert_eq!(rewrite(p(), Rewrite::Template("/{rest}".into()), "/files/a/"), "/a/");
    assert_eq!(rewrite(p(), Rewrite::Template("/s/{rest}/index".into()), "/files/"), "/s/index");
}

#[test]
fn template_fills_regex_named_groups() {
    let p = || PathMatch::Regex(r"/old(?P<rest>/.*)?".into());
    assert_eq!(rewrite(p(), Rewrite::Template("/new/{rest}".into()), "/old/a/b"), "/new/a/b");
    assert_eq!(rewrite(p(), Rewrite::Template("/new/{rest}".into()), "/old"), "/new/");
}

#[test]
fn template_output_never_contains_dot_segments() {
    let p = || PathMatch::Regex(r"/x(?P<tail>.*)".into());
    assert_eq!(rewrite(p(), Rewrite::Template("/new/{tail}".into()), "/x.."), "/");
    assert_eq!(rewrite(p(), Rewrite::Template("/new/{tail}/y".into()), "/x."), "/new/y");
}

#[test]
fn compile_rejects_params_the_path_does_not_capture() {
    let err = Rewrite::Template("/u/{user}".into()).compile(&PathMatch::Template("/u/{id}".into())).unwrap_err();
    assert!(err.contains("captures id"), "{err}");
    let err = Rewrite::Template("/u/{id}".into()).compile(&PathMatch::Prefix("/u".into())).unwrap_err();
    assert!(err.contains("captures nothing"), "{err}");
    let err = Rewrite::Template("/u/{x}".into()).compile(&PathMatch::Regex("/(?P<y>.*)".into())).unwrap_err();
    assert!(err.contains("captures y"), "{err}");
}

#[test]
fn compile_rejects_malformed_templates() {
    let path = PathMatch::Template("/u/{id}".into());
    assert!(Rewrite::Template("/u/{id".into()).compile(&path).is_err());
    assert!(Rewrite::Template("/u/id}".into()).compile(&path).is_err());
    assert!(Rewrite::Template("u/{id}".into()).compile(&path).is_err());
    assert!(Rewrite::Template("/u//{id}".into()).compile(&path).is_err());
    assert!(Rewrite::Template("/u/{}".into()).compile(&path).is_err());
    assert!(Rewrite::StripPrefix("api".into()).compile(&path).is_err());
}
