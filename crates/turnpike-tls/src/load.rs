//! Reading certificate chains, private keys and CA bundles from PEM files, with errors that name the file and
//! never quote key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::TlsIssue;
use crate::config::{CertificateConfig, resolve};
use crate::identity::{dn_text, rfc3339};

/// A certificate chain with its key, checked to match, and what the logs need to know about its leaf.
#[derive(Debug)]
pub(crate) struct LoadedCert {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) leaf: LeafInfo,
    pub(crate) cert_file: PathBuf,
}

/// What the logs and SNI need from a leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct LeafInfo {
    pub(crate) subject: String,
    /// DNS names from the subject alternative names, lowercased (wildcards kept as `*.x`).
    pub(crate) dns_names: Vec<String>,
    pub(crate) not_before_unix: i64,
    pub(crate) not_after_unix: i64,
    pub(crate) not_after: String,
}

impl LeafInfo {
    fn parse(der: &CertificateDer<'_>) -> Option<LeafInfo> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    dns_names.push(normalize_name(n));
                }
            }
        }
        let validity = cert.validity();
        Some(LeafInfo {
            subject: dn_text(cert.subject()),
            dns_names,
            not_before_unix: validity.not_before.timestamp(),
            not_after_unix: validity.not_after.timestamp(),
            not_after: rfc3339(&validity.not_after),
        })
    }
}

/// Lowercase, without a trailing dot: how names are compared.
pub(crate) fn normalize_name(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// The file's bytes, or an issue at `path` naming the file.
pub(crate) fn read(issue_path: &str, file: &Path) -> Result<Vec<u8>, TlsIssue> {
    std::fs::read(file).map_err(|e| TlsIssue::new(issue_path, format!("cannot read {}: {e}", file.display())))
}

/// Describes a PEM syntax error without quoting the file's content.
fn pem_error(file: &Path, err: &pem::Error) -> String {
    let what = match err {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "it is not valid PEM",
    };
    format!("{} is not a valid PEM file: {what}", file.display())
}

/// Every certificate in a PEM file, in order; an issue when there is none or the PEM is broken.
pub(crate) fn certificates(issue_path: &str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsIssue> {
    let bytes = read(issue_path, file)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(e) => return Err(TlsIssue::new(issue_path, pem_error(file, &e))),
        }
    }
    if certs.is_empty() {
        return Err(TlsIssue::new(
            issue_path,
            format!("no certificate found in {} (expected a PEM `BEGIN CERTIFICATE` block)", file.display()),
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn private_key(issue_path: &str, file: &Path) -> Result<PrivateKeyDer<'static>, TlsIssue> {
    let bytes = read(issue_path, file)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = bytes.windows(ENCRYPTED.len()).any(|w| w == ENCRYPTED);
            let message = if encrypted {
                format!("the private key in {} is encrypted; give the unencrypted key", file.display())
            } else {
                format!(
                    "no private key found in {} (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or \
                     `BEGIN EC PRIVATE KEY` block)",
                    file.display()
                )
            };
            Err(TlsIssue::new(issue_path, message))
        }
        Err(e) => Err(TlsIssue::new(issue_path, pem_error(file, &e))),
    }
}

const ENCRYPTED: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// Loads a certificate chain and its key, checking that they belong together. `prefix` is the issue path of the
/// `CertificateConfig` (`certificates[1]`); issues name its `cert` or `key` field.
pub(crate) fn certified_key(
    prefix: &str,
    config: &CertificateConfig,
    base_dir: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCert, Vec<TlsIssue>> {
    let cert_path = format!("{prefix}.cert");
    let key_path = format!("{prefix}.key");
    let cert_file = resolve(base_dir, &config.cert);
    let key_file = resolve(base_dir, &config.key);
    let chain = certificates(&cert_path, &cert_file);
    let key = private_key(&key_path, &key_file);
    let (chain, key_der) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (chain, key) => return Err(chain.err().into_iter().chain(key.err()).collect()),
    };
    let Some(leaf) = chain.first().and_then(LeafInfo::parse) else {
        return Err(vec![TlsIssue::new(
            &cert_path,
            format!("the first certificate in {} is not a valid X.509 certificate", cert_file.display()),
        )]);
    };
    let signing_key = match provider.key_provider.load_private_key(key_der) {
        Ok(k) => k,
        Err(_) => {
            return Err(vec![TlsIssue::new(
                &key_path,
                format!(
                    "the private key in {} is of an unsupported type or size (supported: RSA of 2048 to 8192 bits, \
                     ECDSA P-256 or P-384, Ed25519)",
                    key_file.display()
                ),
            )]);
        }
    };
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(vec![TlsIssue::new(
                &key_path,
                format!(
                    "the private key in {} does not match the certificate in {}",
                    key_file.display(),
                    cert_file.display()
                ),
            )]);
        }
        Err(e) => {
            return Err(vec![TlsIssue::new(
                &cert_path,
                format!("cannot check the key of the certificate in {}: {e}", cert_file.display()),
            )]);
        }
    }
    Ok(LoadedCert { certified: Arc::new(certified), leaf, cert_file })
}

/// A root store from a PEM bundle of CA certificates.
pub(crate) fn ca_bundle(issue_path: &str, file: &Path) -> Result<RootCertStore, TlsIssue> {
    let certs = certificates(issue_path, file)?;
    let total = certs.len();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsIssue::new(
            issue_path,
            format!("none of the {total} certificates in {} can be used as a trust anchor", file.display()),
        ));
    }
    if ignored > 0 {
        tracing::warn!(file = %file.display(), ignored, "CA bundle: certificates that cannot be parsed are ignored");
    }
    Ok(roots)
}

/// A warning for a leaf that is expired or not valid yet; `None` when it is valid now.
pub(crate) fn validity_warning(issue_path: &str, leaf: &LeafInfo, file: &Path, now_unix: i64) -> Option<TlsIssue> {
    if now_unix > leaf.not_after_unix {
        Some(TlsIssue::new(
            issue_path,
            format!("the certificate in {} ({}) expired at {}", file.display(), leaf.subject, leaf.not_after),
        ))
    } else if now_unix < leaf.not_before_unix {
        Some(TlsIssue::new(
            issue_path,
            format!("the certificate in {} ({}) is not valid yet", file.display(), leaf.subject),
        ))
    } else {
        None
    }
}

/// Seconds since the Unix epoch, by the wall clock (certificate validity is wall-clock time).
pub(crate) fn now_unix() -> i64 {
    x509_parser::time::ASN1Time::now().timestamp()
}
