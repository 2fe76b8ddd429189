# shellcheck shell=bash
# hookd tier-3 sandbox: a private hypervisor (dbus-daemon, virtlogd, libvirtd,
# optionally hookd and its libvirt hook) in its own network, mount and PID
# namespaces, booting tiny TCG guests built by ../guest/build-image.sh.
#
# Usage (the script must be run as root):
#   #!/bin/bash
#   set -euo pipefail
#   source "$(dirname "$0")/../lib/sandbox.sh"
#   sandbox_enter "$0" "$@"          # FIRST: re-execs the script inside the namespaces
#   sandbox_setup                    # mounts, br0, EXIT trap
#   sandbox_start_daemons            # dbus, virtlogd, [hookd], libvirtd
#   sandbox_define_vm vm1 52:54:00:00:00:0a 192.0.2.10/24 192.0.2.1 spoof [policy.xml]
#   sandbox_start_vm vm1
#   sandbox_wait_console vm1 'GUEST DONE' 120
#
# Environment (all optional):
#   HOOKD_GUEST_DIR       guest image dir (vmlinuz, initramfs.gz); default /tmp/hookd-guest,
#                         built by sandbox_enter before the netns is entered (needs apt)
#   HOOKD_BIN             hookd daemon binary; started by sandbox_start_daemons
#   HOOKD_ARGS            its arguments (word-split)
#   HOOKD_CONFIG          file installed as /etc/hookd/hookd.toml
#   HOOKD_HOOK_BIN        installed as /etc/libvirt/hooks/qemu.d/50-hookd (mode 755)
#   HOOKD_LIBEXEC_DIR     directory whose content is copied into /usr/libexec/hookd/
#   HOOKD_DBUS_POLICY     bus policy file copied into /etc/dbus-1/system.d/
#   HOOKD_START_TIMEOUT   seconds to wait for org.hookd.Hookd1 on the bus (default 10)
#   HOOKD_KEEP_SANDBOX=1  keep $SB (logs, consoles, XML) after exit
#   HOOKD_SANDBOX_INNER   set by sandbox_enter inside the namespaces; do not set by hand
#
# Inside, $SB is the work dir: pids, *.console, *.xml, hookd.log,
# log/libvirtd.log, log/qemu/*.log, dbus.log, virtlogd.pid ...
#
# What is private: a fresh netns (lo, br0 = 192.0.2.1/24 + 2001:db8::1/64);
# a PID namespace (when the script exits, the kernel kills everything left);
# a mount namespace with: fresh sysfs on /sys (host's /sys and its cgroup
# mounts detached), bpffs on /sys/fs/bpf, tmpfs on
# /run (/run/dbus, /run/libvirt, /run/hookd), copy-on-write overlays on /etc,
# /var/lib and /usr/libexec (so /etc/libvirt, /etc/dbus-1/system.d, /etc/hookd,
# /var/lib/hookd, /usr/libexec/hookd are the host's content + sandbox changes,
# stored under $SB/ov), fresh dirs bound over /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt, and an empty tmpfs over
# /usr/share/dbus-1/system-services (no bus activation of polkitd & co).

HOOKD_VMTESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${HOOKD_GUEST_DIR:=/tmp/hookd-guest}"
export HOOKD_GUEST_DIR
export LIBVIRT_DEFAULT_URI=qemu:///system

