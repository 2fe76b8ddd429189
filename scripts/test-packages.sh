#!/usr/bin/env bash
# Builds the .deb and the .rpm, checks both, installs the .deb on this machine,
# runs the VM tests against the installed system paths, removes the package
# and shows that VMs still start, then purges it. Run as root.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
source "$REPO/vm-tests/lib/check.sh"
trap 'echo "packages: $PASS passed, $FAIL failed"' EXIT

echo "== build"
DEB=$(bash packaging/deb/build-deb.sh)
RPM=$(bash packaging/rpm/build-rpm.sh)
echo "built $DEB and $RPM"

echo "== .deb: lintian"
lintian --info "$DEB" | tee /tmp/hookd-lintian.txt || true
check "lintian reports no errors" sh -c "! grep -q '^E:' /tmp/hookd-lintian.txt"

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
    rpm -qp --qf "%{$tag}" "$RPM" > "/tmp/hookd-rpm-$tag.sh"
    check "rpm $tag scriptlet is valid sh" sh -n "/tmp/hookd-rpm-$tag.sh"
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

echo "== .deb: install on this machine"
dpkg -i "$DEB" | tee /tmp/hookd-dpkg.txt
check "dpkg -i succeeded and says what to do without systemd" grep -q "systemd is not running" /tmp/hookd-dpkg.txt
check "installed: /usr/sbin/hookd --version" sh -c "/usr/sbin/hookd --version | grep -q 'hookd '"
check "installed: hook at /etc/libvirt/hooks/qemu.d/50-hookd" test -x /etc/libvirt/hooks/qemu.d/50-hookd
check "installed: man page" test -s /usr/share/man/man8/hookd.8.gz
check "installed: the read group hookd exists" getent group hookd
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verifies hookd.service" systemd-analyze verify /lib/systemd/system/hookd.service
fi
dpkg -i "$DEB" | tee /tmp/hookd-dpkg-upgrade.txt
check "reinstall/upgrade runs the upgrade path (pinned programs keep enforcing)" grep -q "pinned programs keep enforcing" /tmp/hookd-dpkg-upgrade.txt
hook_copy=$(mktemp)
install -m 0755 /etc/libvirt/hooks/qemu.d/50-hookd "$hook_copy"
echo "== VM tests against the installed system"
check "vm-tests pass with the installed hookd" \
    env HOOKD_BIN=/usr/sbin/hookd HOOKCTL=/usr/bin/hookctl HOOKD_HOOK_BIN="$hook_copy" HOOKD_DBUS_POLICY= \
    bash vm-tests/run-vm-tests.sh

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
