//! Tier 2: differential testing of the network stage (lib/l2net.h,
//! lib/dhcp.h, lib/ra.h) against the reference model
//! (`hookd_model::reference::network` and `answers`, written from
//! docs/networks.md). Each round builds a small fabric: three networks
//! (blue and green of tenant acme, red of tenant globex with blue's very
//! subnets), NIC A on blue played through BPF_PROG_TEST_RUN, and a random
//! set of peers on veth devices (blue, green, and red's NIC with a blue
//! peer's addresses), with or without the tenants' namespaces; A's policy
//! has random addresses and now and then egress security groups. Frames
//! from A (ARP, neighbour solicitations, echo, unicast to peers, to the
//! gateway and beyond it with every TTL, broadcast and multicast, DHCPv4,
//! router solicitations, DHCPv6, with forged MACs and addresses,
//! truncated or with a bit flipped) go through `hookd_from_vm` and the
//! model; in rounds with namespaces, packets from a tenant's namespace
//! (to its NICs, the other tenant's addresses, nowhere, with any TTL) go
//! through `hookd_from_tenant` (on a twin of the veth) and the model's
//! way back. Compared: the verdict, the frame the program sends on (byte
//! for byte where the model builds it: every answer but DHCPv6's, every
//! switched and routed frame), the NIC's counters (its packets and bytes,
//! its drops by reason, its network counters). There must be no
//! disagreement.
//!
//! Everything runs in a network namespace of the test's own, whose
//! loopback device is NIC A (the kernel's test runner runs programs
//! there) and whose veth devices are the peers' taps, so that flooded
//! copies are really sent. Not covered here: the receiving taps' to_vm
//! (the same firewall the other differential test covers) and networks
//! with more NICs than the flood bound (its example test).
//!
//! `HOOKD_DIFF_FRAMES` (default 100,000) and `HOOKD_DIFF_SEED` set the run.
//! Needs root; `#[ignore]`d in a plain `cargo test`, run by
//! scripts/test-privileged.sh, where it fails, never skips.

use aya::programs::TestRun as _;
use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use hookd_model::network::{Network, gateway_mac, parse_document};
use hookd_model::plan::{self, NicMode, Stage};
use hookd_model::reference::network::{Fabric, Outcome, Port, Uplink};
use hookd_model::reference::{self, Reason};
use hookd_testkit::differential::*;
use hookd_testkit::vm::TEST_IFINDEX;
use hookd_testkit::xml::{DomainXml, policy};
use hookd_testkit::*;
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const FRAMES_PER_ROUND: usize = 3_000;
const A_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];

/// A peer NIC: its veth device, MAC, network and addresses.
struct Peer {
    dev: &'static str,
    mac: [u8; 6],
    network: &'static str,
    prefixes: &'static [&'static str],
}

const PEERS: [Peer; 4] = [
    Peer {
        dev: "hkd-b",
        mac: [0x52, 0x54, 0, 0, 0, 0x0b],
        network: "blue",
        prefixes: &["198.51.100.20/32", "2001:db8:100::20/128"],
    },
    Peer {
        dev: "hkd-e",
        mac: [0x52, 0x54, 0, 0, 0, 0x0e],
        network: "blue",
        prefixes: &["198.51.100.21/32"],
    },
    Peer {
        dev: "hkd-g",
        mac: [0x52, 0x54, 0, 0, 0, 0x0c],
        network: "green",
        prefixes: &["203.0.113.30/32", "2001:db8:200::30/128"],
    },
    // The other tenant's NIC, with the first blue peer's addresses.
    Peer {
        dev: "hkd-r",
        mac: [0x52, 0x54, 0, 0, 0, 0x0d],
        network: "red",
        prefixes: &["198.51.100.20/32", "2001:db8:100::20/128"],
    },
];

/// Addresses A's policy may hold (all inside blue).
const A_PREFIXES: [&str; 6] = [
    "198.51.100.10/32",
    "198.51.100.11/32",
    "198.51.100.16/28",
    "2001:db8:100::10/128",
    "2001:db8:100::5054:ff:fe00:a/128", // A's EUI-64 address: SLAAC
    "2001:db8:100::/64",
];

