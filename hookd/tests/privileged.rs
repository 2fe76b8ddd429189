//! Tier 2: the real kernel. hookd's programs are loaded and run through
//! BPF_PROG_TEST_RUN, and attached to real taps in a private network
//! namespace where the test plays the VM through the tap's file descriptor.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-all.sh (`--include-ignored`), where they fail, never skip,
//! if they cannot run.

mod support;

use aya::programs::{TestRun, TestRunOptions};
use hookd::config::AttachMode;
use hookd::core::records::StateDir;
use hookd::core::{Daemon, DataPlane};
use hookd::datapath::{Attachment, Datapath};
use hookd_bpf::layout::DropReason;
use hookd_model::hook::HookArgs;
use hookd_model::plan::{AntiSpoofing, Enforcement, NicMode};
use ipnet::IpNet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use support::*;

const VM_MAC: &str = "52:54:00:00:00:0a";
const HOST_MAC: &str = "02:00:00:00:00:01";
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX; // -1: pass on to the next program / the stack

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn antispoof_mode(prefixes: &[&str]) -> NicMode {
    let mut p: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
    p.push(IpNet::V6(ipnet::Ipv6Net::from(
        VM_MAC
            .parse::<hookd_model::mac::MacAddr>()
            .unwrap()
            .eui64_link_local(),
    )));
    NicMode::Enforced(Enforcement {
        anti_spoofing: AntiSpoofing {
            prefixes: p,
            ..Default::default()
        },
        firewall: Default::default(),
    })
}

fn run(dp: &Datapath, frame: &[u8]) -> u32 {
    let prog = dp.program(hookd_bpf::PROG_FROM_VM).unwrap();
    let opts = TestRunOptions {
        data_in: Some(frame),
        ..Default::default()
    };
    prog.test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
}

/// BPF_PROG_TEST_RUN runs on the loopback device of the namespace: ifindex 1.
const TEST_IFINDEX: u32 = 1;

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
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
    dp.forget_nic(TEST_IFINDEX);
    assert!(dp.stats(TEST_IFINDEX).is_none() && dp.nic_config(TEST_IFINDEX).is_none());
    assert_eq!(dp.prefix_count(TEST_IFINDEX), 0);
    // Unknown NIC: not ours to judge.
    assert_eq!(run(&dp, &cases[1].1), TC_ACT_UNSPEC);
}

/// Sends an echo request from the "VM" and counts the host's replies.
fn ping_from_vm(tap: &mut Tap, src_mac: &str, src_ip: &str, seq: u16) -> usize {
    let f = eth(
        mac(HOST_MAC),
        mac(src_mac),
        0x0800,
        &ipv4(v4(src_ip), v4("192.0.2.1"), 1, &icmp_echo(seq)),
    );
    tap.send(&f);
    echo_replies(&tap.recv_for(Duration::from_millis(400)), seq)
}

