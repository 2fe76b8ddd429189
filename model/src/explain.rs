//! `hookctl explain`: what hookd would attach and enforce for a domain XML,
//! without a daemon.

use crate::domain::{self, Domain};
use crate::network::Network;
use crate::plan::{self, NicMode, NicPlan, Stage};
use crate::policy::{Action, Direction, DirectionRules};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub domain: Domain,
    pub managed: bool,
    pub nics: Vec<NicPlan>,
    pub warnings: Vec<String>,
}

/// Parses and plans `xml` the way hookd does at `prepare`.
pub fn explain(xml: &str) -> Result<Explanation, String> {
    explain_with(xml, &[])
}

/// [`explain`], with the definitions of the networks its NICs join (from
/// the daemon or from files): each network NIC's gateway and what the
/// network serves it are shown too.
pub fn explain_with(xml: &str, networks: &[Network]) -> Result<Explanation, String> {
    let domain = domain::parse(xml).map_err(|e| e.to_string())?;
    let mut nics =
        plan::plan_domain(&domain, true, Stage::BeforeTaps).map_err(|e| e.to_string())?;
    plan::join_networks(&mut nics, &domain, |name| {
        networks.iter().find(|n| n.name == name).cloned()
    });
    Ok(Explanation {
        managed: domain.policy.is_some(),
        warnings: plan::warnings(&domain),
        nics,
        domain,
    })
}

fn direction_text(out: &mut String, name: Direction, d: Option<&DirectionRules>) {
    match d {
        None => {
            let _ = writeln!(out, "      {name}: allow (no <hookd:{name}> element)");
        }
        Some(d) => {
            let def = if d.default == Action::Allow {
                "allow"
            } else {
                "deny"
            };
            let _ = writeln!(
                out,
                "      {name}: default {def}, {} rule(s)",
                d.rules.len()
            );
            for r in &d.rules {
                let _ = writeln!(out, "        {r}  (line {})", r.line);
            }
        }
    }
}

/// A network NIC's network, gateway, and what the network serves it.
fn network_text(
    out: &mut String,
    n: &plan::NicNetwork,
    mac: Option<crate::mac::MacAddr>,
    prefixes: &[ipnet::IpNet],
) {
    let gws: Vec<String> = n.gateways.iter().map(|g| g.to_string()).collect();
    let _ = writeln!(
        out,
        "      network {} (tenant {}, VNI {}, MTU {}): gateway {} (MAC {})",
        n.name,
        n.tenant,
        n.vni,
        n.mtu,
        gws.join(", "),
        n.gateway_mac
    );
    let Some(mac) = mac else { return };
    let served = n.served(mac, prefixes);
    match served.dhcp4 {
        Some((a, s, gw)) => {
            let dns: Vec<String> = n
                .dns
                .iter()
                .filter(|d| d.is_ipv4())
                .map(|d| d.to_string())
                .collect();
            let _ = writeln!(
                out,
                "      DHCPv4 serves: {a}, mask {}, router {gw}, MTU {}, DNS {}, lease {} s",
                s.netmask(),
                n.mtu,
                if dns.is_empty() {
                    "none".into()
                } else {
                    dns.join(", ")
                },
                plan::DHCP_LEASE_SECS
            );
        }
        None => {
            let _ = writeln!(
                out,
                "      DHCPv4: nothing (no IPv4 /32 address in the network's subnets)"
            );
        }
    }
    match served.ra {
        Some((p, slaac)) => {
            let _ = writeln!(
                out,
                "      router advertisements: default route via {}, MTU {}, prefix {p} {}",
                n.gateway_mac.eui64_link_local(),
                n.mtu,
                if slaac {
                    "autonomous (SLAAC gives the NIC its address)".to_string()
                } else {
                    match served.dhcp6 {
                        Some(a) => format!("on-link, managed: DHCPv6 serves {a}"),
                        None => "on-link only".to_string(),
                    }
                }
            );
        }
        None => {
            let _ = writeln!(
                out,
                "      router advertisements: none (no address in a /64 IPv6 subnet of the network)"
            );
        }
    }
}

