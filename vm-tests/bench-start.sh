#!/usr/bin/env bash
# What hookd adds to `virsh start`: in a private sandbox (see lib/sandbox.sh),
# TCG guests are started and destroyed again and again, timing each
# `virsh start`, in interleaved rounds:
#   - libvirtd without hookd's hook (the baseline);
#   - libvirtd with a hook that only reads its input (what any hook costs:
#     libvirt runs it three times per start);
#   - libvirtd with the hook: a guest without policy, and one with policy
#     (hookd's default, `attach = "staged"`: a cls_bpf filter at start, no
#     RCU grace period, and tcx links a second later);
#   - the guest with policy again, hookd restarted with `attach = "netlink"`
#     (filters only), and with `attach = "tcx"` (tcx links at start);
#   - the baseline and the guest with policy again with the kernel's RCU
#     grace periods expedited (/sys/kernel/rcu_expedited, restored after:
#     tcx attaches wait for grace periods, and so does some of libvirt);
#   - libvirtd without the hook, a guest with nwfilter clean-traffic.
# libvirtd reads its hooks when it starts, so it is restarted between the
# with-hook and without-hook halves of each round.
# Run as root from the repository:
#   bash vm-tests/bench-start.sh [BIN_DIR] [OUT.md]
# Prints (and writes to OUT.md) a markdown table of p50/p99 per variant:
# the whole `virsh start`, what it adds to the baseline, and the time libvirt
# spent running hooks (from its own debug log of the commands it runs, so
# it has none of the spread of a TCG start). Each restart of libvirtd or
# hookd is followed by one start that is not counted.
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
# libvirt's debug log of the commands it runs: when each hook began and ended.
sed -i 's|^log_outputs = .*|log_outputs = "1:file:/var/log/libvirt/libvirtd.log"\nlog_filters = "1:util.command 4:*"|' /etc/libvirt/libvirtd.conf
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
printf '#!/bin/sh\ncat >/dev/null\n' > "$SB/50-empty"
cat /etc/hookd/hookd.toml > "$SB/hookd.toml.saved" 2>/dev/null || : > "$SB/hookd.toml.saved"

LVLOG=/var/log/libvirt/libvirtd.log
# hook_ms OPS: from libvirt's log of one start (stdin), the time libvirt
# spent running hooks (ms): each hook's "About to run" to its "Result",
# summed; each hook's own time goes to the file OPS as "OPERATION MS".
hook_ms() {
    awk -v ops="$1" '
        function t(s) { split(s, a, /[:+]/); return a[1] * 3600 + a[2] * 60 + a[3] }
        / About to run .*\/etc\/libvirt\/hooks\// { began[$3] = t($2); op[$3] = $(NF - 2); next }
        /virCommandRun:.* Result / && ($3 in began) {
            d = t($2) - began[$3]; if (d < 0) d += 86400
            sum += d; printf "%s %.0f\n", op[$3], d * 1000 >> ops; delete began[$3]
        }
        END { printf "%.0f\n", sum * 1000 }'
}
# start_ms NAME FILE: time one `virsh start` (ms) into FILE, and the time
# in hooks into FILE.hooks, then destroy.
start_ms() {
    local t0 t1 from
    from=$(wc -l < "$LVLOG")
    t0=$(sb_now)
    sb_virsh start "$1" >/dev/null || sb_die "virsh start $1 failed"
    t1=$(sb_now)
    tail -n +"$((from + 1))" "$LVLOG" | hook_ms "$SB/$2.ops" >> "$SB/$2.hooks"
    sb_virsh destroy "$1" >/dev/null
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }' >> "$SB/$2"
}
# warm NAME: a start that is not counted, so that no counted start is the
# first after a restart of libvirtd or hookd.
warm() { start_ms "$1" warmup; }
# libvirtd_with HOOK: restart libvirtd (it reads its hooks when it starts)
# with HOOK as hookd's hook, or none for "", then one start not counted.
libvirtd_with() {
    sandbox_stop_libvirtd
    if [ -n "$1" ]; then
        install -m 0755 "$1" /etc/libvirt/hooks/qemu.d/50-hookd
    else
        rm -f /etc/libvirt/hooks/qemu.d/50-hookd
    fi
    sandbox_start_libvirtd
    warm plain
}
# expedited CMD...: CMD with the host's rcu_expedited at 1, then as it was.
expedited() {
    echo 1 > "$RCU_EXPEDITED"
    "$@"
    echo "$RCU_SAVED" > "$RCU_EXPEDITED"
}
# hookd_with TOML: restart hookd with TOML as its hookd.toml.
hookd_with() {
    cp "$1" /etc/hookd/hookd.toml
    sandbox_stop_hookd TERM
    sandbox_start_hookd
}
# attach_is WANT: the managed guest's NIC is attached as WANT.
attach_is() {
    [ "$("$HOOKCTL" show managed --json | jq -r '.nics[0].attach')" = "$1" ] \
        || sb_die "hookd did not attach by $1 with $(cat /etc/hookd/hookd.toml)"
}
# attached_by MODE CMD...: CMD with hookd on `attach = "MODE"`, then hookd
# back on the configuration it had.
attached_by() {
    local mode=$1
    shift
    { cat "$SB/hookd.toml.saved"; echo "attach = \"$mode\""; } > "$SB/hookd-$mode.toml"
    hookd_with "$SB/hookd-$mode.toml"
    # The start not counted, which also checks that the setting took.
    sb_virsh start managed >/dev/null || sb_die "virsh start managed failed"
    attach_is "$mode"
    sb_virsh destroy managed >/dev/null
    "$@"
    hookd_with "$SB/hookd.toml.saved"
}

