//! The network stage of a NIC on one of hookd's networks, as
//! docs/networks.md ("The data path", "ICMP time exceeded", "Counters")
//! states it: ARP and neighbour solicitations answered for the gateway and
//! the network's other NICs, echo to the gateway answered, unicast switched
//! to the NIC that holds the address and MAC, packets to the gateway's MAC
//! routed in the sender's tenant (another network's NIC, or the tenant's
//! namespace), TTL and hop limit checked, broadcast and multicast flooded
//! to the network's other NICs. The answers' bytes are built here from
//! the documented fields, so the programs' are compared byte for byte.
//!
//! The DHCPv4, DHCPv6 and router-advertisement servers, which come before
//! the egress rules, are in [`super::answers`].

use super::answers::{self, Lease, RaInfo};
use super::{ETH_LEN, ICMP, ICMPV6, Policy, Reason, Verdict, be16, byte, v4, v6};
use crate::mac::MacAddr;
use crate::network::{Network, gateway_mac, tenant_id};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The network counters of docs/networks.md "Counters", in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    Switched,
    Routed,
    AnsweredArp,
    AnsweredNd,
    AnsweredEcho,
    AnsweredDhcp,
    ToTenantNs,
    FromTenantNs,
    IcmpErrors,
    Flooded,
    AnsweredRa,
    AnsweredDhcp6,
}

impl Counter {
    /// The counter's index in `hookd_net_stats`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the stage does with a frame: dropped, or sent on (to the VM as an
/// answer, to another tap, to the tenant's namespace) and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Drop(Reason),
    Sent {
        counter: Counter,
        /// How much the counter grows (the copies of a flooded frame).
        count: u64,
        /// The frame as it leaves, where the model builds its bytes.
        frame: Option<Vec<u8>>,
        /// Flooded copies the bound left out (counted as `flood_bound`).
        left_out: u64,
    },
}

impl Outcome {
    fn sent(counter: Counter, frame: Vec<u8>) -> Outcome {
        Outcome::Sent {
            counter,
            count: 1,
            frame: Some(frame),
            left_out: 0,
        }
    }
}

/// A NIC on this host, on one of the networks.
#[derive(Debug, Clone)]
pub struct Port {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The name of its network.
    pub network: String,
    /// Its policy's `address` prefixes.
    pub prefixes: Vec<IpNet>,
}

impl Port {
    /// Its host addresses (`/32`, `/128`): those the network answers for
    /// and routes to.
    fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.prefixes
            .iter()
            .filter(|p| p.prefix_len() == p.max_prefix_len())
            .map(IpNet::addr)
    }
}

/// A tenant's namespace, reached through a veth: its host end's ifindex.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub tenant: String,
    pub ifindex: u32,
}

/// The MACs of a tenant namespace's veth (docs/networks.md "The outside"):
/// routed packets go from the host end's to the namespace end's.
pub const NS_END_MAC: [u8; 6] = [0x02, 0x68, 0x6e, 0, 0, 1];
pub const HOST_END_MAC: [u8; 6] = [0x02, 0x68, 0x74, 0, 0, 1];
/// The most NICs of a network that get its broadcast and multicast.
pub const MAX_FLOOD: usize = 32;

/// The networks, their NICs on this host and the tenants' namespaces.
#[derive(Debug, Clone, Default)]
pub struct Fabric {
    pub networks: Vec<Network>,
    pub ports: Vec<Port>,
    pub uplinks: Vec<Uplink>,
}

/// Where a route lookup ends.
enum Route<'a> {
    Nic(&'a Port, &'a Network),
    Namespace,
}

