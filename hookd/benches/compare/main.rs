//! hookd against no filter, iptables and nftables on the same VM traffic, in
//! one run. A generator plays a VM behind a tap (frames written through the
//! tap's file descriptor, in namespace "hv"); the hypervisor routes them to a
//! veth whose other end (namespace "sink") counts what arrives. Variants,
//! interleaved over rounds: no filter; an empty classifier at tcx (the
//! fixed cost of the hook itself); iptables (legacy x_tables) with N
//! linear rules, without and with a conntrack fast path; nftables with N
//! rules as a linear chain and as one set; hookd's tcx programs with the
//! same N rules as the VM's egress policy (attached by hookd's own daemon
//! code). N = 10, 100, 1,000, 10,000 (random /32 and /28 prefixes of
//! 203.0.113.0/24 and random ports, from one seed); two traffic mixes:
//! "last" (only the last rule matches) and "spread" (each packet matches one
//! of the rules, all rules in turn).
//!
//! Every variant allows the same packets and drops the rest. A tap write
//! runs the whole receive path (filter included) in the writer's thread, so
//! the generator is filter-bound: delivered packets per second and the
//! writer's CPU time per delivered packet both show the filter's cost.
//!
//! Needs root, iptables-legacy and nft: `sudo bash scripts/bench.sh` (which
//! installs them and writes the report). Writes `datapath.md` and
//! `datapath.svg` into the directory given as the first argument.

use hookd_testkit as support;

mod bridged;
mod report;
mod ruleset;
mod switch;

use report::*;
use ruleset::*;

use aya::programs::tc::SchedClassifierLinkId;
use aya::programs::{SchedClassifier, TcAttachType};
use hookd::config::AttachMode;
use hookd::core::Daemon;
use hookd::core::records::StateDir;
use hookd::datapath::Datapath;
use hookd_model::hook::HookArgs;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::stats::*;
use support::*;

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];
const ROUNDS: usize = 3;
const RUN: Duration = Duration::from_millis(1500);
const MAX_FRAMES: usize = 4096;
const VM_MAC: &str = "52:54:00:00:00:0a";
const VM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SINK_PORT: u16 = 9;
const HV_NS: &str = "hookd-bench-hv";
const SINK_NS: &str = "hookd-bench-sink";
const VARIANTS: [&str; 7] = [
    "none",
    "tcx-empty",
    "iptables",
    "iptables+ct",
    "nft-chain",
    "nft-set",
    "hookd",
];

fn hook(op: &str) -> HookArgs {
    HookArgs {
        domain: "bench".into(),
        operation: op.into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    }
}

fn run_with_stdin(cmd: &str, input: &str) {
    use std::io::Write;
    let mut c = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect(cmd);
    c.stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing rules");
    assert!(c.wait().expect(cmd).success(), "{cmd} failed");
}

fn json(cmd: &str) -> serde_json::Value {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect(cmd);
    serde_json::from_slice(&out.stdout).expect(cmd)
}

fn sink_rx() -> u64 {
    sink_rx_of("veth-s")
}