for r in $(seq "$ROUNDS"); do
    libvirtd_with ""
    start_ms plain nohook
    start_ms nwfilter nwfilter
    expedited start_ms plain nohook-exp
    libvirtd_with "$SB/50-empty"
    start_ms plain empty-hook
    libvirtd_with "$SB/50-hookd.saved"
    start_ms plain hook-plain
    start_ms managed hook-policy
    expedited start_ms managed hook-policy-exp
    attached_by netlink start_ms managed hook-policy-nl
    attached_by tcx start_ms managed hook-policy-tcx
    sb_log "round $r/$ROUNDS done"
done

# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
pct() { sort -n "$SB/$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int(p * (NR - 1) + 0.5) + 1; print v[i] }'; }
# verdict MS: the goal, under 20 ms, met or short.
verdict() { if [ "$1" -lt 20 ]; then echo pass; else echo "short: $1 ms"; fi; }
# base VARIANT P: the baseline percentile it is compared with (expedited
# grace periods speed up libvirt's own start as well).
base() { case $1 in *-exp) pct nohook-exp "$2" ;; *) pct nohook "$2" ;; esac; }
{
    echo "| variant | \`virsh start\` p50 | p99 | added at p50 | added at p99 | in hooks p50 | in hooks p99 |"
    echo "|---|---|---|---|---|---|---|"
    for v in nohook empty-hook hook-plain hook-policy hook-policy-nl hook-policy-tcx nwfilter nohook-exp hook-policy-exp; do
        case $v in
            nohook) label="no hook (baseline)" ;;
            nohook-exp) label="no hook, host's \`rcu_expedited\` = 1 (baseline of the next row)" ;;
            empty-hook) label="a hook that only reads its input (libvirt's own cost of a hook)" ;;
            hook-policy-nl) label="hookd's hook, VM with policy, \`attach = \"netlink\"\`" ;;
            hook-policy-tcx) label="hookd's hook, VM with policy, \`attach = \"tcx\"\`" ;;
            hook-plain) label="hookd's hook, VM without policy" ;;
            hook-policy) label="hookd's hook, VM with policy (\`staged\`, the default)" ;;
            hook-policy-exp) label="hookd's hook, VM with policy, host's \`rcu_expedited\` = 1" ;;
            nwfilter) label="no hook, nwfilter clean-traffic" ;;
        esac
        p50=$(pct "$v" 0.5)
        p99=$(pct "$v" 0.99)
        awk -v l="$label" -v a="$p50" -v b="$p99" -v c="$(base "$v" 0.5)" -v d="$(base "$v" 0.99)" \
            -v h="$(pct "$v.hooks" 0.5)" -v i="$(pct "$v.hooks" 0.99)" \
            'BEGIN { printf "| %s | %.0f ms | %.0f ms | %+.0f ms | %+.0f ms |", l, a, b, a - c, b - d
                     if (i > 0) printf " %.0f ms | %.0f ms |\n", h, i; else print " - | - |" }'
    done
    echo
    for v in hook-policy hook-policy-nl hook-policy-tcx hook-policy-exp; do
        added=$(awk -v b="$(pct "$v" 0.99)" -v d="$(base "$v" 0.99)" 'BEGIN { printf "%.0f", b - d }')
        case $v in
            hook-policy) what="VM with policy" ;;
            hook-policy-nl) what="VM with policy, \`attach = \"netlink\"\`" ;;
            hook-policy-tcx) what="VM with policy, \`attach = \"tcx\"\`" ;;
            *) what="VM with policy, host's \`rcu_expedited\` = 1" ;;
        esac
        echo "- Goal: hook-added \`virsh start\` latency p99 under 20 ms ($what): **$(verdict "$added")** ($ROUNDS starts per variant, interleaved)."
        hooks=$(pct "$v.hooks" 0.99)
        echo "  - The same goal on the time libvirt spent in hooks, p99: **$(verdict "$hooks")** (${hooks} ms)."
    done
    echo
    echo "Time in each hook, p50 / p99 (ms):"
    echo
    echo "| variant | prepare | start | started |"
    echo "|---|---|---|---|"
    for v in empty-hook hook-plain hook-policy hook-policy-nl hook-policy-tcx hook-policy-exp; do
        row="| $v |"
        for o in prepare start started; do
            awk -v o="$o" '$1 == o { print $2 }' "$SB/$v.ops" > "$SB/$v.$o"
            row="$row $(pct "$v.$o" 0.5) / $(pct "$v.$o" 0.99) |"
        done
        echo "$row"
    done
} > "$SB/start.md"
cat "$SB/start.md"
[ -z "$OUT" ] || cp "$SB/start.md" "$OUT"
