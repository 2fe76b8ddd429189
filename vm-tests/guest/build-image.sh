#!/bin/bash
# Build the tiny TCG guest used by the VM tests:
#   OUTDIR/vmlinuz        Debian's linux-image-amd64 kernel (never installed on the host)
#   OUTDIR/initramfs.gz   busybox-static + virtio-net modules + /init (init.sh)
#
# Usage: build-image.sh OUTDIR
# Idempotent: does nothing when both files exist and were built from the
# current init.sh (a changed init.sh rebuilds only the initramfs; the kernel
# .deb is cached). Needs root (mknod of /dev/console in the image).
# The kernel .deb is cached in OUTDIR/cache/ so rebuilding the initramfs is fast.
set -euo pipefail

die() { echo "build-image: error: $*" >&2; exit 1; }
log() { echo "build-image: $*" >&2; }
# first_file GLOB-RESULT...: the first of its arguments that exists, or nothing.
first_file() {
    local f
    for f in "$@"; do
        if [ -e "$f" ]; then echo "$f"; return 0; fi
    done
    return 0
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INIT_SRC=$HERE/init.sh

CRAFT_SRC=$HERE/craft.c
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initramfs.gz" ] \
   && cmp -s "$INIT_SRC" "$OUT/init.sh.built" && cmp -s "$CRAFT_SRC" "$OUT/craft.c.built"; then
    exit 0
fi

for tool in apt-cache apt-get dpkg-deb cpio gzip; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[ -f "$INIT_SRC" ] || die "missing $INIT_SRC"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
file_out=$(LC_ALL=C file -L "$BUSYBOX" 2>/dev/null || true)
case $file_out in
    *"statically linked"*|"") ;;   # "" = no file(1); trust it
    *) die "$BUSYBOX is not statically linked (install busybox-static)" ;;
esac

mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)

# 1. Kernel package: linux-image-amd64 is a metapackage; its Depends names the
#    versioned package (e.g. linux-image-6.1.0-56-amd64).
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
      | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
if [ -n "$pkg" ]; then
    deb=$(first_file "$OUT"/cache/"${pkg}"_*.deb)
else
    # No apt metadata (offline?): fall back to whatever kernel is cached.
    deb=$(first_file "$OUT"/cache/linux-image-*.deb)
    [ -n "$deb" ] || die "apt-cache depends linux-image-amd64 names no versioned kernel (run apt-get update?) and $OUT/cache has none"
fi
if [ -z "$deb" ]; then
    log "downloading $pkg"
    # apt-get download writes into the current directory; _apt cannot write to
    # a root-owned scratch dir, so the download is "unsandboxed" (harmless warning).
    (cd "$OUT/cache" || exit; apt-get download -q "$pkg" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
    deb=$(first_file "$OUT"/cache/"${pkg}"_*.deb)
    [ -n "$deb" ] || die "apt-get download $pkg failed"
fi

scratch=$(mktemp -d "$OUT/tmp.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$scratch/pkg" || die "dpkg-deb -x $deb failed"
vmlinuz=$(first_file "$scratch"/pkg/boot/vmlinuz-*)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"
kver=${vmlinuz##*/vmlinuz-}
moddir=$scratch/pkg/lib/modules/$kver
[ -d "$moddir" ] || die "no lib/modules/$kver in $deb"

# 2. initramfs tree.
root=$scratch/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$INIT_SRC" "$root/init"
# The packet-crafting helper of the bypass tests, static like busybox.
command -v gcc >/dev/null || die "missing tool: gcc (apt-get install gcc libc6-dev)"
gcc -static -O2 -Wall -o "$root/bin/hookd-craft" "$CRAFT_SRC" || die "building hookd-craft failed"
# /dev/console must exist in the initramfs or the kernel starts /init with no
# stdin/stdout (devtmpfs is not auto-mounted on an initramfs root).
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

# Load order matters (no modprobe/depmod in the guest). Modules may be shipped
# plain or compressed (.ko.xz / .ko.zst / .ko.gz): store them uncompressed,
# busybox insmod does not decompress.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"
: > "$root/lib/modules/order"
for m in $MODULES; do
    src=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)
    if [ -z "$src" ]; then
        # Possibly built into this kernel: fine if modules.builtin says so.
        if grep -q "/$m.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
            continue
        fi
        die "module $m not found in $pkg"
    fi
    dst=$root/lib/modules/$m.ko
    case $src in
        *.ko)     cp "$src" "$dst" ;;
        *.ko.xz)  xz -dc "$src" > "$dst" || die "xz -d $src failed" ;;
        *.ko.zst) zstd -qdc "$src" > "$dst" || die "zstd -d $src failed (install zstd)" ;;
        *.ko.gz)  gzip -dc "$src" > "$dst" ;;
    esac
    echo "$m" >> "$root/lib/modules/order"
done
echo "$kver" > "$root/etc/guest-kernel"

# 3. Pack: cpio newc + gzip, then move into place atomically.
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) \
    | gzip -9 > "$scratch/initramfs.gz" || die "cpio/gzip failed"
cp "$vmlinuz" "$scratch/vmlinuz"
chmod 0644 "$scratch/vmlinuz" "$scratch/initramfs.gz"
mv -f "$scratch/vmlinuz" "$OUT/vmlinuz"
mv -f "$scratch/initramfs.gz" "$OUT/initramfs.gz"
cp "$INIT_SRC" "$OUT/init.sh.built"
cp "$CRAFT_SRC" "$OUT/craft.c.built"
log "built $OUT/vmlinuz ($kver) and $OUT/initramfs.gz"
