//! CORS: preflight requests answered by the gateway, and the response headers that let browsers read answers from
//! allowed origins. An arbitrary `Origin` is never echoed: only origins the configuration allows, and `*` never
//! together with credentials.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::Duration;

use crate::ConfigIssue;

/// Cross-origin resource sharing for a route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to read answers: exact (`https://app.example.com`), a subdomain pattern
    /// (`https://*.example.com`: one or more labels), or `*` (any origin, only without credentials).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for. Empty: the route's own methods (or `GET, HEAD, POST` for any-method
    /// routes).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive). Empty: none beyond the CORS-safelisted ones.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read beyond the safelisted ones (`x-request-id`).
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and `Authorization` (`Access-Control-Allow-Credentials: true`). Not with `*`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration(std::time::Duration::from_secs(600))
}

#[derive(Debug, Clone)]
enum OriginRule {
    Any,
    Exact(String),
    /// `scheme://*.suffix` (suffix stored with its leading dot), optional `:port` kept in the suffix.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

/// A compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<OriginRule>,
    methods: HeaderValue,
    method_list: Vec<Method>,
    headers: Vec<HeaderName>,
    headers_value: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

/// What the gateway does with a request, CORS-wise.
#[derive(Debug)]
pub enum CorsDecision {
    /// Not a CORS request (no `Origin`), or CORS does not apply: nothing to add.
    None,
    /// A preflight for an allowed origin: answer 204 with these headers.
    Preflight(HeaderMap),
    /// A preflight the policy refuses (origin, method or headers not allowed): answer 403.
    Refused,
    /// An actual request from an allowed origin: add these headers to the response.
    Actual(HeaderMap),
}

impl Cors {
    /// Compiles `config`; `route_methods` is the route's method list (empty: any). Issue paths are relative.
    pub fn compile(config: &CorsConfig, route_methods: &[Method]) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut origins = Vec::new();
        if config.allow_origins.is_empty() {
            issues.push(ConfigIssue::new("allow_origins", "list at least one origin"));
        }
        for (i, origin) in config.allow_origins.iter().enumerate() {
            let path = format!("allow_origins[{i}]");
            if origin == "*" {
                if config.allow_credentials {
                    issues.push(ConfigIssue::new(path, "`*` cannot be used with `allow_credentials: true`"));
                }
                origins.push(OriginRule::Any);
                continue;
            }
            let Some((scheme, host)) = origin.split_once("://") else {
                issues.push(ConfigIssue::new(path, format!("`{origin}` is not `scheme://host[:port]`")));
                continue;
            };
            if host.is_empty() || host.contains('/') || !matches!(scheme, "http" | "https") {
                issues.push(ConfigIssue::new(path, format!("`{origin}` is not `scheme://host[:port]` (no path)")));
                continue;
            }
            match host.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => origins.push(OriginRule::Subdomains {
                    scheme: scheme.to_ascii_lowercase(),
                    suffix: format!(".{}", suffix.to_ascii_lowercase()),
                }),
                Some(_) => {
                    issues.push(ConfigIssue::new(path, format!("`{origin}`: `*.` must be followed by a domain")))
                }
                None if host.contains('*') => issues
                    .push(ConfigIssue::new(path, format!("`{origin}`: `*` only as the first label (`*.example.com`)"))),
                None => origins.push(OriginRule::Exact(origin.to_ascii_lowercase())),
            }
        }
        let mut method_list = Vec::new();
        for (i, m) in config.allow_methods.iter().enumerate() {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => method_list.push(method),
                _ => issues.push(ConfigIssue::new(format!("allow_methods[{i}]"), format!("`{m}` is not a method"))),
            }
        }
        if method_list.is_empty() {
            method_list = if route_methods.is_empty() {
                vec![Method::GET, Method::HEAD, Method::POST]
            } else {
                route_methods.to_vec()
            };
        }
        let mut headers = Vec::new();
        for (i, h) in config.allow_headers.iter().enumerate() {
            match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                Ok(name) => headers.push(name),
                Err(_) => {
                    issues.push(ConfigIssue::new(format!("allow_headers[{i}]"), format!("`{h}` is not a header name")))
                }
            }
        }
        let mut expose = Vec::new();
        for (i, h) in config.expose_headers.iter().enumerate() {
            match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                Ok(name) => expose.push(name.as_str().to_string()),
                Err(_) => {
                    issues.push(ConfigIssue::new(format!("expose_headers[{i}]"), format!("`{h}` is not a header name")))
                }
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let join = |items: Vec<String>| HeaderValue::from_str(&items.join(", ")).ok();
        Ok(Self {
            origins,
            methods: join(method_list.iter().map(|m| m.to_string()).collect())
                .unwrap_or(HeaderValue::from_static("GET")),
            method_list,
            headers_value: if headers.is_empty() {
                None
            } else {
                join(headers.iter().map(|h| h.to_string()).collect())
            },
            headers,
            expose: if expose.is_empty() { None } else { join(expose) },
            credentials: config.allow_credentials,
            max_age: HeaderValue::from(config.max_age.0.as_secs()),
        })
    }

    /// Whether `request` (method and headers) is a preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The method a preflight asks for.
    pub fn requested_method(headers: &HeaderMap) -> Option<Method> {
        Method::from_bytes(headers.get(ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
    }

    /// Decides what to do with a request.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> CorsDecision {
        let Some(origin) = headers.get(ORIGIN) else { return CorsDecision::None };
        let preflight = Self::is_preflight(method, headers);
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return if preflight { CorsDecision::Refused } else { CorsDecision::None };
        };
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        // The answer depends on the Origin: caches must not serve it to another origin.
        out.append(VARY, HeaderValue::from_static("origin"));
        if self.credentials {
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if !preflight {
            if let Some(expose) = &self.expose {
                out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            return CorsDecision::Actual(out);
        }
        let Some(requested) = Self::requested_method(headers) else { return CorsDecision::Refused };
        let method_ok = self.method_list.contains(&requested)
            || (requested == Method::HEAD && self.method_list.contains(&Method::GET));
        if !method_ok {
            return CorsDecision::Refused;
        }
        if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
            let asked = asked.to_str().unwrap_or("");
            for name in asked.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !self.headers.iter().any(|h| h.as_str().eq_ignore_ascii_case(name)) {
                    return CorsDecision::Refused;
                }
            }
        }
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(h) = &self.headers_value {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
        }
        out.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        out.append(VARY, HeaderValue::from_static("access-control-request-method, access-control-request-headers"));
        CorsDecision::Preflight(out)
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allowed_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        for rule in &self.origins {
            match rule {
                // `*` is only configurable without credentials, so answering `*` never pairs with them.
                OriginRule::Any => return Some(HeaderValue::from_static("*")),
                OriginRule::Exact(exact) if *exact == text => return Some(origin.clone()),
                OriginRule::Subdomains { scheme, suffix } => {
                    if let Some((s, host)) = text.split_once("://")
                        && s == scheme
                        && host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                        && !host[..host.len() - suffix.len()].is_empty()
                    {
                        return Some(origin.clone());
                    }
                }
                OriginRule::Exact(_) => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::compile(
            &CorsConfig {
                allow_origins: origins.iter().map(|s| s.to_string()).collect(),
                allow_methods: vec![],
                allow_headers: vec!["content-type".into(), "authorization".into()],
                expose_headers: vec!["x-request-id".into()],
                allow_credentials: credentials,
                max_age: default_max_age(),
            },
            &[Method::GET, Method::POST],
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn preflight_from_an_allowed_origin_is_answered() {
        let c = cors(&["https://app.example.com"], true);
        let h = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type, authorization"),
        ]);
        let CorsDecision::Preflight(out) = c.decide(&Method::OPTIONS, &h) else { panic!("preflight expected") };
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "600");
    }

    #[test]
    fn unknown_origins_methods_and_headers_are_refused_and_never_echoed() {
        let c = cors(&["https://app.example.com"], true);
        let evil = headers(&[("origin", "https://evil.test"), ("access-control-request-method", "GET")]);
        assert!(matches!(c.decide(&Method::OPTIONS, &evil), CorsDecision::Refused));
        assert!(matches!(c.decide(&Method::GET, &evil), CorsDecision::None));
        let delete = headers(&[("origin", "https://app.example.com"), ("access-control-request-method", "DELETE")]);
        assert!(matches!(c.decide(&Method::OPTIONS, &delete), CorsDecision::Refused));
        let odd = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-secret"),
        ]);
        assert!(matches!(c.decide(&Method::OPTIONS, &odd), CorsDecision::Refused));
    }

    #[test]
    fn subdomain_patterns_match_only_subdomains() {
        let c = cors(&["https://*.example.com"], false);
        let ok = headers(&[("origin", "https://a.b.example.com")]);
        assert!(matches!(c.decide(&Method::GET, &ok), CorsDecision::Actual(_)));
        for bad in
            ["https://example.com", "https://evilexample.com", "http://a.example.com", "https://a.example.com.evil"]
        {
            assert!(matches!(c.decide(&Method::GET, &headers(&[("origin", bad)])), CorsDecision::None), "{bad}");
        }
    }

    #[test]
    fn star_is_refused_with_credentials_and_answers_star_without() {
        let err = Cors::compile(
            &CorsConfig {
                allow_origins: vec!["*".into()],
                allow_methods: vec![],
                allow_headers: vec![],
                expose_headers: vec![],
                allow_credentials: true,
                max_age: default_max_age(),
            },
            &[],
        )
        .unwrap_err();
        assert!(err[0].message.contains("allow_credentials"));
        let c = cors(&["*"], false);
        let CorsDecision::Actual(out) = c.decide(&Method::GET, &headers(&[("origin", "https://x.test")])) else {
            panic!("actual expected")
        };
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(out.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
    }
}
