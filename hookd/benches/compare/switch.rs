//! VM to VM on one host (issue 12's benchmark): hookd's network stage
//! against the stage-one ways of joining two VMs, in one run.
//!
//! Each variant has its own pair of devices in namespace "hv": VM A is a
//! tap whose file descriptor the generator writes (the whole receive path,
//! forwarding included, runs in the writer's thread), VM B a veth whose
//! other end, in namespace "sink", counts what arrives. Variants,
//! interleaved over rounds:
//! - `bridge`: A and B ports of a Linux bridge (B's MAC in its FDB), no filter;
//! - `routing`: the kernel routes A's subnet to B's (forwarding on, B a
//!   permanent neighbour), no filter;
//! - `hookd switched`: A and B NICs of one hookd network, redirected tap to
//!   veth, with security groups on both (A's egress and B's ingress
//!   default deny, the benchmark's port allowed);
//! - `hookd routed`: B on another network of the tenant, routed at A's tap
//!   (TTL, MACs), the same security groups.
//!
//! Frames are 64 bytes on the wire (60 without the FCS): UDP with 18 bytes
//! of payload. Reported: delivered packets per second and the writer's CPU
//! ns per delivered packet (medians of the rounds), and the time for A to
//! resolve its peer or gateway by ARP: answered at A's tap by hookd, by
//! B's kernel across the bridge, by the host for routing.

use super::*;
use hookd::core::dataplane::DataPlane;
use hookd_model::network::{Network, gateway_mac, parse_document};
use hookd_model::plan::{self, Stage};

const SW_VARIANTS: [&str; 4] = ["bridge", "routing", "hookd switched", "hookd routed"];
const SW_ROUNDS: usize = 5;
const ARP_TRIES: usize = 200;
const PORT: u16 = 5000;

fn network(name: &str, vni: u32, net: &str) -> Network {
    parse_document(&format!(
        "<network xmlns='urn:hookd:network:1' name='{name}' tenant='bench' vni='{vni}'>\
         <subnet prefix='{net}.0/24' gateway='{net}.1'/></network>"
    ))
    .expect("benchmark network")
}

/// The plan of a network NIC with `mac` and `addr` on `net`, its security
/// groups default deny with UDP to PORT allowed (egress for A, ingress for B).
fn nic_mode(net: &Network, mac: &str, addr: &str, dir: &str) -> hookd_model::plan::NicMode {
    let xml = hookd_testkit::xml::DomainXml::new("sw", "u")
        .metadata(&hookd_testkit::xml::policy(&format!(
            "<hookd:interface mac='{mac}'><hookd:network name='{}'/>\
             <hookd:address prefix='{addr}/32'/>\
             <hookd:{dir} default='deny'><hookd:rule action='allow' protocol='udp' ports='{PORT}'/></hookd:{dir}>\
             </hookd:interface>",
            net.name
        )))
        .nic("ethernet", mac, None)
        .to_string();
    let dom = hookd_model::domain::parse(&xml).expect("benchmark domain");
    let mut plans = plan::plan_domain(&dom, true, Stage::BeforeTaps).expect("plan");
    plan::join_networks(&mut plans, &dom, |_| Some(net.clone()));
    plans.remove(0).mode
}

/// One variant's devices: A's tap, B's sink end, the frame A sends, and
/// the ARP request A resolves its next hop with.
struct Pair {
    tap: Tap,
    sink: String,
    frame: Vec<u8>,
    arp: Vec<u8>,
}

fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let f = eth(
        dst_mac,
        src_mac,
        0x0800,
        &ipv4(src, dst, 17, &udp(4000, PORT, &[0; 18])),
    );
    assert_eq!(f.len(), 60, "64 bytes on the wire");
    f
}

