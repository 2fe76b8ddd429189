#!/usr/bin/env bash
# Tier 3: hookd with real libvirt and real TCG guests, in a private sandbox
# (own network, mount and PID namespaces; own dbus-daemon, virtlogd, libvirtd
# with the hook installed, and hookd). Run as root from the repository:
#   bash vm-tests/run-vm-tests.sh [TARGET_DIR]
# Prints one line per check and ends with "vm-tests: N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib/sandbox.sh"
sandbox_enter "$0" "$@"

# Binaries: from the build tree by default (argument: its directory), or
# from an installed system (test-packages.sh sets HOOKD_BIN, HOOKCTL,
# HOOKD_HOOK_BIN, and HOOKD_DBUS_POLICY= to use the installed bus policy).
sandbox_binaries "${1:-$REPO/target/debug}"
echo "# hookd $HOOKD_BIN, hook $HOOKD_HOOK_BIN, hookctl $HOOKCTL, bus policy ${HOOKD_DBUS_POLICY:-installed}"
source "$HERE/lib/check.sh"
summary() { check_summary vm-tests; }
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT

sandbox_setup
trap 'rc=$?; summary; sandbox_cleanup $rc' EXIT
sandbox_start_daemons

policy() { # policy FILE MAC PREFIX [extra inner XML]
    cat > "$1" <<P
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="$2">
        <hookd:address prefix="$3"/>${4:-}
      </hookd:interface>
    </hookd:policy>
P
}
counter() { # counter DOMAIN NAME: sum of that counter over the domain's NICs
    "$HOOKCTL" show "$1" --json | jq "[.nics[].counters[] | select(.name == \"$2\") | .value] | add // 0"
}
console_has() { grep -q -- "$2" "$SB/$1.console"; }
hookd_tcx_links() { # tcx links (bpf link type 11) whose program is one of hookd's
    local ids
    ids=$(bpftool -j prog show | jq -c '[.[] | select(.name == "hookd_from_vm" or .name == "hookd_to_vm") | .id]')
    bpftool -j link list | jq --argjson ids "$ids" '[.[] | select((.type == 11 or .type == "tcx") and (.prog_id as $p | $ids | index($p)))] | length'
}
pinned_drops() { # pinned_drops IFINDEX REASON: a drop counter (enum drop_reason) straight from
    # the pinned maps, for when hookd is down: the NIC's slot in its config, then
    # the slot's per-CPU values in hookd_counters, summed, through the maps' BTF
    # (bpftool's "formatted" output), not by byte offset (docs/datapath.md)
    local slot
    slot=$(bpftool -j map dump pinned /sys/fs/bpf/hookd/maps/hookd_nics \
        | jq --argjson k "$1" '[.[] | .formatted | select(.key == $k) | .value.slot][0] // 0')
    # shellcheck disable=SC2046 # the key's four bytes, little-endian
    bpftool -j map lookup pinned /sys/fs/bpf/hookd/maps/hookd_counters \
        key $(printf '%d %d %d %d' $((slot & 255)) $((slot >> 8 & 255)) $((slot >> 16 & 255)) $((slot >> 24))) \
        | jq --argjson r "$2" '[.formatted.values[].value.drops[$r]] | add // 0'
}

policy "$SB/vm1.policy" 52:54:00:00:00:0a 192.0.2.10/32
sandbox_define_vm vm1 52:54:00:00:00:0a 192.0.2.10/24 192.0.2.1 spoof "$SB/vm1.policy"
sandbox_define_vm vm2 52:54:00:00:00:0b 192.0.2.11/24 192.0.2.1 spoof

# on_qdisc DOMAIN: hookd's two filters on the domain's tap, on a clsact qdisc
on_qdisc() {
    local tap
    tap=$(sandbox_vm_tap "$1")
    test "$("$HOOKCTL" show "$1" --json | jq -r '.nics[0].attach')" = netlink &&
        tc filter show dev "$tap" ingress | grep -q hookd_from_vm &&
        tc filter show dev "$tap" egress | grep -q hookd_to_vm
}
# on_tcx DOMAIN: the domain's NIC on tcx links (its record says so), no filter
# or clsact qdisc left (libvirt may put its own ingress qdisc there)
on_tcx() {
    local tap
    tap=$(sandbox_vm_tap "$1")
    test "$("$HOOKCTL" show "$1" --json | jq -r '.nics[0].attach')" = tcx &&
        ! tc filter show dev "$tap" ingress | grep -q hookd &&
        ! tc filter show dev "$tap" egress | grep -q hookd &&
        ! tc qdisc show dev "$tap" | grep -q clsact
}
# within5s CMD...: CMD succeeds within 5 s
within5s() {
    local _
    for _ in $(seq 25); do
        if "$@"; then return 0; fi
        sleep 0.2
    done
    return 1
}

echo "# two guests: vm1 with hookd policy, vm2 without (attach = \"staged\", the default)"
# hookd attaches while QEMU starts and libvirt's `started` hook waits for
# it: with --paused the guest has run no instruction, and is already enforced.
check "virsh start --paused vm1 (policy)" sandbox_start_vm vm1 --paused
check "... vm1's vCPUs have not run" test "$(sb_virsh domstate vm1)" = paused
enforced_paused() { # hookd's programs on vm1's tap, and its policy in force: on
    # the clsact qdisc it got at start, or already moved on (a second later)
    test "$("$HOOKCTL" show vm1 --json | jq -r '.nics[0].mode')" = anti-spoofing &&
        { on_qdisc vm1 || on_tcx vm1; }
}
check "... and its tap already carries hookd's programs, with its policy" enforced_paused
check "virsh resume vm1" sb_virsh resume vm1
check "virsh start vm2 (no policy)" sandbox_start_vm vm2
TAP1=$(sandbox_vm_tap vm1)
TAP2=$(sandbox_vm_tap vm2)
UUID1=$(sb_virsh domuuid vm1)
check "hookd attached to vm1 at 'start', before the guest ran" \
    test "$("$HOOKCTL" show vm1 --json | jq -r .attached_at)" = start
