# shellcheck shell=bash
# The peer of a guest that runs the `mig` scenario (lib/migprobe.py): it
# echoes the guest's 4 TCP connections and UDP flow, and probes the guest's
# allowed and denied ports; its figures go to $SB/probe.json when stopped.
# Needs sandbox.sh and check.sh.
probe_start() { # probe_start PEER_IP GUEST_IP
    python3 "$HERE/lib/migprobe.py" serve "$1" "$2" > "$SB/probe.json" 2>"$SB/probe.err" &
    PROBE=$!
    sb_record_pid probe "$PROBE"
}
probe_flows() { ss -Htn state established "( sport = :7000 )" | wc -l; }
probe_check_flows() { # checks that the guest opened its 4 connections (up to 20 s)
    local _
    for _ in $(seq 100); do [ "$(probe_flows)" -ge 4 ] && break; sleep 0.2; done
    check "the guest opened its 4 TCP connections to the peer" test "$(probe_flows)" -eq 4
}
probe_stop() { # stops the peer; its figures are then in $SB/probe.json
    kill -TERM "$PROBE"
    wait "$PROBE" || true
}
