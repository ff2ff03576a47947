//! The compiled route table and the types a selection takes and returns.

use std::fmt;

use http::{HeaderMap, Method};

use crate::host::{HostGroup, HostKey};
use crate::methods::MethodSet;
use crate::params::Params;
use crate::rules::{HeaderCheck, QueryCheck};
use crate::spec::{HeaderRule, PathMatch, QueryRule, RouteSpec};
use crate::table::StrTable;

/// "No node" in the trie arena.
pub(crate) const NONE: u32 = u32::MAX;

/// The compiled route table. Immutable once built; share it behind an `Arc` in a snapshot.
///
/// Built by [`Router::build`], queried by [`Router::select`]. See the crate docs for the precedence
/// rules.
pub struct Router<T> {
    pub(crate) routes: Vec<Route<T>>,
    pub(crate) groups: Vec<Group>,
    /// Exact host -> group id (tag 0, case-insensitive).
    pub(crate) exact_hosts: StrTable,
    /// Wildcard suffix -> group id (tag 0, case-insensitive).
    pub(crate) wildcard_hosts: StrTable,
    /// The most labels of any wildcard suffix: bounds the suffix walk.
    pub(crate) wildcard_labels: usize,
    pub(crate) any_group: Option<u32>,
    /// (group id, exact path) -> index into `exact_lists`.
    pub(crate) exact_paths: StrTable,
    pub(crate) exact_lists: Vec<Span>,
    /// (node id, segment) -> child node id.
    pub(crate) children: StrTable,
    pub(crate) nodes: Vec<Node>,
    /// Route ids, referenced by spans; each span is in precedence order.
    pub(crate) lists: Vec<u32>,
    /// Group ids in lookup order: exact hosts, wildcards from the longest suffix, any host.
    pub(crate) display_groups: Vec<u32>,
}

/// A compiled route.
pub(crate) struct Route<T> {
    pub(crate) spec: RouteSpec<T>,
    pub(crate) methods: MethodSet,
    pub(crate) headers: Box<[HeaderCheck]>,
    pub(crate) query: Box<[QueryCheck]>,
    /// Param names: template params in segment order, or named regex groups in group order.
    pub(crate) names: Box<[Box<str>]>,
    /// For regex routes: the capture group index of each name.
    pub(crate) regex_groups: Box<[usize]>,
    /// Why its path ranks where it does, for [`RouteInfo::explanation`].
    pub(crate) path_rank: String,
}

/// The routes of one host group, indexed for lookup.
pub(crate) struct Group {
    pub(crate) key: HostKey,
    pub(crate) template_root: u32,
    pub(crate) prefix_root: u32,
    pub(crate) has_exact: bool,
    pub(crate) regex: Option<RegexGroup>,
    /// Every route of the group in precedence order.
    pub(crate) order: Box<[u32]>,
}

/// The regex routes of one host group: one set to find the candidates, one regex per pattern for
/// captures.
pub(crate) struct RegexGroup {
    pub(crate) set: regex::RegexSet,
    pub(crate) entries: Box<[RegexEntry]>,
}

pub(crate) struct RegexEntry {
    pub(crate) regex: regex::Regex,
    pub(crate) routes: Span,
}

/// A trie node: static children live in `Router::children`.
pub(crate) struct Node {
    pub(crate) parent: u32,
    pub(crate) param: u32,
    pub(crate) has_static: bool,
    /// Templates ending here.
    pub(crate) end: Span,
    /// Templates whose `{*rest}` starts here.
    pub(crate) catch_all: Span,
    /// Prefixes ending here.
    pub(crate) prefix: Span,
}

/// A range of `Router::lists`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'q> {
    /// The host (from `Host` or the `:authority`), lowercased by the caller and without the port;
    /// `None` when the request has none, in which case only routes without a host list can
    /// match. A single trailing `.` is ignored; comparison is ASCII-case-insensitive anyway.
    pub host: Option<&'q str>,
    /// The path as returned by [`crate::normalize_path`]. A path not starting with `/` selects
    /// nothing.
    pub path: &'q str,
    /// The request method.
    pub method: &'q Method,
    /// The request headers (only read when a candidate route has header rules).
    pub headers: &'q HeaderMap,
    /// The raw query string without the `?` (only read when a candidate route has query rules).
    pub query: Option<&'q str>,
}

/// The outcome of [`Router::select`].
#[derive(Debug)]
pub enum Selection<'r, 'q, T> {
    /// A route matched everything.
    Matched(Match<'r, 'q, T>),
    /// Some routes matched host, path, headers and query, but none allows the method: answer 405
    /// with this `Allow` list (sorted, deduplicated, `HEAD` present wherever `GET` is).
    MethodNotAllowed {
        /// The methods those routes allow.
        allow: Vec<Method>,
    },
    /// No route matched: answer 404.
    NotFound,
}

/// A selected route.
#[derive(Debug)]
pub struct Match<'r, 'q, T> {
    /// The selected route's value.
    pub value: &'r T,
    /// The path params it captured.
    pub params: Params<'r, 'q>,
    /// The selected route's index in the list given to [`Router::build`].
    pub route: usize,
}

/// One route in one host group, as listed by [`Router::in_precedence_order`] (for `turnpike
/// routes`).
#[derive(Debug)]
pub struct RouteInfo<'a, T> {
    /// The host group this entry belongs to (a route with several hosts is listed once per group).
    pub host: HostGroup<'a>,
    /// Position inside the host group, 0 first.
    pub rank: usize,
    /// Index of the route in the list given to [`Router::build`].
    pub route: usize,
    /// The path matcher as configured.
    pub path: &'a PathMatch,
    /// The method list as configured (empty = any).
    pub methods: &'a [Method],
    /// The header rules as configured.
    pub headers: &'a [HeaderRule],
    /// The query rules as configured.
    pub query: &'a [QueryRule],
    /// The route's value.
    pub value: &'a T,
    /// Why it ranks where it does, e.g. `template [static, param]; 1 header/query rule; method
    /// list; declared #4`.
    pub explanation: String,
}

impl<T> Router<T> {
    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when the table has no routes (every request gets [`Selection::NotFound`]).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route of every host group in the order selection tries them: host groups in lookup
    /// order (exact hosts alphabetically, then wildcards from the longest suffix, then any
    /// host), routes by precedence inside each.
    pub fn in_precedence_order(&self) -> Vec<RouteInfo<'_, T>> {
        let mut out = Vec::new();
        for &gid in &self.display_groups {
            let group = &self.groups[gid as usize];
            for (rank, &r) in group.order.iter().enumerate() {
                let route = &self.routes[r as usize];
                let rules = route.spec.headers.len() + route.spec.query.len();
                let mut explanation = route.path_rank.clone();
                if rules > 0 {
                    let s = if rules == 1 { "" } else { "s" };
                    explanation.push_str(&format!("; {rules} header/query rule{s}"));
                }
                explanation.push_str(if route.methods.is_any() { "; any method" } else { "; method list" });
                explanation.push_str(&format!("; declared #{r}"));
                out.push(RouteInfo {
                    host: group.key.group(),
                    rank,
                    route: r as usize,
                    path: &route.spec.path,
                    methods: &route.spec.methods,
                    headers: &route.spec.headers,
                    query: &route.spec.query,
                    value: &route.spec.value,
                    explanation,
                });
            }
        }
        out
    }

    #[inline]
    pub(crate) fn list(&self, s: Span) -> &[u32] {
        &self.lists[s.start as usize..s.end as usize]
    }
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("routes", &self.routes.len()).field("host_groups", &self.groups.len()).finish()
    }
}
