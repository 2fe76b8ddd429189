//! Tier 2 (root): who may call what, on a private dbus-daemon that uses the
//! shipped bus policy (dbus/org.hookd.Hookd1.conf), with callers running as
//! an unprivileged uid. The data plane is the recording stand-in of
//! dbus_p2p.rs's kind: access control is what is under test here.

mod support;

use hookd::daemon::{Daemon, DataPlane};
use hookd::datapath::{Attachment, DatapathError};
use hookd::plan::NicMode;
use hookd::service::Manager;
use hookd::state::{NicRecord, StateDir};
use hookd_bpf::layout::NicStats;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoPlane;

impl DataPlane for NoPlane {
    fn attach_nic(
        &mut self,
        _: &str,
        _: &str,
        _: [u8; 6],
        _: &NicMode,
        _: u64,
    ) -> Result<(u32, Attachment), DatapathError> {
        Ok((1, Attachment::Tcx))
    }
    fn update_nic(&mut self, _: u32, _: [u8; 6], _: &NicMode, _: u64) -> Result<(), DatapathError> {
        Ok(())
    }
    fn detach_nic(&mut self, _: &str, _: &NicRecord) -> Result<(), DatapathError> {
        Ok(())
    }
    fn forget_domain(&mut self, _: &str) -> Result<(), DatapathError> {
        Ok(())
    }
    fn still_attached(&self, _: &str, _: &NicRecord) -> bool {
        true
    }
    fn stats(&self, _: u32) -> Option<NicStats> {
        None
    }
    fn rule_hits(&self, _: u32) -> Vec<((u8, u16), u64)> {
        Vec::new()
    }
}

const NOBODY: &str = "65534";

/// A system-type bus with the defaults of Debian's system.conf that matter
/// here (deny method calls by default) plus hookd's policy file.
fn start_bus(dir: &std::path::Path, with_hookd_policy: bool) -> (std::process::Child, String) {
    let sock = dir.join("bus");
    let policy_dir = dir.join("system.d");
    std::fs::create_dir_all(&policy_dir).unwrap();
    if with_hookd_policy {
        std::fs::write(
            policy_dir.join("org.hookd.Hookd1.conf"),
            hookd_dbus::BUS_POLICY,
        )
        .unwrap();
    }
    let default_policy = if with_hookd_policy {
        "<deny own='*'/><deny send_type='method_call'/>"
    } else {
        "<allow own='*'/><allow send_type='method_call'/>"
    };
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            "<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
             <policy context='default'><allow user='*'/>{default_policy}\
             <allow send_type='signal'/><allow send_requested_reply='true' send_type='method_return'/>\
             <allow send_requested_reply='true' send_type='error'/><allow receive_type='method_call'/>\
             <allow receive_type='method_return'/><allow receive_type='error'/><allow receive_type='signal'/>\
             <allow send_destination='org.freedesktop.DBus'/></policy>\
             <includedir>{}</includedir></busconfig>",
            sock.display(),
            policy_dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon");
    let t = Instant::now();
    while !sock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "dbus-daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("unix:path={}", sock.display()))
}

/// A private system-type bus (see `start_bus`), stopped on drop; its
/// directory is world-readable so unprivileged callers reach the socket.
struct PrivateBus {
    child: std::process::Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start(with_hookd_policy: bool) -> PrivateBus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (child, address) = start_bus(dir.path(), with_hookd_policy);
        PrivateBus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(address: &str) -> (zbus::Connection, tempfile::TempDir) {
    let run = tempfile::tempdir().unwrap();
    let daemon = Daemon::new(Box::new(NoPlane), StateDir::open(run.path()).unwrap(), true);
    let conn = zbus::connection::Builder::address(address)
        .serve_at(
            hookd_dbus::MANAGER_PATH,
            Manager::new(Arc::new(tokio::sync::Mutex::new(daemon))),
        )
        .name(hookd_dbus::BUS_NAME)
        .build()
        .await
        .expect("root owns org.hookd.Hookd1 under the bus policy");
    (conn, run)
}

/// Runs `args` as uid `uid` (or root when None) with the bus address.
fn run_as(uid: Option<&str>, address: &str, args: &[&str]) -> Output {
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--clear-groups",
                "--",
            ]);
            c.args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .output()
        .expect("run")
}

