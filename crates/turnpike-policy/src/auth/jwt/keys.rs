//! Verification keys: parsing public keys from PEM (SPKI, PKCS#1, X.509) and from a JWKS document, and the key
//! set a token's `kid` and `alg` pick from.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use jsonwebtoken::DecodingKey;
use serde_json::Value;

use super::config::JwtAlgorithm;

/// The most keys read from one JWKS document; the rest are ignored.
pub(crate) const MAX_JWKS_KEYS: usize = 64;

/// The most keys a token without a `kid` is tried against (each try is a signature check).
pub(crate) const MAX_CANDIDATES: usize = 8;

/// What a key is, which decides the algorithms it may verify. A secret only ever verifies `HS*`, and a public key
/// never does: that is what makes algorithm confusion impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyKind {
    /// An HMAC secret.
    Secret,
    /// An RSA public key.
    Rsa,
    /// An EC public key on P-256.
    EcP256,
    /// An EC public key on P-384.
    EcP384,
    /// An Ed25519 public key.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`.
    pub(crate) fn fits(self, alg: JwtAlgorithm) -> bool {
        use JwtAlgorithm as A;
        match self {
            KeyKind::Secret => matches!(alg, A::Hs256 | A::Hs384 | A::Hs512),
            KeyKind::Rsa => matches!(alg, A::Rs256 | A::Rs384 | A::Rs512 | A::Ps256 | A::Ps384 | A::Ps512),
            KeyKind::EcP256 => alg == A::Es256,
            KeyKind::EcP384 => alg == A::Es384,
            KeyKind::Ed25519 => alg == A::EdDsa,
        }
    }

    /// A name for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Secret => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }

    fn tag(self) -> u8 {
        match self {
            KeyKind::Secret => 0,
            KeyKind::Rsa => 1,
            KeyKind::EcP256 => 2,
            KeyKind::EcP384 => 3,
            KeyKind::Ed25519 => 4,
        }
    }
}

/// Public key material: the kind and the bytes ring verifies with (PKCS#1 `RSAPublicKey` DER, an uncompressed EC
/// point, the 32 Ed25519 bytes).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) kind: KeyKind,
    pub(crate) der: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kind", &self.kind).field("len", &self.der.len()).finish()
    }
}

/// One key a token may be verified with.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// The only algorithm allowed with this key (a JWK's `alg`), if restricted.
    pub(crate) alg: Option<JwtAlgorithm>,
    pub(crate) key: DecodingKey,
    /// SHA-256 of kind and material: tells keys apart without comparing `DecodingKey`s.
    pub(crate) digest: [u8; 32],
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("kind", &self.kind).field("alg", &self.alg).finish()
    }
}

impl VerifyKey {
    /// A secret (HS*).
    pub(crate) fn secret(kid: Option<String>, secret: &[u8]) -> Self {
        Self {
            kid,
            kind: KeyKind::Secret,
            alg: None,
            key: DecodingKey::from_secret(secret),
            digest: digest(KeyKind::Secret, secret),
        }
    }

    /// A public key.
    pub(crate) fn public(kid: Option<String>, public: &PublicKey, alg: Option<JwtAlgorithm>) -> Self {
        let key = match public.kind {
            KeyKind::Secret => DecodingKey::from_secret(&public.der),
            KeyKind::Rsa => DecodingKey::from_rsa_der(&public.der),
            KeyKind::EcP256 | KeyKind::EcP384 => DecodingKey::from_ec_der(&public.der),
            KeyKind::Ed25519 => DecodingKey::from_ed_der(&public.der),
        };
        Self { kid, kind: public.kind, alg, key, digest: digest(public.kind, &public.der) }
    }

    /// Whether this key may verify a token signed with `alg`.
    pub(crate) fn fits(&self, alg: JwtAlgorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|only| only == alg)
    }
}

fn digest(kind: KeyKind, material: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[kind.tag()]);
    ctx.update(material);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The keys a policy verifies with. Immutable: a refresh builds a new set and swaps it in.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<VerifyKey>,
}

