//! DNS discovery: endpoint host names re-resolved on their upstream's `dns_refresh` interval. A change of
//! addresses is applied like a reload (the compile takes the new addresses from the State's `DnsCache`; endpoint
//! state is keyed by address, so pooled connections to addresses that remain are kept). A failed resolution keeps
//! the last addresses: a DNS outage does not empty an upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::time::Instant;

use crate::gateway::{Gateway, GatewayHandle};

/// Name servers (empty: the system's) and the resolution timeout, as in `ServerSettings::dns`.
type DnsSettings = (Vec<SocketAddr>, Duration);

/// The longest pause between two looks at what is due.
const MAX_TICK: Duration = Duration::from_secs(1);
/// The shortest.
const MIN_TICK: Duration = Duration::from_millis(20);

/// A resolver for the configured name servers (empty: the system's).
fn resolver(nameservers: &[SocketAddr], timeout: Duration) -> Option<TokioResolver> {
    let mut builder = if nameservers.is_empty() {
        match Resolver::builder_tokio() {
            Ok(builder) => builder,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the system's DNS configuration; endpoint names are not re-resolved");
                return None;
            }
        }
    } else {
        let group: NameServerConfigGroup =
            nameservers.iter().map(|ns| NameServerConfig::new(*ns, Protocol::Udp)).collect::<Vec<_>>().into();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    // Every A and AAAA record is an endpoint.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // The refresh interval decides when a name is asked again, not the record's TTL.
    options.cache_size = 0;
    Some(builder.build())
}

/// Runs until the gateway is gone.
pub(crate) async fn run(gateway: Weak<Gateway>) {
    // The resolver for the current settings (`None` inside: it could not be built, which was logged once).
    let mut current: Option<(DnsSettings, Option<TokioResolver>)> = None;
    loop {
        let Some(gw) = gateway.upgrade() else { return };
        let snap = gw.snapshot();
        let now = Instant::now();
        let mut tick = MAX_TICK;
        let mut due: Vec<String> = Vec::new();
        for upstream in snap.upstreams.values() {
            if upstream.dns_refresh.is_zero() || upstream.hostnames.is_empty() {
                continue;
            }
            tick = tick.min(upstream.dns_refresh / 2);
            for host in &upstream.hostnames {
                let fresh = gw
                    .state
                    .dns
                    .resolved_at(host)
                    .is_some_and(|at| now.saturating_duration_since(at) < upstream.dns_refresh);
                if !fresh && !due.iter().any(|h| h == host) {
                    due.push(host.to_string());
                }
            }
        }
        if !due.is_empty() {
            if current.as_ref().is_none_or(|(settings, _)| *settings != snap.server.dns) {
                current = Some((snap.server.dns.clone(), resolver(&snap.server.dns.0, snap.server.dns.1)));
            }
            if let Some((_, Some(resolver))) = &current
                && resolve_all(&gw, resolver, &due, snap.server.dns.1).await
            {
                let handle = GatewayHandle::from_gateway(gw.clone());
                match tokio::task::spawn_blocking(move || handle.reload()).await {
                    Ok(Ok(generation)) => tracing::info!(generation, "endpoint addresses changed in DNS; applied"),
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "endpoint addresses changed in DNS; the reload failed")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "endpoint addresses changed in DNS; the reload task failed")
                    }
                }
            }
        }
        drop((gw, snap));
        tokio::time::sleep(tick.max(MIN_TICK)).await;
    }
}

/// Resolves `hosts`, records the answers; returns whether any name's addresses changed.
async fn resolve_all(gw: &Arc<Gateway>, resolver: &TokioResolver, hosts: &[String], timeout: Duration) -> bool {
    let mut changed = false;
    for host in hosts {
        let now = Instant::now();
        let answer =
            tokio::time::timeout(timeout + Duration::from_millis(100), resolver.lookup_ip(host.as_str())).await;
        let ips = match answer {
            Ok(Ok(lookup)) => lookup.iter().collect(),
            // The name is gone: so are its endpoints.
            Ok(Err(err)) if err.is_no_records_found() => Vec::new(),
            Ok(Err(err)) => {
                tracing::warn!(host = %host, error = %err, "endpoint name not resolved; keeping its last addresses");
                continue;
            }
            Err(_) => {
                tracing::warn!(host = %host, "endpoint name not resolved in time; keeping its last addresses");
                continue;
            }
        };
        if gw.state.dns.update(host, ips.clone(), now) {
            tracing::info!(host = %host, addresses = ?ips, "endpoint name resolves to new addresses");
            changed = true;
        }
    }
    changed
}
