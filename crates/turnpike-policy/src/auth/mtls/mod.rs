//! Client certificate authentication (mTLS): the certificate the listener verified becomes the identity; its common
//! name, subject, a subject alternative name or its fingerprint names the caller, optionally checked against
//! allow-lists.

mod config;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use turnpike_core::{ClientCert, Identity, IdentitySource};

pub use config::{MtlsAllowed, MtlsConfig, SubjectSource};

use super::api_key::parse_hex_digest;
use super::{AuthFailure, AuthInput, Presented};
use crate::ConfigIssue;

/// An allowed subject: exact, or with one `*` standing for any text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl Pattern {
    fn parse(text: &str) -> Option<Self> {
        match text.split_once('*') {
            None => Some(Pattern::Exact(text.to_string())),
            Some((_, rest)) if rest.contains('*') => None,
            Some((prefix, suffix)) => Some(Pattern::Wildcard { prefix: prefix.into(), suffix: suffix.into() }),
        }
    }

    fn matches(&self, subject: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == subject,
            Pattern::Wildcard { prefix, suffix } => {
                subject.len() >= prefix.len() + suffix.len() && subject.starts_with(prefix) && subject.ends_with(suffix)
            }
        }
    }
}

/// The compiled `mtls` authentication of a route.
#[derive(Debug)]
pub struct MtlsAuth {
    subject: SubjectSource,
    subjects: Vec<Pattern>,
    fingerprints: Vec<[u8; 32]>,
    roles: Vec<Arc<str>>,
}

impl MtlsAuth {
    /// Compiles `config`. Issue paths: `allowed.subjects[i]`, `allowed.fingerprints[i]`.
    pub fn compile(config: &MtlsConfig) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut subjects = Vec::new();
        for (i, text) in config.allowed.subjects.iter().enumerate() {
            match Pattern::parse(text) {
                Some(_) if text.is_empty() => {
                    issues.push(ConfigIssue::new(format!("allowed.subjects[{i}]"), "the subject is empty"));
                }
                Some(pattern) => subjects.push(pattern),
                None => issues.push(ConfigIssue::new(format!("allowed.subjects[{i}]"), "use at most one `*`")),
            }
        }
        let mut fingerprints = Vec::new();
        for (i, text) in config.allowed.fingerprints.iter().enumerate() {
            match parse_hex_digest(text) {
                Some(digest) => fingerprints.push(digest),
                None => issues.push(ConfigIssue::new(
                    format!("allowed.fingerprints[{i}]"),
                    "a fingerprint is the SHA-256 of the certificate: 64 hexadecimal digits, `:` separators allowed",
                )),
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            subject: config.subject,
            subjects,
            fingerprints,
            roles: config.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
        })
    }

    /// The client certificate, if the listener verified one.
    pub fn presented(&self, input: &AuthInput<'_>) -> Presented<Arc<ClientCert>> {
        match input.client_cert {
            Some(cert) => Presented::Present(cert.clone()),
            None => Presented::Absent,
        }
    }

    /// The caller's identity: `Invalid` when the certificate has no value of the configured kind or no
    /// allow-list names it.
    pub fn verify(&self, cert: &Arc<ClientCert>) -> Result<Arc<Identity>, AuthFailure> {
        let Some(subject) = self.subject_of(cert) else {
            return Err(AuthFailure::Invalid(match self.subject {
                SubjectSource::CommonName => "certificate without a common name",
                SubjectSource::SanDns => "certificate without a DNS name",
                SubjectSource::SanUri => "certificate without a URI name",
                SubjectSource::SanEmail => "certificate without an email name",
                SubjectSource::Subject | SubjectSource::Fingerprint => "certificate without a subject",
            }));
        };
        if !self.allowed(cert, &subject) {
            return Err(AuthFailure::Invalid("certificate not allowed"));
        }
        let mut identity = Identity::new(IdentitySource::ClientCertificate, Some(Arc::from(subject)));
        identity.roles = self.roles.clone();
        identity.client_cert = Some(cert.clone());
        Ok(Arc::new(identity))
    }

    fn subject_of(&self, cert: &ClientCert) -> Option<String> {
        let value = match self.subject {
            SubjectSource::CommonName => common_name(&cert.subject),
            SubjectSource::Subject => Some(cert.subject.clone()),
            SubjectSource::SanDns => first_san(cert, SanKind::Dns),
            SubjectSource::SanUri => first_san(cert, SanKind::Uri),
            SubjectSource::SanEmail => first_san(cert, SanKind::Email),
            SubjectSource::Fingerprint => Some(cert.fingerprint_sha256.to_ascii_lowercase()),
        };
        value.filter(|v| !v.is_empty())
    }

    fn allowed(&self, cert: &ClientCert, subject: &str) -> bool {
        if self.subjects.is_empty() && self.fingerprints.is_empty() {
            return true;
        }
        if self.subjects.iter().any(|p| p.matches(subject)) {
            return true;
        }
        parse_hex_digest(&cert.fingerprint_sha256).is_some_and(|fp| self.fingerprints.contains(&fp))
    }

    /// The `WWW-Authenticate` scheme of a refusal (there is no standard one for client certificates).
    pub fn challenge(&self) -> &'static str {
        "ClientCertificate"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SanKind {
    Dns,
    Uri,
    Email,
    Ip,
}

