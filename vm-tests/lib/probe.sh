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
probe_policy() { # probe_policy RULES: the guest's policy (MAC ...:4a,
    # 192.0.2.40): ingress denied but for the probe's allowed port and the
    # UDP flow's echoes, then RULES (more <hookd:rule> lines, or "").
    cat <<P
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="52:54:00:00:00:4a">
        <hookd:address prefix="192.0.2.40/32"/>
        <hookd:ingress default="deny">
          <hookd:rule action="allow" protocol="tcp" ports="8080" remote="192.0.2.0/24"/>
          <hookd:rule action="allow" protocol="udp" ports="10000-60000" remote="192.0.2.1/32"/>
${1:-}
        </hookd:ingress>
      </hookd:interface>
    </hookd:policy>
P
}
probe_report() { # prints the peer's figures (after probe_stop)
    echo "# the peer's figures: $(jq -c '{tcp_connections, udp_lost, denied_port, allowed_port}' "$SB/probe.json")"
    jq -r '.tcp[], .udp | "#   \(.name): sent \(.sent), echoed \(.echoed), longest silence \(.max_gap_ms) ms, ended: \(.ended // "no")"' "$SB/probe.json"
}
probe_check_figures() { # nothing allowed lost, nothing denied through (after probe_stop)
    probe_report
    check "the guest's 4 TCP connections lasted, none lost or reordered a line" \
        test "$(jq '[.tcp_connections, (.tcp | map(select(.ended != null)) | length), ([.tcp[].out_of_order] | add)] == [4, 0, 0]' "$SB/probe.json")" = true
    check "no datagram of the UDP flow was lost" test "$(jq '.udp.ended == null and .udp.echoed > 0 and .udp_lost == 0' "$SB/probe.json")" = true
    check "the denied port never answered" test "$(jq '.denied_port.reached == 0 and .denied_port.tries > 0' "$SB/probe.json")" = true
    check "the allowed port answered every new connection" test "$(jq '.allowed_port.ok == .allowed_port.tries and .allowed_port.ok > 0' "$SB/probe.json")" = true
}
