//! The hook binary as libvirt runs it, against a private dbus-daemon: exit
//! codes, stderr, XML pass-through, and the bounded wait. hookd itself is
//! absent or replaced by a stand-in that never answers; the real daemon is
//! exercised by the VM tests.

use hookd_testkit::private_bus;

use private_bus::PrivateBus;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MANAGED: &str = "<domain><name>vm1</name><uuid>u1</uuid><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'><hookd:interface/></hookd:policy></metadata></domain>";
const UNMANAGED: &str = "<domain><name>vm2</name><uuid>u2</uuid></domain>";

fn run_hook(bus: &PrivateBus, args: &[&str], xml: &str) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookd-qemu-hook"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        // Never a hookd socket of this machine: the private bus only.
        .env("HOOKD_HOOK_SOCKET", "/nonexistent/hookd-hook.sock")
        .env("HOOKD_HOOK_TIMEOUT_MS", "1500")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook stops reading past its size limit: a broken pipe here is
    // expected for oversized input, and its exit status tells the rest.
    if let Err(e) = child.stdin.take().unwrap().write_all(xml.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (out, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hookd_absent_blocks_only_vms_with_policy() {
    let bus = PrivateBus::start(false);
    for op in ["prepare", "start", "started"] {
        let (o, _) = run_hook(&bus, &["vm1", op, "begin", "-"], MANAGED);
        assert_eq!(o.status.code(), Some(1), "{op}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("carries hookd policy but hookd is not available"),
            "{}",
            stderr(&o)
        );
        let (o, _) = run_hook(&bus, &["vm2", op, "begin", "-"], UNMANAGED);
        assert_eq!(o.status.code(), Some(0), "{op}");
        assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    }
    let (o, _) = run_hook(&bus, &["vm1", "stopped", "end", "-"], MANAGED);
    assert_eq!(o.status.code(), Some(0), "teardown never fails");
    assert!(
        o.stdout.is_empty(),
        "no XML on stdout except for migrate/restore"
    );
}

#[test]
fn migrate_and_restore_pass_the_xml_through_unchanged_without_hookd() {
    let bus = PrivateBus::start(false);
    for (op, xml) in [
        ("migrate", UNMANAGED),
        ("restore", MANAGED),
        ("restore", UNMANAGED),
    ] {
        let (o, _) = run_hook(&bus, &["vm1", op, "begin", "-"], xml);
        assert_eq!(o.status.code(), Some(0), "{op}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), xml, "{op}");
    }
    // A VM with policy does not come here by migration while hookd is
    // down: libvirt fails the migration and the source keeps the VM.
    let (o, _) = run_hook(&bus, &["vm1", "migrate", "begin", "-"], MANAGED);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("hookd is not available"),
        "{}",
        stderr(&o)
    );
    // Even past the size limit, the XML comes back whole.
    let huge = format!(
        "{}{}",
        UNMANAGED,
        " ".repeat(hookd_model::xml_tree::MAX_XML_BYTES)
    );
    let (o, _) = run_hook(&bus, &["vm2", "restore", "begin", "-"], &huge);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout.len(), huge.len());
}

#[test]
fn wrong_arguments_and_oversized_xml() {
    let bus = PrivateBus::start(false);
    let (o, _) = run_hook(&bus, &["vm1", "start"], MANAGED);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected 4 arguments"),
        "{}",
        stderr(&o)
    );
    let huge = format!(
        "{}{}",
        MANAGED,
        " ".repeat(hookd_model::xml_tree::MAX_XML_BYTES)
    );
    let (o, _) = run_hook(&bus, &["vm1", "start", "begin", "-"], &huge);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
}

/// Owns org.hookd.Hookd1 and never answers HookEvent.
struct Stuck;

#[zbus::interface(name = "org.hookd.Hookd1.Manager")]
impl Stuck {
    async fn hook_event(
        &self,
        _d: String,
        _o: String,
        _s: String,
        _e: String,
        _x: String,
    ) -> String {
        tokio::time::sleep(Duration::from_secs(60)).await;
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_hookd_cannot_hang_a_vm_start() {
    let bus = PrivateBus::start(false);
    let _conn = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at(hookd_dbus::MANAGER_PATH, Stuck)
        .name(hookd_dbus::BUS_NAME)
        .build()
        .await
        .unwrap();
    let (o, took) = tokio::task::spawn_blocking(move || {
        let r = run_hook(&bus, &["vm1", "start", "begin", "-"], MANAGED);
        drop(bus);
        r
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no answer within 1.5 s"),
        "{}",
        stderr(&o)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
