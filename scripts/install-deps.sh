#!/usr/bin/env bash
# System packages for building hookd, linting it and running its test tiers
# (as root on Debian 12). Does nothing when all of them are installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# g++: libFuzzer, built by the fuzz targets (scripts/fuzz.sh).
PACKAGES=(
  clang-19 llvm-19 libbpf-dev bpftool
  dbus iproute2 kmod cpio busybox-static nftables util-linux dhcpcd-base
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86
  jq systemd libglib2.0-bin ca-certificates rpm lintian binutils gcc g++ libc6-dev
  shellcheck python3
)
missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-deps: packages installed"
