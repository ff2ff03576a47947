//! The user-facing TLS settings of listeners (`tls:`) and upstreams (`tls:`): strict, documented serde types.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TLS termination on a listener: its certificates (chosen by SNI), client certificates (mTLS), versions and
/// session resumption. Certificate and key files are read when the configuration is loaded and again on every
/// reload; connections already open keep the certificate they were served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The certificates this listener serves, at least one. Each client gets the certificate whose names match the
    /// server name it asked for (SNI): an exact name first, then a wildcard (`*.example.com` covers
    /// `api.example.com`, not `example.com` nor `a.b.example.com`). The first certificate is the default, served
    /// to clients that send no server name or one that no certificate names.
    pub certificates: Vec<CertificateConfig>,
    /// Ask clients for a certificate (mutual TLS) and verify it against a CA bundle. The verified certificate's
    /// subject, subject alternative names and SHA-256 fingerprint become the connection's client identity.
    /// Absent: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthConfig>,
    /// The oldest TLS version accepted: `"1.2"` (TLS 1.2 and 1.3) or `"1.3"` (TLS 1.3 only). Older versions are
    /// never accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Let returning clients resume an earlier session (session tickets, and a bounded in-memory session cache
    /// for TLS 1.2 clients without tickets), which skips the certificate exchange and public-key operations.
    /// Ticket keys rotate every 6 hours and are renewed by every reload.
    #[serde(default = "default_true")]
    pub session_resumption: bool,
}

/// A certificate chain and its private key, read from PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate first, then the intermediate certificates that chain it to a trusted root.
    /// A relative path is relative to the configuration file's directory.
    pub cert: String,
    /// PEM file with the unencrypted private key of the certificate: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 RSA
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 EC (`BEGIN EC PRIVATE KEY`). Supported keys: RSA (2048 to 8192 bits),
    /// ECDSA P-256 or P-384, Ed25519. It must match the certificate. May be the same file as `cert`.
    pub key: String,
    /// Server names this certificate answers, exact (`api.example.com`) or wildcard (`*.example.com`). Empty: the
    /// DNS names of the certificate's subject alternative names. A name the certificate does not cover is logged
    /// as a warning, since clients will refuse it. Not allowed for an upstream's client certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Client certificates (mutual TLS) on a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// Whether a client certificate is required (`require`, the default) or only asked for (`request`). Either
    /// way, a certificate that is sent must verify, or the handshake fails.
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// PEM file with the CA certificates that client certificates must chain to. A relative path is relative to
    /// the configuration file's directory.
    pub ca: String,
}

/// Whether a listener requires client certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// The handshake fails unless the client presents a certificate that verifies against the CA bundle.
    #[default]
    Require,
    /// A client may connect without a certificate (it then has no client identity); a certificate it presents
    /// must verify against the CA bundle.
    Request,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246), with forward-secret AEAD cipher suites only.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// The version as written in the configuration (`1.2`, `1.3`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

impl TlsVersion {
    /// The rustls versions from this one up, newest first.
    pub(crate) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &TLS12_AND_13,
            TlsVersion::Tls13 => &TLS13,
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    // YAML reads an unquoted `1.2` as a number, so both the string and the number are accepted.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a TLS version: `1.2` or `1.3`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                match v {
                    "1.2" => Ok(TlsVersion::Tls12),
                    "1.3" => Ok(TlsVersion::Tls13),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                // Exact comparison on purpose: the parser produced these from the literals `1.2` and `1.3`.
                if v == 1.2 {
                    Ok(TlsVersion::Tls12)
                } else if v == 1.3 {
                    Ok(TlsVersion::Tls13)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// TLS from the gateway to an upstream's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file with the CA certificates the endpoints' certificates must chain to. Absent: the operating
    /// system's trusted roots (read once per process). A relative path is relative to the configuration file's
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The server name sent in SNI and checked against the endpoints' certificates. Absent: the endpoint's host;
    /// an IP address is then checked against the certificate's IP address names and no SNI is sent. Set it when
    /// endpoints are addressed by IP but present a certificate for a DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A certificate and key the gateway presents to endpoints that ask for one (upstream mutual TLS). `names`
    /// is not allowed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<CertificateConfig>,
    /// DANGEROUS, FOR TESTS ONLY: accept any certificate from the endpoints, expired, self-signed or for another
    /// name, so anyone on the network path can impersonate the upstream and read or change its traffic. Every
    /// configuration load that sets it logs a warning. Cannot be combined with `ca`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

fn default_true() -> bool {
    true
}

/// Resolves a configured path: absolute as is, relative against `base_dir`.
pub(crate) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }
}

impl ServerTlsConfig {
    /// Every file this configuration reads, resolved against `base_dir` (for a file watcher that reloads when a
    /// certificate is renewed).
    pub fn files(&self, base_dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<&str> = Vec::new();
        for c in &self.certificates {
            paths.extend([c.cert.as_str(), c.key.as_str()]);
        }
        paths.extend(self.client_auth.as_ref().map(|a| a.ca.as_str()));
        unique(base_dir, paths)
    }
}

impl UpstreamTlsConfig {
    /// Every file this configuration reads, resolved against `base_dir`.
    pub fn files(&self, base_dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<&str> = self.ca.iter().map(String::as_str).collect();
        if let Some(c) = &self.client_certificate {
            paths.extend([c.cert.as_str(), c.key.as_str()]);
        }
        unique(base_dir, paths)
    }
}

/// The paths resolved, each once, in first-seen order.
fn unique<'a>(base_dir: &Path, paths: impl IntoIterator<Item = &'a str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let file = resolve(base_dir, path);
        if !files.contains(&file) {
            files.push(file);
        }
    }
    files
}
