//! Host patterns: exact names and `*.suffix` wildcards, validated and lowercased.

use std::fmt;

/// Which host group a route belongs to (one per exact host, one per wildcard suffix, one for any
/// host).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum HostKey {
    /// A lowercase exact host.
    Exact(String),
    /// The lowercase suffix of `*.suffix`.
    Wildcard(String),
    /// Routes with no host list.
    Any,
}

/// A host group as shown by [`crate::Router::in_precedence_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostGroup<'a> {
    /// Requests whose host is exactly this (lowercase) name.
    Exact(&'a str),
    /// Requests whose host ends with `.` followed by this suffix (the part after `*.`).
    Wildcard(&'a str),
    /// Requests that no more specific group answered.
    Any,
}

impl fmt::Display for HostGroup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostGroup::Exact(h) => f.write_str(h),
            HostGroup::Wildcard(s) => write!(f, "*.{s}"),
            HostGroup::Any => f.write_str("*"),
        }
    }
}

impl HostKey {
    pub(crate) fn group(&self) -> HostGroup<'_> {
        match self {
            HostKey::Exact(h) => HostGroup::Exact(h),
            HostKey::Wildcard(s) => HostGroup::Wildcard(s),
            HostKey::Any => HostGroup::Any,
        }
    }
}

/// Parses one configured host.
pub(crate) fn parse_host(raw: &str) -> Result<HostKey, String> {
    if raw.is_empty() {
        return Err("host is empty".into());
    }
    if let Some(suffix) = raw.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err("`*` is only allowed as the leading `*.` label".into());
        }
        check_name(suffix)?;
        return Ok(HostKey::Wildcard(suffix.to_ascii_lowercase()));
    }
    if raw.contains('*') {
        return Err("`*` is only allowed as the leading `*.` label (`*.example.com`)".into());
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'));
        if !ok {
            return Err(format!("invalid IPv6 literal `{raw}`"));
        }
        return Ok(HostKey::Exact(raw.to_ascii_lowercase()));
    }
    check_name(raw)?;
    Ok(HostKey::Exact(raw.to_ascii_lowercase()))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("host is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in `{name}` (leading, trailing or doubled `.`)"));
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            let hint = if c == ':' { " (hosts must not include a port)" } else { "" };
            return Err(format!("invalid character `{c}` in host `{name}`{hint}"));
        }
    }
    Ok(())
}
