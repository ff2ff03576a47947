//! Rate-limit keys: what a request is counted under, built from its parts without allocating (the local store
//! hashes the parts as they are read; the Redis store writes them into its key).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};
use turnpike_core::Identity;
use turnpike_router::Params;

use super::config::{KeyPartConfig, WhenKeyMissing};

/// What a request offers for keys, costs and plans.
pub struct RateLimitInput<'a> {
    /// The method.
    pub method: &'a Method,
    /// The normalized path (what routing matched).
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The params the route's path captured.
    pub params: &'a Params<'a, 'a>,
    /// The route id.
    pub route: &'a str,
    /// The real client address.
    pub client_ip: IpAddr,
    /// The authenticated caller, if any.
    pub identity: Option<&'a Identity>,
}

/// A compiled key part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPart {
    ClientIp,
    Consumer,
    User,
    Route,
    Header(HeaderName),
    Query(Box<str>),
    PathParam(Box<str>),
    Claim(Box<str>),
}

impl KeyPart {
    pub(crate) fn compile(part: &KeyPartConfig) -> Result<Self, String> {
        Ok(match part {
            KeyPartConfig::ClientIp => KeyPart::ClientIp,
            KeyPartConfig::Consumer => KeyPart::Consumer,
            KeyPartConfig::User => KeyPart::User,
            KeyPartConfig::Route => KeyPart::Route,
            KeyPartConfig::Header(name) => KeyPart::Header(
                HeaderName::try_from(name.as_str()).map_err(|_| format!("`{name}` is not a valid header name"))?,
            ),
            KeyPartConfig::Query(name) if !name.is_empty() => KeyPart::Query(name.as_str().into()),
            KeyPartConfig::PathParam(name) if !name.is_empty() => KeyPart::PathParam(name.as_str().into()),
            KeyPartConfig::Claim(name) if !name.is_empty() => KeyPart::Claim(name.as_str().into()),
            _ => return Err("a key part needs a non-empty name".into()),
        })
    }
}

/// Where key bytes go: a hasher (local store) or a string (Redis).
pub(crate) trait KeySink {
    fn part(&mut self, tag: u8, bytes: &[u8]);
}

impl<H: std::hash::Hasher> KeySink for H {
    fn part(&mut self, tag: u8, bytes: &[u8]) {
        self.write_u8(tag);
        self.write_usize(bytes.len());
        self.write(bytes);
    }
}

/// Writes a key for Redis: parts separated by `:`, each `tag=value` with the value percent-escaped where it
/// could be confused with the separators or the hash-tag braces.
pub(crate) struct TextKey<'a>(pub(crate) &'a mut String);

impl KeySink for TextKey<'_> {
    fn part(&mut self, tag: u8, bytes: &[u8]) {
        use std::fmt::Write;
        if !self.0.is_empty() && !self.0.ends_with('{') {
            self.0.push(':');
        }
        self.0.push(tag as char);
        self.0.push('=');
        for &b in bytes {
            if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) {
                self.0.push(b as char);
            } else {
                let _ = write!(self.0, "%{b:02X}");
            }
        }
    }
}

/// A compiled key: its parts and how client addresses are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySpec {
    pub(crate) parts: Vec<KeyPart>,
    pub(crate) v4_prefix: u8,
    pub(crate) v6_prefix: u8,
    pub(crate) when_missing: WhenKeyMissing,
}

/// The key could not be built and the limit refuses such requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MissingKey;

impl KeySpec {
    /// Writes the request's key into `sink`; a missing part falls back to the client address or refuses.
    pub(crate) fn write(&self, input: &RateLimitInput<'_>, sink: &mut impl KeySink) -> Result<(), MissingKey> {
        if self.parts.iter().all(|part| self.present(part, input)) {
            for part in &self.parts {
                self.write_part(part, input, sink);
            }
            return Ok(());
        }
        match self.when_missing {
            WhenKeyMissing::Refuse => Err(MissingKey),
            // A distinct tag: an address counted as a fallback never shares a counter with the real key.
            WhenKeyMissing::ClientIp => {
                self.write_ip(b'f', input.client_ip, sink);
                Ok(())
            }
        }
    }

