#!/usr/bin/env bash
# Tier 2, as root: the #[ignore]d tests of every crate but the VM tests'.
# The eBPF programs through BPF_PROG_TEST_RUN, and on real taps in private
# network namespaces where a test plays the VM through the tap's file
# descriptor (tcx and netlink attach, daemon restart, cleanup); who may call
# what on a private bus with the shipped bus policy. One test at a time.
# They fail, never skip, when they cannot run (not root, no BTF, no tcx).
# The differential tests run 1,000,000 frames a test here (about 2 minutes;
# HOOKD_DIFF_FRAMES and HOOKD_DIFF_SEED choose another run).
#   bash scripts/test-privileged.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root test-privileged
echo "== tier 2: privileged tests"
export HOOKD_DIFF_FRAMES=${HOOKD_DIFF_FRAMES:-1000000}
cargo_test privileged --workspace --exclude hookd-vm-tests -- --ignored --test-threads=1
