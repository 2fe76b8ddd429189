//! Security-group compiler: one direction's rules become two lookup tables
//! whose per-packet cost does not depend on the number of rules.
//!
//! Per packet, the data path does:
//! 1. an LPM lookup of the remote address in the *class* table: the class is
//!    the most specific rule prefix containing it (0 when none does);
//! 2. LPM lookups of (class, protocol, port) in the *rule* table, for the
//!    packet's class and for class 0 (rules without `remote`), each for the
//!    packet's protocol and for `protocol="any"`: at most four;
//! 3. deny if any lookup says deny, else allow if any says allow, else the
//!    direction's default.
//!
//! Why that is exact: the stored class prefixes containing an address form a
//! chain, so every rule prefix containing the address contains the longest
//! one; the same holds for port ranges split into aligned power-of-two
//! blocks. The compiler therefore stores, for each class and block, the
//! verdict of *all* rules whose prefix and port set contain it, and the
//! longest match finds it. `reference_verdict` is the rule-by-rule
//! definition; tests check both agree on random policies and packets.

use crate::policy::{Action, DirectionRules, PROTO_ICMP, PROTO_ICMPV6, Protocol, Rule};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// A packet as the firewall sees it, from the VM's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The other end: the source of ingress traffic, the destination of egress.
    pub remote: IpAddr,
    pub proto: u8,
    /// Destination port (tcp/udp/sctp), or ICMP type << 8 | code.
    pub port: u16,
}

/// An address prefix in the data path's 128-bit form (IPv4 mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: u128,
    pub len: u8,
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl Prefix {
    pub fn from_net(net: &IpNet) -> Prefix {
        match net {
            IpNet::V4(n) => Prefix {
                addr: u128::from(n.network().to_ipv6_mapped()),
                len: n.prefix_len() + 96,
            },
            IpNet::V6(n) => Prefix {
                addr: u128::from(n.network()),
                len: n.prefix_len(),
            },
        }
    }

    pub fn host(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    pub fn contains(&self, addr: u128) -> bool {
        addr & mask128(self.len) == self.addr
    }

    fn ancestor(&self, len: u8) -> Prefix {
        Prefix {
            addr: self.addr & mask128(len),
            len,
        }
    }
}

/// An aligned block of 2^(16 - len) ports (or ICMP type/code values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortBlock {
    pub value: u16,
    pub len: u8,
}

fn mask16(len: u8) -> u16 {
    if len == 0 {
        0
    } else {
        u16::MAX << (16 - u32::from(len))
    }
}

impl PortBlock {
    pub const ALL: PortBlock = PortBlock { value: 0, len: 0 };

    pub fn contains(&self, port: u16) -> bool {
        port & mask16(self.len) == self.value
    }

    fn ancestor(&self, len: u8) -> PortBlock {
        PortBlock {
            value: self.value & mask16(len),
            len,
        }
    }
}

/// Splits `first..=last` into the fewest aligned blocks.
pub fn port_blocks(first: u16, last: u16) -> Vec<PortBlock> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(first), u32::from(last));
    while lo <= hi {
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1u32 << lo.trailing_zeros().min(16)
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        let len = 16 - size.trailing_zeros() as u8;
        out.push(PortBlock {
            value: lo as u16,
            len,
        });
        lo += size;
    }
    out
}

/// The outcome stored for a table entry, and the rule behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub deny: bool,
    /// Index of the deciding rule in the direction's rule list.
    pub rule: u16,
    pub log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub class: u32,
    /// Protocol number; 0 together with `any` for protocol="any".
    pub proto: u8,
    pub any: bool,
    pub block: PortBlock,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compiled {
    pub default_deny: bool,
    /// Remote prefix -> class (0 is "no rule prefix contains it"). A class
    /// id carries its `Kinds` bits in its two low bits, for the data path.
    pub classes: Vec<(Prefix, u32)>,
    pub rules: Vec<(RuleKey, Verdict)>,
}

/// The port-like key of a packet for a protocol.
pub fn packet_port(proto: u8, dport: u16, icmp_type: u8, icmp_code: u8) -> u16 {
    match proto {
        PROTO_ICMP | PROTO_ICMPV6 => u16::from(icmp_type) << 8 | u16::from(icmp_code),
        _ => dport,
    }
}

fn rule_blocks(r: &Rule) -> Vec<PortBlock> {
    if !r.ports.is_empty() {
        return r
            .ports
            .iter()
            .flat_map(|p| port_blocks(p.first, p.last))
            .collect();
    }
    match (r.icmp_type, r.icmp_code) {
        (Some(t), Some(c)) => vec![PortBlock {
            value: u16::from(t) << 8 | u16::from(c),
            len: 16,
        }],
        (Some(t), None) => vec![PortBlock {
            value: u16::from(t) << 8,
            len: 8,
        }],
        _ => vec![PortBlock::ALL],
    }
}

