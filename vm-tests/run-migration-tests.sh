#!/usr/bin/env bash
# Tier 3: live migration between two hypervisors on one machine, each a
# private sandbox with its own dbus-daemon, libvirtd and hookd (the second
# nested in the first's namespaces). Both bridges hang off one "switch":
# the first host's br0, where the guest's peer (192.0.2.1) lives, so the
# peer reaches the guest wherever it runs once QEMU's announcement (RARP)
# has taught the switch its new port. Run as root from the repository:
#   bash vm-tests/run-migration-tests.sh [TARGET_DIR]
# Prints one line per check, the figures, and "migration-tests: N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib/sandbox.sh"

ADDR_A=203.0.113.1 ADDR_B=203.0.113.2
UUID_A=8f0e0a6c-4d8a-4a57-9a4e-000000000001
UUID_B=8f0e0a6c-4d8a-4a57-9a4e-000000000002
MIGRATIONS=${HOOKD_MIGRATIONS:-10}
FLOWS=${HOOKD_MIGRATION_FLOWS:-100000}

# Both hosts: hookd's tables hold the flood's entries, libvirt migrates.
host_config() { # host_config ADDR HOST_UUID
    cat > /etc/hookd/hookd.toml <<EOF
conntrack_entries = 262144
metrics_listen = "127.0.0.1:9469"
EOF
    sandbox_migration_host "$1" "$2"
}

# The second host: set up, start its daemons, say so, then wait to be stopped.
if [ "${1:-}" = --second-host ]; then
    sandbox_setup
    host_config "$ADDR_B" "$UUID_B"
    # Its br0 is a port of the first host's: no addresses of its own.
    ip addr flush dev br0
    sandbox_start_daemons
    # USR1: start hookd again (after the test killed it), with the
    # hookd.toml the test wrote into $SB/hookd.toml if there is one.
    restart_hookd() {
        [ -s "$SB/hookd.toml" ] && cp "$SB/hookd.toml" /etc/hookd/hookd.toml
        sandbox_start_hookd
    }
    trap restart_hookd USR1
    echo "$SB" > "$2.tmp" && mv "$2.tmp" "$2"
    while :; do
        sleep infinity &
        wait $! || true
    done
fi

sandbox_enter "$0" "$@"
# Absolute: commands for the second host run there with another cwd.
sandbox_binaries "$(realpath "${1:-$REPO/target/debug}")"
echo "# hookd $HOOKD_BIN, hook $HOOKD_HOOK_BIN, hookctl $HOOKCTL"
source "$HERE/lib/check.sh"
source "$HERE/lib/probe.sh"
summary() {
    echo "migration-tests: $PASS passed, $FAIL failed"
    if [ "$FAIL" -ne 0 ] && [ -n "${SB:-}" ]; then
        echo "--- host A hookd.log (tail)"; tail -n 30 "$SB/hookd.log" || true
        [ -n "${SB_B:-}" ] && { echo "--- host B hookd.log (tail)"; tail -n 30 "$SB_B/hookd.log" || true; }
        echo "--- host B (tail)"; tail -n 20 "$SB/host2.log" 2>/dev/null || true
    fi
}
sandbox_setup
trap 'rc=$?; summary; stop_host_b; sandbox_cleanup $rc' EXIT
# The second host first: its /etc starts as a copy of this one's.
sandbox_spawn_host "$0" --second-host "$SB/host2.ready"
B=$SB_HOST2
for _ in $(seq 300); do [ -s "$SB/host2.ready" ] && break; sleep 0.1; done
[ -s "$SB/host2.ready" ] || { tail -n 30 "$SB/host2.log"; sb_die "the second host did not come up"; }
SB_B=$(cat "$SB/host2.ready")
stop_host_b() { # the second host cleans up after itself on TERM
    local i
    [ -n "${B:-}" ] || return 0
    kill -TERM "$B" 2>/dev/null || return 0
    for i in $(seq 300); do kill -0 "$B" 2>/dev/null || break; sleep 0.1; done
    B=
}
host_config "$ADDR_A" "$UUID_A"
sandbox_start_daemons

