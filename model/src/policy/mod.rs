//! hookd's policy, schema v1 (docs/policy.md): the model here, its parsing
//! and validation from the `<hookd:policy>` element of a domain's
//! `<metadata>` in [`parse`] (everything invalid is refused with the
//! element, attribute and line), and its one-line text in `display`.

mod display;
pub(crate) mod parse;

pub use parse::{CONNTRACK_ENTRIES, PolicyError, parse_policy, parse_prefix, protocol_number};

use crate::mac::MacAddr;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Namespace URI of hookd's metadata.
pub const NAMESPACE: &str = "urn:hookd:policy:1";

/// Limits that keep one policy within what the maps hold.
pub const MAX_INTERFACES: usize = 64;
pub const MAX_ADDRESSES: usize = 256;
pub const MAX_RULES: usize = 16_384;
pub const MAX_PORT_RANGES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub interfaces: Vec<InterfacePolicy>,
}

impl Policy {
    /// Moves every line number by `delta`: a policy parsed on its own, now
    /// part of a larger document.
    pub fn shift_lines(&mut self, delta: i64) {
        self.each_line(|l| shift_line(l, delta));
    }

    /// Calls `f` on every line number the policy holds.
    pub fn each_line(&mut self, mut f: impl FnMut(&mut u32)) {
        for ip in &mut self.interfaces {
            f(&mut ip.line);
            if let Some(n) = &mut ip.network {
                f(&mut n.line);
            }
            for d in [&mut ip.ingress, &mut ip.egress].into_iter().flatten() {
                d.rules.iter_mut().for_each(|r| f(&mut r.line));
            }
        }
    }
}

/// `line` moved by `delta` lines (text was added or removed above it).
pub fn shift_line(line: &mut u32, delta: i64) {
    *line = u32::try_from(i64::from(*line) + delta).unwrap_or(0);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfacePolicy {
    /// None: the policy covers every NIC of the domain.
    pub mac: Option<MacAddr>,
    pub addresses: Vec<IpNet>,
    pub ingress: Option<DirectionRules>,
    pub egress: Option<DirectionRules>,
    pub allow_dhcp_server: bool,
    pub allow_router_advertisements: bool,
    /// `conntrack-entries`: this NIC's conntrack table size, instead of the
    /// host's `conntrack_entries` (within the host's `conntrack_entries_max`).
    pub conntrack_entries: Option<u32>,
    pub network: Option<NetworkRef>,
    pub line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    /// "allow" or "deny", as the policy spells it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a packet goes, from the VM's point of view, as the policy
/// names it: `ingress` is traffic to the VM, `egress` traffic from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The policy's element (and attribute value) for this direction.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Direction, String> {
        match s {
            "ingress" => Ok(Direction::Ingress),
            "egress" => Ok(Direction::Egress),
            other => Err(format!("direction '{other}' is not ingress or egress")),
        }
    }
}

impl InterfacePolicy {
    /// The `<ingress>` or `<egress>` element, where present.
    pub fn rules(&self, dir: Direction) -> Option<&DirectionRules> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

/// The content of an `<ingress>` or `<egress>` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectionRules {
    pub default: Action,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Any,
    /// An IP protocol number (tcp = 6, udp = 17, icmp = 1, icmpv6 = 58, sctp = 132).
    Number(u8),
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// The protocols policies may name, with their numbers: the one list the
/// parser, the display and `Trace` use.
pub const PROTOCOL_NAMES: [(&str, u8); 5] = [
    ("tcp", PROTO_TCP),
    ("udp", PROTO_UDP),
    ("icmp", PROTO_ICMP),
    ("icmpv6", PROTO_ICMPV6),
    ("sctp", PROTO_SCTP),
];

/// The name of a protocol number, where policies have one.
pub fn protocol_name(n: u8) -> Option<&'static str> {
    PROTOCOL_NAMES
        .iter()
        .find(|(_, p)| *p == n)
        .map(|(name, _)| *name)
}

impl Protocol {
    pub(crate) fn has_ports(self) -> bool {
        matches!(self, Protocol::Number(PROTO_TCP | PROTO_UDP | PROTO_SCTP))
    }
    pub(crate) fn is_icmp(self) -> bool {
        matches!(self, Protocol::Number(PROTO_ICMP | PROTO_ICMPV6))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub action: Action,
    pub protocol: Protocol,
    pub ports: Vec<PortRange>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote: Option<IpNet>,
    pub log: bool,
    pub line: u32,
}

/// `<hookd:network name="..."/>`: the NIC joins one of hookd's networks
/// (see docs/networks.md). Whether that network exists is the daemon's
/// check, which knows the definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkRef {
    pub name: String,
    pub line: u32,
}

impl Policy {
    /// The policy for the NIC with `mac`, if any.
    pub fn for_mac(&self, mac: Option<MacAddr>) -> Option<&InterfacePolicy> {
        self.interfaces
            .iter()
            .find(|i| i.mac.is_none() || (mac.is_some() && i.mac == mac))
    }
}