fn proto_key(p: Protocol) -> (u8, bool) {
    match p {
        Protocol::Any => (0, true),
        Protocol::Number(n) => (n, false),
    }
}

/// Better of two verdicts for the same packet: deny wins, then the lower rule.
fn stronger(a: Option<Verdict>, b: Verdict) -> Verdict {
    match a {
        None => b,
        Some(a) if a.deny != b.deny => {
            if a.deny {
                a
            } else {
                b
            }
        }
        Some(a) => {
            if a.rule <= b.rule {
                a
            } else {
                b
            }
        }
    }
}

/// Compiles one direction.
pub fn compile(dir: &DirectionRules) -> Compiled {
    // Classes: the distinct rule prefixes.
    let mut class_of: BTreeMap<Prefix, u32> = BTreeMap::new();
    for r in &dir.rules {
        if let Some(net) = &r.remote {
            let next = class_of.len() as u32 + 1;
            class_of.entry(Prefix::from_net(net)).or_insert(next);
        }
    }
    // Rules by prefix (None = any remote), for ancestor walks.
    let mut by_prefix: HashMap<Option<Prefix>, Vec<usize>> = HashMap::new();
    for (i, r) in dir.rules.iter().enumerate() {
        by_prefix
            .entry(r.remote.as_ref().map(Prefix::from_net))
            .or_default()
            .push(i);
    }
    // For each class, the rules whose prefix contains the class prefix:
    // its ancestors, at the lengths rule prefixes have (a policy has few;
    // walking all 129 made this walk most of a big policy's compile).
    let lens: BTreeSet<u8> = by_prefix.keys().flatten().map(|p| p.len).collect();
    let mut groups: Vec<(u32, Vec<usize>)> =
        vec![(0, by_prefix.get(&None).cloned().unwrap_or_default())];
    for (p, &c) in &class_of {
        let mut rules = Vec::new();
        for &len in lens.range(..=p.len) {
            if let Some(rs) = by_prefix.get(&Some(p.ancestor(len))) {
                rules.extend_from_slice(rs);
            }
        }
        groups.push((c, rules));
    }
    let mut out = Compiled {
        default_deny: dir.default == Action::Deny,
        classes: Vec::new(),
        rules: Vec::new(),
    };
    for (class, rules) in groups {
        // Raw blocks per protocol key, with the verdict of the rules on them.
        let mut raw: BTreeMap<RuleKey, Verdict> = BTreeMap::new();
        for &i in &rules {
            let r = &dir.rules[i];
            let (proto, any) = proto_key(r.protocol);
            let v = Verdict {
                deny: r.action == Action::Deny,
                rule: i as u16,
                log: r.log,
            };
            for block in rule_blocks(r) {
                let key = RuleKey {
                    class,
                    proto,
                    any,
                    block,
                };
                let cur = raw.get(&key).copied();
                raw.insert(key, stronger(cur, v));
            }
        }
        // Each stored block gets the verdict of every block containing it.
        for key in raw.keys() {
            let mut v: Option<Verdict> = None;
            for len in 0..=key.block.len {
                let anc = RuleKey {
                    block: key.block.ancestor(len),
                    ..*key
                };
                if let Some(a) = raw.get(&anc) {
                    v = Some(stronger(v, *a));
                }
            }
            if let Some(v) = v {
                out.rules.push((*key, v));
            }
        }
    }
    // Class ids carry their kinds (old programs use them as plain ids,
    // which stays consistent since keys and classes use the same ids).
    let kinds = out.kinds();
    let id = |c: u32| match c {
        0 => 0,
        c => c << 2 | u32::from(kinds.get(&c).copied().unwrap_or_default().bits()),
    };
    out.classes = class_of.iter().map(|(p, c)| (*p, id(*c))).collect();
    for (k, _) in &mut out.rules {
        k.class = id(k.class);
    }
    out
}

/// The rule-by-rule definition of schema v1: deny beats allow, otherwise
/// any allow, otherwise the default. Returns the verdict and deciding rule.
pub fn reference_verdict(dir: &DirectionRules, p: &Packet) -> (Action, Option<usize>) {
    let matches = |r: &Rule| {
        let proto_ok = match r.protocol {
            Protocol::Any => true,
            Protocol::Number(n) => n == p.proto,
        };
        let port_ok = if !r.ports.is_empty() {
            r.ports
                .iter()
                .any(|rg| (rg.first..=rg.last).contains(&p.port))
        } else {
            r.icmp_type.is_none_or(|t| (p.port >> 8) as u8 == t)
                && r.icmp_code.is_none_or(|c| p.port as u8 == c)
        };
        let remote_ok = r
            .remote
            .is_none_or(|n| Prefix::from_net(&n).contains(Prefix::host(p.remote)));
        proto_ok && port_ok && remote_ok
    };
    let first = |a: Action| dir.rules.iter().position(|r| r.action == a && matches(r));
    if let Some(i) = first(Action::Deny) {
        return (Action::Deny, Some(i));
    }
    if let Some(i) = first(Action::Allow) {
        return (Action::Allow, Some(i));
    }
    (dir.default, None)
}

