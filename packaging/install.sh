#!/usr/bin/env bash
# The one install layout of hookd, used by both packages:
#   DESTDIR=/tmp/stage packaging/install.sh [TARGET_DIR]
# TARGET_DIR holds release binaries (default target/release). Directory
# conventions that differ between distributions come from the environment:
#   UNITDIR (default /usr/lib/systemd/system), ZSHCOMPDIR (default
#   /usr/share/zsh/vendor-completions).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${DESTDIR:?set DESTDIR to the staging directory}"
TARGET=${1:-$REPO/target/release}
UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
ZSHCOMPDIR=${ZSHCOMPDIR:-/usr/share/zsh/vendor-completions}
F=$REPO/packaging/files

for b in hookd hookctl hookd-qemu-hook hookd-gen-docs; do
    [ -x "$TARGET/$b" ] || { echo "install: $TARGET/$b missing: cargo build --release --workspace" >&2; exit 1; }
done
d() { install -d -m 0755 "$DESTDIR$1"; }
d /usr/sbin; d /usr/bin; d /usr/libexec/hookd; d /etc/libvirt/hooks/qemu.d; d /etc/hookd
d "$UNITDIR"; d /usr/share/dbus-1/system.d; d /usr/share/man/man1; d /usr/share/man/man8
d /usr/share/bash-completion/completions; d "$ZSHCOMPDIR"; d /usr/share/fish/vendor_completions.d
d /usr/share/doc/hookd

install -m 0755 -s "$TARGET/hookd" "$DESTDIR/usr/sbin/hookd"
install -m 0755 -s "$TARGET/hookctl" "$DESTDIR/usr/bin/hookctl"
install -m 0755 -s "$TARGET/hookd-qemu-hook" "$DESTDIR/usr/libexec/hookd/hookd-qemu-hook"
install -m 0755 "$F/hookd-maint" "$DESTDIR/usr/libexec/hookd/hookd-maint"
install -m 0755 "$F/50-hookd" "$DESTDIR/etc/libvirt/hooks/qemu.d/50-hookd"
install -m 0644 "$F/hookd.toml" "$DESTDIR/etc/hookd/hookd.toml"
install -m 0644 "$F/hookd.service" "$DESTDIR$UNITDIR/hookd.service"
install -m 0644 "$REPO/dbus/org.hookd.Hookd1.conf" "$DESTDIR/usr/share/dbus-1/system.d/org.hookd.Hookd1.conf"

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$TARGET/hookd-gen-docs" "$gen"
for page in "$gen"/man/*.[18]; do
    sec=${page##*.}
    gzip -9n -c "$page" > "$DESTDIR/usr/share/man/man$sec/$(basename "$page").gz"
    chmod 0644 "$DESTDIR/usr/share/man/man$sec/$(basename "$page").gz"
done
install -m 0644 "$gen/completions/hookctl.bash" "$DESTDIR/usr/share/bash-completion/completions/hookctl"
install -m 0644 "$gen/completions/_hookctl" "$DESTDIR$ZSHCOMPDIR/_hookctl"
install -m 0644 "$gen/completions/hookctl.fish" "$DESTDIR/usr/share/fish/vendor_completions.d/hookctl.fish"
install -m 0644 "$REPO/README.md" "$DESTDIR/usr/share/doc/hookd/README.md"
for doc in "$REPO"/docs/*.md; do
    install -m 0644 "$doc" "$DESTDIR/usr/share/doc/hookd/$(basename "$doc")"
done
