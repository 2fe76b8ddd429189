//! The security-group firewall as docs/datapath.md "Security groups"
//! (Parsing, Per packet) and docs/policy.md "Security groups" state it:
//! the rules, judged one by one ("deny beats allow, else any allow, else
//! the direction's default"), fragments, ICMP errors about tracked
//! connections, network infrastructure, and connection tracking.

use super::conntrack::{Conntrack, CtKey, CtState, KeyKind};
use super::{
    ETH_LEN, ICMP, ICMPV6, MAX_EXT, Policy,
    Reason::*,
    SCTP, TCP, UDP,
    Verdict::{self, *},
    be16, byte, ext_step, is_ext, v4, v6,
};
use crate::policy::{Action, Direction, DirectionRules, Protocol, Rule};
use ipnet::IpNet;
use std::net::Ipv6Addr;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// The fragment fields of a packet that is part of a fragmented datagram.
#[derive(Debug, Clone, Copy)]
struct Frag {
    id: u32,
    /// In bytes.
    offset: u32,
    /// Where its IP payload ends, from the start of the frame, as its
    /// header's length field says.
    end: usize,
}

/// A packet as the firewall parses it ("Parsing").
#[derive(Debug, Clone, Copy)]
struct Flow {
    proto: u8,
    /// Addresses in the 128-bit form: IPv4 mapped.
    src: Ipv6Addr,
    dst: Ipv6Addr,
    later_frag: bool,
    frag: Option<Frag>,
    l4: usize,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp_type: u8,
    icmp_code: u8,
}

impl Flow {
    fn is_icmp(&self) -> bool {
        self.proto == ICMP || self.proto == ICMPV6
    }

    fn is_echo(&self) -> bool {
        (self.proto == ICMP && matches!(self.icmp_type, 0 | 8))
            || (self.proto == ICMPV6 && matches!(self.icmp_type, 128 | 129))
    }

    fn is_echo_request(&self) -> bool {
        self.is_echo() && matches!(self.icmp_type, 8 | 128)
    }

    fn is_icmp_error(&self) -> bool {
        (self.proto == ICMP && matches!(self.icmp_type, 3 | 11 | 12))
            || (self.proto == ICMPV6 && (1..=4).contains(&self.icmp_type))
    }

    /// What conntrack tracks: TCP, UDP, SCTP, ICMP echo.
    fn tracked(&self) -> bool {
        matches!(self.proto, TCP | UDP | SCTP) || self.is_echo()
    }

    /// The port rules match: the destination port, ICMP type << 8 | code,
    /// 0 for other protocols.
    fn rule_port(&self) -> u16 {
        match self.proto {
            ICMP | ICMPV6 => u16::from(self.icmp_type) << 8 | u16::from(self.icmp_code),
            TCP | UDP | SCTP => self.dport,
            _ => 0,
        }
    }

    /// The other end: the source of ingress traffic, the destination of egress.
    fn remote(&self, dir: Direction) -> Ipv6Addr {
        match dir {
            Direction::Ingress => self.src,
            Direction::Egress => self.dst,
        }
    }

    /// The conntrack key of this packet seen in direction `dir`.
    fn key(&self, dir: Direction) -> CtKey {
        let (vm_addr, remote_addr, vm_port, remote_port) = match dir {
            Direction::Egress => (self.src, self.dst, self.sport, self.dport),
            Direction::Ingress => (self.dst, self.src, self.dport, self.sport),
        };
        CtKey {
            proto: self.proto,
            kind: KeyKind::Connection,
            vm_addr,
            remote_addr,
            vm_port,
            remote_port,
        }
    }

    /// The key of the fragments of this packet's datagram, in `dir`.
    fn fragments_key(&self, dir: Direction, id: u32) -> CtKey {
        CtKey {
            kind: KeyKind::Fragments,
            vm_port: (id >> 16) as u16,
            remote_port: id as u16,
            ..self.key(dir)
        }
    }
}

