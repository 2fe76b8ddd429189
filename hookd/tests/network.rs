//! Tier 2: the network stage of hookd's programs (lib/l2net.h), through
//! BPF_PROG_TEST_RUN: ARP and echo answered for the gateway, ARP
//! answered for another NIC of the network, frames to that NIC
//! redirected, and everything else dropped with its reason, whatever
//! the sender forges. Then on real taps: one VM reaching another.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-privileged.sh (`--ignored`), where they fail, never
//! skip, if they cannot run.

use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use hookd_bpf::layout::DropReason;
use hookd_model::network::{Network, gateway_mac, parse_document};
use hookd_model::plan::{self, NicMode, Stage};
use hookd_testkit::vm::{TC_ACT_SHOT, TEST_IFINDEX, run_prog_out};
use hookd_testkit::xml::{DomainXml, policy};
use hookd_testkit::*;
use std::net::Ipv4Addr;

const TC_ACT_REDIRECT: u32 = 7;
const A_MAC: &str = "52:54:00:00:00:0a";
const B_MAC: &str = "52:54:00:00:00:0b";
/// Another tenant's NIC with B's address.
const C_MAC: &str = "52:54:00:00:00:0c";
const B_IFINDEX: u32 = 77;
const C_IFINDEX: u32 = 78;

fn network(name: &str, tenant: &str, vni: u32) -> Network {
    network_on(name, tenant, vni, "198.51.100")
}

/// A network with the /24 `net`.0 and its gateway `net`.1.
fn network_on(name: &str, tenant: &str, vni: u32, net: &str) -> Network {
    parse_document(&format!(
        "<network xmlns='urn:hookd:network:1' name='{name}' tenant='{tenant}' vni='{vni}'>\
         <subnet prefix='{net}.0/24' gateway='{net}.1'/></network>"
    ))
    .unwrap()
}

/// The plan of a NIC with `mac` and `addr` on `net`.
fn on(net: &Network, mac: &str, addr: &str) -> NicMode {
    on_with(net, mac, &[&format!("{addr}/32")])
}

