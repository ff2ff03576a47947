//! A small authoritative DNS server on 127.0.0.1 (UDP) for discovery tests: it answers A and AAAA queries for the
//! names it is given, with a TTL of 0, and NXDOMAIN for the others. Its answers can be changed while it runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

type Records = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// A running DNS server.
pub struct DnsServer {
    addr: SocketAddr,
    records: Records,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// Starts a server with no names.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the DNS server");
        let addr = socket.local_addr().expect("DNS server address");
        let records: Records = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let (r, q) = (records.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
                q.fetch_add(1, Ordering::Relaxed);
                if let Some(answer) = answer(&buf[..n], &r) {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        Self { addr, records, queries, task }
    }

    /// Its address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `name` resolve to `ips` (an empty list: the name exists with no address).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.records.lock().unwrap_or_else(|p| p.into_inner()).insert(name, ips.to_vec());
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

/// The response to one query, or `None` for a packet that is not a query.
fn answer(query: &[u8], records: &Records) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let name = labels.join(".");
    let found = records.lock().unwrap_or_else(|p| p.into_inner()).get(&name).cloned();
    let ips: Vec<IpAddr> = found
        .iter()
        .flatten()
        .copied()
        .filter(|ip| (qtype == 1 && ip.is_ipv4()) || (qtype == 28 && ip.is_ipv6()))
        .collect();
    let rcode = if found.is_some() { 0 } else { 3 };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    out.push(0x84 | (query[2] & 0x01)); // response, authoritative, recursion desired copied
    out.push(0x80 | rcode); // recursion available
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in ips {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name, as a pointer to the question's
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&0u32.to_be_bytes()); // TTL 0
        match ip {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    Some(out)
}
