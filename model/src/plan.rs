//! What hookd will do with a domain's NICs: pure planning from the parsed
//! domain XML, shared by the daemon and `hookctl explain`.

use crate::domain::{Domain, Interface};
use crate::firewall::{self, Compiled};
use crate::mac::MacAddr;
use crate::policy::{Direction, InterfacePolicy};
use ipnet::{IpNet, Ipv6Net};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum NicMode {
    /// Policy present: what is enforced, stage by stage.
    #[serde(rename = "anti-spoofing")]
    Enforced(Enforcement),
    /// No policy for this NIC: its traffic is counted, never filtered.
    CountersOnly,
    /// hookd leaves this NIC alone, and says why.
    NotAttached { reason: String },
}

/// What a NIC with policy is held to, one field per stage of the data
/// path (a network stage joins them with routing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    #[serde(flatten)]
    pub anti_spoofing: AntiSpoofing,
    #[serde(skip)]
    pub firewall: NicFirewall,
    /// The hookd network the NIC joins (`<hookd:network>`), once
    /// [`join_networks`] has found its definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Box<NicNetwork>>,
    /// The NIC's own conntrack table size (`conntrack-entries`); None: the
    /// host's `conntrack_entries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_entries: Option<u32>,
}

/// What the data path needs of a NIC's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicNetwork {
    pub name: String,
    /// Its tenant's name (its namespace is named after it).
    pub tenant: String,
    /// The network's VNI, which is also its id in the data path's maps.
    pub vni: u32,
    /// Its tenant's id ([`crate::network::tenant_id`]): networks with the
    /// same id route to each other.
    pub tenant_id: u32,
    pub gateways: Vec<std::net::IpAddr>,
    pub gateway_mac: MacAddr,
    /// The subnets with their gateways, for what DHCP gives the guest.
    pub subnets: Vec<(IpNet, std::net::IpAddr)>,
    pub mtu: u16,
    pub dns: Vec<std::net::IpAddr>,
}

/// What a network serves one of its NICs, from the NIC's MAC and address
/// prefixes: what its DHCPv4 answers and router advertisements carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Served {
    /// DHCPv4: the NIC's first IPv4 host address inside one of the
    /// network's IPv4 subnets, that subnet, and its gateway (the router).
    pub dhcp4: Option<(std::net::Ipv4Addr, ipnet::Ipv4Net, std::net::Ipv4Addr)>,
    /// Router advertisements: the /64 subnet that holds one of the NIC's
    /// addresses, and whether it is autonomous (SLAAC): the NIC's address
    /// is the EUI-64 address of its MAC in it, or the /64 itself.
    pub ra: Option<(Ipv6Net, bool)>,
    /// DHCPv6: the NIC's first IPv6 host address in that /64, when SLAAC
    /// does not give it (the advertisements then say M).
    pub dhcp6: Option<std::net::Ipv6Addr>,
}