check "vm1's NIC moved from its clsact qdisc to tcx links within 5 s" within5s on_tcx vm1
check "... and vm2's too" within5s on_tcx vm2
moved_logged() { grep 'moved from the clsact qdisc to tcx links' "$SB/hookd.log" | grep -q "$1"; }
check "hookd's log says vm1's NIC moved" moved_logged "$TAP1"
check "vm1's tap $TAP1 carries hookd's programs (tcx)" \
    test "$("$HOOKCTL" show vm1 --json | jq -r '.nics[0] | "\(.tap) \(.attach) \(.mode)"')" = "$TAP1 tcx anti-spoofing"
check "the kernel holds 4 tcx links running hookd's programs (2 per VM)" test "$(hookd_tcx_links)" -eq 4
check "the hook reached hookd on its own socket, not the bus" grep -q '"hook socket"' "$SB/hookd.log"
check "vm2 is counted, not filtered" \
    test "$("$HOOKCTL" show vm2 --json | jq -r '"\(.managed) \(.nics[0].mode)"')" = "false counters only"

sandbox_wait_console vm1 'GUEST DONE' 150 || true
sandbox_wait_console vm2 'GUEST DONE' 150 || true
echo "# what the guests saw"
check "vm1: its first frames, from a spoofed IP, were dropped" console_has vm1 "RESULT spoof_ip=fail"
check "vm1: legitimate ping passes" console_has vm1 "RESULT legit=ok"
check "vm1: ping from a changed MAC is dropped" console_has vm1 "RESULT spoof_mac=fail"
check "vm1: legitimate again after restoring the MAC" console_has vm1 "RESULT legit_after=ok"
for step in spoof_ip legit spoof_mac legit_after; do
    check "vm2 (no policy): $step passes" console_has vm2 "RESULT $step=ok"
done
echo "# counters"
check "vm1: MAC spoofs counted" test "$(counter vm1 drop_mac_spoof)" -gt 0
check "vm1: IP/ARP spoofs counted" test "$(( $(counter vm1 drop_ip_spoof) + $(counter vm1 drop_arp_spoof) ))" -gt 0
check "vm1: legitimate traffic counted both ways" test "$(counter vm1 from_vm_packets)" -gt 0 -a "$(counter vm1 to_vm_packets)" -gt 0
check "vm2: traffic counted, nothing dropped" test "$(counter vm2 from_vm_packets)" -gt 0 -a "$(counter vm2 drop_ip_spoof)" -eq 0
"$HOOKCTL" show vm1
check "hookctl stats lists both guests' NICs with their counters" test "$("$HOOKCTL" stats --json | jq '[.[] | .nics[] | select((.counters | length) > 0)] | length')" -eq 2
"$HOOKCTL" stats

echo "# hookd restarts while vm1 keeps sending spoofed frames"
IFX1=$("$HOOKCTL" show vm1 --json | jq .nics[0].ifindex)
sandbox_stop_hookd TERM
d0=$(pinned_drops "$IFX1" 1) # DROP_IP_SPOOF
sleep 4
d1=$(pinned_drops "$IFX1" 1)
check "hookd stopped: its 4 tcx links remain" test "$(hookd_tcx_links)" -eq 4
check "hookd stopped: spoofed frames still dropped and counted ($d0 -> $d1)" test "$d1" -gt "$d0"
check "hookctl says hookd is down (exit 3)" sh -c "\"$HOOKCTL\" domains >/dev/null 2>&1; test \$? -eq 3"
sandbox_start_hookd
check "hookctl health: ok after the restart" sh -c "\"$HOOKCTL\" health | grep -q '^ok: 2 domain(s), 2 attached NIC(s)'"
check "restarted hookd adopted both domains" test "$("$HOOKCTL" domains --json | jq -r '[.[].name] | sort | join(",")')" = "vm1,vm2"
check "a second hookd refuses to start" sh -c "! timeout 10 \"$HOOKD_BIN\" >$SB/second.log 2>&1 && grep -q 'already owned' $SB/second.log"

echo "# virsh destroy leaves nothing of vm1"
sb_virsh destroy vm1 >/dev/null
check "hookctl show vm1: not found (exit 4)" sh -c "\"$HOOKCTL\" show vm1 >/dev/null 2>&1; test \$? -eq 4"
check "vm1's 2 tcx links are gone, vm2's remain" test "$(hookd_tcx_links)" -eq 2
check "no link pins left for vm1" test ! -e "/sys/fs/bpf/hookd/links/$UUID1"
check "no map entries left for vm1's ifindex" sh -c "! bpftool -j map dump pinned /sys/fs/bpf/hookd/maps/hookd_nics | jq -e '.[] | select(.formatted.key == $IFX1)' >/dev/null"
check "no state file left for vm1" test ! -e "/run/hookd/domains/$UUID1.json"
check "vm2 untouched" test "$("$HOOKCTL" show vm2 --json | jq -r .nics[0].tap)" = "$TAP2"

