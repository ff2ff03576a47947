//! Selection: host groups in order, then exact path, template trie, regex set and prefix trie
//! inside each group.

use crate::methods::{self, Allowed};
use crate::params::Params;
use crate::router::{Match, NONE, RequestView, Router, Selection, Span};

/// Per-request state threaded through one selection.
struct Cx<'r, 'q, 'a> {
    req: &'a RequestView<'q>,
    path: &'q str,
    method_bit: u16,
    allow: Allowed<'r>,
    /// The params of the accepted route; written once, when a route is accepted, so that only a
    /// route id travels back up the recursion.
    params: Params<'r, 'q>,
}

/// The `{param}` and `{*rest}` ranges captured on the way down the trie, innermost first.
struct Frame<'f> {
    start: usize,
    end: usize,
    up: Option<&'f Frame<'f>>,
}

impl<T> Router<T> {
    /// Selects the route for a request.
    ///
    /// Host groups are tried in order (exact host, wildcards from the longest suffix, any host);
    /// the first group with a route matching everything wins, and inside a group the first
    /// route in precedence order (see the crate docs). When no route matches everything but
    /// some matched all except the method, the answer is [`Selection::MethodNotAllowed`] with
    /// the union of their methods; otherwise [`Selection::NotFound`]. A path not starting with
    /// `/` selects nothing.
    ///
    /// Costs a hash lookup per host label and O(path segments) for exact, template and prefix
    /// routes, whatever the number of routes; groups with regex routes also run one `RegexSet`.
    /// Allocates nothing except for regex captures, more than [`crate::INLINE_PARAMS`] params,
    /// or a 405 answer.
    pub fn select<'r, 'q>(&'r self, req: &RequestView<'q>) -> Selection<'r, 'q, T> {
        let path = req.path;
        if !path.starts_with('/') || u32::try_from(path.len()).is_err() {
            return Selection::NotFound;
        }
        let mut cx = Cx {
            req,
            path,
            method_bit: methods::bit(req.method),
            allow: Allowed::default(),
            params: Params::empty(path),
        };
        let found = self.find(&mut cx);
        match found {
            Some(r) => Selection::Matched(Match {
                value: &self.routes[r as usize].spec.value,
                params: cx.params,
                route: r as usize,
            }),
            None if cx.allow.is_empty() => Selection::NotFound,
            None => Selection::MethodNotAllowed { allow: cx.allow.into_vec() },
        }
    }

