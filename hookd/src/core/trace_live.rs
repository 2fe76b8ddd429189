//! `TraceLive` (`hookctl trace --live`): the described packet, as a frame,
//! through the tracing build of the NIC's attached programs on the live
//! maps (`datapath::trace`); the API sets the verdict of the rules as
//! `Trace` computes it from the policy beside it. The live answer includes
//! what the rules alone cannot know: the connection tracking state, the anti-spoofing
//! checks, the network stage. Nothing is written: no conntrack entry,
//! counter or hit.
//!
//! The frame and the reading of the programs' answer are pure, here; the
//! run is the data plane's.

use crate::core::Daemon;
use crate::core::error::DaemonError;
use crate::core::records::{DomainRecord, NicRecord};
use crate::core::trace::TraceQuery;
use crate::datapath::trace::LiveVerdict;
use etherparse::PacketBuilder;
use hookd_bpf::layout::{self, DropReason};
use hookd_model::policy::{Action, Direction};
use ipnet::IpNet;
use std::net::IpAddr;

/// The peer's MAC in a traced frame to a NIC that is on no network (a
/// locally administered address; the programs do not judge it).
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// The source port of a traced TCP or UDP packet (the VM's for egress,
/// the remote's for ingress).
pub const EPHEMERAL_PORT: u16 = 40000;

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;
const TC_ACT_UNSPEC: i32 = -1;

/// What `TraceLive` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAnswer {
    /// What the live programs do with the packet.
    pub action: Action,
    /// The stage that decided, and why, in words.
    pub stage: String,
    /// The NIC's address the packet is from (egress) or to (ingress).
    pub vm_address: IpAddr,
}

/// The NIC's address of `remote`'s family, as its policy gives it; its
/// EUI-64 link-local address (always allowed) only when it has no other.
pub fn vm_address(nic: &NicRecord, remote: IpAddr) -> Result<IpAddr, DaemonError> {
    let link_local = |a: &IpAddr| matches!(a, IpAddr::V6(v) if v.is_unicast_link_local());
    let mut own: Vec<IpAddr> = nic
        .addresses
        .iter()
        .filter_map(|a| a.parse::<IpNet>().ok())
        .map(|p| p.addr())
        .filter(|a| a.is_ipv4() == remote.is_ipv4())
        .collect();
    own.sort_by_key(link_local);
    own.first().copied().ok_or_else(|| {
        let family = if remote.is_ipv4() { "IPv4" } else { "IPv6" };
        DaemonError::InvalidArgument(format!(
            "NIC {} has no {family} address in its policy to trace a packet from or to",
            nic.mac
        ))
    })
}

/// The Ethernet frame of the described packet: a TCP SYN (a new
/// connection), a UDP datagram, an ICMP or ICMPv6 message of the given type
/// and code, or a bare IP header of another protocol; from the VM's `vm`
/// address and `mac` to the remote (egress), or the other way (ingress).
pub fn frame(
    q: &TraceQuery,
    vm: IpAddr,
    mac: [u8; 6],
    peer_mac: [u8; 6],
) -> Result<Vec<u8>, DaemonError> {
    let egress = q.direction == Direction::Egress;
    let (src_mac, dst_mac) = if egress {
        (mac, peer_mac)
    } else {
        (peer_mac, mac)
    };
    let (src, dst) = if egress {
        (vm, q.remote)
    } else {
        (q.remote, vm)
    };
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => {
            return Err(DaemonError::InvalidArgument(
                "the VM's and the remote address are of different families".into(),
            ));
        }
    };
    let payload = [0u8; 8];
    let mut out = Vec::new();
    let written = match q.protocol {
        6 => ip
            .tcp(EPHEMERAL_PORT, q.port, 1, 64240)
            .syn()
            .write(&mut out, &payload),
        17 => ip.udp(EPHEMERAL_PORT, q.port).write(&mut out, &payload),
        1 => ip
            .icmpv4_raw(q.icmp_type, q.icmp_code, [0; 4])
            .write(&mut out, &payload),
        58 => ip
            .icmpv6_raw(q.icmp_type, q.icmp_code, [0; 4])
            .write(&mut out, &payload),
        p => ip.write(&mut out, etherparse::IpNumber(p), &payload),
    };
    written.map_err(|e| DaemonError::Internal(format!("building the traced frame: {e}")))?;
    Ok(out)
}

fn stage_of(r: DropReason) -> &'static str {
    match r as usize {
        0..=8 => "anti-spoofing",
        9..=12 => "firewall",
        _ => "network stage",
    }
}