# hookd's signals from here on, as a management client sees them.
"$HOOKCTL" --json monitor > "$SB/monitor.json" 2>&1 &
sb_record_pid monitor $!
echo "# security groups: a guest with a deny-by-default ingress"
cat > "$SB/fw.policy" <<'P'
    <hookd:policy xmlns:hookd="urn:hookd:policy:1">
      <hookd:interface mac="52:54:00:00:00:2a">
        <hookd:address prefix="192.0.2.20/32"/>
        <hookd:address prefix="2001:db8::20/128"/>
        <hookd:ingress default="deny">
          <hookd:rule action="allow" protocol="tcp" ports="8080" remote="192.0.2.0/24"/>
          <hookd:rule action="allow" protocol="udp" ports="7010" remote="192.0.2.0/24"/>
        </hookd:ingress>
        <hookd:egress default="allow">
          <hookd:rule action="deny" protocol="tcp" ports="9999" remote="192.0.2.1/32" log="true"/>
          <hookd:rule action="deny" protocol="tcp" ports="9999" remote="2001:db8::1/128"/>
        </hookd:egress>
      </hookd:interface>
    </hookd:policy>
P
# The host side listens where the guest connects out (9998 allowed, 9999 denied).
busybox nc -ll -p 9998 -e /bin/cat </dev/null >/dev/null 2>&1 &
sb_record_pid nc9998 $!
busybox nc -ll -p 9999 -e /bin/cat </dev/null >/dev/null 2>&1 &
sb_record_pid nc9999 $!
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 5353))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
' </dev/null >/dev/null 2>&1 &
sb_record_pid udp5353 $!
SB_VM_CMDLINE_EXTRA="hookd.ip6=2001:db8::20/64" sandbox_define_vm fw 52:54:00:00:00:2a 192.0.2.20/24 192.0.2.1 fw "$SB/fw.policy"
sandbox_define_vm client 52:54:00:00:00:2b 192.0.2.30/24 192.0.2.20 client
check "virsh start fw" sandbox_start_vm fw
check "virsh start client (no policy, same bridge)" sandbox_start_vm client
sandbox_wait_console fw 'GUEST DONE' 150 || true
sandbox_wait_console client 'GUEST DONE' 150 || true
tcp_to() { timeout 4 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
check "host -> guest tcp 8080 (allowed by a rule) connects" tcp_to 192.0.2.20 8080
check "host -> guest tcp 9000 (no rule, default deny) does not" sh -c "! timeout 5 bash -c 'exec 3<>/dev/tcp/192.0.2.20/9000' 2>/dev/null"
icmp_before=$(counter fw drop_fw_default)
busybox ping -c 2 -W 1 192.0.2.20 >/dev/null 2>&1 && icmp_rc=0 || icmp_rc=$?
check "host -> guest ping (no rule) gets no reply" test "$icmp_rc" -eq 1
check "... and is dropped and counted by the guest's default deny" test "$(counter fw drop_fw_default)" -gt "$icmp_before"
check "guest -> host ping: the reply passes the deny-by-default ingress (conntrack)" console_has fw "RESULT ping_out=ok"
check "guest -> host ping of 3000 bytes: the fragmented reply passes too" console_has fw "RESULT ping_out_fragmented=ok"
frag_before=$(counter fw drop_fragment)
busybox ping -c 1 -s 3000 -W 2 192.0.2.20 >/dev/null 2>&1 && icmp_rc=0 || icmp_rc=$?
check "host -> guest ping of 3000 bytes (no rule) gets no reply" test "$icmp_rc" -eq 1
check "... its first fragment denied, its later fragment dropped and counted" test "$(counter fw drop_fragment)" -gt "$frag_before"
check "guest -> host UDP of 3000 bytes: its fragments go out, the fragmented echo passes the deny-by-default ingress" console_has fw "RESULT udp_out_fragmented=ok"
# Host -> guest UDP of 3000 bytes, in fragments: to 7010 (allowed) it
# arrives whole; to 7011 (no rule) nothing of it does, and its later
# fragments are dropped as fragments of a denied datagram.
frag_before=$(counter fw drop_fragment)
python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 0))
for _ in range(3):
    for port in (7010, 7011):
        s.sendto(b"u" * 3000, ("192.0.2.20", port))
    time.sleep(0.3)