/// The plan of a NIC with `mac` and the address prefixes `prefixes` on `net`.
fn on_with(net: &Network, mac: &str, prefixes: &[&str]) -> NicMode {
    let addrs: String = prefixes
        .iter()
        .map(|p| format!("<hookd:address prefix='{p}'/>"))
        .collect();
    let xml = DomainXml::new("vm", "u")
        .metadata(&policy(&format!(
            "<hookd:interface mac='{mac}'><hookd:network name='{}'/>{addrs}</hookd:interface>",
            net.name
        )))
        .nic("ethernet", mac, None)
        .to_string();
    let dom = hookd_model::domain::parse(&xml).unwrap();
    let mut plans = plan::plan_domain(&dom, true, Stage::BeforeTaps).unwrap();
    plan::join_networks(&mut plans, &dom, |_| Some(net.clone()));
    plans.remove(0).mode
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// (verdict, frame out) of from_vm on `frame`, as NIC TEST_IFINDEX.
fn run(dp: &Datapath, frame: &[u8]) -> (u32, Vec<u8>) {
    run_prog_out(dp, hookd_bpf::PROG_FROM_VM, frame)
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_network_stage_answers_switches_and_isolates() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let (blue, red) = (
        network("blue", "acme", 10010),
        network("red", "globex", 20020),
    );
    let (a, b, c) = (mac(A_MAC), mac(B_MAC), mac(C_MAC));
    let gw = gateway_mac(10010).0;
    assert_eq!(gw, [0x02, 0x68, 0x6b, 0x00, 0x27, 0x1a]);
    dp.program_nic(TEST_IFINDEX, a, &on(&blue, A_MAC, "198.51.100.10"), 1)
        .unwrap();
    dp.program_nic(B_IFINDEX, b, &on(&blue, B_MAC, "198.51.100.20"), 1)
        .unwrap();
    // The other tenant uses the same addresses.
    dp.program_nic(C_IFINDEX, c, &on(&red, C_MAC, "198.51.100.20"), 1)
        .unwrap();
    assert_eq!(dp.network_of(TEST_IFINDEX), Some((10010, 1)));
    assert_eq!(dp.network_of(C_IFINDEX), Some((20020, 1)));
    // An address another NIC of the network holds is refused.
    let e = dp
        .program_nic(
            79,
            mac("52:54:00:00:00:0d"),
            &on(&blue, "52:54:00:00:00:0d", "198.51.100.20"),
            1,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("198.51.100.20 on network blue is already taken"),
        "{e}"
    );

    let bcast = [0xff; 6];
    let arp_for = |tpa: &str| eth(bcast, a, 0x0806, &arp(a, ip("198.51.100.10"), ip(tpa)));

    // ARP for the gateway: answered with the network's gateway MAC.
    let (v, out) = run(&dp, &arp_for("198.51.100.1"));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(&out[0..6], &a, "to the asker");
    assert_eq!(&out[6..12], &gw);
    assert_eq!(&out[20..22], &[0, 2], "a reply");
    assert_eq!(&out[22..28], &gw, "sender: the gateway");
    assert_eq!(&out[28..32], &[198, 51, 100, 1]);
    assert_eq!(&out[32..38], &a, "target: the asker");
    assert_eq!(&out[38..42], &[198, 51, 100, 10]);
    // ARP for B: answered with B's MAC (no flooding).
    let (v, out) = run(&dp, &arp_for("198.51.100.20"));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(&out[22..28], &b, "B's MAC, not the other tenant's");
    // Its own address (conflict detection) and unknown ones: unanswered.
    for tpa in ["198.51.100.10", "198.51.100.99", "203.0.113.1"] {
        assert_eq!(run(&dp, &arp_for(tpa)).0, TC_ACT_SHOT, "ARP for {tpa}");
    }
    let probe = eth(
        bcast,
        a,
        0x0806,
        &arp(a, ip("0.0.0.0"), ip("198.51.100.10")),
    );
    assert_eq!(run(&dp, &probe).0, TC_ACT_SHOT, "DAD probe unanswered");

    // Echo to the gateway: answered, in place, with a valid checksum.
    let ping = eth(
        gw,
        a,
        0x0800,
        &ipv4(ip("198.51.100.10"), ip("198.51.100.1"), 1, &icmp_echo(7)),
    );
    let (v, out) = run(&dp, &ping);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!((&out[0..6], &out[6..12]), (&a[..], &gw[..]));
    assert_eq!(&out[26..30], &[198, 51, 100, 1], "from the gateway");
    assert_eq!(&out[30..34], &[198, 51, 100, 10]);
    assert_eq!(out[34], 0, "echo reply");
    assert_eq!(checksum(&out[34..]), 0, "ICMP checksum");
    assert_eq!(
        &out[38..],
        &ping[38..],
        "identifier, sequence and data kept"
    );

    let udp_to = |dst_mac: [u8; 6], dst: &str| {
        eth(
            dst_mac,
            a,
            0x0800,
            &ipv4(ip("198.51.100.10"), ip(dst), 17, &udp(4000, 5000, b"x")),
        )
    };
    let cases: Vec<(&str, Vec<u8>, u32, Option<DropReason>)> = vec![
        ("to B", udp_to(b, "198.51.100.20"), TC_ACT_REDIRECT, None),
        (
            "B's address, the other tenant's MAC",
            udp_to(c, "198.51.100.20"),
            TC_ACT_SHOT,
            Some(DropReason::UnknownUnicast),
        ),
        (
            "B's MAC, another address",
            udp_to(b, "198.51.100.30"),
            TC_ACT_SHOT,
            Some(DropReason::UnknownUnicast),
        ),
        (
            "to itself",
            udp_to(a, "198.51.100.10"),
            TC_ACT_SHOT,
            Some(DropReason::UnknownUnicast),
        ),
        (
            "beyond the gateway",
            udp_to(gw, "203.0.113.5"),
            TC_ACT_SHOT,
            Some(DropReason::NoRoute),
        ),
        (
            "UDP to the gateway",
            udp_to(gw, "198.51.100.1"),
            TC_ACT_SHOT,
            Some(DropReason::NoRoute),
        ),
        (
            "broadcast: to B, the network's other NIC here",
            udp_to(bcast, "198.51.100.255"),
            TC_ACT_REDIRECT,
            None,
        ),
        (
            "a VLAN tag for the other tenant",
            {
                let mut f = udp_to(c, "198.51.100.20");
                f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
                f
            },
            TC_ACT_SHOT,
            Some(DropReason::Vlan),
        ),
        (
            "IPv6",
            eth(
                gw,
                a,
                0x86dd,
                &ipv6(
                    "2001:db8::10".parse().unwrap(),
                    "2001:db8::1".parse().unwrap(),
                    17,
                    &udp(1, 2, b""),
                ),
            ),
            TC_ACT_SHOT,
            None,
        ),
        (
            "a forged ARP reply claiming the gateway",
            {
                let mut p = arp(a, ip("198.51.100.10"), ip("198.51.100.20"));
                p[7] = 2;
                eth(b, a, 0x0806, &p)
            },
            TC_ACT_SHOT,
            Some(DropReason::NotForwarded),
        ),
    ];
    for (what, frame, want, reason) in cases {
        let before = dp.stats(TEST_IFINDEX).unwrap();
        let (v, _) = run(&dp, &frame);
        assert_eq!(v, want, "{what}");
        if let Some(r) = reason {
            let after = dp.stats(TEST_IFINDEX).unwrap();
            assert_eq!(
                after.drops[r as usize],
                before.drops[r as usize] + 1,
                "{what}: counted as {r:?}"
            );
        }
    }

    // DHCP: A gets its address, mask, router, MTU and lease.
    let discover = |chaddr: [u8; 6], t: u8, req: Option<&str>| {
        eth(
            bcast,
            a,
            0x0800,
            &ipv4(
                ip("0.0.0.0"),
                ip("255.255.255.255"),
                17,
                &udp(68, 67, &dhcp_request(chaddr, t, req.map(ip))),
            ),
        )
    };
    for (t, answer) in [(1u8, 2u8), (3, 5)] {
        let req = (t == 3).then_some("198.51.100.10");
        let (v, out) = run(&dp, &discover(a, t, req));
        assert_eq!(v, TC_ACT_REDIRECT, "DHCP message {t}");
        assert_eq!(out.len(), 14 + 20 + 8 + 240 + 64);
        assert_eq!((&out[0..6], &out[6..12]), (&a[..], &gw[..]));
        assert_eq!(checksum(&out[14..34]), 0, "IPv4 header checksum");
        assert_eq!(&out[26..34], &[198, 51, 100, 1, 255, 255, 255, 255]);
        assert_eq!(&out[34..38], &[0, 67, 0, 68], "UDP 67 -> 68");
        let bootp = &out[42..];
        assert_eq!(bootp[0], 2, "a BOOTP reply");
        assert_eq!(&bootp[4..8], &[0x12, 0x34, 0x56, 0x78], "xid kept");
        assert_eq!(&bootp[16..20], &[198, 51, 100, 10], "yiaddr: A's address");
        assert_eq!(&bootp[28..34], &a, "chaddr kept");
        let o = dhcp_options(bootp);
        assert_eq!(o[&53], [answer], "OFFER for DISCOVER, ACK for REQUEST");
        assert_eq!(o[&54], [198, 51, 100, 1], "server id: the gateway");
        assert_eq!(o[&1], [255, 255, 255, 0]);
        assert_eq!(o[&3], [198, 51, 100, 1], "router");
        assert_eq!(o[&26], 1500u16.to_be_bytes());
        assert_eq!(o[&51], hookd_model::plan::DHCP_LEASE_SECS.to_be_bytes());
    }
    for (what, frame) in [
        (
            "a request for another address",
            discover(a, 3, Some("198.51.100.11")),
        ),
        (
            "a client hardware address not the NIC's",
            discover(b, 1, None),
        ),
        ("a release", discover(a, 7, None)),
    ] {
        assert_eq!(run(&dp, &frame).0, TC_ACT_SHOT, "{what} gets nothing");
    }

    // Routed: to green, another network of A's tenant, through blue's
    // gateway; never to violet, another tenant's.
    let green = network_on("green", "acme", 10020, "203.0.113");
    let violet = network_on("violet", "globex", 20030, "192.0.2");
    let (d_mac, e_mac) = ("52:54:00:00:00:0e", "52:54:00:00:00:0f");
    dp.program_nic(80, mac(d_mac), &on(&green, d_mac, "203.0.113.20"), 1)
        .unwrap();
    dp.program_nic(81, mac(e_mac), &on(&violet, e_mac, "192.0.2.20"), 1)
        .unwrap();
    let routed = udp_to(gw, "203.0.113.20");
    let (v, out) = run(&dp, &routed);
    assert_eq!(v, TC_ACT_REDIRECT, "routed to green");
    assert_eq!(&out[0..6], &mac(d_mac), "to D");
    assert_eq!(&out[6..12], &gateway_mac(10020).0, "from green's gateway");
    assert_eq!(out[22], 63, "TTL decremented");
    assert_eq!(checksum(&out[14..34]), 0, "IPv4 header checksum");
    assert_eq!(&out[34..], &routed[34..], "payload kept");
    let mut last_hop = routed.clone();
    last_hop[22] = 1;
    let c = checksum(&{
        let mut h = last_hop[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    last_hop[24..26].copy_from_slice(&c.to_be_bytes());
    // TTL 1: the gateway answers ICMP time exceeded, quoting the packet.
    let (v, te) = run(&dp, &last_hop);
    assert_eq!(v, TC_ACT_REDIRECT, "time exceeded, back to A");
    assert_eq!(te.len(), 14 + 20 + 8 + 28, "{te:?}");
    assert_eq!(
        (&te[0..6], &te[6..12]),
        (&a[..], &gw[..]),
        "from blue's gateway MAC to A"
    );
    assert_eq!(te[23], 1, "ICMP");
    assert_eq!(te[26..30], [198, 51, 100, 1], "from A's gateway");
    assert_eq!(te[30..34], [198, 51, 100, 10], "to A");
    assert_eq!(checksum(&te[14..34]), 0, "IPv4 header checksum");
    assert_eq!((te[34], te[35]), (11, 0), "time exceeded in transit");
    assert_eq!(checksum(&te[34..]), 0, "ICMP checksum");
    assert_eq!(
        &te[42..70],
        &last_hop[14..42],
        "the packet's header and 8 bytes quoted"
    );
    let mut opts = last_hop.clone();
    opts[14] = 0x46; // IP options: not quoted, dropped
    for (what, frame, reason) in [
        ("TTL 1 with IP options", opts, DropReason::Ttl),
        (
            "another tenant's address",
            udp_to(gw, "192.0.2.20"),
            DropReason::NoRoute,
        ),
        (
            "green's address at green's gateway MAC",
            udp_to(gateway_mac(10020).0, "203.0.113.20"),
            DropReason::UnknownUnicast,
        ),
    ] {
        let before = dp.stats(TEST_IFINDEX).unwrap().drops[reason as usize];
        assert_eq!(run(&dp, &frame).0, TC_ACT_SHOT, "{what}");
        assert_eq!(
            dp.stats(TEST_IFINDEX).unwrap().drops[reason as usize],
            before + 1,
            "{what}"
        );
    }
    // What the stage did, counted for A.
    let n = dp.counters().net_stats(TEST_IFINDEX).unwrap();
    use hookd_bpf::layout::*;
    assert_eq!(n.count[NET_ANSWERED_ARP], 2, "{n:?}");
    assert_eq!(n.count[NET_ANSWERED_ECHO], 1, "{n:?}");
    assert_eq!(n.count[NET_ANSWERED_DHCP], 2, "{n:?}");
    assert_eq!(n.count[NET_SWITCHED], 1, "{n:?}");
    assert_eq!(n.count[NET_ROUTED], 1, "{n:?}");
    assert_eq!(n.count[NET_ICMP_ERRORS], 1, "{n:?}");
    assert_eq!(n.count[NET_FLOODED], 1, "{n:?}: the broadcast's one copy");
    dp.forget_nic(80);
    assert_eq!(run(&dp, &routed).0, TC_ACT_SHOT, "no route once D is gone");
    dp.forget_nic(81);

    // Off the network: its entries go, the gateway's with the last NIC.
    dp.forget_nic(TEST_IFINDEX);
    assert_eq!(dp.network_of(TEST_IFINDEX), None);
    assert_eq!(dp.network_of(B_IFINDEX), Some((10010, 1)));
    dp.forget_nic(B_IFINDEX);
    dp.forget_nic(C_IFINDEX);
    let left = aya::maps::MapData::from_pin(fs.pin_dir().join("maps").join(hookd_bpf::MAP_NET_ADDRS))
        .and_then(|m| aya::maps::HashMap::<_, hookd_bpf::layout::NetAddrKey, hookd_bpf::layout::NetAddr>::try_from(aya::maps::Map::HashMap(m)))
        .unwrap()
        .keys()
        .count();
    assert_eq!(left, 0, "no network entries left");
}

const BLUE: &str = "<network xmlns='urn:hookd:network:1' name='blue' tenant='acme' vni='10010'>\
    <subnet prefix='198.51.100.0/24' gateway='198.51.100.1'/></network>";
const GREEN: &str = "<network xmlns='urn:hookd:network:1' name='green' tenant='acme' vni='10020'>\
    <subnet prefix='203.0.113.0/24' gateway='203.0.113.1'/></network>";

/// Two VMs on network blue, each on its own tap in a private namespace
/// (the test plays both through the taps' file descriptors), attached by a
/// daemon at `start` as libvirt would have it: B's ingress allows UDP to
/// port 5000 only. Then hookd restarts under the VMs, and B moves to
/// another network of the tenant with a live policy change.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn two_vms_on_a_network_reach_each_other_through_their_taps() {
    use hookd::core::Daemon;
    use hookd::core::networks::NetworkStore;
    use hookd::core::records::StateDir;
    use hookd_model::hook::HookArgs;
    use std::time::Duration;

    let fs = Bpffs::new();
    let ns = Netns::new("net2");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let (mut ta, mut tb) = (Tap::create("hka"), Tap::create("hkb"));
        for t in ["hka", "hkb"] {
            sh(&format!(
                "sysctl -qw net.ipv6.conf.{t}.disable_ipv6=1 && ip link set {t} up"
            ));
        }
        let run = tempfile::tempdir().unwrap();
        let dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let mut store = NetworkStore::in_memory();
        store.define(BLUE, |_| Vec::new()).unwrap();
        store.define(GREEN, |_| Vec::new()).unwrap();
        let mut d = Daemon::open(Box::new(dp), StateDir::open(run.path()).unwrap(), true, store);
        let xml = DomainXml::new("pair", "00000000-0000-4000-8000-0000000000e1")
            .metadata(&policy(&format!(
                "<hookd:interface mac='{A_MAC}'><hookd:network name='blue'/>\
                 <hookd:address prefix='198.51.100.10/32'/></hookd:interface>\
                 <hookd:interface mac='{B_MAC}'><hookd:network name='blue'/>\
                 <hookd:address prefix='198.51.100.20/32'/>\
                 <hookd:ingress default='deny'><hookd:rule action='allow' protocol='udp' ports='5000'/></hookd:ingress>\
                 </hookd:interface>"
            )))
            .nic("ethernet", A_MAC, Some("hka"))
            .nic("ethernet", B_MAC, Some("hkb"))
            .to_string();
        let args = |op: &str| HookArgs {
            domain: "pair".into(),
            operation: op.into(),
            sub_operation: "begin".into(),
            extra: "-".into(),
        };
        d.hook_event(&args("start"), &xml).unwrap();
        let (a, b, gw) = (mac(A_MAC), mac(B_MAC), gateway_mac(10010).0);

        // A asks for the gateway and for B: answered on A's own tap.
        ta.send(&eth([0xff; 6], a, 0x0806, &arp(a, ip("198.51.100.10"), ip("198.51.100.1"))));
        ta.send(&eth([0xff; 6], a, 0x0806, &arp(a, ip("198.51.100.10"), ip("198.51.100.20"))));
        let answers: Vec<Vec<u8>> = ta
            .recv_for(Duration::from_millis(300))
            .into_iter()
            .filter(|f| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2])
            .collect();
        let senders: Vec<&[u8]> = answers.iter().map(|f| &f[22..28]).collect();
        assert_eq!(senders, [&gw[..], &b[..]], "ARP answers on A's tap");
        assert!(tb.drain().iter().all(|f| f[12..14] != [8, 6]), "no ARP flooded to B");

        // A pings the gateway.
        ta.send(&eth(gw, a, 0x0800, &ipv4(ip("198.51.100.10"), ip("198.51.100.1"), 1, &icmp_echo(3))));
        let pongs = ta.recv_for(Duration::from_millis(300));
        assert_eq!(echo_replies(&pongs, 3), 1, "the gateway answers echo");

        // A sends to B: the allowed port arrives on B's tap, the other is
        // dropped by B's ingress policy, both counted as B's.
        const N: u16 = 200;
        for i in 0..N {
            for port in [5000u16, 5001] {
                ta.send(&eth(
                    b,
                    a,
                    0x0800,
                    &ipv4(ip("198.51.100.10"), ip("198.51.100.20"), 17, &udp(4000, port, &i.to_be_bytes())),
                ));
            }
        }
        let got = tb.recv_for(Duration::from_millis(500));
        let to_port = |p: u16| {
            got.iter()
                .filter(|f| f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == p.to_be_bytes())
                .count()
        };
        println!("A -> B: {} of {N} to the allowed port arrived, {} to the denied one", to_port(5000), to_port(5001));
        assert_eq!(to_port(5000), usize::from(N), "allowed UDP redirected to B");
        assert_eq!(to_port(5001), 0, "B's ingress policy applies to redirected frames");
        let rec = d.find("pair").unwrap().clone();
        let ifb = rec.nics.iter().find(|n| n.tap == "hkb").unwrap().ifindex;
        let ifa = rec.nics.iter().find(|n| n.tap == "hka").unwrap().ifindex;
        let sb = d.view().stats(ifb).unwrap();
        assert_eq!(sb.drops[DropReason::FwDefault as usize], u64::from(N), "{sb:?}");
        assert!(sb.to_vm_packets >= u64::from(N), "{sb:?}");
        let sa = d.view().stats(ifa).unwrap();
        assert!(sa.from_vm_packets >= u64::from(2 * N), "{sa:?}");

        // Fragmented datagrams, switched: those of the allowed port reach B
        // whole, those of the denied one not at all (their later fragment
        // counted as `fragment`).
        let fragments_at_b = |tb: &mut Tap, ta: &mut Tap, dst, to, first_id: u16| {
            for (id, port) in [(first_id, 5000u16), (first_id + 1, 5001)] {
                let from_a = |off, more, l4: &[u8]| {
                    let from = ip("198.51.100.10");
                    eth(dst, a, 0x0800, &ipv4_fragment(from, to, 17, id, off, more, l4))
                };
                ta.send(&from_a(0, true, &udp(4000, port, &[7; 64])));
                ta.send(&from_a(72, false, &[9; 40]));
            }
            let got = tb.recv_for(Duration::from_millis(300));
            let of = |id: u16| {
                let ipv4_with_id = |f: &&Vec<u8>| {
                    f.len() >= 34 && f[12..14] == [8, 0] && f[18..20] == id.to_be_bytes()
                };
                got.iter().filter(ipv4_with_id).count()
            };
            (of(first_id), of(first_id + 1))
        };
        let before = d.view().stats(ifb).unwrap().drops[DropReason::Fragment as usize];
        let (allowed, denied) = fragments_at_b(&mut tb, &mut ta, b, ip("198.51.100.20"), 77);
        let why = "both fragments of the allowed datagram, none of the denied";
        assert_eq!((allowed, denied), (2, 0), "switched: {why}");
        let after = d.view().stats(ifb).unwrap().drops[DropReason::Fragment as usize];
        assert_eq!(after - before, 1, "the denied datagram's later fragment is a fragment drop");

        // A broadcasts: B gets a copy, through its ingress rules.
        tb.drain();
        for port in [5000u16, 5001] {
            ta.send(&eth(
                [0xff; 6],
                a,
                0x0800,
                &ipv4(ip("198.51.100.10"), ip("198.51.100.255"), 17, &udp(4000, port, b"all")),
            ));
        }
        let heard: Vec<u16> = tb
            .recv_for(Duration::from_millis(300))
            .iter()
            .filter(|f| f.len() >= 42 && f[0..6] == [0xff; 6] && f[23] == 17)
            .map(|f| u16::from_be_bytes([f[36], f[37]]))
            .collect();
        assert_eq!(heard, [5000], "the broadcast to B's allowed port only");
        assert!(ta.drain().iter().all(|f| f[0..6] != [0xff; 6]), "no copy back to A");

        // hookd restarts: forwarding goes on from the pinned maps while it
        // is away, and the next daemon adopts the network NICs.
        drop(d);
        let udp_a_to_b = |i: u16| {
            eth(
                b,
                a,
                0x0800,
                &ipv4(ip("198.51.100.10"), ip("198.51.100.20"), 17, &udp(4000, 5000, &i.to_be_bytes())),
            )
        };
        for i in 0..20 {
            ta.send(&udp_a_to_b(i));
        }
        let away = tb.recv_for(Duration::from_millis(300)).len();
        assert_eq!(away, 20, "switched while hookd was away");
        let mut store = NetworkStore::in_memory();
        store.define(BLUE, |_| Vec::new()).unwrap();
        store.define(GREEN, |_| Vec::new()).unwrap();
        let dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let mut d = Daemon::open(Box::new(dp), StateDir::open(run.path()).unwrap(), true, store);
        assert_eq!(d.records().len(), 1, "adopted");
        for i in 0..20 {
            ta.send(&udp_a_to_b(i));
        }
        assert_eq!(tb.recv_for(Duration::from_millis(300)).len(), 20, "switched after the restart");

        // B moves to network green with a live policy change: A's frames to
        // B's old address find nobody; B answers on green.
        let moved = format!(
            "<policy xmlns='urn:hookd:policy:1'><interface mac='{A_MAC}'><network name='blue'/>\
             <address prefix='198.51.100.10/32'/></interface><interface mac='{B_MAC}'>\
             <network name='green'/><address prefix='203.0.113.20/32'/>\
             <ingress default='deny'><rule action='allow' protocol='udp' ports='5000'/></ingress>\
             </interface></policy>"
        );
        d.set_policy("pair", Some(&moved)).unwrap();
        tb.drain();
        for i in 0..20 {
            ta.send(&udp_a_to_b(i));
        }
        assert_eq!(tb.recv_for(Duration::from_millis(300)).len(), 0, "B left blue");
        tb.send(&eth([0xff; 6], b, 0x0806, &arp(b, ip("203.0.113.20"), ip("203.0.113.1"))));
        let gw_green = gateway_mac(10020).0;
        let answered = tb
            .recv_for(Duration::from_millis(300))
            .iter()
            .any(|f| f.len() >= 42 && f[20..22] == [0, 2] && f[22..28] == gw_green);
        assert!(answered, "B is on green: green's gateway answers it");
        // Routed from blue to B on green, through blue's gateway.
        for i in 0..20u16 {
            ta.send(&eth(
                gw,
                a,
                0x0800,
                &ipv4(ip("198.51.100.10"), ip("203.0.113.20"), 17, &udp(4000, 5000, &i.to_be_bytes())),
            ));
        }
        let routed = tb
            .recv_for(Duration::from_millis(300))
            .into_iter()
            .filter(|f| f.len() >= 34 && f[6..12] == gw_green && f[22] == 63)
            .count();
        assert_eq!(routed, 20, "routed to green, TTL 63, from green's gateway");
        // Fragmented datagrams, routed: the same verdicts by B's ingress.
        let (allowed, denied) = fragments_at_b(&mut tb, &mut ta, gw, ip("203.0.113.20"), 79);
        assert_eq!((allowed, denied), (2, 0), "routed: {why}");

        d.hook_event(&args("release"), &xml).unwrap();
        assert!(d.records().is_empty());
    })
    .join()
    .expect("network taps test thread");
    drop(ns);
}