/// Writes the pair's frame for RUN: (delivered per second, CPU ns per
/// delivered packet).
fn measure_pair(p: &mut Pair) -> (f64, f64) {
    let rx0 = sink_rx_of(&p.sink);
    let cpu0 = thread_cpu();
    let t = Instant::now();
    let mut sent = 0u64;
    while t.elapsed() < RUN {
        for _ in 0..256 {
            p.tap.send(&p.frame);
        }
        sent += 256;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_nanos() as f64;
    std::thread::sleep(Duration::from_millis(100));
    let delivered = (sink_rx_of(&p.sink) - rx0).max(1) as f64;
    eprintln!("{}: {sent} written, {delivered} delivered", p.sink);
    (delivered / secs, cpu / delivered)
}

/// Median time from writing the ARP request to reading its reply, in µs.
fn arp_time(p: &mut Pair) -> f64 {
    let mut us = Vec::new();
    p.tap.drain();
    for _ in 0..ARP_TRIES {
        let t = Instant::now();
        p.tap.send(&p.arp);
        let mut answered = false;
        while t.elapsed() < Duration::from_millis(200) && !answered {
            answered = p
                .tap
                .drain()
                .iter()
                .any(|f| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2]);
            if !answered {
                std::thread::yield_now();
            }
        }
        assert!(answered, "ARP unanswered on {}", p.tap.name);
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut us)
}