'
sleep 1
check "host -> guest UDP 7010 (allowed) of 3000 bytes: all fragments arrive, reassembled" console_has fw "UDPSINK port=7010 len=3000"
check "host -> guest UDP 7011 (no rule) of 3000 bytes: nothing arrives" sh -c "! grep -q 'UDPSINK port=7011' '$SB/fw.console'"
check "... its later fragments dropped and counted" test "$(counter fw drop_fragment)" -ge "$((frag_before + 3))"
check "guest -> host tcp 9998 (egress default allow) connects" console_has fw "RESULT tcp_out_allowed=ok"
check "guest -> host tcp 9999 (egress deny rule) does not" console_has fw "RESULT tcp_out_denied=fail"
check "guest -> host UDP: the echo comes back through the deny-by-default ingress (conntrack)" console_has fw "RESULT udp_out_reply=ok"
udp_before=$(counter fw drop_fw_default)
for i in 1 2 3; do echo probe > /dev/udp/192.0.2.20/7000 || true; sleep 0.2; done
check "host -> guest UDP 7000 (no rule) is dropped and counted" test "$(counter fw drop_fw_default)" -gt "$udp_before"
check "VM -> guest tcp 8080 over the bridge (allowed by a rule) connects" console_has client "RESULT vm_tcp8080=ok"
check "VM -> guest tcp 9000 over the bridge (default deny) does not" console_has client "RESULT vm_tcp9000=fail"
check "VM -> guest ping over the bridge (no rule) gets no reply" console_has client "RESULT vm_ping=fail"
sb_virsh destroy client >/dev/null 2>&1 || true
echo "# bypass attempts from the guest with hand-made frames (hookd-craft)"
check "control: a hand-made SYN to an allowed port is answered" console_has fw "RESULT craft_control=ok"
check "a hand-made SYN to the denied port is not" console_has fw "RESULT craft_plain_denied=fail"
check "a VLAN-tagged SYN (to an allowed port) is dropped" console_has fw "RESULT craft_vlan=fail"
check "a SYN behind IPv4 options is judged by its port" console_has fw "RESULT craft_options=fail"
check "a non-first fragment is dropped" console_has fw "RESULT craft_frag=fail"
check "a tiny first fragment is judged by its port" console_has fw "RESULT craft_tinyfrag=fail"
check "IPv6 control: a hand-made SYN to an allowed port is answered" console_has fw "RESULT craft6_control=ok"
check "IPv6: a SYN behind two extension headers to an allowed port is answered" console_has fw "RESULT craft6_ext_allowed=ok"
check "IPv6: a SYN behind two extension headers to the denied port is not" console_has fw "RESULT craft6_ext_denied=fail"
check "fw: VLAN and fragment drops counted" test "$(counter fw drop_vlan)" -gt 0 -a "$(counter fw drop_fragment)" -gt 0
check "fw: default-deny drops counted" test "$(counter fw drop_fw_default)" -gt 0
check "fw: deny-rule drops counted" test "$(counter fw drop_fw_rule)" -gt 0
check "fw: the deny rule's hits are counted" test "$("$HOOKCTL" show fw --json | jq '[.nics[0].rules[] | select(.direction == "egress") | .hits] | add')" -gt 0
check "fw: log=\"true\" packets reported (hookctl events)" test "$("$HOOKCTL" events fw --json | jq '[.[] | select(.action == "deny" and .destination_port == 9999 and .source == "192.0.2.20")] | length')" -gt 0
"$HOOKCTL" events fw | head -3
"$HOOKCTL" show fw | sed -n '/allowed sources/,$p'
echo "# hookctl trace --live: packets through fw's attached programs, nothing written"
fwtrace() { "$HOOKCTL" trace fw --live --mac 52:54:00:00:00:2a "$@" 2>&1 || true; }
out=$(fwtrace --direction ingress --remote 192.0.2.1 --protocol tcp --port 8080)
while IFS= read -r line; do echo "#   $line"; done <<<"$out"
check "trace --live: tcp 8080 from 192.0.2.1 passes fw's programs by its rule, as the rules say" \
    grep -qz 'live:  allow: passed: ingress rule at line [0-9]*: allow tcp.*rules: allow' <<<"$out"
out=$(fwtrace --direction ingress --remote 192.0.2.1 --protocol udp --port 7000)
check "trace --live: udp 7000 is dropped by the firewall's default" \
    grep -q '^live:  deny: dropped by firewall: fw_default' <<<"$out"
out=$(fwtrace --direction egress --remote 192.0.2.1 --protocol tcp --port 9999)
check "trace --live: tcp 9999 out is dropped by the deny rule" grep -q '^live:  deny: dropped by firewall: fw_rule' <<<"$out"

