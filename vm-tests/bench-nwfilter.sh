#!/usr/bin/env bash
# hookd against libvirt nwfilter on the data path, both driven by a real
# libvirtd, at N = 10 to 10,000 rules: hookd/benches/compare.rs --libvirt
# (see hookd/benches/compare/bridged.rs) run inside a private sandbox (see
# lib/sandbox.sh) with dbus-daemon, virtlogd, hookd and libvirtd with
# hookd's hook. hookd leaves VMs without policy alone (count_unmanaged =
# false), so the unfiltered guest is a true baseline.
# Run as root from the repository:
#   bash vm-tests/bench-nwfilter.sh BIN_DIR COMPARE_BENCH_BINARY OUT_DIR
# Writes OUT_DIR/datapath-libvirt.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"

[ $# -eq 3 ] || sb_die "usage: bench-nwfilter.sh BIN_DIR COMPARE_BENCH_BINARY OUT_DIR"
sandbox_binaries "$1"
COMPARE=$2
OUT=$3
[ -x "$COMPARE" ] || sb_die "$COMPARE: not an executable (cargo bench -p hookd --bench compare --no-run)"
mkdir -p "$OUT"
trap 'rc=$?; sandbox_cleanup $rc' EXIT
sandbox_setup
printf 'count_unmanaged = false\n' > "$SB/hookd.toml"
install -m 0644 "$SB/hookd.toml" /etc/hookd/hookd.toml
sandbox_start_daemons
"$COMPARE" --libvirt "$OUT"
