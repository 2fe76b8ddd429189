#!/usr/bin/env bash
# Soak: hookd at volume with real TCG guests, in a private libvirt sandbox
# (as run-vm-tests.sh). While vm1 (policy: ingress deny by default) keeps 4
# TCP connections and a UDP flow it opened to its peer, and the peer keeps
# probing vm1's allowed and denied ports (lib/migprobe.py), it runs:
#   1. SOAK_KILLS (20) times kill -9 of hookd, then a restart;
#   2. SOAK_POLICIES (50) live policy changes of 1,000 rules on vm1;
#   3. SOAK_CYCLES (200) virsh start / destroy of vm2, which has policy;
#   4. SOAK_HOTPLUGS (1000) hot-plugs and unplugs of a NIC of vm3.
# After each phase it counts what hookd holds (pins, tcx links, programs,
# maps, inner conntrack tables, map entries, hookd's file descriptors,
# network namespaces, routes) against the count before it, and reports
# hookd's resident memory. At the end: the peer's figures, where no
# allowed datagram may be lost and no denied connection may get through.
# Run as root from the repository:
#   bash vm-tests/run-soak.sh [TARGET_DIR]
# Prints one line per check, the figures, and "soak: N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"

KILLS=${SOAK_KILLS:-20}
POLICIES=${SOAK_POLICIES:-50}
CYCLES=${SOAK_CYCLES:-200}
HOTPLUGS=${SOAK_HOTPLUGS:-1000}

