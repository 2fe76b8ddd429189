//! Runs the VM tests (run-vm-tests.sh) against the workspace's binaries.
//! Needs root, libvirt and qemu: `#[ignore]`d in a plain `cargo test`, run by
//! scripts/test-vm.sh with `--ignored`, where it fails if it cannot run.

use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "VM tests: root + libvirt + qemu; run by scripts/test-vm.sh"]
fn hookd_with_real_guests_in_a_private_libvirt_sandbox() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bins = std::env::var_os("HOOKD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/debug"));
    // The script's output goes straight to the terminal: one line per check.
    let status = Command::new("bash")
        .arg(manifest.join("run-vm-tests.sh"))
        .arg(&bins)
        .status()
        .expect("running run-vm-tests.sh");
    assert!(
        status.success(),
        "vm-tests failed ({status}); see the checks above"
    );
}
