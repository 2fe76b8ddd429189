//! Tier 2: the upgrade path. A daemon attaches to a tap, goes away, and a
//! new daemon with another build of the programs adopts the record and
//! swaps its programs onto the running tap, while the test plays the VM
//! and the host sends traffic both ways. No allowed packet may be lost and
//! no forged or denied one may pass, and the tap must end up running the
//! new programs.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-all.sh (`--include-ignored`), where they fail, never skip,
//! if they cannot run.

use hookd_testkit as support;

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifier, TcAttachType};
use hookd::config::AttachMode;
use hookd::core::Daemon;
use hookd::core::records::StateDir;
use hookd::datapath::{Attachment, Datapath};
use hookd_bpf::layout::DropReason;
use hookd_model::hook::HookArgs;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

const VM_MAC: &str = "52:54:00:00:00:0a";
const OTHER_MAC: &str = "52:54:00:00:00:99";
const HOST_MAC: &str = "02:00:00:00:00:01";
const UUID: &str = "00000000-0000-4000-8000-0000000000c1";
const TAP: &str = "hk0";
const ALLOWED_PORT: u16 = 5000;
const DENIED_PORT: u16 = 6000;
/// Echo sequence numbers: the allowed flow, forged IP source, forged MAC.
const SEQ_SPOOF_IP: u16 = 0x4000;
const SEQ_SPOOF_MAC: u16 = 0x8000;
/// Program swaps under traffic after the adoption's, alternating builds.
const SWAPS: usize = 100;

struct StopOnDrop(Arc<AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// hookd's object built again with another instruction set (`-mcpu=v3`:
/// 32-bit jumps and ALU), the same source, programs and maps: to the kernel,
/// a different program version, as an upgrade brings.
fn variant_object() -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpf/c/hookd.bpf.c");
    let out = tempfile::tempdir().unwrap();
    let obj = out.path().join("hookd-v3.bpf.o");
    let clang = std::env::var("HOOKD_CLANG").unwrap_or_else(|_| "clang-19".into());
    let st = std::process::Command::new(&clang)
        .args([
            "-g", "-O2", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
        ])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    assert!(st.success(), "{clang} failed on {}", src.display());
    let bytes = std::fs::read(&obj).unwrap();
    // The ELF reader wants aligned data, as include_bytes_aligned! gives.
    assert_eq!(bytes.as_ptr() as usize % 8, 0, "object buffer not aligned");
    bytes
}

fn domain_xml() -> String {
    format!(
        "<domain type='qemu'><name>vm1</name><uuid>{UUID}</uuid><metadata>\
         <hookd:policy xmlns:hookd='urn:hookd:policy:1'><hookd:interface>\
         <hookd:address prefix='192.0.2.10/32'/>\
         <hookd:ingress default='deny'>\
         <hookd:rule action='allow' protocol='udp' ports='{ALLOWED_PORT}' remote='192.0.2.1/32'/>\
         </hookd:ingress></hookd:interface></hookd:policy></metadata>\
         <devices><interface type='ethernet'><mac address='{VM_MAC}'/><target dev='{TAP}'/>\
         </interface></devices></domain>"
    )
}

fn start(d: &mut Daemon) {
    let args = HookArgs {
        domain: "vm1".into(),
        operation: "start".into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    d.hook_event(&args, &domain_xml()).unwrap();
}

/// (program name, id, tag) of each of hookd's programs in `dp`.
fn program_ids(dp: &Datapath) -> Vec<(&'static str, u32, u64)> {
    [hookd_bpf::PROG_FROM_VM, hookd_bpf::PROG_TO_VM]
        .into_iter()
        .map(|name| {
            let info = dp.program(name).unwrap().info().unwrap();
            (name, info.id(), info.tag())
        })
        .collect()
}

/// The program each hook of the tap runs, by hookd's program for it: the
/// tcx programs the kernel lists (hookd's are the only ones), or the ids
/// and (pref, handle) of the netlink filters as `tc` shows them.
fn running(how: Attachment) -> Vec<(&'static str, u32, String)> {
    let mut out = Vec::new();
    for (name, kind, dir) in [
        (hookd_bpf::PROG_FROM_VM, TcAttachType::Ingress, "ingress"),
        (hookd_bpf::PROG_TO_VM, TcAttachType::Egress, "egress"),
    ] {
        match how {
            Attachment::Tcx => {
                let (_, progs) = SchedClassifier::query_tcx(TAP, kind).unwrap();
                assert_eq!(progs.len(), 1, "one tcx program on {dir}");
                out.push((name, progs[0].id(), String::new()));
            }
            Attachment::Netlink => {
                let tc = std::process::Command::new("tc")
                    .args(["filter", "show", "dev", TAP, dir])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&tc.stdout);
                let lines: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
                assert_eq!(lines.len(), 1, "one {name} filter on {dir}: {text}");
                let words: Vec<&str> = lines[0].split_whitespace().collect();
                let after = |key: &str| {
                    let i = words.iter().position(|w| *w == key).unwrap();
                    words[i + 1]
                };
                let place = format!("pref {} handle {}", after("pref"), after("handle"));
                out.push((name, after("id").parse().unwrap(), place));
            }
        }
    }
    out
}

