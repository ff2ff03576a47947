//! Property test: for random route sets, `select` agrees with a naive linear scan applying the
//! documented rules.
//!
//! The model below is written from the crate docs, independently of the trie: it lists the host
//! groups of the request, sorts each group's routes with the documented precedence and returns the
//! first full match. Routes reported as duplicate or unreachable are removed before building, while
//! the model keeps them: this also checks that those reports are sound (the removed routes never
//! win, and never change the `Allow` list).

use std::cmp::Ordering;

use http::{HeaderMap, HeaderValue, Method};

use super::support::{Out, Req, hn};
use crate::{BuildErrorKind, PathMatch, RouteSpec, Router, ValueMatch};

type Spec = RouteSpec<usize>;

/// xorshift64*: tiny, deterministic, good enough to explore shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEGS: [&str; 3] = ["a", "b", "c"];
const HOSTS: [&str; 5] = ["a.com", "x.a.com", "*.a.com", "*.x.a.com", "b.org"];
const REGEXES: [&str; 6] =
    ["/a/(?P<r>[a-c]+)", "/[ab]/c", "/(?P<x>[a-c])(?:/.*)?", "/c.*", "/a/b/?", "/(?P<x>a)/(?P<y>[bc])?"];
const REQ_HOSTS: [&str; 8] = ["a.com", "x.a.com", "y.a.com", "z.x.a.com", "q.z.x.a.com", "b.org", "c.net", "A.COM"];
const X_B_VALUES: [&str; 2] = ["2", "3"];
const QUERIES: [&str; 5] = ["q=1", "q=2&r=a+b", "q", "r=a%20b&q=1", "x=1"];
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::HEAD];

fn gen_path(rng: &mut Rng) -> PathMatch {
    let n = 1 + rng.below(3);
    match rng.below(100) {
        0..=24 => {
            let mut p: String = (0..rng.below(4)).map(|_| format!("/{}", rng.pick(&SEGS))).collect();
            if p.is_empty() || rng.chance(10) {
                p.push('/');
            }
            PathMatch::Exact(p)
        }
        25..=64 => {
            let mut p = String::new();
            let mut catch_all = false;
            for i in 0..n {
                match rng.below(100) {
                    0..=49 => p.push_str(&format!("/{}", rng.pick(&SEGS))),
                    50..=79 => p.push_str(&format!("/{{p{i}}}")),
                    _ if i + 1 == n => {
                        p.push_str(&format!("/{{*r{i}}}"));
                        catch_all = true;
                    }
                    _ => p.push_str(&format!("/{{p{i}}}")),
                }
            }
            if !catch_all && rng.chance(10) {
                p.push('/');
            }
            PathMatch::Template(p)
        }
        65..=84 => {
            let p: String = (0..rng.below(3)).map(|_| format!("/{}", rng.pick(&SEGS))).collect();
            PathMatch::Prefix(if p.is_empty() { "/".into() } else { p })
        }
        _ => PathMatch::Regex((*rng.pick(&REGEXES)).to_owned()),
    }
}

fn gen_spec(rng: &mut Rng, value: usize) -> Spec {
    let mut spec = RouteSpec::new(gen_path(rng), value);
    if rng.chance(40) {
        let first = rng.below(HOSTS.len());
        spec.hosts.push(HOSTS[first].to_owned());
        if rng.chance(30) {
            let second = (first + 1 + rng.below(HOSTS.len() - 1)) % HOSTS.len();
            spec.hosts.push(HOSTS[second].to_owned());
        }
    }
    if rng.chance(50) {
        spec.methods = METHODS.iter().filter(|_| rng.chance(40)).cloned().collect();
    }
    if rng.chance(30) {
        let rule =
            rng.pick(&[ValueMatch::Exact("1".into()), ValueMatch::Present, ValueMatch::Regex("[0-9]".into())]).clone();
        spec = spec.header(hn("x-a"), rule);
    }
    if rng.chance(20) {
        let rule = rng.pick(&[ValueMatch::Absent, ValueMatch::Exact("2".into())]).clone();
        spec = spec.header(hn("x-b"), rule);
    }
    if rng.chance(20) {
        let rule = rng.pick(&[ValueMatch::Exact("1".into()), ValueMatch::Present, ValueMatch::Absent]).clone();
        spec = spec.query("q", rule);
    }
    if rng.chance(10) {
        spec = spec.query("r", ValueMatch::Exact("a b".into()));
    }
    spec
}