echo "# live policy changes on the running fw guest"
wait_policy() { # wait_policy DOMAIN PATTERN: until hookd enforces a policy matching PATTERN
    for _ in $(seq 1 50); do
        "$HOOKCTL" policy get "$1" 2>/dev/null | grep -q -- "$2" && return 0
        sleep 0.2
    done
    return 1
}
not_tcp_to() { ! timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
"$HOOKCTL" policy get fw > "$SB/fw.live.xml"
check "hookctl policy get prints the policy in force" grep -q 'ports="8080"' "$SB/fw.live.xml"
sed 's/ports="8080"/ports="8080,9000"/' "$SB/fw.live.xml" > "$SB/fw.open9000.xml"
gen0=$("$HOOKCTL" show fw --json | jq .generation)
check "hookctl policy set: allow tcp 9000 too" "$HOOKCTL" policy set fw "$SB/fw.open9000.xml"
check "... the policy generation moved on" test "$("$HOOKCTL" show fw --json | jq .generation)" -gt "$gen0"
check "... host -> guest tcp 9000 now connects" tcp_to 192.0.2.20 9000
check "... and it is saved in libvirt's live definition" grep -q '8080,9000' <(sb_virsh dumpxml fw)
check "... and in the persistent one" grep -q '8080,9000' <(sb_virsh dumpxml --inactive fw)
sed 's/ports="8080,9000"/ports="99999"/' "$SB/fw.open9000.xml" > "$SB/fw.bad.xml"
out=$("$HOOKCTL" policy set fw "$SB/fw.bad.xml" 2>&1) && rc=0 || rc=$?
check "hookctl policy set with port 99999: refused (exit 1)" test "$rc" -eq 1
check "... the error names the line, element and attribute" grep -q "line [0-9]*: <hookd:rule> attribute 'ports': port 99999" <<<"$out"
check "... and tcp 9000 still connects" tcp_to 192.0.2.20 9000
sb_virsh metadata fw urn:hookd:policy:1 --key hookd --live --set '<policy>
  <interface mac="52:54:00:00:00:2a">
    <address prefix="192.0.2.20/32"/><address prefix="2001:db8::20/128"/>
    <ingress default="deny"><rule action="allow" protocol="tcp" ports="9000"/></ingress>
  </interface>
</policy>' >/dev/null
check "virsh metadata --live: hookd applies the new policy (metadata-change event)" wait_policy fw 'ports="9000"'
check "... host -> guest tcp 8080 no longer connects" not_tcp_to 192.0.2.20 8080
check "... tcp 9000 does" tcp_to 192.0.2.20 9000
check "... the guest was never restarted" test "$(sandbox_vm_tap fw)" = "$("$HOOKCTL" show fw --json | jq -r '.nics[0].tap')"
sb_virsh metadata fw urn:hookd:policy:1 --key hookd --live --set '<policy><interface><ingress default="sometimes"/></interface></policy>' >/dev/null
sleep 2
check "virsh metadata --live with an invalid policy: refused, the previous one stays" \
    sh -c "grep -q 'policy from libvirt refused' '$SB/hookd.log' && \"$HOOKCTL\" policy get fw | grep -q 'ports=\"9000\"'"
check "... tcp 9000 still connects" tcp_to 192.0.2.20 9000
check "hookctl policy edit (EDITOR=sed): allow 8080 again" \
    env EDITOR="sed -i s/9000/8080/" "$HOOKCTL" policy edit fw
check "... host -> guest tcp 8080 connects again" tcp_to 192.0.2.20 8080
check "... tcp 9000 does not" not_tcp_to 192.0.2.20 9000
echo "# the busctl and gdbus calls of docs/management.md"
BUSCTL=(busctl --system call org.hookd.Hookd1 /org/hookd/Hookd1 org.hookd.Hookd1.Manager)
check "busctl ListDomains lists fw" grep -q '"fw"' <("${BUSCTL[@]}" ListDomains)
check "busctl GetPolicy prints fw's policy" grep -q 'ports=\\"8080\\"' <("${BUSCTL[@]}" GetPolicy s fw)
check "busctl Trace: tcp 8080 from the host is allowed by a rule" \
    grep -q '^sus "allow" [1-9]' <("${BUSCTL[@]}" Trace sssssqyy fw 52:54:00:00:00:2a ingress 192.0.2.1 tcp 8080 0 0)
# shellcheck disable=SC2016 # $p is the inner shell's variable
check "busctl SetPolicy (persist=false) then GetPolicy round-trips" sh -c '
    p=$(busctl --system --json=short call org.hookd.Hookd1 /org/hookd/Hookd1 org.hookd.Hookd1.Manager GetPolicy s fw | jq -r ".data[0]")
    busctl --system call org.hookd.Hookd1 /org/hookd/Hookd1 org.hookd.Hookd1.Manager SetPolicy ssb fw "$p" false | grep -q "^ts [0-9]"'
check "busctl Version property" grep -q '^s "' <(busctl --system get-property org.hookd.Hookd1 /org/hookd/Hookd1 org.hookd.Hookd1.Manager Version)
check "gdbus Health" grep -q "('ok'," <(gdbus call --system --dest org.hookd.Hookd1 --object-path /org/hookd/Hookd1 --method org.hookd.Hookd1.Manager.Health)
signal_seen() { jq -e -s --arg s "$1" 'any(.[]; .signal == $s)' "$SB/monitor.json" >/dev/null; }
for sig in DomainAttached PolicyApplied PacketLogged PolicyRefused DomainDetached; do
    check "hookctl monitor received $sig" signal_seen "$sig"
done

echo "# networks: switched and routed at the tap, tenants apart"
sb_virsh destroy fw >/dev/null 2>&1 || true
sb_virsh destroy client >/dev/null 2>&1 || true
netdoc() { # netdoc NAME TENANT VNI A.B.C [P6]: a network with A.B.C.0/24, gateway A.B.C.1 (and P6::/64, gateway P6::1)
    local v6=""
    [ -z "${5:-}" ] || v6="  <subnet prefix='$5::/64' gateway='$5::1'/>
"
    printf "<network xmlns='urn:hookd:network:1' name='%s' tenant='%s' vni='%s'>\n  <subnet prefix='%s.0/24' gateway='%s.1'/>\n%s</network>\n" \
        "$1" "$2" "$3" "$4" "$4" "$v6" > "$SB/net-$1.xml"
}
# blue and green are tenant acme's; red is globex's, on blue's addresses.
netdoc blue acme 10010 198.51.100 2001:db8:10
netdoc green acme 10020 203.0.113 2001:db8:20
netdoc red globex 20030 198.51.100
for n in blue green red; do
    check "hookctl network define $n" "$HOOKCTL" network define "$SB/net-$n.xml"
done
netvm() { # netvm NAME MAC NETWORK IP GATEWAY SCENARIO [CMDLINE]
    policy "$SB/$1.policy" "$2" "$4/32" "
        <hookd:network name=\"$3\"/>"
    SB_VM_IFACE_TYPE=ethernet SB_VM_CMDLINE_EXTRA="hookd.gw=$5 ${7:-}" \
        sandbox_define_vm "$1" "$2" "$4/24" "$5" "$6" "$SB/$1.policy"
}
# ng1's security group admits pings from nb1 only: nb1's are routed to it
# and pass, nb2's are routed to it and dropped by its ingress rules.
netvm nb2 52:54:00:00:01:02 blue 198.51.100.20 198.51.100.1 net \
    "hookd.reach=198.51.100.1 hookd.unreach=203.0.113.20"
# ng1 and nb1 get their IPv6 addresses by SLAAC (their policy addresses
# are the EUI-64 addresses of their MACs in green's and blue's /64s).
policy "$SB/ng1.policy" 52:54:00:00:01:03 203.0.113.20/32 "
        <hookd:network name=\"green\"/>
        <hookd:address prefix=\"2001:db8:20::5054:ff:fe00:103/128\"/>
        <hookd:ingress default=\"deny\"><hookd:rule action=\"allow\" protocol=\"icmp\" remote=\"198.51.100.10/32\"/>
          <hookd:rule action=\"allow\" protocol=\"icmpv6\" remote=\"2001:db8:10::5054:ff:fe00:101/128\"/></hookd:ingress>"
SB_VM_IFACE_TYPE=ethernet SB_VM_CMDLINE_EXTRA="hookd.gw=203.0.113.1 hookd.slaac=1" \
    sandbox_define_vm ng1 52:54:00:00:01:03 203.0.113.20/24 203.0.113.1 idle "$SB/ng1.policy"
# nr1, globex's, has nb2's subnet: it reaches its own gateway and outside,
# nothing of acme's.
netvm nr1 52:54:00:00:01:04 red 198.51.100.30 198.51.100.1 net \
    "hookd.reach=198.51.100.1,192.0.2.2 hookd.unreach=198.51.100.20,203.0.113.20"
# nb1 gets its address, mask, router and MTU from the network's DHCP.
# Its egress admits TCP 9998 so that its forged SYNs (hookd.forge) pass the
# firewall and meet the network stage.
policy "$SB/nb1.policy" 52:54:00:00:01:01 198.51.100.10/32 "
        <hookd:network name=\"blue\"/>
        <hookd:address prefix=\"2001:db8:10::5054:ff:fe00:101/128\"/>
        <hookd:ingress default=\"deny\"/>
        <hookd:egress default=\"deny\"><hookd:rule action=\"allow\" protocol=\"icmp\"/><hookd:rule action=\"allow\" protocol=\"icmpv6\"/>
          <hookd:rule action=\"allow\" protocol=\"tcp\" ports=\"9998\"/></hookd:egress>"
SB_VM_IFACE_TYPE=ethernet \
    SB_VM_CMDLINE_EXTRA="hookd.slaac=1 hookd.forge=52:54:00:00:01:04,198.51.100.10,198.51.100.30 hookd.reach=198.51.100.1,198.51.100.20,203.0.113.20,192.0.2.2,2001:db8:10::1,2001:db8:20::5054:ff:fe00:103 hookd.unreach=198.51.100.30" \
    sandbox_define_vm nb1 52:54:00:00:01:01 dhcp 198.51.100.1 net "$SB/nb1.policy"
for g in nb2 ng1 nr1; do
    check "virsh start $g" sandbox_start_vm "$g"
done
# The world outside each tenant: a namespace with 192.0.2.2 and no route
# back to the tenants' subnets, reached from the tenant's namespace through
# SNAT (docs/networks.md, "The outside"). Set up as soon as the tenant's
# first VM has started, while the guests boot.
outside() { # outside TENANT
    local o="sb-out-$1" up="up-$1"
    ip netns add "$o" &&
        ip link add "$up" type veth peer name o0 netns "$o" &&
        ip link set "$up" netns "hookd-$1" &&
        ip -n "hookd-$1" addr add 192.0.2.1/24 dev "$up" &&
        ip -n "hookd-$1" link set "$up" up &&
        ip -n "$o" addr add 192.0.2.2/24 dev o0 &&
        ip -n "$o" link set o0 up && ip -n "$o" link set lo up &&
        ip netns exec "hookd-$1" nft -f - <<NFT
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "$up" masquerade; }
}
NFT
}
for t in acme globex; do
    check "tenant $t's namespace hookd-$t was made with its first VM" ip netns exec "hookd-$t" true
    check "an outside for $t, through SNAT in hookd-$t" outside "$t"
