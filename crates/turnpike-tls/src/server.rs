//! Building a listener's rustls server configuration: certificates by SNI, client certificate verification,
//! versions, ALPN and session resumption.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::DnsName;

use crate::config::{ClientAuthMode, ServerTlsConfig, resolve};
use crate::load::{self, LoadedCert};
use crate::sni::SniResolver;
use crate::{TlsIssue, provider};

/// Sessions kept for TLS 1.2 clients that resume by session id rather than by ticket. TLS 1.3 and ticket-capable
/// TLS 1.2 clients resume with (stateless) tickets, so this only bounds memory for old clients.
const SESSION_CACHE_SIZE: usize = 4096;

/// A listener's TLS, ready to accept connections, with what the logs should say about its certificates.
///
/// Each configuration load builds a new one; a listener accepts new connections with the current one, and
/// connections already open keep theirs.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls configuration: hand it to `tokio_rustls::TlsAcceptor` (see [`ServerTls::acceptor`]).
    pub config: Arc<ServerConfig>,
    /// The certificates, in configuration order (the first is the default).
    pub certificates: Vec<CertificateSummary>,
    /// Problems that do not stop the listener (expired certificate, a name the certificate does not cover). Each
    /// was also logged at `WARN` when the configuration was built.
    pub warnings: Vec<TlsIssue>,
    /// Every file read, for a watcher that reloads when a certificate is renewed.
    pub files: Vec<PathBuf>,
}

impl ServerTls {
    /// An acceptor for this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// One served certificate, as the logs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The server names it answers (`*.x` for wildcards); empty for a default certificate without names.
    pub names: Vec<String>,
    /// Its subject, as RFC 4514 text.
    pub subject: String,
    /// End of validity, RFC 3339 UTC (`2030-01-01T00:00:00Z`).
    pub not_after: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Whether it had expired when the configuration was built.
    pub expired: bool,
    /// The key type: `RSA`, `ECDSA` or `Ed25519`.
    pub key_type: &'static str,
    /// The certificate file.
    pub file: PathBuf,
}

impl fmt::Display for CertificateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = if self.names.is_empty() { "(default)".to_owned() } else { self.names.join(", ") };
        write!(f, "{names} -> {} ({}, ", self.subject, self.key_type)?;
        if self.expired {
            write!(f, "EXPIRED at {}", self.not_after)?;
        } else {
            write!(f, "expires {}", self.not_after)?;
        }
        write!(f, ", {})", self.file.display())
    }
}

/// Builds a listener's TLS from its configuration, reading the certificate, key and CA files now.
///
/// - Relative paths are relative to `base_dir` (the configuration file's directory).
/// - `alpn` lists the application protocols offered, most preferred first (`h2`, `http/1.1`); a client that
///   offers ALPN with none of them is refused, a client without ALPN is accepted without a protocol.
/// - TLS 1.2 and 1.3, or 1.3 only with `min_version: "1.3"`.
/// - Certificates are picked by SNI: exact name, then a matching wildcard, else the first certificate. Several
///   certificates may answer the same name with different key types (ECDSA and RSA); the first whose key the
///   client can verify is served.
///
/// Every problem found is returned at once, each with its path inside the configuration (`certificates[1].key`)
/// and a message that names the file (unreadable, no certificate, no key, unsupported key, key does not match
/// the certificate, CA bundle unusable). Messages never contain key material. An expired certificate is only a
/// warning (logged at `WARN` and listed in [`ServerTls::warnings`]).
///
/// A reload calls this again: new connections get the new certificates; open connections keep theirs.
pub fn server_config(config: &ServerTlsConfig, base_dir: &Path, alpn: &[&[u8]]) -> Result<ServerTls, Vec<TlsIssue>> {
    let provider = provider();
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    if config.certificates.is_empty() {
        issues.push(TlsIssue::new("certificates", "at least one certificate is required"));
    }

    // (index in `certificates`, the loaded certificate, its configured names)
    let mut loaded: Vec<(usize, LoadedCert, Vec<String>)> = Vec::new();
    for (i, cert) in config.certificates.iter().enumerate() {
        let prefix = format!("certificates[{i}]");
        let names = configured_names(&prefix, &cert.names, &mut issues);
        match load::certified_key(&prefix, cert, base_dir, &provider) {
            Ok(l) => loaded.push((i, l, names)),
            Err(mut e) => issues.append(&mut e),
        }
    }

    let now = load::now_unix();
    let mut summaries = Vec::new();
    let mut resolver: Option<SniResolver> = None;
    for (i, cert, configured) in &loaded {
        let i = *i;
        let prefix = format!("certificates[{i}]");
        let names = if configured.is_empty() { cert.leaf.dns_names.clone() } else { configured.clone() };
        for name in configured {
            if !covers(&cert.leaf.dns_names, name) {
                warnings.push(TlsIssue::new(
                    format!("{prefix}.names"),
                    format!(
                        "the certificate in {} does not cover `{name}` (its DNS names: {}); clients will refuse it",
                        cert.cert_file.display(),
                        list_or_none(&cert.leaf.dns_names)
                    ),
                ));
            }
        }
        if names.is_empty() && i > 0 {
            issues.push(TlsIssue::new(
                format!("{prefix}.names"),
                format!(
                    "the certificate in {} has no DNS names and `names` is not set, so no client could get it; list \
                     the server names it answers, or make it the first (default) certificate",
                    cert.cert_file.display()
                ),
            ));
        }
        if let Some(w) = load::validity_warning(&format!("{prefix}.cert"), &cert.leaf, &cert.cert_file, now) {
            warnings.push(w);
        }
        let r = resolver.get_or_insert_with(|| SniResolver::new(Arc::clone(&cert.certified)));
        for name in &names {
            if !r.insert(name, &cert.certified) {
                tracing::debug!(name, certificate = i, "an earlier certificate of the same key type answers this name");
            }
        }
        summaries.push(summary(cert, names, now));
    }

    let verifier = match &config.client_auth {
        None => Some(WebPkiClientVerifier::no_client_auth()),
        Some(auth) => client_verifier(auth.mode, &resolve(base_dir, &auth.ca), &provider, &mut issues),
    };

    let (Some(resolver), Some(verifier), true) = (resolver, verifier, issues.is_empty()) else {
        return Err(issues);
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(config.min_version.versions())
        .map_err(|e| vec![TlsIssue::new("min_version", format!("unsupported TLS versions: {e}"))])?;
    let mut server = builder.with_client_cert_verifier(verifier).with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if config.session_resumption {
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        server.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| vec![TlsIssue::new("session_resumption", format!("cannot create session tickets: {e}"))])?;
    } else {
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }

    for w in &warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    Ok(ServerTls { config: Arc::new(server), certificates: summaries, warnings, files: config.files(base_dir) })
}