    /// The host groups in lookup order; the first one with a full match answers.
    fn find<'r>(&'r self, cx: &mut Cx<'r, '_, '_>) -> Option<u32> {
        if let Some(host) = cx.req.host {
            let host = host.strip_suffix('.').unwrap_or(host);
            if let Some(g) = self.exact_hosts.get(0, host)
                && let Some(r) = self.find_in_group(g, cx)
            {
                return Some(r);
            }
            if !self.wildcard_hosts.is_empty() {
                // Only the suffixes with at most as many labels as the longest configured wildcard
                // can match, so start at that dot (counted from the right): a long
                // host with many labels costs a bounded number of lookups. Then
                // longest suffix first: left to right.
                let mut start = 0;
                let mut dots = 0;
                for (i, b) in host.bytes().enumerate().rev() {
                    if b == b'.' {
                        dots += 1;
                        if dots == self.wildcard_labels {
                            start = i;
                            break;
                        }
                    }
                }
                for (i, b) in host.bytes().enumerate().skip(start) {
                    if b == b'.'
                        && i > 0
                        && let Some(g) = self.wildcard_hosts.get(0, &host[i + 1..])
                        && let Some(r) = self.find_in_group(g, cx)
                    {
                        return Some(r);
                    }
                }
            }
        }
        self.any_group.and_then(|g| self.find_in_group(g, cx))
    }

    /// The first route of group `gid` matching everything, in precedence order: exact, template,
    /// regex, prefix.
    fn find_in_group<'r>(&'r self, gid: u32, cx: &mut Cx<'r, '_, '_>) -> Option<u32> {
        let group = &self.groups[gid as usize];
        let path = cx.path;

        if group.has_exact
            && let Some(li) = self.exact_paths.get(gid, path)
        {
            for &r in self.list(self.exact_lists[li as usize]) {
                if self.accept(r, cx) {
                    return Some(r);
                }
            }
        }

        if let Some(r) = self.walk(group.template_root, Some(&path[1..]), 1, None, cx) {
            return Some(r);
        }

        if let Some(rg) = &group.regex
            && rg.set.is_match(path)
        {
            for i in rg.set.matches(path).iter() {
                let entry = &rg.entries[i];
                for &r in self.list(entry.routes) {
                    if !self.accept(r, cx) {
                        continue;
                    }
                    let route = &self.routes[r as usize];
                    if !route.names.is_empty() {
                        cx.params = Params::with_names(&route.names, path);
                        if let Some(caps) = entry.regex.captures(path) {
                            for (k, &g) in route.regex_groups.iter().enumerate() {
                                if let Some(m) = caps.get(g) {
                                    cx.params.set(k, m.start(), m.end());
                                }
                            }
                        }
                    }
                    return Some(r);
                }
            }
        }

        // Prefixes: descend along the static segments, then try the deepest (longest) prefix first.
        let mut node = group.prefix_root;
        let mut rest = &path[1..];
        loop {
            let (seg, next) = split(rest);
            if seg.is_empty() || !self.nodes[node as usize].has_static {
                break;
            }
            match self.children.get(node, seg) {
                Some(child) => node = child,
                None => break,
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
        loop {
            let n = &self.nodes[node as usize];
            for &r in self.list(n.prefix) {
                if self.accept(r, cx) {
                    return Some(r);
                }
            }
            if n.parent == NONE {
                return None;
            }
            node = n.parent;
        }
    }

    /// Depth-first walk of the template trie: static child, then `{param}`, then `{*rest}`, which
    /// is exactly the segment-by-segment precedence. `rest` is what follows the last consumed
    /// `/` (`None` once the path ended), starting at byte `off` of the path. Each trie node is
    /// visited at most once, and the recursion is bounded by the deepest template.
    fn walk<'r>(
        &'r self,
        node: u32,
        rest: Option<&str>,
        off: usize,
        frame: Option<&Frame<'_>>,
        cx: &mut Cx<'r, '_, '_>,
    ) -> Option<u32> {
        let n = &self.nodes[node as usize];
        let Some(rest) = rest else {
            return self.first_accepted(n.end, frame, cx);
        };
        let (seg, next) = split(rest);
        let next_off = off + seg.len() + 1;
        if n.has_static
            && let Some(child) = self.children.get(node, seg)
            && let Some(r) = self.walk(child, next, next_off, frame, cx)
        {
            return Some(r);
        }
        if n.param != NONE && !seg.is_empty() {
            let f = Frame { start: off, end: off + seg.len(), up: frame };
            if let Some(r) = self.walk(n.param, next, next_off, Some(&f), cx) {
                return Some(r);
            }
        }
        if !n.catch_all.is_empty() {
            let f = Frame { start: off, end: cx.path.len(), up: frame };
            return self.first_accepted(n.catch_all, Some(&f), cx);
        }
        None
    }

    /// The first accepted route of a trie node's list; its params are filled from the frames.
    fn first_accepted<'r>(&'r self, list: Span, frame: Option<&Frame<'_>>, cx: &mut Cx<'r, '_, '_>) -> Option<u32> {
        for &r in self.list(list) {
            if !self.accept(r, cx) {
                continue;
            }
            let route = &self.routes[r as usize];
            cx.params = Params::with_names(&route.names, cx.path);
            let mut i = route.names.len();
            let mut f = frame;
            while let (Some(fr), true) = (f, i > 0) {
                i -= 1;
                cx.params.set(i, fr.start, fr.end);
                f = fr.up;
            }
            return Some(r);
        }
        None
    }

    /// Whether route `r` matches method, headers and query; a route matching all but the method
    /// adds its methods to the 405 `Allow` list.
    #[inline]
    fn accept<'r>(&'r self, r: u32, cx: &mut Cx<'r, '_, '_>) -> bool {
        let route = &self.routes[r as usize];
        let method_ok = route.methods.contains(cx.req.method, cx.method_bit);
        if !route.headers.iter().all(|h| h.matches(cx.req.headers))
            || !route.query.iter().all(|q| q.matches(cx.req.query))
        {
            return false;
        }
        if !method_ok {
            cx.allow.add(&route.methods);
        }
        method_ok
    }
}

/// Splits `a/b/c` into `("a", Some("b/c"))` and `a` into `("a", None)`.
#[inline]
fn split(rest: &str) -> (&str, Option<&str>) {
    // A byte loop beats `str::find` on segments a few bytes long.
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}