/// The prefixes a network switches to: host prefixes (/32, /128), not
/// link-local addresses.
pub fn host_addresses(prefixes: &[IpNet]) -> Vec<std::net::IpAddr> {
    prefixes
        .iter()
        .filter(|p| p.prefix_len() == p.max_prefix_len())
        .map(|p| p.addr())
        .filter(|a| !matches!(a, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect()
}

impl NicNetwork {
    /// What the network serves the NIC with `mac` and `prefixes`.
    pub fn served(&self, mac: MacAddr, prefixes: &[IpNet]) -> Served {
        use std::net::IpAddr;
        let dhcp4 = host_addresses(prefixes).into_iter().find_map(|a| {
            let IpAddr::V4(a4) = a else { return None };
            self.subnets.iter().find_map(|(p, gw)| match (p, gw) {
                (IpNet::V4(p4), IpAddr::V4(g4)) if p4.contains(&a4) => Some((a4, *p4, *g4)),
                _ => None,
            })
        });
        let iid = mac.eui64_link_local().octets();
        let ra = self.subnets.iter().find_map(|(subnet, _)| {
            let IpNet::V6(s6) = subnet else { return None };
            let mine: Vec<&IpNet> = prefixes.iter().filter(|p| subnet.contains(*p)).collect();
            if s6.prefix_len() != 64 || mine.is_empty() {
                return None;
            }
            let mut eui = s6.network().octets();
            eui[8..].copy_from_slice(&iid[8..]);
            let slaac = mine.iter().any(|p| {
                *p == subnet || (p.prefix_len() == 128 && p.addr() == IpAddr::V6(eui.into()))
            });
            Some((*s6, slaac))
        });
        let dhcp6 = match ra {
            Some((s6, false)) => host_addresses(prefixes).into_iter().find_map(|a| match a {
                IpAddr::V6(a6) if s6.contains(&a6) => Some(a6),
                _ => None,
            }),
            _ => None,
        };
        Served { dhcp4, ra, dhcp6 }
    }
}

/// How long a DHCP lease lasts (clients renew at half of it).
pub const DHCP_LEASE_SECS: u32 = 86_400;

/// Anti-spoofing: the source MAC is always checked; IP sources, ARP
/// senders and ND targets only where `prefixes` is not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AntiSpoofing {
    /// The policy's address prefixes, plus the NIC's EUI-64 link-local
    /// address when there are any.
    pub prefixes: Vec<IpNet>,
    pub allow_dhcp_server: bool,
    pub allow_router_advertisements: bool,
}

impl AntiSpoofing {
    /// Whether IP sources are checked (the policy gave addresses).
    pub fn checks_ip(&self) -> bool {
        !self.prefixes.is_empty()
    }
}

impl NicMode {
    /// The enforcement, where the NIC has policy.
    pub fn enforcement(&self) -> Option<&Enforcement> {
        match self {
            NicMode::Enforced(e) => Some(e),
            _ => None,
        }
    }

    /// Whether security groups are on for either direction (the NIC then
    /// needs a conntrack table).
    pub fn has_firewall(&self) -> bool {
        self.enforcement().is_some_and(|e| e.firewall.is_on())
    }

    /// The NIC's own conntrack table size, if its policy names one.
    pub fn conntrack_entries(&self) -> Option<u32> {
        self.enforcement().and_then(|e| e.conntrack_entries)
    }
}

impl std::fmt::Display for NicMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicMode::Enforced(_) => f.write_str("anti-spoofing"),
            NicMode::CountersOnly => f.write_str("counters only"),
            NicMode::NotAttached { reason } => write!(f, "not attached: {reason}"),
        }
    }
}

/// Compiled `<ingress>` / `<egress>`; None where the element is absent
/// (that direction is allowed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicFirewall {
    pub ingress: Option<Compiled>,
    pub egress: Option<Compiled>,
}

impl NicFirewall {
    /// Either direction has an element (and so rules or a default).
    pub fn is_on(&self) -> bool {
        self.ingress.is_some() || self.egress.is_some()
    }

    /// The compiled tables of `dir`.
    pub fn of(&self, dir: Direction) -> Option<&Compiled> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicPlan {
    pub mac: Option<MacAddr>,
    pub kind: String,
    pub tap: Option<String>,
    pub mode: NicMode,
    /// The NIC's security-group rules, for hit counters and display.
    pub rules: Vec<RuleInfo>,
}

/// One rule as hookd reports it: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleInfo {
    pub direction: Direction,
    /// Index within its direction (what the data path counts hits by).
    pub index: u16,
    pub line: u32,
    pub text: String,
}

