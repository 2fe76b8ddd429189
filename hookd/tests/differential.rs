//! Tier 2: differential testing of the programs against the reference model
//! (`hookd_model::reference`, written from docs/datapath.md). Random
//! policies are compiled and programmed as hookd does. Random and mutated
//! frames go through `hookd_from_vm` with BPF_PROG_TEST_RUN and through the
//! model. The frames are valid, truncated, with odd EtherTypes, VLAN tags,
//! IPv6 extension chains, fragments, ARP and ND. The test compares the
//! verdict, the drop reason, and the NIC's counters (one packet and its
//! bytes, or one drop of that reason). Each disagreement is printed with
//! the policy and the frame that reproduce it. There must be none.
//!
//! Covered so far: anti-spoofing on NICs without security groups. The
//! firewall, conntrack and the network stage are not covered yet.
//!
//! `HOOKD_DIFF_FRAMES` (default 200,000) and `HOOKD_DIFF_SEED` set the run.
//! Needs root; `#[ignore]`d in a plain `cargo test`, run by
//! scripts/test-privileged.sh, where it fails, never skips.

use aya::programs::TestRun as _;
use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use hookd_model::reference::{self, Reason, Verdict};
use hookd_testkit::vm::{TC_ACT_SHOT, TC_ACT_UNSPEC, TEST_IFINDEX};
use hookd_testkit::xml::{DomainXml, policy};
use hookd_testkit::*;
use std::fmt::Write as _;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];
const FRAMES_PER_POLICY: usize = 2_000;

/// Addresses a policy may give, and sources a frame may carry.
const PREFIXES: [&str; 7] = [
    "192.0.2.10/32",
    "192.0.2.16/28",
    "198.51.100.0/24",
    "2001:db8::10/128",
    "2001:db8:1::/64",
    "203.0.113.0/24",
    "2001:db8:ff::/48",
];
const SOURCES4: [[u8; 4]; 6] = [
    [192, 0, 2, 10],
    [192, 0, 2, 20],
    [198, 51, 100, 7],
    [192, 0, 2, 99],
    [0, 0, 0, 0],
    [203, 0, 113, 255],
];

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

