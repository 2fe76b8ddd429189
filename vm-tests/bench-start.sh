#!/usr/bin/env bash
# What hookd adds to `virsh start`: in a private sandbox (see lib/sandbox.sh),
# TCG guests are started and destroyed again and again, timing each
# `virsh start`, in interleaved rounds:
#   - libvirtd without hookd's hook (the baseline);
#   - libvirtd with the hook: a guest without policy, and one with policy;
#   - the baseline and the guest with policy again with the kernel's RCU
#     grace periods expedited (/sys/kernel/rcu_expedited, restored after:
#     tcx attaches wait for grace periods, and so does some of libvirt);
#   - libvirtd without the hook, a guest with nwfilter clean-traffic.
# libvirtd reads its hooks when it starts, so it is restarted between the
# with-hook and without-hook halves of each round.
# Run as root from the repository:
#   bash vm-tests/bench-start.sh [BIN_DIR] [OUT.md]
# Prints (and writes to OUT.md) a markdown table of p50/p99 per variant.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"

sandbox_binaries "${1:-$REPO/target/debug}"
OUT=${2:-}
ROUNDS=${HOOKD_BENCH_ROUNDS:-10}
RCU_EXPEDITED=/sys/kernel/rcu_expedited
RCU_SAVED=$(cat "$RCU_EXPEDITED")
sandbox_setup
# After sandbox_setup, which sets its own EXIT trap.
trap 'rc=$?; echo "$RCU_SAVED" > "$RCU_EXPEDITED"; sandbox_cleanup $rc' EXIT
sandbox_start_daemons

cat > "$SB/policy.xml" <<'P'
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="52:54:00:00:00:2c">
        <hookd:address prefix="192.0.2.40/32"/>
        <hookd:ingress default="deny">
          <hookd:rule action="allow" protocol="tcp" ports="22"/>
        </hookd:ingress>
      </hookd:interface>
    </hookd:policy>
P
sandbox_define_vm plain 52:54:00:00:00:2b 192.0.2.30/24 192.0.2.1 idle
sandbox_define_vm managed 52:54:00:00:00:2c 192.0.2.40/24 192.0.2.1 idle "$SB/policy.xml"
SB_VM_IFACE_EXTRA="
      <filterref filter='clean-traffic'><parameter name='IP' value='192.0.2.50'/></filterref>" \
    sandbox_define_vm nwfilter 52:54:00:00:00:2d 192.0.2.50/24 192.0.2.1 idle
cp /etc/libvirt/hooks/qemu.d/50-hookd "$SB/50-hookd.saved"

# start_ms NAME FILE: time one `virsh start` (ms) into FILE, then destroy.
start_ms() {
    local t0 t1
    t0=$(sb_now)
    sb_virsh start "$1" >/dev/null || sb_die "virsh start $1 failed"
    t1=$(sb_now)
    sb_virsh destroy "$1" >/dev/null
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }' >> "$SB/$2"
}
with_hook() {
    sandbox_stop_libvirtd
    install -m 0755 "$SB/50-hookd.saved" /etc/libvirt/hooks/qemu.d/50-hookd
    sandbox_start_libvirtd
}
# expedited CMD...: CMD with the host's rcu_expedited at 1, then as it was.
expedited() {
    echo 1 > "$RCU_EXPEDITED"
    "$@"
    echo "$RCU_SAVED" > "$RCU_EXPEDITED"
}
without_hook() {
    sandbox_stop_libvirtd
    rm -f /etc/libvirt/hooks/qemu.d/50-hookd
    sandbox_start_libvirtd
}

for r in $(seq "$ROUNDS"); do
    without_hook
    start_ms plain nohook
    start_ms nwfilter nwfilter
    expedited start_ms plain nohook-exp
    with_hook
    start_ms plain hook-plain
    start_ms managed hook-policy
    expedited start_ms managed hook-policy-exp
    sb_log "round $r/$ROUNDS done"
done

# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
pct() { sort -n "$SB/$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int(p * (NR - 1) + 0.5) + 1; print v[i] }'; }
# base VARIANT P: the baseline percentile it is compared with (expedited
# grace periods speed up libvirt's own start as well).
base() { case $1 in *-exp) pct nohook-exp "$2" ;; *) pct nohook "$2" ;; esac; }
{
    echo "| variant | \`virsh start\` p50 | p99 | added at p50 | added at p99 |"
    echo "|---|---|---|---|---|"
    for v in nohook hook-plain hook-policy nwfilter nohook-exp hook-policy-exp; do
        case $v in
            nohook) label="no hook (baseline)" ;;
            nohook-exp) label="no hook, host's \`rcu_expedited\` = 1 (baseline of the next row)" ;;
            hook-plain) label="hookd's hook, VM without policy" ;;
            hook-policy) label="hookd's hook, VM with policy" ;;
            hook-policy-exp) label="hookd's hook, VM with policy, host's \`rcu_expedited\` = 1" ;;
            nwfilter) label="no hook, nwfilter clean-traffic" ;;
        esac
        p50=$(pct "$v" 0.5)
        p99=$(pct "$v" 0.99)
        awk -v l="$label" -v a="$p50" -v b="$p99" -v c="$(base "$v" 0.5)" -v d="$(base "$v" 0.99)" \
            'BEGIN { printf "| %s | %.0f ms | %.0f ms | %+.0f ms | %+.0f ms |\n", l, a, b, a - c, b - d }'
    done
    echo
    for v in hook-policy hook-policy-exp; do
        added=$(awk -v b="$(pct "$v" 0.99)" -v d="$(base "$v" 0.99)" 'BEGIN { printf "%.0f", b - d }')
        if [ "$added" -lt 20 ]; then verdict=pass; else verdict="short: ${added} ms"; fi
        case $v in
            hook-policy) what="VM with policy" ;;
            *) what="VM with policy, host's \`rcu_expedited\` = 1" ;;
        esac
        echo "- Goal: hook-added \`virsh start\` latency p99 under 20 ms ($what): **$verdict** ($ROUNDS starts per variant, interleaved)."
    done
} > "$SB/start.md"
cat "$SB/start.md"
[ -z "$OUT" ] || cp "$SB/start.md" "$OUT"