/// Packets received by `dev` in the sink namespace.
fn sink_rx_of(dev: &str) -> u64 {
    json(&format!("ip -n {SINK_NS} -j -s link show {dev}"))[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or(0)
}

fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given, which outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Writes the frames in turn for RUN; (delivered per second, CPU ns per
/// delivered packet).
fn measure(tap: &mut Tap, frames: &[Vec<u8>]) -> (f64, f64) {
    let rx0 = sink_rx();
    let cpu0 = thread_cpu();
    let t = Instant::now();
    let mut i = 0;
    while t.elapsed() < RUN {
        for _ in 0..256 {
            tap.send(&frames[i % frames.len()]);
            i += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_nanos() as f64;
    // Let the last packets land before counting.
    std::thread::sleep(Duration::from_millis(100));
    let delivered = (sink_rx() - rx0).max(1) as f64;
    (delivered / secs, cpu / delivered)
}

struct Filters {
    dp_pins: Bpffs,
    daemon: Option<Daemon>,
    /// An empty classifier: what attaching at tcx costs before any work.
    empty: aya::Ebpf,
    empty_link: Option<SchedClassifierLinkId>,
}

impl Filters {
    fn empty_prog(&mut self) -> &mut SchedClassifier {
        self.empty
            .program_mut("empty_tc")
            .and_then(|p| p.try_into().ok())
            .expect("the empty classifier")
    }
}

impl Filters {
    fn clear(&mut self) {
        sh("iptables-legacy -F FORWARD");
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", "hookdbench"])
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(d) = self.daemon.as_mut() {
            d.hook_event(&hook("stopped"), &hookd_xml(&[], "vmtap"))
                .expect("detaching hookd");
        }
        if let Some(link) = self.empty_link.take() {
            self.empty_prog()
                .detach(link)
                .expect("detaching the empty classifier");
        }
    }

    fn install(&mut self, variant: &str, rules: &[Rule]) {
        self.clear();
        match variant {
            "none" => {}
            "tcx-empty" => {
                let link = self
                    .empty_prog()
                    .attach("vmtap", TcAttachType::Ingress)
                    .expect("attaching the empty classifier");
                self.empty_link = Some(link);
            }
            "iptables" => run_with_stdin("iptables-legacy-restore", &iptables_rules(rules, false)),
            "iptables+ct" => {
                run_with_stdin("iptables-legacy-restore", &iptables_rules(rules, true))
            }
            "nft-chain" | "nft-set" => {
                for script in nft_scripts(rules, variant == "nft-set") {
                    run_with_stdin("nft -f -", &script);
                }
            }
            "hookd" => {
                let d = self.daemon.get_or_insert_with(|| {
                    let dp = Datapath::open(&self.dp_pins.pin_dir(), AttachMode::Auto)
                        .expect("loading hookd's programs");
                    let run =
                        std::env::temp_dir().join(format!("hookd-bench-{}", std::process::id()));
                    Daemon::new(Box::new(dp), StateDir::open(&run).expect("state"), true)
                });
                d.hook_event(&hook("start"), &hookd_xml(rules, "vmtap"))
                    .expect("hookd attaches");
            }
            other => panic!("unknown variant {other}"),
        }
    }
}

fn main() {
    require_root();
    // cargo bench passes "--bench" before the arguments given after "--".
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_dir = PathBuf::from(
        args.iter()
            .find(|a| !a.starts_with("--"))
            .map_or("bench-results", |a| a.as_str()),
    );
    std::fs::create_dir_all(&out_dir).expect("results directory");
    if args.iter().any(|a| a == "--libvirt") {
        bridged::run(&out_dir);
    } else if args.iter().any(|a| a == "--switch") {
        switch::run(&out_dir);
    } else {
        routed(&out_dir);
    }
}

/// Namespace "sink" with veth-s, its end of a veth pair whose other end,
/// veth-h, is created in `hv_ns` (None: the calling thread's namespace).
/// veth-s owns the sink's address and, for mix "spread", the rules'.
/// Returns veth-s's MAC.
fn make_sink(hv_ns: Option<&str>) -> [u8; 6] {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", SINK_NS])
        .stderr(std::process::Stdio::null())
        .status();
    sh(&format!("ip netns add {SINK_NS}"));
    let ip = hv_ns.map_or("ip".to_string(), |ns| format!("ip -n {ns}"));
    sh(&format!(
        "{ip} link add veth-h type veth peer name veth-s netns {SINK_NS}"
    ));
    sh(&format!(
        "ip -n {SINK_NS} addr add {SINK_IP}/24 dev veth-s && ip -n {SINK_NS} link set veth-s up && ip -n {SINK_NS} link set lo up"
    ));
    sh(&format!(
        "ip -n {SINK_NS} route add local 203.0.113.0/24 dev lo"
    ));
    mac(
        json(&format!("ip -n {SINK_NS} -j link show veth-s"))[0]["address"]
            .as_str()
            .expect("sink MAC"),
    )
}

/// The routed topology: hookd against iptables and nftables.
fn routed(out_dir: &std::path::Path) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", HV_NS])
        .stderr(std::process::Stdio::null())
        .status();
    sh(&format!("ip netns add {HV_NS}"));
    let _cleanup = Cleanup(&[HV_NS, SINK_NS]);
    let sink_mac = make_sink(Some(HV_NS));
    sh(&format!(
        "ip -n {HV_NS} addr add 198.51.100.1/24 dev veth-h && ip -n {HV_NS} link set veth-h up && ip -n {HV_NS} link set lo up"
    ));
    sh(&format!(
        "ip -n {HV_NS} route add 203.0.113.0/24 via {SINK_IP}"
    ));
    sh(&format!(
        "ip netns exec {HV_NS} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"
    ));
    // From here on this process lives in "hv": the tap, iptables, nft and
    // hookd all act there.
    let _in_hv = Netns::enter(HV_NS);
    let mut tap = Tap::create("vmtap");
    sh(
        "ip addr add 192.0.2.1/24 dev vmtap && ip link set vmtap up && sysctl -qw net.ipv4.conf.vmtap.rp_filter=0",
    );
    sh(&format!(
        "ip neigh replace {SINK_IP} lladdr {} dev veth-h",
        mac_text(sink_mac)
    ));
    let tap_mac = mac(json("ip -j link show vmtap")[0]["address"]
        .as_str()
        .expect("tap MAC"));
    let mut empty = aya::Ebpf::load(hookd_bpf::EMPTY_OBJ).expect("loading the empty classifier");
    let prog: &mut SchedClassifier = empty
        .program_mut("empty_tc")
        .and_then(|p| p.try_into().ok())
        .expect("the empty classifier");
    prog.load().expect("loading the empty classifier");
    let mut filters = Filters {
        dp_pins: Bpffs::new(),
        daemon: None,
        empty,
        empty_link: None,
    };

    let mut results = samples(VARIANTS.len());
    for round in 0..ROUNDS {
        for (si, &n) in SIZES.iter().enumerate() {
            let rs = rules(n);
            for (vi, v) in VARIANTS.iter().enumerate() {
                filters.install(v, &rs);
                for (mi, spread) in [false, true].into_iter().enumerate() {
                    let (pps, cpu) = measure(&mut tap, &frames(&rs, spread, tap_mac, mac(VM_MAC)));
                    results[mi][si][vi].0.push(pps);
                    results[mi][si][vi].1.push(cpu);
                }
            }
            eprintln!("round {}/{ROUNDS}: N = {n} done", round + 1);
        }
    }
    filters.clear();
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("hookd-bench-{}", std::process::id())),
    );
    let report = render(&mut results);
    std::fs::write(out_dir.join("datapath.md"), &report.0).expect("writing the report");
    std::fs::write(out_dir.join("datapath.svg"), &report.1).expect("writing the plot");
    print!("{}", report.0);
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Deletes the namespaces it names when dropped.
struct Cleanup(&'static [&'static str]);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}