fn tap_enforcement(mode: AttachMode, expect: Attachment) {
    let fs = Bpffs::new();
    let ns = Netns::new(if expect == Attachment::Tcx {
        "tcx"
    } else {
        "nl"
    });
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        Netns::enter(&name);
        let mut tap = Tap::create("hk0");
        host_side("hk0", HOST_MAC, VM_MAC);
        let uuid = "00000000-0000-4000-8000-00000000000a";
        let mut dp = Datapath::open(&pin_dir, mode).unwrap();

        // Before hookd: everything passes, spoofed or not.
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 1),
            1,
            "baseline: spoofed ping answered"
        );

        let (ifindex, how) = dp
            .attach_nic(
                uuid,
                "hk0",
                mac(VM_MAC),
                &antispoof_mode(&["192.0.2.10/32"]),
                1,
            )
            .unwrap();
        assert_eq!(how, expect);
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 2),
            1,
            "legit ping answered"
        );
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 3),
            0,
            "spoofed IP dropped"
        );
        assert_eq!(
            ping_from_vm(&mut tap, "52:54:00:00:00:99", "192.0.2.10", 4),
            0,
            "spoofed MAC dropped"
        );
        // A VLAN-tagged frame: the kernel moves the tag into skb metadata
        // before tc ingress; the program must still see and drop it.
        let inner = ipv4(v4("192.0.2.10"), v4("192.0.2.1"), 1, &icmp_echo(9));
        let tagged = eth(
            mac(HOST_MAC),
            mac(VM_MAC),
            0x8100,
            &[&[0u8, 5, 8, 0][..], &inner].concat(),
        );
        tap.send(&tagged);
        tap.recv_for(Duration::from_millis(200));
        let s = dp.stats(ifindex).unwrap();
        assert_eq!(
            s.drops[DropReason::Vlan as usize],
            1,
            "VLAN-tagged frame from the VM dropped"
        );
        assert_eq!(s.drops[DropReason::IpSpoof as usize], 1);
        assert_eq!(s.drops[DropReason::MacSpoof as usize], 1);
        assert!(s.from_vm_packets >= 1 && s.to_vm_packets >= 1, "{s:?}");

        // The daemon goes away: links stay pinned, enforcement continues.
        drop(dp);
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 5),
            0,
            "still enforced with no daemon"
        );
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 6), 1);
        // A new daemon adopts the pinned maps: counters carried on.
        let mut dp = Datapath::open(&pin_dir, mode).unwrap();
        assert_eq!(
            dp.stats(ifindex).unwrap().drops[DropReason::IpSpoof as usize],
            2
        );

        // Detach: nothing of the NIC is left, and traffic is no longer filtered.
        let rec = hookd::core::records::NicRecord {
            mac: VM_MAC.into(),
            kind: "ethernet".into(),
            tap: "hk0".into(),
            ifindex,
            mode: hookd::core::records::NicState::Enforced,
            attach: Some(how),
            addresses: vec![],
            rules: vec![],
        };
        dp.detach_nic(uuid, &rec).unwrap();
        dp.forget_domain(uuid).unwrap();
        assert!(dp.stats(ifindex).is_none() && dp.nic_config(ifindex).is_none());
        assert_eq!(dp.prefix_count(ifindex), 0);
        assert!(!pin_dir.join("links").join(uuid).exists());
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 7),
            1,
            "detached: spoofed ping answered again"
        );
        let tc = std::process::Command::new("tc")
            .args(["filter", "show", "dev", "hk0", "ingress"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&tc.stdout).contains("hookd"),
            "netlink filter left behind"
        );
    })
    .join()
    .expect("tap test thread");
    drop(ns);
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn tap_frames_are_judged_with_tcx_and_survive_a_daemon_restart() {
    tap_enforcement(AttachMode::Auto, Attachment::Tcx);
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn netlink_clsact_fallback_enforces_the_same() {
    tap_enforcement(AttachMode::Netlink, Attachment::Netlink);
}

fn domain_xml(tap: &str, with_policy: bool, with_target: bool) -> String {
    let policy = if with_policy {
        "<metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'><hookd:interface>\
         <hookd:address prefix='192.0.2.10/32'/></hookd:interface></hookd:policy></metadata>"
    } else {
        ""
    };
    let target = if with_target {
        format!("<target dev='{tap}'/>")
    } else {
        String::new()
    };
    format!(
        "<domain type='qemu'><name>vm1</name><uuid>00000000-0000-4000-8000-0000000000b1</uuid>{policy}\
         <devices><interface type='ethernet'><mac address='{VM_MAC}'/>{target}</interface></devices></domain>"
    )
}

fn hook(d: &mut Daemon, op: &str, xml: &str) -> Result<String, hookd::core::DaemonError> {
    let args = HookArgs {
        domain: "vm1".into(),
        operation: op.into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    d.hook_event(&args, xml)
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn daemon_lifecycle_is_idempotent_and_cleans_up() {
    let fs = Bpffs::new();
    let ns = Netns::new("daemon");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        Netns::enter(&name);
        let mut tap = Tap::create("vnet7");
        host_side("vnet7", HOST_MAC, VM_MAC);
        let run = tempfile::tempdir().unwrap();
        let open = || {
            let dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
            Daemon::new(Box::new(dp), StateDir::open(run.path()).unwrap(), true)
        };
        let mut d = open();
        let xml = domain_xml("vnet7", true, true);
        assert!(
            hook(&mut d, "prepare", &domain_xml("vnet7", true, false))
                .unwrap()
                .contains("valid")
        );
        hook(&mut d, "start", &xml).unwrap();
        hook(&mut d, "started", &xml).unwrap(); // twice is harmless
        assert_eq!(d.records().len(), 1);
        assert_eq!(d.records()[0].attached_at, "start");
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 1), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 2), 1);

        // Restart: the new daemon adopts the record and the pinned links.
        drop(d);
        let mut d = open();
        assert_eq!(d.records().len(), 1, "adopted");
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 3), 0);

        // stopped XML without <target dev>: detached from the record.
        hook(&mut d, "stopped", &domain_xml("vnet7", true, false)).unwrap();
        assert!(d.records().is_empty());
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 4), 1);
        assert!(
            std::fs::read_dir(pin_dir.join("links"))
                .unwrap()
                .next()
                .is_none(),
            "link pins left"
        );
        assert!(
            std::fs::read_dir(run.path().join("domains"))
                .unwrap()
                .next()
                .is_none(),
            "state left"
        );
        // Stopping an unknown domain is harmless.
        assert!(
            hook(&mut d, "release", &xml)
                .unwrap()
                .contains("nothing to do")
        );

        // Invalid policy at start: refused, nothing attached.
        let bad = xml.replace("192.0.2.10/32", "192.0.2.10/33");
        let e = hook(&mut d, "start", &bad).unwrap_err().to_string();
        assert!(e.contains("hookd:address") && e.contains("prefix"), "{e}");
        assert!(d.records().is_empty());
        // A tap that does not exist: attach fails, nothing half-applied.
        let e = hook(&mut d, "start", &domain_xml("vnet-missing", true, true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vnet-missing"), "{e}");
        assert!(d.records().is_empty());
        assert!(
            std::fs::read_dir(pin_dir.join("links"))
                .unwrap()
                .next()
                .is_none()
        );
        drop(tap);
    })
    .join()
    .expect("daemon test thread");
    drop(ns);
}

