use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use turnpike_core::{ClientCert, IdentitySource};

use super::*;

const FP: &str = "3f1c5e0b9a7d2e4f6a8b0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f5a6";

fn cert(subject: &str, sans: &[&str]) -> Arc<ClientCert> {
    Arc::new(ClientCert {
        subject: subject.into(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        fingerprint_sha256: FP.into(),
    })
}

fn mtls(config: MtlsConfig) -> MtlsAuth {
    MtlsAuth::compile(&config).unwrap()
}

fn subject_with(source: SubjectSource, cert: &Arc<ClientCert>) -> Result<String, AuthFailure> {
    let auth = mtls(MtlsConfig { subject: source, ..MtlsConfig::default() });
    auth.verify(cert).map(|id| id.subject.as_deref().unwrap_or_default().to_string())
}

#[test]
fn no_certificate_is_absent_and_a_verified_one_is_present() {
    let auth = mtls(MtlsConfig::default());
    let (uri, headers) = (Uri::from_static("/"), HeaderMap::new());
    let mut input = AuthInput { method: &Method::GET, uri: &uri, headers: &headers, client_cert: None };
    assert_eq!(auth.presented(&input), Presented::Absent);
    let c = cert("CN=svc-a,O=Example", &[]);
    input.client_cert = Some(&c);
    assert_eq!(auth.presented(&input), Presented::Present(c.clone()));
    assert_eq!(auth.challenge(), "ClientCertificate");
}

#[test]
fn the_common_name_is_the_default_subject() {
    let auth = mtls(MtlsConfig { roles: vec!["service".into()], ..MtlsConfig::default() });
    let c = cert("CN=svc-a,O=Example", &["DNS:svc-a.internal"]);
    let identity = auth.verify(&c).unwrap();
    assert_eq!(identity.source, IdentitySource::ClientCertificate);
    assert_eq!(identity.subject.as_deref(), Some("svc-a"));
    assert!(identity.has_role("service"));
    assert!(Arc::ptr_eq(identity.client_cert.as_ref().unwrap(), &c));
    assert!(identity.consumer.is_none());
}

#[test]
fn every_subject_choice_picks_its_part_of_the_certificate() {
    let c = cert(
        r"O=Example\, Inc., CN = svc-a ",
        &[
            "DNS:svc-a.internal",
            "DNS:other.internal",
            "URI:spiffe://example.org/ns/prod/sa/orders",
            "email:ops@example.org",
        ],
    );
    assert_eq!(subject_with(SubjectSource::CommonName, &c).unwrap(), "svc-a");
    assert_eq!(subject_with(SubjectSource::Subject, &c).unwrap(), r"O=Example\, Inc., CN = svc-a ");
    assert_eq!(subject_with(SubjectSource::SanDns, &c).unwrap(), "svc-a.internal");
    assert_eq!(subject_with(SubjectSource::SanUri, &c).unwrap(), "spiffe://example.org/ns/prod/sa/orders");
    assert_eq!(subject_with(SubjectSource::SanEmail, &c).unwrap(), "ops@example.org");
    assert_eq!(subject_with(SubjectSource::Fingerprint, &c).unwrap(), FP);

    // Bare SANs are told apart by their form.
    let bare = cert("O=Example", &["10.0.0.1", "::1", "spiffe://example.org/a", "ops@example.org", "svc.internal"]);
    assert_eq!(subject_with(SubjectSource::SanDns, &bare).unwrap(), "svc.internal");
    assert_eq!(subject_with(SubjectSource::SanUri, &bare).unwrap(), "spiffe://example.org/a");
    assert_eq!(subject_with(SubjectSource::SanEmail, &bare).unwrap(), "ops@example.org");
    // What the certificate lacks is a refusal, never an identity without a subject.
    assert!(matches!(subject_with(SubjectSource::CommonName, &bare), Err(AuthFailure::Invalid(_))));
    assert!(matches!(subject_with(SubjectSource::SanUri, &cert("CN=a", &["DNS:a"])), Err(AuthFailure::Invalid(_))));
}

#[test]
fn common_names_are_read_from_rfc_4514_text() {
    assert_eq!(common_name("CN=a\\,b\\2C c,O=x").as_deref(), Some("a,b, c"));
    assert_eq!(common_name("C=US, O=Example, CN=svc-a").as_deref(), Some("svc-a"));
    assert_eq!(common_name("OU=x+CN=multi,O=y").as_deref(), Some("multi"));
    assert_eq!(common_name("cn=caf\\C3\\A9").as_deref(), Some("café"));
    assert_eq!(common_name("2.5.4.3=oid").as_deref(), Some("oid"));
    assert_eq!(common_name("O=no-cn"), None);
    assert_eq!(common_name(""), None);
}

#[test]
fn allow_lists_admit_named_subjects_or_fingerprints() {
    let upper_with_colons: String =
        FP.as_bytes().chunks(2).map(|p| std::str::from_utf8(p).unwrap().to_uppercase()).collect::<Vec<_>>().join(":");
    let by_fingerprint = mtls(MtlsConfig {
        allowed: MtlsAllowed { fingerprints: vec![upper_with_colons], ..Default::default() },
        ..Default::default()
    });
    assert!(by_fingerprint.verify(&cert("CN=anyone", &[])).is_ok());
    let other = Arc::new(ClientCert { fingerprint_sha256: "00".repeat(32), ..(*cert("CN=anyone", &[])).clone() });
    assert_eq!(by_fingerprint.verify(&other).unwrap_err(), AuthFailure::Invalid("certificate not allowed"));

    let by_subject = mtls(MtlsConfig {
        subject: SubjectSource::SanUri,
        allowed: MtlsAllowed {
            subjects: vec!["spiffe://example.org/ns/prod/*".into(), "urn:exact".into()],
            ..Default::default()
        },
        ..Default::default()
    });
    assert!(by_subject.verify(&cert("CN=x", &["URI:spiffe://example.org/ns/prod/sa/orders"])).is_ok());
    assert!(by_subject.verify(&cert("CN=x", &["URI:urn:exact"])).is_ok());
    assert!(by_subject.verify(&cert("CN=x", &["URI:spiffe://example.org/ns/dev/sa/orders"])).is_err());
    assert!(by_subject.verify(&cert("CN=x", &["URI:urn:exact:more"])).is_err());

    // Either list admits.
    let both = mtls(MtlsConfig {
        allowed: MtlsAllowed { subjects: vec!["*.svc".into()], fingerprints: vec![FP.into()] },
        ..Default::default()
    });
    assert!(both.verify(&cert("CN=a.svc", &[])).is_ok());
    assert!(both.verify(&cert("CN=not-listed", &[])).is_ok(), "its fingerprint is listed");
    assert!(both.verify(&other).is_err());
}

#[test]
fn bad_allow_list_entries_are_config_issues() {
    let issues = MtlsAuth::compile(&MtlsConfig {
        allowed: MtlsAllowed { subjects: vec!["a*b*".into(), String::new()], fingerprints: vec!["abc".into()] },
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["allowed.subjects[0]", "allowed.subjects[1]", "allowed.fingerprints[0]"]);
    let config: MtlsConfig = serde_json::from_str(r#"{"subject": "san_uri", "allowed": {"subjects": ["x"]}}"#).unwrap();
    assert_eq!(config.subject, SubjectSource::SanUri);
    assert!(serde_json::from_str::<MtlsConfig>(r#"{"subject": "cn"}"#).is_err());
    assert_eq!(SubjectSource::SanEmail.as_str(), "san_email");
}

#[test]
fn the_config_schema_documents_every_field() {
    let schema = serde_json::to_value(schemars::schema_for!(MtlsConfig)).unwrap();
    crate::auth::api_key::tests::assert_documented(&schema);
}
