//! Proxy semantics on headers: hop-by-hop removal, forwarding headers, `Via`, request id and `Host`.
//!
//! Forwarding headers from the client are believed only when the peer is a trusted proxy; otherwise they are
//! replaced, so a client cannot make an upstream (or the gateway's own rate limits) believe it is someone else.

use std::net::IpAddr;

use http::header::{
    CONNECTION, EXPECT, FORWARDED, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use crate::snapshot::ServerSettings;
use turnpike_core::{Peer, RequestId};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const VIA_10: HeaderValue = HeaderValue::from_static("1.0 turnpike");
const VIA_11: HeaderValue = HeaderValue::from_static("1.1 turnpike");
const VIA_2: HeaderValue = HeaderValue::from_static("2 turnpike");
const VIA_3: HeaderValue = HeaderValue::from_static("3 turnpike");

/// The `Via` entry for a message received with `version`.
fn via(version: Version) -> HeaderValue {
    match version {
        Version::HTTP_2 => VIA_2,
        Version::HTTP_3 => VIA_3,
        Version::HTTP_10 | Version::HTTP_09 => VIA_10,
        _ => VIA_11,
    }
}

/// Removes the headers that describe one connection rather than the message (RFC 9110 §7.6.1), including those the
/// `Connection` header names. `TE: trailers` survives (gRPC needs it); `Trailer` is end-to-end and stays.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these: one pass over the names (cheap comparisons, no hashing) decides whether
    // the hashed removals below are needed at all.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(connection) = headers.get(CONNECTION) {
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    if let Some(te) = headers.get(TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(TE);
    }
}

/// Whether `name` is one of the headers [`remove_hop_by_hop`] may remove (`TE` included: its value decides).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Whether `name` is a forwarding header (`X-Forwarded-*`, `Forwarded`).
fn is_forwarding(name: &HeaderName) -> bool {
    name == FORWARDED || name == X_FORWARDED_FOR || name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST
}

/// The real client address: the peer, or — when the peer is a trusted proxy — the rightmost address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_ip(settings: &ServerSettings, peer_ip: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !settings.is_trusted(peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    // Walk the hops from the nearest (rightmost) outwards, across every X-Forwarded-For line.
    let lines: Vec<&HeaderValue> = headers.get_all(X_FORWARDED_FOR).iter().collect();
    for line in lines.iter().rev() {
        let Ok(text) = line.to_str() else { return client };
        for hop in text.rsplit(',') {
            let Some(ip) = parse_hop(hop.trim()) else { return client };
            client = ip;
            if !settings.is_trusted(ip) {
                return client;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
}

/// What request-header preparation needs to know.
pub(crate) struct Forwarding<'a> {
    pub settings: &'a ServerSettings,
    pub peer: &'a Peer,
    pub version: Version,
    pub request_id: &'a RequestId,
}

/// Prepares a request's headers for the upstream (the `Host` header is the caller's, it depends on the upstream).
pub(crate) fn prepare_request(headers: &mut HeaderMap, f: &Forwarding<'_>) {
    remove_hop_by_hop(headers);
    // The gateway answers `Expect: 100-continue` itself (hyper sends 100 when the body is first read) and
    // proxy credentials are for this hop only.
    if headers.keys().any(|n| n == EXPECT || n == PROXY_AUTHORIZATION) {
        headers.remove(EXPECT);
        headers.remove(PROXY_AUTHORIZATION);
    }

    let s = f.settings;
    let trusted = s.is_trusted(f.peer.addr.ip().to_canonical());
    if !trusted && headers.keys().any(is_forwarding) {
        // Forwarding headers from an untrusted peer are claims nobody vouches for: they never reach the upstream,
        // whether or not the gateway writes its own below.
        for name in [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, FORWARDED] {
            headers.remove(name);
        }
    }
    if s.x_forwarded {
        set_x_forwarded_for(headers, trusted, &f.peer.ip_header);
        if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
            headers.insert(X_FORWARDED_PROTO, scheme_value(f.peer.scheme));
        }
        if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
            match headers.get(HOST).cloned() {
                Some(host) => {
                    headers.insert(X_FORWARDED_HOST, host);
                }
                None => {
                    headers.remove(X_FORWARDED_HOST);
                }
            }
        }
    }
    if s.forwarded {
        set_forwarded(headers, trusted, f.peer);
    }
    if s.via {
        headers.append(VIA, via(f.version));
    }
    headers.insert(s.request_id_header.clone(), f.request_id.header_value().clone());
}

