//! Tier 2: the real kernel. hookd's programs attached to real taps (tcx
//! and clsact) in a private network namespace, where the test plays the VM
//! through the tap's file descriptor; the daemon's lifecycle on them.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-privileged.sh (`--ignored`), where they fail, never
//! skip, if they cannot run.

use aya::maps::MapData;
use hookd::config::AttachMode;
use hookd::core::records::StateDir;
use hookd::core::{Daemon, DataPlane};
use hookd::datapath::{Attachment, Datapath};
use hookd_bpf::layout::{self, DropReason, NicConfig};
use hookd_model::hook::HookArgs;
use hookd_testkit::vm::*;
use hookd_testkit::xml::{self, DomainXml};
use hookd_testkit::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs `body` on a thread of its own inside a fresh network namespace
/// (tagged `tag`) and bpffs, with the tap `tap` created and its host side
/// up: the test plays the VM through the tap. Panics propagate.
fn on_vm_tap(tag: &str, tap: &'static str, body: impl FnOnce(Tap, PathBuf) + Send + 'static) {
    let fs = Bpffs::new();
    let ns = Netns::new(tag);
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    let outcome = std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let t = Tap::create(tap);
        host_side(tap, HOST_MAC, VM_MAC);
        body(t, pin_dir);
    })
    .join();
    drop(ns);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A daemon over the pinned objects in `pin_dir`, its records in `run`.
fn daemon(pin_dir: &Path, run: &Path, mode: AttachMode) -> Daemon {
    let dp = Datapath::open(pin_dir, mode).unwrap();
    Daemon::new(Box::new(dp), StateDir::open(run).unwrap(), true)
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
    let tag = if expect == Attachment::Tcx {
        "tcx"
    } else {
        "nl"
    };
    on_vm_tap(tag, "hk0", move |mut tap, pin_dir| {
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
        let program_ids = |dp: &Datapath| {
            [hookd_bpf::PROG_FROM_VM, hookd_bpf::PROG_TO_VM]
                .map(|n| dp.program(n).unwrap().info().unwrap().id())
        };
        let ids = program_ids(&dp);
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
        // The same build: it uses the programs the taps run, and holds no
        // second copy of them.
        assert_eq!(program_ids(&dp), ids, "the pinned programs kept");

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
            network: None,
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
    });
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn tap_frames_are_judged_with_tcx_and_survive_a_daemon_restart() {
    tap_enforcement(AttachMode::Auto, Attachment::Tcx);
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn netlink_clsact_fallback_enforces_the_same() {
    tap_enforcement(AttachMode::Netlink, Attachment::Netlink);
}

fn domain_xml(tap: &str, with_policy: bool, with_target: bool) -> String {
    let policy = if with_policy {
        xml::policy("<hookd:interface><hookd:address prefix='192.0.2.10/32'/></hookd:interface>")
    } else {
        String::new()
    };
    DomainXml::new("vm1", "00000000-0000-4000-8000-0000000000b1")
        .metadata(&policy)
        .nic("ethernet", VM_MAC, with_target.then_some(tap))
        .to_string()
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
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn daemon_lifecycle_is_idempotent_and_cleans_up() {
    on_vm_tap("daemon", "vnet7", |mut tap, pin_dir| {
        let run = tempfile::tempdir().unwrap();
        let open = || daemon(&pin_dir, run.path(), AttachMode::Auto);
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

        // As an older hookd could have left them: the NIC's config in a
        // layout these programs do not read as policy (here: no flags, no
        // kinds). The spoofed source now passes...
        let ifindex = hookd::datapath::netdev::ifindex("vnet7").unwrap();
        let pinned = MapData::from_pin(pin_dir.join("maps").join(hookd_bpf::MAP_NICS)).unwrap();
        let mut nics: aya::maps::HashMap<MapData, u32, NicConfig> =
            aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(pinned).unwrap()).unwrap();
        let mut cfg = nics.get(&ifindex, 0).unwrap();
        let written = cfg;
        (cfg.flags, cfg.fw_kinds) = (0, 0);
        nics.insert(ifindex, cfg, 0).unwrap();
        set_live_config(&pin_dir, ifindex, cfg);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 20), 1);
        // ...and that hookd's programs are not known to be this build's
        // (an older build pinned its own): the next one migrates the maps.
        for name in [hookd_bpf::PROG_FROM_VM, hookd_bpf::PROG_TO_VM] {
            std::fs::remove_file(pin_dir.join("progs").join(name)).unwrap();
        }

        // Restart: the new daemon adopts the record and the pinned links,
        // and rewrites the maps from the recorded XML before it swaps its
        // programs in: the spoofed source is dropped again.
        drop(d);
        let mut d = open();
        assert_eq!(d.records().len(), 1, "adopted");
        let migrated = nics.get(&ifindex, 0).unwrap();
        assert_eq!(
            (migrated.flags, migrated.fw_kinds, migrated.mac),
            (written.flags, written.fw_kinds, written.mac),
            "the config is rewritten as this hookd writes it"
        );
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
    });
}

