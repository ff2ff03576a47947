//! The configuration types as YAML: defaults, strictness, `min_version` spellings, schema descriptions.

use std::path::Path;

use crate::{CertificateConfig, ClientAuthConfig, ClientAuthMode, ServerTlsConfig, TlsVersion, UpstreamTlsConfig};

fn load<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, String> {
    let loaded = turnpike_config::load_str::<T>("tls.yaml", yaml, Path::new("/"), &|_| None);
    if loaded.errors.is_empty() { loaded.value.ok_or_else(|| "no value".into()) } else { Err(loaded.render_errors()) }
}

#[test]
fn listener_tls_with_every_field() {
    let config: ServerTlsConfig = load(
        r"
certificates:
  - cert: certs/example.crt
    key: certs/example.key
    names: [example.com, '*.example.com']
  - {cert: b.crt, key: b.key}
client_auth:
  mode: request
  ca: clients-ca.pem
min_version: 1.3
session_resumption: false
",
    )
    .unwrap();
    assert_eq!(
        config,
        ServerTlsConfig {
            certificates: vec![
                CertificateConfig {
                    cert: "certs/example.crt".into(),
                    key: "certs/example.key".into(),
                    names: vec!["example.com".into(), "*.example.com".into()],
                },
                CertificateConfig { cert: "b.crt".into(), key: "b.key".into(), names: vec![] },
            ],
            client_auth: Some(ClientAuthConfig { mode: ClientAuthMode::Request, ca: "clients-ca.pem".into() }),
            min_version: TlsVersion::Tls13,
            session_resumption: false,
        }
    );
}

#[test]
fn listener_tls_defaults() {
    let config: ServerTlsConfig =
        load("certificates: [{cert: a.crt, key: a.key}]\nclient_auth: {ca: ca.pem}\n").unwrap();
    assert_eq!(config.min_version, TlsVersion::Tls12);
    assert!(config.session_resumption);
    assert_eq!(config.client_auth.unwrap().mode, ClientAuthMode::Require);
}

#[test]
fn min_version_may_be_quoted_or_not() {
    for (text, version) in [("1.2", TlsVersion::Tls12), ("'1.2'", TlsVersion::Tls12), ("\"1.3\"", TlsVersion::Tls13)] {
        let config: ServerTlsConfig = load(&format!("certificates: []\nmin_version: {text}\n")).unwrap();
        assert_eq!(config.min_version, version, "{text}");
    }
    for bad in ["1.1", "'1.0'", "tls1.3", "13"] {
        let err = load::<ServerTlsConfig>(&format!("certificates: []\nmin_version: {bad}\n")).unwrap_err();
        assert!(err.contains("`1.2` or `1.3`"), "{bad}: {err}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let err = load::<ServerTlsConfig>("certificates: []\nciphers: [x]\n").unwrap_err();
    assert!(err.contains("ciphers"), "{err}");
    let err = load::<UpstreamTlsConfig>("insecure_skip_verfy: true\n").unwrap_err();
    assert!(err.contains("insecure_skip_verfy"), "{err}");
    let err = load::<ServerTlsConfig>("certificates: [{cert: a, key: b, name: [x]}]\n").unwrap_err();
    assert!(err.contains("name"), "{err}");
}

#[test]
fn upstream_tls_with_every_field_and_defaults() {
    let config: UpstreamTlsConfig = load(
        r"
ca: internal-ca.pem
server_name: backend.internal
client_certificate: {cert: gw.crt, key: gw.key}
insecure_skip_verify: false
",
    )
    .unwrap();
    assert_eq!(config.ca.as_deref(), Some("internal-ca.pem"));
    assert_eq!(config.server_name.as_deref(), Some("backend.internal"));
    assert_eq!(config.client_certificate.unwrap().key, "gw.key");
    let empty: UpstreamTlsConfig = load("{}\n").unwrap();
    assert_eq!(empty, UpstreamTlsConfig::default());
}

#[test]
fn files_lists_every_file_resolved() {
    let config: ServerTlsConfig =
        load("certificates: [{cert: a.pem, key: a.pem}, {cert: /etc/b.crt, key: b.key}]\nclient_auth: {ca: ca.pem}\n")
            .unwrap();
    let base = Path::new("/conf");
    assert_eq!(
        config.files(base),
        ["/conf/a.pem", "/etc/b.crt", "/conf/b.key", "/conf/ca.pem"].map(std::path::PathBuf::from)
    );
}

#[test]
fn schema_describes_every_field() {
    for schema in [schemars::schema_for!(ServerTlsConfig), schemars::schema_for!(UpstreamTlsConfig)] {
        let value = schema.as_value();
        let defs = value.get("$defs").and_then(|d| d.as_object()).cloned().unwrap_or_default();
        for def in std::iter::once(value).chain(defs.values()) {
            if let Some(props) = def.get("properties").and_then(|p| p.as_object()) {
                for (name, prop) in props {
                    assert!(prop.get("description").is_some(), "{name} has no description");
                }
            }
        }
    }
}
