#!/usr/bin/env bash
# An upgrade of the installed .deb under traffic. In a private libvirt
# sandbox that runs the installed hookd, vm1 (ingress deny by default)
# keeps 4 TCP connections and a UDP flow to its peer, which probes vm1's
# allowed and denied ports all the while (lib/migprobe.py). Then
# `dpkg -i NEXT_DEB` installs the next version, a build whose programs
# differ, and hookd is restarted as its unit would be. The tap must end up
# running the new programs, with no allowed packet lost and no denied one
# delivered.
#
# dpkg writes to /usr: this runs only inside the throwaway root of
# scripts/test-packages.sh (HOOKD_PKG_ROOT), after it installed the package,
# with HOOKD_BIN, HOOKCTL and HOOKD_HOOK_BIN naming the installed files:
#   bash vm-tests/run-deb-upgrade.sh NEXT_DEB
# Prints one line per check, the figures, and "deb-upgrade: N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${HOOKD_PKG_ROOT:-}" ] || [ ! -f "${1:-}" ]; then
    echo "run-deb-upgrade: usage: bash vm-tests/run-deb-upgrade.sh NEXT_DEB, inside scripts/test-packages.sh's throwaway root (it installs a package)" >&2
    exit 2
fi
NEXT_DEB=$(realpath "$1")
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"
sandbox_binaries /usr/sbin
source "$HERE/lib/check.sh"
source "$HERE/lib/probe.sh"
summary() { check_summary deb-upgrade; }
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT
sandbox_setup
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT
sandbox_start_daemons

tap_programs() { # tap_programs TAP: the ids of the programs on its pinned links
    # (bpftool 7.1 of Debian 12 shows no tap of a tcx link; every link its program)
    local pin
    for pin in /sys/fs/bpf/hookd/links/*/"$1"-*; do
        bpftool -j link show pinned "$pin" | jq .prog_id
    done | jq -sc 'sort'
}
tags() { # tags IDS_JSON: the programs' instruction tags
    local id
    for id in $(jq '.[]' <<<"$1"); do bpftool -j prog show id "$id" | jq -r .tag; done | sort | tr '\n' ' '
}
version() { dpkg-query -W -f='${Version}' hookd; }

probe_policy "" > "$SB/vm1.policy"
sandbox_define_vm vm1 52:54:00:00:00:4a 192.0.2.40/24 192.0.2.1 mig "$SB/vm1.policy"
check "virsh start vm1 (installed hookd $(version))" sandbox_start_vm vm1
check "vm1's guest is up" sandbox_wait_console vm1 'GUEST DONE' 150
probe_start 192.0.2.1 192.0.2.40
probe_check_flows
TAP=$(sandbox_vm_tap vm1)
before=$(tap_programs "$TAP")
echo "# $TAP runs programs $before, tags $(tags "$before")"
check "vm1's tap runs hookd's two programs" test "$(jq length <<<"$before")" -eq 2
sleep 2

echo "# dpkg -i $(basename "$NEXT_DEB") under traffic, then hookd restarted as its unit does"
t0=$(sb_now)
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$NEXT_DEB" </dev/null > "$SB/dpkg.txt" 2>&1 || {
    cat "$SB/dpkg.txt"
    false
}
sed 's/^/#   /' "$SB/dpkg.txt" | grep 'hookd:' || true
check "the next version is installed ($(version))" test "$(version)" = "$(dpkg-deb -f "$NEXT_DEB" Version)"
sandbox_stop_hookd TERM
sandbox_start_hookd
echo "# upgraded and restarted in $(sb_since "$t0") s"
after=$(tap_programs "$TAP")
echo "# $TAP runs programs $after, tags $(tags "$after")"
check "vm1's tap runs two new programs (other ids)" test "$(jq -n --argjson a "$before" --argjson b "$after" '($b | length) == 2 and ($a - ($a - $b)) == []')" = true
check "... of the new build (other instruction tags)" test "$(tags "$before")" != "$(tags "$after")"
check "hookd logged the replacement on the running tap" \
    sh -c "grep 'replaced the program on a running tap' '$SB/hookd.log' | grep -q '$TAP'"
check "hookd: vm1 is attached" sh -c "\"$HOOKCTL\" show vm1 --json | jq -e '.nics[0].tap == \"$TAP\"' >/dev/null"
sleep 3 # traffic on the new programs
probe_stop
probe_check_figures