fn networks(rng: &mut Rng) -> Vec<Network> {
    let mtu = *pick(rng, &[1500u16, 1400, 9000]);
    let dns = |rng: &mut Rng, net: &str| -> String {
        match rng.below(3) {
            0 => String::new(),
            1 => format!("<dns server='{net}.53'/>"),
            _ => format!(
                "<dns server='{net}.53'/><dns server='{net}.54'/><dns server='2001:db8::53'/>"
            ),
        }
    };
    let doc = |name: &str, tenant: &str, vni: u32, v4: &str, v6: &str, dns: String| {
        parse_document(&format!(
            "<network xmlns='urn:hookd:network:1' name='{name}' tenant='{tenant}' vni='{vni}' \
             mtu='{mtu}'><subnet prefix='{v4}.0/24' gateway='{v4}.1'/>\
             <subnet prefix='{v6}::/64' gateway='{v6}::1'/>{dns}</network>"
        ))
        .expect("a valid network")
    };
    let (d1, d2, d3) = (
        dns(rng, "198.51.100"),
        dns(rng, "203.0.113"),
        dns(rng, "198.51.100"),
    );
    vec![
        doc("blue", "acme", 10010, "198.51.100", "2001:db8:100", d1),
        doc("green", "acme", 10020, "203.0.113", "2001:db8:200", d2),
        doc("red", "globex", 20020, "198.51.100", "2001:db8:100", d3),
    ]
}

/// The domain XML of a NIC with `inner` in its interface, on `network`.
fn nic_xml(mac: [u8; 6], network: &str, inner: &str) -> String {
    let m = hookd_model::mac::MacAddr(mac).to_string();
    DomainXml::new("diffnet", "00000000-0000-4000-8000-00000000d1ee")
        .metadata(&policy(&format!(
            "<hookd:interface mac='{m}'><hookd:network name='{network}'/>{inner}</hookd:interface>"
        )))
        .nic("ethernet", &m, None)
        .to_string()
}

/// The plan of the NIC in `xml` on the networks `nets`.
fn plan_of(xml: &str, nets: &[Network]) -> (hookd_model::domain::Domain, NicMode) {
    let dom = hookd_model::domain::parse(xml).expect("a valid domain");
    let mut plans = plan::plan_domain(&dom, true, Stage::BeforeTaps).expect("a plan");
    plan::join_networks(&mut plans, &dom, |n| {
        nets.iter().find(|x| x.name == n).cloned()
    });
    let mode = plans.remove(0).mode;
    (dom, mode)
}

/// A's policy: 1-6 of its prefixes on blue, egress security groups now and then.
fn a_policy(rng: &mut Rng) -> (String, Vec<IpNet>) {
    let mut chosen: Vec<&str> = A_PREFIXES
        .iter()
        .copied()
        .filter(|_| chance(rng, 40))
        .collect();
    if chosen.is_empty() {
        chosen.push(*pick(rng, &A_PREFIXES));
    }
    let mut inner = String::new();
    for p in &chosen {
        let _ = write!(inner, "<hookd:address prefix='{p}'/>");
    }
    if chance(rng, 35) {
        let default = if chance(rng, 50) { "allow" } else { "deny" };
        let _ = write!(inner, "<hookd:egress default='{default}'>");
        for _ in 0..rng.below(5) {
            inner.push_str(&random_rule(rng));
        }
        inner.push_str("</hookd:egress>");
    }
    let prefixes = chosen.iter().map(|p| p.parse().unwrap()).collect();
    (inner, prefixes)
}

fn v4(s: impl AsRef<str>) -> Ipv4Addr {
    s.as_ref().parse().unwrap()
}

fn v6(s: impl AsRef<str>) -> Ipv6Addr {
    s.as_ref().parse().unwrap()
}

/// Sources A's frames carry: its own addresses mostly.
fn source4(rng: &mut Rng) -> Ipv4Addr {
    v4(pick(
        rng,
        &[
            "198.51.100.10",
            "198.51.100.11",
            "198.51.100.17",
            "0.0.0.0",
            "198.51.100.20",
        ],
    ))
}

fn source6(rng: &mut Rng) -> Ipv6Addr {
    v6(pick(
        rng,
        &[
            "2001:db8:100::10",
            "2001:db8:100::5054:ff:fe00:a",
            "fe80::5054:ff:fe00:a",
            "::",
            "2001:db8:100::77",
        ],
    ))
}

/// Destinations: the gateways, peers of every network and tenant, A
/// itself, unknown addresses of the subnets, and the outside.
fn dest4(rng: &mut Rng) -> Ipv4Addr {
    v4(pick(
        rng,
        &[
            "198.51.100.1",
            "198.51.100.20",
            "198.51.100.21",
            "198.51.100.10",
            "198.51.100.99",
            "203.0.113.30",
            "203.0.113.1",
            "203.0.113.99",
            "192.0.2.77",
            "255.255.255.255",
            "224.0.0.251",
        ],
    ))
}

