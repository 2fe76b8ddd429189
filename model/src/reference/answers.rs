//! The network's own servers at a network NIC's tap, before the egress
//! rules, as docs/networks.md states them: DHCPv4 ("DHCPv4"), router
//! advertisements ("IPv6 router advertisements") and DHCPv6 ("DHCPv6").
//! DHCPv4 answers and advertisements are built here byte for byte;
//! DHCPv6 replies are judged answered or not (their bytes are checked by
//! the examples of hookd/tests/network.rs and a real client).

use super::network::{Counter, Outcome, Port, eui64_in, gateways, icmp6_frame};
use super::{ETH_LEN, ICMPV6, Reason, UDP, be16, byte, v4, v6};
use crate::network::{Network, gateway_mac};
use crate::plan::DHCP_LEASE_SECS;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What DHCPv4 gives a NIC: its first IPv4 `/32` inside an IPv4 subnet of
/// its network, that subnet, and its gateway.
pub struct Lease {
    pub addr: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub router: Ipv4Addr,
}

impl Lease {
    pub fn of(port: &Port, net: &Network) -> Option<Lease> {
        port.prefixes.iter().find_map(|p| {
            let IpNet::V4(p4) = p else { return None };
            if p4.prefix_len() != 32 {
                return None;
            }
            net.subnets
                .iter()
                .find_map(|s| match (s.prefix, s.gateway) {
                    (IpNet::V4(sn), IpAddr::V4(gw)) if sn.contains(&p4.addr()) => Some(Lease {
                        addr: p4.addr(),
                        subnet: sn,
                        router: gw,
                    }),
                    _ => None,
                })
        })
    }
}

/// What router advertisements (and DHCPv6) tell a NIC: the first /64
/// subnet of its network that holds one of its IPv6 prefixes.
pub struct RaInfo {
    pub prefix: Ipv6Net,
    /// The subnet's gateway: the source of ICMPv6 errors.
    pub gateway: Ipv6Addr,
    /// The NIC's address is its EUI-64 one in the prefix (or the /64).
    pub slaac: bool,
    /// DHCPv6 gives it its first `/128` in the prefix.
    pub dhcp6: bool,
}

impl RaInfo {
    pub fn of(port: &Port, net: &Network) -> Option<RaInfo> {
        net.subnets.iter().find_map(|s| {
            let (IpNet::V6(sn), IpAddr::V6(gw)) = (s.prefix, s.gateway) else {
                return None;
            };
            let mine: Vec<&IpNet> = port
                .prefixes
                .iter()
                .filter(|p| s.prefix.contains(*p))
                .collect();
            if sn.prefix_len() != 64 || mine.is_empty() {
                return None;
            }
            let eui = eui64_in(sn.network(), port.mac);
            let slaac = mine
                .iter()
                .any(|p| **p == s.prefix || (p.prefix_len() == 128 && p.addr() == IpAddr::V6(eui)));
            let dhcp6 = !slaac && mine.iter().any(|p| p.prefix_len() == 128);
            Some(RaInfo {
                prefix: sn,
                gateway: gw,
                slaac,
                dhcp6,
            })
        })
    }
}

const DHCP_BOOTP: usize = ETH_LEN + 20 + 8;
const DHCP_MAGIC: usize = DHCP_BOOTP + 236;
const DHCP_OPTS: usize = DHCP_MAGIC + 4;
const DHCP_ANSWER_LEN: usize = DHCP_OPTS + 64;
const DHCP_MAX_OPTS: usize = 16;
const DHCP6_MAX_OPTS: usize = 12;
const DHCP6_MAX_DUID: usize = 64;

/// The answer of the network's servers, when `f` is a message for one of
/// them: a DHCPv4 client's (UDP 68 to 67), a router solicitation or a
/// DHCPv6 client's (UDP 546 to 547), without extension headers for the
/// IPv6 ones. None: not for them.
pub fn serve(
    f: &[u8],
    port: &Port,
    net: &Network,
    lease: Option<&Lease>,
    ra: Option<&RaInfo>,
) -> Option<Outcome> {
    let ip = super::firewall::parse_ip_of(f)?;
    if ip.later_frag || !ip.l4_readable(f) {
        return None;
    }
    let ports = (be16(f, ip.l4)?, be16(f, ip.l4 + 2)?);
    if !ip.ipv6 && ip.proto == UDP && ports == (68, 67) {
        return Some(dhcp4(f, port, net, lease));
    }
    if !ip.ipv6 || ip.l4 != ETH_LEN + 40 {
        return None;
    }
    if ip.proto == ICMPV6 && byte(f, ip.l4) == Some(133) {
        return Some(router_advertisement(f, net, ra));
    }
    if ip.proto == UDP && ports == (546, 547) {
        return Some(dhcp6(f, ra));
    }
    None
}

