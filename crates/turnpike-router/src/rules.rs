//! Header and query rules, compiled: exact bytes, presence, absence or an anchored byte regex.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::pattern::anchored_bytes_regex;
use crate::spec::ValueMatch;

/// A compiled [`ValueMatch`].
pub(crate) enum Matcher {
    Exact(Box<[u8]>),
    Present,
    Absent,
    Regex(regex::bytes::Regex),
}

impl Matcher {
    pub(crate) fn compile(v: &ValueMatch) -> Result<Matcher, String> {
        Ok(match v {
            ValueMatch::Exact(s) => Matcher::Exact(s.as_bytes().into()),
            ValueMatch::Present => Matcher::Present,
            ValueMatch::Absent => Matcher::Absent,
            ValueMatch::Regex(r) => Matcher::Regex(anchored_bytes_regex(r)?),
        })
    }
}

/// A compiled header rule.
pub(crate) struct HeaderCheck {
    name: HeaderName,
    matcher: Matcher,
}

impl HeaderCheck {
    pub(crate) fn compile(name: &HeaderName, rule: &ValueMatch) -> Result<HeaderCheck, String> {
        if let ValueMatch::Exact(v) = rule
            && HeaderValue::from_bytes(v.as_bytes()).is_err()
        {
            return Err(format!(
                "`{}` contains characters a header value cannot hold, so it can never match",
                v.escape_debug()
            ));
        }
        Ok(HeaderCheck { name: name.clone(), matcher: Matcher::compile(rule)? })
    }

    /// Every field line of the header is one value (values are not split on commas).
    #[inline]
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        match &self.matcher {
            Matcher::Present => headers.contains_key(&self.name),
            Matcher::Absent => !headers.contains_key(&self.name),
            Matcher::Exact(v) => headers.get_all(&self.name).iter().any(|h| h.as_bytes() == &**v),
            Matcher::Regex(r) => headers.get_all(&self.name).iter().any(|h| r.is_match(h.as_bytes())),
        }
    }
}

/// A compiled query rule.
pub(crate) struct QueryCheck {
    name: Box<str>,
    matcher: Matcher,
}

impl QueryCheck {
    pub(crate) fn compile(name: &str, rule: &ValueMatch) -> Result<QueryCheck, String> {
        if name.is_empty() {
            return Err("query parameter name is empty".into());
        }
        Ok(QueryCheck { name: name.into(), matcher: Matcher::compile(rule)? })
    }

    /// Scans the raw query lazily: nothing is parsed unless a route with query rules is a
    /// candidate.
    #[inline]
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let mut values = values(query.unwrap_or(""), &self.name);
        match &self.matcher {
            Matcher::Present => values.next().is_some(),
            Matcher::Absent => values.next().is_none(),
            Matcher::Exact(v) => values.any(|raw| Decode::new(raw).eq(v.iter().copied())),
            Matcher::Regex(r) => values.any(|raw| r.is_match(&decode(raw))),
        }
    }
}

/// The raw values of the parameters named `name` (after decoding) in a raw query `a=1&b=2`.
fn values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query.split('&').filter(|pair| !pair.is_empty()).filter_map(move |pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        Decode::new(n).eq(name.bytes()).then_some(v)
    })
}

/// Decodes a query component (`+` is a space, `%XX` a byte; a malformed escape is kept literally).
pub(crate) fn decode(raw: &str) -> Cow<'_, [u8]> {
    if raw.bytes().any(|b| b == b'%' || b == b'+') {
        Cow::Owned(Decode::new(raw).collect())
    } else {
        Cow::Borrowed(raw.as_bytes())
    }
}

/// Streaming decoder of a query component, so exact comparisons never allocate.
struct Decode<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Decode<'a> {
    fn new(raw: &'a str) -> Self {
        Decode { b: raw.as_bytes(), i: 0 }
    }
}

impl Iterator for Decode<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        match c {
            b'+' => Some(b' '),
            b'%' => {
                let hi = self.b.get(self.i).and_then(|c| (*c as char).to_digit(16));
                let lo = self.b.get(self.i + 1).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        self.i += 2;
                        Some((h * 16 + l) as u8)
                    }
                    _ => Some(b'%'),
                }
            }
            _ => Some(c),
        }
    }
}
