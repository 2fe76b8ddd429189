#!/usr/bin/env bash
# After `dpkg -r hookd` (or rpm -e): a libvirtd that still has hookd's hook
# file (kept as a configuration file) must start every VM, with or without
# hookd policy. Run as root: bash vm-tests/run-after-removal.sh HOOK_FILE
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"

export HOOKD_HOOK_BIN=${1:?usage: run-after-removal.sh HOOK_FILE}
unset HOOKD_BIN HOOKD_DBUS_POLICY
source "$HERE/lib/check.sh"
trap 'rc=$?; echo "after-removal: $PASS passed, $FAIL failed"; sandbox_cleanup $rc' EXIT
sandbox_setup
trap 'rc=$?; echo "after-removal: $PASS passed, $FAIL failed"; sandbox_cleanup $rc' EXIT
sandbox_start_daemons

cat > "$SB/p.policy" <<'P'
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface><hookd:address prefix="192.0.2.10/32"/></hookd:interface>
    </hookd:policy>
P
sandbox_define_vm withpolicy 52:54:00:00:00:1a 192.0.2.10/24 192.0.2.1 idle "$SB/p.policy"
sandbox_define_vm plain 52:54:00:00:00:1b 192.0.2.11/24 192.0.2.1 idle
check "hookd removed: a VM with hookd policy still starts" sandbox_start_vm withpolicy
check "hookd removed: a VM without policy starts" sandbox_start_vm plain
check "the guest boots" sandbox_wait_console plain 'GUEST READY' 120
[ "$FAIL" -eq 0 ]
