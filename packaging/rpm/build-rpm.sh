#!/usr/bin/env bash
# Builds dist/hookd-VERSION-1.x86_64.rpm from the install layout of
# packaging/install.sh. Needs rpmbuild (Debian: apt-get install rpm).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=$(cd "$REPO" && "${CARGO:-cargo}" metadata --no-deps --format-version 1 | jq -r '.packages[] | select(.name == "hookd") | .version')
(cd "$REPO" && "${CARGO:-cargo}" build --release --workspace --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage
DESTDIR=$stage UNITDIR=/usr/lib/systemd/system ZSHCOMPDIR=/usr/share/zsh/site-functions "$REPO/packaging/install.sh"
install -m 0644 "$REPO/packaging/files/copyright" "$stage/usr/share/doc/hookd/copyright"
# The file list, from the staged tree: configuration under /etc is kept
# across upgrades; directories hookd owns are listed too.
{
    echo "%dir /usr/libexec/hookd"
    echo "%dir /etc/hookd"
    echo "%dir /usr/share/doc/hookd"
    (cd "$stage" && find . -type f | sed 's|^\.||' | sort) | while read -r f; do
        case $f in
            /etc/*) echo "%config(noreplace) $f" ;;
            *) echo "$f" ;;
        esac
    done
} > "$work/filelist"
mkdir -p "$REPO/dist"
rpmbuild -bb --quiet \
    --define "_topdir $work/rpmbuild" \
    --define "_rpmdir $REPO/dist" \
    --define "_build_id_links none" \
    --define "__strip /bin/true" \
    --define "__os_install_post %{nil}" \
    --define "hookd_version $VERSION" \
    --define "stage $stage" \
    --define "filelist $work/filelist" \
    "$REPO/packaging/rpm/hookd.spec"
ls "$REPO"/dist/x86_64/hookd-"$VERSION"-1.x86_64.rpm
