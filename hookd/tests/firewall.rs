//! Tier 2: the real kernel. The security-group firewall: rules and
//! connection tracking through BPF_PROG_TEST_RUN, atomic policy updates
//! under traffic, logged rules, and frames redirected into a tap.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-privileged.sh (`--ignored`), where they fail, never
//! skip, if they cannot run.

use aya::programs::{TestRun, TestRunOptions};
use hookd::config::AttachMode;
use hookd::core::DataPlane;
use hookd::datapath::{Datapath, ct_clock_ns};
use hookd_bpf::layout::{CT_KEY_FRAGMENTS, DropReason};
use hookd_testkit::vm::*;
use hookd_testkit::xml::{DomainXml, policy};
use hookd_testkit::*;
use std::time::Duration;

/// Runs `prog` on `frame`: why it did not get `want` (None: pass; a drop
/// reason: dropped and counted under it), or None when it did.
fn verdict_failure(
    dp: &Datapath,
    name: &str,
    prog: &str,
    frame: &[u8],
    want: Option<DropReason>,
) -> Option<String> {
    let drops = |r: DropReason| dp.stats(TEST_IFINDEX).unwrap().drops[r as usize];
    let before = want.map(drops);
    let got = run_prog(dp, prog, frame);
    match want {
        None if got != TC_ACT_UNSPEC => Some(format!("{name}: dropped, want pass")),
        Some(r) if got != TC_ACT_SHOT => Some(format!("{name}: passed, want drop ({})", r.name())),
        Some(r) if drops(r) != before.unwrap_or_default() + 1 => {
            Some(format!("{name}: {} not counted", r.name()))
        }
        _ => None,
    }
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
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
    let mut failures = Vec::new();
    let mut expect =
        |dp: &Datapath, name: &str, prog: &str, frame: Vec<u8>, want: Option<DropReason>| {
            failures.extend(verdict_failure(dp, name, prog, &frame, want))
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
#[ignore = "privileged: run by scripts/test-privileged.sh"]
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
#[ignore = "privileged: run by scripts/test-privileged.sh"]
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
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn frames_redirected_into_a_tap_pass_its_ingress_policy() {
    let fs = Bpffs::new();
    let ns = Netns::new("redir");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
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
        // SAFETY: socket(2) takes no pointers.
        let sock = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32) };
        assert!(sock >= 0);
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = hookd::datapath::netdev::ifindex("rv0").unwrap() as i32;
        let send = |frame: &[u8]| {
            // SAFETY: the frame and address outlive the call, with their lengths.
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
        // SAFETY: our socket, closed once.
        unsafe { libc::close(sock) };
    })
    .join()
    .expect("redirect test thread");
    drop(ns);
}

/// `conntrack_entries` sizes the tables of NICs attached after it is set:
/// 100,000 connections here; a NIC that has a table keeps it.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn conntrack_tables_take_the_configured_size() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let rules = "<hookd:ingress default='deny'><hookd:rule action='allow' protocol='tcp' ports='22'/></hookd:ingress>";
    program_policy(&mut dp, rules, 1);
    assert_eq!(
        dp.ct_capacity(TEST_IFINDEX),
        Some(hookd_bpf::layout::CT_PER_NIC)
    );
    dp.set_conntrack_entries(100_000);
    program_policy(&mut dp, rules, 2);
    assert_eq!(
        dp.ct_capacity(TEST_IFINDEX),
        Some(hookd_bpf::layout::CT_PER_NIC),
        "a NIC keeps its table (and its connections)"
    );
    dp.forget_nic(TEST_IFINDEX);
    program_policy(&mut dp, rules, 3);
    assert_eq!(
        dp.ct_capacity(TEST_IFINDEX),
        Some(100_000),
        "a new table has the new size"
    );
    // The programs use it as any other: a connection is tracked in it.
    let syn = to_vm4("198.51.100.7", 6, &tcp(40000, 22, 0x02));
    assert_eq!(run_prog(&dp, hookd_bpf::PROG_TO_VM, &syn), TC_ACT_UNSPEC);
    assert_eq!(dp.ct_count(TEST_IFINDEX), 1);
}

