//! Compiling route specs into a [`Router`]: validation, duplicate and shadowing checks, index
//! construction.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::error::{BuildError, BuildErrorKind};
use crate::host::{HostKey, parse_host};
use crate::methods::MethodSet;
use crate::pattern::{Seg, anchored_regex, check_normalized, parse_prefix, parse_template, regex_names, shape};
use crate::router::{Group, NONE, Node, RegexEntry, RegexGroup, Route, Router, Span};
use crate::rules::{HeaderCheck, QueryCheck};
use crate::spec::{PathMatch, RouteSpec, ValueMatch};
use crate::table::StrTable;

/// A validated route, before indexing.
struct Compiled {
    /// Sorted; `[HostKey::Any]` when the route lists no host.
    hosts: Vec<HostKey>,
    path: PathKind,
    /// Equal keys match exactly the same paths (template param names are erased).
    path_key: PathKey,
    methods: MethodSet,
    headers: Vec<HeaderCheck>,
    query: Vec<QueryCheck>,
    /// Header and query rules, sorted: equal keys accept exactly the same requests.
    rules_key: Vec<RuleKey>,
    names: Vec<Box<str>>,
    regex_groups: Vec<usize>,
}

enum PathKind {
    Exact,
    Template(Vec<Seg>),
    Prefix(Vec<String>),
    Regex { regex: regex::Regex, anchored: String, first: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PathKey {
    Exact(String),
    Template(String),
    Regex(String),
    Prefix(String),
}

/// `(0 = header | 1 = query, name, rule)`.
type RuleKey = (u8, String, ValueMatch);

impl Compiled {
    fn class(&self) -> u8 {
        match self.path {
            PathKind::Exact => 0,
            PathKind::Template(_) => 1,
            PathKind::Regex { .. } => 2,
            PathKind::Prefix(_) => 3,
        }
    }
}

/// The documented precedence inside one host group, as a total order (`Less` = tried first).
fn cmp_rank(a: &Compiled, ai: usize, b: &Compiled, bi: usize) -> Ordering {
    a.class()
        .cmp(&b.class())
        .then_with(|| match (&a.path, &b.path) {
            (PathKind::Template(x), PathKind::Template(y)) => cmp_template(x, y),
            (PathKind::Regex { first: x, .. }, PathKind::Regex { first: y, .. }) => x.cmp(y),
            (PathKind::Prefix(x), PathKind::Prefix(y)) => y.len().cmp(&x.len()),
            _ => Ordering::Equal,
        })
        // Only separates paths that can never match the same request; keeps the listing stable and
        // grouped.
        .then_with(|| a.path_key.cmp(&b.path_key))
        .then_with(|| b.rules_key.len().cmp(&a.rules_key.len()))
        .then_with(|| a.methods.is_any().cmp(&b.methods.is_any()))
        .then_with(|| ai.cmp(&bi))
}

/// Segment by segment, at the first difference static < param < catch-all; otherwise more segments
/// first.
pub(crate) fn cmp_template(x: &[Seg], y: &[Seg]) -> Ordering {
    for (a, b) in x.iter().zip(y) {
        match a.kind().cmp(&b.kind()) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    y.len().cmp(&x.len())
}

pub(crate) fn build<T>(specs: Vec<RouteSpec<T>>) -> Result<Router<T>, Vec<BuildError>> {
    let mut errors = Vec::new();
    let mut compiled: Vec<Option<Compiled>> =
        specs.iter().enumerate().map(|(i, s)| compile_route(i, s, &mut errors)).collect();

    // A regex pattern ranks by the index of the first route declaring it.
    let mut first_decl: HashMap<String, usize> = HashMap::new();
    for (i, c) in compiled.iter_mut().enumerate() {
        if let Some(Compiled { path: PathKind::Regex { first, .. }, path_key: PathKey::Regex(p), .. }) = c {
            *first = *first_decl.entry(p.clone()).or_insert(i);
        }
    }

    check_shadowing(&compiled, &mut errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.route);
        return Err(errors);
    }
    let compiled: Vec<Compiled> = compiled.into_iter().flatten().collect();
    assemble(specs, compiled)
}

fn compile_route<T>(i: usize, spec: &RouteSpec<T>, errors: &mut Vec<BuildError>) -> Option<Compiled> {
    let before = errors.len();

    let mut hosts: Vec<(usize, HostKey)> = Vec::new();
    for (j, raw) in spec.hosts.iter().enumerate() {
        match parse_host(raw) {
            Ok(key) => match hosts.iter().find(|(_, k)| *k == key) {
                Some((prev, _)) => {
                    errors.push(BuildError::invalid(i, format!("hosts[{j}]"), format!("duplicate of hosts[{prev}]")));
                }
                None => hosts.push((j, key)),
            },
            Err(msg) => errors.push(BuildError::invalid(i, format!("hosts[{j}]"), msg)),
        }
    }
    let mut hosts: Vec<HostKey> = hosts.into_iter().map(|(_, k)| k).collect();
    if hosts.is_empty() {
        hosts.push(HostKey::Any);
    }
    hosts.sort();

    let path = match &spec.path {
        PathMatch::Exact(p) => {
            check_normalized(p).map(|()| (PathKind::Exact, PathKey::Exact(p.clone()), vec![], vec![]))
        }
        PathMatch::Template(t) => parse_template(t).map(|tp| {
            let key = PathKey::Template(shape(&tp.segs));
            (PathKind::Template(tp.segs), key, tp.names, vec![])
        }),
        PathMatch::Prefix(p) => parse_prefix(p).map(|segs| {
            let key = PathKey::Prefix(format!("/{}", segs.join("/")));
            (PathKind::Prefix(segs), key, vec![], vec![])
        }),
        PathMatch::Regex(r) => anchored_regex(r).map(|(regex, anchored)| {
            let (groups, names) = regex_names(&regex).into_iter().unzip();
            (PathKind::Regex { regex, anchored, first: i }, PathKey::Regex(r.clone()), names, groups)
        }),
    };
    let path = path.map_err(|msg| errors.push(BuildError::invalid(i, "path", msg))).ok();

    let methods =
        MethodSet::from_list(&spec.methods).map_err(|m| errors.push(BuildError::invalid(i, "methods", m))).ok();

    let mut rules_key: Vec<(RuleKey, String)> = Vec::new();
    let mut check_rule = |errors: &mut Vec<BuildError>, key: RuleKey, field: String| {
        for (prev, prev_field) in &rules_key {
            if prev.0 != key.0 || prev.1 != key.1 {
                continue;
            }
            if *prev == key {
                errors.push(BuildError::invalid(i, field.clone(), format!("duplicate of {prev_field}")));
                return;
            }
            if (prev.2 == ValueMatch::Absent) != (key.2 == ValueMatch::Absent) {
                errors.push(BuildError::invalid(
                    i,
                    field.clone(),
                    format!("contradicts {prev_field}: the route could never match"),
                ));
                return;
            }
        }
        rules_key.push((key, field));
    };

    let mut headers = Vec::with_capacity(spec.headers.len());
    for (j, h) in spec.headers.iter().enumerate() {
        let field = format!("headers[{j}]");
        match HeaderCheck::compile(&h.name, &h.rule) {
            Ok(c) => headers.push(c),
            Err(msg) => errors.push(BuildError::invalid(i, field.clone(), msg)),
        }
        check_rule(errors, (0, h.name.as_str().to_owned(), h.rule.clone()), field);
    }
    let mut query = Vec::with_capacity(spec.query.len());
    for (j, q) in spec.query.iter().enumerate() {
        let field = format!("query[{j}]");
        match QueryCheck::compile(&q.name, &q.rule) {
            Ok(c) => query.push(c),
            Err(msg) => errors.push(BuildError::invalid(i, field.clone(), msg)),
        }
        check_rule(errors, (1, q.name.clone(), q.rule.clone()), field);
    }

    if errors.len() > before {
        return None;
    }
    let (path, path_key, names, regex_groups) = path?;
    let mut rules_key: Vec<RuleKey> = rules_key.into_iter().map(|(k, _)| k).collect();
    rules_key.sort();
    Some(Compiled { hosts, path, path_key, methods: methods?, headers, query, rules_key, names, regex_groups })
}

/// Route indices of one (path matcher, rules) bucket per host group, in declaration order.
type ByHost<'a> = HashMap<&'a HostKey, Vec<usize>>;

/// Reports duplicates and routes that can certainly never be selected (see
/// [`BuildErrorKind::Unreachable`]).
///
/// Only routes with the same path matcher and the same rules are compared: inside such a bucket the
/// precedence is "method list first, then declared order", so a route can only be shadowed by an
/// earlier-declared one.
fn check_shadowing(compiled: &[Option<Compiled>], errors: &mut Vec<BuildError>) {
    let mut buckets: HashMap<(&PathKey, &[RuleKey]), ByHost<'_>> = HashMap::new();
    for (i, c) in compiled.iter().enumerate() {
        let Some(c) = c else { continue };
        let by_host = buckets.entry((&c.path_key, &c.rules_key)).or_default();
        for h in &c.hosts {
            by_host.entry(h).or_default().push(i);
        }
    }
    let get = |i: usize| compiled[i].as_ref();
    for (i, c) in compiled.iter().enumerate() {
        let Some(b) = c else { continue };
        let Some(by_host) = buckets.get(&(&b.path_key, &b.rules_key[..])) else {
            continue;
        };
        let earlier = |h: &HostKey| by_host.get(h).into_iter().flatten().copied().take_while(move |&a| a < i);

        let duplicate = b
            .hosts
            .first()
            .and_then(|h| earlier(h).find(|&a| get(a).is_some_and(|a| a.hosts == b.hosts && a.methods == b.methods)));
        if let Some(of) = duplicate {
            errors.push(BuildError {
                route: i,
                field: String::new(),
                kind: BuildErrorKind::Duplicate { of },
                message: format!("duplicate of route {of}"),
            });
            continue;
        }

        // An any-method route only yields to an earlier any-method route; a route with a method
        // list only to an earlier route whose list includes all of its methods (an
        // any-method route ranks after it).
        let shadows = |a: &Compiled| {
            if b.methods.is_any() { a.methods.is_any() } else { !a.methods.is_any() && a.methods.includes(&b.methods) }
        };
        let mut shadowed_by = None;
        let mut everywhere = true;
        for h in &b.hosts {
            match earlier(h).find(|&a| get(a).is_some_and(shadows)) {
                Some(a) => {
                    shadowed_by.get_or_insert(a);
                }
                None => {
                    everywhere = false;
                    break;
                }
            }
        }
        if let (true, Some(a)) = (everywhere, shadowed_by) {
            errors.push(BuildError {
                route: i,
                field: String::new(),
                kind: BuildErrorKind::Unreachable { shadowed_by: a },
                message: format!(
                    "can never be selected: route {a} has the same path and rules, ranks first and accepts all of its methods"
                ),
            });
        }
    }
}

/// A trie node while building.
struct BNode {
    parent: u32,
    param: u32,
    has_static: bool,
    end: Vec<u32>,
    catch_all: Vec<u32>,
    prefix: Vec<u32>,
}

struct Trie {
    nodes: Vec<BNode>,
    edges: HashMap<(u32, String), u32>,
}

impl Trie {
    fn node(&mut self, parent: u32) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(BNode {
            parent,
            param: NONE,
            has_static: false,
            end: Vec::new(),
            catch_all: Vec::new(),
            prefix: Vec::new(),
        });
        id
    }

    fn static_child(&mut self, node: u32, seg: &str) -> u32 {
        if let Some(&c) = self.edges.get(&(node, seg.to_owned())) {
            return c;
        }
        let c = self.node(node);
        self.edges.insert((node, seg.to_owned()), c);
        self.nodes[node as usize].has_static = true;
        c
    }

    fn param_child(&mut self, node: u32) -> u32 {
        match self.nodes[node as usize].param {
            NONE => {
                let c = self.node(node);
                self.nodes[node as usize].param = c;
                c
            }
            c => c,
        }
    }
}

fn push_span(lists: &mut Vec<u32>, ids: &[u32]) -> Span {
    let start = lists.len() as u32;
    lists.extend_from_slice(ids);
    Span { start, end: lists.len() as u32 }
}

fn assemble<T>(specs: Vec<RouteSpec<T>>, compiled: Vec<Compiled>) -> Result<Router<T>, Vec<BuildError>> {
    let mut group_of: HashMap<HostKey, usize> = HashMap::new();
    let mut members: Vec<(HostKey, Vec<usize>)> = Vec::new();
    for (i, c) in compiled.iter().enumerate() {
        for h in &c.hosts {
            let g = *group_of.entry(h.clone()).or_insert_with(|| {
                members.push((h.clone(), Vec::new()));
                members.len() - 1
            });
            members[g].1.push(i);
        }
    }

    let mut errors = Vec::new();
    let mut trie = Trie { nodes: Vec::new(), edges: HashMap::new() };
    let mut lists = Vec::new();
    let mut exact_entries = Vec::new();
    let mut exact_lists = Vec::new();
    let mut groups = Vec::with_capacity(members.len());
    for (gid, (key, mut ids)) in members.into_iter().enumerate() {
        ids.sort_by(|&a, &b| cmp_rank(&compiled[a], a, &compiled[b], b));
        let template_root = trie.node(NONE);
        let prefix_root = trie.node(NONE);
        // Routes are visited in precedence order, so every list below comes out in precedence order
        // too.
        let mut exact: Vec<(String, Vec<u32>)> = Vec::new();
        let mut exact_index: HashMap<String, usize> = HashMap::new();
        let mut regexes: Vec<(&str, &regex::Regex, Vec<u32>, usize)> = Vec::new();
        for &r in &ids {
            let c = &compiled[r];
            match &c.path {
                PathKind::Exact => {
                    let PathMatch::Exact(p) = &specs[r].path else {
                        continue;
                    };
                    let k = *exact_index.entry(p.clone()).or_insert_with(|| {
                        exact.push((p.clone(), Vec::new()));
                        exact.len() - 1
                    });
                    exact[k].1.push(r as u32);
                }
                PathKind::Template(segs) => {
                    let mut node = template_root;
                    let mut catch_all = false;
                    for seg in segs {
                        match seg {
                            Seg::Static(s) => node = trie.static_child(node, s),
                            Seg::Param => node = trie.param_child(node),
                            Seg::CatchAll => catch_all = true,
                        }
                    }
                    let n = &mut trie.nodes[node as usize];
                    if catch_all { n.catch_all.push(r as u32) } else { n.end.push(r as u32) }
                }
                PathKind::Prefix(segs) => {
                    let mut node = prefix_root;
                    for s in segs {
                        node = trie.static_child(node, s);
                    }
                    trie.nodes[node as usize].prefix.push(r as u32);
                }
                PathKind::Regex { regex, anchored, .. } => match regexes.last_mut() {
                    Some(last) if last.0 == anchored => last.2.push(r as u32),
                    _ => regexes.push((anchored, regex, vec![r as u32], r)),
                },
            }
        }
        for (path, ids) in &exact {
            let span = push_span(&mut lists, ids);
            exact_entries.push((gid as u32, path.clone(), exact_lists.len() as u32));
            exact_lists.push(span);
        }
        let regex = if regexes.is_empty() {
            None
        } else {
            match regex::RegexSet::new(regexes.iter().map(|r| r.0)) {
                Ok(set) => Some(RegexGroup {
                    set,
                    entries: regexes
                        .iter()
                        .map(|(_, re, ids, _)| RegexEntry { regex: (*re).clone(), routes: push_span(&mut lists, ids) })
                        .collect(),
                }),
                Err(e) => {
                    errors.push(BuildError::invalid(
                        regexes[0].3,
                        "path",
                        format!("the regexes of host group `{}` do not compile together: {e}", key.group()),
                    ));
                    None
                }
            }
        };
        groups.push(Group {
            key,
            template_root,
            prefix_root,
            has_exact: !exact.is_empty(),
            regex,
            order: ids.iter().map(|&r| r as u32).collect(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let nodes: Vec<Node> = trie
        .nodes
        .iter()
        .map(|n| Node {
            parent: n.parent,
            param: n.param,
            has_static: n.has_static,
            end: push_span(&mut lists, &n.end),
            catch_all: push_span(&mut lists, &n.catch_all),
            prefix: push_span(&mut lists, &n.prefix),
        })
        .collect();
    let children = StrTable::build(trie.edges.into_iter().map(|((p, s), c)| (p, s, c)).collect(), false);

    let mut exact_hosts = Vec::new();
    let mut wildcard_hosts = Vec::new();
    let mut any_group = None;
    let mut wildcard_labels = 0;
    for (gid, g) in groups.iter().enumerate() {
        match &g.key {
            HostKey::Exact(h) => exact_hosts.push((0, h.clone(), gid as u32)),
            HostKey::Wildcard(s) => {
                wildcard_labels = wildcard_labels.max(s.split('.').count());
                wildcard_hosts.push((0, s.clone(), gid as u32));
            }
            HostKey::Any => any_group = Some(gid as u32),
        }
    }
    let mut display_groups: Vec<u32> = (0..groups.len() as u32).collect();
    display_groups.sort_by(|&a, &b| {
        let order = |k: &HostKey| match k {
            HostKey::Exact(h) => (0, 0, h.clone()),
            HostKey::Wildcard(s) => (1, usize::MAX - s.split('.').count(), s.clone()),
            HostKey::Any => (2, 0, String::new()),
        };
        order(&groups[a as usize].key).cmp(&order(&groups[b as usize].key))
    });

    let routes = specs
        .into_iter()
        .zip(compiled)
        .map(|(spec, c)| Route {
            path_rank: explain(&c),
            spec,
            methods: c.methods,
            headers: c.headers.into(),
            query: c.query.into(),
            names: c.names.into(),
            regex_groups: c.regex_groups.into(),
        })
        .collect();

    Ok(Router {
        routes,
        groups,
        exact_hosts: StrTable::build(exact_hosts, true),
        wildcard_hosts: StrTable::build(wildcard_hosts, true),
        wildcard_labels,
        any_group,
        exact_paths: StrTable::build(exact_entries, false),
        exact_lists,
        children,
        nodes,
        lists,
        display_groups,
    })
}

fn explain(c: &Compiled) -> String {
    match &c.path {
        PathKind::Exact => "exact path".into(),
        PathKind::Template(segs) => {
            let kinds: Vec<&str> = segs
                .iter()
                .map(|s| match s {
                    Seg::Static(_) => "static",
                    Seg::Param => "param",
                    Seg::CatchAll => "catch-all",
                })
                .collect();
            format!("template [{}]", kinds.join(", "))
        }
        PathKind::Regex { first, .. } => format!("regex, pattern first declared by route #{first}"),
        PathKind::Prefix(segs) => {
            let n = segs.len();
            format!("prefix of {n} segment{}", if n == 1 { "" } else { "s" })
        }
    }
}
