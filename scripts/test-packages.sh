#!/usr/bin/env bash
# Builds the .deb and the .rpm and checks both; installs the .deb, upgrades
# it, runs the VM tests against the installed system paths, installs the
# next version (a build whose programs differ) while a guest exchanges
# traffic, removes the package and shows that VMs still start, then purges
# it. Run as root:
#   bash scripts/test-packages.sh
#
# The machine is never changed. Everything after the build runs in a
# throwaway root: a private mount and PID namespace whose /etc, /usr and /var
# (and /lib, /bin, /sbin where /usr is not merged) are copy-on-write overlays
# kept on a tmpfs of that namespace, with a tmpfs on /run (no systemd, no
# system bus, no libvirtd of the machine to restart) and its own bpffs; what
# dpkg, groupadd and the tests write there vanishes with the namespace. The
# script records the machine's installed packages, groups, a checksum
# listing of /etc and its libvirtd processes before and after, and fails if
# they differ.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root test-packages

# machine_state: what the package test must leave as it found it.
machine_state() {
    echo "## installed packages (dpkg-query -W)"
    dpkg-query -W -f='${binary:Package} ${Version} ${db:Status-Abbrev}\n'
    echo "## groups (getent group)"
    getent group
    echo "## /etc: type, mode, owner and link target of each entry; sha256 of each file"
    find /etc -xdev -printf '%y %m %u:%g %p %l\n' | LC_ALL=C sort
    find /etc -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    echo "## libvirt daemons of the machine (pid, command line)"
    machine_daemons
}
# machine_daemons: libvirtd, virtqemud and virtlogd running in this shell's
# PID and mount namespaces; those of sandboxes (ours or anybody's) are not
# the machine's.
machine_daemons() {
    local pid own_pid own_mnt
    own_pid=$(readlink /proc/self/ns/pid)
    own_mnt=$(readlink /proc/self/ns/mnt)
    for pid in $(pgrep -x libvirtd; pgrep -x virtqemud; pgrep -x virtlogd); do
        if [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" = "$own_pid" ] &&
            [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$own_mnt" ]; then
            echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"
        fi
    done
}
state_summary() { # state_summary FILE: counts per section, and a digest
    awk '/^## / { s++; next } { n[s]++ } END {
        printf "%d packages, %d groups, %d /etc entries and files, %d libvirt daemons",
            n[1], n[2], n[3], n[4] }' "$1"
    printf ' (digest %s)\n' "$(sha256sum < "$1" | cut -c1-16)"
}

if [ -z "${HOOKD_PKG_ROOT:-}" ]; then
    echo "== build"
    DEB=$(bash packaging/deb/build-deb.sh)
    RPM=$(bash packaging/rpm/build-rpm.sh)
    # The next version: the same source, its programs built for another
    # instruction set, so that to the kernel they are new programs.
    NEXT_DEB=$(HOOKD_BPF_CFLAGS=-mcpu=v3 HOOKD_DEB_REVISION=2 bash packaging/deb/build-deb.sh)
    echo "built $DEB, $RPM and the next version $NEXT_DEB"
    work=$(mktemp -d /tmp/hookd-pkgtest.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/root"
    machine_state > "$work/before"
    echo "== the machine before: $(state_summary "$work/before")"
    # --pid --fork --kill-child: every process of the test dies with it.
    rc=0
    HOOKD_PKG_ROOT=$work/root DEB=$DEB RPM=$RPM NEXT_DEB=$NEXT_DEB unshare --mount --propagation private \
        --pid --fork --kill-child --mount-proc -- bash "$0" || rc=$?
    machine_state > "$work/after"
    echo "== the machine after:  $(state_summary "$work/after")"
    if cmp -s "$work/before" "$work/after"; then
        echo "ok   - the machine is unchanged: installed packages, groups, /etc and libvirt daemons as before"
    else
        echo "FAIL - the machine changed while the package test ran:"
        diff -u "$work/before" "$work/after" | head -n 60
        rc=1
    fi
    exit "$rc"
fi

# --- inside the throwaway root (PID 1 of its own PID namespace) ---
trap 'exit 130' INT
trap 'exit 143' TERM
R=$HOOKD_PKG_ROOT
mount -n -t tmpfs -o mode=0755 tmpfs /run
mount -n -t tmpfs -o mode=0700 hookd-pkg-root "$R"
for dir in /etc /usr /var /lib /lib32 /lib64 /libx32 /bin /sbin; do
    if [ ! -d "$dir" ] || [ -L "$dir" ]; then
        continue # absent, or a link into /usr (merged /usr)
    fi
    mkdir -p "$R/ov$dir/upper" "$R/ov$dir/work"
    mount -n -t overlay overlay -o "lowerdir=$dir,upperdir=$R/ov$dir/upper,workdir=$R/ov$dir/work" "$dir"
done
mount -n -t bpf bpffs /sys/fs/bpf
mkdir -p "$R/tmp" "$R/home"
export TMPDIR=$R/tmp HOME=$R/home
T=$R/tmp

# shellcheck source=vm-tests/lib/check.sh
source "$REPO/vm-tests/lib/check.sh"
trap 'echo "packages: $PASS passed, $FAIL failed"' EXIT
echo "== throwaway root: overlays on $(findmnt -n -t overlay -o TARGET | tr '\n' ' ')"

echo "== .deb: lintian"
lintian --info "$DEB" | tee "$T/lintian.txt" || true
check "lintian reports no errors" sh -c "! grep -q '^E:' '$T/lintian.txt'"

echo "== .rpm: contents, scripts, dependencies"
files=$(rpm -qpl "$RPM")
for f in /usr/sbin/hookd /usr/bin/hookctl /usr/libexec/hookd/hookd-qemu-hook /etc/libvirt/hooks/qemu.d/50-hookd \
    /usr/lib/systemd/system/hookd.service /usr/share/dbus-1/system.d/org.hookd.Hookd1.conf /etc/hookd/hookd.toml \
    /usr/share/man/man8/hookd.8.gz /usr/share/man/man1/hookctl.1.gz /usr/share/bash-completion/completions/hookctl; do
    check "rpm contains $f" grep -qx "$f" <<<"$files"
done
check "rpm marks /etc files as config(noreplace)" sh -c "rpm -qp --configfiles '$RPM' | grep -qx /etc/hookd/hookd.toml"
reqs=$(rpm -qp --requires "$RPM")
check "rpm requires dbus, libvirt-daemon and libvirt-libs" bash -c "grep -qx dbus <<<'$reqs' && grep -qx libvirt-daemon <<<'$reqs' && grep -qx libvirt-libs <<<'$reqs'"
for tag in POSTIN PREUN POSTUN; do
    rpm -qp --qf "%{$tag}" "$RPM" > "$T/rpm-$tag.sh"
    check "rpm $tag scriptlet is valid sh" sh -n "$T/rpm-$tag.sh"
done
check "rpm scriptlets run hookd-maint" sh -c "rpm -qp --scripts '$RPM' | grep -q 'hookd-maint install'"
root=$(mktemp -d)
check "rpm installs into a scratch --root" rpm --root "$root" --nodeps --noscripts -i "$RPM"
check "rpm in the scratch root verifies" rpm --root "$root" -V --nodeps hookd
check "scratch root has the daemon and the hook" test -x "$root/usr/sbin/hookd" -a -x "$root/etc/libvirt/hooks/qemu.d/50-hookd"
rm -rf "$root"

echo "== .deb: maintainer scripts"
for s in postinst prerm postrm; do
    check "deb $s is valid sh" sh -n "packaging/deb/$s"
done
check "hookd-maint is valid sh" sh -n packaging/files/hookd-maint

echo "== .deb: install (in the throwaway root)"
dpkg -i "$DEB" | tee "$T/dpkg.txt"
check "dpkg -i succeeded and says what to do without systemd" grep -q "systemd is not running" "$T/dpkg.txt"
check "installed: /usr/sbin/hookd --version" sh -c "/usr/sbin/hookd --version | grep -q 'hookd '"
check "installed: hook at /etc/libvirt/hooks/qemu.d/50-hookd" test -x /etc/libvirt/hooks/qemu.d/50-hookd
check "installed: man page" test -s /usr/share/man/man8/hookd.8.gz
check "installed: the read group hookd exists" getent group hookd
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verifies hookd.service" systemd-analyze verify /lib/systemd/system/hookd.service
fi
dpkg -i "$DEB" | tee "$T/dpkg-upgrade.txt"
check "reinstall/upgrade runs the upgrade path (pinned programs keep enforcing)" grep -q "pinned programs keep enforcing" "$T/dpkg-upgrade.txt"
hook_copy=$(mktemp)
install -m 0755 /etc/libvirt/hooks/qemu.d/50-hookd "$hook_copy"
echo "== VM tests against the installed system"
check "vm-tests pass with the installed hookd" \
    env HOOKD_BIN=/usr/sbin/hookd HOOKCTL=/usr/bin/hookctl HOOKD_HOOK_BIN="$hook_copy" HOOKD_DBUS_POLICY= \
    bash vm-tests/run-vm-tests.sh
echo "== the next version, installed under traffic"
check "dpkg -i of the next version under traffic: new programs on the tap, nothing lost, nothing let through" \
    env HOOKD_BIN=/usr/sbin/hookd HOOKCTL=/usr/bin/hookctl HOOKD_HOOK_BIN="$hook_copy" HOOKD_DBUS_POLICY= \
    bash vm-tests/run-deb-upgrade.sh "$NEXT_DEB"

echo "== remove"
dpkg -r hookd
check "removed: no daemon binary" test ! -e /usr/sbin/hookd
check "removed: hook binary gone, hook file kept as configuration" test ! -e /usr/libexec/hookd/hookd-qemu-hook -a -e /etc/libvirt/hooks/qemu.d/50-hookd
install -m 0755 /etc/libvirt/hooks/qemu.d/50-hookd "$hook_copy"
check "VMs still start with the leftover hook" bash vm-tests/run-after-removal.sh "$hook_copy"
echo "== purge"
dpkg -P hookd
check "purged: no hook left" test ! -e /etc/libvirt/hooks/qemu.d/50-hookd
check "purged: no configuration left" test ! -e /etc/hookd/hookd.toml
rm -f "$hook_copy"
[ "$FAIL" -eq 0 ]
