//! Reading a compact JWS without trusting it ([`inspect`]), the checks made before any cryptography, the
//! signature check, and the claim checks made after it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::config::JwtAlgorithm;
use super::keys::VerifyKey;

/// The longest token [`inspect`] reads, whatever the configuration says (the configured `max_token_size` is at
/// most this).
pub const MAX_INSPECT_LEN: usize = 64 * 1024;

/// The JOSE header fields the gateway looks at; other fields are ignored. A field given twice is an error, so two
/// parsers can never disagree on which `alg` a token has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JoseHeader {
    /// The `alg` header, as written (`RS256`, `none`, ...).
    pub alg: String,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The media type (`JWT`, `at+jwt`), not checked.
    #[serde(default)]
    pub typ: Option<String>,
    /// Whether a `crit` header is present: extensions the verifier must understand. None is supported, so such
    /// a token is refused (RFC 7515 4.1.11).
    #[serde(default, deserialize_with = "present")]
    pub crit: bool,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A token's decoded header and claims, and the parts the signature covers. Nothing in it is verified.
#[derive(Debug, Clone)]
pub struct TokenParts<'a> {
    /// The decoded header.
    pub header: JoseHeader,
    /// The decoded claims (the payload must be a JSON object).
    pub claims: Map<String, Value>,
    /// `header.payload`, the text the signature covers.
    pub signing_input: &'a str,
    /// The base64url signature (empty for `alg: none` tokens).
    pub signature: &'a str,
}

/// Decodes a compact JWS (`header.payload.signature`) WITHOUT verifying it: bounded (at most
/// [`MAX_INSPECT_LEN`] bytes), never panics. Fails, with a reason for debug logs, on anything that is not three
/// base64url parts with a JSON object header carrying a string `alg` and a JSON object payload.
pub fn inspect(token: &str) -> Result<TokenParts<'_>, &'static str> {
    if token.len() > MAX_INSPECT_LEN {
        return Err("token too large");
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err("empty header or payload");
    }
    let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| "header is not base64url")?;
    let header: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| "header is not a JOSE JSON object")?;
    let payload_json = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| "payload is not base64url")?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload_json).map_err(|_| "payload is not a JSON object")?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(TokenParts { header, claims, signing_input, signature })
}

/// The algorithm a token may be checked with: listed, not `none`, no `crit`. Runs before any key lookup.
pub(crate) fn allowed_algorithm(header: &JoseHeader, allowed: &[JwtAlgorithm]) -> Result<JwtAlgorithm, &'static str> {
    if header.crit {
        return Err("crit header not supported");
    }
    let alg = JwtAlgorithm::from_name(&header.alg).ok_or("algorithm not supported")?;
    if !allowed.contains(&alg) {
        return Err("algorithm not allowed");
    }
    Ok(alg)
}

/// Whether `key` verifies the token's signature with `alg`. The caller made sure the key fits the algorithm.
pub(crate) fn signature_valid(key: &VerifyKey, alg: JwtAlgorithm, parts: &TokenParts<'_>) -> bool {
    if parts.signature.is_empty() || !key.fits(alg) {
        return false;
    }
    jsonwebtoken::crypto::verify(parts.signature, parts.signing_input.as_bytes(), &key.key, alg.jwt()).unwrap_or(false)
}

/// The claim checks, compiled.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) required: Vec<String>,
    /// Seconds.
    pub(crate) leeway: f64,
    pub(crate) require_exp: bool,
}

impl ClaimRules {
    /// Checks `exp`, `nbf`, `iss`, `aud` and the required claims at `now` (seconds since the epoch). Returns the
    /// expiry, if the token has one.
    pub(crate) fn check(&self, claims: &Map<String, Value>, now: f64) -> Result<Option<f64>, &'static str> {
        let exp = numeric(claims, "exp").map_err(|()| "exp is not a number")?;
        match exp {
            Some(exp) if now >= exp + self.leeway => return Err("expired"),
            None if self.require_exp => return Err("no exp"),
            _ => {}
        }
        if let Some(nbf) = numeric(claims, "nbf").map_err(|()| "nbf is not a number")?
            && now + self.leeway < nbf
        {
            return Err("not yet valid");
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err("wrong issuer");
        }
        if !self.audiences.is_empty() {
            let matches = |aud: &str| self.audiences.iter().any(|a| a == aud);
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => matches(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(matches),
                _ => false,
            };
            if !ok {
                return Err("wrong audience");
            }
        }
        if self.required.iter().any(|name| claims.get(name).is_none_or(Value::is_null)) {
            return Err("required claim missing");
        }
        Ok(exp)
    }
}

/// A NumericDate claim: absent is `Ok(None)`, a number is its value, anything else is an error.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}
