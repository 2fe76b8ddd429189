//! The firewall state a VM carries through a live migration.
//!
//! Tier 1 (fake data plane): what the daemon saves on the source and
//! accepts or refuses on the destination. Tier 2 (root, the real kernel,
//! `#[ignore]`d here and run by scripts/test-privileged.sh): whole
//! conntrack tables of 16,384, 100,000 and 1,000,000 entries carried
//! between two data paths, compared entry by entry, and a connection the
//! guest opened on the source answered through default-deny ingress on
//! the destination.

use hookd::config::AttachMode;
use hookd::config::StateErrors::{Proceed, Refuse};
use hookd::core::Daemon;
use hookd::core::migration::MigrationError;
use hookd::core::migration::log::{Outcome, Side};
use hookd::core::migration::snapshot::Snapshots;
use hookd::core::records::StateDir;
use hookd::datapath::{Datapath, ct_clock_ns};
use hookd_bpf::layout::{CtEntry, CtKey, DropReason};
use hookd_model::hook::HookArgs;
use hookd_model::mac::MacAddr;
use hookd_testkit::plane::{FAKE_CT_NOW, FAKE_CT_ROOM, FakeConntrack, FakePlane};
use hookd_testkit::private_bus::PrivateBus;
use hookd_testkit::vm::*;
use hookd_testkit::xml::{DomainXml, policy};
use hookd_testkit::*;
use std::collections::HashMap;
use std::time::Instant;

const UUID: &str = "00000000-0000-4000-8000-00000000c0de";
const MAC: &str = "52:54:00:00:00:0a";

fn domain_xml(mac: &str) -> String {
    DomainXml::new("vm1", UUID)
        .metadata(&policy(&format!(
            "<hookd:interface mac='{mac}'><hookd:address prefix='192.0.2.10/32'/>\
             <hookd:ingress default='deny'/></hookd:interface>"
        )))
        .nic("ethernet", mac, Some("tap-a"))
        .to_string()
}