/// The keys a token may be verified with.
#[derive(Debug)]
pub(crate) enum Candidates<'a> {
    /// Keys to try, in order (at most [`MAX_CANDIDATES`]).
    Keys(Vec<&'a VerifyKey>),
    /// Keys with the token's `kid` exist, but none fits its `alg`: refused, no refresh can help.
    WrongAlgorithm,
    /// No key has the token's `kid` (and no key without a `kid` fits): a refresh may bring it.
    UnknownKid,
    /// The token has no `kid` and no key fits its `alg`.
    NoKey,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<VerifyKey>) -> Self {
        Self { keys }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys to try for a token with this `kid` and `alg`: with a `kid`, only the keys of that id (or, when no
    /// key has it, keys without an id); without a `kid`, every key that fits `alg`.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Candidates<'_> {
        let fitting = |k: &&VerifyKey| k.fits(alg);
        if let Some(kid) = kid {
            let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
            if named.peek().is_some() {
                let keys: Vec<_> = named.filter(fitting).take(MAX_CANDIDATES).collect();
                return if keys.is_empty() { Candidates::WrongAlgorithm } else { Candidates::Keys(keys) };
            }
            let anonymous: Vec<_> =
                self.keys.iter().filter(|k| k.kid.is_none()).filter(fitting).take(MAX_CANDIDATES).collect();
            return if anonymous.is_empty() { Candidates::UnknownKid } else { Candidates::Keys(anonymous) };
        }
        let keys: Vec<_> = self.keys.iter().filter(fitting).take(MAX_CANDIDATES).collect();
        if keys.is_empty() { Candidates::NoKey } else { Candidates::Keys(keys) }
    }

    /// Whether every key of `other` (by id and material) is also in this set.
    pub(crate) fn contains_all(&self, other: &KeySet) -> bool {
        other.keys.iter().all(|o| self.keys.iter().any(|k| k.kid == o.kid && k.digest == o.digest && k.alg == o.alg))
    }

    /// Reads a JWKS document (`{"keys": [...]}`). Keys that are not for signatures (`use` other than `sig`,
    /// `key_ops` without `verify`), of an unsupported type or curve, symmetric (`oct`: a JWKS never supplies
    /// HMAC secrets), too weak or malformed are skipped. Fails when the document is not a JWKS or no key is
    /// usable, so a broken answer never replaces a working key set.
    pub(crate) fn from_jwks(doc: &Value) -> Result<(KeySet, usize), &'static str> {
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err("not a JWKS document (no `keys` array)");
        };
        let mut keys = Vec::new();
        let mut skipped = 0;
        for jwk in list.iter().take(MAX_JWKS_KEYS) {
            match parse_jwk(jwk) {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        skipped += list.len().saturating_sub(MAX_JWKS_KEYS);
        if keys.is_empty() {
            return Err("no usable key in the JWKS");
        }
        Ok((KeySet { keys }, skipped))
    }
}

/// Base64url as JWKs use it: without padding, though padded values are tolerated.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn b64_field(jwk: &Value, name: &str) -> Option<Vec<u8>> {
    let text = jwk.get(name)?.as_str()?;
    if text.len() > 2048 {
        return None;
    }
    JWK_B64.decode(text).ok()
}

/// One JWK as a verification key, or `None` to skip it.
fn parse_jwk(jwk: &Value) -> Option<VerifyKey> {
    let obj = jwk.as_object()?;
    if let Some(usage) = obj.get("use")
        && usage.as_str() != Some("sig")
    {
        return None;
    }
    if let Some(ops) = obj.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return None;
    }
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) if kid.len() <= 1024 => Some(kid.clone()),
        Some(_) => return None,
    };
    let public = match (obj.get("kty")?.as_str()?, obj.get("crv").and_then(Value::as_str)) {
        ("RSA", _) => {
            let n = b64_field(jwk, "n")?;
            let e = b64_field(jwk, "e")?;
            PublicKey { kind: KeyKind::Rsa, der: rsa_public_key_der(&n, &e)? }
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (kind, len) = if curve == "P-256" { (KeyKind::EcP256, 32) } else { (KeyKind::EcP384, 48) };
            let x = b64_field(jwk, "x")?;
            let y = b64_field(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey { kind, der: point }
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64_field(jwk, "x")?;
            if x.len() != 32 {
                return None;
            }
            PublicKey { kind: KeyKind::Ed25519, der: x }
        }
        _ => return None,
    };
    let alg = match obj.get("alg") {
        None | Some(Value::Null) => None,
        Some(alg) => {
            let alg = JwtAlgorithm::from_name(alg.as_str()?)?;
            if !public.kind.fits(alg) {
                return None;
            }
            Some(alg)
        }
    };
    Some(VerifyKey::public(kid, &public, alg))
}

