#!/usr/bin/env bash
# Tier 1, no root needed: the default `cargo test --workspace` set. XML and
# policy parsing on real libvirt domain shapes, the policy compiler, hook
# arguments and exit contract, the hook binary against a private
# dbus-daemon, the D-Bus interface on a private dbus-daemon and on the hook
# socket. The #[ignore]d tests are test-privileged.sh's and test-vm.sh's.
#   bash scripts/test-unit.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
echo "== tier 1: unit tests"
cargo_test unit --workspace
