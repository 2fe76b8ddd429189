//! Per-packet cost of hookd's programs against an empty program of the same
//! type, measured with BPF_PROG_TEST_RUN in the same run, at 10, 100, 1,000
//! and 10,000 security-group rules, over thousands of distinct flows.
//! Needs root: `cargo bench -p hookd --bench datapath`. Prints a table of
//! medians over interleaved rounds, the 10,000-rule / 10-rule ratios
//! (target: within 1.2x) and the established flow against the empty
//! program (target: within 3x), each marked pass or short. Each size has
//! a NIC of its own and the sizes take turns every few flows, so that the
//! shared machine's drift, larger than the sizes' difference, falls on all
//! of them alike; a ratio is taken within each round, then the median of
//! the rounds.
//! Frames are 64 bytes; no packet leaves the kernel's test harness.

use hookd_testkit as support;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use std::net::Ipv4Addr;
use support::stats::*;
use support::*;

const VM_MAC: &str = "52:54:00:00:00:0a";
const FLOWS: usize = 2048;
const ROUNDS: usize = 9;
/// Flows measured in a row on one size before the next takes its turn.
const CHUNK: usize = 16;
/// Runs of each established packet in the kernel per measurement.
const EST_REPEAT: u32 = 100;
const SIZES: [usize; 4] = [10, 100, 1000, 10_000];
const IFINDEX: u32 = 1; // the bench's namespace's loopback

/// N random rules, all seeded: remotes are distinct IPv6 /64s and IPv4 /32s
/// of the documentation ranges, ports random; the last rule allows TCP from
/// the flows' addresses so that new flows are tracked.
fn policy(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut rules = String::new();
    for i in 0..n - 1 {
        let action = if rng.below(10) == 0 { "deny" } else { "allow" };
        let proto = if rng.below(2) == 0 { "tcp" } else { "udp" };
        let lo = 1 + rng.below(60000);
        let ports = if rng.below(2) == 0 {
            lo.to_string()
        } else {
            format!("{lo}-{}", lo + rng.below(500))
        };
        let remote = if i % 2 == 0 {
            format!(
                "2001:db8:{:x}:{:x}::/64",
                rng.below(0x10000),
                rng.below(0x10000)
            )
        } else {
            format!("203.0.113.{}/32", rng.below(256))
        };
        rules += &format!(
            "<hookd:rule action='{action}' protocol='{proto}' ports='{ports}' remote='{remote}'/>"
        );
    }
    rules += "<hookd:rule action='allow' protocol='tcp' remote='198.51.100.0/24'/>";
    format!(
        "<domain><name>b</name><uuid>u</uuid><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'>\
         <hookd:interface mac='{VM_MAC}'><hookd:address prefix='192.0.2.10/32'/>\
         <hookd:ingress default='deny'>{rules}</hookd:ingress></hookd:interface></hookd:policy></metadata>\
         <devices><interface type='bridge'><mac address='{VM_MAC}'/></interface></devices></domain>"
    )
}

fn frames(flags: u8) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let src = Ipv4Addr::new(198, 51, 100, (i % 254) as u8 + 1);
            let l4 = tcp(1024 + i as u16, 22, flags);
            eth(
                mac(VM_MAC),
                mac("02:00:00:00:00:01"),
                0x0800,
                &ipv4(src, Ipv4Addr::new(192, 0, 2, 10), 6, &l4),
            )
        })
        .collect()
}

/// Total ns of the frames `frames` on device `ifindex`, each run `repeat`
/// times in the kernel (divided by `repeat`: ns per packet, summed).
fn cost(prog: &SchedClassifier, ifindex: u32, frames: &[Vec<u8>], repeat: u32) -> f64 {
    // The device each size's NIC is: its own ifindex.
    let ctx = support::vm::skb_ctx(ifindex);
    let mut total = 0u128;
    for f in frames {
        let opts = TestRunOptions {
            data_in: Some(f),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        };
        total += prog
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN")
            .duration
            .as_nanos();
    }
    total as f64
}

/// Mean ns per packet of `frames` for each size's device, measured in
/// chunks of [`CHUNK`] flows that take turns between the sizes (and the
/// empty program, `None`), so that the machine's drift falls on all alike.
fn interleaved(progs: &[(&SchedClassifier, u32)], frames: &[Vec<u8>], repeat: u32) -> Vec<f64> {
    let mut sums = vec![0.0; progs.len()];
    for (c, chunk) in frames.chunks(CHUNK).enumerate() {
        for j in 0..progs.len() {
            let k = (j + c) % progs.len();
            let (prog, ifindex) = progs[k];
            sums[k] += cost(prog, ifindex, chunk, repeat);
        }
    }
    sums.iter().map(|s| s / frames.len() as f64).collect()
}

