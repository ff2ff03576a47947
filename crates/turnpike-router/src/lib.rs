//! Turnpike's route table: selects the route for a request by host, path, method, headers and
//! query.
//!
//! Build a [`Router`] once per config snapshot with [`Router::build`] (which reports every
//! configuration error at once), then call [`Router::select`] per request with a [`RequestView`]
//! whose path went through [`normalize_path`]. Selection costs O(host labels + path segments) for
//! exact, template and prefix routes, whatever the number of routes, and does not allocate.
//! [`Rewrite`] turns the matched path into the upstream path.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use turnpike_router::{PathMatch, RequestView, Rewrite, RouteSpec, Router, Selection, normalize_path};
//!
//! let routes = vec![
//!     RouteSpec::new(PathMatch::Template("/users/{id}".into()), "user").methods([Method::GET]),
//!     RouteSpec::new(PathMatch::Prefix("/api".into()), "api").hosts(["api.example.com"]),
//! ];
//! let router = Router::build(routes).expect("valid routes");
//!
//! let path = normalize_path("/public/../users/42").expect("valid path"); // -> "/users/42"
//! let headers = HeaderMap::new();
//! let req = RequestView {
//!     host: Some("www.example.com"),
//!     path: &path,
//!     method: &Method::GET,
//!     headers: &headers,
//!     query: None,
//! };
//! let Selection::Matched(m) = router.select(&req) else { panic!("expected a match") };
//! assert_eq!((*m.value, m.params.get("id")), ("user", Some("42")));
//!
//! let rewrite = Rewrite::Template("/v2/users/{id}".into())
//!     .compile(&PathMatch::Template("/users/{id}".into()))
//!     .expect("valid rewrite");
//! let mut upstream_path = String::new();
//! rewrite.apply(&path, &m.params, &mut upstream_path);
//! assert_eq!(upstream_path, "/v2/users/42");
//!
//! let post = RequestView { method: &Method::POST, ..req };
//! let Selection::MethodNotAllowed { allow } = router.select(&post) else { panic!("expected a 405") };
//! assert_eq!(allow, [Method::GET, Method::HEAD]);
//! ```
//!
//! # Hosts
//!
//! A route lists exact hosts (`api.example.com`) and wildcards (`*.example.com`); an empty list
//! means any host. Hosts compare ASCII-case-insensitively; a single trailing `.` on the request
//! host is ignored. A wildcard `*.example.com` matches any host ending in `.example.com` with one
//! or more labels before it (`a.example.com`, `a.b.example.com`), never `example.com` itself. `*`
//! is allowed only as that leading label. Configured hosts are letters, digits, `-` and `_` in
//! non-empty dot-separated labels (at most 63 characters each, 253 in all), or an IPv6 literal in
//! brackets; they never carry a port.
//!
//! Routes are grouped by host: one group per exact host, one per wildcard suffix, one for routes
//! without hosts (a route with several hosts belongs to several groups). A request tries, in order:
//!
//! 1. the group of its exact host (one hash lookup);
//! 2. the wildcard groups that cover it, from the longest suffix to the shortest (one hash lookup
//!    per label);
//! 3. the any-host group.
//!
//! The first group with a route matching *everything* (path, method, headers, query) wins: the most
//! specific host wins, and a request for `api.example.com` whose path no `api.example.com` route
//! matches still reaches the any-host routes. A request without a host only tries the any-host
//! group.
//!
//! # Paths
//!
//! Requests are matched on the normalized path (see [`normalize_path`]); path patterns must
//! themselves be in normalized form (no `//`, no dot segments, uppercase escapes, unreserved
//! characters not escaped), must start with `/` and must not contain `?` or `#`, or the build fails
//! (such a pattern could never match).
//!
//! - [`PathMatch::Exact`]`("/a/b")`: the whole path; a trailing slash is significant (`/a/b/` is
//!   another path).
//! - [`PathMatch::Template`]`("/users/{id}/files/{*rest}")`: `{name}` matches one non-empty
//!   segment; `{*name}`, allowed only as the last segment, matches everything after the preceding
//!   slash, which may be empty or span several segments: `/files/{*p}` matches `/files/` (`p = ""`)
//!   and `/files/x/y` (`p = "x/y"`) but **not** `/files`. Params are whole segments, names are
//!   `[A-Za-z_][A-Za-z0-9_]*` and unique. A trailing slash is significant: `/users/{id}` does not
//!   match `/users/7/`. At most 128 segments.
//! - [`PathMatch::Prefix`]`("/api")`: segment-aware: matches `/api`, `/api/`, `/api/x`, never
//!   `/apix`. A trailing slash in the prefix is ignored; `/` matches every path.
//! - [`PathMatch::Regex`]: the `regex` crate's syntax, **implicitly anchored at both ends** (it
//!   must match the whole path); named groups (`(?P<id>[0-9]+)`) become params, unnamed groups are
//!   ignored.
//!
//! Param values are slices of the normalized path (still percent-encoded where the path is).
//!
//! # Precedence
//!
//! Inside a host group, routes are tried from the most specific to the least; the first whose
//! methods, headers and query all match is selected:
//!
//! 1. **Path kind**: exact paths, then templates, then regexes, then prefixes.
//! 2. **Path specificity** within a kind:
//!    - templates compare segment by segment: at the first segment where their kinds differ, a
//!      static segment beats `{param}`, which beats `{*rest}`; if one template's kinds are a prefix
//!      of the other's, the one with more segments comes first. Templates equal up to param names
//!      (`/a/{x}`, `/a/{y}`) are equally specific;
//!    - regexes rank in declaration order of their pattern (routes with the same pattern are
//!      equally specific);
//!    - prefixes: the longer prefix, counted in segments, comes first.
//! 3. On equal path specificity: more header + query rules first;
//! 4. then a route **with a method list** before one without (so `GET /users` goes to a GET-only
//!    route even when an any-method `/users` route is declared before it);
//! 5. finally declaration order.
//!
//! Routes whose paths can never match the same request are ordered by their pattern text between
//! steps 2 and 3, which only affects the listing of [`Router::in_precedence_order`].
//!
//! # Methods
//!
//! An empty method list allows every method. A route allowing `GET` also matches `HEAD`. When no
//! route of any tried host group matches everything, but some matched host, path, headers and query
//! and only failed on the method, [`Router::select`] answers [`Selection::MethodNotAllowed`] with
//! the union of their methods (sorted alphabetically, deduplicated, with `HEAD` wherever `GET` is)
//! for the `Allow` header; otherwise [`Selection::NotFound`].
//!
//! # Header and query rules
//!
//! All rules of a route must hold. [`ValueMatch`] means, for headers:
//! - `Exact(v)`: some field value equals `v` byte for byte (case-sensitive). A header repeated on
//!   several field lines has several values and any of them may match; values are not split on
//!   commas.
//! - `Present` / `Absent`: the header occurs at least once / not at all.
//! - `Regex(r)`: some value matches `r` **as a whole** (implicitly anchored at both ends, like path
//!   regexes; write `.*foo.*` for a substring).
//!
//! Query rules work the same on the raw query string, parsed only when a candidate route has query
//! rules: pairs are separated by `&`, name and value by the first `=` (a pair without `=` has an
//! empty value), `+` decodes to a space and `%XX` to its byte (a malformed escape is kept
//! literally). Names and values are compared after decoding, case-sensitively; a repeated parameter
//! matches if any of its values does. `Present` is satisfied by `?a` and `?a=` too.
//!
//! # Build errors
//!
//! [`Router::build`] reports every problem at once, each with the route index and field
//! ([`BuildError`]): invalid hosts, paths, templates (unbalanced braces, params that are not whole
//! segments, `{*x}` not last, duplicate or empty names), regexes (message from the regex crate), a
//! method listed twice, a rule repeated or contradicted (`Absent` next to another rule on the same
//! name), and two checks across routes:
//!
//! - [`BuildErrorKind::Duplicate`]: same host set, same path matcher (templates compared up to
//!   param names, prefixes up to a trailing slash, regexes by text), same effective method set
//!   (`GET` implies `HEAD`), same header and query rules (as sets). The later route is reported.
//! - [`BuildErrorKind::Unreachable`]: in every host group the route belongs to, a route ranked
//!   before it with the same path matcher and the same rules accepts all of its methods (an earlier
//!   any-method route shadows a later any-method route; an earlier method list shadows a later list
//!   it includes). The check is sound, not complete: it only reports routes that can certainly
//!   never be selected.
//!
//! Same path with different methods is fine, and so is a less specific route declared after a more
//! specific one.
//!
//! # Normalization
//!
//! See [`normalize_path`]: percent-decoding of unreserved characters only (`%2F` and `%00` stay
//! encoded), slash collapsing, RFC 3986 dot-segment removal after decoding (so
//! `/public/%2e%2e/admin` is `/admin` and reaches exactly what `/admin` reaches), rejection of
//! control characters, spaces and backslashes.
//!
//! # Rewrites
//!
//! See [`Rewrite`]: `StripPrefix("/api")` turns `/api/users` into `/users` and `/api` into `/`;
//! `Template("/v2/{id}")` fills params captured by the route's template or regex, `{*rest}` without
//! doubling slashes. The query string is not part of the rewrite.

mod build;
mod error;
mod host;
mod methods;
mod normalize;
mod params;
mod pattern;
mod rewrite;
mod router;
mod rules;
mod select;
mod spec;
mod table;

#[cfg(test)]
mod tests;

pub use error::{BuildError, BuildErrorKind};
pub use host::HostGroup;
pub use normalize::{PathError, normalize_path};
pub use params::{INLINE_PARAMS, Params};
pub use rewrite::{CompiledRewrite, Rewrite};
pub use router::{Match, RequestView, RouteInfo, Router, Selection};
pub use spec::{HeaderRule, PathMatch, QueryRule, RouteSpec, ValueMatch};

impl<T> Router<T> {
    /// Compiles route specs into a router.
    ///
    /// Validates every route and returns **all** problems at once, ordered by route index:
    /// malformed fields ([`BuildErrorKind::Invalid`]), duplicates and routes that could never
    /// be selected (see the crate docs). Never panics on bad input.
    pub fn build(specs: Vec<RouteSpec<T>>) -> Result<Router<T>, Vec<BuildError>> {
        build::build(specs)
    }
}
