//! Where a bearer token is read from (a header with a scheme, a cookie, a query parameter), the rules when it is
//! found in several places, and removing it before the request is forwarded.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderName, Uri};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AuthInput, Presented};
use crate::ConfigIssue;

/// The longest token accepted; longer ones are refused before any parsing (a 100 KB "token" costs nothing).
pub const DEFAULT_MAX_TOKEN: usize = 8 * 1024;

/// The most places a policy reads a token from.
const MAX_SOURCES: usize = 32;

/// One place a token may be: give exactly one of `header`, `cookie` and `query`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenSourceConfig {
    /// A request header (`authorization`).
    #[serde(default)]
    pub header: Option<String>,
    /// The scheme before the token in that header (`Bearer`, compared case-insensitively). Defaults to `Bearer`
    /// for `authorization`; other headers carry the bare token unless a scheme is given.
    #[serde(default)]
    pub scheme: Option<String>,
    /// A cookie name.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A query parameter (opt-in: URLs end up in browser histories and logs of other systems). The parameter is
    /// removed before the request is forwarded.
    #[serde(default)]
    pub query: Option<String>,
}

impl TokenSourceConfig {
    /// `Authorization: Bearer <token>`, the default.
    pub fn bearer() -> Self {
        Self { header: Some("authorization".into()), ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Header { name: HeaderName, scheme: Option<String> },
    Cookie(String),
    Query(String),
}

/// Compiled token sources.
#[derive(Debug, Clone)]
pub struct TokenSources {
    sources: Vec<Source>,
    max_len: usize,
}

/// A token found in a request, and where. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct FoundToken {
    /// The token text.
    pub token: String,
    /// The places it was found in (bit `i`: source `i`), for [`TokenSources::strip`].
    found_in: u32,
}

impl std::fmt::Debug for FoundToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundToken")
            .field("token", &"<redacted>")
            .field("found_in", &format_args!("{:#b}", self.found_in))
            .finish()
    }
}

