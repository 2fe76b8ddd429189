#!/usr/bin/env bash
# The whole test suite, as root: unit tests, privileged data-path tests, and
# the VM tests that boot TCG guests in a private libvirt sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test-all: run as root (privileged and VM tests need it)" >&2
  exit 1
fi
export CARGO_TERM_COLOR=never
echo "== build"
cargo build --workspace --all-targets
echo "== tests (unit, privileged, vm)"
cargo test --workspace -- --include-ignored --test-threads=1
echo "== packages (.deb and .rpm: build, check, install, VM tests on the installed system, remove, purge)"
bash scripts/test-packages.sh