/// A policy's `conntrack-entries` sizes that NIC's table, within the
/// host's `conntrack_entries_max`; beyond it the NIC is refused, unattached.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_policy_sizes_its_nics_conntrack_table_within_the_hosts_bound() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let mode = |entries: u32| {
        let xml = DomainXml::new("fw", "u")
            .metadata(&policy(&format!(
                "<hookd:interface mac='{VM_MAC}' conntrack-entries='{entries}'>\
                 <hookd:ingress default='deny'/></hookd:interface>"
            )))
            .nic("bridge", VM_MAC, None)
            .to_string();
        let dom = hookd_model::domain::parse(&xml).unwrap();
        hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps)
            .unwrap()
            .remove(0)
            .mode
    };
    dp.program_nic(TEST_IFINDEX, mac(VM_MAC), &mode(200_000), 1)
        .unwrap();
    assert_eq!(dp.ct_capacity(TEST_IFINDEX), Some(200_000));
    dp.forget_nic(TEST_IFINDEX);
    let too_big = hookd::datapath::DEFAULT_CT_ENTRIES_MAX + 1;
    let e = dp
        .program_nic(TEST_IFINDEX, mac(VM_MAC), &mode(too_big), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("conntrack-entries=\"{too_big}\""))
            && e.contains("conntrack_entries_max"),
        "{e}"
    );
    assert_eq!(
        dp.ct_capacity(TEST_IFINDEX),
        None,
        "no table for a refused NIC"
    );
    dp.set_conntrack_entries_max(too_big);
    dp.forget_nic(TEST_IFINDEX);
    dp.program_nic(TEST_IFINDEX, mac(VM_MAC), &mode(too_big), 3)
        .unwrap();
    assert_eq!(dp.ct_capacity(TEST_IFINDEX), Some(too_big));
}

/// [`ipv4_fragment`] and [`ipv6_fragment`] between addresses written out.
fn frag4(src: &str, dst: &str, proto: u8, id: u16, offset: u16, more: bool, l4: &[u8]) -> Vec<u8> {
    ipv4_fragment(v4(src), v4(dst), proto, id, offset, more, l4)
}

