#!/usr/bin/env bash
# hookd's side-by-side benchmarks, as root on a Debian 12 machine:
#   bash scripts/bench.sh [RESULTS_DIR]
# Writes RESULTS_DIR (default bench-results/<UTC time>) with report.md,
# datapath.svg and datapath-libvirt.svg: delivered packets and CPU per packet
# of hookd against no filter, iptables and nftables at 10 to 10,000 rules
# (hookd/benches/compare.rs), and against libvirt nwfilter in a private
# libvirtd (vm-tests/bench-nwfilter.sh); per-packet cost under
# BPF_PROG_TEST_RUN (datapath.rs); the control plane (control_plane.rs,
# vm-tests/bench-start.sh); hook-call latency under a flood of management
# calls (hook_flood.rs).
# Every figure is measured in this one run; ratios matter, not absolutes.
# Traffic stays inside network namespaces the benchmark creates and
# deletes; each part has a time limit.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
bash scripts/install-deps.sh
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nftables iptables >/dev/null
# The control-plane parts set the host's rcu_expedited for a while and
# restore it; should one be killed first, this puts it back.
RCU_SAVED=$(cat /sys/kernel/rcu_expedited 2>/dev/null || echo 0)
trap 'echo "$RCU_SAVED" > /sys/kernel/rcu_expedited 2>/dev/null || true' EXIT
OUT=${1:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "bench: building"
cargo build --release --workspace 2>&1 | tail -1
cargo bench -p hookd --no-run 2>&1 | tail -1
echo "bench: data path, hookd against iptables and nftables (a few minutes)"
timeout 1800 cargo bench -q -p hookd --bench compare -- "$OUT" > "$OUT/compare.log"
echo "bench: data path, hookd against libvirt nwfilter in a private libvirtd (nwfilter takes minutes to instantiate 10,000 rules)"
COMPARE=$(cargo bench -q -p hookd --bench compare --no-run --message-format=json \
    | jq -r 'select(.executable != null and .target.name == "compare") | .executable')
timeout 3600 bash vm-tests/bench-nwfilter.sh target/release "$COMPARE" "$OUT" > "$OUT/nwfilter.log" 2>&1
echo "bench: VM to VM on one host: hookd's network stage against a bridge and kernel routing"
timeout 600 cargo bench -q -p hookd --bench compare -- "$OUT" --switch > "$OUT/switch.log" 2>&1
echo "bench: per-packet cost (BPF_PROG_TEST_RUN)"
timeout 1200 cargo bench -q -p hookd --bench datapath > "$OUT/per-packet.txt"
echo "bench: control plane (policy changes, attaching 1,000 taps, memory)"
timeout 1200 cargo bench -q -p hookd --bench control_plane -- "$OUT/control-plane.md" > /dev/null
echo "bench: what the hook adds to virsh start (TCG guests in a private libvirtd)"
timeout 900 bash vm-tests/bench-start.sh target/release "$OUT/start.md" > "$OUT/start.log" 2>&1
echo "bench: hook calls under a flood of management calls"
timeout 900 cargo bench -q -p hookd --bench hook_flood > "$OUT/hook-flood.txt"

{
    echo "# hookd benchmark report"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') in one run, as root, with \`bash scripts/bench.sh\`."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| kernel | $(uname -r) |"
    echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores |"
    echo "| hookd | $(git describe --always --dirty 2>/dev/null || echo unknown), version $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) |"
    echo "| rustc | $(rustc --version) |"
    echo "| iptables | $(iptables-legacy -V 2>&1) |"
    echo "| nftables | $(nft -v 2>&1) |"
    echo "| libvirt | $(libvirtd --version 2>&1 | head -1) |"
    echo "| host's \`rcu_expedited\` | $RCU_SAVED (outside the rows that set it to 1) |"
    echo
    echo "## Data path: hookd against no filter, iptables and nftables"
    echo
    echo "A generator plays a VM behind a tap and writes 64-byte UDP frames"
    echo "through the tap's file descriptor; the hypervisor namespace routes them"
    echo "to a veth whose far end counts what arrives. The tap write runs the"
    echo "receive path, filter included, in the writer's thread, so the rate is"
    echo "filter-bound and the writer's CPU time per delivered packet is the"
    echo "receiving side's cost. Medians of 3 interleaved rounds; spread is"
    echo "(max - min) / median. \"tcx-empty\" is an empty classifier at tcx: the"
    echo "hook's own cost, before any work. iptables+ct adds one conntrack rule"
    echo "(kernel connection tracking, as a stateful firewall needs); hookd tracks"
    echo "connections itself and checks the VM's MAC and source address too. See"
    echo "hookd/benches/compare.rs."
    echo
    echo "![delivered rate against N](datapath.svg)"
    cat "$OUT/datapath.md"
    echo
    echo "## Data path: hookd against libvirt nwfilter, both driven by libvirt"
    echo
    echo "A private libvirtd (vm-tests/bench-nwfilter.sh) creates three paused guests"
    echo "per N, each with a multi-queue tap on a bridge: one without filter, one whose"
    echo "NIC references an nwfilter of the same N rules (ebtables, as libvirt writes"
    echo "them), one with hookd policy of the N rules (attached by hookd's hook). The"
    echo "generator opens one more queue of each tap and writes the same frames as above"
    echo "to the sink's veth on the bridge; before measuring, frames no rule allows are"
    echo "checked to be dropped by both filters. The baseline here is the bridged tap"
    echo "without filter. Medians of 3 interleaved rounds per N. See"
    echo "hookd/benches/compare/bridged.rs."
    echo
    echo "![delivered rate against N, libvirt](datapath-libvirt.svg)"
    cat "$OUT/datapath-libvirt.md"
    echo
    cat "$OUT/switch.md"
    echo
    echo "See hookd/benches/compare/switch.rs for the VM-to-VM setup."
    echo
    echo "## Per-packet cost under BPF_PROG_TEST_RUN"
    echo
    echo '```'
    cat "$OUT/per-packet.txt"
    echo '```'
    echo
    echo "## Hook calls under a flood of management calls"
    echo
    echo '```'
    cat "$OUT/hook-flood.txt"
    echo '```'
    echo
    echo "## Control plane"
    echo
    echo "hookd's daemon code and data path on real taps (hookd/benches/control_plane.rs):"
    echo "a change returns once its rules are enforced."
    echo
    cat "$OUT/control-plane.md"
    echo
    echo "### What the hook adds to \`virsh start\`"
    echo
    echo "vm-tests/bench-start.sh: a private libvirtd starts and destroys TCG guests,"
    echo "without a hook, with a hook that only reads its input (what libvirt's"
    echo "running of any hook costs) and with hookd's hook (libvirtd restarted"
    echo "between), and without the hook but with nwfilter clean-traffic; the guest"
    echo "with policy is started with hookd's default (\`attach = \"staged\"\`), with"
    echo "\`attach = \"netlink\"\` and \`\"tcx\"\`, and with the host's \`rcu_expedited\`"
    echo "set to 1 (restored after), since attaching with tcx waits for RCU grace"
    echo "periods. \"In hooks\" is the time libvirt spent"
    echo "running hooks, from its own log."
    echo
    cat "$OUT/start.md"
} > "$OUT/report.md"
echo "bench: report in $OUT/report.md"