impl Fabric {
    fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn port(&self, ifindex: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.ifindex == ifindex)
    }

    /// Networks with a NIC on this host: their gateways and subnets are in
    /// the maps.
    fn present(&self) -> impl Iterator<Item = &Network> {
        self.networks
            .iter()
            .filter(|n| self.ports.iter().any(|p| p.network == n.name))
    }

    /// What `a` is on network `net`: the gateway (None inside), or a NIC.
    fn on_network(&self, net: &Network, a: IpAddr) -> Option<Option<&Port>> {
        if gateways(net).contains(&a) {
            return Some(None);
        }
        self.ports
            .iter()
            .find(|p| p.network == net.name && p.hosts().any(|h| h == a))
            .map(Some)
    }

    /// The longest match for `a` in `net`'s tenant: a host route to a NIC
    /// of another network, a subnet of the tenant (no route), or the
    /// tenant's namespace; docs/networks.md "IPv4 to the gateway's MAC".
    fn route(&self, net: &Network, a: IpAddr) -> Result<Route<'_>, Reason> {
        let tenant = &net.tenant;
        for p in &self.ports {
            let Some(pn) = self.network(&p.network) else {
                continue;
            };
            if &pn.tenant == tenant && p.hosts().any(|h| h == a) {
                return if pn.name == net.name {
                    Err(Reason::NoRoute)
                } else {
                    Ok(Route::Nic(p, pn))
                };
            }
        }
        let in_subnet = self
            .present()
            .filter(|n| &n.tenant == tenant)
            .any(|n| n.subnets.iter().any(|s| s.prefix.contains(&a)));
        if in_subnet {
            return Err(Reason::NoRoute);
        }
        self.uplinks
            .iter()
            .find(|u| &u.tenant == tenant)
            .map(|_| Route::Namespace)
            .ok_or(Reason::NoRoute)
    }

    /// The other NICs of `net` here that get its broadcasts (the first
    /// MAX_FLOOD by ifindex), and how many the bound leaves out.
    fn flood_targets(&self, net: &Network, me: u32) -> (usize, u64) {
        let mut members: Vec<u32> = self
            .ports
            .iter()
            .filter(|p| p.network == net.name)
            .map(|p| p.ifindex)
            .collect();
        members.sort_unstable();
        let total = members.len();
        let listed = &members[..total.min(MAX_FLOOD)];
        let me_listed = listed.contains(&me);
        let others = listed.len() - usize::from(me_listed);
        let left_out = total.saturating_sub(MAX_FLOOD) as u64 - u64::from(!me_listed && total > 0);
        (others, if total > MAX_FLOOD { left_out } else { 0 })
    }
}

/// A network's gateway addresses: its subnets' gateways, and for a network
/// with IPv6 the link-local EUI-64 address of the gateway MAC.
pub fn gateways(net: &Network) -> Vec<IpAddr> {
    let mut g: Vec<IpAddr> = net.subnets.iter().map(|s| s.gateway).collect();
    if g.iter().any(IpAddr::is_ipv6) {
        g.push(IpAddr::V6(gateway_mac(net.vni).eui64_link_local()));
    }
    g
}

/// The verdict on `frame` sent by the VM on network NIC `me`: anti-spoofing,
/// the network's DHCP and router servers, the egress firewall, then the
/// network stage (docs/datapath.md "Stages"). A network NIC's frame never
/// reaches the host: the outcome is a drop or a send.
pub fn frame_from_vm(
    frame: &[u8],
    policy: &Policy,
    fabric: &Fabric,
    me: u32,
    ct: &mut super::Conntrack,
) -> Outcome {
    let Some((port, net)) = fabric
        .port(me)
        .and_then(|p| Some((p, fabric.network(&p.network)?)))
    else {
        return Outcome::Drop(Reason::NoRoute);
    };
    match super::antispoof::from_vm(frame, &policy.nic) {
        Verdict::Pass => {}
        Verdict::Drop(r) => return Outcome::Drop(r),
    }
    let lease = Lease::of(port, net);
    let ra = RaInfo::of(port, net);
    if let Some(o) = answers::serve(frame, port, net, lease.as_ref(), ra.as_ref()) {
        return o;
    }
    if policy.firewall_on()
        && let Verdict::Drop(r) =
            super::firewall::stage(frame, crate::policy::Direction::Egress, policy, ct)
    {
        return Outcome::Drop(r);
    }
    let nic = Sender {
        fabric,
        port,
        net,
        gw_mac: gateway_mac(net.vni).0,
        lease: lease.as_ref(),
        ra: ra.as_ref(),
    };
    stage(frame, &nic)
}

