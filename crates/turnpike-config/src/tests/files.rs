//! Loading files and directories, and merging a directory's files.

use super::{Doc, TempDir, brief, no_env};
use crate::load_path;

#[test]
fn loads_a_single_file() {
    let dir = TempDir::new("single");
    let path = dir.write("turnpike.yaml", "routes:\n  - id: a\n    upstream: b\n");
    let loaded = load_path::<Doc>(&path, &no_env);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.value.unwrap().routes.len(), 1);
    assert_eq!(loaded.sources.name(crate::FileId(0)), path.display().to_string());
}

#[test]
fn merges_a_directory_in_file_name_order() {
    let dir = TempDir::new("merge");
    dir.write("b-routes.yml", "routes:\n  - id: second\n    upstream: users\nupstreams:\n  orders: {endpoints: [o]}\n");
    dir.write("a-routes.yaml", "routes:\n  - id: first\n    upstream: users\nupstreams:\n  users: {endpoints: [u]}\n");
    dir.write("c.json", "{\"listen\": \":8080\"}");
    dir.write("empty.yaml", "# nothing yet\n");
    dir.write("notes.txt", "not: config\n");
    dir.write(".hidden.yaml", "bogus: 1\n");
    dir.write("sub/d.yaml", "bogus: 1\n");
    let loaded = load_path::<Doc>(&dir.0, &no_env);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let doc = loaded.value.unwrap();
    let ids: Vec<&str> = doc.routes.iter().map(|r| r.id.value.as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    assert_eq!(doc.upstreams.keys().collect::<Vec<_>>(), ["orders", "users"]);
    assert_eq!(doc.listen.as_deref(), Some(":8080"));
    // Elements keep the position of the file they came from.
    let second = &doc.routes[1].id;
    assert_eq!(loaded.sources.name(second.span.file), dir.0.join("b-routes.yml").display().to_string());
    assert_eq!(second.path.to_string(), "routes[1].id");
}

#[test]
fn a_key_defined_in_two_files_is_an_error_at_the_second() {
    let dir = TempDir::new("collide");
    let a = dir.write("a.yaml", "listen: one\nupstreams:\n  users: {endpoints: [a]}\n");
    dir.write("b.yaml", "upstreams:\n  users: {endpoints: [b]}\n  orders: {endpoints: [o]}\nlisten: two\nroutes: []\n");
    dir.write("c.yaml", "routes: {}\n");
    let loaded = load_path::<Doc>(&dir.0, &no_env);
    let a = a.display();
    assert_eq!(
        brief(&loaded.errors),
        [
            format!("2:3 upstreams.users: `upstreams.users` is already defined at {a}:3:3"),
            format!("4:1 listen: `listen` is already defined at {a}:1:1"),
            format!(
                "1:1 routes: `routes` is already defined at {}:5:1 as a sequence (here a mapping)",
                dir.0.join("b.yaml").display()
            ),
        ]
    );
    let files: Vec<&str> = loaded.errors.iter().map(|e| loaded.sources.name(e.span.unwrap().file)).collect();
    assert!(files[0].ends_with("b.yaml") && files[2].ends_with("c.yaml"));
    // The first definitions win; the rest merges.
    let doc = loaded.value.unwrap();
    assert_eq!(doc.upstreams["users"].endpoints, ["a"]);
    assert!(doc.upstreams.contains_key("orders"));
    assert_eq!(doc.listen.as_deref(), Some("one"));
}

#[test]
fn a_file_whose_top_level_is_not_a_mapping_is_an_error() {
    let dir = TempDir::new("toplevel");
    dir.write("a.yaml", "- 1\n");
    dir.write("b.yaml", "listen: x\n");
    let loaded = load_path::<Doc>(&dir.0, &no_env);
    assert_eq!(loaded.errors.len(), 1);
    assert!(loaded.errors[0].message.ends_with("a.yaml` must be a mapping, found a sequence"), "{:?}", loaded.errors);
    assert_eq!(loaded.value.unwrap().listen.as_deref(), Some("x"));
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = TempDir::new("empty");
    dir.write("readme.md", "hi");
    let loaded = load_path::<Doc>(&dir.0, &no_env);
    assert!(loaded.value.is_none());
    assert_eq!(
        brief(&loaded.errors),
        [format!("- : no `*.yaml`, `*.yml` or `*.json` files in directory `{}`", dir.0.display())]
    );
}

#[test]
fn a_missing_path_is_an_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.yaml");
    let loaded = load_path::<Doc>(&path, &no_env);
    assert!(loaded.value.is_none());
    assert_eq!(loaded.errors.len(), 1);
    assert!(
        loaded.errors[0].message.starts_with(&format!("cannot read `{}`: ", path.display())),
        "{:?}",
        loaded.errors
    );
}

#[test]
fn a_syntax_error_in_one_file_fails_the_directory() {
    let dir = TempDir::new("syntax");
    dir.write("a.yaml", "listen: [\n");
    dir.write("b.yaml", "listen: x\nlisten: y\n");
    let loaded = load_path::<Doc>(&dir.0, &no_env);
    assert!(loaded.value.is_none() && loaded.root.is_none());
    // Both files are still checked.
    assert_eq!(loaded.errors.len(), 2, "{:?}", loaded.errors);
    assert!(loaded.errors[0].message.starts_with("syntax error"));
    assert!(loaded.errors[1].message.starts_with("duplicate key `listen`"));
}