sandbox_binaries "${1:-$REPO/target/debug}"
source "$HERE/lib/check.sh"
source "$HERE/lib/probe.sh"
summary() { check_summary soak; }
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT
sandbox_setup
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT
sandbox_start_daemons
v() { timeout 120 virsh -q -c qemu:///system "$@"; }

# census: one line of counts of what hookd holds in the kernel and the
# system; compared between phases (rss_kib only reported).
entries() { bpftool -j map dump pinned "/sys/fs/bpf/hookd/maps/$1" 2>/dev/null | jq length; }
census() {
    local progs
    progs=$(bpftool -j prog show | jq -c '[.[] | select(.name | startswith("hookd_")) | .id]')
    printf 'pins=%s links=%s progs=%s maps=%s ct_tables=%s nics=%s ct=%s addrs=%s fds=%s netns=%s routes=%s' \
        "$(find /sys/fs/bpf/hookd -mindepth 1 | wc -l)" \
        "$(bpftool -j link list | jq --argjson ids "$progs" '[.[] | select(.prog_id as $p | $ids | index($p))] | length')" \
        "$(jq length <<<"$progs")" \
        "$(bpftool -j map list | jq '[.[] | select(.name // "" | startswith("hookd_"))] | length')" \
        "$(bpftool -j map list | jq '[.[] | select(.name == "hookd_ct_nic")] | length')" \
        "$(entries hookd_nics)" "$(entries hookd_ct)" "$(entries hookd_addrs)" \
        "$(find "/proc/$SB_HOOKD_PID/fd" -mindepth 1 | wc -l)" \
        "$(ip netns list | wc -l)" "$(ip route show table all | wc -l)"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SB_HOOKD_PID/status"; }
same_census() { # same_census BEFORE: the census now equals BEFORE (up to 10 s to settle)
    local i now
    for i in $(seq 50); do
        now=$(census)
        [ "$now" = "$1" ] && return 0
        sleep 0.2
    done
    echo "#   before: $1"
    echo "#   after:  $now"
    return 1
}
healthy() { # healthy N: hookd answers, with N attached NICs (up to 10 s)
    local i
    for i in $(seq 50); do
        "$HOOKCTL" health 2>/dev/null | grep -q "$1 attached NIC(s)" && return 0
        sleep 0.2
    done
    "$HOOKCTL" health || true
    return 1
}
nics_of() { "$HOOKCTL" show "$1" --json 2>/dev/null | jq '[.nics[] | select(.tap != "")] | length'; }
wait_nics() { # wait_nics DOMAIN N (up to 20 s)
    local i
    for i in $(seq 100); do
        [ "$(nics_of "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}
progress() { # progress I N: hookd's memory every tenth of a phase
    if [ $(( ($1 + 1) % ( ($2 + 9) / 10 ) )) -eq 0 ]; then
        echo "#   $(($1 + 1)) of $2: hookd resident $(rss_kib) KiB"
    fi
}
phase_report() { # phase_report NAME BEFORE SECONDS: counts and memory after a phase
    echo "# $1: $3 s; hookd resident $(rss_kib) KiB"
    check "$1: nothing leaked (census as before)" same_census "$2"
}

# vm1: the guest under traffic (scenario mig: echo servers on 8080 and
# 9000, 4 TCP connections and a UDP flow to the peer, 192.0.2.1).
rules() { # rules N SEED: N filler rules that match none of the probe's traffic
    local i
    for ((i = 0; i < $1; i++)); do
        printf '          <hookd:rule action="allow" protocol="tcp" ports="%d" remote="198.51.100.%d/32"/>\n' \
            $((20000 + (i + $2) % 20000)) $((i % 250 + 1))
    done
}
probe_policy "" > "$SB/vm1.policy"
sandbox_define_vm vm1 52:54:00:00:00:4a 192.0.2.40/24 192.0.2.1 mig "$SB/vm1.policy"
for seed in 1 2; do
    { echo '<?xml version="1.0"?>'; probe_policy "$(rules 998 "$seed")"; } > "$SB/vm1-$seed.policy"
done
# vm2: started and destroyed; vm3: its second NIC plugged and unplugged.
simple_policy() { # simple_policy MAC PREFIX [MAC2 PREFIX2]
    echo '    <hookd:policy xmlns:hookd="urn:hookd:policy:1">'
    printf '      <hookd:interface mac="%s"><hookd:address prefix="%s"/><hookd:ingress default="deny"><hookd:rule action="allow" protocol="icmp"/></hookd:ingress></hookd:interface>\n' "$1" "$2"
    if [ $# -ge 4 ]; then
        printf '      <hookd:interface mac="%s"><hookd:address prefix="%s"/><hookd:ingress default="deny"><hookd:rule action="allow" protocol="icmp"/></hookd:ingress></hookd:interface>\n' "$3" "$4"
    fi
    echo '    </hookd:policy>'
}
simple_policy 52:54:00:00:00:5a 192.0.2.50/32 > "$SB/vm2.policy"
sandbox_define_vm vm2 52:54:00:00:00:5a 192.0.2.50/24 192.0.2.1 idle "$SB/vm2.policy"
simple_policy 52:54:00:00:00:6a 192.0.2.60/32 52:54:00:00:00:6b 192.0.2.61/32 > "$SB/vm3.policy"
sandbox_define_vm vm3 52:54:00:00:00:6a 192.0.2.60/24 192.0.2.1 idle "$SB/vm3.policy"

check "virsh start vm1" sandbox_start_vm vm1
check "vm1's guest is up" sandbox_wait_console vm1 'GUEST DONE' 150
# The peer from now on (the guest retries its connections until it is up).
probe_start 192.0.2.1 192.0.2.40
check "virsh start vm3" sandbox_start_vm vm3
check "vm3's guest is up" sandbox_wait_console vm3 'GUEST READY' 150
probe_check_flows
check "hookd: 2 attached NICs" healthy 2
echo "# hookd resident at the start: $(rss_kib) KiB; $(census)"

echo "# 1. $KILLS x kill -9 of hookd under traffic, then a restart"
before=$(census) t0=$SECONDS restarted=0
for ((i = 0; i < KILLS; i++)); do
    sandbox_stop_hookd KILL
    sleep 0.5 # the pinned programs enforce alone meanwhile
    sandbox_start_hookd 2>/dev/null
    healthy 2 && restarted=$((restarted + 1))
done
check "hookd came back healthy after each of the $KILLS kills ($restarted)" test "$restarted" -eq "$KILLS"
phase_report "kill -9 and restart" "$before" $((SECONDS - t0))

echo "# 2. $POLICIES live policy changes of 1,000 rules on vm1 under traffic"
before=$(census) t0=$SECONDS applied=0
for ((i = 0; i < POLICIES; i++)); do
    "$HOOKCTL" policy set vm1 "$SB/vm1-$((i % 2 + 1)).policy" >/dev/null && applied=$((applied + 1))
    progress "$i" "$POLICIES"
done
check "all $POLICIES changes applied ($applied)" test "$applied" -eq "$POLICIES"
"$HOOKCTL" policy set vm1 "$SB/vm1.policy" >/dev/null
phase_report "policy changes" "$before" $((SECONDS - t0))

echo "# 3. $CYCLES x virsh start / destroy of vm2 (policy)"
before=$(census) t0=$SECONDS cycled=0
for ((i = 0; i < CYCLES; i++)); do
    if v start vm2 >/dev/null && wait_nics vm2 1 && v destroy vm2 >/dev/null; then
        cycled=$((cycled + 1))
    fi
    progress "$i" "$CYCLES"
done
check "all $CYCLES cycles attached and stopped ($cycled)" test "$cycled" -eq "$CYCLES"
phase_report "start/stop cycles" "$before" $((SECONDS - t0))

echo "# 4. $HOTPLUGS x hot-plug and unplug of vm3's second NIC"
before=$(census) t0=$SECONDS plugged=0
for ((i = 0; i < HOTPLUGS; i++)); do
    if v attach-interface vm3 bridge br0 --mac 52:54:00:00:00:6b --model virtio --live >/dev/null &&
        wait_nics vm3 2 &&
        v detach-interface vm3 bridge --mac 52:54:00:00:00:6b --live >/dev/null &&
        wait_nics vm3 1; then
        plugged=$((plugged + 1))
    fi
    progress "$i" "$HOTPLUGS"
done
check "all $HOTPLUGS plugs attached and unplugs detached ($plugged)" test "$plugged" -eq "$HOTPLUGS"
phase_report "hot-plug cycles" "$before" $((SECONDS - t0))

probe_stop
probe_check_figures