/// The sending NIC, its network and what the network gives it.
struct Sender<'a> {
    fabric: &'a Fabric,
    port: &'a Port,
    net: &'a Network,
    gw_mac: [u8; 6],
    lease: Option<&'a Lease>,
    ra: Option<&'a RaInfo>,
}

pub(super) fn mac_at(f: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(b) = f.get(at..at + 6) {
        m.copy_from_slice(b);
    }
    m
}

fn is_v4_mapped(a: Ipv6Addr) -> bool {
    a.to_ipv4_mapped().is_some()
}

/// The network stage proper, after the egress rules.
fn stage(f: &[u8], nic: &Sender) -> Outcome {
    let (fabric, port, net) = (nic.fabric, nic.port, nic.net);
    let Some(ip) = super::firewall::parse_ip_of(f) else {
        // Neither ARP nor IP, or an IPv6 header whose chain cannot be
        // walked: nothing of the network's.
        return if be16(f, 12) == Some(0x0806) {
            arp(f, fabric, port, net)
        } else {
            Outcome::Drop(Reason::NotForwarded)
        };
    };
    let dst_mac = mac_at(f, 0);
    if ip.ipv6 {
        if ip.proto == ICMPV6 && !ip.later_frag && ip.l4_readable(f) && byte(f, ip.l4) == Some(135)
        {
            return neighbour_solicitation(f, fabric, port, net, ip.l4);
        }
        if dst_mac[0] & 1 == 1 {
            return flood(fabric, port, net);
        }
        let dst = ip.dst;
        if is_v4_mapped(dst) {
            return Outcome::Drop(Reason::NotForwarded);
        }
        return unicast(f, nic, IpAddr::V6(dst), &ip);
    }
    if dst_mac[0] & 1 == 1 {
        return flood(fabric, port, net);
    }
    let dst = ip
        .dst
        .to_ipv4_mapped()
        .map_or(IpAddr::V6(ip.dst), IpAddr::V4);
    unicast(f, nic, dst, &ip)
}

/// Unicast to `dst`: the gateway's address (echo), a NIC of the network
/// (switched), or beyond the gateway's MAC (routed).
fn unicast(f: &[u8], nic: &Sender, dst: IpAddr, ip: &super::firewall::IpInfo) -> Outcome {
    let dst_mac = mac_at(f, 0);
    match nic.fabric.on_network(nic.net, dst) {
        None if dst_mac == nic.gw_mac => route(f, nic, dst, ip),
        None => Outcome::Drop(Reason::UnknownUnicast),
        Some(None) => echo(f, ip, nic.gw_mac),
        Some(Some(other)) if other.ifindex == nic.port.ifindex || dst_mac != other.mac => {
            Outcome::Drop(Reason::UnknownUnicast)
        }
        Some(Some(_)) => Outcome::sent(Counter::Switched, f.to_vec()),
    }
}

/// An ARP request for the gateway or another NIC becomes its reply.
fn arp(f: &[u8], fabric: &Fabric, port: &Port, net: &Network) -> Outcome {
    let a = ETH_LEN;
    if f.len() < a + 28 {
        return Outcome::Drop(Reason::Malformed);
    }
    if be16(f, a + 6) != Some(1) {
        return Outcome::Drop(Reason::NotForwarded);
    }
    let tpa = v4(f, a + 24).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mac = match fabric.on_network(net, IpAddr::V4(tpa)) {
        Some(None) => gateway_mac(net.vni).0,
        Some(Some(p)) if p.ifindex != port.ifindex => p.mac,
        _ => return Outcome::Drop(Reason::NotForwarded),
    };
    let mut r = f.to_vec();
    let (sha, spa) = (
        mac_at(f, a + 8),
        [f[a + 14], f[a + 15], f[a + 16], f[a + 17]],
    );
    r[a + 6..a + 8].copy_from_slice(&2u16.to_be_bytes());
    r[a + 18..a + 24].copy_from_slice(&sha);
    r[a + 24..a + 28].copy_from_slice(&spa);
    r[a + 8..a + 14].copy_from_slice(&mac);
    r[a + 14..a + 18].copy_from_slice(&tpa.octets());
    let src = mac_at(f, 6);
    r[0..6].copy_from_slice(&src);
    r[6..12].copy_from_slice(&mac);
    Outcome::sent(Counter::AnsweredArp, r)
}