impl Explanation {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let d = &self.domain;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "domain {} (uuid {})",
            d.name,
            if d.uuid.is_empty() { "-" } else { &d.uuid }
        );
        let _ = writeln!(
            out,
            "  {}",
            if self.managed {
                "managed: carries hookd policy (fails closed if it cannot be applied)"
            } else {
                "unmanaged: no hookd policy; never filtered (counted unless count_unmanaged = false)"
            }
        );
        if self.nics.is_empty() {
            let _ = writeln!(out, "  no <interface> elements");
        }
        for nic in &self.nics {
            let mac = nic
                .mac
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(no mac)".into());
            let tap = nic.tap.as_deref().unwrap_or("(tap named at start)");
            let _ = writeln!(out, "  nic {mac} type {} tap {tap}: {}", nic.kind, nic.mode);
            if let NicMode::Enforced(e) = &nic.mode {
                let anti_spoofing = &e.anti_spoofing;
                let prefixes = &anti_spoofing.prefixes;
                let network = d
                    .policy
                    .as_ref()
                    .and_then(|p| p.for_mac(nic.mac))
                    .and_then(|p| p.network.as_ref());
                match (&e.network, network.map(|r| &r.name)) {
                    (Some(n), _) => network_text(&mut out, n, nic.mac, &e.anti_spoofing.prefixes),
                    (None, Some(n)) => {
                        let _ = writeln!(
                            out,
                            "      network {n} (definition not known here: hookd checks it, and that the addresses lie in its subnets, at start; `hookctl network show {n}`)"
                        );
                    }
                    (None, None) => {}
                }
                let _ = writeln!(out, "      source MAC must be {mac}");
                if prefixes.is_empty() {
                    let _ = writeln!(out, "      IP sources: not checked (no <hookd:address>)");
                } else {
                    let p: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
                    let _ = writeln!(
                        out,
                        "      IP sources, ARP senders, ND targets within: {}",
                        p.join(", ")
                    );
                }
                let dhcp = anti_spoofing.allow_dhcp_server;
                let ra = anti_spoofing.allow_router_advertisements;
                let _ = writeln!(
                    out,
                    "      the VM's own DHCP server replies: {}; its router advertisements: {}",
                    if dhcp { "allowed" } else { "dropped" },
                    if ra { "allowed" } else { "dropped" }
                );
                if let Some(p) = d.policy.as_ref().and_then(|p| p.for_mac(nic.mac)) {
                    for dir in Direction::BOTH {
                        direction_text(&mut out, dir, p.rules(dir));
                    }
                }
                if let Some(n) = e.conntrack_entries {
                    let _ = writeln!(
                        out,
                        "      conntrack table: {n} connections (conntrack-entries; the host must allow it: conntrack_entries_max)"
                    );
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// Validates a whole domain XML or a bare `<policy>` element of hookd's
/// namespace, as hookd would before applying it. Returns a summary.
pub fn validate(xml: &str) -> Result<String, String> {
    let root = crate::xml_tree::parse(xml).map_err(|e| e.to_string())?;
    if root.ns.as_deref() == Some(crate::policy::NAMESPACE) {
        if root.name != "policy" {
            return Err(format!(
                "line {}: <{}>: hookd's metadata element is <policy>",
                root.line, root.qname
            ));
        }
        let p = crate::policy::parse_policy(&root).map_err(|e| e.to_string())?;
        let rules: usize = p
            .interfaces
            .iter()
            .map(|i| {
                i.ingress.as_ref().map_or(0, |d| d.rules.len())
                    + i.egress.as_ref().map_or(0, |d| d.rules.len())
            })
            .sum();
        return Ok(format!(
            "valid policy: {} interface(s), {rules} rule(s)",
            p.interfaces.len()
        ));
    }
    let ex = explain(xml)?;
    Ok(format!(
        "valid domain {}: {}, {} NIC(s), {} warning(s)",
        ex.domain.name,
        if ex.managed { "managed" } else { "unmanaged" },
        ex.nics.len(),
        ex.warnings.len()
    ))
}