/// A dual-stack network: `net`.0/24 and `net6`::/64, gateways .1 and ::1.
fn dual(name: &str, tenant: &str, vni: u32, net: &str, net6: &str) -> Network {
    parse_document(&format!(
        "<network xmlns='urn:hookd:network:1' name='{name}' tenant='{tenant}' vni='{vni}'>\
         <subnet prefix='{net}.0/24' gateway='{net}.1'/>\
         <subnet prefix='{net6}::/64' gateway='{net6}::1'/></network>"
    ))
    .unwrap()
}

fn ip6(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap()
}

/// The ICMPv6 checksum of `msg` from `src` to `dst` is right.
fn icmp6_ok(src: &[u8], dst: &[u8], msg: &[u8]) -> bool {
    let mut p = Vec::new();
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 58]);
    p.extend_from_slice(msg);
    checksum(&p) == 0
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_network_stage_speaks_ipv6() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let blue = dual("blue", "acme", 10010, "198.51.100", "2001:db8:100");
    let green = dual("green", "acme", 10020, "203.0.113", "2001:db8:200");
    let red = dual("red", "globex", 20020, "198.51.100", "2001:db8:100");
    let (a, b, c, d) = (mac(A_MAC), mac(B_MAC), mac(C_MAC), mac("52:54:00:00:00:0e"));
    let gw = gateway_mac(10010).0;
    let prog = |net: &Network, m: &str, v4: &str, v6: &str| on_with(net, m, &[v4, v6]);
    dp.program_nic(
        TEST_IFINDEX,
        a,
        &prog(&blue, A_MAC, "198.51.100.10/32", "2001:db8:100::10/128"),
        1,
    )
    .unwrap();
    dp.program_nic(
        B_IFINDEX,
        b,
        &prog(&blue, B_MAC, "198.51.100.20/32", "2001:db8:100::20/128"),
        1,
    )
    .unwrap();
    dp.program_nic(
        C_IFINDEX,
        c,
        &prog(&red, C_MAC, "198.51.100.30/32", "2001:db8:100::30/128"),
        1,
    )
    .unwrap();
    dp.program_nic(
        80,
        d,
        &prog(
            &green,
            "52:54:00:00:00:0e",
            "203.0.113.20/32",
            "2001:db8:200::20/128",
        ),
        1,
    )
    .unwrap();
    let me = ip6("2001:db8:100::10");
    let ns = |target: &str, src: std::net::Ipv6Addr| {
        let mut m = icmpv6_nd(135, ip6(target));
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&a);
        eth(
            [0x33, 0x33, 0xff, 0, 0, 1],
            a,
            0x86dd,
            &ipv6(src, ip6("ff02::1:ff00:1"), 58, &m),
        )
    };
    // NS for the gateway: an NA from it, router flag, its MAC.
    for (target, who, router) in [("2001:db8:100::1", gw, 0x80), ("2001:db8:100::20", b, 0)] {
        let (v, out) = run(&dp, &ns(target, me));
        assert_eq!(v, TC_ACT_REDIRECT, "NS for {target}");
        assert_eq!(out.len(), 14 + 40 + 32);
        assert_eq!((&out[0..6], &out[6..12]), (&a[..], &who[..]));
        assert_eq!(out[21], 255, "hop limit 255");
        assert_eq!(&out[22..38], &ip6(target).octets(), "from the target");
        assert_eq!(&out[38..54], &me.octets(), "to the asker");
        let na = &out[54..];
        assert_eq!(
            (na[0], na[4]),
            (136, 0x60 | router),
            "NA, solicited + override"
        );
        assert_eq!(&na[8..24], &ip6(target).octets());
        assert_eq!(
            (na[24], na[25], &na[26..32]),
            (2, 1, &who[..]),
            "target link-layer address"
        );
        assert!(icmp6_ok(&out[22..38], &out[38..54], na), "ICMPv6 checksum");
    }
    // DAD, its own address, another tenant's, the IPv4 gateway's as an
    // IPv4-mapped address: unanswered.
    for (target, src) in [
        ("2001:db8:100::10", std::net::Ipv6Addr::UNSPECIFIED),
        ("2001:db8:100::10", me),
        ("2001:db8:100::30", me),
        ("::ffff:198.51.100.1", me),
    ] {
        assert_eq!(
            run(&dp, &ns(target, src)).0,
            TC_ACT_SHOT,
            "NS for {target} from {src}"
        );
    }
    // Echo to the gateway.
    let mut echo = vec![128, 0, 0, 0, 0x12, 0x34, 0, 9];
    echo.extend_from_slice(b"ping");
    let mut frame = eth(gw, a, 0x86dd, &ipv6(me, ip6("2001:db8:100::1"), 58, &echo));
    let sum = {
        let mut p = Vec::new();
        p.extend_from_slice(&me.octets());
        p.extend_from_slice(&ip6("2001:db8:100::1").octets());
        p.extend_from_slice(&(echo.len() as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 58]);
        p.extend_from_slice(&echo);
        checksum(&p)
    };
    frame[56..58].copy_from_slice(&sum.to_be_bytes());
    let (v, out) = run(&dp, &frame);
    assert_eq!(v, TC_ACT_REDIRECT, "echo to the gateway");
    assert_eq!(out[54], 129, "echo reply");
    assert_eq!(&out[22..38], &ip6("2001:db8:100::1").octets());
    assert!(
        icmp6_ok(&out[22..38], &out[38..54], &out[54..]),
        "ICMPv6 checksum of the reply"
    );
    // A router solicitation from A's link-local address: the router
    // advertisement from the gateway's link-local address, with its MAC,
    // the MTU and blue's /64, on-link; A's address is not its EUI-64, so
    // not autonomous.
    let a_ll = hookd_model::mac::MacAddr(a).eui64_link_local();
    let gw_ll = hookd_model::mac::MacAddr(gw).eui64_link_local();
    let rs = |src: std::net::Ipv6Addr| {
        let m = vec![133, 0, 0, 0, 0, 0, 0, 0];
        eth(
            [0x33, 0x33, 0, 0, 0, 2],
            a,
            0x86dd,
            &ipv6(src, ip6("ff02::2"), 58, &m),
        )
    };
    let (v, out) = run(&dp, &rs(a_ll));
    assert_eq!(v, TC_ACT_REDIRECT, "RS answered");
    assert_eq!(out.len(), 14 + 40 + 64);
    assert_eq!((&out[0..6], &out[6..12]), (&a[..], &gw[..]));
    assert_eq!(out[21], 255, "hop limit 255");
    assert_eq!(
        &out[22..38],
        &gw_ll.octets(),
        "from the gateway's link-local address"
    );
    assert_eq!(&out[38..54], &a_ll.octets(), "to the asker");
    let ra = &out[54..];
    assert!(
        icmp6_ok(&out[22..38], &out[38..54], ra),
        "ICMPv6 checksum of the RA"
    );
    assert_eq!(
        (ra[0], ra[4], ra[5]),
        (134, 64, 0x80),
        "RA, hop limit 64, M: the address from DHCPv6"
    );
    assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 9000, "router lifetime");
    assert_eq!(
        (ra[16], ra[17], &ra[18..24]),
        (1, 1, &gw[..]),
        "source link-layer"
    );
    assert_eq!(
        (ra[24], u32::from_be_bytes([ra[28], ra[29], ra[30], ra[31]])),
        (5, 1500),
        "MTU"
    );
    assert_eq!(
        (ra[32], ra[33], ra[34], ra[35]),
        (3, 4, 64, 0x80),
        "prefix: /64, on-link, not autonomous"
    );
    assert_eq!(&ra[48..64], &ip6("2001:db8:100::").octets());
    // From :: (before the VM has an address): to all nodes.
    let (v, out) = run(&dp, &rs(std::net::Ipv6Addr::UNSPECIFIED));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(&out[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(&out[38..54], &ip6("ff02::1").octets());
    // The gateway's link-local address is the gateway: NS answered.
    let (v, out) = run(&dp, &ns(&gw_ll.to_string(), a_ll));
    assert_eq!(
        v, TC_ACT_REDIRECT,
        "NS for the gateway's link-local address"
    );
    assert_eq!(&out[6..12], &gw[..]);
    // DHCPv6: a SOLICIT gets an ADVERTISE with A's address, its client
    // and IA ids echoed; with rapid commit, a REPLY; a REQUEST a REPLY.
    let duid = [0u8, 3, 0, 1, a[0], a[1], a[2], a[3], a[4], a[5]];
    let dhcp6 = |msg: u8, rapid: bool| {
        let mut m = vec![msg, 0xab, 0xcd, 0xef];
        m.extend_from_slice(&[0, 1, 0, duid.len() as u8]);
        m.extend_from_slice(&duid);
        m.extend_from_slice(&[0, 3, 0, 12, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&[0, 8, 0, 2, 0, 0]); // elapsed time
        if rapid {
            m.extend_from_slice(&[0, 14, 0, 0]);
        }
        eth(
            [0x33, 0x33, 0, 1, 0, 2],
            a,
            0x86dd,
            &ipv6(a_ll, ip6("ff02::1:2"), 17, &udp(546, 547, &m)),
        )
    };
    let opts = |msg: &[u8]| {
        let mut o = std::collections::BTreeMap::new();
        let mut i = 4;
        while i + 4 <= msg.len() {
            let code = u16::from_be_bytes([msg[i], msg[i + 1]]);
            let len = usize::from(u16::from_be_bytes([msg[i + 2], msg[i + 3]]));
            o.insert(code, msg[i + 4..i + 4 + len].to_vec());
            i += 4 + len;
        }
        o
    };
    for (msg, rapid, want) in [
        (1u8, false, 2u8),
        (1, true, 7),
        (3, false, 7),
        (5, false, 7),
    ] {
        let (v, out) = run(&dp, &dhcp6(msg, rapid));
        assert_eq!(v, TC_ACT_REDIRECT, "DHCPv6 message {msg} answered");
        assert_eq!((&out[0..6], &out[6..12]), (&a[..], &gw[..]));
        assert_eq!(
            &out[22..38],
            &gw_ll.octets(),
            "from the gateway's link-local address"
        );
        assert_eq!(&out[38..54], &a_ll.octets());
        assert_eq!(&out[54..58], &[2, 0x23, 2, 0x22], "547 -> 546");
        let udp_len = usize::from(u16::from_be_bytes([out[58], out[59]]));
        assert_eq!(udp_len, out.len() - 54);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&out[22..54]);
        pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&out[54..]);
        assert_eq!(checksum(&pseudo), 0, "UDP checksum");
        let m = &out[62..];
        assert_eq!(
            (m[0], &m[1..4]),
            (want, &[0xab, 0xcd, 0xef][..]),
            "type and transaction id"
        );
        let o = opts(m);
        assert_eq!(o[&1], duid, "client id echoed");
        assert_eq!(
            o[&2],
            [&[0u8, 3, 0, 1][..], &gw[..]].concat(),
            "server id: DUID-LL of the gateway"
        );
        let ia = &o[&3];
        assert_eq!(&ia[0..4], &[0x11, 0x22, 0x33, 0x44], "IA_NA id echoed");
        assert_eq!(&ia[12..16], &[0, 5, 0, 24]);
        assert_eq!(&ia[16..32], &me.octets(), "A's address");
        assert_eq!(o.contains_key(&14), rapid && want == 7, "rapid commit");
    }
    let no_client_id = {
        let m = vec![
            1u8, 0, 0, 1, 0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        eth(
            [0x33, 0x33, 0, 1, 0, 2],
            a,
            0x86dd,
            &ipv6(a_ll, ip6("ff02::1:2"), 17, &udp(546, 547, &m)),
        )
    };
    for (what, f) in [
        ("an INFORMATION-REQUEST", dhcp6(11, false)),
        ("no client id", no_client_id),
    ] {
        assert_eq!(run(&dp, &f).0, TC_ACT_SHOT, "{what}: nothing");
    }
    // A NIC whose address is its EUI-64 in blue's /64: autonomous (SLAAC).
    let eui = {
        let mut o = ip6("2001:db8:100::").octets();
        o[8..].copy_from_slice(&a_ll.octets()[8..]);
        std::net::Ipv6Addr::from(o)
    };
    dp.program_nic(
        TEST_IFINDEX,
        a,
        &prog(&blue, A_MAC, "198.51.100.10/32", &format!("{eui}/128")),
        2,
    )
    .unwrap();
    let (v, out) = run(&dp, &rs(a_ll));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(
        out[54 + 35],
        0xc0,
        "prefix on-link and autonomous: SLAAC gives A its address"
    );
    assert_eq!(out[54 + 5], 0, "no M: SLAAC, not DHCPv6");
    assert!(icmp6_ok(&out[22..38], &out[38..54], &out[54..]));
    dp.program_nic(
        TEST_IFINDEX,
        a,
        &prog(&blue, A_MAC, "198.51.100.10/32", "2001:db8:100::10/128"),
        3,
    )
    .unwrap();
    assert_eq!(
        dp.counters().net_stats(TEST_IFINDEX).unwrap().count[hookd_bpf::layout::NET_ANSWERED_RA],
        3
    );

    // Switched, routed, isolated.
    let udp6 = |dst_mac: [u8; 6], dst: &str| {
        eth(
            dst_mac,
            a,
            0x86dd,
            &ipv6(me, ip6(dst), 17, &udp(1, 2, b"x")),
        )
    };
    let (v, _) = run(&dp, &udp6(b, "2001:db8:100::20"));
    assert_eq!(v, TC_ACT_REDIRECT, "to B");
    let (v, out) = run(&dp, &udp6(gw, "2001:db8:200::20"));
    assert_eq!(v, TC_ACT_REDIRECT, "routed to green");
    assert_eq!(
        (&out[0..6], &out[6..12]),
        (&d[..], &gateway_mac(10020).0[..])
    );
    assert_eq!(out[21], 254, "hop limit decremented");
    // Hop limit 1: the gateway answers ICMPv6 time exceeded, quoting the
    // packet's header and 8 bytes.
    let mut last = udp6(gw, "2001:db8:200::20");
    last[21] = 1;
    let (v, te) = run(&dp, &last);
    assert_eq!(v, TC_ACT_REDIRECT, "time exceeded, back to A");
    assert_eq!(te.len(), 14 + 40 + 8 + 48);
    assert_eq!((&te[0..6], &te[6..12]), (&a[..], &gw[..]));
    assert_eq!(
        &te[22..38],
        &ip6("2001:db8:100::1").octets(),
        "from A's gateway"
    );
    assert_eq!(&te[38..54], &me.octets(), "to A");
    assert_eq!((te[54], te[55]), (3, 0), "time exceeded in transit");
    assert!(
        icmp6_ok(&te[22..38], &te[38..54], &te[54..]),
        "ICMPv6 checksum"
    );
    assert_eq!(
        &te[62..110],
        &last[14..62],
        "the packet's header and 8 bytes quoted"
    );
    for (what, f, reason) in [
        (
            "the other tenant's NIC",
            udp6(c, "2001:db8:100::30"),
            DropReason::UnknownUnicast,
        ),
        (
            "beyond the tenant",
            udp6(gw, "2001:db8:300::1"),
            DropReason::NoRoute,
        ),
        (
            "B's IPv4 address, IPv4-mapped",
            udp6(b, "::ffff:198.51.100.20"),
            DropReason::NotForwarded,
        ),
    ] {
        let before = dp.stats(TEST_IFINDEX).unwrap().drops[reason as usize];
        assert_eq!(run(&dp, &f).0, TC_ACT_SHOT, "{what}");
        assert_eq!(
            dp.stats(TEST_IFINDEX).unwrap().drops[reason as usize],
            before + 1,
            "{what}"
        );
    }
}

/// In tenant namespace `ns` (a path): a veth to the namespace `outside`,
/// 203.0.113.1/24 on the tenant's side and .2 outside, which has no route
/// back to the tenant's subnets: only SNAT (masquerade, nftables) in the
/// tenant's namespace lets an answer return. The example of
/// docs/networks.md, "The outside".
fn outside_with_snat(ns: &std::path::Path, outside: &str) {
    let n = ns.display();
    sh(&format!(
        "nsenter --net={n} ip link add up0 type veth peer name o0 netns {outside} && \
         nsenter --net={n} ip addr add 203.0.113.1/24 dev up0 && \
         nsenter --net={n} ip link set up0 up && \
         ip -n {outside} addr add 203.0.113.2/24 dev o0 && \
         ip -n {outside} link set o0 up && ip -n {outside} link set lo up && \
         nsenter --net={n} nft add table ip nat && \
         nsenter --net={n} nft add chain ip nat post '{{ type nat hook postrouting priority 100; }}' && \
         nsenter --net={n} nft add rule ip nat post oifname up0 masquerade"
    ));
}

fn cmd_out(cmd: &str) -> String {
    let o = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn tenants_reach_the_outside_through_their_namespaces() {
    use hookd::core::dataplane::DataPlane;
    use hookd::datapath::netdev;
    use std::time::Duration;

    let fs = Bpffs::new();
    let ns = Netns::new("tout");
    let (out_acme, out_other) = (Netns::new("out-acme"), Netns::new("out-other"));
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    let outs = (out_acme.name.clone(), out_other.name.clone());
    let netns_dir = tempfile::tempdir().unwrap();
    let dir = netns_dir.path().to_owned();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let (mut ta, mut tc) = (Tap::create("hko"), Tap::create("hkp"));
        for t in ["hko", "hkp"] {
            sh(&format!("sysctl -qw net.ipv6.conf.{t}.disable_ipv6=1 && ip link set {t} up"));
        }
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        dp.set_tenant_namespaces(Some(dir.clone()));
        // Two tenants with the same subnet and the same address.
        let blue = network("blue", "acme", 10010);
        let red = network("red", "other", 10030);
        let (a, c) = (mac(A_MAC), mac(C_MAC));
        let (ia, _) = dp
            .attach_nic("u-a", "hko", a, &on(&blue, A_MAC, "198.51.100.10"), 1)
            .unwrap();
        let (ic, _) = dp
            .attach_nic("u-c", "hkp", c, &on(&red, C_MAC, "198.51.100.10"), 1)
            .unwrap();
        let (acme, other) = (dir.join("hookd-acme"), dir.join("hookd-other"));
        assert_eq!(
            dp.tenant_namespaces().iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["acme", "other"]
        );
        let routes = cmd_out(&format!("nsenter --net={} ip route show proto 99", acme.display()));
        assert!(routes.contains("198.51.100.10 dev hookd"), "{routes}");
        outside_with_snat(&acme, &outs.0);
        outside_with_snat(&other, &outs.1);

        let ping = |src: [u8; 6], gw: [u8; 6], seq: u16| {
            eth(gw, src, 0x0800, &ipv4(ip("198.51.100.10"), ip("203.0.113.2"), 1, &icmp_echo(seq)))
        };
        let (gw_blue, gw_red) = (gateway_mac(10010).0, gateway_mac(10030).0);
        const N: u16 = 20;
        for seq in 0..N {
            ta.send(&ping(a, gw_blue, seq));
        }
        let back = ta.recv_for(Duration::from_millis(500));
        let replies: Vec<&Vec<u8>> = back
            .iter()
            .filter(|f| f.len() >= 42 && f[12..14] == [8, 0] && f[34] == 0)
            .collect();
        assert_eq!(replies.len(), usize::from(N), "answers from the outside, through SNAT");
        let r = replies[0];
        assert_eq!((&r[0..6], &r[6..12]), (&a[..], &gw_blue[..]), "from blue's gateway MAC to A");
        assert_eq!(r[26..30], [203, 0, 113, 2]);
        assert_eq!(r[22], 62, "two routing hops: the tenant namespace and the gateway");
        assert!(tc.drain().is_empty(), "nothing reaches the other tenant's NIC of the same address");
        // Nor a broadcast: A is alone on blue here, C is on red.
        ta.send(&eth([0xff; 6], a, 0x0800, &ipv4(ip("198.51.100.10"), ip("198.51.100.255"), 17, &udp(1, 2, b"x"))));
        std::thread::sleep(Duration::from_millis(100));
        assert!(tc.drain().is_empty(), "no broadcast crosses tenants");

        // The other tenant, the same addresses: its own namespace, its own way.
        for seq in 0..N {
            tc.send(&ping(c, gw_red, 100 + seq));
        }
        let back_c = tc.recv_for(Duration::from_millis(500));
        assert_eq!(echo_replies(&back_c, 100), 1, "the other tenant reaches its own outside");
        assert!(ta.drain().is_empty(), "A gets nothing of C's");

        let na = dp.counters().net_stats(ia).unwrap();
        let (to_ns, from_ns) = (
            na.count[hookd_bpf::layout::NET_TO_TENANT_NS],
            na.count[hookd_bpf::layout::NET_FROM_TENANT_NS],
        );
        println!("A: {to_ns} to the tenant namespace, {from_ns} from it");
        assert_eq!((to_ns, from_ns), (u64::from(N), u64::from(N)));

        // hookd restarts: the namespaces and their veths stay, the next
        // daemon adopts them (and gives their veths its program).
        drop(dp);
        for seq in 0..N {
            ta.send(&ping(a, gw_blue, 200 + seq));
        }
        let away = ta.recv_for(Duration::from_millis(500));
        assert_eq!(echo_replies(&away, 200), 1, "the outside is reached while hookd is away");
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        dp.set_tenant_namespaces(Some(dir.clone()));
        dp.tidy();
        assert_eq!(dp.tenant_namespaces().len(), 2, "adopted, and kept: their NICs are there");
        dp.program_nic(ia, a, &on(&blue, A_MAC, "198.51.100.10"), 2).unwrap();
        for seq in 0..N {
            ta.send(&ping(a, gw_blue, 300 + seq));
        }
        let after = ta.recv_for(Duration::from_millis(500));
        assert_eq!(echo_replies(&after, 300), 1, "and after the restart");

        // A daemon with tenant namespaces off: the data path forgets the
        // uplinks, and the outside is no_route.
        {
            let mut off = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
            off.set_tenant_namespaces(None);
            let before = off.stats(ia).unwrap().drops[DropReason::NoRoute as usize];
            ta.send(&ping(a, gw_blue, 400));
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(echo_replies(&ta.drain(), 400), 0, "no way out with namespaces off");
            assert_eq!(off.stats(ia).unwrap().drops[DropReason::NoRoute as usize], before + 1);
        }
        // And on again: the next daemon adopts the namespaces and makes the
        // way out whole when the NICs are programmed.
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        dp.set_tenant_namespaces(Some(dir.clone()));
        dp.program_nic(ia, a, &on(&blue, A_MAC, "198.51.100.10"), 3).unwrap();
        dp.program_nic(ic, c, &on(&red, C_MAC, "198.51.100.10"), 3).unwrap();
        ta.send(&ping(a, gw_blue, 500));
        let back = ta.recv_for(Duration::from_millis(500));
        assert_eq!(echo_replies(&back, 500), 1, "the outside again");

        // A frame from the namespace to an address with no NIC is dropped
        // and counted on the veth.
        let host = hookd::datapath::tenant::host_end(hookd_model::network::tenant_id("acme"));
        let hv = netdev::ifindex(&host).unwrap();
        let before = dp.counters().stats(hv).unwrap().drops[DropReason::NoRoute as usize];
        sh(&format!(
            "nsenter --net={n} ip route add 198.51.100.99/32 dev hookd && \
             for i in 1 2 3 4 5; do nsenter --net={n} bash -c 'echo x > /dev/udp/198.51.100.99/9'; done",
            n = acme.display()
        ));
        let after = dp.counters().stats(hv).unwrap().drops[DropReason::NoRoute as usize];
        assert!(after - before >= 5, "{before} -> {after}");
        assert!(ta.drain().is_empty(), "nothing for an address with no NIC reaches A");

        // The last NIC of a tenant takes its namespace with it.
        dp.detach("u-a", "hko", None).unwrap();
        dp.forget_nic(ia);
        assert!(!acme.exists(), "acme's namespace is removed with its last NIC");
        assert!(netdev::ifindex(&host).is_err(), "and its veth");
        assert!(other.exists(), "the other tenant's stays");
        dp.detach("u-c", "hkp", None).unwrap();
        dp.forget_nic(ic);
        assert!(dp.tenant_namespaces().is_empty());
        assert!(!other.exists());
    })
    .join()
    .expect("tenant namespace test thread");
    drop((ns, out_acme, out_other));
}