fn gen_req(rng: &mut Rng) -> Req {
    let mut path: String = (0..rng.below(5)).map(|_| format!("/{}", rng.pick(&["a", "b", "c", "d"]))).collect();
    if path.is_empty() || rng.chance(15) {
        path.push('/');
    }
    let mut req = Req::get(&path)
        .method(rng.pick(&[Method::GET, Method::POST, Method::DELETE, Method::HEAD, Method::PUT]).clone());
    if rng.chance(80) {
        req = req.host(rng.pick_str(&REQ_HOSTS));
    }
    match rng.below(4) {
        0 => {}
        1 => req = req.header("x-a", "1"),
        2 => req = req.header("x-a", "5"),
        _ => req = req.header("x-a", "z").header("x-a", "1"),
    }
    if rng.chance(30) {
        req = req.header("x-b", rng.pick_str(&X_B_VALUES));
    }
    if rng.chance(50) {
        req = req.query(rng.pick_str(&QUERIES));
    }
    req
}

// ---- the model ----

fn path_params(path: &PathMatch, req_path: &str) -> Option<Vec<(String, String)>> {
    match path {
        PathMatch::Exact(p) => (p == req_path).then(Vec::new),
        PathMatch::Prefix(p) => {
            let p = p.trim_end_matches('/');
            (p.is_empty() || req_path == p || req_path.starts_with(&format!("{p}/"))).then(Vec::new)
        }
        PathMatch::Regex(r) => {
            let re = regex::Regex::new(&format!("^(?:{r})$")).unwrap();
            let caps = re.captures(req_path)?;
            Some(
                re.capture_names()
                    .flatten()
                    .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                    .collect(),
            )
        }
        PathMatch::Template(t) => {
            let tsegs: Vec<&str> = t[1..].split('/').collect();
            let psegs: Vec<&str> = req_path[1..].split('/').collect();
            let mut params = Vec::new();
            for (i, ts) in tsegs.iter().enumerate() {
                if let Some(name) = ts.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                    if psegs.len() <= i {
                        return None;
                    }
                    params.push((name.to_owned(), psegs[i..].join("/")));
                    return Some(params);
                }
                let ps = psegs.get(i)?;
                if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.push((name.to_owned(), (*ps).to_owned()));
                } else if ts != ps {
                    return None;
                }
            }
            (tsegs.len() == psegs.len()).then_some(params)
        }
    }
}

fn value_ok(rule: &ValueMatch, values: &[Vec<u8>]) -> bool {
    match rule {
        ValueMatch::Present => !values.is_empty(),
        ValueMatch::Absent => values.is_empty(),
        ValueMatch::Exact(v) => values.iter().any(|x| x == v.as_bytes()),
        ValueMatch::Regex(r) => {
            let re = regex::bytes::Regex::new(&format!("^(?:{r})$")).unwrap();
            values.iter().any(|x| re.is_match(x))
        }
    }
}

fn form_decode(s: &str) -> Vec<u8> {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn rules_ok(spec: &Spec, headers: &HeaderMap, query: Option<&str>) -> bool {
    let headers_ok = spec.headers.iter().all(|h| {
        let values: Vec<Vec<u8>> =
            headers.get_all(&h.name).iter().map(|v: &HeaderValue| v.as_bytes().to_vec()).collect();
        value_ok(&h.rule, &values)
    });
    let query_ok = spec.query.iter().all(|q| {
        let values: Vec<Vec<u8>> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                (form_decode(n) == q.name.as_bytes()).then(|| form_decode(v))
            })
            .collect();
        value_ok(&q.rule, &values)
    });
    headers_ok && query_ok
}

fn method_ok(spec: &Spec, m: &Method) -> bool {
    spec.methods.is_empty() || spec.methods.contains(m) || (*m == Method::HEAD && spec.methods.contains(&Method::GET))
}

fn class(p: &PathMatch) -> u8 {
    match p {
        PathMatch::Exact(_) => 0,
        PathMatch::Template(_) => 1,
        PathMatch::Regex(_) => 2,
        PathMatch::Prefix(_) => 3,
    }
}

fn kinds(t: &str) -> Vec<u8> {
    t[1..]
        .split('/')
        .map(|s| {
            if s.starts_with("{*") {
                2
            } else if s.starts_with('{') {
                1
            } else {
                0
            }
        })
        .collect()
}

