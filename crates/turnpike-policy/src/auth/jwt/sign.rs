//! The gateway-signed token: a short-lived JWT carrying the verified identity to the upstream, so services can
//! check who is calling with the gateway's public key instead of trusting plain headers.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderName;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Map, Value, json};
use turnpike_core::Identity;

use super::config::{GatewayAlgorithm, GatewayTokenConfig};
use super::keys::{self, KeyKind};
use super::{MIN_SECRET_LEN, unix_now};
use crate::ConfigIssue;

const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);

/// Why a token could not be signed (the system's random source or the key failed; never expected).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The signature could not be computed.
    #[error("signing the gateway token failed")]
    Crypto,
}

enum SigningKey {
    Hmac(ring::hmac::Key),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A compiled [`GatewayTokenConfig`]: the parsed private key and the encoded header, ready to sign.
pub struct GatewaySigner {
    key: SigningKey,
    algorithm: GatewayAlgorithm,
    rng: SystemRandom,
    /// The base64url header, the same for every token.
    header_b64: String,
    issuer: String,
    audience: Option<String>,
    ttl: Duration,
    header: HeaderName,
    kid: Option<String>,
}

impl std::fmt::Debug for GatewaySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySigner")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl GatewaySigner {
    /// Parses the key and checks the settings; reads `key_file` relative to `base_dir`. Issue paths are
    /// relative to the config; messages never include key material.
    pub fn compile(config: &GatewayTokenConfig, base_dir: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let key = signing_key(config, base_dir, &mut issues);
        if config.issuer.is_empty() {
            issues.push(ConfigIssue::new("issuer", "must not be empty"));
        }
        if config.audience.as_deref().is_some_and(str::is_empty) {
            issues.push(ConfigIssue::new("audience", "must not be empty (leave it out for no `aud`)"));
        }
        let ttl = config.ttl.as_std();
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            issues.push(ConfigIssue::new("ttl", "must be from 1s to 1h"));
        }
        let header = HeaderName::from_bytes(config.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| issues.push(ConfigIssue::new("header", format!("`{}` is not a header name", config.header))))
            .ok();
        if config.kid.as_deref().is_some_and(str::is_empty) {
            issues.push(ConfigIssue::new("kid", "must not be empty"));
        }
        let (Some(key), Some(header), true) = (key, header, issues.is_empty()) else {
            return Err(issues);
        };
        let mut jose = Map::new();
        jose.insert("alg".into(), json!(config.algorithm.algorithm().name()));
        jose.insert("typ".into(), json!("JWT"));
        if let Some(kid) = &config.kid {
            jose.insert("kid".into(), json!(kid));
        }
        Ok(Self {
            key,
            algorithm: config.algorithm,
            rng: SystemRandom::new(),
            header_b64: URL_SAFE_NO_PAD.encode(Value::Object(jose).to_string()),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl,
            header,
            kid: config.kid.clone(),
        })
    }

    /// The request header the token goes in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// A token for `identity`: `iss`, `aud` (if configured), `sub`, `iat`, `exp` (now + `ttl`), a random `jti`,
    /// `auth` (how the caller authenticated: `jwt`, `api_key`, ...), and when present `roles`, `scope`
    /// (space-separated), `plan` and `consumer` (the consumer id).
    pub fn sign(&self, identity: &Identity) -> Result<String, SignError> {
        let now = unix_now().floor() as u64;
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| SignError::Crypto)?;
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), json!(aud));
        }
        if let Some(sub) = &identity.subject {
            claims.insert("sub".into(), json!(&**sub));
        }
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + self.ttl.as_secs()));
        claims.insert("jti".into(), json!(jti.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        claims.insert("auth".into(), json!(identity.source.as_str()));
        if !identity.roles.is_empty() {
            claims.insert("roles".into(), json!(identity.roles.iter().map(|r| &**r).collect::<Vec<_>>()));
        }
        if !identity.scopes.is_empty() {
            claims.insert("scope".into(), json!(identity.scopes.iter().map(|s| &**s).collect::<Vec<_>>().join(" ")));
        }
        if let Some(plan) = &identity.plan {
            claims.insert("plan".into(), json!(&**plan));
        }
        if let Some(consumer) = &identity.consumer {
            claims.insert("consumer".into(), json!(&*consumer.id));
        }
        let mut token = String::with_capacity(512);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(Value::Object(claims).to_string(), &mut token);
        let signature = self.signature(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    fn signature(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.key {
            SigningKey::Hmac(key) => Ok(ring::hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Ecdsa(key) => {
                Ok(key.sign(&self.rng, message).map_err(|_| SignError::Crypto)?.as_ref().to_vec())
            }
            SigningKey::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
            SigningKey::Rsa(key) => {
                let mut out = vec![0u8; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut out).map_err(|_| SignError::Crypto)?;
                Ok(out)
            }
        }
    }

    /// The public key as a JWKS document (`{"keys": [...]}`) for services to verify with; `None` for `HS256`.
    pub fn public_jwks(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.key {
            SigningKey::Hmac(_) => return None,
            SigningKey::Ecdsa(key) => {
                let point = key.public_key().as_ref();
                let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
            }
            SigningKey::Ed25519(key) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())}),
            SigningKey::Rsa(key) => {
                let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)})
            }
        };
        if let Value::Object(jwk) = &mut jwk {
            jwk.insert("use".into(), json!("sig"));
            jwk.insert("alg".into(), json!(self.algorithm.algorithm().name()));
            if let Some(kid) = &self.kid {
                jwk.insert("kid".into(), json!(kid));
            }
        }
        Some(json!({ "keys": [jwk] }))
    }
}

