//! Path normalization, and how it protects routing.

use std::borrow::Cow;

use super::support::*;
use crate::{PathError, normalize_path};

fn norm(p: &str) -> String {
    normalize_path(p).unwrap().into_owned()
}

#[test]
fn normal_paths_are_borrowed() {
    for p in ["/", "/a/b", "/a/b/", "/a%2Fb", "/%00", "/.well-known/x", "/a/..b/c.", "/~user/é"] {
        assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
    }
}

#[test]
fn removes_dot_segments() {
    assert_eq!(norm("/public/../admin"), "/admin");
    assert_eq!(norm("/a/./b"), "/a/b");
    assert_eq!(norm("/.."), "/");
    assert_eq!(norm("/../../x"), "/x");
    assert_eq!(norm("/a/b/.."), "/a/");
    assert_eq!(norm("/a/b/."), "/a/b/");
    assert_eq!(norm("/a/.."), "/");
    assert_eq!(norm("/a/b/../../c/"), "/c/");
}

#[test]
fn decodes_encoded_dots_before_removing_dot_segments() {
    assert_eq!(norm("/public/%2e%2e/admin"), "/admin");
    assert_eq!(norm("/public/%2E./admin"), "/admin");
    assert_eq!(norm("/a/%2e/b"), "/a/b");
}

#[test]
fn collapses_repeated_slashes_and_keeps_trailing_slash() {
    assert_eq!(norm("//a///b//"), "/a/b/");
    assert_eq!(norm("//"), "/");
}

#[test]
fn decodes_only_unreserved_and_uppercases_other_escapes() {
    assert_eq!(norm("/%41%7a%30%2D%2e%5F%7E"), "/Az0-._~");
    assert_eq!(norm("/a%2fb"), "/a%2Fb");
    assert_eq!(norm("/%3a%20"), "/%3A%20");
}

#[test]
fn encoded_slash_and_nul_stay_encoded() {
    assert!(matches!(normalize_path("/a%2Fb"), Ok(Cow::Borrowed(_))));
    assert_eq!(norm("/a%2F..%2Fb"), "/a%2F..%2Fb");
    assert_eq!(norm("/%00"), "/%00");
}

#[test]
fn rejects_invalid_input() {
    assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
    assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
    assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
    assert_eq!(normalize_path("/a%zz"), Err(PathError::InvalidEscape { at: 2 }));
    assert_eq!(normalize_path("/a%2"), Err(PathError::InvalidEscape { at: 2 }));
    assert_eq!(normalize_path("/a%"), Err(PathError::InvalidEscape { at: 2 }));
    assert_eq!(normalize_path("/a b"), Err(PathError::ForbiddenByte { at: 2, byte: b' ' }));
    assert_eq!(normalize_path("/a\\..\\b"), Err(PathError::ForbiddenByte { at: 2, byte: b'\\' }));
    assert_eq!(normalize_path("/a\0"), Err(PathError::ForbiddenByte { at: 2, byte: 0 }));
    assert_eq!(normalize_path("/a\x7f"), Err(PathError::ForbiddenByte { at: 2, byte: 0x7f }));
    // Errors are found even after a part that needed rewriting.
    assert_eq!(normalize_path("//a/%g1"), Err(PathError::InvalidEscape { at: 4 }));
}

#[test]
fn normalization_is_idempotent() {
    for p in ["/public/../admin", "//a/%2e/%41/b/..", "/a%2fb/./", "/%2e%2e/%2E"] {
        let once = norm(p);
        assert!(matches!(normalize_path(&once), Ok(Cow::Borrowed(_))), "{p} -> {once}");
    }
}

#[test]
fn traversal_reaches_exactly_what_the_normalized_path_reaches() {
    let r = build(vec![prefix("/public", "public"), exact("/admin", "admin"), prefix("/", "root")]);
    for raw in ["/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "//public//..//admin"] {
        let path = norm(raw);
        assert_eq!(path, "/admin", "{raw}");
        assert_eq!(hit(&r, &Req::get(&path)), hit(&r, &Req::get("/admin")), "{raw}");
    }
    // An encoded slash does not create segments, so it cannot climb out of /public.
    let path = norm("/public/..%2Fadmin");
    assert_eq!(hit(&r, &Req::get(&path)), Some("public"));
}
