//! A private dbus-daemon for tests and benchmarks, and a data plane that
//! does nothing, for the tests where the D-Bus side is what is measured.

use hookd::daemon::{CounterSource, DataPlane};
use hookd::datapath::{Attachment, DatapathError};
use hookd::plan::NicMode;
use hookd::state::NicRecord;
use hookd_bpf::layout::NicStats;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A data plane that attaches nothing: D-Bus access and load are under
/// test where it is used, not the kernel side.
pub struct NoPlane;

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
    fn counters(&self) -> std::sync::Arc<dyn CounterSource> {
        std::sync::Arc::new(NoPlane)
    }
}

impl CounterSource for NoPlane {
    fn stats(&self, _: u32) -> Option<NicStats> {
        None
    }
    fn rule_hits(&self, _: u32) -> Vec<((u8, u16), u64)> {
        Vec::new()
    }
}

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