fn dest6(rng: &mut Rng) -> Ipv6Addr {
    v6(pick(
        rng,
        &[
            "2001:db8:100::1",
            "fe80::68:6bff:fe00:271a", // blue's gateway, link-local
            "2001:db8:100::20",
            "2001:db8:100::10",
            "2001:db8:100::99",
            "2001:db8:200::30",
            "2001:db8:200::1",
            "2001:db8:ff::77",
            "ff02::1",
            "ff02::1:ff00:20",
            "::ffff:198.51.100.20",
        ],
    ))
}

/// A destination MAC: the gateway's, a peer's, A's own, broadcast,
/// multicast, or the other network's gateway.
fn dest_mac(rng: &mut Rng, dst: IpAddr) -> [u8; 6] {
    let multicast = match dst {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    if multicast && chance(rng, 85) {
        return match dst {
            IpAddr::V4(a) if a.is_broadcast() => [0xff; 6],
            IpAddr::V4(a) => [
                0x01,
                0x00,
                0x5e,
                a.octets()[1] & 0x7f,
                a.octets()[2],
                a.octets()[3],
            ],
            IpAddr::V6(a) => {
                let o = a.octets();
                [0x33, 0x33, o[12], o[13], o[14], o[15]]
            }
        };
    }
    match rng.below(10) {
        0..=4 => gateway_mac(10010).0,
        5..=6 => pick(rng, &PEERS).mac,
        7 => A_MAC,
        8 => gateway_mac(10020).0,
        _ => [0xff; 6],
    }
}

fn ttl(rng: &mut Rng) -> u8 {
    *pick(rng, &[64u8, 64, 64, 2, 1, 0])
}

/// An L4 payload of `proto` towards `dport`.
fn l4(rng: &mut Rng, proto: u8, v6: bool) -> Vec<u8> {
    match proto {
        17 => udp(
            *pick(rng, &[4000u16, 5353, 68]),
            *pick(rng, &[5000u16, 53, 67]),
            b"hookd",
        ),
        6 => tcp(
            40000,
            *pick(rng, &[22u16, 80, 443]),
            *pick(rng, &[SYN, ACK, SYN | ACK]),
        ),
        _ => {
            let kind = if v6 {
                *pick(rng, &[128u8, 128, 129, 1, 3])
            } else {
                *pick(rng, &[8u8, 8, 0, 3, 11])
            };
            icmp(kind, 0, rng.below(4) as u16, b"hookd-echo")
        }
    }
}

fn ip4_packet(rng: &mut Rng) -> Vec<u8> {
    let proto = *pick(rng, &[17u8, 6, 1, 1]);
    let payload = l4(rng, proto, false);
    let mut p = ipv4(source4(rng), dest4(rng), proto, &payload);
    p[8] = ttl(rng);
    if chance(rng, 8) {
        p[6] = *pick(rng, &[0x20u8, 0x00, 0x20]); // MF
        p[7] = *pick(rng, &[0u8, 1, 3]); // an offset
    }
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    if chance(rng, 4) {
        p[10] ^= 0x40; // a wrong header checksum, adjusted all the same
    }
    p
}

fn ip6_packet(rng: &mut Rng) -> Vec<u8> {
    let proto = *pick(rng, &[17u8, 6, 58, 58]);
    let (src, dst) = (source6(rng), dest6(rng));
    let mut payload = l4(rng, proto, true);
    if proto == 58 {
        let c = icmp6_sum(src, dst, &payload);
        payload[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = if chance(rng, 10) {
        // A fragment header (first or later) or destination options.
        let (nh, hdr) = if chance(rng, 50) {
            (
                44u8,
                vec![proto, 0, 0, *pick(rng, &[0u8, 1, 8, 9]), 0, 0, 0, 7],
            )
        } else {
            (60u8, vec![proto, 0, 1, 4, 0, 0, 0, 0])
        };
        let mut body = hdr;
        body.extend_from_slice(&payload);
        ipv6(src, dst, nh, &body)
    } else {
        ipv6(src, dst, proto, &payload)
    };
    p[7] = ttl(rng);
    p
}

fn icmp6_sum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&m);
    checksum(&pseudo)
}

/// ARP from A: requests (mostly) for the gateways, peers, itself, unknown
/// addresses; sometimes a reply or a probe from 0.0.0.0.
fn arp_frame(rng: &mut Rng) -> Vec<u8> {
    let spa = if chance(rng, 85) {
        v4("198.51.100.10")
    } else {
        source4(rng)
    };
    let tpa = dest4(rng);
    let mut a = arp(A_MAC, spa, tpa);
    if chance(rng, 10) {
        a[7] = 2; // a reply
    }
    let dst = if chance(rng, 80) {
        [0xff; 6]
    } else {
        dest_mac(rng, tpa.into())
    };
    eth(dst, A_MAC, 0x0806, &a)
}

/// A neighbour solicitation from A for a target of every kind.
fn ns_frame(rng: &mut Rng) -> Vec<u8> {
    let target = dest6(rng);
    let src = source6(rng);
    let o = target.octets();
    let dst = if chance(rng, 80) {
        Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(o[13]),
            u16::from_be_bytes([o[14], o[15]]),
        )
    } else {
        target
    };
    let mut msg = icmpv6_nd(135, target);
    if !src.is_unspecified() && chance(rng, 70) {
        msg.extend_from_slice(&[1, 1]);
        msg.extend_from_slice(&A_MAC);
    }
    let c = icmp6_sum(src, dst, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv6(src, dst, 58, &msg);
    p[7] = 255;
    if chance(rng, 5) {
        p = ipv6(
            src,
            dst,
            60,
            &[[58u8, 0, 1, 4, 0, 0, 0, 0].as_slice(), &msg].concat(),
        );
    }
    let o = dst.octets();
    eth([0x33, 0x33, o[12], o[13], o[14], o[15]], A_MAC, 0x86dd, &p)
}

/// A DHCPv4 DISCOVER or REQUEST from A, sometimes for another address or
/// another MAC, or another message.
fn dhcp_frame(rng: &mut Rng) -> Vec<u8> {
    let chaddr = if chance(rng, 85) { A_MAC } else { PEERS[0].mac };
    let kind = *pick(rng, &[1u8, 1, 3, 3, 3, 7, 8]);
    let requested = match rng.below(4) {
        0 => None,
        1 => Some(v4("198.51.100.11")),
        _ => Some(v4("198.51.100.10")),
    };
    let mut bootp = dhcp_request(chaddr, kind, requested);
    if chance(rng, 10) {
        bootp[12..16].copy_from_slice(&v4(pick(rng, &["198.51.100.10", "198.51.100.11"])).octets());
    }
    let src = if chance(rng, 70) {
        v4("0.0.0.0")
    } else {
        v4("198.51.100.10")
    };
    let p = ipv4(src, v4("255.255.255.255"), 17, &udp(68, 67, &bootp));
    eth([0xff; 6], A_MAC, 0x0800, &p)
}

/// A router solicitation from A, from its link-local address or `::`.
fn rs_frame(rng: &mut Rng) -> Vec<u8> {
    let src = if chance(rng, 70) {
        v6("fe80::5054:ff:fe00:a")
    } else {
        v6("::")
    };
    let dst = v6("ff02::2");
    let mut msg = vec![133u8, 0, 0, 0, 0, 0, 0, 0];
    if !src.is_unspecified() {
        msg.extend_from_slice(&[1, 1]);
        msg.extend_from_slice(&A_MAC);
    }
    let c = icmp6_sum(src, dst, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv6(src, dst, 58, &msg);
    p[7] = 255;
    eth([0x33, 0x33, 0, 0, 0, 2], A_MAC, 0x86dd, &p)
}

/// A DHCPv6 message from A: SOLICIT (with or without rapid commit),
/// REQUEST, RENEW, REBIND, or another, with client ids of every length.
fn dhcp6_frame(rng: &mut Rng) -> Vec<u8> {
    let kind = *pick(rng, &[1u8, 1, 3, 5, 6, 8, 11]);
    let mut m = vec![kind, 0x12, 0x34, 0x56];
    let duid_len = *pick(rng, &[10usize, 14, 64, 65, 0]);
    if chance(rng, 90) {
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(duid_len as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0xab, duid_len));
    }
    if chance(rng, 70) {
        m.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 9]);
        m.extend_from_slice(&[0; 8]);
    }
    if chance(rng, 30) {
        m.extend_from_slice(&[0, 14, 0, 0]); // rapid commit
    }
    let (src, dst) = (v6("fe80::5054:ff:fe00:a"), v6("ff02::1:2"));
    let p = ipv6(src, dst, 17, &udp(546, 547, &m));
    eth([0x33, 0x33, 0, 1, 0, 2], A_MAC, 0x86dd, &p)
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let f = match rng.below(100) {
        0..=11 => arp_frame(rng),
        12..=21 => ns_frame(rng),
        22..=26 => dhcp_frame(rng),
        27..=29 => rs_frame(rng),
        30..=33 => dhcp6_frame(rng),
        34..=66 => {
            let p = ip4_packet(rng);
            let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
            eth(dest_mac(rng, dst), A_MAC, 0x0800, &p)
        }
        _ => {
            let p = ip6_packet(rng);
            let o: [u8; 16] = p[24..40].try_into().unwrap();
            eth(dest_mac(rng, IpAddr::V6(o.into())), A_MAC, 0x86dd, &p)
        }
    };
    mutate(rng, f)
}

