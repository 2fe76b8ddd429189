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
# check_summary LABEL: "LABEL: N passed, M failed", and after a failure the
# tail of the sandbox's hookd log (for an EXIT trap).
check_summary() {
    echo "$1: $PASS passed, $FAIL failed"
    if [ "$FAIL" -ne 0 ] && [ -n "${SB:-}" ]; then
        echo "--- hookd.log (tail)"; tail -n 40 "$SB/hookd.log" || true
    fi
}