/// The smallest L4 header of `proto`: what a first fragment must hold and
/// no later fragment may overlap.
fn l4_min(proto: u8) -> u32 {
    match proto {
        TCP => 20,
        SCTP => 12,
        UDP | ICMP | ICMPV6 => 8,
        _ => 0,
    }
}

/// The IP header at `l3` (IPv6 when `ipv6`) and its extension headers;
/// None when malformed. The L4 fields are read by [`read_l4`].
fn parse_ip(f: &[u8], l3: usize, ipv6: bool) -> Option<Flow> {
    let mut flow = Flow {
        proto: 0,
        src: Ipv6Addr::UNSPECIFIED,
        dst: Ipv6Addr::UNSPECIFIED,
        later_frag: false,
        frag: None,
        l4: 0,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    if !ipv6 {
        let vihl = byte(f, l3)?;
        if f.len() < l3 + 20 || vihl >> 4 != 4 || vihl & 0xf < 5 {
            return None;
        }
        let word = be16(f, l3 + 6)?;
        flow.proto = f[l3 + 9];
        flow.src = v4(f, l3 + 12)?.to_ipv6_mapped();
        flow.dst = v4(f, l3 + 16)?.to_ipv6_mapped();
        flow.l4 = l3 + usize::from(vihl & 0xf) * 4;
        flow.later_frag = word & 0x1fff != 0;
        if word & 0x3fff != 0 {
            flow.frag = Some(Frag {
                id: u32::from(be16(f, l3 + 4)?),
                offset: u32::from(word & 0x1fff) * 8,
                end: l3 + usize::from(be16(f, l3 + 2)?),
            });
        }
        return Some(flow);
    }
    if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return None;
    }
    flow.src = v6(f, l3 + 8)?;
    flow.dst = v6(f, l3 + 24)?;
    let end = l3 + 40 + usize::from(be16(f, l3 + 4)?);
    let (mut nh, mut off) = (f[l3 + 6], l3 + 40);
    for _ in 0..MAX_EXT {
        if !is_ext(nh) {
            break;
        }
        let (next, next_off, frag) = ext_step(f, nh, off)?;
        // Not an atomic fragment (offset 0 without more fragments).
        if let Some((offset, _, id)) = frag.filter(|(o, m, _)| *o != 0 || *m) {
            flow.frag = Some(Frag {
                id,
                offset: u32::from(offset),
                end,
            });
            if offset != 0 {
                // A later fragment: what follows is data, not headers.
                flow.later_frag = true;
                nh = next;
                off = next_off;
                break;
            }
        }
        nh = next;
        off = next_off;
    }
    if is_ext(nh) && !flow.later_frag {
        return None;
    }
    flow.proto = nh;
    flow.l4 = off;
    Some(flow)
}

/// What the network stage reads of an IP frame: the family, the L4
/// protocol and offset, the destination, whether it is a later fragment.
pub(super) struct IpInfo {
    pub ipv6: bool,
    pub proto: u8,
    pub dst: Ipv6Addr,
    pub later_frag: bool,
    pub l4: usize,
}

impl IpInfo {
    /// Whether the L4 header is there to read, as the firewall reads it
    /// (a later fragment has none).
    pub fn l4_readable(&self, f: &[u8]) -> bool {
        let mut flow = parse_ip(f, ETH_LEN, self.ipv6);
        !self.later_frag && flow.as_mut().is_some_and(|fl| read_l4(f, fl).is_some())
    }
}

/// The IP header of an IPv4 or IPv6 frame; None for other EtherTypes and
/// headers that do not parse.
pub(super) fn parse_ip_of(f: &[u8]) -> Option<IpInfo> {
    let ipv6 = match be16(f, 12)? {
        0x0800 => false,
        0x86dd => true,
        _ => return None,
    };
    let flow = parse_ip(f, ETH_LEN, ipv6)?;
    Some(IpInfo {
        ipv6,
        proto: flow.proto,
        dst: flow.dst,
        later_frag: flow.later_frag,
        l4: flow.l4,
    })
}