/// hookd's unsolicited router advertisement, written on a network NIC's
/// tap by the host, reaches the VM through its default-deny ingress, and
/// is byte for byte what the data path answers a solicitation from `::`
/// with.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn router_advertisements_reach_the_vm_solicited_or_not() {
    use hookd::core::dataplane::DataPlane;
    use std::time::Duration;

    let fs = Bpffs::new();
    let ns = Netns::new("ra");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let mut tap = Tap::create("hkr");
        sh("sysctl -qw net.ipv6.conf.hkr.disable_ipv6=1 && ip link set hkr up");
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let blue = dual("blue", "acme", 10010, "198.51.100", "2001:db8:100");
        let a = mac(A_MAC);
        let xml_addrs = ["198.51.100.10/32", "2001:db8:100::10/128"];
        let mode = {
            let addrs: String = xml_addrs
                .iter()
                .map(|p| format!("<hookd:address prefix='{p}'/>"))
                .collect();
            let xml = DomainXml::new("vm", "u")
                .metadata(&policy(&format!(
                    "<hookd:interface mac='{A_MAC}'><hookd:network name='blue'/>{addrs}\
                     <hookd:ingress default='deny'/></hookd:interface>"
                )))
                .nic("ethernet", A_MAC, None)
                .to_string();
            let dom = hookd_model::domain::parse(&xml).unwrap();
            let mut plans = plan::plan_domain(&dom, true, Stage::BeforeTaps).unwrap();
            plan::join_networks(&mut plans, &dom, |_| Some(blue.clone()));
            plans.remove(0).mode
        };
        dp.attach_nic("u-ra", "hkr", a, &mode, 1).unwrap();
        assert_eq!(dp.advertise_routers(), 1);
        let got = tap.recv_for(Duration::from_millis(300));
        let unsolicited: Vec<&Vec<u8>> = got
            .iter()
            .filter(|f| f.len() > 54 && f[54] == 134)
            .collect();
        assert_eq!(
            unsolicited.len(),
            1,
            "the advertisement passes the default-deny ingress"
        );
        // The data path's answer to a solicitation from ::, on the same tap.
        let rs = eth(
            [0x33, 0x33, 0, 0, 0, 2],
            a,
            0x86dd,
            &ipv6(
                std::net::Ipv6Addr::UNSPECIFIED,
                ip6("ff02::2"),
                58,
                &[133, 0, 0, 0, 0, 0, 0, 0],
            ),
        );
        tap.send(&rs);
        let answered = tap.recv_for(Duration::from_millis(300));
        let solicited: Vec<&Vec<u8>> = answered
            .iter()
            .filter(|f| f.len() > 54 && f[54] == 134)
            .collect();
        assert_eq!(solicited.len(), 1);
        assert_eq!(
            solicited[0], unsolicited[0],
            "the same advertisement, solicited or not"
        );
    })
    .join()
    .expect("router advertisement test thread");
    drop(ns);
}

