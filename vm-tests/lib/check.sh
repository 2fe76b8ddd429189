# shellcheck shell=bash
# check NAME COMMAND...: runs COMMAND, prints "ok   - NAME" or "FAIL - NAME",
# and counts into PASS / FAIL. Shared by the VM and package test scripts.
PASS=0 FAIL=0
check() {
    local name=$1
    shift
    if "$@"; then
        PASS=$((PASS + 1)); echo "ok   - $name"
    else
        FAIL=$((FAIL + 1)); echo "FAIL - $name"
    fi
}
