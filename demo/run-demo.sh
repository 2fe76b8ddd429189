#!/usr/bin/env bash
# hookd's main job, end to end, in a throwaway sandbox: a private libvirtd
# (own network, mount and PID namespaces) boots two tiny TCG guests with
# `virsh start`; hookd attaches its eBPF programs to their taps from the
# libvirt hook; one guest carries hookd policy and tries to spoof its IP and
# its MAC, the other carries none. Prints what passed, what was dropped, and
# the counters. Leaves nothing behind. Run as root from the repository:
#   bash demo/run-demo.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

if [ -z "${HOOKD_SANDBOX_INNER:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
    command -v cargo >/dev/null || { echo "demo: cargo not found: install Rust (rustup, 1.95 or newer)" >&2; exit 1; }
    bash "$REPO/scripts/install-deps.sh"
    echo "demo: building hookd (cargo build --workspace)"
    (cd "$REPO" && cargo build --workspace --quiet)
fi
source "$REPO/vm-tests/lib/sandbox.sh"
sandbox_enter "$0" "$@"

BIN=$REPO/target/debug
export HOOKD_BIN=$BIN/hookd HOOKD_HOOK_BIN=$BIN/hookd-qemu-hook
export HOOKD_DBUS_POLICY=$REPO/dbus/org.hookd.Hookd1.conf
HOOKCTL=$BIN/hookctl
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

sandbox_setup
sandbox_start_daemons

cat > "$SB/web.policy" <<'P'
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="52:54:00:00:00:0a">
        <hookd:address prefix="192.0.2.10/32"/>
      </hookd:interface>
    </hookd:policy>
P
cat > "$SB/db.policy" <<'P'
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="52:54:00:00:00:2a">
        <hookd:address prefix="192.0.2.20/32"/>
        <hookd:ingress default="deny">
          <hookd:rule action="allow" protocol="tcp" ports="8080" remote="192.0.2.0/24"/>
          <hookd:rule action="deny" protocol="tcp" ports="9000" remote="192.0.2.1/32" log="true"/>
        </hookd:ingress>
      </hookd:interface>
    </hookd:policy>
P
sandbox_define_vm web 52:54:00:00:00:0a 192.0.2.10/24 192.0.2.1 spoof "$SB/web.policy"
sandbox_define_vm db 52:54:00:00:00:2a 192.0.2.20/24 192.0.2.1 fw "$SB/db.policy"
sandbox_define_vm legacy 52:54:00:00:00:0b 192.0.2.11/24 192.0.2.1 spoof

say "the policy in web's domain XML, as hookd reads it (hookctl explain, no daemon needed)"
sb_virsh dumpxml web > "$SB/web.dump.xml"
"$HOOKCTL" explain "$SB/web.dump.xml"

say "virsh start web; virsh start legacy; virsh start db (the libvirt hook calls hookd before the guests run)"
for vm in web legacy db; do
    t0=$(sb_now)
    sandbox_start_vm "$vm"
    echo "virsh start $vm: $(sb_since "$t0") s"
done
"$HOOKCTL" domains

say "both guests: first a ping from a spoofed IP (192.0.2.99), then a legitimate ping, then one from a changed MAC, then legitimate again"
sandbox_wait_console web 'GUEST DONE' 150
sandbox_wait_console legacy 'GUEST DONE' 150
for vm in web legacy; do
    echo "$vm:"
    grep -o 'RESULT .*' "$SB/$vm.console" | tr -d '\r' | while read -r _ r; do
        step=${r%=*} res=${r#*=}
        case $res in ok) verdict="reply received (passed)";; *) verdict="no reply (dropped)";; esac
        printf '  %-12s %s\n' "$step" "$verdict"
    done
done

say "counters (hookctl show web / legacy)"
"$HOOKCTL" show web
"$HOOKCTL" show legacy | sed -n '1,4p;/from_vm_packets/p;/to_vm_packets/p'

say "security groups: db serves tcp 8080 (allowed from 192.0.2.0/24) and 9000 (denied, logged); ingress default deny"
sandbox_wait_console db 'GUEST READY' 150 >/dev/null
sleep 2
try_tcp() {
    if timeout 3 bash -c "exec 3<>/dev/tcp/192.0.2.20/$1" 2>/dev/null; then
        echo "host -> db tcp $1: connected (allowed)"
    else
        echo "host -> db tcp $1: no connection (dropped)"
    fi
}
try_tcp 8080
try_tcp 9000
busybox ping -c 1 -W 1 192.0.2.20 >/dev/null 2>&1 && echo "host -> db ping: reply" || echo "host -> db ping: no reply (default deny)"
"$HOOKCTL" show db | sed -n '/allowed sources/,$p'
echo
"$HOOKCTL" events db | head -4

say "a live policy change, with libvirt's own tool: virsh metadata --live allows tcp 9000 on the running db"
sb_virsh metadata db urn:hookd:policy:1 --key hookd --live --set '<policy>
  <interface mac="52:54:00:00:00:2a">
    <address prefix="192.0.2.20/32"/>
    <ingress default="deny"><rule action="allow" protocol="tcp" ports="8080,9000" remote="192.0.2.0/24"/></ingress>
  </interface>
</policy>' >/dev/null
for _ in $(seq 50); do
    "$HOOKCTL" policy get db 2>/dev/null | grep -q '8080,9000' && break
    sleep 0.2
done
"$HOOKCTL" policy get db
try_tcp 9000

say "hookctl --json, for management software"
"$HOOKCTL" show web --json | jq -c '{name, attached_at, nic: .nics[0] | {tap, attach, mode, counters: [.counters[] | select(.value > 0)] | map({(.name): .value}) | add}}'

say "virsh destroy web: hookd detaches and forgets it"
UUID=$(sb_virsh domuuid web)
sb_virsh destroy web >/dev/null
"$HOOKCTL" domains
ls "/sys/fs/bpf/hookd/links/$UUID" >/dev/null 2>&1 && echo "link pins left behind!" || echo "no pins left for web under /sys/fs/bpf/hookd/links"
echo
echo "demo: done (the sandbox, its daemons and guests are removed on exit)"