/// A stock DHCPv6 client (dhcpcd, the Debian package) on a network NIC
/// whose policy address is not its EUI-64 one: from the router
/// advertisement (M flag) and the DHCPv6 exchange answered at its device,
/// it configures exactly that address and a default route via the
/// gateway's link-local address. The "VM" is a namespace behind a veth,
/// hookd's programs on the host end, as they would be on a tap.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_stock_dhcpv6_client_gets_the_nics_address() {
    use hookd::core::dataplane::DataPlane;

    let fs = Bpffs::new();
    let ns = Netns::new("d6");
    let vm = Netns::new("d6vm");
    let pin_dir = fs.pin_dir();
    let (name, vm_name) = (ns.name.clone(), vm.name.clone());
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        sh(&format!(
            "ip link add hkd6 type veth peer name eth0 netns {vm_name} && \
             sysctl -qw net.ipv6.conf.hkd6.disable_ipv6=1 && ip link set hkd6 up && \
             ip -n {vm_name} link set eth0 address {A_MAC} && ip -n {vm_name} link set lo up"
        ));
        let mut dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let blue = dual("blue", "acme", 10010, "198.51.100", "2001:db8:100");
        let mode = on_with(&blue, A_MAC, &["198.51.100.10/32", "2001:db8:100::10/128"]);
        dp.attach_nic("u-d6", "hkd6", mac(A_MAC), &mode, 1).unwrap();
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &vm_name,
                "dhcpcd",
                "--ipv6only",
                "--oneshot",
                "--nobackground",
            ])
            .args(["--timeout", "20", "--waitip", "6"])
            .arg("--script")
            .arg("/bin/true")
            .args(["--config", "/dev/null"])
            .arg("eth0")
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let addrs = cmd_out(&format!(
            "ip -n {vm_name} -6 addr show dev eth0 scope global"
        ));
        let routes = cmd_out(&format!("ip -n {vm_name} -6 route show default"));
        println!("dhcpcd:\n{log}\naddresses:\n{addrs}\nroutes:\n{routes}");
        assert!(
            addrs.contains("2001:db8:100::10/128"),
            "the policy's address, from DHCPv6"
        );
        assert!(
            routes.contains("via fe80::68:6bff:fe00:271a"),
            "the default route, from the RA"
        );
        let n = dp.counters().net_stats(netdev_index("hkd6")).unwrap();
        assert!(
            n.count[hookd_bpf::layout::NET_ANSWERED_DHCP6] >= 2,
            "{n:?}: SOLICIT and REQUEST answered"
        );
        assert!(n.count[hookd_bpf::layout::NET_ANSWERED_RA] >= 1, "{n:?}");
    })
    .join()
    .expect("DHCPv6 client test thread");
    drop((ns, vm));
}