fn frag6(src: &str, dst: &str, proto: u8, id: u32, offset: u16, more: bool, l4: &[u8]) -> Vec<u8> {
    ipv6_fragment(v6(src), v6(dst), proto, id, offset, more, l4)
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn fragments_take_the_verdict_of_their_first_fragment() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(
        &mut dp,
        "<hookd:ingress default='deny'>\
           <hookd:rule action='allow' protocol='udp' ports='53' remote='198.51.100.0/24'/>\
           <hookd:rule action='allow' protocol='udp' ports='53' remote='2001:db8:1::/48'/>\
           <hookd:rule action='allow' protocol='tcp' ports='22'/>\
         </hookd:ingress>\
         <hookd:egress default='deny'>\
           <hookd:rule action='allow' protocol='udp' ports='5000'/>\
         </hookd:egress>",
        1,
    );
    let (to, from) = (hookd_bpf::PROG_TO_VM, hookd_bpf::PROG_FROM_VM);
    let v4in = |ip: Vec<u8>| eth(mac(VM_MAC), mac(HOST_MAC), 0x0800, &ip);
    // Fragments of datagram ID to the VM: UDP or TCP from 198.51.100.7,
    // UDP from 2001:db8:1::5, UDP from the VM to 203.0.113.9.
    let u4 = |id, off, more, l4: &[u8]| v4in(frag4("198.51.100.7", VM4, 17, id, off, more, l4));
    let t4 = |id, off, more, l4: &[u8]| v4in(frag4("198.51.100.7", VM4, 6, id, off, more, l4));
    let u6 = |id, off, more, l4: &[u8]| {
        let ip = frag6("2001:db8:1::5", "2001:db8::10", 17, id, off, more, l4);
        eth(mac(VM_MAC), mac(HOST_MAC), 0x86dd, &ip)
    };
    let out4 = |id, off, more, l4: &[u8]| {
        let ip = frag4(VM4, "203.0.113.9", 17, id, off, more, l4);
        eth(mac(HOST_MAC), mac(VM_MAC), 0x0800, &ip)
    };
    let to_port = |port: u16| udp(40000, port, &[7; 1472]);
    let body = [9u8; 1480];
    let (frag, denied) = (Some(DropReason::Fragment), Some(DropReason::FwDefault));
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<u8>, Option<DropReason>)> = vec![
        // An allowed datagram, in order: every fragment passes.
        ("first fragment, allowed port", to, u4(1, 0, true, &to_port(53)), None),
        ("its second fragment", to, u4(1, 1480, true, &body), None),
        ("its last fragment", to, u4(1, 2960, false, &body[..100]), None),
        // The same ID from another source is another datagram.
        ("a fragment of ID 1 from another host", to,
         v4in(frag4("198.51.100.8", VM4, 17, 1, 1480, true, &body)), frag),
        // A denied first fragment: nothing of its datagram passes.
        ("first fragment, denied port", to, u4(2, 0, true, &to_port(54)), denied),
        ("a later fragment of the denied one", to, u4(2, 1480, false, &body), frag),
        // A later fragment before its first: dropped, as one whose first never comes.
        ("a later fragment ahead of its first", to, u4(3, 1480, false, &body), frag),
        // Tiny fragments (RFC 1858): the TCP header split off, or overlapped.
        ("a first fragment with 8 bytes of TCP header", to, t4(4, 0, true, &tcp(40000, 22, SYN)[..8]), frag),
        ("a whole TCP first fragment", to, t4(5, 0, true, &tcp(40001, 22, SYN)), None),
        ("a later fragment at byte 8, over its TCP header", to, t4(5, 8, false, &tcp(40001, 23, SYN)), frag),
        ("a later fragment at byte 24", to, t4(5, 24, false, &body[..40]), None),
        // A second first fragment of an allowed datagram, rewriting its
        // ports, is judged by its own ports.
        ("a second first fragment to a denied port", to, u4(1, 0, true, &to_port(9999)), denied),
        // IPv6: the same, with the fragment header's 32-bit ID.
        ("IPv6 first fragment, allowed port", to, u6(0x1234_5678, 0, true, &to_port(53)), None),
        ("its later fragment", to, u6(0x1234_5678, 1480, false, &body[..200]), None),
        ("a later fragment of another ID", to, u6(0x1234_5679, 1480, false, &body[..200]), frag),
        ("IPv6 first fragment, denied port", to, u6(7, 0, true, &to_port(54)), denied),
        ("its later fragment", to, u6(7, 1480, false, &body[..200]), frag),
        // The fragmented reply to a datagram the VM sent: its first
        // fragment passes by connection tracking, and so do the others.
        ("VM's query", from,
         eth(mac(HOST_MAC), mac(VM_MAC), 0x0800, &ipv4(v4(VM4), v4("203.0.113.9"), 17, &udp(40003, 5000, &[1; 32]))), None),
        ("first fragment of the reply", to,
         v4in(frag4("203.0.113.9", VM4, 17, 10, 0, true, &udp(5000, 40003, &[7; 1472]))), None),
        ("later fragment of the reply", to, v4in(frag4("203.0.113.9", VM4, 17, 10, 1480, false, &body)), None),
        // Egress: the VM's own fragmented datagrams, by the egress rules.
        ("VM's first fragment to an allowed port", from, out4(8, 0, true, &udp(40000, 5000, &[1; 1472])), None),
        ("VM's later fragment", from, out4(8, 1480, false, &body), None),
        ("VM's first fragment to a denied port", from, out4(9, 0, true, &udp(40000, 5001, &[1; 1472])), denied),
        ("VM's later fragment of that one", from, out4(9, 1480, false, &body), frag),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, prog, frame, want)| verdict_failure(&dp, name, prog, &frame, want))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // Each allowed first fragment left one entry beside the connections.
    let entries = dp.ct_entries(TEST_IFINDEX);
    let frags = entries.iter().filter(|(k, _)| k.kind == CT_KEY_FRAGMENTS);
    assert_eq!(frags.count(), 5, "{entries:?}");

    // Entries expire: a datagram's 31 s after its last fragment, the UDP
    // flow 200 s after its last reply (CT_UDP_EST_TIMEOUT is 180 s). An
    // entry seen "after now" (an earlier hookd's precise clock runs up to a
    // tick ahead) is fresh.
    let now = ct_clock_ns();
    let aged: Vec<_> = entries
        .iter()
        .map(|(k, e)| {
            let mut e = *e;
            e.last_seen = match (k.kind == CT_KEY_FRAGMENTS, k.remote_port) {
                (true, 8) => now + 1_000_000_000,
                (true, _) => now - 31_000_000_000,
                (false, _) => now - 200_000_000_000,
            };
            (*k, e)
        })
        .collect();
    dp.put_ct_entries(TEST_IFINDEX, &aged).unwrap();
    let late: Vec<(&str, &str, Vec<u8>, Option<DropReason>)> = vec![
        (
            "a fragment 31 s after its datagram's last",
            to,
            u4(1, 2960, false, &body[..100]),
            frag,
        ),
        (
            "a reply 31 s after the query",
            to,
            v4in(ipv4(
                v4("203.0.113.9"),
                v4(VM4),
                17,
                &udp(5000, 40003, &[7; 8]),
            )),
            denied,
        ),
        (
            "a fragment whose entry is ahead of the clock",
            from,
            out4(8, 2960, false, &body),
            None,
        ),
    ];
    let failures: Vec<String> = late
        .into_iter()
        .filter_map(|(name, prog, frame, want)| verdict_failure(&dp, name, prog, &frame, want))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The egress fast path (an established connection skips anti-spoofing and
/// the rules) never passes what the full path would drop: a policy change
/// takes it away, a connection opened from outside has not earned it, and
/// the MAC check runs regardless.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_egress_fast_path_skips_no_check_it_owes() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let rules = "<hookd:ingress default='allow'/><hookd:egress default='deny'>\
                 <hookd:rule action='allow' protocol='tcp' ports='443'/></hookd:egress>";
    program_policy(&mut dp, rules, 1);
    let from = hookd_bpf::PROG_FROM_VM;
    let to = hookd_bpf::PROG_TO_VM;
    let from_as = |src: &str, src_mac: &str, l4: &[u8]| {
        eth(
            mac(HOST_MAC),
            mac(src_mac),
            0x0800,
            &ipv4(v4(src), v4("203.0.113.9"), 6, l4),
        )
    };
    let mut cases: Vec<(&str, &str, Vec<u8>, Option<DropReason>)> = vec![
        (
            "the VM opens a connection",
            from,
            from_vm4("203.0.113.9", 6, &tcp(40000, 443, SYN)),
            None,
        ),
        (
            "the server answers",
            to,
            to_vm4("203.0.113.9", 6, &tcp(443, 40000, SYN | ACK)),
            None,
        ),
        (
            "the VM's next segment (fast path)",
            from,
            from_vm4("203.0.113.9", 6, &tcp(40000, 443, ACK)),
            None,
        ),
        (
            "the same segment from another MAC",
            from,
            from_as(VM4, "52:54:00:00:00:99", &tcp(40000, 443, ACK)),
            Some(DropReason::MacSpoof),
        ),
        // A connection from outside to an address that is not the VM's
        // (ingress allows it): the VM may not answer from that address.
        (
            "a SYN to 203.0.113.50, not the VM's",
            to,
            eth(
                mac(VM_MAC),
                mac(HOST_MAC),
                0x0800,
                &ipv4(
                    v4("203.0.113.9"),
                    v4("203.0.113.50"),
                    6,
                    &tcp(5000, 22, SYN),
                ),
            ),
            None,
        ),
        (
            "the VM answers from 203.0.113.50",
            from,
            from_as("203.0.113.50", VM_MAC, &tcp(22, 5000, SYN | ACK)),
            Some(DropReason::IpSpoof),
        ),
        (
            "and again",
            from,
            from_as("203.0.113.50", VM_MAC, &tcp(22, 5000, ACK)),
            Some(DropReason::IpSpoof),
        ),
    ];
    let run = |dp: &Datapath,
               cases: &mut Vec<(&str, &str, Vec<u8>, Option<DropReason>)>|
     -> Vec<String> {
        cases
            .drain(..)
            .filter_map(|(name, prog, frame, want)| verdict_failure(dp, name, prog, &frame, want))
            .collect()
    };
    let failures = run(&dp, &mut cases);
    assert!(failures.is_empty(), "{failures:#?}");
    // The VM's connection earned the fast path under generation 1; the
    // one opened from outside did not.
    let by_port = |p: u16| {
        dp.ct_entries(TEST_IFINDEX)
            .into_iter()
            .find(|(k, _)| k.vm_port == p)
            .map(|(_, e)| (e.vm_checked, e.vm_gen))
    };
    assert_eq!(by_port(40000), Some((1, 1)));
    assert_eq!(by_port(22).map(|(checked, _)| checked), Some(0));
    // The VM loses 192.0.2.10: its established connection's next segment
    // is judged again, and dropped.
    let xml = hookd_testkit::xml::DomainXml::new("fw", "u")
        .metadata(&hookd_testkit::xml::policy(&format!(
            "<hookd:interface mac='{VM_MAC}'><hookd:address prefix='192.0.2.99/32'/>{rules}</hookd:interface>"
        )))
        .nic("bridge", VM_MAC, None)
        .to_string();
    let dom = hookd_model::domain::parse(&xml).unwrap();
    let plan =
        hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps).unwrap();
    dp.program_nic(TEST_IFINDEX, mac(VM_MAC), &plan[0].mode, 2)
        .unwrap();
    let mut after = vec![(
        "the segment after the VM lost its address",
        from,
        from_vm4("203.0.113.9", 6, &tcp(40000, 443, ACK)),
        Some(DropReason::IpSpoof),
    )];
    let failures = run(&dp, &mut after);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Found by the differential test (hookd/tests/differential.rs): frames