    fn present(&self, part: &KeyPart, input: &RateLimitInput<'_>) -> bool {
        match part {
            KeyPart::ClientIp | KeyPart::Route => true,
            KeyPart::Consumer => input.identity.is_some_and(|id| id.consumer.is_some()),
            KeyPart::User => input.identity.is_some_and(|id| id.subject.is_some()),
            KeyPart::Header(name) => input.headers.contains_key(name),
            KeyPart::Query(name) => query_param(input.query, name).is_some(),
            KeyPart::PathParam(name) => input.params.get(name).is_some(),
            KeyPart::Claim(name) => claim_text(input.identity, name, &mut [0; 24]).is_some(),
        }
    }

    fn write_part(&self, part: &KeyPart, input: &RateLimitInput<'_>, sink: &mut impl KeySink) {
        match part {
            KeyPart::ClientIp => self.write_ip(b'i', input.client_ip, sink),
            KeyPart::Consumer => {
                if let Some(consumer) = input.identity.and_then(|id| id.consumer.as_ref()) {
                    sink.part(b'c', consumer.id.as_bytes());
                }
            }
            KeyPart::User => {
                if let Some(subject) = input.identity.and_then(|id| id.subject.as_ref()) {
                    sink.part(b'u', subject.as_bytes());
                }
            }
            KeyPart::Route => sink.part(b'r', input.route.as_bytes()),
            KeyPart::Header(name) => {
                // Several values of one header count as their concatenation, so adding a second copy of the
                // header does not give a client a new counter.
                let mut values = input.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(one), None) => sink.part(b'h', one.as_bytes()),
                    _ => {
                        let joined: Vec<u8> = input
                            .headers
                            .get_all(name)
                            .iter()
                            .flat_map(|v| [v.as_bytes(), b","])
                            .flatten()
                            .copied()
                            .collect();
                        sink.part(b'h', &joined);
                    }
                }
            }
            KeyPart::Query(name) => sink.part(b'q', query_param(input.query, name).unwrap_or("").as_bytes()),
            KeyPart::PathParam(name) => sink.part(b'p', input.params.get(name).unwrap_or("").as_bytes()),
            KeyPart::Claim(name) => {
                let mut buf = [0; 24];
                sink.part(b'k', claim_text(input.identity, name, &mut buf).unwrap_or(b""));
            }
        }
    }

    fn write_ip(&self, tag: u8, ip: IpAddr, sink: &mut impl KeySink) {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let masked = mask(&v4.octets(), self.v4_prefix);
                sink.part(tag, &masked[..4]);
            }
            IpAddr::V6(v6) => {
                let masked = mask(&v6.octets(), self.v6_prefix);
                sink.part(tag, &masked);
            }
        }
    }
}

/// The first `prefix` bits of `bytes`, the rest zero.
fn mask<const N: usize>(bytes: &[u8; N], prefix: u8) -> [u8; N] {
    let mut out = *bytes;
    let prefix = usize::from(prefix).min(N * 8);
    for (i, byte) in out.iter_mut().enumerate() {
        let keep = prefix.saturating_sub(i * 8).min(8);
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    out
}

/// The raw value of the first query parameter `name` (as sent: no decoding, so two spellings are two keys).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A claim as key bytes: strings as they are, numbers and booleans in their JSON form (written into `buf`).
fn claim_text<'a>(identity: Option<&'a Identity>, name: &str, buf: &'a mut [u8; 24]) -> Option<&'a [u8]> {
    match identity?.claim(name)? {
        serde_json::Value::String(s) => Some(s.as_bytes()),
        serde_json::Value::Number(n) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            write!(cursor, "{n}").ok()?;
            let len = cursor.position() as usize;
            Some(&buf[..len])
        }
        serde_json::Value::Bool(b) => Some(if *b { b"true" } else { b"false" }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_addresses_to_their_prefix() {
        assert_eq!(mask(&[10, 1, 2, 3], 24), [10, 1, 2, 0]);
        assert_eq!(mask(&[10, 1, 2, 3], 32), [10, 1, 2, 3]);
        assert_eq!(mask(&[255, 255, 255, 255], 20), [255, 255, 240, 0]);
        let v6: std::net::Ipv6Addr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        let masked = std::net::Ipv6Addr::from(mask(&v6.octets(), 64));
        assert_eq!(masked, "2001:db8:1:2::".parse::<std::net::Ipv6Addr>().unwrap());
    }

    #[test]
    fn finds_query_parameters_exactly() {
        assert_eq!(query_param(Some("a=1&key=xyz&b"), "key"), Some("xyz"));
        assert_eq!(query_param(Some("keys=1"), "key"), None);
        assert_eq!(query_param(Some("b"), "b"), Some(""));
        assert_eq!(query_param(None, "b"), None);
    }
}