# The wires: mig0 carries libvirt's and QEMU's migration streams; up0
# makes the second host's br0 a port of the first's.
ip link add mig0 type veth peer name mig0 netns "$B"
ip addr add "$ADDR_A/24" dev mig0
ip link set mig0 up
sb_in "$B" ip addr add "$ADDR_B/24" dev mig0
sb_in "$B" ip link set mig0 up
ip link add upB type veth peer name up0 netns "$B"
ip link set upB master br0 up
sb_in "$B" ip link set up0 master br0 up

# HOOKD_MIGRATION_PCAP=1 (with HOOKD_KEEP_SANDBOX=1): the switch's frames
# in $SB/br0.pcap, to see what a failed check saw.
if [ -n "${HOOKD_MIGRATION_PCAP:-}" ]; then
    tcpdump -i br0 -n -U -w "$SB/br0.pcap" 2>/dev/null &
    sb_record_pid tcpdump $!
fi
# HOOKD_MIGRATION_BUS=1 (with HOOKD_KEEP_SANDBOX=1): each host's bus
# traffic, timed, in $SB/bus-a.prof and $SB_B/bus-b.prof (dbus-monitor
# --profile), to see where a migration's downtime goes.
if [ -n "${HOOKD_MIGRATION_BUS:-}" ]; then
    dbus-monitor --system --profile > "$SB/bus-a.prof" 2>&1 &
    sb_record_pid bus-monitor $!
    sb_in "$B" sh -c "exec dbus-monitor --system --profile > $SB_B/bus-b.prof 2>&1" &
    sb_record_pid bus-monitor-b $!
fi