/// from the VM that `fw_fast_egress` (the egress fast path of established
/// connections) let through although the full path drops them. Each is
/// sent after packets that put their connection's key in the table with
/// `vm_checked`, so that the fast path looks at it.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_egress_fast_path_drops_what_the_full_path_drops() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(&mut dp, "<hookd:egress default='allow'/>", 1);
    let from = hookd_bpf::PROG_FROM_VM;
    let out4 = |proto, l4: &[u8]| from_vm4("203.0.113.9", proto, l4);
    let cut = |mut f: Vec<u8>, len: usize| {
        f.truncate(len);
        f
    };
    let mapped = |a: &str| v4(a).to_ipv6_mapped();
    let out6_mapped = |l4: &[u8]| {
        eth(
            mac(HOST_MAC),
            mac(VM_MAC),
            0x86dd,
            &ipv6(mapped(VM4), mapped("203.0.113.9"), 17, l4),
        )
    };
    let l4_at = 14 + 20;
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Option<DropReason>)> = vec![
        ("the VM's UDP datagram opens a connection", out4(17, &udp(5000, 53, &[1; 8])), None),
        ("its next one takes the fast path", out4(17, &udp(5000, 53, &[2; 8])), None),
        // The fast path read the 4 bytes of ports and passed it; anti-
        // spoofing wants the whole 8-byte UDP header.
        ("the next with 4 bytes of UDP header", cut(out4(17, &udp(5000, 53, &[])), l4_at + 4),
         Some(DropReason::Malformed)),
        // The IPv4-mapped IPv6 source has the IPv4 connection's key: the
        // fast path passed what anti-spoofing drops whether or not the
        // interface has addresses.
        ("the same ports as IPv6 between IPv4-mapped addresses", out6_mapped(&udp(5000, 53, &[3; 8])),
         Some(DropReason::IpSpoof)),
        // The fast path's failed read of a truncated L4 header marked it
        // read: the firewall then took it as all zeros (an ICMP echo
        // reply, a TCP segment without flags) instead of malformed.
        ("ICMP with 4 bytes of header", cut(out4(1, &icmp(8, 0, 7, &[])), l4_at + 4),
         Some(DropReason::Malformed)),
        ("TCP with 10 bytes of header", cut(out4(6, &tcp(40000, 443, SYN)), l4_at + 10),
         Some(DropReason::Malformed)),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, frame, want)| verdict_failure(&dp, name, from, &frame, want))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Found by the differential test: the rules keep IPv4 prefixes
