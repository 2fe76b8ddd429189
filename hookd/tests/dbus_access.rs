//! Tier 2 (root): who may call what, on a private dbus-daemon that uses the
//! shipped bus policy (dbus/org.hookd.Hookd1.conf), with callers running as
//! an unprivileged uid. The data plane is the recording stand-in of
//! dbus_api.rs's kind: access control is what is under test here.
//!
//! The bus policy names the read group `hookd`, so the group must exist by
//! name; each test runs in a mount namespace of its own whose /etc is a
//! throwaway overlay (`in_private_etc`), so the machine never keeps it.

use hookd_testkit as support;

use support::plane::FakePlane;
use support::private_bus::PrivateBus;

use hookd::api::Readers;
use hookd::core::Daemon;
use hookd::core::records::StateDir;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

const NOBODY: &str = "65534";

/// Set, to a directory, in the child process that runs one test in its own
/// mount namespace (see `in_private_etc`).
const PRIVATE_ETC: &str = "HOOKD_TEST_PRIVATE_ETC";

/// The gid of the group `hookd`, if it exists.
fn hookd_gid() -> Option<u32> {
    let out = Command::new("getent")
        .args(["group", "hookd"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
}

/// Runs the calling test again, alone, as a child process in a mount
/// namespace of its own (`unshare --mount`) whose /etc is a copy-on-write
/// overlay kept on a tmpfs of that namespace. The read group created there
/// (`read_group`, before the test starts a bus) vanishes with the namespace,
/// even when the test panics or is killed. Returns true in the child, which
/// then runs the test's body; in the caller, asserts that the child passed
/// exactly the one test and left no group `hookd` behind, and returns false.
fn in_private_etc(test: &str) -> bool {
    support::require_root();
    if let Some(dir) = std::env::var_os(PRIVATE_ETC) {
        let d = Path::new(&dir).display();
        support::sh(&format!(
            "mount -t tmpfs -o mode=0700 hookd-test-etc {d} && mkdir {d}/upper {d}/work && \
             mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/upper,workdir={d}/work /etc"
        ));
        // Before any bus starts: dbus-daemon resolves the policy's group
        // name when it loads its configuration.
        read_group();
        return true;
    }
    let had_group = hookd_gid().is_some();
    // Mounted over in the child's namespace only; empty here, removed on drop.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--test-threads=1"])
        .env(PRIVATE_ETC, dir.path())
        .output()
        .expect("unshare");
    assert!(
        out.status.success() && text(&out).contains("test result: ok. 1 passed"),
        "{test}, in its own mount namespace:\n{}",
        text(&out)
    );
    assert!(
        had_group || hookd_gid().is_none(),
        "the group hookd was left on the machine"
    );
    false
}

/// The read group of the shipped bus policy and its gid: the machine's if
/// it has one (the packages create it on install), else one created in the
/// test's private /etc (`in_private_etc`).
fn read_group() -> u32 {
    assert!(
        std::env::var_os(PRIVATE_ETC).is_some(),
        "read_group outside in_private_etc"
    );
    if let Some(g) = hookd_gid() {
        return g;
    }
    support::sh("groupadd --system hookd");
    hookd_gid().expect("group hookd")
}

/// Who runs a client: root, or uid 65534 with or without the read group.
#[derive(Clone, Copy)]
enum Who {
    Root,
    Nobody,
    Reader,
}

impl Who {
    fn command(self, program: &str) -> Command {
        let groups = match self {
            Who::Root => return Command::new(program),
            Who::Nobody => "--clear-groups".to_string(),
            Who::Reader => format!("--groups={}", read_group()),
        };
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            &groups,
            "--",
            program,
        ]);
        c
    }
}

async fn serve(address: &str) -> (zbus::Connection, tempfile::TempDir) {
    let run = tempfile::tempdir().unwrap();
    let daemon = Daemon::new(
        Box::new(FakePlane::quiet()),
        StateDir::open(run.path()).unwrap(),
        true,
    );
    let view = daemon.view();
    let conn = hookd::api::serve(
        zbus::connection::Builder::address(address),
        Arc::new(tokio::sync::Mutex::new(daemon)),
        view,
        Readers::Group(read_group()),
        None,
        &run.path().join("hook.sock"),
    )
    .await
    .expect("root owns org.hookd.Hookd1 under the bus policy")
    .conn;
    (conn, run)
}