done
check "hookd-acme routes nb2's and ng1's addresses to the data path (proto 99)" sh -c \
    "ip -n hookd-acme route show proto 99 | grep -q '^198.51.100.20 dev hookd' && ip -n hookd-acme route show proto 99 | grep -q '^203.0.113.20 dev hookd'"
check "ng1: up" sandbox_wait_console ng1 "GUEST READY" 120
check "nb2: done" sandbox_wait_console nb2 "GUEST DONE" 180
check "nb2 pings blue's gateway" console_has nb2 "RESULT reach_198.51.100.1=ok"
check "nb2's pings to ng1 are routed to it, and refused" console_has nb2 "RESULT unreach_203.0.113.20=fail"
check "... by ng1's security group (its ingress default deny counts them)" test "$(counter ng1 drop_fw_default)" -gt 0
check "nr1: done" sandbox_wait_console nr1 "GUEST DONE" 180
check "nr1 (globex) pings red's gateway" console_has nr1 "RESULT reach_198.51.100.1=ok"
check "nr1 reaches its outside through hookd-globex and SNAT" console_has nr1 "RESULT reach_192.0.2.2=ok"
check "nr1 cannot reach acme's nb2, on the same subnet" console_has nr1 "RESULT unreach_198.51.100.20=fail"
check "nr1 cannot reach acme's ng1 (no route in globex's namespace)" console_has nr1 "RESULT unreach_203.0.113.20=fail"
check "virsh start nb1" sandbox_start_vm nb1
check "nb1: done" sandbox_wait_console nb1 "GUEST DONE" 180
check "nb1 got its address, router, mask and MTU by DHCP (udhcpc), through default-deny ingress and egress" \
    console_has nb1 "DHCP ip=198.51.100.10 subnet=255.255.255.0 router=198.51.100.1 mtu=1500"