impl TokenSources {
    /// Compiles `configs` (empty: `Authorization: Bearer`). Issue paths are `from[i].field`.
    pub fn compile(configs: &[TokenSourceConfig], max_len: usize) -> Result<Self, Vec<ConfigIssue>> {
        let defaults = [TokenSourceConfig::bearer()];
        let configs = if configs.is_empty() { &defaults[..] } else { configs };
        let mut issues = Vec::new();
        if configs.len() > MAX_SOURCES {
            issues.push(ConfigIssue::new("from", format!("at most {MAX_SOURCES} places to read a token from")));
        }
        let mut sources = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let path = format!("from[{i}]");
            match (&c.header, &c.cookie, &c.query) {
                (Some(h), None, None) => match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                    Ok(name) => {
                        let scheme = c.scheme.clone().or_else(|| (name == AUTHORIZATION).then(|| "Bearer".to_string()));
                        sources.push(Source::Header { name, scheme });
                    }
                    Err(_) => {
                        issues.push(ConfigIssue::new(format!("{path}.header"), format!("`{h}` is not a header name")))
                    }
                },
                (None, Some(c), None) if !c.is_empty() => sources.push(Source::Cookie(c.clone())),
                (None, None, Some(q)) if !q.is_empty() => sources.push(Source::Query(q.clone())),
                _ => issues.push(ConfigIssue::new(path.clone(), "give exactly one of `header`, `cookie` and `query`")),
            }
            if c.scheme.is_some() && c.header.is_none() {
                issues.push(ConfigIssue::new(format!("{path}.scheme"), "`scheme` only applies to `header`"));
            }
        }
        if issues.is_empty() { Ok(Self { sources, max_len }) } else { Err(issues) }
    }

    /// Names of the headers tokens are read from.
    pub fn header_names(&self) -> impl Iterator<Item = &HeaderName> {
        self.sources.iter().filter_map(|s| match s {
            Source::Header { name, .. } => Some(name),
            _ => None,
        })
    }

    /// Looks for the token. The same token in several places is fine; different tokens, a header given twice, an
    /// empty or oversized token are [`Presented::Malformed`]. A header with another scheme (`Basic ...` where
    /// `Bearer` is expected) counts as absent: another method may own it.
    pub fn find(&self, input: &AuthInput<'_>) -> Presented<FoundToken> {
        let mut found: Option<FoundToken> = None;
        for (i, source) in self.sources.iter().enumerate() {
            let token = match self.read(source, input) {
                Presented::Absent => continue,
                Presented::Malformed(why) => return Presented::Malformed(why),
                Presented::Present(token) => token,
            };
            if token.is_empty() {
                return Presented::Malformed("empty token");
            }
            if token.len() > self.max_len {
                return Presented::Malformed("token too large");
            }
            match &mut found {
                None => found = Some(FoundToken { token, found_in: 1 << i }),
                Some(f) if f.token == token => f.found_in |= 1 << i,
                Some(_) => return Presented::Malformed("different tokens in several places"),
            }
        }
        match found {
            Some(f) => Presented::Present(f),
            None => Presented::Absent,
        }
    }

    fn read(&self, source: &Source, input: &AuthInput<'_>) -> Presented<String> {
        match source {
            Source::Header { name, scheme } => {
                let mut values = input.headers.get_all(name).iter();
                let Some(value) = values.next() else { return Presented::Absent };
                if values.next().is_some() {
                    return Presented::Malformed("header given twice");
                }
                if value.len() > self.max_len + 64 {
                    return Presented::Malformed("token too large");
                }
                let Ok(text) = value.to_str() else { return Presented::Malformed("non-ASCII token") };
                let text = text.trim();
                match scheme {
                    None => Presented::Present(text.to_string()),
                    Some(scheme) => match text.split_once(' ') {
                        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) => {
                            Presented::Present(rest.trim().to_string())
                        }
                        None if text.eq_ignore_ascii_case(scheme) => Presented::Malformed("scheme without a token"),
                        _ => Presented::Absent,
                    },
                }
            }
            Source::Cookie(cookie) => {
                let mut value: Option<&str> = None;
                for header in input.headers.get_all(COOKIE) {
                    let Ok(text) = header.to_str() else { continue };
                    for pair in text.split(';') {
                        let Some((k, v)) = pair.trim().split_once('=') else { continue };
                        if k.trim() == cookie {
                            let v = v.trim().trim_matches('"');
                            match value {
                                Some(existing) if existing != v => return Presented::Malformed("cookie given twice"),
                                _ => value = Some(v),
                            }
                        }
                    }
                }
                value.map_or(Presented::Absent, |v| Presented::Present(v.to_string()))
            }
            Source::Query(param) => {
                let Some(query) = input.uri.query() else { return Presented::Absent };
                let mut value: Option<String> = None;
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(k) == *param {
                        let v = percent_decode(v);
                        match &value {
                            Some(existing) if *existing != v => {
                                return Presented::Malformed("query parameter given twice");
                            }
                            _ => value = Some(v),
                        }
                    }
                }
                value.map_or(Presented::Absent, Presented::Present)
            }
        }
    }

    /// Removes the token from every place it was found in, so the upstream never sees it.
    pub fn strip(&self, found: &FoundToken, parts: &mut http::request::Parts) {
        for (i, source) in self.sources.iter().enumerate() {
            if found.found_in & (1 << i) == 0 {
                continue;
            }
            match source {
                Source::Header { name, .. } => {
                    parts.headers.remove(name);
                }
                Source::Cookie(cookie) => strip_cookie(&mut parts.headers, cookie),
                Source::Query(param) => parts.uri = strip_query_param(&parts.uri, param),
            }
        }
    }
}

fn strip_cookie(headers: &mut http::HeaderMap, cookie: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|t| t.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k.trim() != cookie))
        .map(str::to_string)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = http::HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }
}

