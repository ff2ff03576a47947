//! Building the rustls client configuration for TLS to upstreams: trusted roots, server name, client certificate,
//! and the explicitly dangerous `insecure_skip_verify`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{TlsVersion, UpstreamTlsConfig, resolve};
use crate::load;
use crate::{TlsIssue, provider};

/// Builds the TLS client configuration for an upstream, reading its CA and client certificate files now.
///
/// - Trust: the `ca` bundle, or the operating system's roots (loaded once per process, then shared).
/// - TLS 1.2 and 1.3; `alpn` is offered as given (`h2`, `http/1.1`; empty for none).
/// - Sessions are cached per configuration, so later connections to the same server resume.
/// - `client_certificate` is presented to endpoints that ask for one.
/// - `insecure_skip_verify` accepts any certificate (the handshake signatures are still checked, so the peer
///   must hold the key of the certificate it sent), and logs a `WARN` every time a configuration is built.
///
/// Every problem is returned at once, each with its path (`client_certificate.key`, `ca`, `server_name`).
/// The server name of each connection comes from [`server_name`].
pub fn client_config(
    config: &UpstreamTlsConfig,
    base_dir: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Vec<TlsIssue>> {
    let provider = provider();
    let mut issues = Vec::new();

    if let Some(name) = &config.server_name
        && let Err(message) = parse_server_name(name)
    {
        issues.push(TlsIssue::new("server_name", message));
    }

    let roots = if config.insecure_skip_verify {
        if config.ca.is_some() {
            issues.push(TlsIssue::new(
                "insecure_skip_verify",
                "`ca` and `insecure_skip_verify` cannot both be set: with `insecure_skip_verify` the CA is not used",
            ));
        }
        None
    } else {
        let roots = match &config.ca {
            Some(ca) => load::ca_bundle("ca", &resolve(base_dir, ca)).map(Arc::new),
            None => system_roots().map_err(|message| TlsIssue::new("ca", message)),
        };
        match roots {
            Ok(r) => Some(r),
            Err(e) => {
                issues.push(e);
                None
            }
        }
    };

    let mut client_cert = None;
    if let Some(cert) = &config.client_certificate {
        if !cert.names.is_empty() {
            issues.push(TlsIssue::new(
                "client_certificate.names",
                "`names` is not allowed for a client certificate (it only selects listener certificates)",
            ));
        }
        match load::certified_key("client_certificate", cert, base_dir, &provider) {
            Ok(loaded) => {
                if let Some(w) =
                    load::validity_warning("client_certificate.cert", &loaded.leaf, &loaded.cert_file, load::now_unix())
                {
                    tracing::warn!(path = %w.path, "{}", w.message);
                }
                client_cert = Some(loaded.certified);
            }
            Err(mut e) => issues.append(&mut e),
        }
    }

    if !issues.is_empty() {
        return Err(issues);
    }
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(TlsVersion::Tls12.versions())
        .map_err(|e| vec![TlsIssue::new("", format!("unsupported TLS versions: {e}"))])?;
    let builder = match roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => {
            tracing::warn!(
                server_name = config.server_name.as_deref().unwrap_or("(endpoint host)"),
                "upstream TLS: insecure_skip_verify is set, so ANY certificate is accepted and anyone on the network \
                 path can impersonate this upstream; use it only in tests"
            );
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            }))
        }
    };
    let mut client = match client_cert {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    };
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(client))
}

/// The server name for a connection to an endpoint: `server_name` when configured, else the endpoint's host.
///
/// `endpoint_host` is the host without the port (`api.internal`, `10.0.0.7`, `::1` or `[::1]`). A DNS name is
/// sent as SNI and verified against the certificate's DNS names; an IP address is verified against its IP
/// address names (and no SNI is sent). Fails when the name is neither a valid DNS name nor an IP address.
pub fn server_name(config: &UpstreamTlsConfig, endpoint_host: &str) -> Result<ServerName<'static>, TlsIssue> {
    match &config.server_name {
        Some(name) => parse_server_name(name).map_err(|m| TlsIssue::new("server_name", m)),
        None => parse_server_name(endpoint_host).map_err(|m| {
            TlsIssue::new("server_name", format!("{m}; set `server_name` to the name in the endpoint's certificate"))
        }),
    }
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, String> {
    let host = name.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(name);
    let host = host.strip_suffix('.').unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|_| format!("`{name}` is not a valid DNS name or IP address"))
}

/// The operating system's trusted roots, read on first use and shared by every configuration afterwards (so a
/// reload does not re-read the system store).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS.get_or_init(load_system_roots).clone()
}

fn load_system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's trusted root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no trusted root certificates found in the operating system's store (install the CA \
                    certificates package, set SSL_CERT_FILE, or give a `ca` file)"
            .to_owned());
    }
    tracing::debug!(added, ignored, "loaded the system's trusted root certificates");
    Ok(Arc::new(roots))
}

/// `insecure_skip_verify`: accepts any certificate chain for any name, but still checks that the handshake is
/// signed by the key of the certificate presented (with the provider's algorithms), so the connection is at
/// least bound to that certificate.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