/// The kind and value of a subject alternative name as [`ClientCert::sans`] writes it: with an OpenSSL-style
/// prefix (`DNS:`, `URI:`, `email:`, `IP Address:`) or bare, in which case the form tells (an IP address, a URI has
/// a `scheme:`, an email an `@`, anything else is a DNS name).
fn classify(san: &str) -> (SanKind, &str) {
    const PREFIXES: [(&str, SanKind); 6] = [
        ("dns:", SanKind::Dns),
        ("uri:", SanKind::Uri),
        ("email:", SanKind::Email),
        ("ip address:", SanKind::Ip),
        ("ip:", SanKind::Ip),
        ("rfc822:", SanKind::Email),
    ];
    for (prefix, kind) in PREFIXES {
        if san.len() > prefix.len()
            && san.is_char_boundary(prefix.len())
            && san[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return (kind, san[prefix.len()..].trim());
        }
    }
    if san.parse::<IpAddr>().is_ok() {
        (SanKind::Ip, san)
    } else if san.contains(':') {
        (SanKind::Uri, san)
    } else if san.contains('@') {
        (SanKind::Email, san)
    } else {
        (SanKind::Dns, san)
    }
}

fn first_san(cert: &ClientCert, kind: SanKind) -> Option<String> {
    cert.sans.iter().map(|s| classify(s)).find(|(k, _)| *k == kind).map(|(_, v)| v.to_string())
}

/// The first `CN` of a distinguished name written as RFC 4514 text (`CN=svc-a,O=Example`; `,`, `;` and `+`
/// separators, spaces around them, and backslash escapes, `\,` as well as `\2C`, are understood).
fn common_name(dn: &str) -> Option<String> {
    let bytes = dn.as_bytes();
    let mut attribute: Vec<u8> = Vec::new();
    let mut i = 0;
    loop {
        let at_end = i >= bytes.len();
        match if at_end { b',' } else { bytes[i] } {
            b'\\' if i + 1 < bytes.len() => {
                let pair = bytes
                    .get(i + 1..i + 3)
                    .filter(|p| p.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|p| std::str::from_utf8(p).ok());
                match pair.and_then(|p| u8::from_str_radix(p, 16).ok()) {
                    Some(byte) => {
                        attribute.push(byte);
                        i += 3;
                    }
                    None => {
                        attribute.push(bytes[i + 1]);
                        i += 2;
                    }
                }
                continue;
            }
            b',' | b';' | b'+' => {
                let text = String::from_utf8_lossy(&attribute);
                if let Some((kind, value)) = text.split_once('=')
                    && (kind.trim().eq_ignore_ascii_case("cn") || kind.trim() == "2.5.4.3")
                {
                    return Some(value.trim().to_string());
                }
                attribute.clear();
                if at_end {
                    return None;
                }
            }
            other => attribute.push(other),
        }
        i += 1;
    }
}