/// `uri` without every occurrence of the query parameter `param` (compared after decoding).
pub fn strip_query_param(uri: &Uri, param: &str) -> Uri {
    let Some(query) = uri.query() else { return uri.clone() };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| percent_decode(pair.split_once('=').map_or(*pair, |(k, _)| k)) != param)
        .collect();
    let mut pq = uri.path().to_string();
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Decodes `+` and `%XX` (a malformed escape is kept literally).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn sources(configs: &[TokenSourceConfig]) -> TokenSources {
        TokenSources::compile(configs, 64).unwrap()
    }

    fn find(s: &TokenSources, uri: &str, headers: &[(&str, &str)]) -> Presented<String> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let input = AuthInput { method: &Method::GET, uri: &uri, headers: &map, client_cert: None };
        match s.find(&input) {
            Presented::Present(f) => Presented::Present(f.token),
            Presented::Absent => Presented::Absent,
            Presented::Malformed(w) => Presented::Malformed(w),
        }
    }

    #[test]
    fn reads_a_bearer_token_and_ignores_other_schemes() {
        let s = sources(&[]);
        assert_eq!(find(&s, "/", &[("authorization", "Bearer abc")]), Presented::Present("abc".into()));
        assert_eq!(find(&s, "/", &[("authorization", "bearer  abc ")]), Presented::Present("abc".into()));
        assert_eq!(find(&s, "/", &[("authorization", "Basic dXNlcg==")]), Presented::Absent);
        assert_eq!(find(&s, "/", &[]), Presented::Absent);
        assert!(matches!(find(&s, "/", &[("authorization", "Bearer")]), Presented::Malformed(_)));
        assert!(matches!(
            find(&s, "/", &[("authorization", "Bearer a"), ("authorization", "Bearer a")]),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            find(&s, "/", &[("authorization", &format!("Bearer {}", "x".repeat(65)))]),
            Presented::Malformed(_)
        ));
    }

    #[test]
    fn conflicting_tokens_in_several_places_are_refused() {
        let s = sources(&[
            TokenSourceConfig::bearer(),
            TokenSourceConfig { query: Some("access_token".into()), ..Default::default() },
        ]);
        assert_eq!(
            find(&s, "/?access_token=abc", &[("authorization", "Bearer abc")]),
            Presented::Present("abc".into())
        );
        assert!(matches!(find(&s, "/?access_token=xyz", &[("authorization", "Bearer abc")]), Presented::Malformed(_)));
        assert!(matches!(find(&s, "/?access_token=a&access_token=b", &[]), Presented::Malformed(_)));
    }

    #[test]
    fn reads_cookies() {
        let s = sources(&[TokenSourceConfig { cookie: Some("session".into()), ..Default::default() }]);
        assert_eq!(find(&s, "/", &[("cookie", "a=1; session=tok; b=2")]), Presented::Present("tok".into()));
        assert!(matches!(find(&s, "/", &[("cookie", "session=x"), ("cookie", "session=y")]), Presented::Malformed(_)));
    }

    #[test]
    fn strips_the_token_from_where_it_was_found() {
        let s = sources(&[
            TokenSourceConfig::bearer(),
            TokenSourceConfig { query: Some("access_token".into()), ..Default::default() },
            TokenSourceConfig { cookie: Some("session".into()), ..Default::default() },
        ]);
        let mut req = http::Request::get("/p?x=1&access_token=abc&y=2")
            .header("authorization", "Bearer abc")
            .header("cookie", "a=1; session=abc")
            .body(())
            .unwrap();
        let input = AuthInput { method: req.method(), uri: req.uri(), headers: req.headers(), client_cert: None };
        let Presented::Present(found) = s.find(&input) else { panic!("token expected") };
        let (mut parts, ()) = req.into_parts();
        s.strip(&found, &mut parts);
        assert_eq!(parts.uri, "/p?x=1&y=2");
        assert!(parts.headers.get("authorization").is_none());
        assert_eq!(parts.headers["cookie"], "a=1");
        req = http::Request::from_parts(parts, ());
        assert_eq!(req.uri().query(), Some("x=1&y=2"));
    }

    #[test]
    fn config_needs_exactly_one_place() {
        let both = TokenSourceConfig { header: Some("x".into()), cookie: Some("y".into()), ..Default::default() };
        assert!(TokenSources::compile(&[both], 64).is_err());
        assert!(TokenSources::compile(&[TokenSourceConfig::default()], 64).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let found = FoundToken { token: "eyJsecret".into(), found_in: 1 };
        assert!(!format!("{found:?}").contains("eyJsecret"));
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
    }
}