/// Which lookups of a class can find a rule: protocol-specific entries,
/// protocol="any" entries. The data path skips the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds {
    pub proto: bool,
    pub any: bool,
}

impl Kinds {
    /// `FW_KIND_*` bits, as class ids and `nic_config.fw_kinds` carry them.
    pub fn bits(self) -> u8 {
        (if self.proto { FW_KIND_PROTO } else { 0 }) | if self.any { FW_KIND_ANY } else { 0 }
    }
}

/// The kind bits of class ids and `nic_config.fw_kinds`: the data path's
/// `FW_KIND_*` (hookd's tests check that both sides agree).
pub const FW_KIND_PROTO: u8 = 0x1;
pub const FW_KIND_ANY: u8 = 0x2;

impl Compiled {
    /// The lookups worth making, per class (0 included when it has rules).
    pub fn kinds(&self) -> std::collections::HashMap<u32, Kinds> {
        let mut m: std::collections::HashMap<u32, Kinds> = std::collections::HashMap::new();
        for (k, _) in &self.rules {
            let e = m.entry(k.class).or_default();
            if k.any {
                e.any = true;
            } else {
                e.proto = true;
            }
        }
        m
    }

    /// The data path's algorithm over these tables (used by tests, and to
    /// trace a packet without touching the kernel).
    pub fn lookup(&self, p: &Packet) -> (Action, Option<usize>) {
        let kinds = self.kinds();
        let addr = Prefix::host(p.remote);
        let class = self
            .classes
            .iter()
            .filter(|(pf, _)| pf.contains(addr))
            .max_by_key(|(pf, _)| pf.len)
            .map(|(_, c)| *c)
            .unwrap_or(0);
        let mut v: Option<Verdict> = None;
        let classes: &[u32] = if class == 0 { &[0] } else { &[class, 0] };
        for &c in classes {
            let k = kinds.get(&c).copied().unwrap_or_default();
            for (proto, any) in [(p.proto, false), (0, true)] {
                // Skipped as the data path skips it.
                if !(if any { k.any } else { k.proto }) {
                    continue;
                }
                let best = self
                    .rules
                    .iter()
                    .filter(|(k, _)| {
                        k.class == c && k.proto == proto && k.any == any && k.block.contains(p.port)
                    })
                    .max_by_key(|(k, _)| k.block.len);
                if let Some((_, found)) = best {
                    v = Some(stronger(v, *found));
                }
            }
        }
        match v {
            Some(v) if v.deny => (Action::Deny, Some(usize::from(v.rule))),
            Some(v) => (Action::Allow, Some(usize::from(v.rule))),
            None => (
                if self.default_deny {
                    Action::Deny
                } else {
                    Action::Allow
                },
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PROTO_SCTP, PROTO_TCP, PROTO_UDP, PortRange};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn port_ranges_split_into_aligned_blocks() {
        assert_eq!(port_blocks(22, 22), vec![PortBlock { value: 22, len: 16 }]);
        assert_eq!(port_blocks(0, 65535), vec![PortBlock::ALL]);
        let b = port_blocks(8000, 8080);
        let covered: u32 = b.iter().map(|b| 1u32 << (16 - b.len)).sum();
        assert_eq!(covered, 81);
        for p in 0..=65535u16 {
            assert_eq!(
                b.iter().any(|b| b.contains(p)),
                (8000..=8080).contains(&p),
                "{p}"
            );
        }
        assert!(port_blocks(1, 65535).len() <= 16);
    }

    /// xorshift: deterministic random policies without another dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // Few distinct values so that random rules overlap and nest.
    fn random_remote(rng: &mut Rng) -> Option<IpNet> {
        match rng.below(6) {
            0 | 1 => None,
            2 => Some(IpNet::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24).unwrap()),
            3 => {
                let len = [8u8, 16, 25, 28, 32][rng.below(5) as usize];
                let a = Ipv4Addr::new(198, 51, 100, rng.below(4) as u8 * 16 + 1);
                Some(IpNet::new(IpAddr::V4(a), len).unwrap().trunc())
            }
            4 => Some(
                IpNet::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                    32,
                )
                .unwrap(),
            ),
            _ => {
                let len = [48u8, 64, 127, 128][rng.below(4) as usize];
                let a = Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    rng.below(2) as u16,
                    0,
                    0,
                    0,
                    rng.below(4) as u16,
                );
                Some(IpNet::new(IpAddr::V6(a), len).unwrap().trunc())
            }
        }
    }

    fn random_rule(rng: &mut Rng) -> Rule {
        let protocol = match rng.below(6) {
            0 => Protocol::Any,
            1 => Protocol::Number(PROTO_UDP),
            2 => Protocol::Number(PROTO_ICMP),
            3 => Protocol::Number(PROTO_ICMPV6),
            4 => Protocol::Number(PROTO_SCTP),
            _ => Protocol::Number(PROTO_TCP),
        };
        let mut r = Rule {
            action: if rng.below(3) == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            protocol,
            ports: Vec::new(),
            icmp_type: None,
            icmp_code: None,
            remote: random_remote(rng),
            log: rng.below(4) == 0,
            line: 1,
        };
        if matches!(
            protocol,
            Protocol::Number(PROTO_TCP | PROTO_UDP | PROTO_SCTP)
        ) && rng.below(3) > 0
        {
            for _ in 0..=rng.below(3) {
                let a = rng.below(100) as u16 + 1;
                let b = a + rng.below(40) as u16;
                r.ports.push(PortRange { first: a, last: b });
            }
        }
        if matches!(protocol, Protocol::Number(PROTO_ICMP | PROTO_ICMPV6)) && rng.below(2) == 0 {
            r.icmp_type = Some(rng.below(4) as u8);
            if rng.below(2) == 0 {
                r.icmp_code = Some(rng.below(2) as u8);
            }
        }
        r
    }

    fn random_packet(rng: &mut Rng) -> Packet {
        let remote = if rng.below(2) == 0 {
            IpAddr::V4(Ipv4Addr::new(
                198,
                51,
                100 + rng.below(2) as u8,
                rng.below(80) as u8,
            ))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8 + rng.below(2) as u16,
                0,
                rng.below(2) as u16,
                0,
                0,
                0,
                rng.below(6) as u16,
            ))
        };
        let proto = [
            PROTO_TCP,
            PROTO_UDP,
            PROTO_ICMP,
            PROTO_ICMPV6,
            PROTO_SCTP,
            47,
        ][rng.below(6) as usize];
        let port = if matches!(proto, PROTO_ICMP | PROTO_ICMPV6) {
            (rng.below(5) as u16) << 8 | rng.below(3) as u16
        } else {
            rng.below(160) as u16
        };
        Packet {
            remote,
            proto,
            port,
        }
    }

    #[test]
    fn compiled_tables_agree_with_the_rule_by_rule_definition() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..300 {
            let n = 1 + rng.below(25) as usize;
            let dir = DirectionRules {
                default: if rng.below(2) == 0 {
                    Action::Allow
                } else {
                    Action::Deny
                },
                rules: (0..n).map(|_| random_rule(&mut rng)).collect(),
            };
            let c = compile(&dir);
            // The data path reads a class's lookups from its id's low bits.
            let kinds = c.kinds();
            for (_, id) in &c.classes {
                let k = kinds.get(id).copied().unwrap_or_default();
                assert_eq!(id & 3, u32::from(k.bits()), "round {round}: class {id}");
                assert_ne!(id & 3, 0, "round {round}: a class always has rules");
            }
            for _ in 0..200 {
                let p = random_packet(&mut rng);
                let want = reference_verdict(&dir, &p);
                let got = c.lookup(&p);
                assert_eq!(
                    got.0, want.0,
                    "round {round}: {p:?}\nrules: {:#?}",
                    dir.rules
                );
                assert_eq!(got.1, want.1, "round {round}: deciding rule for {p:?}");
            }
        }
    }

    #[test]
    fn deny_beats_a_more_specific_allow() {
        let net = |s: &str| Some(s.parse::<IpNet>().unwrap());
        let rule = |action, remote| Rule {
            action,
            protocol: Protocol::Number(PROTO_TCP),
            ports: vec![PortRange {
                first: 22,
                last: 22,
            }],
            icmp_type: None,
            icmp_code: None,
            remote,
            log: false,
            line: 1,
        };
        let dir = DirectionRules {
            default: Action::Allow,
            rules: vec![
                rule(Action::Deny, net("198.51.100.0/24")),
                rule(Action::Allow, net("198.51.100.5/32")),
            ],
        };
        let p = Packet {
            remote: "198.51.100.5".parse().unwrap(),
            proto: PROTO_TCP,
            port: 22,
        };
        assert_eq!(compile(&dir).lookup(&p), (Action::Deny, Some(0)));
    }
}
