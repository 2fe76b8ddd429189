//! A private dbus-daemon (system-type, stopped on drop) for the tests and
//! benchmarks of hookd and of the libvirt hook. Depends on std, tempfile
//! and hookd-dbus only, so both crates include it by path.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A system-type bus with the defaults of Debian's system.conf that matter
/// here (deny method calls by default) plus hookd's policy file.
pub fn start_bus(dir: &std::path::Path, with_hookd_policy: bool) -> (std::process::Child, String) {
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
    // The socket file exists from bind(); connections are accepted only
    // after listen(): wait for one to get through.
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
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
pub struct PrivateBus {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    pub fn start(with_hookd_policy: bool) -> PrivateBus {
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

/// How a hook call reaches hookd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Channel {
    /// hookd's own socket, as the hook does when hookd listens there.
    Socket,
    /// The system bus, the hook's fallback.
    Bus,
}

/// One hook call (`op` `begin` for domain `name`) as the hook makes it:
/// connect, call, disconnect. Returns how long it took, or what failed.
pub async fn hook_call(
    ch: Channel,
    address: &str,
    socket: &std::path::Path,
    name: &str,
    op: &str,
    xml: &str,
) -> Result<Duration, String> {
    let t = Instant::now();
    let conn = match ch {
        Channel::Bus => zbus::connection::Builder::address(address),
        Channel::Socket => zbus::connection::Builder::unix_stream(
            std::os::unix::net::UnixStream::connect(socket)
                .map_err(|e| format!("{}: {e}", socket.display()))?,
        )
        .p2p(),
    }
    .build()
    .await
    .map_err(|e| format!("connecting: {e}"))?;
    let p = hookd_dbus::ManagerProxy::new(&conn)
        .await
        .map_err(|e| e.to_string())?;
    p.hook_event(name, op, "begin", "-", xml)
        .await
        .map_err(|e| format!("{op} of {name}: {e}"))?;
    Ok(t.elapsed())
}

/// hookd's D-Bus service as the daemon serves it (its core, a temporary
/// state directory, anybody may read) over the quiet stand-in data plane,
/// on a private bus and on its hook socket, served on a runtime of its own
/// with 2 workers, as hookd runs. Stopped on drop.
pub struct ServedDaemon {
    pub bus: PrivateBus,
    /// The hook socket.
    pub socket: std::path::PathBuf,
    _server: hookd::api::Served,
    _run: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl ServedDaemon {
    pub fn start() -> ServedDaemon {
        let bus = PrivateBus::start(false);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let run = tempfile::tempdir().expect("tempdir");
        let daemon = hookd::core::Daemon::new(
            Box::new(crate::plane::FakePlane::quiet()),
            hookd::core::records::StateDir::open(run.path()).expect("state dir"),
            true,
        );
        let view = daemon.view();
        let daemon = std::sync::Arc::new(tokio::sync::Mutex::new(daemon));
        let socket = run.path().join("hook.sock");
        let server = rt
            .block_on(hookd::api::serve(
                zbus::connection::Builder::address(bus.address.as_str()),
                daemon,
                view,
                hookd::api::Readers::Everyone,
                None,
                &socket,
            ))
            .expect("hookd's service on the bus and the hook socket");
        ServedDaemon {
            bus,
            socket,
            _server: server,
            _run: run,
            _rt: rt,
        }
    }
}