/// The one's-complement sum of `data` (RFC 1071), not inverted, folded.
pub(super) fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        let hi = u32::from(c[0]) << 8;
        acc += hi | c.get(1).map_or(0, |&b| u32::from(b));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum of `data`.
pub(super) fn checksum(data: &[u8]) -> u16 {
    !(sum16(data, 0) as u16)
}

/// The ICMPv6 checksum of `msg` from `src` to `dst` (RFC 8200 8.1).
pub(super) fn icmp6_checksum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + msg.len());
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(msg);
    checksum(&pseudo)
}

/// An Ethernet + IPv6 frame carrying the ICMPv6 message `msg` (its checksum
/// field at 2..4 filled in here).
pub(super) fn icmp6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop: u8,
    mut msg: Vec<u8>,
) -> Vec<u8> {
    msg[2] = 0;
    msg[3] = 0;
    let c = icmp6_checksum(&src, &dst, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::with_capacity(54 + msg.len());
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(&[ICMPV6, hop]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&msg);
    out
}

/// A neighbour solicitation for the gateway or another NIC becomes the
/// advertisement; DAD, the NIC's own and unknown targets go unanswered.
fn neighbour_solicitation(
    f: &[u8],
    fabric: &Fabric,
    port: &Port,
    net: &Network,
    l4: usize,
) -> Outcome {
    if l4 != ETH_LEN + 40 {
        return Outcome::Drop(Reason::NotForwarded);
    }
    let (Some(asker), Some(target)) = (v6(f, ETH_LEN + 8), v6(f, l4 + 8)) else {
        return Outcome::Drop(Reason::Malformed);
    };
    if asker.is_unspecified() || is_v4_mapped(target) {
        return Outcome::Drop(Reason::NotForwarded);
    }
    let (mac, router) = match fabric.on_network(net, IpAddr::V6(target)) {
        Some(None) => (gateway_mac(net.vni).0, true),
        Some(Some(p)) if p.ifindex != port.ifindex => (p.mac, false),
        _ => return Outcome::Drop(Reason::NotForwarded),
    };
    let mut na = vec![
        136u8,
        0,
        0,
        0,
        0x40 | 0x20 | if router { 0x80 } else { 0 },
        0,
        0,
        0,
    ];
    na.extend_from_slice(&target.octets());
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&mac);
    let frame = icmp6_frame(mac_at(f, 6), mac, target.octets(), asker.octets(), 255, na);
    Outcome::sent(Counter::AnsweredNd, frame)
}

/// An echo request to the gateway's address and MAC becomes its reply, in
/// place, the checksum adjusted for the type (RFC 1624); anything else to
/// the gateway is `no_route`.
fn echo(f: &[u8], ip: &super::firewall::IpInfo, gw_mac: [u8; 6]) -> Outcome {
    let l4 = ip.l4;
    let (request, reply) = if ip.ipv6 { (128u8, 129u8) } else { (8, 0) };
    if ip.proto != if ip.ipv6 { ICMPV6 } else { ICMP } || ip.later_frag {
        return Outcome::Drop(Reason::NoRoute);
    }
    if f.len() < l4 + 4 {
        return Outcome::Drop(Reason::Malformed);
    }
    if f[l4] != request || mac_at(f, 0) != gw_mac {
        return Outcome::Drop(Reason::NoRoute);
    }
    let mut r = f.to_vec();
    let l3 = ETH_LEN;
    let (s, d, n) = if ip.ipv6 {
        (l3 + 8, l3 + 24, 16)
    } else {
        (l3 + 12, l3 + 16, 4)
    };
    let src = f[s..s + n].to_vec();
    r.copy_within(d..d + n, s);
    r[d..d + n].copy_from_slice(&src);
    r[l4] = reply;
    // HC' = ~(~HC + ~m + m') over the 16-bit word that holds the type.
    let hc = u32::from(be16(f, l4 + 2).unwrap_or(0));
    let sum = (!hc & 0xffff) + (!(u32::from(request) << 8) & 0xffff) + (u32::from(reply) << 8);
    let folded = sum16(&[], sum) as u16;
    r[l4 + 2..l4 + 4].copy_from_slice(&(!folded).to_be_bytes());
    let from = mac_at(f, 6);
    r[0..6].copy_from_slice(&from);
    r[6..12].copy_from_slice(&gw_mac);
    Outcome::sent(Counter::AnsweredEcho, r)
}