/// Truncated or with a bit flipped now and then.
fn mutate(rng: &mut Rng, mut f: Vec<u8>) -> Vec<u8> {
    if chance(rng, 6) {
        f.truncate(14 + rng.below(f.len() as u64 - 13) as usize);
    }
    if chance(rng, 6) && f.len() > 14 {
        let at = rng.below((f.len() as u64).min(120)) as usize;
        f[at] ^= 1 << rng.below(8);
    }
    f
}

/// What the kernel did with a frame: the return value, the frame out, and
/// the changes in A's counters.
#[derive(Debug)]
struct Seen {
    ret: u32,
    out: Vec<u8>,
    packets: u64,
    bytes: u64,
    drops: Vec<(usize, u64)>,
    net: Vec<(usize, u64)>,
}

fn diff(before: &[u64], after: &[u64]) -> Vec<(usize, u64)> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| a != b)
        .map(|(i, (b, a))| (i, a - b))
        .collect()
}

/// Runs the program `prog` on `f` (with the `__sk_buff` `ctx`, if any):
/// its return value and the frame it leaves; `None` when the test runner
/// refuses a frame too short for it.
fn test_run(dp: &Datapath, prog: &str, f: &[u8], ctx: Option<&[u8]>) -> Option<(u32, Vec<u8>)> {
    let mut out = vec![0u8; 2048];
    let r = match dp
        .program(prog)
        .expect(prog)
        .test_run(aya::programs::TestRunOptions {
            data_in: Some(f),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..Default::default()
        }) {
        Ok(r) => r,
        Err(_) if short_ip(f) => return None,
        Err(e) => panic!(
            "BPF_PROG_TEST_RUN refused {} ({} bytes): {e}",
            hex(f),
            f.len()
        ),
    };
    out.truncate(r.data_size_out as usize);
    Some((r.return_value, out))
}

