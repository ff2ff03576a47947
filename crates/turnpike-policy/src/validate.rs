//! Request validation: a route's JSON request bodies checked against a JSON Schema before they reach the upstream.
//! Failures answer 400 with every schema error's JSON pointer; a body over the limit answers 413, one that is not
//! JSON 415 or 400. Schemas are compiled once per snapshot; remote `$ref`s are never fetched.

use std::path::Path;

use http::HeaderValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use turnpike_config::ByteSize;

use crate::ConfigIssue;

/// The most schema errors reported in one answer.
pub const MAX_REPORTED: usize = 10;

/// JSON Schema validation of request bodies: give `schema` or `schema_file`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BodySchemaConfig {
    /// The schema, inline (YAML or JSON). Drafts 4, 6, 7, 2019-09 and 2020-12 (by `$schema`; default 2020-12).
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// A file holding the schema (JSON or YAML), relative to the config file.
    #[serde(default)]
    pub schema_file: Option<String>,
    /// The largest body validated (and buffered): larger bodies get 413.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
}

fn default_max_size() -> ByteSize {
    ByteSize(1024 * 1024)
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRejection {
    /// Not `application/json` (or `+json`): 415.
    MediaType,
    /// Not valid JSON: 400 with the parser's position.
    InvalidJson(String),
    /// Valid JSON that breaks the schema: 400 with (JSON pointer, message) pairs.
    Schema(Vec<(String, String)>),
}

/// A compiled body validator.
pub struct BodyValidator {
    validator: jsonschema::Validator,
    max_size: u64,
}

impl std::fmt::Debug for BodyValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyValidator").field("max_size", &self.max_size).finish_non_exhaustive()
    }
}

impl BodyValidator {
    /// Compiles the schema; issue paths are relative (`schema`, `schema_file`).
    pub fn compile(config: &BodySchemaConfig, base_dir: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let (schema, field) = match (&config.schema, &config.schema_file) {
            (Some(schema), None) => (schema.clone(), "schema"),
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    vec![ConfigIssue::new("schema_file", format!("cannot read `{}`: {e}", path.display()))]
                })?;
                let value = serde_json::from_str(&text).map_err(|e| {
                    vec![ConfigIssue::new("schema_file", format!("`{}` is not JSON: {e}", path.display()))]
                })?;
                (value, "schema_file")
            }
            _ => return Err(vec![ConfigIssue::new("", "give exactly one of `schema` and `schema_file`")]),
        };
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| vec![ConfigIssue::new(field, format!("invalid JSON Schema: {e}"))])?;
        Ok(Self { validator, max_size: config.max_size.0 })
    }

    /// The largest body validated.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Checks a whole body.
    pub fn check(&self, content_type: Option<&HeaderValue>, body: &[u8]) -> Result<(), BodyRejection> {
        if !is_json(content_type) {
            return Err(BodyRejection::MediaType);
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| BodyRejection::InvalidJson(format!("invalid JSON: {e}")))?;
        let errors: Vec<(String, String)> = self
            .validator
            .iter_errors(&value)
            .take(MAX_REPORTED)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(BodyRejection::Schema(errors)) }
    }
}

/// `application/json`, or any `+json` type, with or without parameters.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> BodyValidator {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["user_id", "items"],
            "properties": {
                "user_id": {"type": "string"},
                "items": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["quantity"],
                    "properties": {"quantity": {"type": "integer", "minimum": 1}}
                }}
            }
        });
        BodyValidator::compile(
            &BodySchemaConfig { schema: Some(schema), schema_file: None, max_size: default_max_size() },
            Path::new("."),
        )
        .unwrap()
    }

    fn json() -> HeaderValue {
        HeaderValue::from_static("application/json; charset=utf-8")
    }

    #[test]
    fn valid_bodies_pass() {
        let v = validator();
        assert_eq!(v.check(Some(&json()), br#"{"user_id":"u","items":[{"quantity":2}]}"#), Ok(()));
    }

    #[test]
    fn schema_errors_carry_json_pointers() {
        let v = validator();
        let Err(BodyRejection::Schema(errors)) = v.check(Some(&json()), br#"{"user_id":7,"items":[{"quantity":0}]}"#)
        else {
            panic!("schema errors expected")
        };
        let pointers: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert!(pointers.contains(&"/user_id"), "{errors:?}");
        assert!(pointers.contains(&"/items/0/quantity"), "{errors:?}");
    }

    #[test]
    fn wrong_media_type_and_broken_json_are_refused() {
        let v = validator();
        assert_eq!(v.check(Some(&HeaderValue::from_static("text/plain")), b"{}"), Err(BodyRejection::MediaType));
        assert_eq!(v.check(None, b"{}"), Err(BodyRejection::MediaType));
        assert!(matches!(v.check(Some(&json()), b"{nope"), Err(BodyRejection::InvalidJson(_))));
        assert!(
            v.check(
                Some(&HeaderValue::from_static("application/merge-patch+json")),
                br#"{"user_id":"u","items":[{"quantity":1}]}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn an_invalid_schema_is_a_config_issue() {
        let err = BodyValidator::compile(
            &BodySchemaConfig {
                schema: Some(serde_json::json!({"type": 12})),
                schema_file: None,
                max_size: default_max_size(),
            },
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(err[0].path, "schema");
    }
}