/// Reads the L4 fields; None when the header is shorter than the firewall
/// reads (TCP 14 bytes, UDP and SCTP 4, ICMP 8). Later fragments have none.
fn read_l4(f: &[u8], flow: &mut Flow) -> Option<()> {
    if flow.later_frag {
        return Some(());
    }
    let at = flow.l4;
    let need = match flow.proto {
        TCP => 14,
        UDP | SCTP => 4,
        ICMP | ICMPV6 => 8,
        _ => return Some(()),
    };
    if f.len() < at + need {
        return None;
    }
    if flow.is_icmp() {
        flow.icmp_type = f[at];
        flow.icmp_code = f[at + 1];
        // The echo identifier, both ways.
        flow.sport = be16(f, at + 4)?;
        flow.dport = flow.sport;
    } else {
        flow.sport = be16(f, at)?;
        flow.dport = be16(f, at + 2)?;
        if flow.proto == TCP {
            flow.tcp_flags = f[at + 13];
        }
    }
    Some(())
}

fn mapped(n: &IpNet) -> (Ipv6Addr, u8) {
    match n {
        IpNet::V4(n) => (n.network().to_ipv6_mapped(), n.prefix_len() + 96),
        IpNet::V6(n) => (n.network(), n.prefix_len()),
    }
}

fn prefix_contains(n: &IpNet, a: Ipv6Addr) -> bool {
    let (net, len) = mapped(n);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    u128::from(a) & mask == u128::from(net)
}

/// Does `rule` match `flow`, whose other end is `remote`?
fn matches(rule: &Rule, flow: &Flow, remote: Ipv6Addr) -> bool {
    let proto = match rule.protocol {
        Protocol::Any => true,
        Protocol::Number(n) => n == flow.proto,
    };
    let port = flow.rule_port();
    let ports = rule.ports.is_empty()
        || rule
            .ports
            .iter()
            .any(|r| (r.first..=r.last).contains(&port));
    let icmp = rule.icmp_type.is_none_or(|t| flow.icmp_type == t)
        && rule.icmp_code.is_none_or(|c| flow.icmp_code == c);
    let remote = rule
        .remote
        .as_ref()
        .is_none_or(|n| prefix_contains(n, remote));
    proto && ports && icmp && remote
}

/// The rules' verdict: the first matching deny, else the first matching
/// allow (the deciding rule, by index), else the default.
fn judge(rules: &DirectionRules, flow: &Flow, dir: Direction) -> (Action, Option<usize>) {
    let remote = flow.remote(dir);
    let first = |a: Action| {
        rules
            .rules
            .iter()
            .position(|r| r.action == a && matches(r, flow, remote))
    };
    if let Some(i) = first(Action::Deny) {
        return (Action::Deny, Some(i));
    }
    if let Some(i) = first(Action::Allow) {
        return (Action::Allow, Some(i));
    }
    (rules.default, None)
}

/// Network infrastructure that passes the rules (docs/policy.md):
/// neighbour discovery and MLD both ways, the VM's DHCP client traffic.
fn infrastructure(flow: &Flow, dir: Direction) -> bool {
    match (flow.proto, dir) {
        (ICMPV6, _) => (130..=137).contains(&flow.icmp_type) || flow.icmp_type == 143,
        (UDP, Direction::Ingress) => matches!((flow.sport, flow.dport), (67, 68) | (547, 546)),
        (UDP, Direction::Egress) => matches!((flow.sport, flow.dport), (68, 67) | (546, 547)),
        _ => false,
    }
}