/// Runs `hookd_from_vm` on `f` as NIC A's frame: what the kernel did.
fn run(dp: &Datapath, f: &[u8]) -> Option<Seen> {
    let before = dp.stats(TEST_IFINDEX).unwrap_or_default();
    let net_before = dp.counters().net_stats(TEST_IFINDEX).unwrap_or_default();
    let (ret, out) = test_run(dp, hookd_bpf::PROG_FROM_VM, f, None)?;
    let after = dp.stats(TEST_IFINDEX).unwrap_or_default();
    let net_after = dp.counters().net_stats(TEST_IFINDEX).unwrap_or_default();
    Some(Seen {
        ret,
        out,
        packets: after.from_vm_packets - before.from_vm_packets,
        bytes: after.from_vm_bytes - before.from_vm_bytes,
        drops: diff(&before.drops, &after.drops),
        net: diff(&net_before.count, &net_after.count),
    })
}

/// A packet from a tenant's namespace, from the outside: to the tenant's
/// NICs (and the other tenant's, with the same addresses), to addresses of
/// the subnets no NIC holds, the gateways, the outside, IPv4-mapped; with
/// any TTL; or ARP, VLAN-tagged, another EtherType. Mutated as A's are.
fn tenant_frame(rng: &mut Rng) -> Vec<u8> {
    let from = [0x02, 0x68, 0x6e, 0, 0, 1];
    let to = [0x02, 0x68, 0x74, 0, 0, 1];
    let f = match rng.below(20) {
        0 => arp_frame(rng),
        1 => eth(
            to,
            from,
            *pick(rng, &[0x8100u16, 0x88a8, 0x8035, 0x1234]),
            &[0u8; 46],
        ),
        2..=11 => {
            let proto = *pick(rng, &[17u8, 6, 1]);
            let payload = l4(rng, proto, false);
            let dst = v4(pick(
                rng,
                &[
                    "198.51.100.10",
                    "198.51.100.11",
                    "198.51.100.17",
                    "198.51.100.20",
                    "198.51.100.21",
                    "203.0.113.30",
                    "198.51.100.1",
                    "198.51.100.99",
                    "192.0.2.9",
                ],
            ));
            let mut p = ipv4(v4("192.0.2.77"), dst, proto, &payload);
            p[8] = ttl(rng);
            let c = checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            eth(to, from, 0x0800, &p)
        }
        _ => {
            let proto = *pick(rng, &[17u8, 6, 58]);
            let payload = l4(rng, proto, true);
            let dst = v6(pick(
                rng,
                &[
                    "2001:db8:100::10",
                    "2001:db8:100::5054:ff:fe00:a",
                    "2001:db8:100::20",
                    "2001:db8:200::30",
                    "2001:db8:100::1",
                    "2001:db8:100::99",
                    "2001:db8:ff::9",
                    "::ffff:198.51.100.20",
                ],
            ));
            let mut p = ipv6(v6("2001:db8:ff::77"), dst, proto, &payload);
            p[7] = ttl(rng);
            eth(to, from, 0x86dd, &p)
        }
    };
    mutate(rng, f)
}