fn run_prog(dp: &Datapath, prog: &str, frame: &[u8]) -> u32 {
    let opts = TestRunOptions {
        data_in: Some(frame),
        ..Default::default()
    };
    dp.program(prog)
        .unwrap()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// Programs TEST_IFINDEX with the policy `inner` (children of the
/// <hookd:interface> of VM_MAC, which owns 192.0.2.10/32 and 2001:db8::10/128).
fn program_policy(dp: &mut Datapath, inner: &str, generation: u64) {
    let xml = format!(
        "<domain><name>fw</name><uuid>u</uuid><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'>\
         <hookd:interface mac='{VM_MAC}'><hookd:address prefix='192.0.2.10/32'/><hookd:address prefix='2001:db8::10/128'/>\
         {inner}</hookd:interface></hookd:policy></metadata><devices><interface type='bridge'>\
         <mac address='{VM_MAC}'/></interface></devices></domain>"
    );
    let dom = hookd_model::domain::parse(&xml).unwrap();
    let plan =
        hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps).unwrap();
    dp.program_nic(TEST_IFINDEX, mac(VM_MAC), &plan[0].mode, generation)
        .unwrap();
}

const VM4: &str = "192.0.2.10";

/// A frame to the VM (ingress) from `src`.
fn to_vm4(src: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        mac(VM_MAC),
        mac(HOST_MAC),
        0x0800,
        &ipv4(v4(src), v4(VM4), proto, l4),
    )
}
/// A frame from the VM (egress) to `dst`.
fn from_vm4(dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        mac(HOST_MAC),
        mac(VM_MAC),
        0x0800,
        &ipv4(v4(VM4), v4(dst), proto, l4),
    )
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn security_group_rules_and_connection_tracking() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(
        &mut dp,
        "<hookd:ingress default='deny'>\
           <hookd:rule action='allow' protocol='tcp' ports='22,8000-8080' remote='198.51.100.0/24'/>\
           <hookd:rule action='deny' protocol='tcp' ports='22' remote='198.51.100.66/32'/>\
           <hookd:rule action='allow' protocol='icmp' icmp-type='8'/>\
           <hookd:rule action='allow' protocol='tcp' ports='80' remote='2001:db8:1::/48'/>\
         </hookd:ingress>\
         <hookd:egress default='allow'>\
           <hookd:rule action='deny' protocol='udp' ports='53' remote='203.0.113.0/24'/>\
         </hookd:egress>",
        1,
    );
    let to = hookd_bpf::PROG_TO_VM;
    let from = hookd_bpf::PROG_FROM_VM;
    let drops = |dp: &Datapath, r: DropReason| dp.stats(TEST_IFINDEX).unwrap().drops[r as usize];
    let mut failures = Vec::new();
    let mut expect =
        |dp: &Datapath, name: &str, prog: &str, frame: Vec<u8>, want: Option<DropReason>| {
            let before = want.map(|r| drops(dp, r));
            let got = run_prog(dp, prog, &frame);
            match want {
                None if got != TC_ACT_UNSPEC => {
                    failures.push(format!("{name}: dropped, want pass"))
                }
                Some(r) if got != TC_ACT_SHOT => {
                    failures.push(format!("{name}: passed, want drop ({})", r.name()))
                }
                Some(r) if drops(dp, r) != before.unwrap() + 1 => {
                    failures.push(format!("{name}: {} not counted", r.name()))
                }
                _ => {}
            }
        };

    // Stateless rule kinds, ingress.
    expect(
        &dp,
        "allowed port from allowed prefix",
        to,
        to_vm4("198.51.100.7", 6, &tcp(40000, 22, SYN)),
        None,
    );
    expect(
        &dp,
        "allowed range",
        to,
        to_vm4("198.51.100.7", 6, &tcp(40001, 8080, SYN)),
        None,
    );
    expect(
        &dp,
        "port outside the rules",
        to,
        to_vm4("198.51.100.7", 6, &tcp(40002, 8081, SYN)),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "prefix outside the rules",
        to,
        to_vm4("203.0.113.5", 6, &tcp(40003, 22, SYN)),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "deny beats a wider allow",
        to,
        to_vm4("198.51.100.66", 6, &tcp(40004, 22, SYN)),
        Some(DropReason::FwRule),
    );
    expect(
        &dp,
        "icmp type 8 allowed",
        to,
        to_vm4("203.0.113.5", 1, &icmp(8, 0, 7, &[])),
        None,
    );
    expect(
        &dp,
        "icmp type 13 not",
        to,
        to_vm4("203.0.113.5", 1, &icmp(13, 0, 7, &[])),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "udp not allowed",
        to,
        to_vm4("198.51.100.7", 17, &udp(5353, 22, &[])),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "TCP segment of no connection",
        to,
        to_vm4("198.51.100.9", 6, &tcp(40005, 22, ACK)),
        Some(DropReason::CtInvalid),
    );
    let v6_to = |src: &str, l4: &[u8]| {
        eth(
            mac(VM_MAC),
            mac(HOST_MAC),
            0x86dd,
            &ipv6(v6(src), v6("2001:db8::10"), 6, l4),
        )
    };
    expect(
        &dp,
        "IPv6 allowed prefix",
        to,
        v6_to("2001:db8:1::5", &tcp(40006, 80, SYN)),
        None,
    );
    expect(
        &dp,
        "IPv6 other prefix",
        to,
        v6_to("2001:db8:2::5", &tcp(40007, 80, SYN)),
        Some(DropReason::FwDefault),
    );
    // Established: the allowed SYN's connection carries on both ways.
    expect(
        &dp,
        "reply of an allowed inbound connection",
        from,
        from_vm4("198.51.100.7", 6, &tcp(22, 40000, SYN | ACK)),
        None,
    );
    expect(
        &dp,
        "inbound ACK of the tracked connection",
        to,
        to_vm4("198.51.100.7", 6, &tcp(40000, 22, ACK)),
        None,
    );
    // Egress rules.
    expect(
        &dp,
        "egress deny rule",
        from,
        from_vm4("203.0.113.9", 17, &udp(5000, 53, &[])),
        Some(DropReason::FwRule),
    );
    expect(
        &dp,
        "egress default allow",
        from,
        from_vm4("198.51.100.1", 17, &udp(5000, 53, &[])),
        None,
    );
    // Stateful replies to VM-initiated traffic pass the deny-by-default ingress.
    expect(
        &dp,
        "VM opens TCP",
        from,
        from_vm4("203.0.113.10", 6, &tcp(50000, 443, SYN)),
        None,
    );
    expect(
        &dp,
        "its SYN-ACK comes back",
        to,
        to_vm4("203.0.113.10", 6, &tcp(443, 50000, SYN | ACK)),
        None,
    );
    expect(
        &dp,
        "a SYN-ACK from another port does not",
        to,
        to_vm4("203.0.113.10", 6, &tcp(444, 50000, SYN | ACK)),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "VM sends UDP",
        from,
        from_vm4("203.0.113.10", 17, &udp(5000, 9999, &[])),
        None,
    );
    expect(
        &dp,
        "the UDP reply passes",
        to,
        to_vm4("203.0.113.10", 17, &udp(9999, 5000, &[])),
        None,
    );
    expect(
        &dp,
        "UDP from another port does not",
        to,
        to_vm4("203.0.113.10", 17, &udp(9998, 5000, &[])),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "VM pings",
        from,
        from_vm4("203.0.113.10", 1, &icmp(8, 0, 0x1234, &[])),
        None,
    );
    expect(
        &dp,
        "the echo reply passes",
        to,
        to_vm4("203.0.113.10", 1, &icmp(0, 0, 0x1234, &[])),
        None,
    );
    expect(
        &dp,
        "an echo reply nobody asked for does not",
        to,
        to_vm4("203.0.113.10", 1, &icmp(0, 0, 0x9999, &[])),
        Some(DropReason::FwDefault),
    );
    // ICMP errors about a tracked connection pass; others do not.
    let quoted = ipv4(v4(VM4), v4("203.0.113.10"), 17, &udp(5000, 9999, &[]));
    expect(
        &dp,
        "port unreachable about the VM's UDP flow",
        to,
        to_vm4("198.51.100.1", 1, &icmp(3, 3, 0, &quoted)),
        None,
    );
    let stray = ipv4(v4(VM4), v4("203.0.113.11"), 17, &udp(5000, 9999, &[]));
    expect(
        &dp,
        "port unreachable about nothing tracked",
        to,
        to_vm4("198.51.100.1", 1, &icmp(3, 3, 0, &stray)),
        Some(DropReason::FwDefault),
    );
    // RST closes; later segments of the connection are strays.
    expect(
        &dp,
        "remote resets the VM's connection",
        to,
        to_vm4("203.0.113.10", 6, &tcp(443, 50000, RST)),
        None,
    );
    expect(
        &dp,
        "after RST the connection is gone",
        to,
        to_vm4("203.0.113.10", 6, &tcp(443, 50000, ACK)),
        Some(DropReason::FwDefault),
    );
    // A non-first fragment carries no ports: it cannot pass port rules.
    let mut frag = ipv4(v4("198.51.100.7"), v4(VM4), 6, &[0u8; 24]);
    frag[6] = 0;
    frag[7] = 10; // fragment offset 80 bytes
    expect(
        &dp,
        "non-first fragment",
        to,
        eth(mac(VM_MAC), mac(HOST_MAC), 0x0800, &frag),
        Some(DropReason::Fragment),
    );
    // Network infrastructure passes any rules: neighbour discovery and the
    // VM's DHCP client traffic.
    let nd = eth(
        mac(VM_MAC),
        mac(HOST_MAC),
        0x86dd,
        &ipv6(
            v6("fe80::1"),
            v6("2001:db8::10"),
            58,
            &icmpv6_nd(135, v6("2001:db8::10")),
        ),
    );
    expect(&dp, "neighbour solicitation to the VM", to, nd, None);
    let offer = eth(
        [0xff; 6],
        mac(HOST_MAC),
        0x0800,
        &ipv4(
            v4("203.0.113.1"),
            v4("255.255.255.255"),
            17,
            &udp(67, 68, &[0; 240]),
        ),
    );
    expect(&dp, "DHCP offer to the VM's client port", to, offer, None);
    let other = eth(
        mac(VM_MAC),
        mac(HOST_MAC),
        0x86dd,
        &ipv6(
            v6("2001:db8:2::1"),
            v6("2001:db8::10"),
            58,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        ),
    );
    expect(
        &dp,
        "other ICMPv6 (echo) is judged by the rules",
        to,
        other,
        Some(DropReason::FwDefault),
    );
    // Bypass attempts: each is judged by a documented rule.
    let with_options = |dport: u16| {
        let l4 = tcp(41000 + dport, dport, SYN);
        // NOP NOP NOP EOL: ports start 24 bytes into the header.
        let ip = ipv4_with_options(v4("198.51.100.7"), v4(VM4), 6, &[1, 1, 1, 0], &l4);
        eth(mac(VM_MAC), mac(HOST_MAC), 0x0800, &ip)
    };
    expect(
        &dp,
        "IPv4 options: ports are read after them (allowed port)",
        to,
        with_options(22),
        None,
    );
    expect(
        &dp,
        "IPv4 options: ports are read after them (other port)",
        to,
        with_options(9000),
        Some(DropReason::FwDefault),
    );
    let hbh = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let v6_ext = |src: &str, chain: Vec<u8>, first: u8| {
        eth(
            mac(VM_MAC),
            mac(HOST_MAC),
            0x86dd,
            &ipv6(v6(src), v6("2001:db8::10"), first, &chain),
        )
    };
    let chain = |n: usize, l4: &[u8]| {
        let mut c = Vec::new();
        for i in 0..n {
            c.extend(hbh(if i + 1 == n { 6 } else { 60 }));
        }
        c.extend_from_slice(l4);
        c
    };
    expect(
        &dp,
        "TCP behind two IPv6 extension headers (allowed)",
        to,
        v6_ext("2001:db8:1::5", chain(2, &tcp(42000, 80, SYN)), 0),
        None,
    );
    expect(
        &dp,
        "TCP behind two IPv6 extension headers (other port)",
        to,
        v6_ext("2001:db8:1::5", chain(2, &tcp(42001, 81, SYN)), 0),
        Some(DropReason::FwDefault),
    );
    expect(
        &dp,
        "five extension headers",
        to,
        v6_ext("2001:db8:1::5", chain(5, &tcp(42002, 80, SYN)), 0),
        Some(DropReason::Malformed),
    );
    let mut first_frag = ipv4(v4("198.51.100.7"), v4(VM4), 6, &tcp(43000, 9000, SYN));
    first_frag[6] = 0x20; // more fragments, offset 0: the first fragment has the ports
    expect(
        &dp,
        "first fragment to a closed port",
        to,
        eth(mac(VM_MAC), mac(HOST_MAC), 0x0800, &first_frag),
        Some(DropReason::FwDefault),
    );
    let v6_frag = [&[6u8, 0, 0, 0x50, 0, 0, 0, 1][..], &[0u8; 16]].concat(); // offset 10 x 8 bytes
    expect(
        &dp,
        "IPv6 non-first fragment",
        to,
        v6_ext("2001:db8:1::5", v6_frag, 44),
        Some(DropReason::Fragment),
    );
    let short = [
        &eth(mac(VM_MAC), mac(HOST_MAC), 0x0800, &[])[..14],
        &ipv4(v4("198.51.100.7"), v4(VM4), 6, &[0, 22, 0, 22, 0, 0])[..],
    ]
    .concat();
    expect(
        &dp,
        "truncated TCP header",
        to,
        short,
        Some(DropReason::Malformed),
    );
    let bcast = eth(
        [0xff; 6],
        mac(HOST_MAC),
        0x0800,
        &ipv4(
            v4("203.0.113.5"),
            v4("255.255.255.255"),
            17,
            &udp(1, 22, &[]),
        ),
    );
    expect(
        &dp,
        "broadcast is judged by its source like any packet",
        to,
        bcast,
        Some(DropReason::FwDefault),
    );
    let mcast = eth(
        [0x01, 0x00, 0x5e, 0, 0, 0xfb],
        mac(HOST_MAC),
        0x0800,
        &ipv4(
            v4("203.0.113.5"),
            v4("224.0.0.251"),
            17,
            &udp(5353, 5353, &[]),
        ),
    );
    expect(
        &dp,
        "multicast is judged by its source like any packet",
        to,
        mcast,
        Some(DropReason::FwDefault),
    );
    let mcast_ok = eth(
        [0x01, 0x00, 0x5e, 0, 0, 0xfb],
        mac(HOST_MAC),
        0x0800,
        &ipv4(v4("198.51.100.7"), v4("224.0.0.251"), 6, &tcp(1, 8000, SYN)),
    );
    expect(
        &dp,
        "multicast to an allowed port from an allowed source passes",
        to,
        mcast_ok,
        None,
    );
    let arp_in = eth(
        [0xff; 6],
        mac(HOST_MAC),
        0x0806,
        &arp(mac(HOST_MAC), v4("203.0.113.5"), v4(VM4)),
    );
    expect(
        &dp,
        "ARP to the VM is not IP: the rules leave it alone",
        to,
        arp_in,
        None,
    );
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Hit counters: the deciding rule of each judged packet is counted.
    let hits = dp.rule_hits(TEST_IFINDEX);
    let hit = |dir: u8, rule: u16| {
        let dir = hookd::datapath::direction_of(dir);
        hits.iter()
            .find(|(k, _)| *k == (dir, rule))
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    assert!(
        hit(0, 0) >= 3,
        "ingress rule 0 (allow tcp 22,8000-8080): {hits:?}"
    );
    assert_eq!(hit(0, 2), 1, "ingress rule 2 (allow icmp type 8): {hits:?}");
    assert_eq!(hit(0, 1), 1, "ingress rule 1 (deny .66): {hits:?}");
    assert_eq!(hit(1, 0), 1, "egress rule 0 (deny udp 53): {hits:?}");

    // Replacing the policy swaps table halves and the new rules apply at
    // once; the old half stays until tidied, then no old entries are left.
    let before = dp.fw_rule_count(TEST_IFINDEX);
    program_policy(
        &mut dp,
        "<hookd:ingress default='deny'><hookd:rule action='allow' protocol='tcp' ports='23'/></hookd:ingress>",
        2,
    );
    assert_eq!(dp.fw_rule_count(TEST_IFINDEX), before + 1);
    dp.tidy();
    assert_eq!(dp.fw_rule_count(TEST_IFINDEX), 1);
    assert!(
        dp.rule_hits(TEST_IFINDEX).is_empty(),
        "hit counters restart with a new policy"
    );
    assert_eq!(
        run_prog(&dp, to, &to_vm4("198.51.100.7", 6, &tcp(40010, 22, SYN))),
        TC_ACT_SHOT
    );
    assert_eq!(
        run_prog(&dp, to, &to_vm4("203.0.113.5", 6, &tcp(40011, 23, SYN))),
        TC_ACT_UNSPEC
    );
    assert!(dp.ct_count(TEST_IFINDEX) > 0, "connections tracked");
    // Each NIC has its own table of CT_PER_NIC entries: flooding it with new
    // connections evicts the flooder's own entries, not another NIC's.
    let before = dp.ct_count(TEST_IFINDEX);
    assert!(before < hookd_bpf::layout::CT_PER_NIC as usize);
    // A restarted hookd (a new Datapath on the same pins) learns which
    // entries the NIC owns from the maps themselves: it empties the half a
    // switch left behind, keeps the live one, and can remove them all.
    program_policy(
        &mut dp,
        "<hookd:ingress default='deny'><hookd:rule action='allow' protocol='tcp' ports='22,24,26'/></hookd:ingress>",
        3,
    );
    let with_old = dp.fw_rule_count(TEST_IFINDEX);
    let mut adopted = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    adopted.tidy();
    assert_eq!(
        dp.fw_rule_count(TEST_IFINDEX),
        with_old - 1,
        "port 23's half emptied"
    );
    assert_eq!(
        run_prog(&dp, to, &to_vm4("203.0.113.5", 6, &tcp(40012, 26, SYN))),
        TC_ACT_UNSPEC,
        "the live half kept"
    );
    // Its hit counters went with it: the next policy starts from none.
    program_policy(
        &mut adopted,
        "<hookd:ingress default='deny'><hookd:rule action='allow' protocol='tcp' ports='23'/></hookd:ingress>",
        4,
    );
    assert!(
        adopted.rule_hits(TEST_IFINDEX).is_empty(),
        "no stale hit counters: {:?}",
        adopted.rule_hits(TEST_IFINDEX)
    );
    assert!(dp.fw_rule_count(TEST_IFINDEX) > 0 && dp.prefix_count(TEST_IFINDEX) > 0);
    adopted.forget_nic(TEST_IFINDEX);
    assert_eq!(dp.fw_rule_count(TEST_IFINDEX), 0);
    assert_eq!(dp.prefix_count(TEST_IFINDEX), 0);
    dp.forget_nic(TEST_IFINDEX);
    assert_eq!(
        dp.ct_count(TEST_IFINDEX),
        0,
        "detaching forgets the NIC's connections"
    );
}