/// The pinned links' program ids, by pin name.
fn pinned(pin_dir: &Path) -> Vec<u32> {
    ["from_vm", "to_vm"]
        .into_iter()
        .map(|suffix| {
            let pin = pin_dir
                .join("links")
                .join(UUID)
                .join(format!("{TAP}-{suffix}"));
            let link: FdLink = PinnedLink::from_pin(&pin).unwrap().into();
            link.info().unwrap().program_id()
        })
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    echo_sent: u16,
    udp_sent: u16,
    echo_replies: BTreeSet<u16>,
    udp_received: BTreeSet<u16>,
    spoofed_replies: usize,
    denied_received: usize,
}

impl Tally {
    fn count(&mut self, frames: Vec<Vec<u8>>) {
        for f in frames {
            if f.len() < 14 + 20 + 8 || f[12..14] != [8, 0] {
                continue;
            }
            let ip = &f[14..];
            let l4 = &ip[usize::from(ip[0] & 0xf) * 4..];
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            match ip[9] {
                1 if l4[0] == 0 && l4[4..6] == [0x12, 0x34] => {
                    let seq = u16::from_be_bytes([l4[6], l4[7]]);
                    if dst == v4("192.0.2.10") && seq < SEQ_SPOOF_IP {
                        self.echo_replies.insert(seq);
                    } else {
                        self.spoofed_replies += 1;
                    }
                }
                17 => {
                    let dport = u16::from_be_bytes([l4[2], l4[3]]);
                    if dport == ALLOWED_PORT && l4.len() >= 10 {
                        self.udp_received.insert(u16::from_be_bytes([l4[8], l4[9]]));
                    } else if dport == DENIED_PORT {
                        self.denied_received += 1;
                    }
                }
                _ => {}
            }
        }
    }
}

impl Tally {
    /// No allowed packet lost, no forged or denied one delivered.
    fn assert_clean(&self) {
        assert!(self.echo_sent > 100, "too little traffic: {self:?}");
        assert_eq!(
            self.echo_replies.len(),
            usize::from(self.echo_sent),
            "allowed echo lost"
        );
        assert_eq!(
            self.udp_received.len(),
            usize::from(self.udp_sent),
            "allowed UDP lost"
        );
        assert_eq!(self.spoofed_replies, 0, "a forged frame passed");
        assert_eq!(self.denied_received, 0, "a denied frame passed");
    }

    /// Every forged and denied frame is counted as dropped, once; up to
    /// `slack` counts of each may be lost (see `new_map_layout_under_traffic`).
    fn assert_counted(&self, dp: &Datapath, ifindex: u32, slack: u64) {
        let s = dp.stats(ifindex).unwrap();
        let sent = u64::from(self.echo_sent);
        for reason in [
            DropReason::IpSpoof,
            DropReason::MacSpoof,
            DropReason::FwDefault,
        ] {
            let n = s.drops[reason as usize];
            assert!(
                n <= sent && n + slack >= sent,
                "{reason:?}: {n} of {sent}: {s:?}"
            );
        }
    }
}