sb_log() { echo "sandbox: $*" >&2; }
sb_die() { echo "sandbox: error: $*" >&2; exit 1; }
sb_now() { echo "${EPOCHREALTIME/,/.}"; }
sb_since() { awk -v a="$1" -v b="$(sb_now)" 'BEGIN { printf "%.1f", b - a }'; }
sb_virsh() { timeout 30 virsh -q -c qemu:///system "$@"; }

# sandbox_enter "$0" "$@": outside, build the guest image (idempotent) and
# run the script again in new namespaces, then exit with its status; inside
# (HOOKD_SANDBOX_INNER=1), return at once.
# Signals: TERM/INT/HUP to the outer script are forwarded as TERM to the inner
# one, which cleans up; the outer waits for it (unshare itself ignores them).
sandbox_enter() {
    local script=$1 upid rc
    shift
    if [ -n "${HOOKD_SANDBOX_INNER:-}" ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || sb_die "must run as root"
    "$HOOKD_VMTESTS_DIR/guest/build-image.sh" "$HOOKD_GUEST_DIR" \
        || sb_die "guest image build failed"
    # --pid/--mount-proc: the script becomes PID 1 of its own PID namespace,
    # so every daemon and qemu dies with it, even on SIGKILL.
    # --kill-child: if unshare is killed, the script is SIGKILLed too.
    HOOKD_SANDBOX_INNER=1 unshare --mount --propagation private --net --pid \
        --mount-proc --fork --kill-child -- "${BASH:-bash}" "$script" "$@" &
    upid=$!
    trap 'sb_forward_term '"$upid" TERM INT HUP
    while :; do
        rc=0
        wait "$upid" || rc=$?
        kill -0 "$upid" 2>/dev/null || break
    done
    exit "$rc"
}

sb_forward_term() { # sb_forward_term UNSHARE_PID: TERM the sandboxed script
    local -a children=()
    read -r -a children 2>/dev/null < "/proc/$1/task/$1/children" || true
    if [ "${#children[@]}" -gt 0 ]; then
        kill -TERM "${children[@]}" 2>/dev/null || true
    fi
}

sb_mount() { # sb_mount MOUNT-ARGS... TARGET  (records TARGET for cleanup)
    # -n: no /run/mount/utab bookkeeping (it would land in the host's /run).
    mount -n "$@" || sb_die "mount $* failed"
    echo "${!#}" >> "$SB/mounts"
}

sb_overlay() { # sb_overlay DIR: copy-on-write view of DIR, changes in $SB/ov
    local dir=$1 key
    key=$(echo "${dir#/}" | tr / _)
    mkdir -p "$SB/ov/$key/upper" "$SB/ov/$key/work"
    sb_mount -t overlay overlay \
        -o "lowerdir=$dir,upperdir=$SB/ov/$key/upper,workdir=$SB/ov/$key/work" "$dir"
}

sb_bind_fresh() { # sb_bind_fresh DIR NAME: empty $SB/NAME bound over DIR
    [ -d "$1" ] || sb_die "$1 missing (is libvirt-daemon-system installed?)"
    mkdir -p "$SB/$2"
    sb_mount --bind "$SB/$2" "$1"
}

sandbox_setup() {
    [ -n "${HOOKD_SANDBOX_INNER:-}" ] || sb_die "sandbox_setup outside the sandbox (call sandbox_enter first)"
    SB=$(mktemp -d /tmp/hookd-sb.XXXXXX)
    export SB
    chmod 755 "$SB"
    : > "$SB/pids"
    : > "$SB/mounts"
    SB_T0=$(sb_now)
    trap sandbox_cleanup EXIT
    # PID 1 gets no default signal handling: exit explicitly (runs the EXIT trap).
    trap 'exit 130' INT
    trap 'exit 143' TERM

    sb_mount -t tmpfs -o mode=755 tmpfs /run
    # Fresh sysfs for this netns; detach the host's /sys first, with its
    # cgroup mounts, so libvirt sees no cgroups at all (and creates none).
    umount -n -l /sys
    sb_mount -t sysfs sysfs /sys
    sb_mount -t bpf bpffs /sys/fs/bpf
    mkdir -p /run/dbus /run/libvirt /run/hookd /run/lock /run/user
    sb_overlay /etc
    sb_overlay /var/lib
    sb_overlay /usr/libexec
    sb_bind_fresh /var/lib/libvirt varlib-libvirt
    sb_bind_fresh /var/log/libvirt log
    sb_bind_fresh /var/cache/libvirt cache-libvirt
    sb_mount -t tmpfs -o mode=755 tmpfs /usr/share/dbus-1/system-services
    mkdir -p /etc/hookd /var/lib/hookd /usr/libexec/hookd /etc/dbus-1/system.d

    # libvirt: no host domains/networks/pools, no hooks but ours, and qemu
    # running as root without cgroups, mount namespaces or relabelling.
    rm -rf /etc/libvirt/hooks
    mkdir -p /etc/libvirt/hooks/qemu.d
    rm -f /etc/libvirt/qemu/*.xml /etc/libvirt/qemu/networks/autostart/* \
        /etc/libvirt/storage/autostart/* /etc/libvirt/storage/*.xml 2>/dev/null || true
    cat >> /etc/libvirt/qemu.conf <<'EOF'

# --- hookd vm-tests sandbox ---
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
EOF
    cat >> /etc/libvirt/libvirtd.conf <<'EOF'

# --- hookd vm-tests sandbox ---
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF

    if [ -n "${HOOKD_HOOK_BIN:-}" ]; then
        [ -f "$HOOKD_HOOK_BIN" ] || sb_die "HOOKD_HOOK_BIN=$HOOKD_HOOK_BIN not found"
        install -m 0755 "$HOOKD_HOOK_BIN" /etc/libvirt/hooks/qemu.d/50-hookd
    fi
    if [ -n "${HOOKD_LIBEXEC_DIR:-}" ]; then
        [ -d "$HOOKD_LIBEXEC_DIR" ] || sb_die "HOOKD_LIBEXEC_DIR=$HOOKD_LIBEXEC_DIR not a directory"
        cp -a "$HOOKD_LIBEXEC_DIR"/. /usr/libexec/hookd/
    fi
    if [ -n "${HOOKD_DBUS_POLICY:-}" ]; then
        [ -f "$HOOKD_DBUS_POLICY" ] || sb_die "HOOKD_DBUS_POLICY=$HOOKD_DBUS_POLICY not found"
        install -m 0644 "$HOOKD_DBUS_POLICY" /etc/dbus-1/system.d/
    fi
    if [ -n "${HOOKD_CONFIG:-}" ]; then
        [ -f "$HOOKD_CONFIG" ] || sb_die "HOOKD_CONFIG=$HOOKD_CONFIG not found"
        install -m 0644 "$HOOKD_CONFIG" /etc/hookd/hookd.toml
    fi

    ip link set lo up
    ip link add br0 type bridge forward_delay 0 stp_state 0
    ip addr add 192.0.2.1/24 dev br0
    ip -6 addr add 2001:db8::1/64 dev br0 nodad
    ip link set br0 up
    sb_log "sandbox $SB ready"
}

sb_record_pid() { # sb_record_pid NAME PID
    echo "$1 $2" >> "$SB/pids"
}

sb_pidfile_wait() { # sb_pidfile_wait FILE: wait up to 10 s for a pid file, echo the pid
    local i
    for i in $(seq 100); do
        if [ -s "$1" ]; then
            cat "$1"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

sandbox_start_daemons() {
    local pid
    # System bus at its default socket /run/dbus/system_bus_socket (the hook,
    # run by libvirt with a cleaned environment, finds it there).
    dbus-daemon --system --fork --print-pid=3 3>"$SB/dbus.pid" >"$SB/dbus.log" 2>&1 \
        || sb_die "dbus-daemon failed: $(cat "$SB/dbus.log")"
    pid=$(sb_pidfile_wait "$SB/dbus.pid") || sb_die "dbus-daemon wrote no pid"
    sb_record_pid dbus-daemon "$pid"

    virtlogd -d -p "$SB/virtlogd.pid" || sb_die "virtlogd failed"
    pid=$(sb_pidfile_wait "$SB/virtlogd.pid") || sb_die "virtlogd wrote no pid"
    sb_record_pid virtlogd "$pid"

    if [ -n "${HOOKD_BIN:-}" ]; then
        sandbox_start_hookd
    fi
    sandbox_start_libvirtd
}

# sandbox_binaries BIN_DIR: hookd, its hook and hookctl from BIN_DIR unless
# HOOKD_BIN, HOOKD_HOOK_BIN and HOOKCTL name others (test-packages.sh sets
# them, and HOOKD_DBUS_POLICY= for the installed bus policy); exported.
sandbox_binaries() {
    export HOOKD_BIN=${HOOKD_BIN:-$1/hookd}
    export HOOKD_HOOK_BIN=${HOOKD_HOOK_BIN:-$1/hookd-qemu-hook}
    export HOOKD_DBUS_POLICY=${HOOKD_DBUS_POLICY-$HOOKD_VMTESTS_DIR/../dbus/org.hookd.Hookd1.conf}
    export HOOKCTL=${HOOKCTL:-$1/hookctl}
    local b
    for b in "$HOOKD_BIN" "$HOOKD_HOOK_BIN" "$HOOKCTL"; do
        [ -x "$b" ] || sb_die "$b missing: run cargo build --workspace first"
    done
}

# sandbox_start_libvirtd: start libvirtd (it reads its hooks now) and wait
# until it answers.
sandbox_start_libvirtd() {
    local t0 i pid
    t0=$(sb_now)
    # shellcheck disable=SC2086 # SB_LIBVIRTD_ARGS: words (--listen)
    libvirtd -d ${SB_LIBVIRTD_ARGS:-} -p "$SB/libvirtd.pid" || sb_die "libvirtd failed"
    pid=$(sb_pidfile_wait "$SB/libvirtd.pid") || sb_die "libvirtd wrote no pid"
    sb_record_pid libvirtd "$pid"
    for i in $(seq 200); do
        if virsh -c qemu:///system version >/dev/null 2>&1; then
            sb_log "libvirtd up in $(sb_since "$t0")s (sandbox $(sb_since "$SB_T0")s)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
    sb_die "libvirtd did not answer"
}

# sandbox_migration_host ADDR HOST_UUID: this libvirtd takes live
# migrations on ADDR (plain TCP, no auth: the sandbox's own network) and
# is a host of its own to libvirt, so that two sandboxes on one machine
# can migrate to each other. Call before sandbox_start_daemons.
sandbox_migration_host() {
    cat >> /etc/libvirt/libvirtd.conf <<EOF
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
host_uuid = "$2"
EOF
    cat >> /etc/libvirt/qemu.conf <<EOF
migration_address = "$1"
migration_host = "$1"
EOF
    export SB_LIBVIRTD_ARGS=--listen
}

# sandbox_spawn_host SCRIPT ARGS...: run SCRIPT as a second hypervisor in
# namespaces of its own, nested in this sandbox's (it dies with it), its
# output in $SB/host2.log; sets SB_HOST2 to the pid sb_in takes.
sandbox_spawn_host() {
    local upid child='' i
    HOOKD_SANDBOX_INNER=1 unshare --mount --propagation private --net --pid \
        --mount-proc --fork --kill-child -- "${BASH:-bash}" "$@" >"$SB/host2.log" 2>&1 &
    upid=$!
    for i in $(seq 50); do
        child=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null || true)
        [ -n "$child" ] && break
        sleep 0.1
    done
    [ -n "$child" ] || sb_die "the second host did not start"
    SB_HOST2=${child%% *}
    sb_record_pid host2 "$SB_HOST2"
}

# sb_in PID CMD...: run CMD in the namespaces of the second host PID.
sb_in() {
    local pid=$1
    shift
    nsenter -t "$pid" -m -n -p -- "$@"
}

# sandbox_stop_libvirtd: stop the libvirtd started last (running guests stay).
sandbox_stop_libvirtd() {
    local pid i
    pid=$(cat "$SB/libvirtd.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

sb_name_owned() { # sb_name_owned BUSNAME
    dbus-send --system --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q 'boolean true'
}

# sandbox_start_hookd: start $HOOKD_BIN $HOOKD_ARGS (log: $SB/hookd.log,
# appended) and wait until it owns org.hookd.Hookd1. Sets SB_HOOKD_PID.
sandbox_start_hookd() {
    [ -n "${HOOKD_BIN:-}" ] || sb_die "HOOKD_BIN not set"
    [ -x "$HOOKD_BIN" ] || sb_die "HOOKD_BIN=$HOOKD_BIN not executable"
    local t0 i limit=$((${HOOKD_START_TIMEOUT:-10} * 10))
    t0=$(sb_now)
    # shellcheck disable=SC2086
    "$HOOKD_BIN" ${HOOKD_ARGS:-} >>"$SB/hookd.log" 2>&1 </dev/null &
    SB_HOOKD_PID=$!
    sb_record_pid hookd "$SB_HOOKD_PID"
    for ((i = 0; i < limit; i++)); do
        if sb_name_owned org.hookd.Hookd1; then
            sb_log "hookd (pid $SB_HOOKD_PID) on the bus in $(sb_since "$t0")s"
            return 0
        fi
        if ! kill -0 "$SB_HOOKD_PID" 2>/dev/null; then
            tail -n 20 "$SB/hookd.log" >&2
            sb_die "hookd exited before claiming org.hookd.Hookd1"
        fi
        sleep 0.1
    done
    tail -n 20 "$SB/hookd.log" >&2
    sb_die "hookd did not claim org.hookd.Hookd1 within ${HOOKD_START_TIMEOUT:-10}s"
}

# sandbox_stop_hookd [SIGNAL]: stop the hookd started by sandbox_start_hookd
# (default TERM) and wait for it (bounded 10 s, then KILL).
sandbox_stop_hookd() {
    local sig=${1:-TERM} i
    [ -n "${SB_HOOKD_PID:-}" ] || return 0
    kill -"$sig" "$SB_HOOKD_PID" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$SB_HOOKD_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SB_HOOKD_PID" 2>/dev/null || true
    wait "$SB_HOOKD_PID" 2>/dev/null || true
    SB_HOOKD_PID=
}

sb_xml_escape() {
    local s=$1
    s=${s//&/&amp;}; s=${s//</&lt;}; s=${s//>/&gt;}; s=${s//\'/&apos;}
    printf '%s' "$s"
}

# sandbox_define_vm NAME MAC IP/LEN PEER SCENARIO [POLICY_XML_FILE]
# Extra kernel parameters: env SB_VM_CMDLINE_EXTRA (e.g. hookd.ip6=2001:db8::10/64);
# extra <interface> content: env SB_VM_IFACE_EXTRA (e.g. an nwfilter filterref);
# SB_VM_IFACE_TYPE=ethernet gives the guest a tap without a bridge (for
# hookd's networks) instead of a port on br0.
sb_vm_iface() { # sb_vm_iface MAC: the guest's <interface>
    if [ "${SB_VM_IFACE_TYPE:-bridge}" = ethernet ]; then
        printf "<interface type='ethernet'>\n      <mac address='%s'/>\n      <model type='virtio'/>%s\n    </interface>" "$1" "${SB_VM_IFACE_EXTRA:-}"
    else
        printf "<interface type='bridge'>\n      <mac address='%s'/>\n      <source bridge='br0'/>\n      <model type='virtio'/>%s\n    </interface>" "$1" "${SB_VM_IFACE_EXTRA:-}"
    fi
}

sandbox_define_vm() {
    [ $# -ge 5 ] || sb_die "usage: sandbox_define_vm NAME MAC IP/LEN PEER SCENARIO [POLICY_XML_FILE]"
    local name=$1 mac=$2 ip=$3 peer=$4 scenario=$5 policy=${6:-} xml metadata=
    if [ ! -s "$HOOKD_GUEST_DIR/vmlinuz" ] || [ ! -s "$HOOKD_GUEST_DIR/initramfs.gz" ]; then
        sb_die "no guest image in $HOOKD_GUEST_DIR (run guest/build-image.sh)"
    fi
    if [ -n "$policy" ]; then
        [ -f "$policy" ] || sb_die "policy file $policy not found"
        metadata="  <metadata>
$(cat "$policy")
  </metadata>"
    fi
    local cmdline="console=ttyS0 quiet panic=-1 hookd.ip=$ip hookd.peer=$peer hookd.scenario=$scenario ${SB_VM_CMDLINE_EXTRA:-}"
    xml=$SB/$name.xml
    : > "$SB/$name.console"
    cat > "$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
$metadata
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$HOOKD_GUEST_DIR/vmlinuz</kernel>
    <initrd>$HOOKD_GUEST_DIR/initramfs.gz</initrd>
    <cmdline>$(sb_xml_escape "$cmdline")</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $(sb_vm_iface "$mac")
    <serial type='file'>
      <source path='$SB/$name.console' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    sb_virsh define "$xml" >/dev/null || sb_die "virsh define $name failed"
}

# sandbox_start_vm NAME: virsh start; returns virsh's status (a hook may refuse).
sandbox_start_vm() {
    local name=$1 rc=0
    shift
    printf '%s\n' "$(sb_now)" > "$SB/$name.started"
    sb_virsh start "$name" "$@" >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        sb_log "virsh start $name failed ($rc)"
    fi
    return "$rc"
}

# sandbox_wait_console NAME PATTERN TIMEOUT_S: wait for an extended regexp in
# the serial log. On timeout: print the console tail, return 1.
sandbox_wait_console() {
    local name=$1 pattern=$2 timeout=$3 file t0 i limit
    file=$SB/$name.console
    t0=$(cat "$SB/$name.started" 2>/dev/null || sb_now)
    limit=$((timeout * 5))
    for ((i = 0; i < limit; i++)); do
        if grep -Eq -- "$pattern" "$file" 2>/dev/null; then
            sb_log "$name: '$pattern' after $(sb_since "$t0")s"
            return 0
        fi
        sleep 0.2
    done
    sb_log "$name: timeout (${timeout}s) waiting for '$pattern'; console tail:"
    tail -n 30 "$file" 2>/dev/null | sed 's/^/    /' >&2 || true
    return 1
}

# sandbox_vm_tap NAME [MAC]: the host-side tap of the VM's (first / MAC's) NIC.
sandbox_vm_tap() {
    local name=$1 mac=${2:-}
    sb_virsh domiflist "$name" | awk -v mac="$mac" \
        'NF >= 5 && (mac == "" || tolower($5) == tolower(mac)) { print $1; exit }'
}

sandbox_cleanup() {
    local rc=${1:-$?} line name pid i
    set +e
    trap - EXIT INT TERM
    if [ -n "${SB:-}" ] && [ -d "$SB" ]; then
        if [ -S /run/libvirt/libvirt-sock ]; then
            for name in $(sb_virsh list --name 2>/dev/null); do
                sb_virsh destroy "$name" >/dev/null 2>&1
            done
        fi
        # Stop what we started, newest first, by pid.
        tac "$SB/pids" 2>/dev/null | while read -r name pid; do
            kill -TERM "$pid" 2>/dev/null
        done
        for i in $(seq 50); do
            line=
            while read -r name pid; do
                kill -0 "$pid" 2>/dev/null && line="$line $pid"
            done < "$SB/pids"
            [ -z "$line" ] && break
            sleep 0.1
        done
        for pid in $line; do kill -KILL "$pid" 2>/dev/null; done
        # Unmount before deleting (overlay upper/work dirs live in $SB).
        tac "$SB/mounts" 2>/dev/null | while read -r line; do
            umount -n -l "$line" 2>/dev/null
        done
        if [ "${HOOKD_KEEP_SANDBOX:-0}" = 1 ]; then
            sb_log "kept $SB"
        else
            rm -rf "$SB"
        fi
    fi
    exit "$rc"
}
