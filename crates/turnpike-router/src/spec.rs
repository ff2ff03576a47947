//! The route description users write: hosts, path matcher, methods, header and query rules, and the
//! selected value.

use http::{HeaderName, Method};

/// How a route matches the (normalized) request path. See the crate docs for the exact semantics of
/// each kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The whole path equals this string (`/a/b`); a trailing slash is significant.
    Exact(String),
    /// Segments with `{name}` (one non-empty segment) and a final `{*name}` (the rest after the
    /// slash, possibly empty): `/users/{id}/posts/{*rest}`.
    Template(String),
    /// Segment-aware prefix: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`; `/`
    /// matches every path.
    Prefix(String),
    /// A regular expression (the `regex` crate's syntax) implicitly anchored at both ends; named
    /// groups become params.
    Regex(String),
}

/// How a header or query parameter value must look.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueMatch {
    /// Some value equals this string exactly (bytes, case-sensitive).
    Exact(String),
    /// The header or parameter occurs at least once (any value, even empty).
    Present,
    /// The header or parameter does not occur at all.
    Absent,
    /// Some value matches this regular expression as a whole (implicitly anchored at both ends).
    Regex(String),
}

/// A constraint on a request header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderRule {
    /// The header name (case-insensitive by construction).
    pub name: HeaderName,
    /// What its values must look like.
    pub rule: ValueMatch,
}

/// A constraint on a query parameter (the name is compared after decoding `+` and `%XX`,
/// case-sensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryRule {
    /// The decoded parameter name.
    pub name: String,
    /// What its decoded values must look like.
    pub rule: ValueMatch,
}

/// One route as configured: everything a request must satisfy, and the value selected when it does.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Exact hosts (`api.example.com`) and wildcards (`*.example.com`); empty means any host.
    pub hosts: Vec<String>,
    /// The path matcher.
    pub path: PathMatch,
    /// Allowed methods; empty means any method. `GET` also allows `HEAD`.
    pub methods: Vec<Method>,
    /// Header rules; all must hold.
    pub headers: Vec<HeaderRule>,
    /// Query rules; all must hold.
    pub query: Vec<QueryRule>,
    /// The value [`crate::Router::select`] returns for this route.
    pub value: T,
}

impl<T> RouteSpec<T> {
    /// A route for any host and any method, with no header or query rules.
    pub fn new(path: PathMatch, value: T) -> Self {
        RouteSpec { hosts: Vec::new(), path, methods: Vec::new(), headers: Vec::new(), query: Vec::new(), value }
    }

    /// Replaces the host list.
    #[must_use]
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the method list.
    #[must_use]
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Adds a header rule.
    #[must_use]
    pub fn header(mut self, name: HeaderName, rule: ValueMatch) -> Self {
        self.headers.push(HeaderRule { name, rule });
        self
    }

    /// Adds a query rule.
    #[must_use]
    pub fn query(mut self, name: impl Into<String>, rule: ValueMatch) -> Self {
        self.query.push(QueryRule { name: name.into(), rule });
        self
    }
}