/// Prepares an upstream response's headers for the client.
pub(crate) fn prepare_response(
    headers: &mut HeaderMap,
    settings: &ServerSettings,
    upstream_version: Version,
    id: &RequestId,
) {
    remove_hop_by_hop(headers);
    if headers.contains_key(PROXY_AUTHENTICATE) {
        headers.remove(PROXY_AUTHENTICATE);
    }
    if settings.via {
        headers.append(VIA, via(upstream_version));
    }
    if settings.request_id_in_response {
        headers.insert(settings.request_id_header.clone(), id.header_value().clone());
    }
}

fn scheme_value(scheme: turnpike_core::Scheme) -> HeaderValue {
    match scheme {
        turnpike_core::Scheme::Http => HeaderValue::from_static("http"),
        turnpike_core::Scheme::Https => HeaderValue::from_static("https"),
    }
}

fn set_x_forwarded_for(headers: &mut HeaderMap, trusted: bool, peer_ip: &HeaderValue) {
    if trusted && headers.contains_key(X_FORWARDED_FOR) {
        // One line, "existing, peer": some services read only the first X-Forwarded-For line.
        let mut joined = Vec::with_capacity(64);
        for line in headers.get_all(X_FORWARDED_FOR) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(line.as_bytes());
        }
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(peer_ip.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(X_FORWARDED_FOR, value);
            return;
        }
    }
    headers.insert(X_FORWARDED_FOR, peer_ip.clone());
}

fn set_forwarded(headers: &mut HeaderMap, trusted: bool, peer: &Peer) {
    let ip = peer.addr.ip().to_canonical();
    let mut element = match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    element.push_str(";proto=");
    element.push_str(peer.scheme.as_str());
    if let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok())
        && host.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    let value = if trusted && headers.contains_key(FORWARDED) {
        let mut joined = String::new();
        for line in headers.get_all(FORWARDED) {
            joined.push_str(line.to_str().unwrap_or(""));
            joined.push_str(", ");
        }
        joined.push_str(&element);
        joined
    } else {
        element
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(FORWARDED, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::snapshot::TrustIncoming;

    fn settings(trusted: &[&str]) -> ServerSettings {
        ServerSettings {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            request_id_header: HeaderName::from_static("x-request-id"),
            request_id_trust: TrustIncoming::TrustedProxies,
            request_id_in_response: true,
            x_forwarded: true,
            forwarded: true,
            via: true,
            shutdown_timeout: Duration::from_secs(1),
            access_log: false,
            workers: None,
            watch: false,
            max_body_size: 1 << 20,
            identity_headers: turnpike_policy::identity_headers::IdentityHeaders::compile(&Default::default(), &[])
                .unwrap(),
            security_headers: Default::default(),
            ip_filter: None,
            gateway_token: None,
            dns: (Vec::new(), Duration::from_secs(2)),
            admin: None,
            tracing: None,
            log: Default::default(),
            access_log_path: None,
            access_log_buffer: 1 << 20,
        }
    }

    fn peer(ip: &str) -> Peer {
        Peer::new(
            format!("{ip}:40000").parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            Arc::from("l"),
            turnpike_core::Scheme::Http,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("x-end-to-end", "kept"),
        ]);
        remove_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["trailer", "x-end-to-end"]);
    }

    #[test]
    fn keeps_te_trailers() {
        let mut h = headers(&[("te", "trailers")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn untrusted_peer_cannot_spoof_forwarding_headers() {
        let s = settings(&[]);
        let p = peer("203.0.113.9");
        let mut h =
            headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("host", "api.example.com")]);
        let id = RequestId::generate();
        prepare_request(&mut h, &Forwarding { settings: &s, peer: &p, version: Version::HTTP_11, request_id: &id });
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["forwarded"], "for=203.0.113.9;proto=http;host=\"api.example.com\"");
        assert_eq!(h["via"], "1.1 turnpike");
        assert_eq!(client_ip(&s, p.addr.ip(), &headers(&[("x-forwarded-for", "1.2.3.4")])), p.addr.ip());
    }

    #[test]
    fn trusted_peer_appends_and_reveals_the_client() {
        let s = settings(&["10.0.0.0/8"]);
        let p = peer("10.0.0.2");
        let mut h = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.9"), ("x-forwarded-proto", "https")]);
        assert_eq!(client_ip(&s, p.addr.ip(), &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        let id = RequestId::generate();
        prepare_request(&mut h, &Forwarding { settings: &s, peer: &p, version: Version::HTTP_2, request_id: &id });
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.9, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["via"], "2 turnpike");
        assert_eq!(h["x-request-id"], id.as_str());
    }

    #[test]
    fn client_ip_stops_at_garbage_and_handles_ports_and_v6() {
        let s = settings(&["10.0.0.0/8"]);
        let peer_ip: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "not-an-ip, [2001:db8::1]:443")]);
        assert_eq!(client_ip(&s, peer_ip, &h), "2001:db8::1".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(&s, peer_ip, &h), peer_ip);
    }
}
