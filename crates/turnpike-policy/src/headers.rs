//! Security headers on responses: `X-Content-Type-Options`, `Referrer-Policy`, `X-Frame-Options` added when the
//! upstream did not set them, and headers that reveal the stack (`Server`, `X-Powered-By`) removed when asked.

use http::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigIssue;

/// Security headers added to every response (the upstream's own values win).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    /// Add `X-Content-Type-Options: nosniff`.
    pub content_type_options: bool,
    /// `Referrer-Policy` value; `null` adds none.
    pub referrer_policy: Option<String>,
    /// `X-Frame-Options` value (`DENY`, `SAMEORIGIN`); `null` adds none.
    pub frame_options: Option<String>,
    /// Response headers removed before the client sees them, e.g. `[server, x-powered-by]`.
    pub remove: Vec<String>,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            content_type_options: true,
            referrer_policy: Some("strict-origin-when-cross-origin".into()),
            frame_options: None,
            remove: Vec::new(),
        }
    }
}

/// Compiled security headers.
#[derive(Debug, Clone, Default)]
pub struct SecurityHeaders {
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl SecurityHeaders {
    /// Compiles `config`; issue paths are relative.
    pub fn compile(config: &SecurityHeadersConfig) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut add = Vec::new();
        if config.content_type_options {
            add.push((HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")));
        }
        for (field, name, value) in [
            ("referrer_policy", "referrer-policy", &config.referrer_policy),
            ("frame_options", "x-frame-options", &config.frame_options),
        ] {
            if let Some(value) = value {
                match HeaderValue::from_str(value) {
                    Ok(v) => add.push((HeaderName::from_static(name), v)),
                    Err(_) => issues.push(ConfigIssue::new(field, "not a valid header value")),
                }
            }
        }
        let mut remove = Vec::new();
        for (i, name) in config.remove.iter().enumerate() {
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(n) => remove.push(n),
                Err(_) => {
                    issues.push(ConfigIssue::new(format!("remove[{i}]"), format!("`{name}` is not a header name")))
                }
            }
        }
        if issues.is_empty() { Ok(Self { add, remove }) } else { Err(issues) }
    }

    /// Applies to a response's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.add {
            // One lookup: an upstream's own value is kept.
            headers.entry(name).or_insert_with(|| value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_defaults_keeps_upstream_values_and_removes_revealing_headers() {
        let config =
            SecurityHeadersConfig { remove: vec!["Server".into(), "x-powered-by".into()], ..Default::default() };
        let sh = SecurityHeaders::compile(&config).unwrap();
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("nginx/1.2"));
        h.insert("x-powered-by", HeaderValue::from_static("PHP"));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        sh.apply(&mut h);
        assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}