fn hook_event_call(op: &str) -> Vec<String> {
    [
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.hookd.Hookd1",
        "/org/hookd/Hookd1",
        "org.hookd.Hookd1.Manager.HookEvent",
        "string:vm1",
        &format!("string:{op}"),
        "string:begin",
        "string:-",
        "string:<domain><name>vm1</name><uuid>u1</uuid></domain>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-all.sh"]
async fn the_bus_policy_lets_everybody_read_and_only_root_change() {
    support::require_root();
    let bus = PrivateBus::start(true);
    let address = bus.address.clone();
    let (_conn, _run) = serve(&address).await;
    let hookctl = env!("CARGO_BIN_EXE_hookctl");
    let addr = address.clone();
    let results = tokio::task::spawn_blocking(move || {
        let read = run_as(Some(NOBODY), &addr, &[hookctl, "domains"]);
        let events = run_as(Some(NOBODY), &addr, &[hookctl, "events"]);
        let call = hook_event_call("prepare");
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        let change_nobody = run_as(Some(NOBODY), &addr, &args);
        let change_root = run_as(None, &addr, &args);
        (read, events, change_nobody, change_root)
    })
    .await
    .unwrap();
    let (read, events, change_nobody, change_root) = results;
    assert!(
        read.status.success(),
        "unprivileged hookctl domains: {}",
        text(&read)
    );
    assert!(
        events.status.success(),
        "unprivileged hookctl events: {}",
        text(&events)
    );
    assert!(!change_nobody.status.success());
    assert!(
        text(&change_nobody).contains("AccessDenied"),
        "{}",
        text(&change_nobody)
    );
    assert!(
        change_root.status.success(),
        "root HookEvent: {}",
        text(&change_root)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-all.sh"]
async fn hookd_checks_the_callers_uid_itself() {
    // A bus whose policy lets anybody call anything: hookd must still refuse.
    support::require_root();
    let bus = PrivateBus::start(false);
    let address = bus.address.clone();
    let (_conn, _run) = serve(&address).await;
    let addr = address.clone();
    let out = tokio::task::spawn_blocking(move || {
        let call = hook_event_call("start");
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        run_as(Some(NOBODY), &addr, &args)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("org.hookd.Hookd1.Error.AccessDenied") && t.contains("uid 65534"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-all.sh"]
async fn signals_reach_hookctl_monitor() {
    support::require_root();
    let bus = PrivateBus::start(true);
    let address = bus.address.clone();
    let (_conn, _run) = serve(&address).await;
    // An unprivileged monitor: signals are for everybody.
    let monitor = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .args([env!("CARGO_BIN_EXE_hookctl"), "--json", "monitor"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let client = zbus::connection::Builder::address(address.as_str())
        .build()
        .await
        .unwrap();
    let p = hookd_dbus::ManagerProxy::new(&client).await.unwrap();
    let xml = "<domain><name>vm7</name><uuid>u7</uuid><devices><interface type='ethernet'>\
               <mac address='52:54:00:00:00:07'/><target dev='vnet7'/></interface></devices></domain>";
    p.hook_event("vm7", "start", "begin", "-", xml)
        .await
        .unwrap();
    p.hook_event("vm7", "started", "begin", "-", xml)
        .await
        .unwrap();
    p.hook_event("vm7", "stopped", "end", "-", xml)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = monitor.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || monitor.wait_with_output().unwrap())
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let signals: Vec<&str> = lines
        .iter()
        .map(|v| v["signal"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        signals,
        [
            "DomainAttached",
            "PolicyApplied",
            "PolicyApplied",
            "DomainDetached"
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["name"], "vm7");
    assert_eq!(lines[0]["phase"], "start");
}