// ------------------------------------------------------------------------------------------------------------
// PEM and DER: just enough to read public keys, bounded and without panics.

/// The label and DER bytes of the first PEM block in `text`.
pub(crate) fn pem_block(text: &str) -> Result<(String, Vec<u8>), &'static str> {
    let start = text.find("-----BEGIN ").ok_or("no PEM block (`-----BEGIN ...-----`) found")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("malformed PEM header")?;
    let label = rest[..label_end].trim().to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body.find(&end_marker).ok_or("PEM block without its END line")?;
    let body = &body[..body_end];
    if body.contains(':') {
        return Err("encrypted or annotated PEM is not supported");
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64.as_bytes()).map_err(|_| "invalid base64 in PEM")?;
    Ok((label, der))
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_VERSION: u8 = 0xa0;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A DER reader over a slice.
pub(crate) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// The next element: tag, contents, and the whole encoding.
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let all = self.rest;
        let (&tag, rest) = all.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        let header_len = all.len() - rest.len();
        self.rest = after;
        Some((tag, contents, &all[..header_len + len]))
    }

    /// The contents of the next element, which must have `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents, _) if t == tag => Some(contents),
            _ => None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Reads a public key from PEM: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) or `CERTIFICATE` (X.509; the
/// subject public key).
pub(crate) fn public_key_from_pem(text: &str) -> Result<PublicKey, String> {
    let (label, der) = pem_block(text).map_err(str::to_string)?;
    match label.as_str() {
        "PUBLIC KEY" => spki(&der).map_err(str::to_string),
        "RSA PUBLIC KEY" => {
            let (n, e) = rsa_components(&der).ok_or("invalid PKCS#1 RSA public key")?;
            let der = rsa_public_key_der(n, e).ok_or("RSA keys must have 2048 to 8192 bits")?;
            Ok(PublicKey { kind: KeyKind::Rsa, der })
        }
        "CERTIFICATE" => certificate_spki(&der).ok_or("invalid X.509 certificate")?.map_err(str::to_string),
        label if label.contains("PRIVATE KEY") => {
            Err("this is a private key: give the public key (`openssl pkey -in key.pem -pubout`)".into())
        }
        _ => Err(format!("unsupported PEM block `{label}`: expected `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE`")),
    }
}

/// The SubjectPublicKeyInfo of a certificate, parsed.
fn certificate_spki(der: &[u8]) -> Option<Result<PublicKey, &'static str>> {
    let cert = Der::new(der).expect(TAG_SEQUENCE)?;
    let tbs = Der::new(cert).expect(TAG_SEQUENCE)?;
    let mut fields = Der::new(tbs);
    let (mut tag, _, _) = fields.next()?;
    if tag == TAG_VERSION {
        (tag, _, _) = fields.next()?;
    }
    if tag != TAG_INTEGER {
        return None;
    }
    // signature algorithm, issuer, validity, subject, then the key
    for _ in 0..4 {
        fields.expect(TAG_SEQUENCE)?;
    }
    let (tag, _, whole) = fields.next()?;
    (tag == TAG_SEQUENCE).then(|| spki(whole))
}

