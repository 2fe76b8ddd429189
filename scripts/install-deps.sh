#!/usr/bin/env bash
# System packages for building hookd and running its three test tiers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  clang-19 llvm-19 libbpf-dev bpftool \
  dbus iproute2 kmod cpio busybox-static \
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86 \
  jq systemd libglib2.0-bin ca-certificates rpm lintian binutils gcc libc6-dev >/dev/null
echo "install-deps: packages installed"