/// A packet to the gateway's MAC for an address beyond the network: routed
/// to a NIC of another of the tenant's networks, or to its namespace, one
/// hop (TTL or hop limit checked and decremented).
fn route(f: &[u8], nic: &Sender, dst: IpAddr, ip: &super::firewall::IpInfo) -> Outcome {
    let to = match nic.fabric.route(nic.net, dst) {
        Ok(r) => r,
        Err(reason) => return Outcome::Drop(reason),
    };
    let ttl = f[ETH_LEN + if ip.ipv6 { 7 } else { 8 }];
    if ttl <= 1 {
        return if ip.ipv6 {
            time_exceeded6(f, ip, nic.gw_mac, nic.ra)
        } else {
            time_exceeded4(f, nic.gw_mac, nic.lease)
        };
    }
    let (dst_mac, src_mac, counter) = match to {
        Route::Nic(p, pn) => (p.mac, gateway_mac(pn.vni).0, Counter::Routed),
        Route::Namespace => (NS_END_MAC, HOST_END_MAC, Counter::ToTenantNs),
    };
    Outcome::sent(counter, hop(f, ip.ipv6, dst_mac, src_mac))
}

/// `f` one routing hop on, whose TTL or hop limit is over 1: decremented,
/// and the MACs now `src` to `dst`.
fn hop(f: &[u8], ipv6: bool, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let l3 = ETH_LEN;
    let ttl_at = if ipv6 { l3 + 7 } else { l3 + 8 };
    let mut r = f.to_vec();
    r[ttl_at] -= 1;
    if !ipv6 {
        // As Linux's ip_decrease_ttl: the TTL is the high byte of its
        // 16-bit word, so the checksum grows by 0x0100 (end-around carry),
        // computed on the word as it lies in memory.
        let c = u32::from(u16::from_le_bytes([f[l3 + 10], f[l3 + 11]])) + 0x0001;
        let c = (c + u32::from(c >= 0xffff)) as u16;
        r[l3 + 10..l3 + 12].copy_from_slice(&c.to_le_bytes());
    }
    r[0..6].copy_from_slice(&dst);
    r[6..12].copy_from_slice(&src);
    r
}

/// A packet tenant `tenant`'s namespace sends out of its veth
/// (docs/networks.md "The outside", the way back): to the tenant's NIC
/// that holds its destination as a host address, one hop (TTL or hop
/// limit checked, decremented; no ICMP error), from that NIC's network's
/// gateway MAC to the NIC's, counted `from_tenant_ns` on the NIC.
/// Anything else is dropped, counted on the veth. Returns the outcome and
/// the NIC it goes to.
pub fn frame_from_tenant(f: &[u8], fabric: &Fabric, tenant: &str) -> (Outcome, Option<u32>) {
    let drop = |r| (Outcome::Drop(r), None);
    let (ipv6, dst, ttl_at) = match be16(f, 12) {
        Some(0x0800) => {
            if f.len() < ETH_LEN + 20 || f[ETH_LEN] >> 4 != 4 {
                return drop(Reason::Malformed);
            }
            let d = v4(f, ETH_LEN + 16).unwrap_or(Ipv4Addr::UNSPECIFIED);
            (false, IpAddr::V4(d), ETH_LEN + 8)
        }
        Some(0x86dd) => {
            if f.len() < ETH_LEN + 40 || f[ETH_LEN] >> 4 != 6 {
                return drop(Reason::Malformed);
            }
            let d = v6(f, ETH_LEN + 24).unwrap_or(Ipv6Addr::UNSPECIFIED);
            if is_v4_mapped(d) {
                return drop(Reason::NoRoute);
            }
            (true, IpAddr::V6(d), ETH_LEN + 7)
        }
        None => return drop(Reason::Malformed),
        Some(_) => return drop(Reason::NotForwarded),
    };
    let to = fabric.ports.iter().find_map(|p| {
        let net = fabric.network(&p.network)?;
        (net.tenant == tenant && p.hosts().any(|h| h == dst)).then_some((p, net))
    });
    let Some((port, net)) = to else {
        return drop(Reason::NoRoute);
    };
    if f[ttl_at] <= 1 {
        return drop(Reason::Ttl);
    }
    let out = hop(f, ipv6, port.mac, gateway_mac(net.vni).0);
    (
        Outcome::sent(Counter::FromTenantNs, out),
        Some(port.ifindex),
    )
}