/// What the kernel did with a packet from a namespace: the return value,
/// the frame out, the veth's counters, and the network counters of the
/// NICs that changed.
#[derive(Debug)]
struct SeenBack {
    ret: u32,
    out: Vec<u8>,
    packets: u64,
    bytes: u64,
    drops: Vec<(usize, u64)>,
    net: Vec<(u32, usize, u64)>,
}

/// The device the frames from tenant namespaces come in on (see [`Twin`]).
const TWIN: &str = "dtwin";

/// The device [`TWIN`] (down, so it sends nothing) in the maps as a twin
/// of a tenant veth: the veth's own counters also count what the
/// namespace's kernel sends by itself (its MLD reports, dropped as no
/// route), which would race with the frame under test.
struct Twin {
    ifindex: u32,
    uplinks: aya::maps::HashMap<aya::maps::MapData, u32, hookd_bpf::layout::Uplink>,
    stats: aya::maps::PerCpuHashMap<aya::maps::MapData, u32, hookd_bpf::layout::NicStats>,
    cpus: usize,
}

impl Twin {
    /// Opens the pinned maps, once.
    fn new(pin_dir: &std::path::Path, ifindex: u32) -> Twin {
        use aya::maps::{Map, MapData};
        let open =
            |name: &str| MapData::from_pin(pin_dir.join("maps").join(name)).expect("a pinned map");
        Twin {
            ifindex,
            uplinks: aya::maps::HashMap::try_from(Map::HashMap(open(hookd_bpf::MAP_UPLINKS)))
                .expect("hookd_uplinks"),
            stats: aya::maps::PerCpuHashMap::try_from(Map::PerCpuHashMap(open(
                hookd_bpf::MAP_STATS,
            )))
            .expect("hookd_stats"),
            cpus: aya::util::nr_cpus().expect("the CPU count"),
        }
    }

    /// Makes the twin lead where the veth `uplink` does, with counters
    /// again each time (the clean-up between rounds removes them);
    /// its ifindex.
    fn of(&mut self, uplink: u32) -> u32 {
        let u = self
            .uplinks
            .get(&uplink, 0)
            .expect("the veth's uplink entry");
        self.uplinks
            .insert(self.ifindex, u, 0)
            .expect("the twin's uplink entry");
        let zero = aya::maps::PerCpuValues::try_from(vec![
            hookd_bpf::layout::NicStats::default();
            self.cpus
        ])
        .expect("per-CPU counters");
        self.stats
            .insert(self.ifindex, zero, 0)
            .expect("the twin's counters");
        self.ifindex
    }
}

/// Runs `hookd_from_tenant` on `f` as if it came in on the veth `uplink`
/// (the test runner's context names the device).
fn run_back(dp: &Datapath, uplink: u32, ports: &[Port], f: &[u8]) -> Option<SeenBack> {
    let net_of = |i: u32| dp.counters().net_stats(i).unwrap_or_default().count;
    let before = dp.stats(uplink).unwrap_or_default();
    let nets_before: Vec<_> = ports.iter().map(|p| net_of(p.ifindex)).collect();
    let ctx = hookd_testkit::vm::skb_ctx(uplink);
    let (ret, out) = test_run(dp, hookd_bpf::PROG_FROM_TENANT, f, Some(&ctx))?;
    let after = dp.stats(uplink).unwrap_or_default();
    let mut net = Vec::new();
    for (p, b) in ports.iter().zip(&nets_before) {
        for (i, d) in diff(b, &net_of(p.ifindex)) {
            net.push((p.ifindex, i, d));
        }
    }
    Some(SeenBack {
        ret,
        out,
        packets: after.from_vm_packets - before.from_vm_packets,
        bytes: after.from_vm_bytes - before.from_vm_bytes,
        drops: diff(&before.drops, &after.drops),
        net,
    })
}