/// A packet whose verdict is "allow" under policy X and under policy Y, but
/// "deny" under any mix of the two (the class ids of its remote differ
/// between X and Y), is run continuously while hookd swaps X and Y.
#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn policy_updates_are_atomic_under_continuous_traffic() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let x = "<hookd:ingress default='deny'>\
               <hookd:rule action='allow' protocol='icmp' icmp-type='13' remote='198.51.100.1/32'/>\
             </hookd:ingress>";
    let y = "<hookd:ingress default='deny'>\
               <hookd:rule action='deny' protocol='tcp' remote='198.51.100.0/32'/>\
               <hookd:rule action='allow' protocol='icmp' icmp-type='13' remote='198.51.100.1/32'/>\
             </hookd:ingress>";
    program_policy(&mut dp, x, 1);
    // ICMP timestamp requests are not tracked: every one is judged by rules.
    let frame = to_vm4("198.51.100.1", 1, &icmp(13, 0, 1, &[0; 12]));
    assert_eq!(run_prog(&dp, hookd_bpf::PROG_TO_VM, &frame), TC_ACT_UNSPEC);

    let stop = Arc::new(AtomicBool::new(false));
    let prog_pin = fs.pin_dir().join("progs").join(hookd_bpf::PROG_TO_VM);
    let runner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let prog = aya::programs::SchedClassifier::from_pin(&prog_pin).unwrap();
            let (mut runs, mut denied) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let opts = TestRunOptions {
                    data_in: Some(&frame),
                    repeat: 50,
                    ..Default::default()
                };
                let r = prog.test_run(opts).unwrap();
                runs += 50;
                if r.return_value != TC_ACT_UNSPEC {
                    denied += 1;
                }
            }
            (runs, denied)
        })
    };
    let swaps = 400;
    for i in 0..swaps {
        program_policy(&mut dp, if i % 2 == 0 { y } else { x }, 2 + i);
    }
    stop.store(true, Ordering::Relaxed);
    let (runs, denied) = runner.join().unwrap();
    println!("{swaps} policy swaps under {runs} packets: {denied} batches saw a mixed policy");
    assert!(runs > 0);
    assert_eq!(denied, 0, "a packet saw a mix of old and new rules");
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn logged_rules_send_rate_limited_events() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(
        &mut dp,
        "<hookd:ingress default='allow'>\
           <hookd:rule action='deny' protocol='udp' ports='53' remote='203.0.113.0/24' log='true'/>\
           <hookd:rule action='allow' protocol='tcp' ports='22'/>\
         </hookd:ingress>",
        1,
    );
    assert_eq!(dp.health(), Ok(()));
    let pin = fs.pin_dir().join("progs").join(hookd_bpf::PROG_FROM_VM);
    std::fs::rename(&pin, fs.pin_dir().join("progs").join("moved")).unwrap();
    let e = dp.health().unwrap_err();
    assert!(
        e.contains("pins missing") && e.contains("hookd_from_vm"),
        "{e}"
    );
    std::fs::rename(fs.pin_dir().join("progs").join("moved"), &pin).unwrap();
    assert_eq!(dp.health(), Ok(()));
    let mut ring = dp.take_events().expect("ring buffer");
    // Not logged: rule 1 has no log attribute.
    assert_eq!(
        run_prog(
            &dp,
            hookd_bpf::PROG_TO_VM,
            &to_vm4("198.51.100.7", 6, &tcp(1000, 22, SYN))
        ),
        TC_ACT_UNSPEC
    );
    assert!(ring.next().is_none());
    // 150 denied packets within a second: at most 100 events.
    for i in 0..150u16 {
        let f = to_vm4("203.0.113.9", 17, &udp(2000 + i, 53, &[]));
        assert_eq!(run_prog(&dp, hookd_bpf::PROG_TO_VM, &f), TC_ACT_SHOT);
    }
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.push(hookd_bpf::layout::FwEvent::from_bytes(&item).unwrap());
    }
    assert_eq!(events.len(), 100, "rate limit: 100 per NIC and second");
    let e = events[0];
    assert_eq!(
        (e.ifindex, e.dir, e.deny, e.rule, e.proto, e.sport, e.dport),
        (TEST_IFINDEX, 0, 1, 0, 17, 2000, 53)
    );
    assert_eq!(hookd::core::events::addr_text(e.saddr), "203.0.113.9");
    assert_eq!(hookd::core::events::addr_text(e.daddr), VM4);
}