/// The message type (option 53) and requested address (option 50) of a
/// DHCP request, walking at most 16 options; None when they cannot be
/// read.
fn dhcp_options(f: &[u8]) -> Option<(u8, Option<Ipv4Addr>)> {
    if f.get(DHCP_MAGIC..DHCP_MAGIC + 4)? != [99, 130, 83, 99] {
        return None;
    }
    let (mut at, mut kind, mut requested) = (DHCP_OPTS, 0u8, None);
    for _ in 0..DHCP_MAX_OPTS {
        match byte(f, at)? {
            255 => break,
            0 => at += 1,
            code => {
                let len = usize::from(byte(f, at + 1)?);
                if code == 53 && len == 1 {
                    kind = byte(f, at + 2)?;
                }
                if code == 50 && len == 4 {
                    requested = Some(v4(f, at + 2)?);
                }
                at += 2 + len;
            }
        }
    }
    Some((kind, requested))
}

/// DHCPv4: a DISCOVER gets an OFFER, a REQUEST for the NIC's address an
/// ACK, written over the request (346 bytes) from the gateway to the
/// broadcast address; anything else nothing.
fn dhcp4(f: &[u8], port: &Port, net: &Network, lease: Option<&Lease>) -> Outcome {
    let nothing = Outcome::Drop(Reason::NotForwarded);
    let Some(lease) = lease else { return nothing };
    if f[ETH_LEN] & 0xf != 5 {
        return nothing;
    }
    if f.len() < DHCP_BOOTP + 12 || f[DHCP_BOOTP] != 1 || f.len() < DHCP_BOOTP + 34 {
        return Outcome::Drop(Reason::Malformed);
    }
    let Some((kind, requested)) = dhcp_options(f) else {
        return Outcome::Drop(Reason::Malformed);
    };
    let ciaddr = v4(f, DHCP_BOOTP + 12).unwrap_or(Ipv4Addr::UNSPECIFIED);
    if f[DHCP_BOOTP + 28..DHCP_BOOTP + 34] != port.mac {
        return nothing;
    }
    let reply = match kind {
        1 => 2,
        3 => {
            let other = |a: Ipv4Addr| !a.is_unspecified() && a != lease.addr;
            if requested.is_some_and(other) || other(ciaddr) {
                return nothing;
            }
            5
        }
        _ => return nothing,
    };
    let gw_mac = gateway_mac(net.vni).0;
    let mut r = f.to_vec();
    r.resize(DHCP_ANSWER_LEN, 0);
    r[0..6].copy_from_slice(&port.mac);
    r[6..12].copy_from_slice(&gw_mac);
    r[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (DHCP_ANSWER_LEN - ETH_LEN) as u16;
    let mut iph = vec![0x45, 0];
    iph.extend_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&[0, 0, 0, 0, 64, UDP, 0, 0]);
    iph.extend_from_slice(&lease.router.octets());
    iph.extend_from_slice(&[255; 4]);
    let c = super::network::checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    r[ETH_LEN..ETH_LEN + 20].copy_from_slice(&iph);
    let udp_len = (DHCP_ANSWER_LEN - ETH_LEN - 20) as u16;
    r[34..36].copy_from_slice(&67u16.to_be_bytes());
    r[36..38].copy_from_slice(&68u16.to_be_bytes());
    r[38..40].copy_from_slice(&udp_len.to_be_bytes());
    r[40..42].copy_from_slice(&[0, 0]); // no checksum (allowed for IPv4)
    let b = DHCP_BOOTP;
    r[b] = 2; // a reply
    r[b + 3] = 0; // hops
    r[b + 8..b + 10].copy_from_slice(&[0, 0]); // secs
    r[b + 16..b + 20].copy_from_slice(&lease.addr.octets()); // yiaddr
    r[b + 20..b + 24].copy_from_slice(&[0; 4]); // siaddr
    let mut o = vec![53, 1, reply, 54, 4];
    o.extend_from_slice(&lease.router.octets());
    o.extend_from_slice(&[51, 4]);
    o.extend_from_slice(&DHCP_LEASE_SECS.to_be_bytes());
    o.extend_from_slice(&[1, 4]);
    o.extend_from_slice(&lease.subnet.netmask().octets());
    o.extend_from_slice(&[3, 4]);
    o.extend_from_slice(&lease.router.octets());
    o.extend_from_slice(&[26, 2]);
    o.extend_from_slice(&net.mtu.to_be_bytes());
    let dns: Vec<Ipv4Addr> = net
        .dns
        .iter()
        .filter_map(|d| match d {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .take(crate::network::MAX_DNS)
        .collect();
    if !dns.is_empty() {
        o.extend_from_slice(&[6, 4 * dns.len() as u8]);
        for d in dns {
            o.extend_from_slice(&d.octets());
        }
    }
    o.push(255);
    o.resize(64, 0);
    r[DHCP_OPTS..].copy_from_slice(&o);
    Outcome::Sent {
        counter: Counter::AnsweredDhcp,
        count: 1,
        frame: Some(r),
        left_out: 0,
    }
}

/// A router solicitation gets the advertisement of the docs' table, from
/// the gateway's link-local address to the asker (to all nodes when it
/// asked from `::`).
fn router_advertisement(f: &[u8], net: &Network, ra: Option<&RaInfo>) -> Outcome {
    let Some(ra) = ra else {
        return Outcome::Drop(Reason::NotForwarded);
    };
    let Some(asker) = v6(f, ETH_LEN + 8) else {
        return Outcome::Drop(Reason::Malformed);
    };
    let gw_mac = gateway_mac(net.vni).0;
    let (to_mac, to) = if asker.is_unspecified() {
        (
            [0x33, 0x33, 0, 0, 0, 1],
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        )
    } else {
        (super::network::mac_at(f, 6), asker)
    };
    let mut m = vec![134u8, 0, 0, 0, 64, if ra.dhcp6 { 0x80 } else { 0 }];
    m.extend_from_slice(&9000u16.to_be_bytes());
    m.extend_from_slice(&[0; 8]); // reachable time, retransmit timer
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&gw_mac);
    m.extend_from_slice(&[5, 1, 0, 0]);
    m.extend_from_slice(&u32::from(net.mtu).to_be_bytes());
    m.extend_from_slice(&[3, 4, 64, 0x80 | if ra.slaac { 0x40 } else { 0 }]);
    m.extend_from_slice(&[0xff; 8]); // valid, preferred: infinite
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&ra.prefix.network().octets());
    let gw_ll = gateways(net)
        .into_iter()
        .find_map(|g| match g {
            IpAddr::V6(a) if a.segments()[0] == 0xfe80 => Some(a),
            _ => None,
        })
        .unwrap_or(Ipv6Addr::UNSPECIFIED);
    let frame = icmp6_frame(to_mac, gw_mac, gw_ll.octets(), to.octets(), 255, m);
    Outcome::Sent {
        counter: Counter::AnsweredRa,
        count: 1,
        frame: Some(frame),
        left_out: 0,
    }
}

