//! Path rewriting for the upstream request: strip a prefix, or fill a template from the captured
//! params.

use crate::normalize::normalize_path;
use crate::params::Params;
use crate::pattern::{anchored_regex, check_normalized, parse_template, regex_names, valid_name};
use crate::spec::PathMatch;

/// How to rewrite the matched path before forwarding. The query string is not part of it (the
/// caller appends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Removes a segment-aware prefix: with `/api`, `/api/users` -> `/users` and `/api` -> `/`. A
    /// path that does not start with the prefix is left unchanged. A trailing slash in the
    /// prefix is ignored.
    StripPrefix(String),
    /// Builds a new path from captured params: `/users/{id}`, `/static/{*rest}` (`{*rest}` and
    /// `{rest}` both mean the param `rest`). Placeholders may sit anywhere in the template.
    Template(String),
}

/// A validated [`Rewrite`], ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledRewrite {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// The prefix without a trailing slash (empty for `/`).
    Strip(String),
    Template(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Param(Box<str>),
}

impl Rewrite {
    /// Validates the rewrite against the route's path matcher.
    ///
    /// Fails when the prefix or template does not start with `/` or is not in normalized form, when
    /// a template has unbalanced braces or an invalid name, or when it names a param the path
    /// pattern does not capture (exact and prefix paths capture none; templates capture their
    /// `{name}`s; regexes their named groups).
    pub fn compile(&self, path: &PathMatch) -> Result<CompiledRewrite, String> {
        match self {
            Rewrite::StripPrefix(p) => {
                check_normalized(p)?;
                Ok(CompiledRewrite { kind: Kind::Strip(p.strip_suffix('/').unwrap_or(p).to_owned()) })
            }
            Rewrite::Template(t) => {
                check_normalized(t)?;
                let captured = captured_names(path)?;
                let mut pieces = Vec::new();
                let mut rest = t.as_str();
                while let Some(open) = rest.find(['{', '}']) {
                    if rest.as_bytes()[open] == b'}' {
                        return Err(format!("unbalanced `}}` in rewrite template `{t}`"));
                    }
                    let close = rest[open..]
                        .find('}')
                        .map(|c| open + c)
                        .ok_or_else(|| format!("unbalanced `{{` in rewrite template `{t}`"))?;
                    let inner = &rest[open + 1..close];
                    let name = inner.strip_prefix('*').unwrap_or(inner);
                    if !valid_name(name) {
                        return Err(format!("invalid parameter name `{inner}` in rewrite template `{t}`"));
                    }
                    if !captured.iter().any(|c| &**c == name) {
                        let have = if captured.is_empty() { "nothing".to_owned() } else { captured.join(", ") };
                        return Err(format!(
                            "rewrite template names `{{{inner}}}` but the path pattern captures {have}"
                        ));
                    }
                    if open > 0 {
                        pieces.push(Piece::Literal(rest[..open].to_owned()));
                    }
                    pieces.push(Piece::Param(name.into()));
                    rest = &rest[close + 1..];
                }
                if !rest.is_empty() {
                    pieces.push(Piece::Literal(rest.to_owned()));
                }
                Ok(CompiledRewrite { kind: Kind::Template(pieces) })
            }
        }
    }
}

fn captured_names(path: &PathMatch) -> Result<Vec<Box<str>>, String> {
    Ok(match path {
        PathMatch::Exact(_) | PathMatch::Prefix(_) => Vec::new(),
        PathMatch::Template(t) => parse_template(t)?.names,
        PathMatch::Regex(r) => regex_names(&anchored_regex(r)?.0).into_iter().map(|(_, n)| n).collect(),
    })
}

impl CompiledRewrite {
    /// Writes the rewritten path into `out` (cleared first). `path` is the normalized request path
    /// and `params` the params of the match.
    ///
    /// Template: placeholders are replaced by the param values (an absent optional regex group
    /// gives an empty string); where a value and the text around it meet, a doubled `/` is
    /// avoided (`/static/{*rest}` with an empty `rest` gives `/static/`). Values come from the
    /// normalized path, but a regex can capture a partial segment such as `..`, so the result
    /// is normalized again: the upstream never receives dot segments.
    pub fn apply(&self, path: &str, params: &Params<'_, '_>, out: &mut String) {
        out.clear();
        match &self.kind {
            Kind::Strip(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some("") => out.push('/'),
                Some(rest) if rest.starts_with('/') => out.push_str(rest),
                _ => out.push_str(path),
            },
            Kind::Template(pieces) => {
                for piece in pieces {
                    let s = match piece {
                        Piece::Literal(s) => s.as_str(),
                        Piece::Param(name) => params.get(name).unwrap_or(""),
                    };
                    match (out.ends_with('/'), s.strip_prefix('/')) {
                        (true, Some(tail)) => out.push_str(tail),
                        _ => out.push_str(s),
                    }
                }
                if !out.starts_with('/') {
                    out.insert(0, '/');
                }
                if let Ok(std::borrow::Cow::Owned(n)) = normalize_path(out) {
                    *out = n;
                }
            }
        }
    }
}