/// A frame that reaches a VM's tap by bpf_redirect (not through the host
/// stack) still passes the VM's ingress policy.
#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn frames_redirected_into_a_tap_pass_its_ingress_policy() {
    let fs = Bpffs::new();
    let ns = Netns::new("redir");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        Netns::enter(&name);
        let mut tap = Tap::create("hk0");
        sh("ip link set hk0 up && ip link add rv0 type veth peer name rv1 && ip link set rv0 up && ip link set rv1 up");
        let tap_ifindex = hookd::datapath::netdev::ifindex("hk0").unwrap();
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let xml = format!(
            "<domain><name>r</name><uuid>u-redir</uuid><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'>\
             <hookd:interface mac='{VM_MAC}'><hookd:address prefix='192.0.2.10/32'/>\
             <hookd:ingress default='deny'><hookd:rule action='allow' protocol='udp' ports='5000'/></hookd:ingress>\
             </hookd:interface></hookd:policy></metadata><devices><interface type='ethernet'>\
             <mac address='{VM_MAC}'/><target dev='hk0'/></interface></devices></domain>"
        );
        let dom = hookd_model::domain::parse(&xml).unwrap();
        let plan = hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::TapsExist).unwrap();
        dp.attach_nic("u-redir", "hk0", mac(VM_MAC), &plan[0].mode, 1).unwrap();
        // rv1's ingress redirects everything to hk0's egress, as another
        // VM's program would.
        let mut obj = aya::EbpfLoader::new().override_global("TARGET_IFINDEX", &tap_ifindex, true).load(hookd_bpf::REDIRECT_OBJ).unwrap();
        let prog: &mut aya::programs::SchedClassifier = obj.program_mut("redirect_tc").unwrap().try_into().unwrap();
        prog.load().unwrap();
        prog.attach("rv1", aya::programs::TcAttachType::Ingress).unwrap();
        // Frames enter rv0 -> rv1 through a packet socket on rv0.
        let sock = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32) };
        assert!(sock >= 0);
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = hookd::datapath::netdev::ifindex("rv0").unwrap() as i32;
        let send = |frame: &[u8]| {
            let n = unsafe {
                libc::sendto(sock, frame.as_ptr().cast(), frame.len(), 0, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
            };
            assert_eq!(n as usize, frame.len(), "sendto: {}", std::io::Error::last_os_error());
        };
        let delivered = |tap: &mut Tap, port: u16| {
            tap.recv_for(Duration::from_millis(300))
                .iter()
                .filter(|f| f.len() >= 14 + 20 + 8 && f[12..14] == [8, 0] && f[14 + 9] == 17 && f[14 + 22..14 + 24] == port.to_be_bytes())
                .count()
        };
        tap.recv_for(Duration::from_millis(300)); // drain what the kernel sent on its own
        send(&to_vm4("198.51.100.7", 17, &udp(40000, 5000, b"allowed")));
        assert_eq!(delivered(&mut tap, 5000), 1, "allowed frame redirected into the tap");
        let before = dp.stats(tap_ifindex).unwrap().drops[DropReason::FwDefault as usize];
        send(&to_vm4("198.51.100.7", 17, &udp(40000, 5001, b"denied")));
        assert_eq!(delivered(&mut tap, 5001), 0, "denied frame must not reach the VM");
        assert_eq!(dp.stats(tap_ifindex).unwrap().drops[DropReason::FwDefault as usize], before + 1);
        unsafe { libc::close(sock) };
    })
    .join()
    .expect("redirect test thread");
    drop(ns);
}