check "nb1 pings blue's gateway (answered at its tap)" console_has nb1 "RESULT reach_198.51.100.1=ok"
check "nb1 pings nb2 on blue (switched tap to tap)" console_has nb1 "RESULT reach_198.51.100.20=ok"
check "nb1 pings ng1 on green (routed within tenant acme)" console_has nb1 "RESULT reach_203.0.113.20=ok"
check "nb1 reaches its outside through hookd-acme and SNAT" console_has nb1 "RESULT reach_192.0.2.2=ok"
check "nb1 got its IPv6 address (SLAAC) and default route from the router advertisement" \
    console_has nb1 "SLAAC 2001:db8:10:0:5054:ff:fe00:101/64 default via fe80::68:6bff:fe00:271a dev eth0"
check "nb1 pings blue's IPv6 gateway" console_has nb1 "RESULT reach_2001:db8:10::1=ok"
check "nb1 pings ng1's SLAAC address on green (IPv6 routed within acme, ng1's rule admits it)" \
    console_has nb1 "RESULT reach_2001:db8:20::5054:ff:fe00:103=ok"
check "nb1's router solicitation was answered at its tap" test "$(counter nb1 net_answered_ra)" -ge 1
check "nb1 cannot reach nr1, tenant globex's, on an overlapping subnet" console_has nb1 "RESULT unreach_198.51.100.30=fail"
check "nb1's counters: sent to and received from the tenant namespace" sh -c \
    "test $(counter nb1 net_to_tenant_ns) -gt 0 -a $(counter nb1 net_from_tenant_ns) -gt 0"
check "nb1's hand-made SYNs to nr1's MAC and address, plain and VLAN-tagged, get nothing back" sh -c \
    "grep -q 'RESULT forge_plain=fail' $SB/nb1.console && grep -q 'RESULT forge_vlan=fail' $SB/nb1.console"
check "... dropped at nb1's tap: unknown unicast and VLAN counted" sh -c \
    "test $(counter nb1 drop_unknown_unicast) -gt 0 -a $(counter nb1 drop_vlan) -gt 0"
check "nb1's unanswered ARP for globex's address counted as not forwarded" test "$(counter nb1 drop_not_forwarded)" -gt 0
check "nb1's counters: DHCP and ARP answered, frames switched and routed" sh -c \
    "test $(counter nb1 net_answered_dhcp) -ge 2 -a $(counter nb1 net_answered_arp) -ge 1 -a $(counter nb1 net_switched) -gt 0 -a $(counter nb1 net_routed) -gt 0"
out=$("$HOOKCTL" trace nb2 --mac 52:54:00:00:01:02 --direction egress --remote 203.0.113.20 --protocol icmp --icmp-type 8 2>&1) || true
check "hookctl trace: nb2's ping is routed to ng1 and denied by ng1's ingress" \
    grep -q '^deny: .*routed to ng1 (52:54:00:00:01:03) on network green; at ng1: no ingress rule matches: default deny' <<<"$out"
out=$("$HOOKCTL" trace nb1 --mac 52:54:00:00:01:01 --direction egress --remote 192.0.2.2 --protocol icmp --icmp-type 8 2>&1) || true
check "hookctl trace: nb1's ping to the outside goes to hookd-acme" \
    grep -q "^allow: .*routed out to tenant acme's namespace hookd-acme" <<<"$out"
out=$("$HOOKCTL" trace nb1 --mac 52:54:00:00:01:01 --direction egress --remote 198.51.100.30 --protocol icmp --icmp-type 8 2>&1) || true
check "hookctl trace: globex's address on nb1's subnet is nobody (unknown_unicast)" \
    grep -q '^deny: .*dropped (unknown_unicast)' <<<"$out"
check "hookctl network show blue lists nb1 and nb2" \
    test "$("$HOOKCTL" network show blue --json | jq -r '[.nics[].domain] | sort | join(",")')" = "nb1,nb2"
check "hookctl network show blue names acme's namespace" \
    test "$("$HOOKCTL" network show blue --json | jq -r .namespace)" = hookd-acme
check "hookctl show nb1: on network blue" \
    test "$("$HOOKCTL" show nb1 --json | jq -r .nics[0].mode)" = "anti-spoofing, network blue"
out=$("$HOOKCTL" network undefine blue 2>&1) && rc=0 || rc=$?
check "undefining blue while nb1 and nb2 use it is refused" test "$rc" -ne 0
check "... naming nb1" grep -q 'in use by .*nb1 (52:54:00:00:01:01)' <<<"$out"
check "... and nb2" grep -q 'in use by .*nb2 (52:54:00:00:01:02)' <<<"$out"
for g in nb1 nb2 ng1 nr1; do
    sb_virsh destroy "$g" >/dev/null 2>&1 || true