fn client_verifier(
    mode: ClientAuthMode,
    ca_file: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    issues: &mut Vec<TlsIssue>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let roots = match load::ca_bundle("client_auth.ca", ca_file) {
        Ok(r) => r,
        Err(e) => {
            issues.push(e);
            return None;
        }
    };
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = match mode {
        ClientAuthMode::Require => builder,
        ClientAuthMode::Request => builder.allow_unauthenticated(),
    };
    match builder.build() {
        Ok(v) => Some(v),
        Err(e) => {
            issues
                .push(TlsIssue::new("client_auth.ca", format!("cannot use {} as a CA bundle: {e}", ca_file.display())));
            None
        }
    }
}

/// Validates and normalizes the configured `names`; pushes an issue per bad name.
fn configured_names(prefix: &str, names: &[String], issues: &mut Vec<TlsIssue>) -> Vec<String> {
    let mut out = Vec::new();
    for (j, raw) in names.iter().enumerate() {
        let name = load::normalize_name(raw);
        let host = name.strip_prefix("*.").unwrap_or(&name);
        let problem = if host.parse::<std::net::IpAddr>().is_ok() {
            Some(
                "an IP address is never sent as a server name (SNI); a certificate for an IP address can only be \
                  the default (first) certificate",
            )
        } else if host.contains('*') {
            Some("a wildcard must be a whole first label, as in `*.example.com`")
        } else if DnsName::try_from(host).is_err() {
            Some("not a valid DNS name")
        } else {
            None
        };
        match problem {
            Some(p) => issues.push(TlsIssue::new(format!("{prefix}.names[{j}]"), format!("`{raw}`: {p}"))),
            None if !out.contains(&name) => out.push(name),
            None => {}
        }
    }
    out
}

/// Whether a certificate with `dns_names` is valid for `name` (exact, or a wildcard for its first label).
fn covers(dns_names: &[String], name: &str) -> bool {
    dns_names.iter().any(|san| {
        san == name
            || match (san.strip_prefix("*."), name.split_once('.')) {
                (Some(parent), Some((label, rest))) => parent == rest && label != "*",
                _ => false,
            }
    })
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

fn summary(cert: &LoadedCert, names: Vec<String>, now: i64) -> CertificateSummary {
    CertificateSummary {
        names,
        subject: cert.leaf.subject.clone(),
        not_after: cert.leaf.not_after.clone(),
        not_after_unix: cert.leaf.not_after_unix,
        expired: now > cert.leaf.not_after_unix,
        key_type: key_type(&cert.certified),
        file: cert.cert_file.clone(),
    }
}

fn key_type(key: &CertifiedKey) -> &'static str {
    match key.key.algorithm() {
        rustls::SignatureAlgorithm::RSA => "RSA",
        rustls::SignatureAlgorithm::ECDSA => "ECDSA",
        rustls::SignatureAlgorithm::ED25519 => "Ed25519",
        _ => "other",
    }
}
