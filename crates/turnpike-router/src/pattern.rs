//! Parsing path patterns: templates, prefixes, exact paths and anchored regexes.

use std::borrow::Cow;

use crate::normalize::normalize_path;

/// Templates and prefixes deeper than this are rejected: it bounds the recursion of the trie walk.
pub(crate) const MAX_SEGMENTS: usize = 128;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Static(String),
    Param,
    CatchAll,
}

impl Seg {
    /// The precedence of a segment kind: static before `{param}` before `{*rest}`.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Seg::Static(_) => 0,
            Seg::Param => 1,
            Seg::CatchAll => 2,
        }
    }
}

/// A parsed template: its segments and its param names in segment order.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub segs: Vec<Seg>,
    pub names: Vec<Box<str>>,
}

/// The template's shape with param names erased (`/users/{}/files/{*}`): equal shapes match equal
/// paths.
pub(crate) fn shape(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        s.push('/');
        match seg {
            Seg::Static(t) => s.push_str(t),
            Seg::Param => s.push_str("{}"),
            Seg::CatchAll => s.push_str("{*}"),
        }
    }
    s
}

/// Checks that a literal path pattern is in the form [`normalize_path`] produces, since requests
/// are matched only after normalization and a non-normal pattern could never match.
pub(crate) fn check_normalized(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("path `{p}` must start with `/`"));
    }
    if let Some(c) = p.chars().find(|c| *c == '?' || *c == '#') {
        return Err(format!("path `{p}` must not contain `{c}` (the query string is matched by query rules)"));
    }
    match normalize_path(p) {
        Err(e) => Err(format!("invalid path `{p}`: {e}")),
        Ok(Cow::Owned(n)) => {
            Err(format!("path `{p}` is not in normalized form, so no request could match it; write `{n}`"))
        }
        Ok(Cow::Borrowed(_)) => Ok(()),
    }
}

/// True for a valid param name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `/users/{id}/files/{*rest}`.
pub(crate) fn parse_template(t: &str) -> Result<Template, String> {
    check_normalized(t)?;
    let raw: Vec<&str> = t[1..].split('/').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(format!("template has more than {MAX_SEGMENTS} segments"));
    }
    let mut segs = Vec::with_capacity(raw.len());
    let mut names: Vec<Box<str>> = Vec::new();
    for (i, seg) in raw.iter().enumerate() {
        let opens = seg.matches('{').count();
        let closes = seg.matches('}').count();
        if opens == 0 && closes == 0 {
            segs.push(Seg::Static((*seg).to_owned()));
            continue;
        }
        if opens != closes || seg.find('}') < seg.find('{') {
            return Err(format!("unbalanced braces in segment `{seg}`"));
        }
        let inner = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(inner) if opens == 1 => inner,
            _ => return Err(format!("a parameter must be a whole segment: `{seg}`")),
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if name.is_empty() {
            return Err(format!("empty parameter name in `{seg}`"));
        }
        if !valid_name(name) {
            return Err(format!(
                "invalid parameter name `{name}`: use letters, digits and `_`, not starting with a digit"
            ));
        }
        if names.iter().any(|n| &**n == name) {
            return Err(format!("duplicate parameter name `{name}`"));
        }
        if catch_all && i + 1 != raw.len() {
            return Err(format!("`{{*{name}}}` must be the last segment"));
        }
        names.push(name.into());
        segs.push(if catch_all { Seg::CatchAll } else { Seg::Param });
    }
    Ok(Template { segs, names })
}

/// Parses a prefix into its segments (a trailing slash is ignored; `/` has none).
pub(crate) fn parse_prefix(p: &str) -> Result<Vec<String>, String> {
    check_normalized(p)?;
    let trimmed = p.strip_suffix('/').unwrap_or(p);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let segs: Vec<String> = trimmed[1..].split('/').map(str::to_owned).collect();
    if segs.len() > MAX_SEGMENTS {
        return Err(format!("prefix has more than {MAX_SEGMENTS} segments"));
    }
    Ok(segs)
}

/// Compiles a user regex anchored at both ends. The pattern is first compiled on its own, so that a
/// pattern like `a)|(.*` cannot escape the anchoring group.
pub(crate) fn anchored_regex(pattern: &str) -> Result<(regex::Regex, String), String> {
    regex::Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
    let anchored = format!(r"\A(?:{pattern})\z");
    let re = regex::Regex::new(&anchored).map_err(|e| format!("invalid regex: {e}"))?;
    Ok((re, anchored))
}

/// Same as [`anchored_regex`] for byte haystacks (header and query values).
pub(crate) fn anchored_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
    regex::bytes::Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|e| format!("invalid regex: {e}"))
}

/// The named capture groups of a path regex: `(group index, name)`.
pub(crate) fn regex_names(re: &regex::Regex) -> Vec<(usize, Box<str>)> {
    re.capture_names().enumerate().filter_map(|(i, n)| n.map(|n| (i, n.into()))).collect()
}
