//! YAML/JSON to nodes: core schema, spans, anchors, duplicate keys, syntax errors.

use std::path::Path as FsPath;

use super::{Doc, brief, load};
use crate::{Node, NodeKind, Path, SourceMap, Span, StrStyle, parse_str};

fn parse(text: &str) -> (Option<Node>, Vec<crate::ConfigError>) {
    let mut sources = SourceMap::new();
    parse_str(&mut sources, "t.yaml", text, FsPath::new("."))
}

fn root(text: &str) -> Node {
    let (root, errors) = parse(text);
    assert!(errors.is_empty(), "{errors:?}");
    root.unwrap()
}

fn kind_of(root: &Node, key: &str) -> NodeKind {
    root.get(key).unwrap().kind.clone()
}

#[test]
fn plain_scalars_follow_the_core_schema() {
    let r = root(
        "a: ~\nb: null\nc:\nd: True\ne: FALSE\nf: 0x1F\ng: 0o17\nh: -42\ni: +7\nj: 1.5\nk: .inf\n\
         l: -.Inf\nm: 1e3\nn: yes\no: on\np: 12abc\nq: .5\n",
    );
    assert_eq!(kind_of(&r, "a"), NodeKind::Null);
    assert_eq!(kind_of(&r, "b"), NodeKind::Null);
    assert_eq!(kind_of(&r, "c"), NodeKind::Null);
    assert_eq!(kind_of(&r, "d"), NodeKind::Bool(true));
    assert_eq!(kind_of(&r, "e"), NodeKind::Bool(false));
    assert_eq!(kind_of(&r, "f"), NodeKind::Int(31));
    assert_eq!(kind_of(&r, "g"), NodeKind::Int(15));
    assert_eq!(kind_of(&r, "h"), NodeKind::Int(-42));
    assert_eq!(kind_of(&r, "i"), NodeKind::Int(7));
    assert_eq!(kind_of(&r, "j"), NodeKind::Float(1.5));
    assert_eq!(kind_of(&r, "k"), NodeKind::Float(f64::INFINITY));
    assert_eq!(kind_of(&r, "l"), NodeKind::Float(f64::NEG_INFINITY));
    assert_eq!(kind_of(&r, "m"), NodeKind::Float(1000.0));
    assert_eq!(kind_of(&r, "n"), NodeKind::Str("yes".into(), StrStyle::Plain));
    assert_eq!(kind_of(&r, "o"), NodeKind::Str("on".into(), StrStyle::Plain));
    assert_eq!(kind_of(&r, "p"), NodeKind::Str("12abc".into(), StrStyle::Plain));
    assert_eq!(kind_of(&r, "q"), NodeKind::Float(0.5));
    let nan = root(".nan");
    assert!(matches!(nan.kind, NodeKind::Float(f) if f.is_nan()));
}

#[test]
fn quoted_and_block_scalars_stay_strings() {
    let r = root("a: \"true\"\nb: '8080'\nc: !!str 12\nd: |\n  null\n");
    assert_eq!(kind_of(&r, "a"), NodeKind::Str("true".into(), StrStyle::Quoted));
    assert_eq!(kind_of(&r, "b"), NodeKind::Str("8080".into(), StrStyle::Quoted));
    assert_eq!(kind_of(&r, "c"), NodeKind::Str("12".into(), StrStyle::Quoted));
    assert_eq!(kind_of(&r, "d"), NodeKind::Str("null\n".into(), StrStyle::Quoted));
}

#[test]
fn integer_too_large_for_64_bits_is_an_error() {
    let (_, errors) = parse("a: 99999999999999999999\n");
    assert_eq!(brief(&errors), ["1:4 : integer `99999999999999999999` does not fit in 64 bits"]);
}

#[test]
fn spans_cover_one_line_scalars_and_start_collections() {
    let r = root("routes:\n  - id: orders\n    upstream: \"orders-svc\"\n    long: a\n      b\n");
    let route = r.lookup(&Path::root().key("routes").index(0)).unwrap();
    assert_eq!((route.span.line, route.span.col), (2, 5));
    let id = route.get("id").unwrap();
    assert_eq!(id.span, Span { file: id.span.file, line: 2, col: 9, end_line: 2, end_col: 15 });
    // Quoted scalars include their quotes.
    let upstream = route.get("upstream").unwrap();
    assert_eq!((upstream.span.col, upstream.span.end_col), (15, 27));
    // A multi-line scalar is marked by its first character.
    let long = route.get("long").unwrap();
    assert_eq!((long.span.line, long.span.col, long.span.width()), (4, 11, 1));
}

#[test]
fn duplicate_key_points_at_the_second_and_names_the_first_line() {
    let (root, errors) = parse("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\n");
    assert_eq!(
        brief(&errors),
        ["5:3 : duplicate key `c` (first defined at line 3)", "6:1 : duplicate key `a` (first defined at line 1)",]
    );
    // The first definition is kept.
    let root = root.unwrap();
    assert_eq!(root.get("a").unwrap().kind, NodeKind::Int(1));
    assert_eq!(root.lookup(&Path::root().key("b").key("c")).unwrap().kind, NodeKind::Int(1));
}

#[test]
fn quoted_and_plain_spellings_of_a_key_are_duplicates() {
    let (_, errors) = parse("\"a\": 1\na: 2\n");
    assert_eq!(brief(&errors), ["2:1 : duplicate key `a` (first defined at line 1)"]);
}