/// Whether the kernel's `seen` is the model's outcome of a packet from a
/// namespace: the veth counts each packet that came in (its length as it
/// came), and its drops; the receiving NIC counts `from_tenant_ns`.
fn agrees_back(outcome: &Outcome, to: Option<u32>, f: &[u8], seen: &SeenBack) -> bool {
    let came_in = seen.packets == 1 && seen.bytes == f.len() as u64;
    match (outcome, to) {
        (Outcome::Drop(r), _) => {
            came_in
                && seen.ret == TC_ACT_SHOT
                && seen.drops == [(r.index(), 1)]
                && seen.net.is_empty()
        }
        (Outcome::Sent { counter, frame, .. }, Some(nic)) => {
            came_in
                && seen.ret == TC_ACT_REDIRECT
                && seen.drops.is_empty()
                && seen.net == [(nic, counter.index(), 1)]
                && frame.as_ref().is_none_or(|f| *f == seen.out)
        }
        (Outcome::Sent { .. }, None) => false,
    }
}

/// Whether the kernel's `seen` is the model's `outcome`.
fn agrees(outcome: &Outcome, seen: &Seen) -> bool {
    match outcome {
        Outcome::Drop(r) => {
            seen.ret == TC_ACT_SHOT
                && seen.drops == [(r.index(), 1)]
                && seen.packets == 0
                && seen.net.is_empty()
        }
        Outcome::Sent {
            counter,
            count,
            frame,
            left_out,
        } => {
            let drops: Vec<(usize, u64)> = if *left_out > 0 {
                vec![(Reason::FloodBound.index(), *left_out)]
            } else {
                vec![]
            };
            seen.ret == TC_ACT_REDIRECT
                && seen.packets == 1
                && seen.bytes == seen.out.len() as u64
                && seen.drops == drops
                && seen.net == [(counter.index(), *count)]
                && frame.as_ref().is_none_or(|f| *f == seen.out)
        }
    }
}

/// The fabric of one round, set up in the kernel's maps and in the model.
struct Round {
    fabric: Fabric,
    policy_xml: String,
    dom: hookd_model::domain::Domain,
    mode: NicMode,
}