fn netdev_index(dev: &str) -> u32 {
    hookd::datapath::netdev::ifindex(dev).unwrap()
}

/// The drops the network stage counts where its bounds and checks hold:
/// broadcast copies past the flood bound, and a redirect refused because
/// the NIC a lookup found is no longer on the sender's network.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_flood_bound_and_stale_entries_are_counted() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    let blue = network("blue", "acme", 10010);
    let a = mac(A_MAC);
    dp.program_nic(TEST_IFINDEX, a, &on(&blue, A_MAC, "198.51.100.10"), 1)
        .unwrap();
    // 33 more NICs: 34 on blue, of which the first 32 get its broadcasts.
    let other = |i: u32| format!("52:54:00:00:01:{i:02x}");
    for i in 0..33u32 {
        let addr = format!("198.51.100.{}", 100 + i);
        dp.program_nic(100 + i, mac(&other(i)), &on(&blue, &other(i), &addr), 1)
            .unwrap();
    }
    let drops = |dp: &Datapath, r: DropReason| dp.stats(TEST_IFINDEX).unwrap().drops[r as usize];
    let udp_to = |dst_mac: [u8; 6], dst: &str| {
        let ip4 = ipv4(ip("198.51.100.10"), ip(dst), 17, &udp(4000, 5000, b"x"));
        eth(dst_mac, a, 0x0800, &ip4)
    };
    let before = drops(&dp, DropReason::FloodBound);
    let (v, _) = run(&dp, &udp_to([0xff; 6], "198.51.100.255"));
    assert_eq!(v, TC_ACT_REDIRECT, "flooded");
    assert_eq!(
        drops(&dp, DropReason::FloodBound),
        before + 2,
        "34 NICs, A and 31 others in the list: 2 copies left out"
    );

    // NIC 100 moved to another network, its address on blue left behind
    // (as a crash between two map writes could leave it): never sent there.
    let pin = fs.pin_dir().join("maps").join(hookd_bpf::MAP_NIC_NETS);
    let mut nets = aya::maps::HashMap::<_, u32, hookd_bpf::layout::NicNet>::try_from(
        aya::maps::Map::HashMap(aya::maps::MapData::from_pin(pin).unwrap()),
    )
    .unwrap();
    let mut moved = nets.get(&100, 0).unwrap();
    moved.net_id = 20020;
    nets.insert(100, moved, 0).unwrap();
    let before = drops(&dp, DropReason::TenantMismatch);
    let (v, _) = run(&dp, &udp_to(mac(&other(0)), "198.51.100.100"));
    assert_eq!(v, TC_ACT_SHOT, "not redirected to a NIC of another network");
    assert_eq!(drops(&dp, DropReason::TenantMismatch), before + 1);
    for i in 0..33u32 {
        dp.forget_nic(100 + i);
    }
    dp.forget_nic(TEST_IFINDEX);
}