/// The live verdict in words: the action, and the stage that decided.
pub fn read_verdict(
    v: &LiveVerdict,
    direction: Direction,
    nic: &NicRecord,
) -> Result<(Action, String), DaemonError> {
    let name = direction.to_string();
    if v.action == TC_ACT_SHOT {
        let reason = DropReason::ALL
            .get(usize::from(v.note.reason))
            .filter(|_| v.note.dropped == 1)
            .copied();
        let why = match reason {
            Some(r) => format!("dropped by {}: {} ({})", stage_of(r), r.name(), r.about()),
            None => "dropped, without a reason noted".to_string(),
        };
        return Ok((Action::Deny, why));
    }
    if ![TC_ACT_OK, TC_ACT_UNSPEC, TC_ACT_REDIRECT].contains(&v.action) {
        return Err(DaemonError::Internal(format!(
            "the traced program returned tc action {}",
            v.action
        )));
    }
    let dir = usize::from(crate::datapath::dir_value(direction));
    let rule = v.note.rule[dir];
    let firewall = match v.note.how[dir] {
        layout::TRACE_NOT_REACHED if nic.rules.is_empty() => {
            "the NIC has no security-group rules".to_string()
        }
        layout::TRACE_NOT_REACHED => format!("the {name} firewall did not judge it"),
        layout::TRACE_FW_OFF => format!("no <hookd:{name}> element: {name} is allowed"),
        layout::TRACE_INFRASTRUCTURE => {
            "neighbour discovery, MLD or DHCP, which security groups leave alone".into()
        }
        layout::TRACE_RELATED => "an ICMP error about a tracked connection".into(),
        layout::TRACE_ESTABLISHED => "a packet of a tracked connection (conntrack)".into(),
        layout::TRACE_RULE => match nic
            .rules
            .iter()
            .find(|r| r.direction == direction && r.index == rule)
        {
            Some(r) => format!("{name} rule at line {}: {}", r.line, r.text),
            None => format!("{name} rule #{rule}"),
        },
        layout::TRACE_DEFAULT => format!("no {name} rule matches: default allow"),
        layout::TRACE_FRAGMENT => "a later fragment of an allowed datagram".into(),
        other => format!("firewall note {other}"),
    };
    let end = if v.action == TC_ACT_REDIRECT {
        "; then sent on by the network stage (switched, routed or answered)"
    } else {
        ""
    };
    Ok((Action::Allow, format!("passed: {firewall}{end}")))
}

impl Daemon {
    /// See the module: the live verdict of the NIC's programs for `q`.
    pub fn trace_live(&mut self, domain: &str, q: &TraceQuery) -> Result<LiveAnswer, DaemonError> {
        let rec: DomainRecord = self
            .find(domain)
            .cloned()
            .ok_or_else(|| DaemonError::NotFound(domain.to_string()))?;
        let mac = q.mac.to_string();
        let nic = rec.nics.iter().find(|n| n.mac == mac).ok_or_else(|| {
            DaemonError::InvalidArgument(format!("domain {domain} has no NIC {mac}"))
        })?;
        if !nic.attached() {
            return Err(DaemonError::InvalidArgument(format!(
                "NIC {mac} of {domain} has no programs attached (tap {}): nothing live to trace",
                if nic.tap.is_empty() { "none" } else { &nic.tap }
            )));
        }
        let vm = vm_address(nic, q.remote)?;
        let peer = match nic.network.as_deref().and_then(|n| self.networks.get(n)) {
            Some(d) => hookd_model::network::gateway_mac(d.network.vni).0,
            None => PEER_MAC,
        };
        let frame = frame(q, vm, q.mac.0, peer)?;
        let to_vm = q.direction == Direction::Ingress;
        let verdict = self
            .dp
            .trace_live(nic.ifindex, to_vm, &frame)
            .map_err(|e| DaemonError::AttachFailed {
                mac: mac.clone(),
                tap: nic.tap.clone(),
                source: Box::new(e),
            })?;
        let (action, stage) = read_verdict(&verdict, q.direction, nic)?;
        tracing::debug!(domain, mac, tap = %nic.tap, action = %action, stage, "traced a packet through the live programs");
        Ok(LiveAnswer {
            action,
            stage,
            vm_address: vm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn query(direction: Direction, remote: &str, protocol: u8, port: u16) -> TraceQuery {
        TraceQuery {
            mac: "52:54:00:00:00:0a".parse().unwrap(),
            direction,
            remote: remote.parse().unwrap(),
            protocol,
            port,
            icmp_type: 8,
            icmp_code: 0,
        }
    }

    #[test]
    fn an_ingress_tcp_trace_is_a_syn_from_the_remote_to_the_vm() {
        let q = query(Direction::Ingress, "198.51.100.7", 6, 443);
        let mac = q.mac.0;
        let f = frame(&q, "192.0.2.10".parse().unwrap(), mac, PEER_MAC).unwrap();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), [198, 51, 100, 7]);
        assert_eq!(ip.header().destination(), [192, 0, 2, 10]);
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP")
        };
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!(
            (tcp.source_port(), tcp.destination_port()),
            (EPHEMERAL_PORT, 443)
        );
        assert_eq!(&f[0..6], &mac);
    }

    #[test]
    fn an_egress_icmpv6_trace_carries_its_type_and_an_odd_protocol_a_bare_header() {
        let mut q = query(Direction::Egress, "2001:db8::1", 58, 0);
        q.icmp_type = 128;
        let f = frame(&q, "2001:db8::10".parse().unwrap(), q.mac.0, PEER_MAC).unwrap();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.type_u8(), 128);
        assert_eq!(&f[6..12], &q.mac.0);
        let q = query(Direction::Egress, "2001:db8::1", 47, 0);
        let f = frame(&q, "2001:db8::10".parse().unwrap(), q.mac.0, PEER_MAC).unwrap();
        assert_eq!(f[14 + 6], 47, "IPv6 next header");
    }

    #[test]
    fn mixed_families_are_refused() {
        let q = query(Direction::Egress, "2001:db8::1", 17, 53);
        assert!(frame(&q, "192.0.2.10".parse().unwrap(), q.mac.0, PEER_MAC).is_err());
    }
}
