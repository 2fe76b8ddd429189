//! The reference model of hookd's per-packet decision, written from the
//! rules that docs/datapath.md ("Anti-spoofing, frame by frame", "Security
//! groups") and docs/policy.md ("Security groups") state, not from the C
//! programs. The differential tests (hookd/tests/differential.rs) run
//! random and mutated frames through the kernel's programs and through this
//! model and compare verdict, drop reason and counters.
//!
//! What it covers: anti-spoofing of frames from the VM ([`antispoof`]), and
//! the stateful security-group firewall in both directions ([`firewall`]:
//! rules, fragments, ICMP errors; [`conntrack`]: the table the model keeps
//! of its own), and for a NIC on one of hookd's networks the network
//! stage ([`network`]: answers, switching, routing, flooding) and the
//! network's servers ([`answers`]: DHCPv4, router advertisements, DHCPv6).
//! Conntrack timeouts are left out: a caller that never waits 30 s sees
//! no entry expire. Every byte it reads
//! is at an offset those rules name; a read past the frame's end is a
//! truncated header.

pub mod answers;
pub mod antispoof;
pub mod conntrack;
pub mod firewall;
pub mod network;

use crate::plan::AntiSpoofing;
use crate::policy::{Direction, DirectionRules};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use antispoof::from_vm;
pub use conntrack::{Conntrack, CtKey, CtState, KeyKind};

/// Why a frame is dropped, by the names of docs/datapath.md's table of drop
/// reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    MacSpoof,
    IpSpoof,
    ArpSpoof,
    NdSpoof,
    DhcpServer,
    RouterAdvert,
    Vlan,
    Ethertype,
    Malformed,
    FwRule,
    FwDefault,
    CtInvalid,
    Fragment,
    NoRoute,
    UnknownUnicast,
    NotForwarded,
    Ttl,
    TenantMismatch,
    FloodBound,
}

impl Reason {
    pub const ALL: [Reason; 19] = [
        Reason::MacSpoof,
        Reason::IpSpoof,
        Reason::ArpSpoof,
        Reason::NdSpoof,
        Reason::DhcpServer,
        Reason::RouterAdvert,
        Reason::Vlan,
        Reason::Ethertype,
        Reason::Malformed,
        Reason::FwRule,
        Reason::FwDefault,
        Reason::CtInvalid,
        Reason::Fragment,
        Reason::NoRoute,
        Reason::UnknownUnicast,
        Reason::NotForwarded,
        Reason::Ttl,
        Reason::TenantMismatch,
        Reason::FloodBound,
    ];

    /// The reason's index in the `drops` counters (the table's first column).
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The reason of counter `index`, where the model knows it.
    pub fn of_index(index: usize) -> Option<Reason> {
        Reason::ALL.get(index).copied()
    }
}

/// What happens to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Drop(Reason),
}

/// A NIC with anti-spoofing: its MAC and the plan's settings.
pub struct Nic<'a> {
    pub mac: [u8; 6],
    pub anti_spoofing: &'a AntiSpoofing,
}

impl Nic<'_> {
    fn inside(&self, a: IpAddr) -> bool {
        self.anti_spoofing.prefixes.iter().any(|p| match (p, a) {
            (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
            (IpNet::V6(n), IpAddr::V6(a)) => n.contains(&a),
            _ => false,
        })
    }

    fn checks_ip(&self) -> bool {
        self.anti_spoofing.checks_ip()
    }
}

/// A managed NIC as the model sees it: anti-spoofing, and the `ingress`
/// and `egress` elements of its interface (absent: the direction is
/// allowed; both absent: no firewall, nothing tracked).
pub struct Policy<'a> {
    pub nic: Nic<'a>,
    pub ingress: Option<&'a DirectionRules>,
    pub egress: Option<&'a DirectionRules>,
}

impl Policy<'_> {
    pub fn rules(&self, dir: Direction) -> Option<&DirectionRules> {
        match dir {
            Direction::Ingress => self.ingress,
            Direction::Egress => self.egress,
        }
    }

    pub fn firewall_on(&self) -> bool {
        self.ingress.is_some() || self.egress.is_some()
    }
}

/// The verdict on `frame`, sent by the VM: anti-spoofing, then the egress
/// firewall. Updates the model's conntrack table and rule hits in `state`.
pub fn frame_from_vm(frame: &[u8], policy: &Policy, state: &mut Conntrack) -> Verdict {
    let v = antispoof::from_vm(frame, &policy.nic);
    if v != Verdict::Pass || !policy.firewall_on() {
        return v;
    }
    firewall::stage(frame, Direction::Egress, policy, state)
}

/// The verdict on `frame`, delivered to the VM: the ingress firewall, on a
/// NIC that has one, else a pass.
pub fn frame_to_vm(frame: &[u8], policy: &Policy, state: &mut Conntrack) -> Verdict {
    if !policy.firewall_on() {
        return Verdict::Pass;
    }
    if frame.len() < ETH_LEN {
        return Verdict::Drop(Reason::Malformed);
    }
    firewall::stage(frame, Direction::Ingress, policy, state)
}

const ETH_LEN: usize = 14;
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;
/// IPv6 extension headers the chain walk knows, and the most it walks.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const DEST_OPTS: u8 = 60;
const MAX_EXT: usize = 4;

fn byte(f: &[u8], at: usize) -> Option<u8> {
    f.get(at).copied()
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([byte(f, at)?, byte(f, at + 1)?]))
}

fn be32(f: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(f.get(at..at + 4)?.try_into().ok()?))
}

fn v4(f: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = f.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn v6(f: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = f.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// A Fragment header's offset field (in bytes), M flag and ID.
type FragFields = (u16, bool, u32);

/// One step of the IPv6 extension-header walk at `off`, of header `nh`:
/// the next header, the next offset, and the fields of a Fragment header;
/// None when its first 8 bytes are missing.
fn ext_step(f: &[u8], nh: u8, off: usize) -> Option<(u8, usize, Option<FragFields>)> {
    if f.len() < off + 8 {
        return None;
    }
    let len = match nh {
        FRAGMENT => 8,
        AH => (usize::from(f[off + 1]) + 2) * 4,
        _ => (usize::from(f[off + 1]) + 1) * 8,
    };
    let frag = (nh == FRAGMENT).then(|| {
        let word = be16(f, off + 2).unwrap_or(0);
        (word & 0xfff8, word & 1 == 1, be32(f, off + 4).unwrap_or(0))
    });
    Some((f[off], off + len, frag))
}

fn is_ext(nh: u8) -> bool {
    matches!(nh, HOP_BY_HOP | ROUTING | FRAGMENT | AH | DEST_OPTS)
}