fn model_cmp(specs: &[Spec], a: usize, b: usize) -> Ordering {
    let (x, y) = (&specs[a], &specs[b]);
    let first_decl = |r: &str| specs.iter().position(|s| s.path == PathMatch::Regex(r.to_owned())).unwrap();
    let path_order = match (&x.path, &y.path) {
        (PathMatch::Template(s), PathMatch::Template(t)) => {
            let (ks, kt) = (kinds(s), kinds(t));
            ks.iter().zip(&kt).map(|(p, q)| p.cmp(q)).find(|o| o.is_ne()).unwrap_or(kt.len().cmp(&ks.len()))
        }
        (PathMatch::Regex(s), PathMatch::Regex(t)) => first_decl(s).cmp(&first_decl(t)),
        (PathMatch::Prefix(s), PathMatch::Prefix(t)) => {
            let n = |p: &str| p.split('/').filter(|s| !s.is_empty()).count();
            n(t).cmp(&n(s))
        }
        _ => Ordering::Equal,
    };
    class(&x.path)
        .cmp(&class(&y.path))
        .then(path_order)
        .then((y.headers.len() + y.query.len()).cmp(&(x.headers.len() + x.query.len())))
        .then(x.methods.is_empty().cmp(&y.methods.is_empty()))
        .then(a.cmp(&b))
}

fn model(specs: &[Spec], req: &Req) -> Out<usize> {
    // Host groups in lookup order, each as the host-list entry that puts a route in it (`None`: no
    // host list).
    let mut groups: Vec<Option<String>> = Vec::new();
    if let Some(h) = &req.host {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        groups.push(Some(h.clone()));
        for (i, _) in h.match_indices('.').filter(|(i, _)| *i > 0) {
            groups.push(Some(format!("*.{}", &h[i + 1..])));
        }
    }
    groups.push(None);
    let in_group = |group: &Option<String>, s: &Spec| match group {
        Some(g) => s.hosts.iter().any(|x| x.eq_ignore_ascii_case(g)),
        None => s.hosts.is_empty(),
    };

    let mut allow: Vec<Method> = Vec::new();
    for group in &groups {
        let mut members: Vec<usize> = (0..specs.len()).filter(|&i| in_group(group, &specs[i])).collect();
        members.sort_by(|&a, &b| model_cmp(specs, a, b));
        for i in members {
            let s = &specs[i];
            let Some(params) = path_params(&s.path, &req.path) else {
                continue;
            };
            if !rules_ok(s, &req.headers, req.query.as_deref()) {
                continue;
            }
            if method_ok(s, &req.method) {
                return Out::Hit(s.value, params);
            }
            allow.extend(s.methods.iter().cloned());
            if s.methods.contains(&Method::GET) {
                allow.push(Method::HEAD);
            }
        }
    }
    if allow.is_empty() {
        return Out::NotFound;
    }
    allow.sort();
    allow.dedup();
    Out::NotAllowed(allow)
}

/// Builds a router from `specs`, dropping the routes reported as duplicate or unreachable.
fn build_reduced(specs: &[Spec]) -> (Router<usize>, usize) {
    let mut kept: Vec<Spec> = specs.to_vec();
    let mut dropped = 0;
    loop {
        match Router::build(kept.clone()) {
            Ok(r) => return (r, dropped),
            Err(errors) => {
                for e in &errors {
                    assert!(
                        matches!(e.kind, BuildErrorKind::Duplicate { .. } | BuildErrorKind::Unreachable { .. }),
                        "unexpected {e:?} for {:?}",
                        kept[e.route]
                    );
                }
                let bad: Vec<usize> = errors.iter().map(|e| e.route).collect();
                dropped += bad.len();
                kept = kept.into_iter().enumerate().filter(|(i, _)| !bad.contains(i)).map(|(_, s)| s).collect();
            }
        }
    }
}

#[test]
fn select_agrees_with_a_naive_linear_scan() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut hits, mut not_allowed, mut not_found, mut dropped) = (0, 0, 0, 0);
    for case in 0..400 {
        let n = 1 + rng.below(40);
        let specs: Vec<Spec> = (0..n).map(|i| gen_spec(&mut rng, i)).collect();
        let (router, d) = build_reduced(&specs);
        dropped += d;
        for _ in 0..150 {
            let req = gen_req(&mut rng);
            let expected = model(&specs, &req);
            let got = super::support::select(&router, &req);
            assert_eq!(got, expected, "case {case}, request {req:?}, routes {specs:#?}");
            match got {
                Out::Hit(..) => hits += 1,
                Out::NotAllowed(_) => not_allowed += 1,
                Out::NotFound => not_found += 1,
            }
        }
    }
    // The generator must exercise every outcome, and the shadowing checks, substantially.
    assert!(hits > 10_000 && not_allowed > 1_000 && not_found > 1_000, "{hits} {not_allowed} {not_found}");
    assert!(dropped > 20, "{dropped}");
    println!(
        "{hits} hits, {not_allowed} 405s, {not_found} 404s, {dropped} routes reported as duplicate or unreachable"
    );
}
