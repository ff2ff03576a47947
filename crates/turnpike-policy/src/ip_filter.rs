//! IP allow and deny lists, on the real client address (the peer, or what a trusted proxy reported).

use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigIssue;

/// Which client addresses may use a route. `deny` is checked first and always wins; then, if `allow` is not
/// empty, the address must be in it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IpFilterConfig {
    /// Addresses or CIDR blocks (IPv4 or IPv6) allowed; empty: every address not denied.
    pub allow: Vec<String>,
    /// Addresses or CIDR blocks refused (403).
    pub deny: Vec<String>,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpFilter {
    /// Compiles `config`; issue paths are `allow[i]` / `deny[i]`.
    pub fn compile(config: &IpFilterConfig) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut parse = |list: &[String], name: &str| {
            let mut nets = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match parse_net(text) {
                    Some(net) => nets.push(net),
                    None => issues.push(ConfigIssue::new(
                        format!("{name}[{i}]"),
                        format!("`{text}` is not an IP address or CIDR block"),
                    )),
                }
            }
            nets
        };
        let allow = parse(&config.allow, "allow");
        let deny = parse(&config.deny, "deny");
        if issues.is_empty() { Ok(Self { allow, deny }) } else { Err(issues) }
    }

    /// Whether `ip` may pass. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> IpFilter {
        IpFilter::compile(&IpFilterConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = filter(&["10.0.0.0/8"], &["10.1.2.3"]);
        assert!(f.allows("10.9.9.9".parse().unwrap()));
        assert!(!f.allows("10.1.2.3".parse().unwrap()));
        assert!(!f.allows("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let f = filter(&["2001:db8::/32", "127.0.0.1"], &[]);
        assert!(f.allows("2001:db8::1".parse().unwrap()));
        assert!(!f.allows("2001:db9::1".parse().unwrap()));
        assert!(f.allows("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn empty_allow_list_allows_all_but_denied() {
        let f = filter(&[], &["203.0.113.0/24"]);
        assert!(f.allows("198.51.100.1".parse().unwrap()));
        assert!(!f.allows("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_reported_with_their_index() {
        let err = IpFilter::compile(&IpFilterConfig { allow: vec!["10.0.0.0/8".into(), "nope".into()], deny: vec![] })
            .unwrap_err();
        assert_eq!(err[0].path, "allow[1]");
    }
}
