//! The client identity of a verified certificate: subject DN (RFC 4514 text), subject alternative names and the
//! SHA-256 fingerprint.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls_pki_types::CertificateDer;
use turnpike_core::ClientCert;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::oid_registry::{
    OID_DOMAIN_COMPONENT, OID_PKCS9_EMAIL_ADDRESS, OID_USERID, OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME,
    OID_X509_LOCALITY_NAME, OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_SERIALNUMBER,
    OID_X509_STATE_OR_PROVINCE_NAME, OID_X509_STREET_ADDRESS,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};
use x509_parser::time::ASN1Time;
use x509_parser::x509::AttributeTypeAndValue;

/// What a client certificate says about its holder: the subject distinguished name, the subject alternative names
/// and the SHA-256 fingerprint of the DER encoding.
///
/// Call it on the end-entity certificate of a connection whose certificate the listener verified (see
/// [`peer_client_cert`]); it does no verification itself.
///
/// - `subject` is RFC 4514 text: the last RDN first, `,` between RDNs, `+` inside a multi-valued RDN, the short
///   names `CN`, `L`, `ST`, `O`, `OU`, `C`, `STREET`, `DC`, `UID`, `serialNumber`, `emailAddress` and dotted
///   OIDs for other attributes, special characters escaped with `\`. Control characters are escaped as `\XX`,
///   so the text is safe in a header or a log line. A value that is not a string is `#` and its DER in hex.
/// - `sans` are, in certificate order, `DNS:name`, `URI:uri`, `email:address` and `IP:address` (other kinds
///   are left out, and so is an entry containing a control character).
/// - `fingerprint_sha256` is lowercase hex without separators.
///
/// Returns `None` when the certificate cannot be parsed.
pub fn client_cert_info(end_entity: &CertificateDer<'_>) -> Option<ClientCert> {
    let (_, cert) = X509Certificate::from_der(end_entity).ok()?;
    let mut sans = Vec::new();
    // A certificate with a malformed or duplicated SAN extension gets no identity rather than a partial one.
    if let Some(san) = cert.subject_alternative_name().ok()? {
        for name in &san.value.general_names {
            let text = match name {
                GeneralName::DNSName(n) => format!("DNS:{n}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::RFC822Name(e) => format!("email:{e}"),
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => format!("IP:{ip}"),
                    None => continue,
                },
                _ => continue,
            };
            if text.chars().any(char::is_control) {
                tracing::debug!("client certificate: a subject alternative name with control characters is ignored");
                continue;
            }
            sans.push(text);
        }
    }
    Some(ClientCert { subject: dn_text(cert.subject()), sans, fingerprint_sha256: sha256_hex(end_entity) })
}

/// The client identity of a TLS server connection: [`client_cert_info`] of the certificate the client presented
/// and the listener verified. `None` when the client sent no certificate (or the connection has no client
/// authentication).
pub fn peer_client_cert(conn: &rustls::ServerConnection) -> Option<ClientCert> {
    conn.peer_certificates()?.first().and_then(client_cert_info)
}

/// SHA-256 of `der`, lowercase hex.
pub(crate) fn sha256_hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An IP address from a SAN's 4 or 16 bytes.
pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// A distinguished name as RFC 4514 text (`CN=svc-a,O=Example`).
pub(crate) fn dn_text(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    // RFC 4514 §2.1: the RDNs are written starting with the last element of the sequence.
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(&mut out, atv);
        }
    }
    out
}

fn attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    let oid = atv.attr_type();
    let short = [
        (&OID_X509_COMMON_NAME, "CN"),
        (&OID_X509_LOCALITY_NAME, "L"),
        (&OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (&OID_X509_ORGANIZATION_NAME, "O"),
        (&OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (&OID_X509_COUNTRY_NAME, "C"),
        (&OID_X509_STREET_ADDRESS, "STREET"),
        (&OID_DOMAIN_COMPONENT, "DC"),
        (&OID_USERID, "UID"),
        (&OID_X509_SERIALNUMBER, "serialNumber"),
        (&OID_PKCS9_EMAIL_ADDRESS, "emailAddress"),
    ]
    .into_iter()
    .find(|(known, _)| *known == oid)
    .map(|(_, name)| name);
    match short {
        Some(name) => out.push_str(name),
        None => out.push_str(&oid.to_id_string()),
    }
    out.push('=');
    match string_value(atv.attr_value()) {
        Some(text) => escape_value(out, &text),
        None => {
            out.push('#');
            if let Ok(der) = atv.attr_value().to_der_vec() {
                for b in der {
                    let _ = write!(out, "{b:02x}");
                }
            }
        }
    }
}

/// The text of a directory string; `None` for a value that is not a string type.
fn string_value(value: &Any<'_>) -> Option<String> {
    let data: &[u8] = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // Teletex strings are Latin-1 in practice (as OpenSSL reads them).
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<Option<String>>(),
        _ => None,
    }
}

/// Appends an attribute value escaped per RFC 4514 §2.4, with control characters also escaped.
fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// A certificate time as RFC 3339 UTC text (`2030-01-01T00:00:00Z`).
pub(crate) fn rfc3339(time: &ASN1Time) -> String {
    turnpike_core::time::rfc3339_utc(time.timestamp())
}
