//! Where the data path sends a packet a network NIC sends, worked out from
//! the definitions and the NICs on this host (no kernel state): what
//! `hookctl trace` tells besides the firewall's verdict. It follows the
//! decisions of `bpf/c/lib/l2net.h`: the sender's network first (its
//! gateways, its NICs), then the tenant's routing domain (a NIC of another
//! of its networks, a subnet of one with no NIC here), then the tenant's
//! namespace.

use crate::network::Network;
use ipnet::IpNet;
use std::net::IpAddr;

/// A NIC on one of hookd's networks on this host.
#[derive(Debug, Clone, Copy)]
pub struct NetNic<'a> {
    pub domain: &'a str,
    pub mac: &'a str,
    pub network: &'a str,
    pub addresses: &'a [IpNet],
}

/// The data path's decision for a packet to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision<'a> {
    /// The network's gateway: echo requests are answered, nothing else.
    Gateway { echo: bool },
    /// Another NIC of the sender's network: redirected to its tap.
    Switched { domain: &'a str, mac: &'a str },
    /// A NIC of another network of the tenant: routed to its tap.
    Routed {
        domain: &'a str,
        mac: &'a str,
        network: &'a str,
    },
    /// Outside the tenant's subnets: to its namespace.
    TenantNamespace { tenant: &'a str },
    /// Dropped, and why.
    Dropped { reason: &'static str, why: String },
}

fn holds(n: &NetNic, addr: IpAddr) -> bool {
    n.addresses
        .iter()
        .any(|p| p.prefix_len() == p.max_prefix_len() && p.addr() == addr)
}

/// The decision for a packet from `sender` (its MAC) on `from` to `dst`;
/// `echo`: it is an ICMP or ICMPv6 echo request. `networks` are all
/// definitions, `nics` the network NICs on this host, `namespaces`:
/// whether tenants have namespaces (hookd.toml `tenant_namespaces`).
pub fn decide<'a>(
    from: &'a Network,
    sender: &str,
    dst: IpAddr,
    echo: bool,
    networks: &'a [&'a Network],
    nics: &[NetNic<'a>],
    namespaces: bool,
) -> RouteDecision<'a> {
    if from.subnets.iter().any(|s| s.gateway == dst) {
        return RouteDecision::Gateway { echo };
    }
    let here = |n: &&NetNic| n.mac != sender && holds(n, dst);
    if let Some(n) = nics.iter().filter(|n| n.network == from.name).find(here) {
        return RouteDecision::Switched {
            domain: n.domain,
            mac: n.mac,
        };
    }
    if from.subnet_of(dst).is_some() {
        return RouteDecision::Dropped {
            reason: "unknown_unicast",
            why: format!(
                "no NIC of network {} on this host holds {dst}: its ARP or neighbour solicitation goes unanswered",
                from.name
            ),
        };
    }
    let tenant_nets: Vec<&Network> = networks
        .iter()
        .copied()
        .filter(|n| n.tenant == from.tenant && n.name != from.name)
        .collect();
    if let Some(n) = nics
        .iter()
        .filter(|n| tenant_nets.iter().any(|t| t.name == n.network))
        .find(here)
    {
        return RouteDecision::Routed {
            domain: n.domain,
            mac: n.mac,
            network: n.network,
        };
    }
    if let Some(net) = tenant_nets
        .iter()
        .find(|t| t.subnet_of(dst).is_some() && nics.iter().any(|n| n.network == t.name))
    {
        return RouteDecision::Dropped {
            reason: "no_route",
            why: format!(
                "{dst} is in network {}'s subnet, and no NIC of it on this host holds it",
                net.name
            ),
        };
    }
    if namespaces {
        RouteDecision::TenantNamespace {
            tenant: &from.tenant,
        }
    } else {
        RouteDecision::Dropped {
            reason: "no_route",
            why: format!(
                "{dst} is outside tenant {}'s networks and tenant namespaces are off",
                from.tenant
            ),
        }
    }
}

impl std::fmt::Display for RouteDecision<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteDecision::Gateway { echo: true } => {
                write!(
                    f,
                    "to the network's gateway, which answers the echo request at the tap"
                )
            }
            RouteDecision::Gateway { echo: false } => write!(
                f,
                "to the network's gateway, which answers only echo requests: dropped (no_route)"
            ),
            RouteDecision::Switched { domain, mac } => {
                write!(f, "switched to {domain} ({mac}) on the same network")
            }
            RouteDecision::Routed {
                domain,
                mac,
                network,
            } => write!(f, "routed to {domain} ({mac}) on network {network}"),
            RouteDecision::TenantNamespace { tenant } => write!(
                f,
                "routed out to tenant {tenant}'s namespace hookd-{tenant}, whose routes decide"
            ),
            RouteDecision::Dropped { reason, why } => write!(f, "dropped ({reason}): {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::parse_document;

    fn net(name: &str, tenant: &str, vni: u32, prefix: &str, gw: &str) -> Network {
        parse_document(&format!(
            "<network xmlns='urn:hookd:network:1' name='{name}' tenant='{tenant}' vni='{vni}'>\
             <subnet prefix='{prefix}' gateway='{gw}'/></network>"
        ))
        .unwrap()
    }

    #[test]
    fn decisions_follow_the_data_path() {
        let blue = net("blue", "acme", 1, "198.51.100.0/24", "198.51.100.1");
        let green = net("green", "acme", 2, "203.0.113.0/24", "203.0.113.1");
        let far = net("far", "acme", 4, "192.0.2.0/25", "192.0.2.1");
        let red = net("red", "globex", 3, "198.51.100.0/24", "198.51.100.1");
        let all = [&blue, &green, &far, &red];
        let p = |s: &str| vec![s.parse::<IpNet>().unwrap()];
        let (a, b, g, r) = (
            p("198.51.100.10/32"),
            p("198.51.100.20/32"),
            p("203.0.113.20/32"),
            p("198.51.100.30/32"),
        );
        let nics = [
            NetNic {
                domain: "a",
                mac: "m:a",
                network: "blue",
                addresses: &a,
            },
            NetNic {
                domain: "b",
                mac: "m:b",
                network: "blue",
                addresses: &b,
            },
            NetNic {
                domain: "g",
                mac: "m:g",
                network: "green",
                addresses: &g,
            },
            NetNic {
                domain: "r",
                mac: "m:r",
                network: "red",
                addresses: &r,
            },
        ];
        let d = |dst: &str, echo: bool, ns: bool| {
            decide(&blue, "m:a", dst.parse().unwrap(), echo, &all, &nics, ns).to_string()
        };
        assert!(d("198.51.100.1", true, true).contains("answers the echo"));
        assert!(d("198.51.100.1", false, true).contains("no_route"));
        assert_eq!(
            d("198.51.100.20", false, true),
            "switched to b (m:b) on the same network"
        );
        assert_eq!(
            d("203.0.113.20", false, true),
            "routed to g (m:g) on network green"
        );
        // The other tenant's NIC, on the same subnet, is nobody here.
        assert!(d("198.51.100.30", false, true).contains("unknown_unicast"));
        assert!(d("203.0.113.99", false, true).contains("no_route"));
        // far has no NIC here: its subnet is not known to the data path.
        assert!(d("192.0.2.5", false, true).contains("namespace hookd-acme"));
        assert!(d("192.0.2.200", false, false).contains("tenant namespaces are off"));
    }
}
