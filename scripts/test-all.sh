#!/usr/bin/env bash
# The whole test suite, as root, tier by tier, stopping at the first tier
# that fails:
#   install-deps.sh      the Debian packages (nothing when all are present)
#   build                cargo build --workspace --all-targets
#   test-unit.sh         tier 1, no root: the default cargo test set
#   fuzz.sh 30           the parsers of outside input under libFuzzer, 30 s
#                        each (a short run; longer: bash scripts/fuzz.sh 3600)
#   test-privileged.sh   tier 2: the #[ignore]d eBPF, tap, netns and bus tests
#   test-vm.sh           tier 3: TCG guests in a private libvirt sandbox
#   test-packages.sh     .deb and .rpm: build, check, install/upgrade/VM
#                        tests/remove/purge in a throwaway root
# The static gates are scripts/lint.sh (CI runs it before this).
#   bash scripts/test-all.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root test-all
if ! command -v "$CARGO" >/dev/null; then
    echo "test-all: $CARGO not found: install Rust (rustup, 1.95 or newer)" >&2
    exit 1
fi
bash scripts/install-deps.sh

done_tiers=()
summary() {
    local line
    echo "== test-all summary"
    for line in "${done_tiers[@]}"; do echo "  $line"; done
}
tier() { # tier NAME COMMAND...
    local name=$1 t0=$SECONDS
    shift
    echo "== test-all: $name"
    if "$@"; then
        done_tiers+=("$name: ok ($((SECONDS - t0)) s)")
    else
        done_tiers+=("$name: FAILED ($((SECONDS - t0)) s)")
        summary
        exit 1
    fi
}
tier build "$CARGO" build --workspace --all-targets
tier unit bash scripts/test-unit.sh
tier fuzz bash scripts/fuzz.sh 30
tier privileged bash scripts/test-privileged.sh
tier vm bash scripts/test-vm.sh
tier packages bash scripts/test-packages.sh
summary