pub(crate) fn run(out_dir: &std::path::Path) {
    for ns in [HV_NS, SINK_NS] {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
    sh(&format!("ip netns add {HV_NS} && ip netns add {SINK_NS}"));
    let _cleanup = Cleanup(&[HV_NS, SINK_NS]);
    let _in_hv = Netns::enter(HV_NS);
    sh(
        "ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
    );
    let a_mac = |i: u8| [0x52, 0x54, 0, 0, 0x0a, i];
    let b_mac = |i: u8| [0x52, 0x54, 0, 0, 0x0b, i];
    let (a_ip, b_ip, b2_ip) = (
        Ipv4Addr::new(198, 51, 100, 10),
        Ipv4Addr::new(198, 51, 100, 20),
        Ipv4Addr::new(203, 0, 113, 20),
    );
    let mut pairs = Vec::new();
    for i in 1..=4u8 {
        let tap = Tap::create(&format!("swa{i}"));
        sh(&format!(
            "ip link add swb{i} type veth peer name sws{i} netns {SINK_NS} && \
             ip -n {SINK_NS} link set sws{i} up && ip link set swa{i} up && ip link set swb{i} up && \
             sysctl -qw net.ipv6.conf.swa{i}.disable_ipv6=1 net.ipv6.conf.swb{i}.disable_ipv6=1"
        ));
        let frame = match i {
            1 => udp_frame(b_mac(1), a_mac(1), a_ip, b_ip),
            2 => {
                let gw = mac(json("ip -j link show swa2")[0]["address"]
                    .as_str()
                    .expect("MAC"));
                udp_frame(gw, a_mac(2), a_ip, b2_ip)
            }
            3 => udp_frame(b_mac(3), a_mac(3), a_ip, b_ip),
            _ => udp_frame(
                gateway_mac(10).0,
                a_mac(4),
                Ipv4Addr::new(198, 51, 100, 11),
                b2_ip,
            ),
        };
        let (sender, target) = match i {
            1 => (a_ip, b_ip),
            2 => (a_ip, Ipv4Addr::new(198, 51, 100, 1)),
            3 => (a_ip, b_ip),
            _ => (
                Ipv4Addr::new(198, 51, 100, 11),
                Ipv4Addr::new(198, 51, 100, 1),
            ),
        };
        pairs.push(Pair {
            tap,
            sink: format!("sws{i}"),
            frame,
            arp: eth([0xff; 6], a_mac(i), 0x0806, &arp(a_mac(i), sender, target)),
        });
    }
    // bridge: B's kernel (the sink end) answers ARP for B's address.
    sh(&format!(
        "ip link add swbr type bridge && ip link set swbr up && \
         ip link set swa1 master swbr && ip link set swb1 master swbr && \
         bridge fdb add {} dev swb1 master static && \
         ip -n {SINK_NS} addr add {b_ip}/24 dev sws1",
        mac_text(b_mac(1))
    ));
    // routing: the host is A's gateway and B's neighbour.
    sh(&format!(
        "ip addr add 198.51.100.1/24 dev swa2 && ip addr add 203.0.113.1/24 dev swb2 && \
         ip neigh replace {b2_ip} lladdr {} dev swb2 nud permanent",
        mac_text(b_mac(2))
    ));
    // hookd: A3 and B3 on network blue, A4 on blue and B4 on green.
    let pins = Bpffs::new();
    let mut dp = Datapath::open(&pins.pin_dir(), AttachMode::Auto).expect("hookd's programs");
    let (blue, green) = (
        network("blue", 10, "198.51.100"),
        network("green", 20, "203.0.113"),
    );
    let text = |m: [u8; 6]| mac_text(m);
    for (dev, m, net, addr, dir) in [
        ("swa3", a_mac(3), &blue, "198.51.100.10", "egress"),
        ("swb3", b_mac(3), &blue, "198.51.100.20", "ingress"),
        ("swa4", a_mac(4), &blue, "198.51.100.11", "egress"),
        ("swb4", b_mac(4), &green, "203.0.113.20", "ingress"),
    ] {
        dp.attach_nic("sw", dev, m, &nic_mode(net, &text(m), addr, dir), 1)
            .expect("hookd attaches");
    }

    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); SW_VARIANTS.len()];
    for round in 0..SW_ROUNDS {
        for (vi, p) in pairs.iter_mut().enumerate() {
            let (pps, cpu) = measure_pair(p);
            results[vi].0.push(pps);
            results[vi].1.push(cpu);
        }
        eprintln!("switch: round {}/{SW_ROUNDS} done", round + 1);
    }
    let arp: Vec<f64> = pairs.iter_mut().map(arp_time).collect();
    let med: Vec<(f64, f64)> = results
        .iter_mut()
        .map(|(p, c)| (median(p), median(c)))
        .collect();
    let mut md = String::from("## VM to VM on one host\n\n");
    let _ = writeln!(
        md,
        "Two VMs on one host, 64-byte UDP packets from A (a tap the generator writes) to B \
         (a veth whose other end counts them), {SW_ROUNDS} rounds of {} s per variant, \
         interleaved; medians. hookd has security groups on both NICs (A's egress and B's \
         ingress default deny, the port allowed). ARP: median of {ARP_TRIES} requests from A \
         for its peer (bridge, hookd switched) or gateway (routing, hookd routed), written to \
         the reply read on A's tap.\n",
        RUN.as_secs_f64()
    );
    md.push_str("| variant | delivered packets/s | CPU ns per packet | ARP answered in (µs) |\n|---|---:|---:|---:|\n");
    for (vi, v) in SW_VARIANTS.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {v} | {:.0} | {:.0} | {:.1} |",
            med[vi].0, med[vi].1, arp[vi]
        );
    }
    let (bridge, hookd) = (med[0], med[2]);
    let pps = hookd.0 / bridge.0;
    let cpu = hookd.1 / bridge.1;
    let mark = |ok: bool| if ok { "pass" } else { "short" };
    let _ = writeln!(
        md,
        "\nGoals (hookd switched against the bridge, same run): packets per second \
         {pps:.2}x (goal at least 1.5x): **{}**; CPU ns per packet {cpu:.2}x (goal at most \
         0.7x): **{}**. hookd routed against kernel routing: {:.2}x the packets per second, \
         {:.2}x the CPU ns.",
        mark(pps >= 1.5),
        mark(cpu <= 0.7),
        med[3].0 / med[1].0,
        med[3].1 / med[1].1,
    );
    std::fs::write(out_dir.join("switch.md"), &md).expect("writing the report");
    print!("{md}");
    drop(dp);
}