fn rule_infos(p: &InterfacePolicy) -> Vec<RuleInfo> {
    Direction::BOTH
        .into_iter()
        .filter_map(|dir| p.rules(dir).map(|d| (dir, d)))
        .flat_map(|(direction, d)| {
            d.rules.iter().enumerate().map(move |(i, r)| RuleInfo {
                direction,
                index: i as u16,
                line: r.line,
                text: r.to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "line {line}: <hookd:interface> for {mac}: its <hookd:{direction}> rules compile to {entries} table entries and {classes} remote prefixes, more than one NIC may use ({MAX_FW_RULE_ENTRIES} and {MAX_FW_CLASSES}); merge port ranges or prefixes"
    )]
    TooLarge {
        line: u32,
        mac: String,
        direction: Direction,
        entries: usize,
        classes: usize,
    },
    #[error(
        "line {line}: <interface> {mac}: hookd policy applies to it, but {reason}; refusing to run it unprotected"
    )]
    NotEnforceable {
        line: u32,
        mac: String,
        reason: String,
    },
    #[error(
        "line {line}: <interface> {mac}: hookd policy applies to it but it has no <target dev> (tap) yet"
    )]
    NoTap { line: u32, mac: String },
    #[error(
        "line {line}: <interface> {mac}: its policy puts it on network {network}, but it is an <interface type='{kind}'>; a NIC joins a network as <interface type='ethernet'> (a tap without a bridge)"
    )]
    NetworkNeedsEthernet {
        line: u32,
        mac: String,
        kind: String,
        network: String,
    },
}

/// Whether the taps must be present: true from `start begin` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeTaps,
    TapsExist,
}

fn mac_text(nic: &Interface) -> String {
    nic.mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "(no mac)".into())
}

/// Most firewall table entries one NIC direction may use: the maps are
/// shared by every NIC (hookd_fw_rules holds 1,048,576, hookd_fw_classes
/// 262,144), so one VM may not take them all.
pub const MAX_FW_RULE_ENTRIES: usize = 131_072;
pub const MAX_FW_CLASSES: usize = 32_768;

fn compile_direction(
    nic: &Interface,
    p: &InterfacePolicy,
    direction: Direction,
) -> Result<Option<Compiled>, PlanError> {
    let Some(d) = p.rules(direction) else {
        return Ok(None);
    };
    let c = firewall::compile(d);
    if c.rules.len() > MAX_FW_RULE_ENTRIES || c.classes.len() > MAX_FW_CLASSES {
        return Err(PlanError::TooLarge {
            line: p.line,
            mac: mac_text(nic),
            direction,
            entries: c.rules.len(),
            classes: c.classes.len(),
        });
    }
    Ok(Some(c))
}

fn enforcement(nic: &Interface, p: &InterfacePolicy) -> Result<NicMode, PlanError> {
    if let Some(n) = &p.network
        && nic.kind != "ethernet"
    {
        return Err(PlanError::NetworkNeedsEthernet {
            line: nic.line,
            mac: mac_text(nic),
            kind: nic.kind.clone(),
            network: n.name.clone(),
        });
    }
    let mut prefixes = p.addresses.clone();
    if !prefixes.is_empty() {
        // The guest's own EUI-64 link-local address is always allowed.
        if let Some(mac) = nic.mac {
            let ll = IpNet::V6(Ipv6Net::from(mac.eui64_link_local()));
            if !prefixes.contains(&ll) {
                prefixes.push(ll);
            }
        }
    }
    Ok(NicMode::Enforced(Enforcement {
        anti_spoofing: AntiSpoofing {
            prefixes,
            allow_dhcp_server: p.allow_dhcp_server,
            allow_router_advertisements: p.allow_router_advertisements,
        },
        firewall: NicFirewall {
            ingress: compile_direction(nic, p, Direction::Ingress)?,
            egress: compile_direction(nic, p, Direction::Egress)?,
        },
        network: None,
        conntrack_entries: p.conntrack_entries,
    }))
}