/// Runs `args` as `who` with the bus address.
fn run_as(who: Who, address: &str, args: &[&str]) -> Output {
    who.command(args[0])
        .args(&args[1..])
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
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

fn set_policy_call() -> Vec<String> {
    [
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.hookd.Hookd1",
        "/org/hookd/Hookd1",
        "org.hookd.Hookd1.Manager.SetPolicy",
        "string:vm1",
        "string:",
        "boolean:false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs each (who, command) in turn, off the async runtime.
async fn run_all(address: &str, calls: Vec<(Who, Vec<String>)>) -> Vec<Output> {
    let addr = address.to_string();
    tokio::task::spawn_blocking(move || {
        calls
            .iter()
            .map(|(who, c)| {
                let args: Vec<&str> = c.iter().map(String::as_str).collect();
                run_as(*who, &addr, &args)
            })
            .collect()
    })
    .await
    .unwrap()
}

fn hookctl(args: &[&str]) -> Vec<String> {
    std::iter::once(support::hookctl_bin())
        .chain(args.iter().copied())
        .map(String::from)
        .collect()
}

/// `hookctl trace --live` of a packet to vm1.
const TRACE_LIVE: &[&str] = &[
    "trace",
    "vm1",
    "--live",
    "--mac",
    "52:54:00:00:00:0a",
    "--direction",
    "ingress",
    "--remote",
    "198.51.100.7",
    "--port",
    "22",
];

fn refused(o: &Output) -> bool {
    !o.status.success() && text(o).contains("AccessDenied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
async fn the_bus_policy_lets_the_read_group_read_and_only_root_change() {
    if !in_private_etc("the_bus_policy_lets_the_read_group_read_and_only_root_change") {
        return;
    }
    let bus = PrivateBus::start(true);
    let (_conn, _run) = serve(&bus.address).await;
    let out = run_all(
        &bus.address,
        vec![
            (Who::Reader, hookctl(&["domains"])),
            (Who::Reader, hookctl(&["events"])),
            (Who::Reader, hookctl(&["health"])),
            (Who::Nobody, hookctl(&["domains"])),
            (Who::Nobody, hookctl(&["policy", "get", "vm1"])),
            (Who::Reader, hook_event_call("prepare")),
            (Who::Reader, set_policy_call()),
            (Who::Root, hook_event_call("prepare")),
            (Who::Reader, hookctl(&["network", "list"])),
            (Who::Reader, hookctl(&["network", "define", "/dev/null"])),
            (Who::Nobody, hookctl(&["network", "show", "blue"])),
            (Who::Nobody, hookctl(TRACE_LIVE)),
        ],
    )
    .await;
    for (i, o) in out[..3].iter().enumerate() {
        assert!(o.status.success(), "read group, call {i}: {}", text(o));
    }
    for (i, o) in out[3..7].iter().enumerate() {
        assert!(refused(o), "call {}: {}", i + 3, text(o));
    }
    // hookctl reports the bus's refusal as a refusal (1), not as "hookd
    // unreachable" (3).
    assert_eq!(out[3].status.code(), Some(1), "{}", text(&out[3]));
    assert!(out[7].status.success(), "root HookEvent: {}", text(&out[7]));
    assert!(
        out[8].status.success(),
        "read group, network list: {}",
        text(&out[8])
    );
    for (i, o) in out[9..].iter().enumerate() {
        assert!(refused(o), "call {}: {}", i + 9, text(o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
async fn hookd_checks_the_callers_uid_and_groups_itself() {
    // A bus whose policy lets anybody call anything: hookd must still refuse.
    if !in_private_etc("hookd_checks_the_callers_uid_and_groups_itself") {
        return;
    }
    let bus = PrivateBus::start(false);
    let (_conn, _run) = serve(&bus.address).await;
    let out = run_all(
        &bus.address,
        vec![
            (Who::Nobody, hook_event_call("start")),
            (Who::Reader, set_policy_call()),
            (Who::Nobody, hookctl(&["domains"])),
            (Who::Reader, hookctl(&["domains"])),
            (Who::Reader, hookctl(&["network", "undefine", "blue"])),
            (Who::Nobody, hookctl(&["network", "list"])),
            (Who::Nobody, hookctl(TRACE_LIVE)),
            (Who::Reader, hookctl(TRACE_LIVE)),
        ],
    )
    .await;
    let t = text(&out[0]);
    assert!(
        refused(&out[0])
            && t.contains("org.hookd.Hookd1.Error.AccessDenied")
            && t.contains("uid 65534"),
        "{t}"
    );
    assert!(
        refused(&out[1]) && text(&out[1]).contains("SetPolicy is reserved to root"),
        "{}",
        text(&out[1])
    );
    assert!(
        refused(&out[2]) && text(&out[2]).contains("reserved to root and the read group"),
        "{}",
        text(&out[2])
    );
    assert!(
        out[3].status.success(),
        "a member of the read group reads: {}",
        text(&out[3])
    );
    assert!(
        refused(&out[4]) && text(&out[4]).contains("UndefineNetwork is reserved to root"),
        "{}",
        text(&out[4])
    );
    for o in &out[5..7] {
        assert!(
            refused(o) && text(o).contains("reserved to root and the read group"),
            "{}",
            text(o)
        );
    }
    // A reader's TraceLive reaches hookd, which knows no vm1.
    assert!(
        !refused(&out[7]) && text(&out[7]).contains("no domain 'vm1'"),
        "{}",
        text(&out[7])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
async fn signals_reach_hookctl_monitor() {
    if !in_private_etc("signals_reach_hookctl_monitor") {
        return;
    }
    let bus = PrivateBus::start(true);
    let address = bus.address.clone();
    let (_conn, _run) = serve(&address).await;
    // Two unprivileged monitors: signals reach the read group only.
    let spawn_monitor = |who: Who| {
        who.command(support::hookctl_bin())
            .args(["--json", "monitor"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let monitor = spawn_monitor(Who::Reader);
    let outsider = spawn_monitor(Who::Nobody);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let client = zbus::connection::Builder::address(address.as_str())
        .build()
        .await
        .unwrap();
    let p = hookd_dbus::ManagerProxy::new(&client).await.unwrap();
    let xml = "<domain><name>vm7</name><uuid>u7</uuid><devices><interface type='ethernet'>\
               <mac address='52:54:00:00:00:07'/><target dev='vnet7'/></interface></devices></domain>";
    // The first call as the hook makes it, on hookd's hook socket: its
    // signals reach the bus all the same.
    let hook_conn = zbus::connection::Builder::unix_stream(
        std::os::unix::net::UnixStream::connect(_run.path().join("hook.sock")).unwrap(),
    )
    .p2p()
    .build()
    .await
    .unwrap();
    hookd_dbus::ManagerProxy::new(&hook_conn)
        .await
        .unwrap()
        .hook_event("vm7", "start", "begin", "-", xml)
        .await
        .unwrap();
    p.hook_event("vm7", "started", "begin", "-", xml)
        .await
        .unwrap();
    p.hook_event("vm7", "stopped", "end", "-", xml)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    for pid in [monitor.id(), outsider.id()] {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let (out, outsider) = tokio::task::spawn_blocking(move || {
        (
            monitor.wait_with_output().unwrap(),
            outsider.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    // It ran until stopped (no error on stderr) and heard nothing.
    assert_eq!(
        (
            String::from_utf8_lossy(&outsider.stdout).to_string(),
            String::from_utf8_lossy(&outsider.stderr).to_string()
        ),
        (String::new(), String::new()),
        "a caller outside the read group hears nothing"
    );
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
            // `started` with nothing changed since `start` applies nothing.
            "DomainAttached",
            "PolicyApplied",
            "DomainDetached"
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["name"], "vm7");
    assert_eq!(lines[0]["phase"], "start");
}