fn signing_key(config: &GatewayTokenConfig, base_dir: &Path, issues: &mut Vec<ConfigIssue>) -> Option<SigningKey> {
    let given = [config.key_pem.is_some(), config.key_file.is_some(), config.secret.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        issues.push(ConfigIssue::new("", "give exactly one of `key_pem`, `key_file` and `secret`"));
        return None;
    }
    if let Some(secret) = &config.secret {
        if config.algorithm != GatewayAlgorithm::Hs256 {
            issues.push(ConfigIssue::new("secret", "only `HS256` signs with a secret; give `key_pem` or `key_file`"));
            return None;
        }
        if secret.expose().len() < MIN_SECRET_LEN {
            issues.push(ConfigIssue::new("secret", format!("must be at least {MIN_SECRET_LEN} bytes")));
            return None;
        }
        return Some(SigningKey::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes())));
    }
    let (field, text) = match (&config.key_pem, &config.key_file) {
        (Some(pem), _) => ("key_pem", pem.expose().to_string()),
        (None, Some(file)) => match std::fs::read_to_string(base_dir.join(file)) {
            Ok(text) => ("key_file", text),
            Err(e) => {
                issues.push(ConfigIssue::new("key_file", format!("cannot read `{}`: {e}", file.display())));
                return None;
            }
        },
        (None, None) => return None,
    };
    if config.algorithm == GatewayAlgorithm::Hs256 {
        issues.push(ConfigIssue::new(field, "`HS256` signs with `secret`, not a private key"));
        return None;
    }
    match private_key(config.algorithm, &text) {
        Ok(key) => Some(key),
        Err(e) => {
            issues.push(ConfigIssue::new(field, e));
            None
        }
    }
}

fn private_key(algorithm: GatewayAlgorithm, pem: &str) -> Result<SigningKey, String> {
    let (label, der) = keys::pem_block(pem).map_err(str::to_string)?;
    let expected = match algorithm {
        GatewayAlgorithm::Es256 => KeyKind::EcP256,
        GatewayAlgorithm::EdDsa => KeyKind::Ed25519,
        GatewayAlgorithm::Rs256 => KeyKind::Rsa,
        GatewayAlgorithm::Hs256 => KeyKind::Secret,
    };
    let rejected = |e: ring::error::KeyRejected| format!("the private key was rejected: {e}");
    match label.as_str() {
        "PRIVATE KEY" => {
            let kind = keys::pkcs8_kind(&der).ok_or("not a PKCS#8 RSA, EC P-256 or Ed25519 private key")?;
            if kind != expected {
                return Err(format!("{} does not sign {}", kind.describe(), algorithm.algorithm()));
            }
            match algorithm {
                GatewayAlgorithm::Es256 => {
                    let rng = SystemRandom::new();
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                        .map(SigningKey::Ecdsa)
                        .map_err(rejected)
                }
                GatewayAlgorithm::EdDsa => {
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map(SigningKey::Ed25519).map_err(rejected)
                }
                GatewayAlgorithm::Rs256 => RsaKeyPair::from_pkcs8(&der).map_err(rejected).and_then(rsa),
                GatewayAlgorithm::Hs256 => Err("`HS256` signs with `secret`".into()),
            }
        }
        "RSA PRIVATE KEY" if algorithm == GatewayAlgorithm::Rs256 => {
            RsaKeyPair::from_der(&der).map_err(rejected).and_then(rsa)
        }
        "EC PRIVATE KEY" => {
            Err("a SEC1 EC key: convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt -in key.pem`)".into())
        }
        label if label.contains("PUBLIC KEY") || label == "CERTIFICATE" => {
            Err("this is a public key or certificate: the gateway needs the private key".into())
        }
        label => Err(format!("unsupported PEM block `{label}`: expected a PKCS#8 `PRIVATE KEY`")),
    }
}

fn rsa(key: RsaKeyPair) -> Result<SigningKey, String> {
    if key.public().modulus_len() < 256 {
        return Err("RSA keys must have at least 2048 bits".into());
    }
    Ok(SigningKey::Rsa(key))
}