fn tc_show(what: &str, tap: &str) -> String {
    let out = std::process::Command::new("tc")
        .args([what, "show", "dev", tap])
        .args(if what == "filter" {
            &["ingress"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Overwrites the copy of `ifindex`'s config that the programs read
/// (`hookd_nic_cfgs`, at the entry `hookd_nic_index` names).
fn set_live_config(pin_dir: &Path, ifindex: u32, cfg: NicConfig) {
    let open = |name: &str| {
        aya::maps::Map::from_map_data(MapData::from_pin(pin_dir.join("maps").join(name)).unwrap())
            .unwrap()
    };
    let index: aya::maps::Array<MapData, u32> =
        aya::maps::Array::try_from(open(hookd_bpf::MAP_NIC_INDEX)).unwrap();
    let entry = index.get(&ifindex, 0).unwrap();
    assert_ne!(entry, 0, "ifindex {ifindex} has a live config");
    let mut cfgs: aya::maps::Array<MapData, NicConfig> =
        aya::maps::Array::try_from(open(hookd_bpf::MAP_NIC_CFGS)).unwrap();
    cfgs.set(entry - 1, cfg, 0).unwrap();
}

/// The pinned `hookd_nics` map: hookd's record of the NICs' configs.
fn pinned_nics(pin_dir: &Path) -> aya::maps::HashMap<MapData, u32, NicConfig> {
    let m = MapData::from_pin(pin_dir.join("maps").join(hookd_bpf::MAP_NICS)).unwrap();
    aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(m).unwrap()).unwrap()
}

/// After a move to tcx: none of hookd's filters is left on `tap`, nor the
/// clsact qdisc that held them (left there, it would keep libvirt from
/// adding an ingress qdisc for an outbound bandwidth limit).
fn assert_off_the_qdisc(tap: &str) {
    assert!(
        !tc_show("filter", tap).contains("hookd"),
        "a filter left on {tap}"
    );
    assert!(
        !tc_show("qdisc", tap).contains("clsact"),
        "the qdisc left on {tap}"
    );
}

/// `attach = "staged"`: the NIC is judged from `start` on by a clsact
/// qdisc, then moves to tcx links under traffic. Every frame the "VM"
/// sends during the move is judged exactly once (no spoofed frame passes,
/// no passed frame is counted twice), and every frame to it too, though
/// the delete of the emptied qdisc may drop one of those on its way.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn staged_attach_moves_to_tcx_judging_every_frame_once() {
    on_vm_tap("staged", "vnet8", |mut tap, pin_dir| {
        // As libvirt leaves a tap: a `noqueue` root qdisc (which gets a
        // handle of the kernel's choosing), holding nothing.
        sh("tc qdisc add dev vnet8 root handle 0: noqueue");
        let run = tempfile::tempdir().unwrap();
        let mut d = daemon(&pin_dir, run.path(), AttachMode::Staged);
        let xml = domain_xml("vnet8", true, true);
        hook(&mut d, "start", &xml).unwrap();
        let nic = d.records()[0].nics[0].clone();
        assert_eq!(
            nic.attach,
            Some(Attachment::Netlink),
            "on the qdisc at start"
        );
        assert!(tc_show("filter", "vnet8").contains("hookd_from_vm"));
        assert_eq!(d.promotions_waiting(), 1);
        // Judged from the first frame.
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 1), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 2), 1);
        // Not yet settled: nothing moves.
        assert_eq!(
            d.promote_next(Duration::from_secs(3600)),
            hookd::core::Promotion::Waiting(1)
        );

        let view = d.view();
        let before = view.stats(nic.ifindex).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut legit, mut spoofed, mut read) = (0u64, 0u64, 0u64);
                let mut seq = 100u16;
                // At least 200 of each, and on until the move is done.
                while legit < 200 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seq = seq.wrapping_add(1);
                    for (src, n) in [("192.0.2.10", &mut legit), ("192.0.2.99", &mut spoofed)] {
                        let f = eth(
                            mac(HOST_MAC),
                            mac(VM_MAC),
                            0x0800,
                            &ipv4(v4(src), v4("192.0.2.1"), 1, &icmp_echo(seq)),
                        );
                        tap.send(&f);
                        *n += 1;
                    }
                    read += tap.drain().len() as u64;
                    std::thread::sleep(Duration::from_micros(200));
                }
                read += tap.recv_for(Duration::from_millis(300)).len() as u64;
                (tap, legit, spoofed, read)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let moved = d.promote_next(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut tap, legit, spoofed, read) = sender.join().unwrap();
        assert!(
            matches!(&moved, hookd::core::Promotion::Moved { left: 0, .. }),
            "{moved:?}"
        );
        let after = view.stats(nic.ifindex).unwrap();
        let spoof_drops =
            after.drops[DropReason::IpSpoof as usize] - before.drops[DropReason::IpSpoof as usize];
        assert_eq!(spoof_drops, spoofed, "every spoofed frame dropped, once");
        assert_eq!(
            after.from_vm_packets - before.from_vm_packets,
            legit,
            "every legitimate frame passed and counted once"
        );
        // Frames to the VM: each counted once; deleting the emptied qdisc
        // may drop one on its way to the guest (counted, not read).
        let to_vm = after.to_vm_packets - before.to_vm_packets;
        assert!(
            to_vm >= read && to_vm - read <= 2,
            "{to_vm} frames to the VM counted, {read} arrived"
        );
        assert!(
            to_vm >= legit,
            "the host answered: {to_vm} frames counted to the VM for {legit} pings ({read} arrived)"
        );

        // On tcx now: pinned links, no filter or qdisc left, the flag off.
        let rec = d.records()[0].clone();
        assert_eq!(rec.nics[0].attach, Some(Attachment::Tcx));
        assert_eq!(d.promotions_waiting(), 0);
        assert_eq!(d.promote_next(Duration::ZERO), hookd::core::Promotion::Idle);
        assert!(
            pin_dir
                .join("links")
                .join(&rec.uuid)
                .read_dir()
                .unwrap()
                .count()
                == 2
        );
        assert_off_the_qdisc("vnet8");
        sh("tc qdisc add dev vnet8 handle ffff: ingress && tc qdisc del dev vnet8 ingress");
        let cfg = pinned_nics(&pin_dir).get(&nic.ifindex, 0).unwrap();
        assert_eq!(cfg.flags & hookd_bpf::layout::NIC_F_PASS_FINAL, 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 7), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 8), 1);
        // The record says tcx: a restarted daemon adopts it as such.
        drop(d);
        let mut d = daemon(&pin_dir, run.path(), AttachMode::Staged);
        assert_eq!(d.records()[0].nics[0].attach, Some(Attachment::Tcx));
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 9), 0);

        // Taps with qdiscs of their own get tcx at once: beside libvirt's
        // ingress qdisc (a `<bandwidth>` outbound limit) no clsact can go,
        // and deleting hookd's after the move would drop what a configured
        // root qdisc (an inbound limit, `htb 1:`) holds queued.
        let _tap2 = Tap::create("vnet9");
        let _tap4 = Tap::create("vnet11");
        for (n, tap, qdisc) in [
            (2, "vnet9", "ingress"),
            (4, "vnet11", "root handle 1: htb default 1"),
        ] {
            sh(&format!(
                "ip link set {tap} up && tc qdisc add dev {tap} {qdisc}"
            ));
            let xml = DomainXml::new(
                &format!("vm{n}"),
                &format!("00000000-0000-4000-8000-0000000000b{n}"),
            )
            .metadata(&xml::policy(&format!(
                "<hookd:interface><hookd:address prefix='192.0.2.{n}0/32'/></hookd:interface>"
            )))
            .nic("ethernet", &format!("52:54:00:00:00:0{n}"), Some(tap))
            .to_string();
            hook(&mut d, "start", &xml).unwrap();
            let r = d.find(&format!("vm{n}")).unwrap();
            assert_eq!(r.nics[0].attach, Some(Attachment::Tcx), "{qdisc}");
            assert_eq!(d.promotions_waiting(), 0);
            assert!(!tc_show("qdisc", tap).contains("clsact"));
            hook(&mut d, "stopped", &xml).unwrap();
        }

        // Security groups: the NIC's conntrack table goes in with the
        // queue's next batch, and `started` waits for it.
        let _tap3 = Tap::create("vnet10");
        sh("ip link set vnet10 up");
        let xml3 = DomainXml::new("vm3", "00000000-0000-4000-8000-0000000000b3")
            .metadata(&xml::policy(
                "<hookd:interface><hookd:address prefix='192.0.2.30/32'/>\
                 <hookd:egress default='deny'><hookd:rule action='allow' protocol='icmp'/></hookd:egress>\
                 </hookd:interface>",
            ))
            .nic("ethernet", "52:54:00:00:00:0c", Some("vnet10"))
            .to_string();
        let if3 = hookd::datapath::netdev::ifindex("vnet10").unwrap();
        let maps = pin_dir.join("maps");
        let ct = || {
            let m = MapData::from_pin(maps.join(hookd_bpf::MAP_CT)).unwrap();
            aya::maps::ArrayOfMaps::<MapData>::try_from(aya::maps::Map::from_map_data(m).unwrap())
                .unwrap()
        };
        let configs = || {
            let m = MapData::from_pin(maps.join(hookd_bpf::MAP_NICS)).unwrap();
            let m = aya::maps::HashMap::<_, u32, NicConfig>::try_from(
                aya::maps::Map::from_map_data(m).unwrap(),
            )
            .unwrap();
            m.iter().map(Result::unwrap).collect::<Vec<_>>()
        };
        // Where the programs look for the NIC's table: its config's slot.
        let slot = || {
            configs()
                .into_iter()
                .find(|(i, _)| *i == if3)
                .map(|(_, c)| c.slot)
                .expect("vm3's NIC has a config")
        };
        hook(&mut d, "start", &xml3).unwrap();
        hook(&mut d, "started", &xml3).unwrap();
        assert!(ct().get(&slot(), 0).is_ok(), "started found the table in");
        // A table that did not go in (a failed batch; here removed behind
        // hookd's back): `started` finds the NIC incomplete and writes it
        // again, instead of finding nothing to do.
        sh(&format!(
            "bpftool map delete pinned {} key {}",
            maps.join(hookd_bpf::MAP_CT).display(),
            slot().to_ne_bytes().map(|b| b.to_string()).join(" ")
        ));
        assert!(ct().get(&slot(), 0).is_err());
        hook(&mut d, "started", &xml3).unwrap();
        assert!(
            ct().get(&slot(), 0).is_ok(),
            "started gave the NIC its table back"
        );
        // Stopped right after start, before its table may have gone in:
        // no table is left behind (the next NIC at its slot would inherit
        // the connections): tables are only at the slots of NICs with
        // security groups.
        for _ in 0..20 {
            hook(&mut d, "stopped", &xml3).unwrap();
            hook(&mut d, "start", &xml3).unwrap();
        }
        hook(&mut d, "stopped", &xml3).unwrap();
        d.settle();
        let tables = ct();
        let with_tables: Vec<u32> = (1..=hookd_bpf::layout::MAX_NICS)
            .filter(|s| tables.get(s, 0).is_ok())
            .collect();
        let mut with_fw: Vec<u32> = configs()
            .into_iter()
            .filter(|(_, c)| c.fw_ingress != layout::FW_OFF || c.fw_egress != layout::FW_OFF)
            .map(|(_, c)| c.slot)
            .collect();
        with_fw.sort_unstable();
        assert_eq!(with_tables, with_fw, "a table left behind its NIC");
        hook(&mut d, "stopped", &xml).unwrap();
        assert!(d.records().is_empty());
        assert!(pin_dir.join("links").read_dir().unwrap().next().is_none());
    });
}