fn main() {
    let fs = Bpffs::new();
    let ns = Netns::new("bdp");
    let _in = Netns::enter(&ns.name);
    // The sizes' NICs: the namespace's loopback and veth devices (down,
    // nothing is sent; the test runner only needs a device).
    let mut devs = vec![IFINDEX];
    for k in 1..SIZES.len() {
        sh(&format!("ip link add bdp{k} type veth peer name bdp{k}x"));
        devs.push(hookd::datapath::netdev::ifindex(&format!("bdp{k}")).expect("a veth"));
    }
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).expect("loading hookd's programs");
    let mut empty = aya::Ebpf::load(hookd_bpf::EMPTY_OBJ).expect("loading the empty program");
    let empty: &mut SchedClassifier = empty.program_mut("empty_tc").unwrap().try_into().unwrap();
    empty.load().unwrap();
    let empty: &SchedClassifier = empty;
    let hookd =
        SchedClassifier::from_pin(fs.pin_dir().join("progs").join(hookd_bpf::PROG_TO_VM)).unwrap();
    let syn = frames(SYN);
    let ack = frames(ACK);
    let plans: Vec<_> = SIZES
        .iter()
        .map(|&n| {
            let dom = hookd_model::domain::parse(&policy(n, 0x5eed + n as u64)).unwrap();
            hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps)
                .unwrap()
                .remove(0)
                .mode
        })
        .collect();
    let mut progs: Vec<(&SchedClassifier, u32)> = devs.iter().map(|&d| (&hookd, d)).collect();
    progs.push((empty, IFINDEX));
    // [size][round], and the empty program's [round].
    let mut new_ns = vec![Vec::new(); SIZES.len()];
    let mut est_ns = vec![Vec::new(); SIZES.len()];
    let mut empty_ns = Vec::new();
    let mut entries = vec![0; SIZES.len()];
    for round in 0..ROUNDS {
        // Fresh NICs, so that every SYN opens a connection.
        for (k, &d) in devs.iter().enumerate() {
            dp.forget_nic(d);
            dp.program_nic(d, mac(VM_MAC), &plans[k], round as u64)
                .unwrap();
            entries[k] = dp.fw_rule_count(d);
        }
        // First packet of each flow: conntrack miss, rule lookups, a new entry.
        let new = interleaved(&progs[..SIZES.len()], &syn, 1);
        // Later packets: the flow is tracked. Repeated enough that the
        // rounds' ratios to the empty program spread by under 5%.
        let est = interleaved(&progs, &ack, EST_REPEAT);
        for k in 0..SIZES.len() {
            new_ns[k].push(new[k]);
            est_ns[k].push(est[k]);
        }
        empty_ns.push(est[SIZES.len()]);
    }
    // The samples in round order, before the medians sort them.
    let new_ns_by_round = new_ns.clone();
    let est_ns_by_round = est_ns.clone();
    let empty_round = empty_ns.clone();
    let e = median(&mut empty_ns);
    println!(
        "hookd_to_vm (ingress firewall + conntrack) vs an empty classifier, BPF_PROG_TEST_RUN,"
    );
    println!(
        "64-byte TCP frames, {FLOWS} distinct flows, each size on a NIC of its own, taking turns \
         every {CHUNK} flows; median of {ROUNDS} rounds\n"
    );
    println!(
        "{:>7} {:>13} {:>14} {:>10} {:>17} {:>10} {:>10}",
        "rules",
        "table entries",
        "new flow ns",
        "new/empty",
        "established ns",
        "est/empty",
        "empty ns"
    );
    for (k, n) in SIZES.iter().enumerate() {
        let (nw, es) = (median(&mut new_ns[k]), median(&mut est_ns[k]));
        println!(
            "{n:>7} {:>13} {nw:>14.1} {:>10.2} {es:>17.1} {:>10.2} {e:>10.1}",
            entries[k],
            nw / e,
            es / e
        );
    }
    // Within-round ratios: 10,000 rules against 10, and established
    // against the empty program of the same round.
    let last = SIZES.len() - 1;
    let ratios = |v: &[Vec<f64>], base: &dyn Fn(usize) -> f64| {
        let mut r: Vec<f64> = (0..ROUNDS).map(|i| v[last][i] / base(i)).collect();
        let m = median(&mut r);
        (m, r[0], r[ROUNDS - 1])
    };
    let empty_of = |i: usize| empty_round[i];
    let (rn, rn_lo, rn_hi) = ratios(&new_ns_by_round, &|i| new_ns_by_round[0][i]);
    let (re, re_lo, re_hi) = ratios(&est_ns_by_round, &|i| est_ns_by_round[0][i]);
    let (ee, ee_lo, ee_hi) = ratios(&est_ns_by_round, &empty_of);
    let (ne, _, _) = ratios(&new_ns_by_round, &empty_of);
    let verdict = |r: f64, goal: f64| if r <= goal { "pass" } else { "short" };
    println!(
        "\n10,000 rules / 10 rules, median of the rounds' ratios (range): new flow {rn:.2}x \
         ({rn_lo:.2}-{rn_hi:.2}, {}), established {re:.2}x ({re_lo:.2}-{re_hi:.2}, {}); target <= 1.2x",
        verdict(rn, 1.2),
        verdict(re, 1.2)
    );
    println!(
        "established flow at 10,000 rules / empty program: {ee:.2}x ({ee_lo:.2}-{ee_hi:.2}, {}, \
         spread {:.1}%); target <= 3x; a new flow is {ne:.2}x the empty program",
        verdict(ee, 3.0),
        100.0 * (ee_hi - ee_lo) / ee
    );
}