done
check "with its VMs gone, blue has no NICs on this host" \
    test "$("$HOOKCTL" network show blue --json | jq '.nics | length')" -eq 0
check "and no network entries are left in the maps" \
    sh -c "test \"\$(bpftool -j map dump pinned /sys/fs/bpf/hookd/maps/hookd_net_addrs | jq length)\" -eq 0"
for t in acme globex; do
    check "tenant $t's namespace went with its last VM" test ! -e "/run/netns/hookd-$t"
    ip netns del "sb-out-$t" 2>/dev/null || true
done
check "no tenant routes or uplinks are left in the maps" sh -c \
    "test \"\$(bpftool -j map dump pinned /sys/fs/bpf/hookd/maps/hookd_routes | jq length)\" -eq 0 -a \"\$(bpftool -j map dump pinned /sys/fs/bpf/hookd/maps/hookd_uplinks | jq length)\" -eq 0"
for n in blue green red; do
    check "hookctl network undefine $n" "$HOOKCTL" network undefine "$n"
done

echo "# attach = \"auto\": tcx links from the start"
cp /etc/hookd/hookd.toml "$SB/hookd.toml.default" 2>/dev/null || : > "$SB/hookd.toml.default"
{ cat "$SB/hookd.toml.default"; echo 'attach = "auto"'; } > /etc/hookd/hookd.toml
sandbox_stop_hookd TERM
sandbox_start_hookd
policy "$SB/vm6.policy" 52:54:00:00:00:0f 192.0.2.15/32
sandbox_define_vm vm6 52:54:00:00:00:0f 192.0.2.15/24 192.0.2.1 spoof "$SB/vm6.policy"
links_before=$(hookd_tcx_links)
check "auto: virsh start --paused vm6 (policy)" sandbox_start_vm vm6 --paused
paused_on_tcx() { # vm6's 2 tcx links in, no filter, its policy in force
    test "$(hookd_tcx_links)" -eq "$((links_before + 2))" && on_tcx vm6 &&
        test "$("$HOOKCTL" show vm6 --json | jq -r '.nics[0].mode')" = anti-spoofing
}
check "... its paused guest is enforced by 2 tcx links already, no filter" paused_on_tcx
check "virsh resume vm6" sb_virsh resume vm6
sandbox_wait_console vm6 'GUEST DONE' 150 || true
check "vm6: its first frames, from a spoofed IP, were dropped" console_has vm6 "RESULT spoof_ip=fail"
check "vm6: legitimate ping passes" console_has vm6 "RESULT legit=ok"
check "vm6: ping from a changed MAC is dropped" console_has vm6 "RESULT spoof_mac=fail"
check "vm6: legitimate again after restoring the MAC" console_has vm6 "RESULT legit_after=ok"
sb_virsh destroy vm6 >/dev/null 2>&1 || true
check "vm6 gone: its 2 tcx links with it" test "$(hookd_tcx_links)" -eq "$links_before"
cp "$SB/hookd.toml.default" /etc/hookd/hookd.toml
sandbox_stop_hookd TERM
sandbox_start_hookd

echo "# bad policy, and hookd down"
policy "$SB/vm3.policy" 52:54:00:00:00:0c 192.0.2.12/32 '
        <hookd:egress><hookd:rule action="deny" protocol="udp" ports="70000"/></hookd:egress>'
sandbox_define_vm vm3 52:54:00:00:00:0c 192.0.2.12/24 192.0.2.1 idle "$SB/vm3.policy"
out=$(sb_virsh start vm3 2>&1) && rc=0 || rc=$?
check "vm3 with an invalid policy does not start" test "$rc" -ne 0
check "the error names element, attribute and line" grep -q "line .*<hookd:rule> attribute 'ports': port 70000" <<<"$out"
echo "    $out" | head -3
policy "$SB/vm4.policy" 52:54:00:00:00:0d 192.0.2.13/32
sandbox_define_vm vm4 52:54:00:00:00:0d 192.0.2.13/24 192.0.2.1 idle "$SB/vm4.policy"
# A valid policy the kernel side cannot apply: `start` accepts it, the
# attach queued behind it fails (an object pinned where vm4's link directory
# goes), and `started` fails the start before the guest runs.
BLOCK="/sys/fs/bpf/hookd/links/$(sb_virsh domuuid vm4)"
bpftool map pin pinned /sys/fs/bpf/hookd/maps/hookd_nics "$BLOCK"
out=$(sb_virsh start vm4 2>&1) && rc=0 || rc=$?
check "vm4, whose attach fails, does not start" test "$rc" -ne 0 -a "$(sb_virsh domstate vm4)" != running
check "the error names the NIC and the failed step" grep -q "NIC 52:54:00:00:00:0d (tap " <<<"$out"
echo "    $out" | head -3
rm -f "$BLOCK"
sandbox_stop_hookd TERM
out=$(sb_virsh start vm4 2>&1) && rc=0 || rc=$?
check "hookd down: vm4 with policy does not start unprotected" test "$rc" -ne 0 -a "$(sb_virsh domstate vm4)" != running
check "the error says hookd is not available" grep -q "hookd is not available" <<<"$out"
sandbox_define_vm vm5 52:54:00:00:00:0e 192.0.2.14/24 192.0.2.1 idle
check "hookd down: vm5 without policy starts anyway" sandbox_start_vm vm5
sb_virsh destroy vm5 >/dev/null 2>&1 || true
sb_virsh destroy vm2 >/dev/null 2>&1 || true
[ "$FAIL" -eq 0 ]
