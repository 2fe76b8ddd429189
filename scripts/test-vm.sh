#!/usr/bin/env bash
# Tier 3, as root: vm-tests/run-vm-tests.sh, run by the #[ignore]d test of
# the hookd-vm-tests crate, boots TCG guests with `virsh start` in a private
# libvirt sandbox (own network, mount and PID namespaces) and checks
# enforcement, counters, security groups, live policy changes, restart,
# cleanup, invalid policy and an absent hookd; then run-migration-tests.sh
# live-migrates a guest back and forth between two such hypervisors under
# traffic, with its failure cases and downtime figures. It runs the debug
# binaries of target/debug, built first.
#   bash scripts/test-vm.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root test-vm
echo "== tier 3: VM tests"
"$CARGO" build --workspace
cargo_test vm -p hookd-vm-tests -- --ignored --test-threads=1
