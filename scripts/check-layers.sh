#!/usr/bin/env bash
# Fails when a layer of the daemon uses one above it (docs/architecture.md):
#   hookd-model (crate) < datapath < core < libvirt < api
# and when the hook binary or hookctl link aya, virt or the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# layer: the modules it must not use
declare -A above=(
    [datapath]="core libvirt api metrics"
    [core]="libvirt api metrics"
    [libvirt]="api metrics"
)
for layer in "${!above[@]}"; do
    for up in ${above[$layer]}; do
        # Code lines only: comments may name other layers.
        if hits=$(grep -rnE "crate::$up\b" "hookd/src/$layer" | grep -vE '^[^:]+:[0-9]+:\s*//'); then
            echo "check-layers: $layer uses $up:" >&2
            echo "$hits" >&2
            status=1
        fi
    done
done
if grep -rnE "\bhookd::|hookd_bpf|hookd_model::.*datapath" model/src >/dev/null; then
    echo "check-layers: hookd-model uses the daemon or the data path" >&2
    status=1
fi
for pkg in hookctl hookd-libvirt-hooks; do
    if deps=$("${CARGO:-cargo}" tree -q -p "$pkg" -e normal --prefix none | grep -E '^(aya|virt|hookd|hookd-bpf) v'); then
        echo "check-layers: $pkg links $deps" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "check-layers: layers respected; hookctl and the hook link neither aya, virt nor the daemon"
exit "$status"
