//! Runs the VM tests (run-vm-tests.sh, run-migration-tests.sh) against the
//! workspace's binaries.
//! Needs root, libvirt and qemu: `#[ignore]`d in a plain `cargo test`, run by
//! scripts/test-vm.sh with `--ignored`, where it fails if it cannot run.

use std::path::PathBuf;
use std::process::Command;

/// Runs one of the scripts; its output goes straight to the terminal,
/// one line per check.
fn run(script: &str) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bins = std::env::var_os("HOOKD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/debug"));
    let status = Command::new("bash")
        .arg(manifest.join(script))
        .arg(&bins)
        .status()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        status.success(),
        "{script} failed ({status}); see the checks above"
    );
}

#[test]
#[ignore = "VM tests: root + libvirt + qemu; run by scripts/test-vm.sh"]
fn hookd_with_real_guests_in_a_private_libvirt_sandbox() {
    run("run-vm-tests.sh");
}

#[test]
#[ignore = "VM tests: root + libvirt + qemu; run by scripts/test-vm.sh"]
fn live_migration_between_two_private_hypervisors_keeps_connections() {
    run("run-migration-tests.sh");
}
