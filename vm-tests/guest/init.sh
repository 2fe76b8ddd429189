#!/bin/sh
# /init of the hookd test guest (busybox ash, busybox applets only).
#
# Kernel command line parameters:
#   hookd.ip=ADDR/LEN       IPv4 address of eth0 (required for any traffic)
#   hookd.peer=IP           the address the scenario pings
#   hookd.scenario=NAME     idle | spoof | fw | client | net | mig (default idle)
#   hookd.ip6=ADDR/LEN      optional; only honoured by "idle" (see below)
#   hookd.ip=dhcp           configure eth0 with busybox udhcpc instead
#   hookd.gw=IP             default route (static addresses)
#   hookd.reach=IP,...      scenario "net": addresses that must answer a ping
#   hookd.unreach=IP,...    scenario "net": addresses that must not
#   hookd.slaac=1           IPv6 on eth0 from router advertisements (SLAAC)
#   hookd.forge=MAC,SRC,DST scenario "net": hand-made SYNs to MAC/DST (another
#                           tenant's NIC), plain and VLAN-tagged
#
# Every line goes to the serial console (ttyS0) prefixed with "hookd-guest: "
# so a test can grep for it, e.g. "hookd-guest: RESULT spoof_ip=ok".
# Stable markers: "GUEST READY" (eth0 configured, nothing sent yet),
# "RESULT <step>=ok|fail", "GUEST DONE".  A RESULT is "ok" when the step's
# traffic got an answer (so with hookd enforcing, spoof_* are expected "fail").

PATH=/bin
export PATH
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/ttyS0 ] && exec </dev/null >/dev/ttyS0 2>&1

P="hookd-guest:"
log() { echo "$P $*"; }
# run CMD...: run it, print its output prefixed, return its status.
run() {
    "$@" >/tmp/run.out 2>&1
    rc=$?
    sed "s/^/$P   | /" /tmp/run.out
    return $rc
}
result() { # result NAME STATUS
    if [ "$2" -eq 0 ]; then log "RESULT $1=ok"; else log "RESULT $1=fail"; fi
}
forever() { while :; do sleep 3600; done; }

IP='' PEER='' IP6='' GW='' REACH='' UNREACH='' SCENARIO=idle
# shellcheck disable=SC2013 # the command line is one line of words: split it
for arg in $(cat /proc/cmdline); do
    case $arg in
        hookd.ip=*)       IP=${arg#hookd.ip=} ;;
        hookd.ip6=*)      IP6=${arg#hookd.ip6=} ;;
        hookd.peer=*)     PEER=${arg#hookd.peer=} ;;
        hookd.gw=*)       GW=${arg#hookd.gw=} ;;
        hookd.reach=*)    REACH=${arg#hookd.reach=} ;;
        hookd.unreach=*)  UNREACH=${arg#hookd.unreach=} ;;
        hookd.slaac=*)    SLAAC=${arg#hookd.slaac=} ;;
        hookd.forge=*)    FORGE=${arg#hookd.forge=} ;;
        hookd.scenario=*) SCENARIO=${arg#hookd.scenario=} ;;
    esac
done
log "booted kernel $(uname -r) at $(cut -d' ' -f1 /proc/uptime)s scenario=$SCENARIO ip=$IP peer=$PEER"

# No IPv6 unless asked: with IPv6 on, bringing eth0 up sends MLD reports,
# router solicitations and DAD for the link-local address. The spoof scenario
# needs its spoofed packets to be the very first frames the guest emits, so
# IPv6 is disabled (default + all) BEFORE virtio_net creates eth0, and eth0
# inherits disable_ipv6=1. IPv4 sends nothing on "ip addr add"/"link up"
# (arp_notify=0, no IGMP report for 224.0.0.1).
for f in /proc/sys/net/ipv6/conf/default/disable_ipv6 /proc/sys/net/ipv6/conf/all/disable_ipv6; do
    [ -w "$f" ] && echo 1 > "$f"
done

while read -r m; do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done < /lib/modules/order

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
    log "GUEST ERROR no eth0"
    forever
fi

ip link set lo up
if [ "$IP" = dhcp ]; then
    # udhcpc's script: the lease, applied and logged.
    cat > /bin/dhcp-script <<'S'
#!/bin/sh
case $1 in
    bound|renew)
        ifconfig "$interface" "$ip" netmask "$subnet" up
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        [ -n "$router" ] && ip route add default via "$router"
        echo "hookd-guest: DHCP ip=$ip subnet=$subnet router=$router mtu=$mtu lease=$lease" ;;
esac
S
    chmod +x /bin/dhcp-script
    ip link set eth0 up
    if run udhcpc -i eth0 -s /bin/dhcp-script -n -q -t 5 -T 2; then
        IP=$(ip -4 addr show eth0 | sed -n 's/.*inet \([0-9./]*\).*/\1/p')
    else
        log "GUEST ERROR no DHCP lease"
    fi
