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