/// A daemon on the fake plane with vm1 started (its NIC on ifindex 42).
fn started(mac: &str) -> (Daemon, FakeConntrack, tempfile::TempDir) {
    let run = tempfile::tempdir().unwrap();
    let plane = FakePlane::quiet();
    let ct = plane.conntrack();
    let mut d = Daemon::new(Box::new(plane), StateDir::open(run.path()).unwrap(), true);
    let args = HookArgs {
        domain: "vm1".into(),
        operation: "start".into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    d.hook_event(&args, &domain_xml(mac)).unwrap();
    (d, ct, run)
}

fn mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

/// `n` distinct IPv6 connections whose addresses, ports and ages look
/// random: they hardly compress (about 19 bytes each), as a table of
/// connections from all over would.
fn scattered(ifindex: u32, n: usize, now: u64) -> Vec<(CtKey, CtEntry)> {
    (0..n as u64)
        .map(|i| {
            // splitmix64
            let mut x = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            let mut remote = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            remote[4..12].copy_from_slice(&x.to_le_bytes());
            remote[12..].copy_from_slice(&(i as u32).to_be_bytes());
            let key = CtKey {
                ifindex,
                proto: 6,
                kind: 0,
                pad: [0; 2],
                vm_addr: [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ],
                remote_addr: remote,
                vm_port: (x >> 8) as u16,
                remote_port: (x >> 24) as u16,
            };
            let entry = CtEntry {
                last_seen: now.saturating_sub((x >> 40) % 300_000 * 1_000_000),
                state: 2,
                origin: (i % 2) as u8,
                ..CtEntry::default()
            };
            (key, entry)
        })
        .collect()
}

/// `n` distinct established TCP connections of NIC `ifindex`, the i-th
/// last seen i ms before `now`; every fourth one over IPv6.
fn synthetic(ifindex: u32, n: usize, now: u64) -> Vec<(CtKey, CtEntry)> {
    (0..n)
        .map(|i| {
            let v6 = i % 4 == 3;
            let remote = if v6 {
                let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                a[14] = (i >> 8) as u8;
                a[15] = i as u8;
                a
            } else {
                mapped([198, 51, 100, i as u8])
            };
            let vm = if v6 {
                let mut a = [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                a[13] = (i >> 16) as u8;
                a
            } else {
                mapped([192, 0, 2, 10])
            };
            let key = CtKey {
                ifindex,
                proto: 6,
                kind: 0,
                pad: [0; 2],
                vm_addr: vm,
                remote_addr: remote,
                vm_port: (40000 + (i >> 16) as u16).to_be(),
                remote_port: ((i >> 8) as u16).to_be(),
            };
            let entry = CtEntry {
                last_seen: now.saturating_sub(i as u64 * 1_000_000),
                state: 2,
                origin: (i % 2) as u8,
                ..CtEntry::default()
            };
            (key, entry)
        })
        .collect()
}

#[test]
fn the_source_saves_and_the_destination_loads_every_entry() {
    let (src, src_ct, _r1) = started(MAC);
    let table = synthetic(42, 300, FAKE_CT_NOW);
    src_ct.lock().unwrap().insert(42, table.clone());
    let (blob, saved) = src.save_state(UUID).unwrap();
    assert_eq!(
        (saved.nics, saved.entries, saved.bytes),
        (1, 300, blob.len())
    );

    let (mut dst, dst_ct, _r2) = started(MAC);
    let loaded = dst.load_state(UUID, &blob).unwrap();
    assert_eq!(loaded.entries, 300);
    let got = dst_ct.lock().unwrap()[&42].clone();
    assert_eq!(got.len(), 300);
    // Every key bit for bit, with its state and age (both clocks alike).
    assert_eq!(by_key(&got), by_key(&table));
    // The source keeps its table: a migration that fails leaves it as it was.
    assert_eq!(src_ct.lock().unwrap()[&42].len(), 300);
}

#[tokio::test]
async fn the_state_read_as_the_guest_stops_is_what_save_carries() {
    let (d, ct, _run) = started(MAC);
    ct.lock().unwrap().insert(42, synthetic(42, 5, FAKE_CT_NOW));
    let snapshots = Snapshots::new(std::sync::Arc::new(tokio::sync::Mutex::new(d)));

    // The guest stops for the switch-over: the tables are read then ...
    snapshots.guest_stopped(UUID);
    for _ in 0..1000 {
        if snapshots.ready(UUID) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(snapshots.ready(UUID), "read at the stop");
    // ... so what changes in them afterwards is not what Save carries,
    // and every Save of this migration gets that same read.
    ct.lock().unwrap().insert(42, synthetic(42, 9, FAKE_CT_NOW));
    let first = snapshots.take(UUID).await.unwrap();
    let again = snapshots.take(UUID).await.unwrap();
    assert_eq!(first.carried.entries, 5);
    assert!(std::sync::Arc::ptr_eq(&first, &again));

    assert!(first.at_stop);

    // The guest runs again (the migration failed): the next migration's
    // Save reads the tables as they are then, and says so.
    snapshots.forget(UUID);
    assert!(!snapshots.ready(UUID));
    let now = snapshots.take(UUID).await.unwrap();
    assert_eq!((now.carried.entries, now.at_stop), (9, false));

    // Stopped and running again before the read could start: the read
    // is not made, so nothing of that stop serves a later Save.
    snapshots.forget(UUID);
    snapshots.guest_stopped(UUID);
    snapshots.forget(UUID);
    ct.lock().unwrap().insert(42, synthetic(42, 4, FAKE_CT_NOW));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!snapshots.ready(UUID));
    assert_eq!(snapshots.take(UUID).await.unwrap().carried.entries, 4);

    // A domain hookd does not enforce: nothing is read at its stop, and
    // a Save for it fails without keeping the failure (its slot stays
    // empty, for the next Save to try again).
    let other = "00000000-0000-4000-8000-0000000000ff";
    snapshots.guest_stopped(other);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!snapshots.ready(other));
    let e = snapshots.take(other).await.unwrap_err().to_string();
    assert!(e.contains("not known to hookd"), "{e}");
    assert!(!snapshots.ready(other));
}

#[test]
fn state_that_is_not_this_vms_or_not_whole_changes_nothing() {
    let (src, src_ct, _r1) = started(MAC);
    src_ct
        .lock()
        .unwrap()
        .insert(42, synthetic(42, 10, FAKE_CT_NOW));
    let (blob, _) = src.save_state(UUID).unwrap();
    let (mut dst, dst_ct, _r2) = started(MAC);
    let empty = |ct: &FakeConntrack| ct.lock().unwrap()[&42].is_empty();

    let mut corrupt = blob.clone();
    corrupt[blob.len() / 2] ^= 1;
    let e = dst.load_state(UUID, &corrupt).unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    let e = dst.load_state(UUID, &blob[..blob.len() - 1]).unwrap_err();
    assert!(matches!(e, MigrationError::Blob(_)), "{e}");
    let other = "00000000-0000-4000-8000-000000000bad";
    let e = dst.load_state(other, &blob).unwrap_err().to_string();
    assert!(e.contains(UUID) && e.contains(other), "{e}");
    assert!(empty(&dst_ct), "nothing loaded");

    // The destination's domain has another NIC: refused, naming the MAC.
    let (mut elsewhere, ct, _r3) = started("52:54:00:00:00:0b");
    let e = elsewhere.load_state(UUID, &blob).unwrap_err().to_string();
    assert!(e.contains(MAC) && e.contains("vm1"), "{e}");
    assert!(empty(&ct));

    // More than the destination's table holds: refused, not evicted.
    src_ct
        .lock()
        .unwrap()
        .insert(42, synthetic(42, FAKE_CT_ROOM + 1, FAKE_CT_NOW));
    let (big, _) = src.save_state(UUID).unwrap();
    let e = dst.load_state(UUID, &big).unwrap_err().to_string();
    assert!(e.contains("do not fit"), "{e}");
    assert!(empty(&dst_ct));

    // Unknown domain on either side.
    assert!(matches!(
        src.save_state(other),
        Err(MigrationError::UnknownVm(_))
    ));
}

#[test]
fn an_incoming_vm_with_policy_gets_the_object_that_carries_its_state() {
    let (mut d, _ct, _r) = started(MAC);
    let args = HookArgs {
        domain: "vm1".into(),
        operation: "migrate".into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    let xml = domain_xml(MAC);
    // No helpers served: the XML is libvirt's, unchanged.
    assert_eq!(d.hook_event(&args, &xml).unwrap(), xml);
    d.set_migration_helpers(Some(hookd::api::vmstate::id_list(2)));
    let out = d.hook_event(&args, &xml).unwrap();
    assert!(hookd_model::vmstate::has_object(&out), "{out}");
    assert!(out.contains(r#""id-list":"hookd-0,hookd-1""#), "{out}");
    // Once is enough: a VM that came by migration carries it already.
    assert_eq!(d.hook_event(&args, &out).unwrap(), out);
    // A VM without policy is left alone; one whose policy is invalid here
    // does not come (the hook fails the migration, the source keeps it).
    let plain = DomainXml::new("vm2", "00000000-0000-4000-8000-0000000000e2")
        .nic("ethernet", "52:54:00:00:00:0c", Some("tap-c"))
        .to_string();
    assert_eq!(d.hook_event(&args, &plain).unwrap(), plain);
    let bad = xml.replace("192.0.2.10/32", "192.0.2.300/32");
    let e = d.hook_event(&args, &bad).unwrap_err().to_string();
    assert!(e.contains("192.0.2.300"), "{e}");
}

/// A real data path with the test NIC's policy: ingress default-deny, a
/// conntrack table of `entries`.
fn datapath(fs: &Bpffs, entries: u32) -> Datapath {
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    dp.set_conntrack_entries(entries);
    program_policy(&mut dp, "<hookd:ingress default='deny'/>", 1);
    dp
}

fn by_key(t: &[(CtKey, CtEntry)]) -> HashMap<CtKey, (u8, u8, u64)> {
    t.iter()
        .map(|(k, e)| (*k, (e.state, e.origin, e.last_seen)))
        .collect()
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn whole_tables_are_carried_between_two_data_paths() {
    use hookd::core::migration::blob::{CarriedNic, VmState};
    for n in [16_384usize, 100_000, 1_000_000] {
        let fs_a = Bpffs::new();
        // An LRU table evicts before it is full: the source's has room.
        let mut src = datapath(&fs_a, u32::try_from(n + n / 8 + 4096).unwrap());
        let now = ct_clock_ns();
        let table = synthetic(TEST_IFINDEX, n, now);
        src.put_ct_entries(TEST_IFINDEX, &table).unwrap();

        let t = Instant::now();
        let dumped = src.ct_dump(TEST_IFINDEX).unwrap();
        let dump = t.elapsed();
        assert_eq!(dumped.len(), n, "source table of {n} read whole");
        let t = Instant::now();
        let state = VmState {
            uuid: UUID.into(),
            nics: vec![CarriedNic::from_table(
                MacAddr(mac(VM_MAC)),
                &dumped,
                ct_clock_ns(),
            )],
        };
        let blob = state.encode().unwrap();
        let encode = t.elapsed();

        // A destination configured for far fewer gets a new table, sized
        // to hold them all; one configured for more takes them in place.
        let mut load_ms = Vec::new();
        let mut decode_ms = 0.0;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        for (how, entries, in_place) in [
            ("new table", 1024, false),
            ("in place", n + n / 4 + 4096, true),
        ] {
            let fs_b = Bpffs::new();
            let mut dst = datapath(&fs_b, u32::try_from(entries).unwrap());
            let t = Instant::now();
            let back = VmState::decode(&blob, UUID).unwrap();
            let rows = back.nics[0].to_table(TEST_IFINDEX, ct_clock_ns());
            decode_ms = ms(t.elapsed());
            let t = Instant::now();
            let size = dst.load_carried_ct(TEST_IFINDEX, &rows).unwrap();
            load_ms.push(ms(t.elapsed()));
            assert!(size as usize >= n, "{how}: {size}");
            if in_place {
                assert_eq!(size as usize, entries, "the NIC kept its table");
            }

            let want = by_key(&table);
            let got = by_key(&dst.ct_dump(TEST_IFINDEX).unwrap());
            assert_eq!(got.len(), n, "{how}: destination holds all {n}");
            let mut worst_ms = 0u64;
            for (k, (state, origin, seen)) in &want {
                let (s, o, g) = got.get(k).unwrap_or_else(|| panic!("{how}: {k:?} lost"));
                assert_eq!((s, o), (state, origin), "{how}: {k:?}");
                // Ages carry to the ms; the two reads of the clock differ
                // by the time the carry took.
                worst_ms = worst_ms.max(g.abs_diff(*seen) / 1_000_000);
            }
            assert!(worst_ms < 60_000, "{how}: ages drifted by {worst_ms} ms");
        }
        println!(
            "carried {n} entries: {} bytes ({:.1} per entry); dump {:.1} ms, \
             encode {:.1} ms, decode {decode_ms:.1} ms, load into a new table {:.1} ms, \
             in place {:.1} ms",
            blob.len(),
            blob.len() as f64 / n as f64,
            ms(dump),
            ms(encode),
            load_ms[0],
            load_ms[1],
        );
    }
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_connection_opened_on_the_source_is_answered_on_the_destination() {
    use hookd::core::migration::blob::{CarriedNic, VmState};
    let (fs_a, fs_b) = (Bpffs::new(), Bpffs::new());
    let src = datapath(&fs_a, 4096);
    let syn = from_vm4("198.51.100.7", 6, &tcp(40000, 443, SYN));
    assert_eq!(run_prog(&src, hookd_bpf::PROG_FROM_VM, &syn), TC_ACT_UNSPEC);
    let reply = to_vm4("198.51.100.7", 6, &tcp(443, 40000, SYN | ACK));

    // Without the carried state the destination drops the reply.
    let mut dst = datapath(&fs_b, 4096);
    assert_eq!(run_prog(&dst, hookd_bpf::PROG_TO_VM, &reply), TC_ACT_SHOT);
    let drops = dst.stats(TEST_IFINDEX).unwrap().drops;
    assert!(
        drops[DropReason::FwDefault as usize] + drops[DropReason::CtInvalid as usize] >= 1,
        "{drops:?}"
    );

    let state = VmState {
        uuid: UUID.into(),
        nics: vec![CarriedNic::from_table(
            MacAddr(mac(VM_MAC)),
            &src.ct_dump(TEST_IFINDEX).unwrap(),
            ct_clock_ns(),
        )],
    };
    let back = VmState::decode(&state.encode().unwrap(), UUID).unwrap();
    // A connection the destination tracked before the carry stays.
    let local = to_vm4("198.51.100.8", 6, &tcp(443, 40002, SYN | ACK));
    let local_syn = from_vm4("198.51.100.8", 6, &tcp(40002, 443, SYN));
    assert_eq!(
        run_prog(&dst, hookd_bpf::PROG_FROM_VM, &local_syn),
        TC_ACT_UNSPEC
    );
    dst.load_carried_ct(
        TEST_IFINDEX,
        &back.nics[0].to_table(TEST_IFINDEX, ct_clock_ns()),
    )
    .unwrap();
    assert_eq!(
        run_prog(&dst, hookd_bpf::PROG_TO_VM, &local),
        TC_ACT_UNSPEC,
        "kept"
    );
    assert_eq!(
        run_prog(&dst, hookd_bpf::PROG_TO_VM, &reply),
        TC_ACT_UNSPEC,
        "answered"
    );
    // A connection the guest never opened is still refused.
    let stray = to_vm4("198.51.100.7", 6, &tcp(443, 40001, SYN | ACK));
    assert_eq!(run_prog(&dst, hookd_bpf::PROG_TO_VM, &stray), TC_ACT_SHOT);
}

/// A daemon's helpers on `bus`, with vm1's QEMU recorded as process `pid`.
async fn helpers(
    d: Daemon,
    bus: &str,
    count: u8,
    pid: u32,
    on_error: hookd::config::StateErrors,
) -> (Vec<zbus::Connection>, tempfile::TempDir, hookd::core::View) {
    use hookd::api::vmstate;
    let pids = tempfile::tempdir().unwrap();
    std::fs::write(pids.path().join("vm1.pid"), format!("{pid}\n")).unwrap();
    let view = d.view();
    let daemon = std::sync::Arc::new(tokio::sync::Mutex::new(d));
    let shared = vmstate::Shared::new(
        daemon.clone(),
        view.clone(),
        vmstate::Settings {
            pid_dir: pids.path().to_path_buf(),
            count,
            on_error,
            notices: None,
            snapshots: Snapshots::new(daemon),
        },
    );
    let conns = vmstate::serve(shared, || async {
        zbus::connection::Builder::address(bus).build().await
    })
    .await
    .unwrap();
    (conns, pids, view)
}

/// Plays QEMU's dbus-vmstate: the queued owners of org.qemu.VMState1 and
/// their Ids, as QEMU lists them.
async fn owners(conn: &zbus::Connection) -> Vec<(String, String)> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let mut out = Vec::new();
    for owner in dbus
        .list_queued_owners("org.qemu.VMState1".try_into().unwrap())
        .await
        .unwrap()
    {
        let p = zbus::Proxy::new(
            conn,
            owner.to_string(),
            "/org/qemu/VMState1",
            "org.qemu.VMState1",
        )
        .await
        .unwrap();
        out.push((
            owner.to_string(),
            p.get_property::<String>("Id").await.unwrap(),
        ));
    }
    out
}

async fn call_save(conn: &zbus::Connection, owner: &str) -> zbus::Result<Vec<u8>> {
    let p = zbus::Proxy::new(conn, owner, "/org/qemu/VMState1", "org.qemu.VMState1").await?;
    p.call("Save", &()).await
}

async fn call_load(conn: &zbus::Connection, owner: &str, data: &[u8]) -> zbus::Result<()> {
    let p = zbus::Proxy::new(conn, owner, "/org/qemu/VMState1", "org.qemu.VMState1").await?;
    p.call("Load", &(data,)).await
}

#[tokio::test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
async fn qemus_dbus_vmstate_carries_the_state_in_pieces_to_its_own_vm_only() {
    let me = std::process::id();
    let count = 3;
    // Source and destination each on their own bus, with hookd's policy.
    let (src_bus, dst_bus) = (PrivateBus::start(true), PrivateBus::start(true));
    let (src, src_ct, _r1) = started(MAC);
    // More than one piece's worth, compressed: 90,000 scattered entries
    // are about 1.7 MB.
    src_ct
        .lock()
        .unwrap()
        .insert(42, scattered(42, 90_000, FAKE_CT_NOW));
    let (_s, _p1, src_view) = helpers(src, &src_bus.address, count, me, Refuse).await;
    let (dst, dst_ct, _r2) = started(MAC);
    let (_d, _p2, dst_view) = helpers(dst, &dst_bus.address, count, me, Refuse).await;

    let qemu_src = zbus::connection::Builder::address(src_bus.address.as_str())
        .build()
        .await
        .unwrap();
    let qemu_dst = zbus::connection::Builder::address(dst_bus.address.as_str())
        .build()
        .await
        .unwrap();
    let on_src = owners(&qemu_src).await;
    let ids: Vec<&str> = on_src.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["hookd-0", "hookd-1", "hookd-2"]);
    assert_eq!(
        hookd::api::vmstate::id_list(count),
        "hookd-0,hookd-1,hookd-2"
    );

    let mut pieces = Vec::new();
    for (owner, id) in &on_src {
        let data = call_save(&qemu_src, owner).await.unwrap();
        assert!(
            !data.is_empty() && data.len() <= 1 << 20,
            "{id}: {}",
            data.len()
        );
        pieces.push((id.clone(), data));
    }
    let full = pieces.iter().filter(|(_, d)| d.len() > 1 << 19).count();
    assert!(full >= 2, "the state spans {full} piece(s)");
    let on_dst: std::collections::HashMap<String, String> = owners(&qemu_dst)
        .await
        .into_iter()
        .map(|(o, id)| (id, o))
        .collect();

    // A corrupted piece: the last Load fails and nothing is loaded.
    let mut bad = pieces.clone();
    let mid = bad[1].1.len() / 2;
    bad[1].1[mid] ^= 1;
    let mut last = Ok(());
    for (id, data) in &bad {
        last = call_load(&qemu_dst, &on_dst[id], data).await;
    }
    let e = last.unwrap_err().to_string();
    assert!(e.contains("corrupt") && e.contains("vm1"), "{e}");
    assert!(dst_ct.lock().unwrap()[&42].is_empty());
    let refused = dst_view.migrations().0.pop().unwrap();
    assert_eq!(
        (refused.side, refused.outcome),
        (Side::Destination, Outcome::Refused)
    );
    assert!(refused.detail.contains("corrupt"), "{}", refused.detail);

    // A destination told to proceed takes the same pieces, loads nothing,
    // and says so; QEMU is not failed.
    let (lax, lax_ct, _r4) = started(MAC);
    let lax_bus = PrivateBus::start(true);
    let (_l, _p4, lax_view) = helpers(lax, &lax_bus.address, count, me, Proceed).await;
    let qemu_lax = zbus::connection::Builder::address(lax_bus.address.as_str())
        .build()
        .await
        .unwrap();
    let on_lax: std::collections::HashMap<String, String> = owners(&qemu_lax)
        .await
        .into_iter()
        .map(|(o, id)| (id, o))
        .collect();
    for (id, data) in &bad {
        call_load(&qemu_lax, &on_lax[id], data).await.unwrap();
    }
    assert!(lax_ct.lock().unwrap()[&42].is_empty());
    let (log, totals) = lax_view.migrations();
    assert_eq!(log.last().map(|e| e.outcome), Some(Outcome::Proceeded));
    assert_eq!(
        totals.count[Side::Destination as usize][Outcome::Proceeded as usize],
        1
    );

    // The pieces as QEMU carries them, in reverse order: all loaded.
    for (id, data) in pieces.iter().rev() {
        call_load(&qemu_dst, &on_dst[id], data).await.unwrap();
    }
    assert_eq!(dst_ct.lock().unwrap()[&42].len(), 90_000);
    // Both sides noted what they carried.
    let saved = src_view.migrations().0.pop().unwrap();
    let loaded = dst_view.migrations().0.pop().unwrap();
    assert_eq!(
        (saved.side, saved.outcome),
        (Side::Source, Outcome::Carried)
    );
    assert_eq!(
        (loaded.side, loaded.outcome),
        (Side::Destination, Outcome::Carried)
    );
    assert_eq!(
        (saved.carried.entries, loaded.carried.entries),
        (90_000, 90_000)
    );

    // A process that is no VM's QEMU gets nothing.
    let (other, other_ct, _r3) = started(MAC);
    other_ct
        .lock()
        .unwrap()
        .insert(42, synthetic(42, 5, FAKE_CT_NOW));
    let bus3 = PrivateBus::start(true);
    let (_o, _p3, _v3) = helpers(other, &bus3.address, 1, me + 1_000_000, Refuse).await;
    let c3 = zbus::connection::Builder::address(bus3.address.as_str())
        .build()
        .await
        .unwrap();
    let (owner, _) = owners(&c3).await.remove(0);
    let e = call_save(&c3, &owner).await.unwrap_err().to_string();
    assert!(e.contains("is not the QEMU of a domain"), "{e}");
}
