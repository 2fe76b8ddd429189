#!/usr/bin/env bash
# Soak, as root: vm-tests/run-soak.sh with the debug binaries of
# target/debug, built first. kill -9 and restarts of hookd, live policy
# changes of 1,000 rules, start/stop cycles and NIC hot-plug cycles, while a
# guest keeps connections through its default-deny ingress; after each
# phase, what hookd holds is counted against the count before it. About
# 20 minutes with the default counts; smaller ones for a quick look:
#   bash scripts/soak.sh
#   SOAK_KILLS=2 SOAK_POLICIES=2 SOAK_CYCLES=2 SOAK_HOTPLUGS=2 bash scripts/soak.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root soak
"$CARGO" build --workspace
bash "$(dirname "$0")/../vm-tests/run-soak.sh" "$(dirname "$0")/../target/debug"
