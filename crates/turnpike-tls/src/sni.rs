//! Picks a listener's certificate from the server name a client asks for (SNI): exact name, then wildcard, then
//! the default certificate.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by server name. Built once per configuration load; a handshake costs at most two hash lookups.
#[derive(Debug)]
pub(crate) struct SniResolver {
    /// `api.example.com` -> its certificates.
    exact: HashMap<String, Candidates>,
    /// `*.example.com` is stored under `example.com`, the part a wildcard's single label is followed by.
    wildcard: HashMap<String, Candidates>,
    /// The first configured certificate: for clients without SNI or with a name no certificate has.
    default: Arc<CertifiedKey>,
}

/// The certificates that answer one name, in configuration order. Usually one; several when the same name has,
/// say, an ECDSA and an RSA certificate, so clients that cannot verify ECDSA still get a certificate they can.
#[derive(Debug, Default)]
struct Candidates(Vec<Arc<CertifiedKey>>);

impl Candidates {
    fn pick(&self, schemes: &[SignatureScheme]) -> Option<&Arc<CertifiedKey>> {
        match self.0.as_slice() {
            [one] => Some(one),
            many => many.iter().find(|ck| ck.key.choose_scheme(schemes).is_some()).or_else(|| many.first()),
        }
    }

    /// Adds `key` unless a certificate with the same kind of key is already there (the first one wins).
    fn add(&mut self, key: &Arc<CertifiedKey>) -> bool {
        let algorithm = key.key.algorithm();
        if self.0.iter().any(|k| k.key.algorithm() == algorithm) {
            return false;
        }
        self.0.push(Arc::clone(key));
        true
    }
}

impl SniResolver {
    pub(crate) fn new(default: Arc<CertifiedKey>) -> Self {
        SniResolver { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// Registers `key` for `name` (normalized: lowercase, no trailing dot; `*.x` for a wildcard). Returns false
    /// when an earlier certificate with the same kind of key already answers that name.
    pub(crate) fn insert(&mut self, name: &str, key: &Arc<CertifiedKey>) -> bool {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_default().add(key),
            None => self.exact.entry(name.to_owned()).or_default().add(key),
        }
    }

    fn lookup(&self, name: &str, schemes: &[SignatureScheme]) -> Option<&Arc<CertifiedKey>> {
        // rustls lowercases the SNI; a trailing dot is not allowed in SNI but costs nothing to accept.
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(found) = self.exact.get(name).and_then(|c| c.pick(schemes)) {
            return Some(found);
        }
        // A wildcard stands for exactly one label (RFC 6125 §6.4.3, as clients verify it), so the only wildcard
        // that can match is the name with its first label replaced.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).and_then(|c| c.pick(schemes))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = client_hello.server_name().and_then(|name| self.lookup(name, client_hello.signature_schemes()));
        Some(Arc::clone(found.unwrap_or(&self.default)))
    }
}
