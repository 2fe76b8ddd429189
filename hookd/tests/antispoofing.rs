//! Tier 2: the real kernel. Anti-spoofing verdicts of hookd's programs,
//! through BPF_PROG_TEST_RUN.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-privileged.sh (`--ignored`), where they fail, never
//! skip, if they cannot run.

use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use hookd_bpf::layout::DropReason;
use hookd_model::plan::{AntiSpoofing, Enforcement, NicMode};
use hookd_testkit::vm::*;
use hookd_testkit::*;
use std::net::Ipv6Addr;

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn antispoofing_verdicts_through_bpf_prog_test_run() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let m = mac(VM_MAC);
    let other = mac("52:54:00:00:00:99");
    let h = mac(HOST_MAC);
    dp.program_nic(
        TEST_IFINDEX,
        m,
        &antispoof_mode(&["192.0.2.10/32", "2001:db8::10/128"]),
        1,
    )
    .unwrap();

    let echo = icmp_echo(1);
    let ll = VM_MAC
        .parse::<hookd_model::mac::MacAddr>()
        .unwrap()
        .eui64_link_local();
    let cases: Vec<(&str, Vec<u8>, u32, Option<DropReason>)> = vec![
        (
            "legit IPv4",
            eth(
                h,
                m,
                0x0800,
                &ipv4(v4("192.0.2.10"), v4("192.0.2.1"), 1, &echo),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "spoofed source MAC",
            eth(
                h,
                other,
                0x0800,
                &ipv4(v4("192.0.2.10"), v4("192.0.2.1"), 1, &echo),
            ),
            TC_ACT_SHOT,
            Some(DropReason::MacSpoof),
        ),
        (
            "spoofed IPv4 source",
            eth(
                h,
                m,
                0x0800,
                &ipv4(v4("192.0.2.99"), v4("192.0.2.1"), 1, &echo),
            ),
            TC_ACT_SHOT,
            Some(DropReason::IpSpoof),
        ),
        (
            "DHCP discover from 0.0.0.0",
            eth(
                [0xff; 6],
                m,
                0x0800,
                &ipv4(
                    v4("0.0.0.0"),
                    v4("255.255.255.255"),
                    17,
                    &udp(68, 67, &[0; 240]),
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "UDP from 0.0.0.0 that is not DHCP",
            eth(
                [0xff; 6],
                m,
                0x0800,
                &ipv4(
                    v4("0.0.0.0"),
                    v4("255.255.255.255"),
                    17,
                    &udp(68, 68, &[0; 8]),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::IpSpoof),
        ),
        (
            "DHCP server reply",
            eth(
                [0xff; 6],
                m,
                0x0800,
                &ipv4(
                    v4("192.0.2.10"),
                    v4("255.255.255.255"),
                    17,
                    &udp(67, 68, &[0; 240]),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::DhcpServer),
        ),
        (
            "IPv4 options running past the frame",
            eth(
                h,
                m,
                0x0800,
                &[
                    &[0x4f, 0, 0, 60, 0, 1, 0, 0, 64, 17, 0, 0][..],
                    &[192, 0, 2, 10, 192, 0, 2, 1],
                ]
                .concat(),
            ),
            TC_ACT_SHOT,
            Some(DropReason::Malformed),
        ),
        (
            "IPv4 header length below 20",
            eth(h, m, 0x0800, &[0x44; 20]),
            TC_ACT_SHOT,
            Some(DropReason::Malformed),
        ),
        (
            "truncated neighbour advertisement",
            [
                &eth(h, m, 0x86dd, &[])[..14],
                &ipv6(
                    v6("2001:db8::10"),
                    v6("ff02::1"),
                    58,
                    &[136, 0, 0, 0, 0, 0, 0, 0],
                )[..],
            ]
            .concat(),
            TC_ACT_SHOT,
            Some(DropReason::Malformed),
        ),
        (
            "ARP from own address",
            eth(
                [0xff; 6],
                m,
                0x0806,
                &arp(m, v4("192.0.2.10"), v4("192.0.2.1")),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "ARP probe from 0.0.0.0",
            eth(
                [0xff; 6],
                m,
                0x0806,
                &arp(m, v4("0.0.0.0"), v4("192.0.2.10")),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "ARP with foreign sender IP",
            eth(
                [0xff; 6],
                m,
                0x0806,
                &arp(m, v4("192.0.2.1"), v4("192.0.2.2")),
            ),
            TC_ACT_SHOT,
            Some(DropReason::ArpSpoof),
        ),
        (
            "ARP with foreign sender MAC",
            eth(
                [0xff; 6],
                m,
                0x0806,
                &arp(other, v4("192.0.2.10"), v4("192.0.2.1")),
            ),
            TC_ACT_SHOT,
            Some(DropReason::ArpSpoof),
        ),
        (
            "legit IPv6",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("2001:db8::1"),
                    58,
                    &[128, 0, 0, 0, 0, 1, 0, 1],
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "EUI-64 link-local source",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(ll, v6("ff02::2"), 58, &[133, 0, 0, 0, 0, 0, 0, 0]),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "spoofed IPv6 source",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::99"),
                    v6("2001:db8::1"),
                    58,
                    &[128, 0, 0, 0, 0, 1, 0, 1],
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::IpSpoof),
        ),
        (
            "foreign link-local source",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("fe80::1"),
                    v6("ff02::2"),
                    58,
                    &[133, 0, 0, 0, 0, 0, 0, 0],
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::IpSpoof),
        ),
        (
            "DAD for own address from ::",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    Ipv6Addr::UNSPECIFIED,
                    v6("ff02::1:ff00:10"),
                    58,
                    &icmpv6_nd(135, v6("2001:db8::10")),
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "DAD for a foreign address",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    Ipv6Addr::UNSPECIFIED,
                    v6("ff02::1:ff00:1"),
                    58,
                    &icmpv6_nd(135, v6("2001:db8::1")),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::NdSpoof),
        ),
        (
            "UDP from ::",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(Ipv6Addr::UNSPECIFIED, v6("ff02::1"), 17, &udp(1, 2, &[])),
            ),
            TC_ACT_SHOT,
            Some(DropReason::IpSpoof),
        ),
        (
            "neighbour solicitation for the router",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("ff02::1:ff00:1"),
                    58,
                    &icmpv6_nd(135, v6("2001:db8::1")),
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "NA for own address",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("ff02::1"),
                    58,
                    &icmpv6_nd(136, v6("2001:db8::10")),
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "NA for a foreign address",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("ff02::1"),
                    58,
                    &icmpv6_nd(136, v6("2001:db8::1")),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::NdSpoof),
        ),
        (
            // Found by the differential test: the trie holds IPv4 prefixes
            // in this form, so the target matched 192.0.2.10/32.
            "NA for the IPv4-mapped form of the NIC's IPv4 address",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("ff02::1"),
                    58,
                    &icmpv6_nd(136, v6("::ffff:192.0.2.10")),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::NdSpoof),
        ),
        (
            // Found by the differential test: the walk read this later
            // fragment's data (zeros: Hop-by-Hop headers) as headers, 4
            // of them, and dropped it as malformed.
            "a later fragment whose Fragment header names Hop-by-Hop",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    v6("2001:db8::10"),
                    v6("2001:db8::1"),
                    44,
                    &[&[0u8, 0, 0, 8, 0, 0, 0, 1][..], &[0u8; 40][..]].concat(),
                ),
            ),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "router advertisement",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    ll,
                    v6("ff02::1"),
                    58,
                    &icmpv6_nd(134, Ipv6Addr::UNSPECIFIED),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::RouterAdvert),
        ),
        (
            "RA behind a hop-by-hop header",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(
                    ll,
                    v6("ff02::1"),
                    0,
                    &[
                        &[58u8, 0, 1, 4, 0, 0, 0, 0][..],
                        &icmpv6_nd(134, Ipv6Addr::UNSPECIFIED),
                    ]
                    .concat(),
                ),
            ),
            TC_ACT_SHOT,
            Some(DropReason::RouterAdvert),
        ),
        (
            "DHCPv6 server reply",
            eth(
                h,
                m,
                0x86dd,
                &ipv6(ll, v6("fe80::1"), 17, &udp(547, 546, &[0; 8])),
            ),
            TC_ACT_SHOT,
            Some(DropReason::DhcpServer),
        ),
        (
            "VLAN-tagged frame",
            eth(h, m, 0x8100, &[0, 5, 8, 0]),
            TC_ACT_SHOT,
            Some(DropReason::Vlan),
        ),
        (
            "unknown ethertype",
            eth(h, m, 0x88b5, &[0; 8]),
            TC_ACT_SHOT,
            Some(DropReason::Ethertype),
        ),
        (
            // QEMU announces a migrated guest with RARP from its MAC, so
            // that switches learn its new port.
            "RARP announce from the NIC's MAC",
            eth([0xff; 6], m, 0x8035, &rarp_announce(m)),
            TC_ACT_UNSPEC,
            None,
        ),
        (
            "RARP from another MAC",
            eth([0xff; 6], other, 0x8035, &rarp_announce(other)),
            TC_ACT_SHOT,
            Some(DropReason::MacSpoof),
        ),
    ];
    let mut failures = Vec::new();
    for (name, frame, want, reason) in &cases {
        let before = dp.stats(TEST_IFINDEX).unwrap();
        let got = run(&dp, frame);
        let after = dp.stats(TEST_IFINDEX).unwrap();
        if got != *want {
            failures.push(format!("{name}: verdict {got:#x}, want {want:#x}"));
        }
        if let Some(r) = reason {
            if after.drops[*r as usize] != before.drops[*r as usize] + 1 {
                failures.push(format!("{name}: drop counter {} not incremented", r.name()));
            }
        } else if after.from_vm_packets != before.from_vm_packets + 1 {
            failures.push(format!("{name}: from_vm_packets not incremented"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // A NIC whose policy has no addresses: MAC checked, IP sources not.
    dp.program_nic(
        TEST_IFINDEX,
        m,
        &NicMode::Enforced(Enforcement {
            anti_spoofing: AntiSpoofing::default(),
            firewall: Default::default(),
            network: None,
            conntrack_entries: None,
        }),
        2,
    )
    .unwrap();
    assert_eq!(
        run(&dp, &cases[2].1),
        TC_ACT_UNSPEC,
        "IP not checked without addresses"
    );
    assert_eq!(
        run(&dp, &cases[1].1),
        TC_ACT_SHOT,
        "MAC still checked without addresses"
    );
    // Unmanaged NIC: counted, never filtered.
    dp.program_nic(TEST_IFINDEX, m, &NicMode::CountersOnly, 3)
        .unwrap();
    for (name, frame, _, _) in &cases {
        assert_eq!(
            run(&dp, frame),
            TC_ACT_UNSPEC,
            "unmanaged NIC filtered {name}"
        );
    }
    let slot = dp.nic_config(TEST_IFINDEX).unwrap().slot;
    assert!(dp.stats(TEST_IFINDEX).unwrap().from_vm_packets > 0);
    dp.forget_nic(TEST_IFINDEX);
    assert!(dp.stats(TEST_IFINDEX).is_none() && dp.nic_config(TEST_IFINDEX).is_none());
    assert_eq!(dp.prefix_count(TEST_IFINDEX), 0);
    // Unknown NIC: not ours to judge.
    assert_eq!(run(&dp, &cases[1].1), TC_ACT_UNSPEC);

    // Counter slots are given in turn: the NIC programmed again gets the
    // next one, not the one it left, and starts at zero even where the
    // slot holds counts (as one a NIC long gone left behind).
    let counters = aya::maps::MapData::from_pin(fs.pin_dir().join("maps/hookd_counters")).unwrap();
    let mut counters = aya::maps::PerCpuArray::<_, hookd_bpf::layout::NicStats>::try_from(
        aya::maps::Map::PerCpuArray(counters),
    )
    .unwrap();
    let stale = hookd_bpf::layout::NicStats {
        to_vm_packets: 99,
        from_vm_packets: 99,
        ..Default::default()
    };
    let cpus = aya::util::nr_cpus().unwrap();
    counters
        .set(
            slot + 1,
            aya::maps::PerCpuValues::try_from(vec![stale; cpus]).unwrap(),
            0,
        )
        .unwrap();
    dp.program_nic(TEST_IFINDEX, m, &NicMode::CountersOnly, 4)
        .unwrap();
    assert_eq!(dp.nic_config(TEST_IFINDEX).unwrap().slot, slot + 1);
    assert_eq!(
        dp.stats(TEST_IFINDEX).unwrap(),
        hookd_bpf::layout::NicStats::default(),
        "a new NIC's counters start at zero"
    );
    run(&dp, &cases[1].1);
    assert_eq!(dp.stats(TEST_IFINDEX).unwrap().from_vm_packets, 1);
    dp.forget_nic(TEST_IFINDEX);
}

/// A RARP request as QEMU's announce sends it after a migration (opcode 3,
/// the guest's MAC as sender and target, no addresses).
fn rarp_announce(mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 3];
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[0; 4]);
    p
}

/// The programs find a NIC's config by ifindex in an array below
/// NIC_INDEX_DIRECT and in a hash above it (maps.h): both are enforced,
/// policy switches flip both, and a NIC forgotten is no longer judged.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn configs_are_found_below_and_above_the_direct_index() {
    let fs = Bpffs::new();
    let ns = Netns::new("far");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let far = hookd_bpf::layout::NIC_INDEX_DIRECT + 7;
        sh(&format!(
            "ip link add fr0 index {far} type veth peer name fr1 && ip link add nr0 type veth peer name nr1"
        ));
        let near = hookd::datapath::netdev::ifindex("nr0").unwrap();
        assert!(near < hookd_bpf::layout::NIC_INDEX_DIRECT);
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let m = mac(VM_MAC);
        let from = |src: &str| {
            eth(
                mac(HOST_MAC),
                m,
                0x0800,
                &ipv4(v4(src), v4("192.0.2.1"), 1, &icmp_echo(1)),
            )
        };
        for (generation, own, other) in [
            (1, "192.0.2.10", "192.0.2.20"),
            (2, "192.0.2.20", "192.0.2.10"),
            (3, "192.0.2.10", "192.0.2.20"),
        ] {
            for ifindex in [near, far] {
                dp.program_nic(ifindex, m, &antispoof_mode(&[&format!("{own}/32")]), generation)
                    .unwrap();
            }
            for ifindex in [near, far] {
                let before = dp.stats(ifindex).unwrap().drops[DropReason::IpSpoof as usize];
                assert_eq!(
                    run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, ifindex, &from(own)),
                    TC_ACT_UNSPEC,
                    "generation {generation}: ifindex {ifindex} drops its own address {own}"
                );
                assert_eq!(
                    run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, ifindex, &from(other)),
                    TC_ACT_SHOT,
                    "generation {generation}: ifindex {ifindex} passes {other}, not its address"
                );
                let after = dp.stats(ifindex).unwrap().drops[DropReason::IpSpoof as usize];
                assert_eq!(after, before + 1, "ifindex {ifindex}: the drop is counted");
            }
        }
        dp.forget_nic(far);
        assert_eq!(
            run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, far, &from("192.0.2.20")),
            TC_ACT_UNSPEC,
            "a forgotten NIC is still judged"
        );
        assert_eq!(run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, near, &from("192.0.2.20")), TC_ACT_SHOT);
        // A daemon started again finds the same configs in force.
        drop(dp);
        let dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        assert_eq!(run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, near, &from("192.0.2.20")), TC_ACT_SHOT);
        assert_eq!(run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, near, &from("192.0.2.10")), TC_ACT_UNSPEC);
        assert_eq!(run_prog_at(&dp, hookd_bpf::PROG_FROM_VM, far, &from("192.0.2.20")), TC_ACT_UNSPEC);
    })
    .join()
    .unwrap();
}