/// DHCPv6: SOLICIT, REQUEST, RENEW and REBIND with a client id of 1 to
/// 64 bytes (among the first 12 options) are answered, for a NIC whose
/// address DHCPv6 gives; anything else nothing.
fn dhcp6(f: &[u8], ra: Option<&RaInfo>) -> Outcome {
    let nothing = Outcome::Drop(Reason::NotForwarded);
    if !ra.is_some_and(|r| r.dhcp6) {
        return nothing;
    }
    let msg = ETH_LEN + 40 + 8;
    let Some(kind) = byte(f, msg).filter(|_| f.len() >= msg + 4) else {
        return Outcome::Drop(Reason::Malformed);
    };
    if !matches!(kind, 1 | 3 | 5 | 6) {
        return nothing;
    }
    let (mut at, mut duid) = (msg + 4, None);
    for _ in 0..DHCP6_MAX_OPTS {
        let (Some(code), Some(len)) = (be16(f, at), be16(f, at + 2)) else {
            break;
        };
        let len = usize::from(len);
        if code == 1 {
            duid = Some((at + 4, len));
        } else if code == 3 && len >= 12 && f.len() < at + 8 {
            return Outcome::Drop(Reason::Malformed);
        }
        at += 4 + len;
    }
    match duid {
        Some((_, len)) if !(1..=DHCP6_MAX_DUID).contains(&len) => nothing,
        Some((off, len)) if f.len() < off + len => Outcome::Drop(Reason::Malformed),
        Some(_) => Outcome::Sent {
            counter: Counter::AnsweredDhcp6,
            count: 1,
            frame: None,
            left_out: 0,
        },
        None => nothing,
    }
}
