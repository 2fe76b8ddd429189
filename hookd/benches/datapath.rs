//! Per-packet cost of hookd's programs against an empty program of the same
//! type, measured with BPF_PROG_TEST_RUN in the same run, at 10, 100, 1,000
//! and 10,000 security-group rules, over thousands of distinct flows.
//! Needs root: `cargo bench -p hookd --bench datapath`. Prints a table of
//! medians over interleaved rounds and the 10,000-rule / 10-rule ratios
//! (target: within 1.2x). Frames are 64 bytes; no packet leaves the kernel's
//! test harness.

use hookd_testkit as support;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use hookd::config::AttachMode;
use hookd::datapath::Datapath;
use std::net::Ipv4Addr;
use support::stats::*;
use support::*;

const VM_MAC: &str = "52:54:00:00:00:0a";
const FLOWS: usize = 2048;
const ROUNDS: usize = 5;
const SIZES: [usize; 4] = [10, 100, 1000, 10_000];
const IFINDEX: u32 = 1; // BPF_PROG_TEST_RUN runs on the namespace's loopback

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

/// Mean ns/packet over all frames, each run `repeat` times in the kernel.
fn cost(prog: &SchedClassifier, frames: &[Vec<u8>], repeat: u32) -> f64 {
    let mut total = 0u128;
    for f in frames {
        let opts = TestRunOptions {
            data_in: Some(f),
            repeat,
            ..Default::default()
        };
        total += prog
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN")
            .duration
            .as_nanos();
    }
    total as f64 / frames.len() as f64
}

fn main() {
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).expect("loading hookd's programs");
    let mut empty = aya::Ebpf::load(hookd_bpf::EMPTY_OBJ).expect("loading the empty program");
    let empty: &mut SchedClassifier = empty.program_mut("empty_tc").unwrap().try_into().unwrap();
    empty.load().unwrap();
    let hookd =
        SchedClassifier::from_pin(fs.pin_dir().join("progs").join(hookd_bpf::PROG_TO_VM)).unwrap();
    let syn = frames(SYN);
    let ack = frames(ACK);
    // Compile each size once; interleave the sizes over rounds.
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
    let mut new_ns = vec![Vec::new(); SIZES.len()];
    let mut est_ns = vec![Vec::new(); SIZES.len()];
    let mut empty_ns = Vec::new();
    let mut entries = vec![0; SIZES.len()];
    for round in 0..ROUNDS {
        for k in 0..SIZES.len() {
            let k = (k + round) % SIZES.len();
            dp.forget_nic(IFINDEX);
            dp.program_nic(IFINDEX, mac(VM_MAC), &plans[k], round as u64)
                .unwrap();
            entries[k] = dp.fw_rule_count(IFINDEX);
            // First packet of each flow: conntrack miss, rule lookups, a new entry.
            new_ns[k].push(cost(&hookd, &syn, 1));
            // Later packets: the flow is tracked.
            est_ns[k].push(cost(&hookd, &ack, 20));
            empty_ns.push(cost(empty, &ack, 20));
        }
    }
    let e = median(&mut empty_ns);
    println!(
        "hookd_to_vm (ingress firewall + conntrack) vs an empty classifier, BPF_PROG_TEST_RUN,"
    );
    println!("64-byte TCP frames, {FLOWS} distinct flows, median of {ROUNDS} interleaved rounds\n");
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
    let mut medians = Vec::new();
    for (k, n) in SIZES.iter().enumerate() {
        let (nw, es) = (median(&mut new_ns[k]), median(&mut est_ns[k]));
        medians.push((nw, es));
        println!(
            "{n:>7} {:>13} {nw:>14.1} {:>10.2} {es:>17.1} {:>10.2} {e:>10.1}",
            entries[k],
            nw / e,
            es / e
        );
    }
    let (first, last) = (medians[0], medians[SIZES.len() - 1]);
    let (rn, re) = (last.0 / first.0, last.1 / first.1);
    let verdict = |r: f64| if r <= 1.2 { "pass" } else { "short" };
    println!(
        "\n10,000 rules / 10 rules: new flow {rn:.2}x ({}), established {re:.2}x ({}); target <= 1.2x",
        verdict(rn),
        verdict(re)
    );
}