else
    [ -n "$IP" ] && ip addr add "$IP" dev eth0
    ip link set eth0 up
    [ -n "$GW" ] && ip route add default via "$GW"
fi
MAC=$(cat /sys/class/net/eth0/address)
log "eth0 mac=$MAC addr=$IP"

ping_ok() { # ping_ok TRIES PING-ARGS...: ok if any attempt gets a reply
    tries=$1; shift
    n=0
    while [ $n -lt "$tries" ]; do
        run ping "$@" && return 0
        n=$((n + 1))
    done
    return 1
}

scenario_idle() {
    if [ "${SLAAC:-}" = 1 ]; then
        echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
    fi
    if [ -n "$IP6" ]; then
        echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
        ip -6 addr add "$IP6" dev eth0
        sleep 2 # busybox ip has no nodad: let duplicate address detection finish
    fi
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    forever
}

scenario_spoof() {
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    # a. Spoofed IPv4 source: these ARP + ICMP frames are the first the guest sends.
    ip addr add 192.0.2.99/32 dev eth0
    run ping -c 3 -W 1 -I 192.0.2.99 "$PEER"; result spoof_ip $?
    ip addr del 192.0.2.99/32 dev eth0
    ip neigh flush dev eth0

    # b. Legitimate traffic (retried: ARP may need a moment).
    ping_ok 3 -c 3 -W 2 "$PEER"; result legit $?

    # c. Spoofed MAC.
    ip link set eth0 down
    ip link set eth0 address 52:54:00:ff:ff:ff
    ip link set eth0 up
    ip neigh flush dev eth0
    run ping -c 3 -W 1 "$PEER"; result spoof_mac $?
    ip link set eth0 down
    ip link set eth0 address "$MAC"
    ip link set eth0 up
    ip neigh flush dev eth0

    # d. Legitimate again, with the real MAC restored.
    ping_ok 3 -c 3 -W 2 "$PEER"; result legit_after $?

    log "GUEST DONE at $(cut -d' ' -f1 /proc/uptime)s"
    # e. Keep trying one spoofed and one legitimate ping per second, so the
    # host can watch enforcement continue (e.g. while hookd restarts).
    ip addr add 192.0.2.99/32 dev eth0
    while :; do
        ping -c 1 -W 1 -I 192.0.2.99 "$PEER" >/dev/null 2>&1
        ping -c 1 -W 1 "$PEER" >/dev/null 2>&1
        sleep 1
    done
}

