#!/usr/bin/env bash
# Builds dist/hookd_VERSION-1_amd64.deb from the install layout of
# packaging/install.sh. Run from anywhere: bash packaging/deb/build-deb.sh
# HOOKD_DEB_REVISION (default 1) sets the Debian revision: the package test
# builds the next version with 2 (and HOOKD_BPF_CFLAGS, see bpf/build.rs).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/packaging/deb
VERSION=$(cd "$REPO" && "${CARGO:-cargo}" metadata --no-deps --format-version 1 | jq -r '.packages[] | select(.name == "hookd") | .version')
DEBVER=$VERSION-${HOOKD_DEB_REVISION:-1}
(cd "$REPO" && "${CARGO:-cargo}" build --release --workspace --quiet)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
# Debian 12 keeps units in /lib/systemd/system (usrmerge is not final there).
DESTDIR=$stage UNITDIR=/lib/systemd/system "$REPO/packaging/install.sh"
install -m 0644 "$REPO/packaging/files/copyright" "$stage/usr/share/doc/hookd/copyright"
gzip -9n -c "$HERE/changelog" > "$stage/usr/share/doc/hookd/changelog.Debian.gz"
chmod 0644 "$stage/usr/share/doc/hookd/changelog.Debian.gz"
install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$DEBVER/" -e "s/@SIZE@/$size/" "$HERE/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) > "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 0755 "$HERE/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum | sed 's|  \./|  |') > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
mkdir -p "$REPO/dist"
out=$REPO/dist/hookd_${DEBVER}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
