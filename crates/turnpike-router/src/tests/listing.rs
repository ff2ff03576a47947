//! `in_precedence_order`: the listing behind `turnpike routes`.

use http::Method;

use super::support::*;
use crate::{HostGroup, ValueMatch};

#[test]
fn lists_groups_in_lookup_order_and_routes_by_precedence() {
    let r = build(vec![
        prefix("/", "any-prefix"),
        tpl("/u/{id}", "any-template"),
        exact("/u/me", "any-exact").methods([Method::GET]),
        tpl("/u/{id}", "any-template-beta").header(hn("x-beta"), ValueMatch::Present),
        prefix("/", "wild-short").hosts(["*.com"]),
        prefix("/", "wild-long").hosts(["*.example.com"]),
        prefix("/", "b").hosts(["b.com", "a.com"]),
    ]);
    let listing: Vec<(String, usize, &str)> =
        r.in_precedence_order().iter().map(|i| (i.host.to_string(), i.rank, *i.value)).collect();
    assert_eq!(
        listing,
        vec![
            ("a.com".to_owned(), 0, "b"),
            ("b.com".to_owned(), 0, "b"),
            ("*.example.com".to_owned(), 0, "wild-long"),
            ("*.com".to_owned(), 0, "wild-short"),
            ("*".to_owned(), 0, "any-exact"),
            ("*".to_owned(), 1, "any-template-beta"),
            ("*".to_owned(), 2, "any-template"),
            ("*".to_owned(), 3, "any-prefix"),
        ]
    );
    let info = r.in_precedence_order();
    assert_eq!(info[0].host, HostGroup::Exact("a.com"));
    assert_eq!(info[2].host, HostGroup::Wildcard("example.com"));
    assert_eq!(info[5].explanation, "template [static, param]; 1 header/query rule; any method; declared #3");
    assert_eq!(info[4].explanation, "exact path; method list; declared #2");
    assert_eq!(info[7].explanation, "prefix of 0 segments; any method; declared #0");
    assert_eq!(r.len(), 7);
}