/// Parses a DER SubjectPublicKeyInfo.
fn spki(der: &[u8]) -> Result<PublicKey, &'static str> {
    const INVALID: &str = "invalid public key (SubjectPublicKeyInfo)";
    let info = Der::new(der).expect(TAG_SEQUENCE).ok_or(INVALID)?;
    let mut info = Der::new(info);
    let algorithm = info.expect(TAG_SEQUENCE).ok_or(INVALID)?;
    let bits = info.expect(TAG_BIT_STRING).ok_or(INVALID)?;
    let (&unused, key) = bits.split_first().ok_or(INVALID)?;
    if unused != 0 {
        return Err(INVALID);
    }
    let mut algorithm = Der::new(algorithm);
    let oid = algorithm.expect(TAG_OID).ok_or(INVALID)?;
    if oid == OID_RSA {
        let (n, e) = rsa_components(key).ok_or(INVALID)?;
        let der = rsa_public_key_der(n, e).ok_or("RSA keys must have 2048 to 8192 bits")?;
        Ok(PublicKey { kind: KeyKind::Rsa, der })
    } else if oid == OID_EC {
        let curve = algorithm.expect(TAG_OID).ok_or(INVALID)?;
        let (kind, len) = if curve == OID_P256 {
            (KeyKind::EcP256, 65)
        } else if curve == OID_P384 {
            (KeyKind::EcP384, 97)
        } else {
            return Err("unsupported EC curve: only P-256 and P-384");
        };
        if key.len() != len || key[0] != 0x04 {
            return Err("EC public keys must be uncompressed points");
        }
        Ok(PublicKey { kind, der: key.to_vec() })
    } else if oid == OID_ED25519 {
        if key.len() != 32 {
            return Err(INVALID);
        }
        Ok(PublicKey { kind: KeyKind::Ed25519, der: key.to_vec() })
    } else {
        Err("unsupported key type: only RSA, EC (P-256, P-384) and Ed25519")
    }
}

/// `n` and `e` of a PKCS#1 RSAPublicKey.
fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let seq = Der::new(der).expect(TAG_SEQUENCE)?;
    let mut seq = Der::new(seq);
    let n = seq.expect(TAG_INTEGER)?;
    let e = seq.expect(TAG_INTEGER)?;
    seq.is_empty().then_some((n, e))
}

/// A PKCS#1 RSAPublicKey DER from big-endian `n` and `e`, or `None` when the modulus is not 2048 to 8192 bits
/// (ring's bounds) or the exponent is implausible.
pub(crate) fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let first = *n.first()?;
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    if !(2048..=8192).contains(&bits) || e.is_empty() || e.len() > 8 {
        return None;
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_integer(&mut body, n);
    der_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(TAG_SEQUENCE);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    Some(out)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn der_integer(out: &mut Vec<u8>, positive: &[u8]) {
    out.push(TAG_INTEGER);
    let pad = positive.first().is_some_and(|&b| b & 0x80 != 0);
    der_len(out, positive.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(positive);
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The inner private key of a PKCS#8 document is wrapped in an OCTET STRING; exposed for the signer's checks.
pub(crate) fn pkcs8_algorithm(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let info = Der::new(der).expect(TAG_SEQUENCE)?;
    let mut info = Der::new(info);
    info.expect(TAG_INTEGER)?;
    let algorithm = info.expect(TAG_SEQUENCE)?;
    info.expect(TAG_OCTET_STRING)?;
    let mut algorithm = Der::new(algorithm);
    let oid = algorithm.expect(TAG_OID)?;
    let curve = algorithm.expect(TAG_OID);
    Some((oid, curve))
}

/// Names a PKCS#8 private key's type, for the signer's error messages.
pub(crate) fn pkcs8_kind(der: &[u8]) -> Option<KeyKind> {
    let (oid, curve) = pkcs8_algorithm(der)?;
    if oid == OID_RSA {
        Some(KeyKind::Rsa)
    } else if oid == OID_EC {
        match curve? {
            c if c == OID_P256 => Some(KeyKind::EcP256),
            c if c == OID_P384 => Some(KeyKind::EcP384),
            _ => None,
        }
    } else if oid == OID_ED25519 {
        Some(KeyKind::Ed25519)
    } else {
        None
    }
}