/// An IPv4 time exceeded from the sender's subnet's gateway (its DHCP
/// router), quoting the IPv4 header and 8 bytes: 70 bytes in all.
fn time_exceeded4(f: &[u8], gw_mac: [u8; 6], lease: Option<&Lease>) -> Outcome {
    let ttl = Outcome::Drop(Reason::Ttl);
    let Some(lease) = lease else { return ttl };
    let Some(q) = f.get(ETH_LEN..ETH_LEN + 28) else {
        return ttl;
    };
    let later = be16(q, 6).unwrap_or(0) & 0x1fff != 0;
    if q[0] != 0x45 || later || (q[9] == ICMP && !matches!(q[20], 0 | 8)) {
        return ttl;
    }
    let mut icmp = vec![11u8, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(q);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut iph = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, ICMP, 0, 0];
    iph.extend_from_slice(&lease.router.octets());
    iph.extend_from_slice(&q[12..16]);
    let c = checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = mac_at(f, 6).to_vec();
    out.extend_from_slice(&gw_mac);
    out.extend_from_slice(&[0x08, 0x00]);
    out.extend_from_slice(&iph);
    out.extend_from_slice(&icmp);
    Outcome::sent(Counter::IcmpErrors, out)
}

/// An ICMPv6 time exceeded from the gateway of the NIC's /64, quoting the
/// IPv6 header and 8 bytes: 110 bytes in all.
fn time_exceeded6(
    f: &[u8],
    ip: &super::firewall::IpInfo,
    gw_mac: [u8; 6],
    ra: Option<&RaInfo>,
) -> Outcome {
    let ttl = Outcome::Drop(Reason::Ttl);
    let Some(ra) = ra else { return ttl };
    // An ICMPv6 header too short to read may be an error: none is sent.
    if ip.later_frag || (ip.proto == ICMPV6 && (!ip.l4_readable(f) || f[ip.l4] < 128)) {
        return ttl;
    }
    let Some(q) = f.get(ETH_LEN..ETH_LEN + 48) else {
        return ttl;
    };
    let mut msg = vec![3u8, 0, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(q);
    let to: [u8; 16] = q[8..24].try_into().unwrap_or([0; 16]);
    let out = icmp6_frame(mac_at(f, 6), gw_mac, ra.gateway.octets(), to, 64, msg);
    Outcome::sent(Counter::IcmpErrors, out)
}

/// Broadcast and multicast go to the network's other NICs here, each copy
/// counted; none to go to is `not_forwarded`.
fn flood(fabric: &Fabric, port: &Port, net: &Network) -> Outcome {
    let (others, left_out) = fabric.flood_targets(net, port.ifindex);
    if others == 0 {
        return Outcome::Drop(Reason::NotForwarded);
    }
    Outcome::Sent {
        counter: Counter::Flooded,
        count: others as u64,
        frame: None,
        left_out,
    }
}

/// The tenant id of a network, as route keys carry it.
pub fn tenant_of(net: &Network) -> u32 {
    tenant_id(&net.tenant)
}

/// The EUI-64 address of `mac` in the /64 `prefix`.
pub(super) fn eui64_in(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let ll = MacAddr(mac).eui64_link_local().octets();
    let mut a = prefix.octets();
    a[8..].copy_from_slice(&ll[8..]);
    Ipv6Addr::from(a)
}
