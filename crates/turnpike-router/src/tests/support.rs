//! Helpers shared by the tests: route shorthands, an owned request, and a comparable selection
//! outcome.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::{BuildError, PathMatch, RequestView, RouteSpec, Router, Selection};

pub(super) type Spec = RouteSpec<&'static str>;

pub(super) fn exact(p: &str, v: &'static str) -> Spec {
    RouteSpec::new(PathMatch::Exact(p.into()), v)
}
pub(super) fn tpl(p: &str, v: &'static str) -> Spec {
    RouteSpec::new(PathMatch::Template(p.into()), v)
}
pub(super) fn prefix(p: &str, v: &'static str) -> Spec {
    RouteSpec::new(PathMatch::Prefix(p.into()), v)
}
pub(super) fn re(p: &str, v: &'static str) -> Spec {
    RouteSpec::new(PathMatch::Regex(p.into()), v)
}

pub(super) fn hn(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

pub(super) fn build(specs: Vec<Spec>) -> Router<&'static str> {
    match Router::build(specs) {
        Ok(r) => r,
        Err(errors) => panic!("build failed: {errors:#?}"),
    }
}

pub(super) fn build_err(specs: Vec<Spec>) -> Vec<BuildError> {
    match Router::build(specs) {
        Ok(_) => panic!("build unexpectedly succeeded"),
        Err(errors) => errors,
    }
}

/// An owned request.
#[derive(Clone, Debug)]
pub(super) struct Req {
    pub host: Option<String>,
    pub path: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
}

impl Req {
    pub(super) fn get(path: &str) -> Req {
        Req { host: None, path: path.into(), method: Method::GET, headers: HeaderMap::new(), query: None }
    }
    pub(super) fn host(mut self, h: &str) -> Req {
        self.host = Some(h.into());
        self
    }
    pub(super) fn method(mut self, m: Method) -> Req {
        self.method = m;
        self
    }
    pub(super) fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.append(hn(name), HeaderValue::from_str(value).unwrap());
        self
    }
    pub(super) fn query(mut self, q: &str) -> Req {
        self.query = Some(q.into());
        self
    }
    pub(super) fn view(&self) -> RequestView<'_> {
        RequestView {
            host: self.host.as_deref(),
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            query: self.query.as_deref(),
        }
    }
}

/// A selection without lifetimes, for `assert_eq!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Out<V> {
    Hit(V, Vec<(String, String)>),
    NotAllowed(Vec<Method>),
    NotFound,
}

pub(super) fn select<V: Clone>(router: &Router<V>, req: &Req) -> Out<V> {
    match router.select(&req.view()) {
        Selection::Matched(m) => {
            Out::Hit(m.value.clone(), m.params.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
        }
        Selection::MethodNotAllowed { allow } => Out::NotAllowed(allow),
        Selection::NotFound => Out::NotFound,
    }
}

/// The selected value only (`None` for 404 and 405).
pub(super) fn hit<V: Clone>(router: &Router<V>, req: &Req) -> Option<V> {
    match select(router, req) {
        Out::Hit(v, _) => Some(v),
        _ => None,
    }
}

pub(super) fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}