/// Plays the VM and the host until `stop`, then drains what is in flight.
fn traffic(tap: &mut Tap, stop: &AtomicBool) -> Tally {
    let (h, m, other) = (mac(HOST_MAC), mac(VM_MAC), mac(OTHER_MAC));
    let host = UdpSocket::bind("192.0.2.1:0").unwrap();
    let mut t = Tally::default();
    let echo = |src: &str, from: [u8; 6], seq: u16| {
        eth(
            h,
            from,
            0x0800,
            &ipv4(v4(src), v4("192.0.2.1"), 1, &icmp_echo(seq)),
        )
    };
    while !stop.load(Ordering::Relaxed) {
        assert!(t.echo_sent < SEQ_SPOOF_IP, "ran too long");
        let i = t.echo_sent;
        // Allowed both ways: the VM's echo request and the host's reply
        // (passed by connection tracking into the default-deny ingress).
        tap.send(&echo("192.0.2.10", m, i));
        t.echo_sent += 1;
        // Forged by the VM: another IP source, another MAC source.
        tap.send(&echo("192.0.2.99", m, SEQ_SPOOF_IP | i));
        tap.send(&echo("192.0.2.10", other, SEQ_SPOOF_MAC | i));
        // Host to VM: an allowed UDP flow and a port the policy denies.
        host.send_to(&i.to_be_bytes(), ("192.0.2.10", ALLOWED_PORT))
            .unwrap();
        t.udp_sent += 1;
        host.send_to(&i.to_be_bytes(), ("192.0.2.10", DENIED_PORT))
            .unwrap();
        t.count(tap.drain());
        std::thread::sleep(Duration::from_micros(300));
    }
    t.count(tap.recv_for(Duration::from_millis(500)));
    t
}

/// Runs `body(pin_dir, netns name, tap)` on a thread inside a network
/// namespace of its own, with a private bpffs, and the tap the test plays
/// the VM on.
fn on_tap(ns: &str, body: impl FnOnce(PathBuf, String, Tap) + Send + 'static) {
    let fs = Bpffs::new();
    let ns = Netns::new(ns);
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let tap = Tap::create(TAP);
        // No IPv6 from the host: every frame to the VM is one the test sent.
        sh(&format!("sysctl -qw net.ipv6.conf.{TAP}.disable_ipv6=1"));
        host_side(TAP, HOST_MAC, VM_MAC);
        body(pin_dir, name, tap)
    })
    .join()
    .expect("test thread");
    drop(ns);
}

