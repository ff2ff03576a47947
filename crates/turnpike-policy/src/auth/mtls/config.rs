//! The user-facing configuration of client certificate authentication.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Authentication by the client certificate the listener verified (the listener's `client_auth` decides which
/// CAs are trusted; this decides what of the certificate becomes the identity and which certificates are let in).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsConfig {
    /// What of the certificate becomes the identity's subject (`X-User-Id`).
    pub subject: SubjectSource,
    /// Which certificates are accepted. Empty lists: any certificate the listener verified.
    pub allowed: MtlsAllowed,
    /// Roles granted to every caller authenticated this way.
    pub roles: Vec<String>,
}

/// The part of a certificate that names the caller.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubjectSource {
    /// The common name (`CN`) of the subject.
    #[default]
    CommonName,
    /// The whole subject distinguished name (`CN=svc-a,O=Example`).
    Subject,
    /// The first DNS subject alternative name.
    SanDns,
    /// The first URI subject alternative name (a SPIFFE id, `spiffe://example.org/ns/prod/sa/orders`).
    SanUri,
    /// The first email subject alternative name.
    SanEmail,
    /// The SHA-256 fingerprint of the certificate, lowercase hex.
    Fingerprint,
}

impl SubjectSource {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectSource::CommonName => "common_name",
            SubjectSource::Subject => "subject",
            SubjectSource::SanDns => "san_dns",
            SubjectSource::SanUri => "san_uri",
            SubjectSource::SanEmail => "san_email",
            SubjectSource::Fingerprint => "fingerprint",
        }
    }
}

/// Allow-lists of certificates. A certificate is accepted when either list names it; with both lists empty every
/// certificate the listener verified is.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsAllowed {
    /// Accepted subjects, compared with what `subject` picks (the common name by default). One `*` matches any
    /// text (`spiffe://example.org/ns/prod/*`, `*.svc.cluster.local`).
    pub subjects: Vec<String>,
    /// Accepted SHA-256 certificate fingerprints: 64 hexadecimal digits, either case, `:` separators allowed.
    pub fingerprints: Vec<String>,
}
