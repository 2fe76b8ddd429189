//! Tier-3 tests of hookd: a private libvirt hypervisor sandbox booting TCG
//! guests. The sandbox is shell (lib/sandbox.sh, guest/), driven by
//! run-vm-tests.sh; tests/vm.rs runs it under `cargo test`.