fn opposite(dir: Direction) -> Direction {
    match dir {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

/// The firewall stage on an IP frame in direction `dir`, of a NIC whose
/// firewall is on. Non-IP frames pass.
pub(super) fn stage(f: &[u8], dir: Direction, policy: &Policy, ct: &mut Conntrack) -> Verdict {
    let ipv6 = match be16(f, 12) {
        Some(0x0800) => false,
        Some(0x86dd) => true,
        _ => return Pass,
    };
    let Some(mut flow) = parse_ip(f, ETH_LEN, ipv6) else {
        return Drop(Malformed);
    };
    if read_l4(f, &mut flow).is_none() {
        return Drop(Malformed);
    }
    // IPv4-mapped addresses in an IPv6 header would meet IPv4 rules.
    if ipv6 && (flow.src.to_ipv4_mapped().is_some() || flow.dst.to_ipv4_mapped().is_some()) {
        return Drop(Malformed);
    }
    let rules = policy.rules(dir);
    // Step 1: fragments.
    if rules.is_none() && flow.later_frag {
        ct.passed("later fragment, no element");
        return Pass;
    }
    if let (Some(_), Some(frag)) = (rules, flow.frag) {
        if flow.later_frag {
            if frag.offset < l4_min(flow.proto) {
                return Drop(Fragment);
            }
            if !ct.entries.contains_key(&flow.fragments_key(dir, frag.id)) {
                return Drop(Fragment);
            }
            ct.passed("later fragment of a passed first");
            return Pass;
        }
        if flow.l4 + l4_min(flow.proto) as usize > frag.end {
            return Drop(Fragment);
        }
        let v = connection(f, &flow, dir, rules, ct, ipv6);
        if v == Pass {
            ct.open(flow.fragments_key(dir, frag.id), dir);
        }
        return v;
    }
    connection(f, &flow, dir, rules, ct, ipv6)
}

/// Steps 2 to 5 on a whole packet or a first fragment.
fn connection(
    f: &[u8],
    flow: &Flow,
    dir: Direction,
    rules: Option<&DirectionRules>,
    ct: &mut Conntrack,
    ipv6: bool,
) -> Verdict {
    if infrastructure(flow, dir) {
        ct.passed("infrastructure");
        return Pass;
    }
    // Step 2: an ICMP error about a tracked connection: the packet it
    // quotes went the other way.
    if flow.is_icmp_error() {
        let quoted =
            parse_ip(f, flow.l4 + 8, ipv6).and_then(|mut q| read_l4(f, &mut q).map(|()| q));
        if let Some(q) = quoted
            && ct.entries.contains_key(&q.key(opposite(dir)))
        {
            ct.passed("ICMP error about a tracked connection");
            return Pass;
        }
    }
    // Step 3: a tracked connection passes without the rules.
    let key = flow.key(dir);
    if flow.tracked()
        && let Some(e) = ct.entries.get_mut(&key)
    {
        if flow.proto == TCP {
            if flow.tcp_flags & RST != 0 {
                ct.entries.remove(&key);
            } else if flow.tcp_flags & FIN != 0 {
                e.state = CtState::Closing;
            } else if e.state == CtState::New
                && dir != e.origin
                && flow.tcp_flags & (SYN | ACK) == SYN | ACK
            {
                e.state = CtState::Established;
            }
        } else if dir != e.origin {
            e.state = CtState::Established;
        }
        ct.passed("tracked connection");
        return Pass;
    }
    // Step 4: the rules.
    let how = match rules {
        None => "no element",
        Some(rules) => {
            let (action, rule) = judge(rules, flow, dir);
            if let Some(i) = rule {
                *ct.hits.entry((dir, i)).or_default() += 1;
            }
            match (action, rule) {
                (Action::Deny, Some(_)) => return Drop(FwRule),
                (Action::Deny, None) => return Drop(FwDefault),
                (Action::Allow, Some(_)) => "an allow rule",
                (Action::Allow, None) => "default allow",
            }
        }
    };
    // Step 5: what a packet the rules passed opens.
    if flow.tracked() {
        if flow.proto == TCP && flow.tcp_flags & (SYN | ACK | RST) != SYN {
            if rules.is_some() {
                return Drop(CtInvalid);
            }
        } else if !flow.is_icmp() || flow.is_echo_request() {
            ct.open(key, dir);
        }
    }
    ct.passed(how);
    Pass
}

#[cfg(test)]
mod tests {
    use super::super::FRAGMENT;
    use super::super::{Nic, frame_from_vm, frame_to_vm};
    use super::*;
    use crate::plan::AntiSpoofing;
    use crate::policy::PortRange;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
    const VM: [u8; 4] = [192, 0, 2, 10];
    const REMOTE: [u8; 4] = [198, 51, 100, 7];

    fn rule(action: Action, proto: u8, ports: &[(u16, u16)], remote: Option<&str>) -> Rule {
        Rule {
            action,
            protocol: Protocol::Number(proto),
            ports: ports
                .iter()
                .map(|&(first, last)| PortRange { first, last })
                .collect(),
            icmp_type: None,
            icmp_code: None,
            remote: remote.map(|r| r.parse().unwrap()),
            log: false,
            line: 1,
        }
    }

    fn eth(to_vm: bool, ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let other = [2, 0, 0, 0, 0, 1];
        let (dst, src) = if to_vm { (MAC, other) } else { (other, MAC) };
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            7,
            0,
            0,
            64,
            proto,
            0,
            0,
        ];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(l4);
        h
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[5] = 8;
        u
    }

    fn icmp(kind: u8, id: u16, rest: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
        m.extend_from_slice(rest);
        m
    }

    fn to_vm(proto: u8, l4: &[u8]) -> Vec<u8> {
        eth(true, 0x0800, &ip4(REMOTE, VM, proto, l4))
    }

    fn from_vm(proto: u8, l4: &[u8]) -> Vec<u8> {
        eth(false, 0x0800, &ip4(VM, REMOTE, proto, l4))
    }

    struct Fixture {
        anti: AntiSpoofing,
        ingress: Option<DirectionRules>,
        egress: Option<DirectionRules>,
        ct: Conntrack,
    }

    impl Fixture {
        fn new(ingress: Option<DirectionRules>, egress: Option<DirectionRules>) -> Fixture {
            Fixture {
                anti: AntiSpoofing {
                    prefixes: vec!["192.0.2.10/32".parse().unwrap()],
                    ..Default::default()
                },
                ingress,
                egress,
                ct: Conntrack::default(),
            }
        }

        fn run(&mut self, to: bool, f: &[u8]) -> Verdict {
            let p = Policy {
                nic: Nic {
                    mac: MAC,
                    anti_spoofing: &self.anti,
                },
                ingress: self.ingress.as_ref(),
                egress: self.egress.as_ref(),
            };
            if to {
                frame_to_vm(f, &p, &mut self.ct)
            } else {
                frame_from_vm(f, &p, &mut self.ct)
            }
        }
    }

    fn deny_all_but(rules: Vec<Rule>) -> Option<DirectionRules> {
        Some(DirectionRules {
            default: Action::Deny,
            rules,
        })
    }

    #[test]
    fn deny_beats_allow_else_allow_else_default() {
        let mut x = Fixture::new(
            deny_all_but(vec![
                rule(Action::Allow, TCP, &[(22, 22)], Some("198.51.100.0/24")),
                rule(Action::Deny, TCP, &[(1, 1024)], Some("198.51.100.7/32")),
                rule(Action::Allow, UDP, &[(53, 53)], None),
            ]),
            None,
        );
        assert_eq!(x.run(true, &to_vm(TCP, &tcp(4000, 22, SYN))), Drop(FwRule));
        assert_eq!(x.run(true, &to_vm(UDP, &udp(4000, 53))), Pass);
        assert_eq!(x.run(true, &to_vm(UDP, &udp(4000, 54))), Drop(FwDefault));
        assert_eq!(x.ct.hits.get(&(Direction::Ingress, 1)), Some(&1));
        assert_eq!(x.ct.hits.get(&(Direction::Ingress, 2)), Some(&1));
        // A missing direction allows; ARP and the like pass the firewall.
        assert_eq!(x.run(false, &from_vm(UDP, &udp(4000, 9))), Pass);
        assert_eq!(x.run(true, &eth(true, 0x0806, &[0; 28])), Pass);
    }

    #[test]
    fn a_tcp_connection_opens_replies_and_closes() {
        let mut x = Fixture::new(deny_all_but(vec![]), None);
        // Stray segments in a direction with an element; a SYN out opens.
        assert_eq!(
            x.run(true, &to_vm(TCP, &tcp(443, 5000, ACK))),
            Drop(FwDefault)
        );
        assert_eq!(x.run(false, &from_vm(TCP, &tcp(5000, 443, ACK))), Pass);
        assert_eq!(x.run(false, &from_vm(TCP, &tcp(5000, 443, SYN))), Pass);
        assert_eq!(x.run(true, &to_vm(TCP, &tcp(443, 5000, SYN | ACK))), Pass);
        let state = |x: &Fixture| x.ct.entries.values().next().map(|e| e.state);
        assert_eq!(state(&x), Some(CtState::Established));
        assert_eq!(x.run(true, &to_vm(TCP, &tcp(443, 5000, FIN | ACK))), Pass);
        assert_eq!(state(&x), Some(CtState::Closing));
        assert_eq!(x.run(true, &to_vm(TCP, &tcp(443, 5000, RST))), Pass);
        assert!(x.ct.entries.is_empty());
        assert_eq!(
            x.run(true, &to_vm(TCP, &tcp(443, 5000, ACK))),
            Drop(FwDefault)
        );
    }

    #[test]
    fn stray_segments_the_rules_allow_are_ct_invalid() {
        let mut x = Fixture::new(
            deny_all_but(vec![rule(Action::Allow, TCP, &[(22, 22)], None)]),
            None,
        );
        assert_eq!(
            x.run(true, &to_vm(TCP, &tcp(4000, 22, ACK))),
            Drop(CtInvalid)
        );
        assert_eq!(
            x.run(true, &to_vm(TCP, &tcp(4000, 22, SYN | ACK))),
            Drop(CtInvalid)
        );
        assert_eq!(x.run(true, &to_vm(TCP, &tcp(4000, 22, SYN))), Pass);
        // The VM answers even though egress would refuse.
        x.egress = deny_all_but(vec![]);
        assert_eq!(x.run(false, &from_vm(TCP, &tcp(22, 4000, SYN | ACK))), Pass);
        assert_eq!(x.ct.hits.get(&(Direction::Ingress, 0)), Some(&3));
    }

    #[test]
    fn echo_and_udp_replies_and_icmp_errors() {
        let mut x = Fixture::new(deny_all_but(vec![]), None);
        assert_eq!(x.run(true, &to_vm(ICMP, &icmp(0, 9, &[]))), Drop(FwDefault));
        assert_eq!(x.run(false, &from_vm(ICMP, &icmp(8, 9, &[]))), Pass);
        assert_eq!(x.run(true, &to_vm(ICMP, &icmp(0, 9, &[]))), Pass);
        assert_eq!(
            x.run(true, &to_vm(ICMP, &icmp(0, 10, &[]))),
            Drop(FwDefault)
        );
        // An error quoting the VM's UDP datagram passes; one about another does not.
        assert_eq!(x.run(false, &from_vm(UDP, &udp(5000, 53))), Pass);
        let quote = ip4(VM, REMOTE, UDP, &udp(5000, 53));
        assert_eq!(x.run(true, &to_vm(ICMP, &icmp(3, 0, &quote))), Pass);
        let other = ip4(VM, REMOTE, UDP, &udp(5001, 53));
        assert_eq!(
            x.run(true, &to_vm(ICMP, &icmp(3, 0, &other))),
            Drop(FwDefault)
        );
        // The reply establishes the flow.
        assert_eq!(x.run(true, &to_vm(UDP, &udp(53, 5000))), Pass);
        let udp_key = x.ct.entries.iter().find(|(k, _)| k.proto == UDP);
        assert_eq!(udp_key.map(|(_, e)| e.state), Some(CtState::Established));
        // Infrastructure: DHCP replies to the VM's client port.
        assert_eq!(x.run(true, &to_vm(UDP, &udp(67, 68))), Pass);
    }

    #[test]
    fn later_fragments_take_their_first_fragments_verdict() {
        let mut x = Fixture::new(
            deny_all_but(vec![rule(Action::Allow, UDP, &[(53, 53)], None)]),
            None,
        );
        let frag = |id: u16, word: u16, l4: &[u8]| {
            let mut ip = ip4(REMOTE, VM, UDP, l4);
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6..8].copy_from_slice(&word.to_be_bytes());
            eth(true, 0x0800, &ip)
        };
        const MF: u16 = 0x2000;
        assert_eq!(x.run(true, &frag(1, 1, &[0; 16])), Drop(Fragment));
        assert_eq!(x.run(true, &frag(1, MF, &udp(4000, 53))), Pass);
        assert_eq!(x.run(true, &frag(1, 1, &[0; 16])), Pass);
        assert_eq!(x.run(true, &frag(1, 0, &[0; 16])), Drop(FwDefault));
        assert_eq!(x.run(true, &frag(2, MF, &udp(4000, 54))), Drop(FwDefault));
        assert_eq!(x.run(true, &frag(2, 1, &[0; 16])), Drop(Fragment));
        // A first fragment without its whole UDP header.
        assert_eq!(
            x.run(true, &frag(3, MF, &udp(4000, 53)[..4])),
            Drop(Fragment)
        );
    }

    #[test]
    fn truncated_l4_headers_are_malformed_in_either_direction() {
        let mut x = Fixture::new(None, deny_all_but(vec![]));
        assert_eq!(
            x.run(true, &to_vm(TCP, &tcp(1, 2, SYN)[..13])),
            Drop(Malformed)
        );
        assert_eq!(
            x.run(true, &to_vm(ICMP, &icmp(8, 1, &[])[..7])),
            Drop(Malformed)
        );
        assert_eq!(x.run(true, &to_vm(UDP, &udp(1, 2)[..4])), Pass);
        assert_eq!(
            x.run(false, &from_vm(TCP, &tcp(1, 2, SYN)[..13])),
            Drop(Malformed)
        );
    }

    fn ip6(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn ipv6_fragments_errors_and_neighbour_discovery() {
        let mut x = Fixture::new(deny_all_but(vec![]), None);
        x.anti.prefixes = vec!["2001:db8::10/128".parse().unwrap()];
        let (vm, remote) = ("2001:db8::10", "2001:db8:100::7");
        let out = |l4: &[u8]| eth(false, 0x86dd, &ip6(vm, remote, UDP, l4));
        let frag = |offset_word: u16, l4: &[u8]| {
            let mut fh = vec![UDP, 0];
            fh.extend_from_slice(&offset_word.to_be_bytes());
            fh.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            fh.extend_from_slice(l4);
            eth(true, 0x86dd, &ip6(remote, vm, FRAGMENT, &fh))
        };
        // The VM's datagram opens the flow: the reply's fragments pass.
        assert_eq!(x.run(false, &out(&udp(5000, 53))), Pass);
        assert_eq!(x.run(true, &frag(16, &[0; 16])), Drop(Fragment));
        assert_eq!(x.run(true, &frag(1, &udp(53, 5000))), Pass);
        assert_eq!(x.run(true, &frag(16, &[0; 16])), Pass);
        // An ICMPv6 error quoting the VM's datagram, from a router.
        let quote = ip6(vm, remote, UDP, &udp(5000, 53));
        let mut err = vec![1, 4, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quote);
        let to = eth(true, 0x86dd, &ip6("2001:db8:ff::fe", vm, ICMPV6, &err));
        assert_eq!(x.run(true, &to), Pass);
        // Neighbour discovery passes whatever the rules say.
        let ns = eth(true, 0x86dd, &ip6(remote, vm, ICMPV6, &[135; 24]));
        assert_eq!(x.run(true, &ns), Pass);
        let echo = eth(true, 0x86dd, &ip6(remote, vm, ICMPV6, &icmp(128, 1, &[])));
        assert_eq!(x.run(true, &echo), Drop(FwDefault));
        assert_eq!(x.ct.passed_by.get("infrastructure"), Some(&1));
    }
}