/// A daemon that stopped in the middle of a move to tcx (links pinned, the
/// filters still on the qdisc, `NIC_F_PASS_FINAL` set, the record saying
/// netlink) is followed by one in another `attach` mode: it finishes the
/// move at adoption, so each frame is judged and counted once and the
/// record says tcx.
/// A move that an earlier try left with its links pinned (its flag could
/// not be cleared, say) is finished by the next try without a second
/// attach: the pinned links, which judge the frames, stay as they are.
/// A tcx attach over pinned links of another program puts hookd's in
/// before it drops those.
#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_retried_move_keeps_the_links_an_earlier_try_pinned() {
    use std::os::unix::fs::MetadataExt;
    on_vm_tap("retrymove", "vnet8", |mut tap, pin_dir| {
        let run = tempfile::tempdir().unwrap();
        let xml = domain_xml("vnet8", true, true);
        let mut d = daemon(&pin_dir, run.path(), AttachMode::Staged);
        hook(&mut d, "start", &xml).unwrap();
        let rec = d.records()[0].clone();
        assert_eq!(rec.nics[0].attach, Some(Attachment::Netlink));
        // The earlier try: links in and pinned, flag set, filters there.
        {
            let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
            dp.attach(&rec.uuid, "vnet8", None).unwrap();
        }
        let nics = || pinned_nics(&pin_dir);
        let ifindex = rec.nics[0].ifindex;
        let mut cfg = nics().get(&ifindex, 0).unwrap();
        cfg.flags |= hookd_bpf::layout::NIC_F_PASS_FINAL;
        nics().insert(ifindex, cfg, 0).unwrap();
        let links = pin_dir.join("links").join(&rec.uuid);
        let inodes = || {
            let mut v: Vec<(String, u64)> = links
                .read_dir()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().ino(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let before = inodes();
        assert_eq!(before.len(), 2, "{before:?}");

        let moved = d.promote_next(Duration::ZERO);
        assert!(
            matches!(&moved, hookd::core::Promotion::Moved { left: 0, .. }),
            "{moved:?}"
        );
        assert_eq!(inodes(), before, "the same two links, not replaced");
        assert_eq!(d.records()[0].nics[0].attach, Some(Attachment::Tcx));
        assert_off_the_qdisc("vnet8");
        assert_eq!(
            nics().get(&ifindex, 0).unwrap().flags & hookd_bpf::layout::NIC_F_PASS_FINAL,
            0,
            "the flag is off"
        );
        // Still judged: the spoofed ping dropped, the other answered.
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 1), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 2), 1);
        // A tcx attach of the same programs over their pinned links keeps
        // them (the kernel attaches a program once per hook).
        let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
        dp.attach(&rec.uuid, "vnet8", None).unwrap();
        assert_eq!(inodes(), before, "the links kept");
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 3), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 4), 1);

        // Links of another program pinned there (an empty one, which
        // passes everything and ends the hook): the attach puts hookd's in
        // first, then drops those with their pins.
        dp.detach(&rec.uuid, "vnet8", Some(Attachment::Tcx))
            .unwrap();
        let mut empty = aya::Ebpf::load(hookd_bpf::EMPTY_OBJ).unwrap();
        let (_, prog) = empty.programs_mut().next().unwrap();
        let aya::programs::Program::SchedClassifier(prog) = prog else {
            panic!("not a classifier")
        };
        prog.load().unwrap();
        for (file, kind) in [
            ("vnet8-from_vm", aya::programs::tc::TcAttachType::Ingress),
            ("vnet8-to_vm", aya::programs::tc::TcAttachType::Egress),
        ] {
            let id = prog.attach("vnet8", kind).unwrap();
            let link: aya::programs::links::FdLink =
                prog.take_link(id).unwrap().try_into().unwrap();
            link.pin(links.join(file)).unwrap();
        }
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 5),
            1,
            "the empty links pass it"
        );
        dp.attach(&rec.uuid, "vnet8", None).unwrap();
        drop(dp);
        assert_eq!(inodes().len(), 2);
        assert_eq!(
            ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 6),
            0,
            "judged by hookd's links alone"
        );
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 7), 1);
        hook(&mut d, "stopped", &xml).unwrap();
        assert!(d.records().is_empty());
    });
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_move_to_tcx_left_half_done_is_finished_by_the_next_daemon() {
    on_vm_tap("halfmove", "vnet8", |mut tap, pin_dir| {
        let run = tempfile::tempdir().unwrap();
        let xml = domain_xml("vnet8", true, true);
        let (uuid, ifindex) = {
            let mut d = daemon(&pin_dir, run.path(), AttachMode::Staged);
            hook(&mut d, "start", &xml).unwrap();
            let rec = d.records()[0].clone();
            assert_eq!(rec.nics[0].attach, Some(Attachment::Netlink));
            (rec.uuid.clone(), rec.nics[0].ifindex)
        };
        // What the move had done when the daemon stopped: links in, flag
        // set, filters not yet removed, nothing recorded.
        {
            let mut dp = Datapath::open(&pin_dir, AttachMode::Tcx).unwrap();
            dp.attach(&uuid, "vnet8", None).unwrap();
        }
        let nics = || pinned_nics(&pin_dir);
        let mut cfg = nics().get(&ifindex, 0).unwrap();
        cfg.flags |= hookd_bpf::layout::NIC_F_PASS_FINAL;
        nics().insert(ifindex, cfg, 0).unwrap();
        assert!(tc_show("filter", "vnet8").contains("hookd_from_vm"));

        let d = daemon(&pin_dir, run.path(), AttachMode::Tcx);
        assert_eq!(d.records()[0].nics[0].attach, Some(Attachment::Tcx));
        assert_off_the_qdisc("vnet8");
        let flags = nics().get(&ifindex, 0).unwrap().flags;
        assert_eq!(
            flags & hookd_bpf::layout::NIC_F_PASS_FINAL,
            0,
            "the flag is off"
        );
        let view = d.view();
        let before = view.stats(ifindex).unwrap();
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.99", 1), 0);
        assert_eq!(ping_from_vm(&mut tap, VM_MAC, "192.0.2.10", 2), 1);
        let after = view.stats(ifindex).unwrap();
        assert_eq!(
            after.from_vm_packets - before.from_vm_packets,
            1,
            "counted once"
        );
        assert_eq!(
            after.drops[DropReason::IpSpoof as usize] - before.drops[DropReason::IpSpoof as usize],
            1,
            "dropped once"
        );
        // Saved: the next daemon reads tcx from the record.
        drop(d);
        let mut d = daemon(&pin_dir, run.path(), AttachMode::Netlink);
        assert_eq!(d.records()[0].nics[0].attach, Some(Attachment::Tcx));
        hook(&mut d, "stopped", &xml).unwrap();
        assert!(d.records().is_empty());
        assert!(pin_dir.join("links").read_dir().unwrap().next().is_none());
    });
}