# virsh and hookctl on each host.
va() { timeout 120 virsh -q -c qemu:///system "$@"; }
vb() { sb_in "$B" timeout 120 virsh -q -c qemu:///system "$@"; }
ha() { "$HOOKCTL" "$@"; }
hb() { sb_in "$B" "$HOOKCTL" "$@"; }
plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }
# carried FILE WHAT: the entries field of the last "firewall state WHAT" line
carried() { plain_log "$1" | grep "firewall state $2" | tail -n 1 | sed -n 's/.* entries=\([0-9]*\).*/\1/p'; }
gone_from() { # gone_from a|b DOMAIN: hookd there knows nothing of it (up to 15 s)
    local i rc
    for i in $(seq 150); do
        rc=0
        if [ "$1" = a ]; then ha show "$2" >/dev/null 2>&1 || rc=$?; else hb show "$2" >/dev/null 2>&1 || rc=$?; fi
        [ "$rc" -eq 4 ] && return 0
        sleep 0.1
    done
    return 1
}
nothing_left() { # nothing_left a|b UUID: no pins, links or state files of the domain
    local run=()
    [ "$1" = b ] && run=(sb_in "$B")
    "${run[@]}" sh -c "test ! -e /sys/fs/bpf/hookd/links/$2 && test ! -e /run/hookd/domains/$2.json"
}

probe_policy "" > "$SB/vm1.policy"
sandbox_define_vm vm1 52:54:00:00:00:4a 192.0.2.40/24 192.0.2.1 mig "$SB/vm1.policy"
# vm2 runs what vm1 runs, without hookd policy: the downtime baseline.
sandbox_define_vm vm2 52:54:00:00:00:4b 192.0.2.41/24 192.0.2.1 mig
UUID1=$(va domuuid vm1)

echo "# vm1 (policy: ingress deny by default) on host A, its peer streaming to it"
probe_start 192.0.2.1 192.0.2.40
check "virsh start vm1 on host A" sandbox_start_vm vm1
check "vm1's guest is up" sandbox_wait_console vm1 'GUEST DONE' 120
probe_check_flows
log_has() { plain_log "$1" | grep -q "$2"; } # log_has FILE PATTERN
check "QEMU got hookd's dbus-vmstate object" log_has "$SB/hookd.log" 'dbus-vmstate object added'
sleep 2

echo "# $MIGRATIONS live migrations, A -> B -> A ..., under traffic"
: > "$SB/downtimes"
migrate() { # migrate DOMAIN FROM: live-migrate from host FROM (a|b) to the other; downtime to $SB/downtimes
    local dom=$1 from=$2 dt
    if [ "$from" = a ]; then
        va migrate --live "$dom" "qemu+tcp://$ADDR_B/system" || return 1
        dt=$(vb domjobinfo "$dom" --completed | awk '/^Total downtime/ {print $3}')
    else
        vb migrate --live "$dom" "qemu+tcp://$ADDR_A/system" || return 1
        dt=$(va domjobinfo "$dom" --completed | awk '/^Total downtime/ {print $3}')
    fi
    echo "$dom $from ${dt:-?}" >> "$SB/downtimes"
}
from=a
ok_carried=0 ok_clean=0 ok_runs=0
for n in $(seq "$MIGRATIONS"); do
    to=$([ "$from" = a ] && echo b || echo a)
    if ! migrate vm1 "$from"; then
        check "migration $n ($from -> $to)" false
        break
    fi
    if [ "$to" = b ]; then state=$(vb domstate vm1); else state=$(va domstate vm1); fi
    [ "$state" = running ] && ok_runs=$((ok_runs + 1))
    src_log=$SB/hookd.log dst_log=$SB_B/hookd.log
    [ "$from" = b ] && { src_log=$SB_B/hookd.log; dst_log=$SB/hookd.log; }
    saved=$(carried "$src_log" saved) loaded=$(carried "$dst_log" loaded)
    echo "#   migration $n: $from -> $to, $(tail -n 1 "$SB/downtimes" | cut -d' ' -f3) ms downtime, entries saved ${saved:-none} loaded ${loaded:-none}"
    [ -n "$saved" ] && [ "$saved" = "$loaded" ] && [ "$saved" -gt 0 ] && ok_carried=$((ok_carried + 1))
    if gone_from "$from" vm1 && nothing_left "$from" "$UUID1"; then ok_clean=$((ok_clean + 1)); fi
    from=$to
    sleep 2
done
check "$MIGRATIONS of $MIGRATIONS migrations completed with vm1 running at the destination" test "$ok_runs" -eq "$MIGRATIONS"
check "every migration carried vm1's conntrack entries (as many loaded as saved)" test "$ok_carried" -eq "$MIGRATIONS"
check "every source kept nothing of vm1 once it left (no record, pins, links)" test "$ok_clean" -eq "$MIGRATIONS"
echo "# failures leave the source enforcing and the destination with nothing"
running_on_a_enforced() { # [b-down]: vm1 runs on host A, with its policy, and host B has no trace of it
    test "$(va domstate vm1)" = running &&
        test "$(ha show vm1 --json | jq -r '.nics[0].mode')" = anti-spoofing &&
        { [ "${1:-}" = b-down ] || gone_from b vm1; } &&
        nothing_left b "$UUID1" && ! vb domstate vm1 >/dev/null 2>&1
}
# A cancelled migration: slowed down so that it is still copying memory.
va migrate --live --bandwidth 1 vm1 "qemu+tcp://$ADDR_B/system" >"$SB/cancel.out" 2>&1 &
mig=$!
for _ in $(seq 100); do vb domstate vm1 >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2
check "a migration under way (destination paused: $(vb domstate vm1 2>/dev/null || echo none)) is cancelled" va domjobabort vm1
wait "$mig" && cancel_rc=0 || cancel_rc=$?
check "... virsh migrate fails ($(tail -n 1 "$SB/cancel.out"))" test "$cancel_rc" -ne 0
check "... vm1 still runs on A, enforced; B kept nothing of it" running_on_a_enforced
# The destination's hookd is down: the hook refuses vm1 there.
b_hookd() { awk '$1 == "hookd" { p = $2 } END { print p }' "$SB_B/pids"; }
sb_in "$B" kill -KILL "$(b_hookd)"
sleep 0.5
va migrate --live vm1 "qemu+tcp://$ADDR_B/system" >"$SB/down.out" 2>&1 && down_rc=0 || down_rc=$?
check "with hookd down on B, migrating vm1 there fails" test "$down_rc" -ne 0
check "... and libvirt's error says why: $(grep -o 'hookd: .*' "$SB/down.out" | head -c 120)" grep -q "carries hookd policy but hookd is not available" "$SB/down.out"
check "... vm1 still runs on A, enforced; B kept nothing of it" running_on_a_enforced b-down
# An older hookd on B, serving no state helpers: QEMU refuses the stream.
printf 'conntrack_entries = 262144\nmigration_state_mib = 0\n' > "$SB_B/hookd.toml"
kill -USR1 "$B"
for _ in $(seq 100); do sb_in "$B" dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner string:org.hookd.Hookd1 2>/dev/null | grep -q true && break; sleep 0.1; done
va migrate --live vm1 "qemu+tcp://$ADDR_B/system" >"$SB/older.out" 2>&1 && older_rc=0 || older_rc=$?
check "to a hookd that carries no state, migrating vm1 fails (refused, the default)" test "$older_rc" -ne 0
check "... vm1 still runs on A, enforced; B kept nothing of it" running_on_a_enforced
sb_in "$B" kill -TERM "$(b_hookd)"
sleep 1
printf 'conntrack_entries = 262144\n' > "$SB_B/hookd.toml"
kill -USR1 "$B"
for _ in $(seq 100); do sb_in "$B" dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner string:org.hookd.Hookd1 2>/dev/null | grep -q true && break; sleep 0.1; done
sleep 2

# Before the peer stops (its connections then end, and the guest says so).
check "the guest saw none of its connections end" sh -c "! grep -q 'CLOSED' $SB/vm1.console"
probe_stop
echo "# what hookd tells of its migrations"
ha migrations | tail -n 2 | sed 's/^/#   A: /'
hb migrations | tail -n 2 | sed 's/^/#   B: /'
metric() { # metric SAMPLE: its value in host A's hookd metrics
    bash -c 'exec 3<>/dev/tcp/127.0.0.1/9469; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
        awk -v s="$1" 'index($0, s " ") == 1 { print $2 }'
}
half=$((MIGRATIONS / 2))
check "hookctl migrations on A: $half loaded as destination, $half (and the failed ones') saved as source" \
    test "$(ha migrations | grep -c 'as destination: firewall state loaded')" -eq "$half" -a \
    "$(ha migrations | grep -c 'as source: firewall state saved')" -ge "$half"
check "hookctl show vm1 names its last migration" sh -c "\"$HOOKCTL\" show vm1 | grep -q '^last migration: vm1 as '"
check "metrics on A: hookd_migrations_total (destination, carried) = $half" \
    test "$(metric 'hookd_migrations_total{side="destination",outcome="carried"}')" = "$half"
echo "# the peer's figures: $(jq -c '{tcp_connections, udp_lost, denied_port, allowed_port}' "$SB/probe.json")"
jq -r '.tcp[], .udp | "#   \(.name): sent \(.sent), echoed \(.echoed), longest silence \(.max_gap_ms) ms, silences over 250 ms \(.gaps | length), ended: \(.ended // "no")"' "$SB/probe.json"
max_dt=$(awk '$3 != "?" && $3 > m { m = $3 } END { print m + 0 }' "$SB/downtimes")
check "the guest's 4 TCP connections all survived: none reset, none opened again" \
    test "$(jq '[.tcp_connections, (.tcp | map(select(.ended != null)) | length)] == [4, 0]' "$SB/probe.json")" = true
check "... and none lost or reordered a line" test "$(jq '[.tcp[].out_of_order] | add' "$SB/probe.json")" -eq 0
check "the UDP flow the guest opened still echoes" test "$(jq '.udp.ended == null and .udp.echoed > 0' "$SB/probe.json")" = true
limit=$((max_dt + 1500))
check "no TCP or UDP flow stalled past the downtime (max ${max_dt} ms) + 1.5 s of TCP retransmission" \
    test "$(jq --argjson l "$limit" '[.tcp[].max_gap_ms, .udp.max_gap_ms] | max < $l' "$SB/probe.json")" = true
check "the denied port never answered, wherever vm1 ran" \
    test "$(jq '.denied_port.reached == 0 and .denied_port.tries > 0' "$SB/probe.json")" = true
check "the allowed port answered new connections ($(jq '.allowed_port.ok' "$SB/probe.json") of $(jq '.allowed_port.tries' "$SB/probe.json") tries)" \
    test "$(jq '.allowed_port.ok > 0' "$SB/probe.json")" = true

# The two guests run the same programs (the peer's probe has stopped, so
# both retry their connections every second) and take the same flood
# before each of their migrations: the memory each has left to send when
# it stops is alike, and only vm1's hookd tables hold the flood.
echo "# downtime: vm1 carrying $FLOWS connections, vm2 (no hookd policy, the same guest programs and flood) carrying none"
check "virsh start vm2 (no policy) on host A" sandbox_start_vm vm2
check "vm2's guest is up" sandbox_wait_console vm2 'GUEST DONE' 120
: > "$SB/downtimes"
where1=a where2=a ok_big=0
for n in $(seq 10); do
    python3 "$HERE/lib/migprobe.py" flood 192.0.2.40 "$FLOWS" 10000 60000 >/dev/null
    migrate vm1 "$where1" || break
    src_log=$SB/hookd.log
    [ "$where1" = b ] && src_log=$SB_B/hookd.log
    [ "$(carried "$src_log" saved)" -ge "$FLOWS" ] && ok_big=$((ok_big + 1))
    where1=$([ "$where1" = a ] && echo b || echo a)
    python3 "$HERE/lib/migprobe.py" flood 192.0.2.41 "$FLOWS" 10000 60000 >/dev/null
    migrate vm2 "$where2" || break
    where2=$([ "$where2" = a ] && echo b || echo a)
done
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
d1=$(awk '$1 == "vm1" { print $3 }' "$SB/downtimes" | median)
d2=$(awk '$1 == "vm2" { print $3 }' "$SB/downtimes" | median)
echo "# downtime (libvirt's, ms) vm1: $(awk '$1 == "vm1" { printf "%s ", $3 }' "$SB/downtimes")"
echo "# downtime (libvirt's, ms) vm2: $(awk '$1 == "vm2" { printf "%s ", $3 }' "$SB/downtimes")"
plain_log "$SB/hookd.log" "$SB_B/hookd.log" | grep 'firewall state \(saved\|loaded\)' | tail -n 4 | sed 's/.*firewall state/#   firewall state/'
echo "# downtime median of 10: vm1 with $FLOWS carried connections $d1 ms, vm2 without hookd $d2 ms, added $(awk -v a="$d1" -v b="$d2" 'BEGIN { print a - b }') ms"
check "20 of 20 migrations completed" test "$(wc -l < "$SB/downtimes")" -eq 20
check "every one of vm1's carried at least $FLOWS connections" test "$ok_big" -eq 10
check "... and no more than the live ones: the same flows refreshed, expired ones left behind" \
    test "$(carried "$SB/hookd.log" saved)" -lt $((FLOWS + 1000))
# The source reads its tables at libvirt's "Suspended Migrated", before
# QEMU's Save (a Save that comes first reads them itself).
saved_lines=$(plain_log "$SB/hookd.log" "$SB_B/hookd.log" | grep 'firewall state saved for the destination' || true)
saves=$(grep -c . <<< "$saved_lines" || true)
early=$(grep -c 'detail=read as the guest stopped' <<< "$saved_lines" || true)
check "most saves had the tables read as the guest stopped ($early of $saves)" \
    test "$((saves > 0 && early * 2 >= saves))" -eq 1
[ "$FAIL" -eq 0 ]