fn source6(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    match rng.below(7) {
        0 => {} // ::
        1 => {
            a = "2001:db8::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }
        2 => {
            a = "2001:db8:1::5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }
        3 => {
            a = "::ffff:192.0.2.10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }
        4 => {
            let ll = "52:54:00:00:00:0a"
                .parse::<hookd_model::mac::MacAddr>()
                .unwrap()
                .eui64_link_local();
            a = ll.octets();
        }
        5 => {
            a = "2001:db8:ff:1::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }
        _ => {
            a = "2001:db8:9::9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }
    }
    a
}

/// A random interface policy: 0-3 addresses, the two allow-attributes.
fn random_policy(rng: &mut Rng) -> String {
    let mut chosen: Vec<&str> = (0..rng.below(4)).map(|_| *pick(rng, &PREFIXES)).collect();
    chosen.sort_unstable();
    chosen.dedup(); // a policy lists an address once
    let mut addrs = String::new();
    for p in chosen {
        let _ = write!(addrs, "<hookd:address prefix='{p}'/>");
    }
    let flag = |rng: &mut Rng| if chance(rng, 30) { "true" } else { "false" };
    policy(&format!(
        "<hookd:interface mac='52:54:00:00:00:0a' allow-dhcp-server='{}' \
         allow-router-advertisements='{}'>{addrs}</hookd:interface>",
        flag(rng),
        flag(rng)
    ))
}

fn l4(rng: &mut Rng, proto: u8, src6: Option<[u8; 16]>) -> Vec<u8> {
    let port = |rng: &mut Rng| *pick(rng, &[67u16, 68, 546, 547, 53, 1234]);
    match proto {
        17 => udp(port(rng), port(rng), &[0u8; 4]),
        6 => tcp(1000, 22, SYN),
        58 => {
            let kind = *pick(rng, &[128u8, 133, 134, 135, 136, 137, 143, 1]);
            let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&src6.unwrap_or_else(|| source6(rng)));
            m
        }
        1 => icmp_echo(1),
        _ => vec![0u8; 16],
    }
}

/// IPv6 with 0-5 extension headers before `proto`.
fn ipv6_frame(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let exts: Vec<u8> = (0..rng.below(6))
        .map(|_| *pick(rng, &[0u8, 43, 44, 51, 60]))
        .collect();
    let target = if chance(rng, 50) {
        Some(source6(rng))
    } else {
        None
    };
    let mut payload = l4(rng, proto, target);
    for (k, &ext) in exts.iter().enumerate().rev() {
        let next = exts.get(k + 1).copied().unwrap_or(proto);
        let mut h = vec![next, 0, 0, 0, 0, 0, 0, 0];
        if ext == 44 && chance(rng, 30) {
            h[3] = 8; // a non-first fragment (offset 1)
        }
        if ext == 51 {
            h[1] = 0; // AH: (0 + 2) * 4 = 8 bytes
        } else if ext != 44 && chance(rng, 20) {
            h[1] = 1; // 16 bytes
            h.extend_from_slice(&[0u8; 8]);
        }
        h.extend_from_slice(&payload);
        payload = h;
    }
    let first = exts.first().copied().unwrap_or(proto);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[first, 64]);
    ip.extend_from_slice(&source6(rng));
    ip.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    ip.extend_from_slice(&payload);
    ip
}

fn ipv4_frame(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let src = std::net::Ipv4Addr::from(*pick(rng, &SOURCES4));
    let payload = l4(rng, proto, None);
    let mut ip = ipv4(src, std::net::Ipv4Addr::new(192, 0, 2, 1), proto, &payload);
    if chance(rng, 15) {
        ip[6] = 0x20; // MF: a first fragment
    }
    if chance(rng, 15) {
        ip[7] = 0x10; // an offset: a later fragment
    }
    if chance(rng, 5) {
        ip[0] = *pick(rng, &[0x44u8, 0x46, 0x55, 0x4f]);
    }
    ip
}

/// A random frame from the VM: mostly well-formed, then truncated or with
/// a byte changed now and then.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let src = if chance(rng, 92) {
        MAC
    } else {
        [0x52, 0x54, 0, 0, 0, 0x99]
    };
    let proto = *pick(rng, &[17u8, 6, 58, 1, 50, 132]);
    let (ethertype, payload) = match rng.below(10) {
        0..=2 => (0x0800, ipv4_frame(rng, proto)),
        3..=5 => (0x86dd, ipv6_frame(rng, proto)),
        6 => {
            let sha = if chance(rng, 85) {
                MAC
            } else {
                [2, 0, 0, 0, 0, 2]
            };
            let spa = std::net::Ipv4Addr::from(*pick(rng, &SOURCES4));
            (0x0806, arp(sha, spa, std::net::Ipv4Addr::new(192, 0, 2, 1)))
        }
        7 => (*pick(rng, &[0x8035u16, 0x8100, 0x88a8]), vec![0u8; 46]),
        8 => (rng.below(0x10000) as u16, vec![0u8; 46]),
        _ => (0x0800, ipv6_frame(rng, proto)), // an EtherType that lies
    };
    let mut f = eth(mac("02:00:00:00:00:01"), src, ethertype, &payload);
    if chance(rng, 20) {
        // Not below an Ethernet header: BPF_PROG_TEST_RUN refuses those,
        // as a tap does.
        f.truncate(14 + rng.below(f.len() as u64 - 13) as usize);
    }
    if chance(rng, 10) && !f.is_empty() {
        let at = rng.below(f.len() as u64) as usize;
        f[at] ^= 1 << rng.below(8);
    }
    f
}

/// An IPv4 or IPv6 EtherType without a whole IP header behind it.
fn short_ip(f: &[u8]) -> bool {
    match (f.get(12), f.get(13)) {
        (Some(0x08), Some(0x00)) => f.len() < 14 + 20,
        (Some(0x86), Some(0xdd)) => f.len() < 14 + 40,
        _ => false,
    }
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_programs_agree_with_the_reference_model() {
    hookd_testkit::require_root();
    let frames: usize = std::env::var("HOOKD_DIFF_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("HOOKD_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_d1ff);
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).expect("hookd's programs");
    let mut rng = Rng(seed | 1);
    let mut disagreements = Vec::new();
    let t = std::time::Instant::now();
    let mut tried = 0;
    let mut refused = 0;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    while tried < frames && disagreements.len() < 10 {
        let xml = random_policy(&mut rng);
        let domain = DomainXml::new("diff", "00000000-0000-4000-8000-00000000d1ff")
            .metadata(&xml)
            .nic("bridge", "52:54:00:00:00:0a", None)
            .to_string();
        let dom = hookd_model::domain::parse(&domain).expect("a valid random policy");
        let plan = hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps)
            .expect("a plan");
        let mode = &plan[0].mode;
        let anti = &mode.enforcement().expect("enforced").anti_spoofing;
        dp.forget_nic(TEST_IFINDEX);
        dp.program_nic(TEST_IFINDEX, MAC, mode, tried as u64)
            .expect("programmed");
        let nic = reference::Nic {
            mac: MAC,
            anti_spoofing: anti,
        };
        for _ in 0..FRAMES_PER_POLICY.min(frames - tried) {
            let f = random_frame(&mut rng);
            let before = dp.stats(TEST_IFINDEX).unwrap_or_default();
            let verdict = match dp
                .program(hookd_bpf::PROG_FROM_VM)
                .expect("from_vm")
                .test_run(aya::programs::TestRunOptions {
                    data_in: Some(&f),
                    ..Default::default()
                }) {
                Ok(r) => r.return_value,
                // The kernel's test runner refuses an IP EtherType without
                // a whole IP header (it reads the header to set up the
                // skb); frames run on real taps in antispoofing.rs.
                Err(_) if short_ip(&f) => {
                    refused += 1;
                    continue;
                }
                Err(e) => panic!(
                    "BPF_PROG_TEST_RUN refused {} ({} bytes): {e}",
                    hex(&f),
                    f.len()
                ),
            };
            let after = dp.stats(TEST_IFINDEX).unwrap_or_default();
            tried += 1;
            let model = reference::from_vm(&f, &nic);
            let dropped: Vec<usize> = (0..after.drops.len())
                .filter(|&r| after.drops[r] != before.drops[r])
                .collect();
            let counted = after.from_vm_packets - before.from_vm_packets;
            let kernel = match (verdict, dropped.as_slice(), counted) {
                (TC_ACT_UNSPEC, [], 1) => Some(Verdict::Pass),
                (TC_ACT_SHOT, [r], 0) => [
                    Reason::MacSpoof,
                    Reason::IpSpoof,
                    Reason::ArpSpoof,
                    Reason::NdSpoof,
                    Reason::DhcpServer,
                    Reason::RouterAdvert,
                    Reason::Vlan,
                    Reason::Ethertype,
                    Reason::Malformed,
                ]
                .into_iter()
                .find(|m| m.index() == *r)
                .map(Verdict::Drop),
                _ => None,
            };
            *seen.entry(format!("{model:?}")).or_default() += 1;
            let bytes_ok =
                counted == 0 || after.from_vm_bytes - before.from_vm_bytes == f.len() as u64;
            if kernel != Some(model) || !bytes_ok {
                disagreements.push(format!(
                    "model {model:?}, kernel: return {verdict}, drops {dropped:?}, packets +{counted}, bytes +{}\n  policy: {xml}\n  frame ({} bytes): {}",
                    after.from_vm_bytes - before.from_vm_bytes,
                    f.len(),
                    hex(&f)
                ));
            }
        }
    }
    println!(
        "{tried} frames in {:.1} s (seed {seed:#x}), {refused} of them IP frames too short \
         for the kernel's test runner; the model's verdicts on the others: {seen:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements between the programs and the model:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