fn upgrade_under_traffic(mode: AttachMode, how: Attachment) {
    let variant = variant_object();
    let ns = if how == Attachment::Tcx {
        "upg"
    } else {
        "upgnl"
    };
    on_tap(ns, move |pin_dir, name, mut tap| {
        let run = tempfile::tempdir().unwrap();

        // Daemon A: the embedded build attaches the tap.
        let dp = Datapath::open(&pin_dir, mode).unwrap();
        let old = program_ids(&dp);
        let ifindex = hookd::datapath::netdev::ifindex(TAP).unwrap();
        let mut a = Daemon::new(Box::new(dp), StateDir::open(run.path()).unwrap(), true);
        start(&mut a);
        assert_eq!(a.records()[0].nics[0].attach, Some(how));
        let before = running(how);
        for ((name, id, _), (n, running_id, _)) in old.iter().zip(&before) {
            assert_eq!((name, id), (n, running_id), "A's programs attached");
        }

        if how == Attachment::Tcx {
            // As earlier builds of hookd could leave them: each link pinned
            // under the other's name. The upgrade goes by the kernel's hook.
            let dir = pin_dir.join("links").join(UUID);
            let (from, to, tmp) = (
                dir.join(format!("{TAP}-from_vm")),
                dir.join(format!("{TAP}-to_vm")),
                dir.join("swap"),
            );
            std::fs::rename(&from, &tmp).unwrap();
            std::fs::rename(&to, &from).unwrap();
            std::fs::rename(&tmp, &to).unwrap();
        }

        // Under traffic: A goes away, B (another build) adopts and swaps.
        let stop = Arc::new(AtomicBool::new(false));
        let upgrader = {
            let (stop, pin_dir, name) = (stop.clone(), pin_dir.clone(), name.clone());
            let run = run.path().to_owned();
            std::thread::spawn(move || {
                // Ends the traffic even if this thread panics.
                let _stop = StopOnDrop(stop);
                let _in_ns = Netns::enter(&name);
                std::thread::sleep(Duration::from_millis(200));
                drop(a);
                let dp = Datapath::open_object(&pin_dir, mode, &variant).unwrap();
                let b_ids = program_ids(&dp);
                let t0 = Instant::now();
                let b = Daemon::new(Box::new(dp), StateDir::open(&run).unwrap(), true);
                let took = t0.elapsed();
                assert_eq!(b.records().len(), 1, "B adopted the domain");
                let now: Vec<u32> = running(how).iter().map(|r| r.1).collect();
                let want: Vec<u32> = b_ids.iter().map(|p| p.1).collect();
                assert_eq!(now, want, "B's adoption swapped its programs in");
                drop(b);
                std::thread::sleep(Duration::from_millis(50));
                // More swaps under the same traffic: back and forth between
                // the two builds, ending on the variant.
                let mut builds = [
                    Datapath::open(&pin_dir, mode).unwrap(),
                    Datapath::open_object(&pin_dir, mode, &variant).unwrap(),
                ];
                for k in 0..SWAPS {
                    let dp = &mut builds[k % 2];
                    let r = dp.refresh_programs(UUID, TAP, Some(how)).unwrap();
                    assert_eq!(r.len(), 2, "swap {k}: {r:?}");
                    std::thread::sleep(Duration::from_millis(3));
                }
                std::thread::sleep(Duration::from_millis(100));
                (program_ids(&builds[1]), took)
            })
        };
        let tally = traffic(&mut tap, &stop);
        let (new, took) = upgrader.join().expect("upgrade thread");

        // The links (or filters) now run B's programs, in the same place.
        let after = running(how);
        for (((name, old_id, old_tag), (_, new_id, new_tag)), (_, running_id, place)) in
            old.iter().zip(&new).zip(&after)
        {
            assert_ne!(old_tag, new_tag, "{name}: the variant is another program");
            assert_eq!(running_id, new_id, "{name} runs B's program");
            println!("{name}: program {old_id} (build A) ends as {new_id} {place}");
        }
        if how == Attachment::Tcx {
            let mut ids = pinned(&pin_dir);
            ids.sort_unstable();
            let mut want: Vec<u32> = new.iter().map(|p| p.1).collect();
            want.sort_unstable();
            assert_eq!(ids, want, "the pinned links are the updated ones");
        }
        for ((_, _, p0), (_, _, p1)) in before.iter().zip(&after) {
            assert_eq!(p0, p1, "netlink filter replaced in place");
        }

        println!(
            "{how:?}: adoption with the swap took {took:?}, then {SWAPS} more swaps; {} echo requests, {} replies; {} UDP sent, {} received; \
             {} forged replies and {} denied frames got through",
            tally.echo_sent,
            tally.echo_replies.len(),
            tally.udp_sent,
            tally.udp_received.len(),
            tally.spoofed_replies,
            tally.denied_received,
        );
        tally.assert_clean();

        // Every forged and denied frame was judged (by the old program or
        // the new one), and counted in the pinned maps both use.
        let mut c = Datapath::open_object(&pin_dir, mode, &variant_object()).unwrap();
        tally.assert_counted(&c, ifindex, 0);

        // A restart with the same build replaces nothing.
        assert_eq!(c.refresh_programs(UUID, TAP, Some(how)).unwrap(), vec![]);
        let again = running(how);
        assert_eq!(
            again.iter().map(|r| r.1).collect::<Vec<_>>(),
            after.iter().map(|r| r.1).collect::<Vec<_>>(),
            "same program: left alone"
        );
        // And one with the old build swaps back.
        let mut back = Datapath::open(&pin_dir, mode).unwrap();
        let swapped = back.refresh_programs(UUID, TAP, Some(how)).unwrap();
        assert_eq!(swapped.len(), 2, "{swapped:?}");
        drop(c);
        drop(tap);
    });
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn tcx_links_get_the_new_programs_under_traffic() {
    upgrade_under_traffic(AttachMode::Tcx, Attachment::Tcx);
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn netlink_filters_get_the_new_programs_under_traffic() {
    upgrade_under_traffic(AttachMode::Netlink, Attachment::Netlink);
}

/// Capacities of an "earlier" layout: the policy maps (through
/// `hookd_fw_rules`), the NIC counters and the conntrack map of maps each
/// differ from this build's, so none of them can be shared.
const EARLIER: [(&str, u32); 3] = [
    (hookd_bpf::MAP_FW_RULES, 65536),
    (hookd_bpf::MAP_STATS, 2048),
    (hookd_bpf::MAP_CT, 2048),
];

/// The files under `maps/`.
fn map_pins(pin_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(pin_dir.join("maps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// A daemon whose maps are in an earlier layout attaches the tap; under
/// traffic, a daemon of this layout adopts it: new map versions beside the
/// old, policy rewritten, conntrack tables and counters carried, programs
/// swapped, then the old versions retired and the new ones under the
/// plain names.
fn new_map_layout_under_traffic(mode: AttachMode, how: Attachment) {
    let ns = if how == Attachment::Tcx {
        "mapv"
    } else {
        "mapvnl"
    };
    on_tap(ns, move |pin_dir, name, mut tap| {
        let run = tempfile::tempdir().unwrap();
        let dp = Datapath::open_sized(&pin_dir, mode, hookd_bpf::HOOKD_OBJ, &EARLIER).unwrap();
        let ifindex = hookd::datapath::netdev::ifindex(TAP).unwrap();
        let mut a = Daemon::new(Box::new(dp), StateDir::open(run.path()).unwrap(), true);
        start(&mut a);
        let plain = map_pins(&pin_dir);
        assert_eq!(plain.len(), 23, "every map of the object pinned: {plain:?}");

        let stop = Arc::new(AtomicBool::new(false));
        let upgrader = {
            let (stop, pin_dir, name) = (stop.clone(), pin_dir.clone(), name.clone());
            let (run, plain) = (run.path().to_owned(), plain.clone());
            std::thread::spawn(move || {
                let _stop = StopOnDrop(stop);
                let _in_ns = Netns::enter(&name);
                std::thread::sleep(Duration::from_millis(300));
                drop(a);
                let dp = Datapath::open(&pin_dir, mode).unwrap();
                // Beside the old: the fourteen policy maps, the counters and
                // the conntrack map; log rate and events were compatible.
                let during = map_pins(&pin_dir);
                let versions: BTreeSet<String> = during.difference(&plain).cloned().collect();
                let want: BTreeSet<String> = [
                    "hookd_addrs-v2",
                    "hookd_ct-v2",
                    "hookd_dhcp-v2",
                    "hookd_fw_classes-v2",
                    "hookd_fw_rules-v2",
                    "hookd_net_addrs-v2",
                    "hookd_net_members-v2",
                    "hookd_nic_cfgs-v2",
                    "hookd_nic_far-v2",
                    "hookd_nic_index-v2",
                    "hookd_nic_nets-v2",
                    "hookd_nics-v2",
                    "hookd_ra-v2",
                    "hookd_routes-v2",
                    "hookd_stats-v2",
                    "hookd_uplinks-v2",
                ]
                .map(String::from)
                .into();
                assert_eq!(versions, want);
                let b = Daemon::new(Box::new(dp), StateDir::open(&run).unwrap(), true);
                assert_eq!(b.records().len(), 1, "B adopted the domain");
                std::thread::sleep(Duration::from_millis(300));
                b
            })
        };
        let tally = traffic(&mut tap, &stop);
        let b = upgrader.join().expect("upgrade thread");
        println!(
            "{how:?}: new map layout: {} echo requests, {} replies; {} UDP sent, {} received; \
             {} forged replies and {} denied frames got through",
            tally.echo_sent,
            tally.echo_replies.len(),
            tally.udp_sent,
            tally.udp_received.len(),
            tally.spoofed_replies,
            tally.denied_received,
        );
        tally.assert_clean();
        // Old versions retired, the new ones under the plain names, in
        // this build's layout.
        assert_eq!(map_pins(&pin_dir), plain, "only plain names are left");
        let stats = aya::maps::MapInfo::from_pin(pin_dir.join("maps/hookd_stats")).unwrap();
        assert_eq!(stats.max_entries(), hookd_bpf::layout::MAX_NICS);
        let c = Datapath::open(&pin_dir, mode).unwrap();
        assert!(c.old_map_versions().is_empty());
        // The counters of both versions, added up: every frame counted
        // once, but for the increments new programs make while hookd
        // writes the sum into their entry (a read and an update, for each
        // NIC): at 3 frames per 0.3 ms, at most one of each kind.
        tally.assert_counted(&c, ifindex, 2);
        assert!(c.ct_count(ifindex) >= 1, "tracked connections carried");
        drop(b);
        drop(c);
        drop(tap);
    });
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn tcx_new_map_layout_is_carried_under_traffic() {
    new_map_layout_under_traffic(AttachMode::Tcx, Attachment::Tcx);
}

#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn netlink_new_map_layout_is_carried_under_traffic() {
    new_map_layout_under_traffic(AttachMode::Netlink, Attachment::Netlink);
}

/// Hex bytes for bpftool.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `nic_config` as a build before slots wrote it: MAC 52:54:00:00:00:0a,
/// flags 0, firewall mode `fw` both ways, half and kinds 0, the 4 bytes
/// where slots are now (`pad`), and `generation`.
fn earlier_config(fw: u8, pad: [u8; 4], generation: u64) -> Vec<u8> {
    let mut c = vec![0x52, 0x54, 0, 0, 0, 0x0a, 0, 0, fw, fw, 0, 0];
    c.extend(pad);
    c.extend(generation.to_ne_bytes());
    c
}

/// Pins `hookd_nics` under `maps`, made with bpftool, holding `configs`.
fn earlier_nics(maps: &Path, configs: &[(u32, Vec<u8>)]) {
    let nics = maps.join(hookd_bpf::MAP_NICS);
    sh(&format!(
        "bpftool map create {} type hash key 4 value {} entries {} name hookd_nics",
        nics.display(),
        std::mem::size_of::<hookd_bpf::layout::NicConfig>(),
        hookd_bpf::layout::MAX_NICS,
    ));
    for (ifindex, config) in configs {
        sh(&format!(
            "bpftool map update pinned {} key hex {} value hex {}",
            nics.display(),
            hex(&ifindex.to_ne_bytes()),
            hex(config)
        ));
    }
}

/// Pins under `pin_dir` a `hookd_ct` as a build before slots left it: a
/// hash of maps by ifindex, holding for IFINDEX an LRU table of `entries`
/// with map flags `flags` and three connections; and that NIC's config
/// in `hookd_nics`, with no slot. Returns the table's map id.
fn earlier_ct_by_ifindex(pin_dir: &Path, flags: u32, entries: u32) -> u32 {
    use hookd_bpf::layout::{CtEntry, CtKey};
    let maps = pin_dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let (table, outer) = (maps.join("old_table"), maps.join(hookd_bpf::MAP_CT));
    sh(&format!(
        "bpftool map create {} type lru_hash key {} value {} entries {entries} flags {flags} name old_ct_nic",
        table.display(),
        std::mem::size_of::<CtKey>(),
        std::mem::size_of::<CtEntry>(),
    ));
    sh(&format!(
        "bpftool map create {} type hash_of_maps inner_map pinned {} key 4 value 4 entries {} name hookd_ct",
        outer.display(),
        table.display(),
        hookd_bpf::layout::MAX_NICS,
    ));
    for port in [1000u16, 1001, 1002] {
        let mut key = vec![0u8; std::mem::size_of::<CtKey>()];
        key[..4].copy_from_slice(&IFINDEX.to_ne_bytes());
        key[4] = 17;
        let n = key.len();
        key[n - 4..n - 2].copy_from_slice(&port.to_ne_bytes());
        let mut value = vec![0u8; std::mem::size_of::<CtEntry>()];
        value[8] = 2;
        sh(&format!(
            "bpftool map update pinned {} key hex {} value hex {}",
            table.display(),
            hex(&key),
            hex(&value)
        ));
    }
    sh(&format!(
        "bpftool map update pinned {} key hex {} value pinned {}",
        outer.display(),
        hex(&IFINDEX.to_ne_bytes()),
        table.display()
    ));
    let id = aya::maps::MapInfo::from_pin(&table).unwrap().id();
    std::fs::remove_file(&table).unwrap();
    // The NIC's config, as that build left it (no slot: a build before
    // slots keyed the tables by ifindex), its firewall on both ways.
    earlier_nics(&maps, &[(IFINDEX, earlier_config(1, [0; 4], 1))]);
    id
}

/// The NIC of [`earlier_ct_by_ifindex`].
const IFINDEX: u32 = 77;

/// An earlier `hookd_ct` (a hash of maps by ifindex, as builds before
/// slots had) whose tables the kernel will not take into this build's map
/// of maps (another LRU flavour, `BPF_F_NO_COMMON_LRU`, and another size),
/// made with bpftool as an earlier build would have left it: its tracked
/// connections are copied into new tables at the NIC's slot, the old map
/// retired, and the new one takes the plain name.
#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn conntrack_tables_of_another_kind_are_copied() {
    let fs = Bpffs::new();
    let pin_dir = fs.pin_dir();
    let maps = pin_dir.join("maps");
    let outer = maps.join(hookd_bpf::MAP_CT);
    earlier_ct_by_ifindex(&pin_dir, 2, 512);
    let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    let slot = dp.nic_config(IFINDEX).unwrap().slot;
    assert_ne!(slot, 0, "the NIC got a slot for its table");
    assert!(
        maps.join("hookd_ct-v2").exists(),
        "{:?}",
        map_pins(&pin_dir)
    );
    assert_eq!(dp.ct_count(IFINDEX), 3, "entries copied before any swap");
    assert_eq!(dp.old_map_versions(), vec![outer.clone()]);
    // No program reads the old map: it goes, and ours takes its name.
    assert_eq!(dp.retire_old_maps(), 1);
    assert!(dp.old_map_versions().is_empty());
    assert!(!maps.join("hookd_ct-v2").exists());
    let info = aya::maps::MapInfo::from_pin(&outer).unwrap();
    let ours = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    assert!(
        ours.old_map_versions().is_empty(),
        "the plain pin is ours now"
    );
    assert_eq!(ours.ct_count(IFINDEX), 3);
    assert_eq!(info.max_entries(), hookd_bpf::layout::MAX_NICS + 1);
    // A table of this build's kind holds them, not the old one, at the
    // slot of the NIC's config.
    let outer = aya::maps::MapData::from_pin(&outer).unwrap();
    let outer = aya::maps::ArrayOfMaps::<_>::try_from(aya::maps::Map::ArrayOfMaps(outer)).unwrap();
    let t = outer.get(&slot, 0).unwrap().info().unwrap();
    assert_eq!(
        (t.map_flags(), t.max_entries()),
        (0, hookd_bpf::layout::CT_PER_NIC)
    );
}

/// The same earlier `hookd_ct` holding a table of this build's kind (as
/// the last build before slots made them): the table itself moves to the
/// NIC's slot, so programs of both builds share its connections while the
/// taps swap.
#[test]
#[ignore = "privileged: run by scripts/test-all.sh"]
fn conntrack_tables_by_ifindex_are_shared_at_the_nics_slot() {
    let fs = Bpffs::new();
    let pin_dir = fs.pin_dir();
    let id = earlier_ct_by_ifindex(&pin_dir, 0, hookd_bpf::layout::CT_PER_NIC);
    let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    let slot = dp.nic_config(IFINDEX).unwrap().slot;
    assert_ne!(slot, 0);
    assert_eq!(dp.ct_count(IFINDEX), 3);
    let outer = aya::maps::MapData::from_pin(pin_dir.join("maps/hookd_ct-v2")).unwrap();
    let outer = aya::maps::ArrayOfMaps::<_>::try_from(aya::maps::Map::ArrayOfMaps(outer)).unwrap();
    let table = outer.get(&slot, 0).unwrap().info().unwrap();
    assert_eq!(table.id(), id, "the earlier table itself, shared");
    assert_eq!(dp.retire_old_maps(), 1);
    assert_eq!(dp.ct_count(IFINDEX), 3, "nothing copied twice or lost");
    // The NIC goes: its table with it, and the slot holds none.
    dp.forget_nic(IFINDEX);
    assert!(outer.get(&slot, 0).is_err(), "the table went with its NIC");
}

/// An earlier `hookd_stats` in the layout of 16 drop reasons (this build
/// has 32), made with bpftool as hookd 0.1 left it: its counters are
/// converted into this build's layout and added, the old map retired.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn counters_of_the_earlier_layout_are_converted() {
    let fs = Bpffs::new();
    let pin_dir = fs.pin_dir();
    let maps = pin_dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let old = maps.join(hookd_bpf::MAP_STATS);
    sh(&format!(
        "bpftool map create {} type percpu_hash key 4 value {} entries {} name hookd_stats",
        old.display(),
        (4 + 16) * 8,
        hookd_bpf::layout::MAX_NICS,
    ));
    // to_vm_packets 3, from_vm_bytes 9, drops[15] (not_forwarded) 5, on
    // every CPU.
    let mut value = vec![0u8; (4 + 16) * 8];
    value[0] = 3;
    value[24] = 9;
    value[(4 + 15) * 8] = 5;
    sh(&format!(
        "bpftool map update pinned {} key hex {} value hex {}",
        old.display(),
        hex(&7u32.to_ne_bytes()),
        hex(&value)
    ));
    let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    assert!(maps.join("hookd_stats-v2").exists());
    assert_eq!(dp.retire_old_maps(), 1);
    assert!(
        !maps.join("hookd_stats-v2").exists(),
        "renamed to the plain name"
    );
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let s = dp.stats(7).unwrap();
    assert_eq!(
        (s.to_vm_packets, s.from_vm_bytes, s.drops[15]),
        (3 * cpus, 9 * cpus, 5 * cpus),
        "{s:?}"
    );
    assert!(s.drops[16..].iter().all(|d| *d == 0), "{s:?}");
    let info = aya::maps::MapInfo::from_pin(&old).unwrap();
    assert_eq!(
        info.value_size() as usize,
        std::mem::size_of::<hookd_bpf::layout::NicStats>()
    );
}

/// NICs in a `hookd_nics` of a build before counter slots, whose configs
/// have padding where this build keeps the slot: each gets a slot of its
/// own (the padding is not taken for one), the rest of its config kept,
/// and its earlier counts, kept by ifindex, are still its counts; the
/// programs then count at the slot, and a restart keeps slots and counts.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn nics_of_a_build_before_counter_slots_get_slots_and_keep_their_counts() {
    use aya::programs::{TestRun, TestRunOptions};
    // The loopback: BPF_PROG_TEST_RUN needs a device of that ifindex.
    const LO: u32 = 1;
    const OTHER: u32 = 4000;
    let fs = Bpffs::new();
    let pin_dir = fs.pin_dir();
    let maps = pin_dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let stats_value = std::mem::size_of::<hookd_bpf::layout::NicStats>();
    sh(&format!(
        "bpftool map create {} type percpu_hash key 4 value {stats_value} entries {} name hookd_stats",
        maps.join(hookd_bpf::MAP_STATS).display(),
        hookd_bpf::layout::MAX_NICS,
    ));
    let mut counts = vec![0u8; stats_value];
    counts[0] = 3; // to_vm_packets, on every CPU
    sh(&format!(
        "bpftool map update pinned {} key hex {} value hex {}",
        maps.join(hookd_bpf::MAP_STATS).display(),
        hex(&LO.to_ne_bytes()),
        hex(&counts)
    ));
    // Counted only; padding (bytes 12 to 15) as an earlier build left it.
    earlier_nics(
        &maps,
        &[
            (LO, earlier_config(0, [0xff; 4], 9)),
            (OTHER, earlier_config(0, 7u32.to_ne_bytes(), 9)),
        ],
    );
    let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    let slot = |dp: &Datapath, i: u32| dp.nic_config(i).unwrap().slot;
    let mut slots = [slot(&dp, LO), slot(&dp, OTHER)];
    slots.sort_unstable();
    assert_eq!(slots, [1, 2], "slots of their own, not the padding");
    let cfg = dp.nic_config(LO).unwrap();
    assert_eq!((cfg.mac[5], cfg.flags, cfg.generation), (0x0a, 0, 9));
    assert_eq!(
        dp.retire_old_maps(),
        1,
        "hookd_stats, now allocated per entry"
    );
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    assert_eq!(dp.stats(LO).unwrap().to_vm_packets, 3 * cpus);
    assert_eq!(dp.stats(OTHER).unwrap().to_vm_packets, 0);

    let frame = eth(
        mac("52:54:00:00:00:0a"),
        mac("02:00:00:00:00:01"),
        0x0800,
        &ipv4(
            v4("198.51.100.1"),
            v4("192.0.2.10"),
            6,
            &tcp(1024, 22, 0x10),
        ),
    );
    let ctx = support::vm::skb_ctx(LO);
    let to_vm = dp.program(hookd_bpf::PROG_TO_VM).unwrap();
    for _ in 0..5 {
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        to_vm.test_run(opts).expect("BPF_PROG_TEST_RUN");
    }
    let s = dp.stats(LO).unwrap();
    assert_eq!(s.to_vm_packets, 3 * cpus + 5, "counted at the slot: {s:?}");
    assert_eq!(s.to_vm_bytes, 5 * frame.len() as u64);
    assert_eq!(
        dp.stats(OTHER).unwrap().to_vm_packets,
        0,
        "not another NIC's"
    );

    let lo_slot = slot(&dp, LO);
    drop(dp);
    let dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
    assert_eq!(slot(&dp, LO), lo_slot, "a restart keeps the slot");
    assert_eq!(dp.stats(LO).unwrap().to_vm_packets, 3 * cpus + 5);
}