/// Plans every NIC of `domain`. A NIC covered by policy that hookd cannot
/// enforce is an error: the VM must not run unprotected.
pub fn plan_domain(
    domain: &Domain,
    count_unmanaged: bool,
    stage: Stage,
) -> Result<Vec<NicPlan>, PlanError> {
    domain
        .interfaces
        .iter()
        .map(|nic| {
            let policy = domain.policy.as_ref().and_then(|p| p.for_mac(nic.mac));
            let attachable = nic.attachable();
            let mode = match (policy, attachable) {
                (Some(_), Err(reason)) => {
                    return Err(PlanError::NotEnforceable {
                        line: nic.line,
                        mac: mac_text(nic),
                        reason,
                    });
                }
                (Some(_), Ok(())) if nic.target_dev.is_none() && stage == Stage::TapsExist => {
                    return Err(PlanError::NoTap {
                        line: nic.line,
                        mac: mac_text(nic),
                    });
                }
                (Some(p), Ok(())) => enforcement(nic, p)?,
                (None, Err(reason)) => NicMode::NotAttached { reason },
                (None, Ok(())) if !count_unmanaged => NicMode::NotAttached {
                    reason: "no hookd policy, and count_unmanaged is off".into(),
                },
                (None, Ok(())) if nic.target_dev.is_none() && stage == Stage::TapsExist => {
                    NicMode::NotAttached {
                        reason: "no <target dev> in the XML".into(),
                    }
                }
                (None, Ok(())) => NicMode::CountersOnly,
            };
            Ok(NicPlan {
                mac: nic.mac,
                kind: nic.kind.clone(),
                tap: nic.target_dev.clone(),
                rules: if matches!(mode, NicMode::Enforced(_)) {
                    policy.map(rule_infos).unwrap_or_default()
                } else {
                    Vec::new()
                },
                mode,
            })
        })
        .collect()
}

/// Gives each planned NIC whose policy names a network that network's
/// data (`lookup` finds definitions by name). A network `lookup` does not
/// know is left out: [`crate::network::check_policy`] refuses such a
/// policy first.
pub fn join_networks(
    plans: &mut [NicPlan],
    domain: &Domain,
    lookup: impl Fn(&str) -> Option<crate::network::Network>,
) {
    let Some(policy) = &domain.policy else {
        return;
    };
    for p in plans.iter_mut() {
        let NicMode::Enforced(e) = &mut p.mode else {
            continue;
        };
        let Some(r) = policy.for_mac(p.mac).and_then(|i| i.network.as_ref()) else {
            continue;
        };
        if let Some(n) = lookup(&r.name) {
            e.network = Some(Box::new(NicNetwork {
                name: n.name.clone(),
                tenant: n.tenant.clone(),
                vni: n.vni,
                tenant_id: crate::network::tenant_id(&n.tenant),
                gateways: n.subnets.iter().map(|s| s.gateway).collect(),
                gateway_mac: crate::network::gateway_mac(n.vni),
                subnets: n.subnets.iter().map(|s| (s.prefix, s.gateway)).collect(),
                mtu: n.mtu,
                dns: n.dns.clone(),
            }));
        }
    }
}

/// Things an operator should know that are not errors.
pub fn warnings(domain: &Domain) -> Vec<String> {
    let mut out = Vec::new();
    let Some(policy) = &domain.policy else {
        return out;
    };
    for ip in &policy.interfaces {
        if let Some(mac) = ip.mac
            && !domain.interfaces.iter().any(|n| n.mac == Some(mac))
        {
            out.push(format!(
                "line {}: <hookd:interface mac=\"{mac}\"> matches no <interface> of the domain (yet): it applies once such a NIC exists",
                ip.line
            ));
        }
        if ip.addresses.is_empty() {
            out.push(format!(
                "line {}: <hookd:interface{}> has no <hookd:address>: its MAC is checked but any IP source address is allowed",
                ip.line,
                ip.mac.map(|m| format!(" mac=\"{m}\"")).unwrap_or_default()
            ));
        }
    }
    if policy.interfaces.is_empty() {
        out.push("<hookd:policy> has no <hookd:interface>: the domain counts as managed (it fails closed without hookd) but no NIC is filtered".into());
    }
    for nic in &domain.interfaces {
        if policy.for_mac(nic.mac).is_none() {
            out.push(format!(
                "line {}: <interface> {} has no hookd policy: it is not filtered (counted where hookd can attach and count_unmanaged is on)",
                nic.line,
                mac_text(nic)
            ));
        }
    }
    out
}