/// IPv4-mapped, so an IPv6 packet from `::ffff:198.51.100.7` matched an
/// IPv4 allow rule on a NIC whose IPv6 traffic the default denies.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn ipv6_packets_with_ipv4_mapped_addresses_meet_no_ipv4_rule() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(
        &mut dp,
        "<hookd:ingress default='deny'>\
         <hookd:rule action='allow' protocol='tcp' ports='22' remote='198.51.100.0/24'/>\
         </hookd:ingress><hookd:egress default='allow'/>",
        1,
    );
    let mapped = |a: &str| v4(a).to_ipv6_mapped();
    let in6 = |src, dst| {
        eth(
            mac(VM_MAC),
            mac(HOST_MAC),
            0x86dd,
            &ipv6(src, dst, 6, &tcp(40000, 22, SYN)),
        )
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Option<DropReason>)> = vec![
        ("control: IPv4 ssh from the allowed prefix", to_vm4("198.51.100.7", 6, &tcp(40000, 22, SYN)), None),
        ("IPv6 ssh from the mapped form of that prefix", in6(mapped("198.51.100.7"), v6("2001:db8::10")),
         Some(DropReason::Malformed)),
        ("IPv6 ssh to the mapped form of the VM's address", in6(v6("2001:db8::7"), mapped(VM4)),
         Some(DropReason::Malformed)),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, frame, want)| {
            verdict_failure(&dp, name, hookd_bpf::PROG_TO_VM, &frame, want)
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // Egress: an IPv6 packet from the VM to a mapped address.
    let out = eth(
        mac(HOST_MAC),
        mac(VM_MAC),
        0x86dd,
        &ipv6(
            v6("2001:db8::10"),
            mapped("203.0.113.9"),
            17,
            &udp(5000, 53, b"q"),
        ),
    );
    let failure = verdict_failure(
        &dp,
        "IPv6 from the VM to a mapped address",
        hookd_bpf::PROG_FROM_VM,
        &out,
        Some(DropReason::Malformed),
    );
    assert!(failure.is_none(), "{failure:?}");
}
