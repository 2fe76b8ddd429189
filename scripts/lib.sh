# shellcheck shell=bash
# Sourced by lint.sh and the test-*.sh tiers: works from the repository's
# top directory and runs cargo as $CARGO (default cargo; on a shared machine
# e.g. CARGO=cargo-locked).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
CARGO=${CARGO:-cargo}
export CARGO_TERM_COLOR=never

need_root() { # need_root NAME: exit unless running as root
    if [ "$(id -u)" != 0 ]; then
        echo "$1: run as root" >&2
        exit 1
    fi
}

# cargo_test NAME CARGO-TEST-ARGS...: runs `$CARGO test ARGS`, then prints
# how many tests passed. A run in which no test passed fails: a tier that
# runs nothing must not look like a pass.
cargo_test() {
    local name=$1 log rc=0 passed
    shift
    log=$(mktemp)
    "$CARGO" test "$@" 2>&1 | tee "$log" || rc=$?
    passed=$(awk '/^test result:/ { n += $4 } END { print n + 0 }' "$log")
    rm -f "$log"
    echo "$name: $passed tests passed (cargo test $*)"
    if [ "$rc" -eq 0 ] && [ "$passed" -eq 0 ]; then
        echo "$name: no test ran" >&2
        rc=1
    fi
    return "$rc"
}