#[test]
fn aliases_copy_the_anchored_node() {
    let r = root("defaults: &d\n  endpoints: [a, b]\n  port: 80\none: *d\ntwo: *d\nname: &n svc\nalso: *n\n");
    assert_eq!(r.get("one"), r.get("defaults"));
    assert_eq!(r.get("two"), r.get("defaults"));
    assert_eq!(r.get("also").unwrap().as_str(), Some("svc"));
    // Copies keep the positions of the anchored definition.
    assert_eq!(r.get("one").unwrap().get("port").unwrap().span.line, 3);
}

#[test]
fn alias_to_an_unknown_anchor_is_an_error() {
    let (root, errors) = parse("a: *nope\n");
    assert!(root.is_none());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("unknown anchor"), "{errors:?}");
    assert_eq!(errors[0].span.map(|s| (s.line, s.col)), Some((1, 4)));
}

#[test]
fn alias_expansion_is_bounded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    let (root, errors) = parse(&text);
    assert!(root.is_none());
    assert!(errors[0].message.contains("document too large"), "{errors:?}");
}

#[test]
fn syntax_error_reports_line_and_column() {
    let loaded = load::<Doc>("routes:\n  - id: a\n    upstream: [b\n");
    assert!(loaded.value.is_none() && loaded.root.is_none());
    assert_eq!(loaded.errors.len(), 1);
    let e = &loaded.errors[0];
    assert!(e.message.starts_with("syntax error: "), "{e:?}");
    assert_eq!(e.span.map(|s| s.line), Some(4));
}

#[test]
fn several_documents_in_one_file_are_an_error() {
    let (root, errors) = parse("a: 1\n---\nb: 2\n");
    assert!(root.is_none());
    assert_eq!(brief(&errors), ["2:1 : a config file must hold a single YAML document, found a second one"]);
}

#[test]
fn a_leading_document_marker_is_fine() {
    assert_eq!(root("---\na: 1\n").get("a").unwrap().kind, NodeKind::Int(1));
}

#[test]
fn keys_must_be_strings() {
    let (root, errors) = parse("? [a, b]\n: 1\n~: 2\n200: ok\ntrue: yes\n");
    assert_eq!(
        brief(&errors),
        ["1:3 : mapping keys must be strings, found a sequence", "3:1 : mapping keys must be strings, found null",]
    );
    // Other scalar keys are kept as written.
    let root = root.unwrap();
    assert_eq!(root.get("200").unwrap().as_str(), Some("ok"));
    assert_eq!(root.get("true").unwrap().as_str(), Some("yes"));
}

#[test]
fn unsupported_tags_are_errors() {
    let (_, errors) = parse("a: !custom x\nb: !!int nope\n");
    assert_eq!(brief(&errors), ["1:4 : unsupported tag `!custom`", "2:4 : `nope` is not a valid `!!int`"]);
}

#[test]
fn empty_file_is_null() {
    assert_eq!(root("# nothing\n").kind, NodeKind::Null);
}

#[test]
fn json_input_is_read_with_positions() {
    let text = "{\n  \"routes\": [\n    {\"id\": \"a\", \"upstream\": \"b\", \"timeout\": 5}\n  ],\n\t\"listen\": \"0.0.0.0:80\"\n}\n";
    let loaded = super::load::<Doc>(text);
    assert_eq!(
        brief(&loaded.errors),
        ["3:45 routes[a].timeout: duration `5` has no unit: add one, e.g. `5s` or `5ms`"]
    );
    let doc = loaded.value.unwrap();
    assert_eq!(doc.listen.as_deref(), Some("0.0.0.0:80"));
    assert_eq!(doc.routes[0].upstream.value, "b");
}

#[test]
fn json_numbers_and_literals_resolve() {
    let r = root("{\"a\": 1, \"b\": -2.5e3, \"c\": true, \"d\": null, \"e\": \"1\"}");
    assert_eq!(kind_of(&r, "a"), NodeKind::Int(1));
    assert_eq!(kind_of(&r, "b"), NodeKind::Float(-2500.0));
    assert_eq!(kind_of(&r, "c"), NodeKind::Bool(true));
    assert_eq!(kind_of(&r, "d"), NodeKind::Null);
    assert_eq!(kind_of(&r, "e"), NodeKind::Str("1".into(), StrStyle::Quoted));
}

#[test]
fn byte_order_mark_is_ignored() {
    let mut sources = SourceMap::new();
    let (root, errors) = parse_str(&mut sources, "t.yaml", "\u{feff}a: 1\n", FsPath::new("."));
    assert!(errors.is_empty());
    assert_eq!(root.unwrap().get("a").unwrap().span.col, 4);
    assert_eq!(sources.line(crate::FileId(0), 1), Some("a: 1"));
}

#[test]
fn lookup_and_display_path_use_element_ids() {
    let r = root("routes:\n  - id: orders\n    match: {path: /o}\n  - name: users\n  - x: 1\n  - id: ''\n");
    let p = Path::root().key("routes").index(0).key("match").key("path");
    assert_eq!(r.lookup(&p).unwrap().as_str(), Some("/o"));
    assert_eq!(r.display_path(&p), "routes[orders].match.path");
    assert_eq!(r.display_path(&Path::root().key("routes").index(1)), "routes[users]");
    assert_eq!(r.display_path(&Path::root().key("routes").index(2).key("x")), "routes[2].x");
    assert_eq!(r.display_path(&Path::root().key("routes").index(3)), "routes[3]");
    assert_eq!(r.display_path(&Path::root().key("routes").index(9).key("y")), "routes[9].y");
    assert_eq!(r.display_path(&Path::root().key("a.b").key("c")), "[\"a.b\"].c");
    assert_eq!(p.to_string(), "routes[0].match.path");
    assert!(r.lookup(&Path::root().key("routes").index(9)).is_none());
}