fn set_up(
    dp: &mut Datapath,
    rng: &mut Rng,
    ifindex: &dyn Fn(&str) -> u32,
    ns_dir: &std::path::Path,
) -> Round {
    let nets = networks(rng);
    let with_ns = chance(rng, 50);
    dp.set_tenant_namespaces(with_ns.then(|| ns_dir.to_path_buf()));
    // The rule generator does not know every validation rule (icmpv6 with
    // an IPv4 remote, ...): what it draws that is refused is drawn again.
    let (xml, prefixes) = loop {
        let (inner, prefixes) = a_policy(rng);
        let xml = nic_xml(A_MAC, "blue", &inner);
        if hookd_model::domain::parse(&xml).is_ok() {
            break (xml, prefixes);
        }
    };
    let (dom, mode) = plan_of(&xml, &nets);
    dp.program_nic(TEST_IFINDEX, A_MAC, &mode, 1)
        .expect("A programmed");
    let mut ports = vec![Port {
        ifindex: TEST_IFINDEX,
        mac: A_MAC,
        network: "blue".into(),
        prefixes,
    }];
    for p in PEERS.iter().filter(|_| chance(rng, 70)) {
        let inner: String = p
            .prefixes
            .iter()
            .map(|a| format!("<hookd:address prefix='{a}'/>"))
            .collect();
        let (_, m) = plan_of(&nic_xml(p.mac, p.network, &inner), &nets);
        let i = ifindex(p.dev);
        dp.program_nic(i, p.mac, &m, 1).expect("peer programmed");
        ports.push(Port {
            ifindex: i,
            mac: p.mac,
            network: p.network.into(),
            prefixes: p.prefixes.iter().map(|a| a.parse().unwrap()).collect(),
        });
    }
    let uplinks = if with_ns {
        dp.tenant_namespaces()
            .into_iter()
            .map(|(tenant, ifindex)| Uplink { tenant, ifindex })
            .collect()
    } else {
        vec![]
    };
    Round {
        fabric: Fabric {
            networks: nets,
            ports,
            uplinks,
        },
        policy_xml: xml,
        dom,
        mode,
    }
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_network_stage_agrees_with_the_reference_model() {
    hookd_testkit::require_root();
    let (frames, seed) = run_size(100_000, 0x5eed_ae75);
    let fs = Bpffs::new();
    let ns = Netns::new("dnet");
    let name = ns.name.clone();
    let pin_dir = fs.pin_dir();
    let ns_dir = tempfile::tempdir().expect("a directory for tenant namespaces");
    let dir = ns_dir.path().to_owned();
    let report = std::thread::spawn(move || {
        let _in = Netns::enter(&name);
        for p in &PEERS {
            // No dummy driver on this kernel: a veth pair, its far end unused.
            sh(&format!(
                "ip link add {d} type veth peer name {d}x && ip link set {d} up && ip link set {d}x up",
                d = p.dev
            ));
        }
        sh(&format!("ip link add {TWIN} type veth peer name {TWIN}x"));
        let index = |dev: &str| hookd::datapath::netdev::ifindex(dev).expect("a peer device");
        let twin_ifindex = index(TWIN);
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).expect("hookd's programs");
        let mut twin = Twin::new(&pin_dir, twin_ifindex);
        let mut rng = Rng(seed | 1);
        let (mut tried, mut refused, mut rounds) = (0usize, 0usize, 0u64);
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        let mut disagreements = Vec::new();
        let t = std::time::Instant::now();
        while tried < frames && disagreements.len() < 10 {
            let round = set_up(&mut dp, &mut rng, &index, &dir);
            rounds += 1;
            let iface = round
                .dom
                .policy
                .as_ref()
                .and_then(|p| p.interfaces.first())
                .expect("A's interface");
            let anti = &round.mode.enforcement().expect("enforced").anti_spoofing;
            let model_policy = reference::Policy {
                nic: reference::Nic {
                    mac: A_MAC,
                    anti_spoofing: anti,
                },
                ingress: iface.ingress.as_ref(),
                egress: iface.egress.as_ref(),
            };
            let mut ct = reference::Conntrack::default();
            for _ in 0..FRAMES_PER_ROUND.min(frames - tried) {
                if !round.fabric.uplinks.is_empty() && chance(&mut rng, 15) {
                    let up = pick(&mut rng, &round.fabric.uplinks).clone();
                    let f = tenant_frame(&mut rng);
                    let via = twin.of(up.ifindex);
                    let Some(k) = run_back(&dp, via, &round.fabric.ports, &f) else {
                        refused += 1;
                        continue;
                    };
                    tried += 1;
                    let (m, to) = reference::network::frame_from_tenant(&f, &round.fabric, &up.tenant);
                    let label = match &m {
                        Outcome::Drop(r) => format!("back: drop {r:?}"),
                        Outcome::Sent { counter, .. } => format!("back: {counter:?}"),
                    };
                    *seen.entry(label).or_default() += 1;
                    if !agrees_back(&m, to, &f, &k) {
                        disagreements.push(format!(
                            "from {}'s namespace: model {m:?} to {to:?}\n  kernel: {k:?}\n  \
                             peers: {:?}\n  A: {}\n  frame ({} bytes): {}",
                            up.tenant,
                            round.fabric.ports.iter().map(|p| (&p.network, p.ifindex)).collect::<Vec<_>>(),
                            round.policy_xml,
                            f.len(),
                            hex(&f)
                        ));
                        break;
                    }
                    continue;
                }
                let f = random_frame(&mut rng);
                let Some(k) = run(&dp, &f) else {
                    refused += 1;
                    continue;
                };
                tried += 1;
                let m = reference::network::frame_from_vm(
                    &f,
                    &model_policy,
                    &round.fabric,
                    TEST_IFINDEX,
                    &mut ct,
                );
                let label = match &m {
                    Outcome::Drop(r) => format!("drop {r:?}"),
                    Outcome::Sent { counter, .. } => format!("{counter:?}"),
                };
                *seen.entry(label).or_default() += 1;
                if !agrees(&m, &k) {
                    disagreements.push(format!(
                        "model {m:?}\n  kernel: return {}, packets +{}, bytes +{}, drops {:?}, \
                         network counters {:?}\n  frame out: {}\n  policy: {}\n  peers: {:?}, \
                         namespaces: {:?}\n  frame ({} bytes): {}",
                        k.ret,
                        k.packets,
                        k.bytes,
                        k.drops,
                        k.net,
                        hex(&k.out),
                        round.policy_xml,
                        round.fabric.ports.iter().map(|p| (&p.network, p.ifindex)).collect::<Vec<_>>(),
                        round.fabric.uplinks,
                        f.len(),
                        hex(&f)
                    ));
                    break;
                }
            }
            for p in &round.fabric.ports {
                dp.forget_nic(p.ifindex);
            }
        }
        format!(
            "{tried} frames, {rounds} rounds in {:.1} s (seed {seed:#x}), {refused} more refused \
             by the kernel's test runner; the model's outcomes: {seen:?}",
            t.elapsed().as_secs_f64()
        ) + &if disagreements.is_empty() {
            String::new()
        } else {
            format!(
                "\n{} disagreements between the programs and the model:\n{}",
                disagreements.len(),
                disagreements.join("\n")
            )
        }
    })
    .join()
    .expect("the test's thread");
    println!("{report}");
    assert!(!report.contains("disagreements between"), "{report}");
}
