//! Route selection among 10,000 routes of realistic shape, against the 1-route case; prints p50/p99
//! over a mix.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use http::{HeaderMap, HeaderName, Method};
use turnpike_router::{PathMatch, RequestView, RouteSpec, Router, Selection, ValueMatch};

const HOSTS: usize = 100;
const PER_HOST: usize = 100;

/// 100 hosts x 100 routes: templates, exact paths, catch-alls, prefixes, header rules, 1% regex;
/// plus a wildcard and a few any-host routes so that misses walk every host group.
fn routes() -> Vec<RouteSpec<usize>> {
    let mut specs = Vec::with_capacity(HOSTS * PER_HOST + 4);
    for h in 0..HOSTS {
        let host = format!("svc{h}.example.com");
        for j in 0..PER_HOST {
            let (path, methods, beta) = match j % 10 {
                0..=3 => (PathMatch::Template(format!("/svc{j}/v1/items/{{id}}")), vec![Method::GET], false),
                4 | 5 => (PathMatch::Exact(format!("/svc{j}/v1/health")), vec![], false),
                6 => (PathMatch::Template(format!("/svc{j}/v1/items/{{id}}/{{*rest}}")), vec![], false),
                7 => (PathMatch::Prefix(format!("/svc{j}/static")), vec![Method::GET], false),
                8 => (PathMatch::Template(format!("/svc{j}/v2/items/{{id}}")), vec![Method::GET, Method::POST], true),
                _ if j == 9 => (PathMatch::Regex(format!("/svc{j}/legacy/(?P<id>[0-9]+)")), vec![], false),
                _ => (PathMatch::Exact(format!("/svc{j}/v1/items")), vec![Method::POST], false),
            };
            let mut spec = RouteSpec::new(path, specs.len()).hosts([host.clone()]).methods(methods);
            if beta {
                spec = spec.header(HeaderName::from_static("x-beta"), ValueMatch::Present);
            }
            specs.push(spec);
        }
    }
    let n = specs.len();
    specs.push(RouteSpec::new(PathMatch::Prefix("/.well-known".into()), n).hosts(["*.example.com"]));
    specs.push(RouteSpec::new(PathMatch::Exact("/healthz".into()), n + 1));
    specs.push(RouteSpec::new(PathMatch::Exact("/metrics".into()), n + 2).methods([Method::GET]));
    specs.push(RouteSpec::new(PathMatch::Template("/debug/{what}".into()), n + 3));
    specs
}

struct Req {
    host: String,
    path: String,
    method: Method,
    headers: HeaderMap,
}

impl Req {
    fn new(host: &str, path: &str) -> Req {
        Req { host: host.into(), path: path.into(), method: Method::GET, headers: HeaderMap::new() }
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: Some(&self.host),
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            query: None,
        }
    }
}

fn expect_hit(router: &Router<usize>, req: &Req) {
    assert!(matches!(router.select(&req.view()), Selection::Matched(_)), "{} {} should match", req.host, req.path);
}

fn bench_select(c: &mut Criterion) {
    let specs = routes();
    let count = specs.len();
    let big = Router::build(specs).expect("bench routes are valid");
    let one = Router::build(vec![RouteSpec::new(PathMatch::Template("/svc52/v1/items/{id}".into()), 0)])
        .expect("bench routes are valid");

    let host = "svc42.example.com";
    let template = Req::new(host, "/svc52/v1/items/12345");
    let exact = Req::new(host, "/svc55/v1/health");
    let prefix = Req::new(host, "/svc57/static/css/site.css");
    let regex = Req::new(host, "/svc9/legacy/42");
    let miss = Req::new(host, "/svc57/v9/nothing");
    for r in [&template, &exact, &prefix, &regex] {
        expect_hit(&big, r);
    }
    assert!(matches!(big.select(&miss.view()), Selection::NotFound));
    expect_hit(&one, &template);

    let mut g = c.benchmark_group(format!("select/{count}-routes"));
    for (name, req) in [
        ("template-hit", &template),
        ("exact-hit", &exact),
        ("prefix-hit", &prefix),
        ("regex-hit", &regex),
        ("miss-404", &miss),
    ] {
        let view = req.view();
        g.bench_function(name, |b| b.iter(|| matches!(big.select(black_box(&view)), Selection::Matched(_))));
    }
    g.finish();
    let view = template.view();
    c.bench_function("select/1-route/template-hit", |b| {
        b.iter(|| matches!(one.select(black_box(&view)), Selection::Matched(_)))
    });
}

/// p50/p99 of one selection among 10,000 routes over a mix of requests (hits of every kind and
/// misses, random hosts and services). Each sample is the mean of a batch of 16 selections of one
/// request, so the timer's own cost stays out of the numbers.
#[allow(clippy::disallowed_methods)] // std Instant is right here: a benchmark, no tokio paused time involved
fn percentiles() {
    let router = Router::build(routes()).expect("bench routes are valid");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let reqs: Vec<Req> = (0..1000)
        .map(|_| {
            let host = format!("svc{}.example.com", rand(HOSTS));
            let svc = rand(PER_HOST);
            let path = match rand(6) {
                0 | 1 => format!("/svc{}/v1/items/{}", svc / 10 * 10 + rand(4), rand(100_000)),
                2 => format!("/svc{}/v1/health", svc / 10 * 10 + 4),
                3 => format!("/svc{}/static/app/{}.js", svc / 10 * 10 + 7, rand(100)),
                4 => format!("/svc{svc}/v3/unknown/{}", rand(100)),
                _ => format!("/svc{}/v1/items/{}/a/b", svc / 10 * 10 + 6, rand(100)),
            };
            Req::new(&host, &path)
        })
        .collect();
    let views: Vec<RequestView<'_>> = reqs.iter().map(Req::view).collect();
    let mut samples = Vec::with_capacity(views.len() * 20);
    for _ in 0..20 {
        for view in &views {
            let start = std::time::Instant::now();
            for _ in 0..16 {
                black_box(matches!(router.select(black_box(view)), Selection::Matched(_)));
            }
            samples.push(start.elapsed().as_nanos() as f64 / 16.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "select among {} routes over a mixed request set: p50 {:.0} ns, p99 {:.0} ns, max {:.0} ns",
        router.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

criterion_group!(benches, bench_select);

fn main() {
    benches();
    percentiles();
    Criterion::default().configure_from_args().final_summary();
}