# Security groups: serve TCP 8080 (allowed by the test's policy) and 9000
# (not allowed); check from the inside that replies to the guest's own
# traffic pass a deny-by-default ingress, and that an egress deny rule holds.
scenario_fw() {
    mkdir -p /www && echo hookd > /www/index.html
    httpd -p 8080 -h /www
    nc -ll -p 9000 -e /bin/cat &
    # UDP 7010 is allowed in, 7011 is not: the host sends each a datagram
    # of 3000 bytes, in fragments, and reads what arrived here.
    hookd-craft eth0 udpsink 00:00:00:00:00:00 0.0.0.0 0.0.0.0 7010 &
    hookd-craft eth0 udpsink 00:00:00:00:00:00 0.0.0.0 0.0.0.0 7011 &
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    ping_ok 3 -c 2 -W 2 "$PEER"; result ping_out $?
    # 3000 bytes: the request and its reply go in fragments; the reply's
    # later fragments pass the deny-by-default ingress with its first.
    ping_ok 3 -c 2 -s 3000 -W 2 "$PEER"; result ping_out_fragmented $?
    run nc -w 3 "$PEER" 9998 </dev/null; result tcp_out_allowed $?
    run nc -w 3 "$PEER" 9999 </dev/null; result tcp_out_denied $?
    # UDP: the host echoes on 5353; its reply passes the deny-by-default
    # ingress because the guest's datagram opened the flow.
    run hookd-craft eth0 udp 00:00:00:00:00:00 "${IP%/*}" "$PEER" 5353; result udp_out_reply $?
    # The same with 3000 bytes: the datagram and its echo go in fragments.
    run hookd-craft eth0 udpbig 00:00:00:00:00:00 "${IP%/*}" "$PEER" 5353; result udp_out_fragmented $?
    # Bypass attempts with hand-made frames (hookd-craft): a SYN-ACK back
    # means the frame got through.
    peer_mac=$(ip neigh show "$PEER" | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p' | head -n 1)
    craft() { run hookd-craft eth0 "$1" "$peer_mac" "${IP%/*}" "$PEER" "$2"; }
    craft plain 9998; result craft_control $?
    craft plain 9999; result craft_plain_denied $?
    craft vlan 9998; result craft_vlan $?
    craft options 9999; result craft_options $?
    craft frag 9999; result craft_frag $?
    craft tinyfrag 9999; result craft_tinyfrag $?
    if [ -n "$IP6" ]; then
        # IPv6: the same over an extension-header chain. The host (PEER6)
        # answers once neighbour discovery has run both ways.
        echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
        ip -6 addr add "$IP6" dev eth0
        sleep 2 # busybox ip has no nodad: let duplicate address detection finish
        PEER6=2001:db8::1
        ping_ok 3 -c 2 -W 2 "$PEER6"; result ping6_out $?
        peer_mac6=$(ip -6 neigh show "$PEER6" | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p' | head -n 1)
        craft6() { run hookd-craft eth0 "$1" "$peer_mac6" "${IP6%/*}" "$PEER6" "$2"; }
        craft6 plain6 9998; result craft6_control $?
        craft6 ext6 9998; result craft6_ext_allowed $?
        craft6 ext6 9999; result craft6_ext_denied $?
    fi
    log "GUEST DONE at $(cut -d' ' -f1 /proc/uptime)s"
    forever
}

# Another VM on the same bridge as the fw guest (PEER): its traffic must pass
# the fw guest's ingress rules like the host's does.
scenario_client() {
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    sleep 8 # let the fw guest start its servers
    ok=1
    for i in 1 2 3 4 5; do
        if run nc -w 3 "$PEER" 8080 </dev/null; then ok=0; break; fi
        sleep 2
    done
    result vm_tcp8080 $ok
    run nc -w 3 "$PEER" 9000 </dev/null; result vm_tcp9000 $?
    run ping -c 2 -W 1 "$PEER"; result vm_ping $?
    log "GUEST DONE at $(cut -d' ' -f1 /proc/uptime)s"
    forever
}

# Networks: each address of hookd.reach (comma-separated) must answer a
# ping, each of hookd.unreach must not.
scenario_net() {
    if [ "${SLAAC:-}" = 1 ]; then
        # IPv6 on: the kernel solicits a router, and configures an address
        # and a default route from the advertisement.
        echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
        n=0
        while [ $n -lt 20 ] && ! ip -6 route show default | grep -q via; do
            sleep 0.5; n=$((n + 1))
        done
        sleep 2 # duplicate address detection of the SLAAC address
        log "SLAAC $(ip -6 addr show dev eth0 scope global | sed -n 's/.*inet6 \([^ ]*\).*/\1/p' | head -n 1) $(ip -6 route show default | head -n 1)"
    fi
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    for t in $(echo "$REACH" | tr , ' '); do
        ping_ok 3 -c 2 -W 2 "$t"; result "reach_$t" $?
    done
    for t in $(echo "$UNREACH" | tr , ' '); do
        run ping -c 3 -W 1 "$t"; result "unreach_$t" $?
    done
    if [ -n "${FORGE:-}" ]; then
        # Frames the guest's stack would never send: straight to another
        # tenant's NIC (its MAC and address), plain and with a VLAN tag.
        fmac=${FORGE%%,*}; rest=${FORGE#*,}; fsrc=${rest%%,*}; fdst=${rest#*,}
        run hookd-craft eth0 plain "$fmac" "$fsrc" "$fdst" 9998; result forge_plain $?
        run hookd-craft eth0 vlan "$fmac" "$fsrc" "$fdst" 9998; result forge_vlan $?
    fi
    log "GUEST DONE at $(cut -d' ' -f1 /proc/uptime)s"
    forever
}

# Live migration: connections the guest opens must survive its moves
# through a deny-by-default ingress. The host (PEER) streams lines on TCP
# 7000 and datagrams on UDP 7001, and the guest echoes them; 8080 is
# allowed by the test's policy and 9000 is not. A connection that ends
# is logged (CLOSED) and opened again: the host counts both.
scenario_mig() {
    nc -ll -p 8080 -e /bin/cat &
    nc -ll -p 9000 -e /bin/cat &
    log "GUEST READY at $(cut -d' ' -f1 /proc/uptime)s"
    ping_ok 5 -c 1 -W 2 "$PEER"; result ping_peer $?
    for i in 1 2 3 4; do
        (while :; do nc "$PEER" 7000 -e /bin/cat; log "CLOSED tcp$i (exit $?)"; sleep 1; done) &
    done
    (while :; do hookd-craft eth0 udpecho 00:00:00:00:00:00 "${IP%/*}" "$PEER" 7001; log "CLOSED udp (exit $?)"; sleep 1; done) &
    log "GUEST DONE at $(cut -d' ' -f1 /proc/uptime)s"
    forever
}

case $SCENARIO in
    mig)   scenario_mig ;;
    net)   scenario_net ;;
    fw)    scenario_fw ;;
    client) scenario_client ;;
    idle)  scenario_idle ;;
    spoof) scenario_spoof ;;
    *)     log "GUEST ERROR unknown scenario $SCENARIO"; forever ;;
esac
