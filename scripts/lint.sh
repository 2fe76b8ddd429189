#!/usr/bin/env bash
# The static gates, no root needed: rustfmt, clippy with warnings as errors
# on every target, the daemon's layering (check-layers.sh), and shellcheck
# on every shell script of the repository
# (tracked or new, by name *.sh or by a sh/bash #! line). Runs all three and
# fails if any failed.
#   bash scripts/lint.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

# shell_scripts: the repository's shell scripts, one a line.
shell_scripts() {
    local f
    if git rev-parse --git-dir >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard
    else
        find . -path ./target -prune -o -path ./.git -prune -o -type f -print | sed 's|^\./||'
    fi | sort -u | while read -r f; do
        [ -f "$f" ] || continue
        case $f in
            *.sh) echo "$f" ;;
            *) head -n1 "$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba|da)?sh( |$)' && echo "$f" ;;
        esac
    done
}

failed=()
echo "== lint: cargo fmt --check"
"$CARGO" fmt --all --check || failed+=(rustfmt)
# The fuzz targets are a workspace of their own (fuzz/Cargo.toml).
"$CARGO" fmt --manifest-path fuzz/Cargo.toml --check || failed+=(rustfmt-fuzz)
echo "== lint: cargo clippy (warnings are errors)"
"$CARGO" clippy --workspace --all-targets -- -D warnings || failed+=(clippy)
"$CARGO" clippy --locked --manifest-path fuzz/Cargo.toml --release --all-targets \
    --target-dir target/fuzz-check -- -D warnings || failed+=(clippy-fuzz)
echo "== lint: shellcheck"
if ! command -v shellcheck >/dev/null; then
    echo "lint: shellcheck not found (apt-get install shellcheck, or bash scripts/install-deps.sh)" >&2
    failed+=(shellcheck)
else
    mapfile -t scripts < <(shell_scripts)
    # -x -P SCRIPTDIR: follow `source "$HERE/lib/..."` relative to each script.
    if shellcheck -x -P SCRIPTDIR "${scripts[@]}"; then
        echo "lint: shellcheck: ${#scripts[@]} scripts clean"
    else
        failed+=(shellcheck)
    fi
fi
echo "== lint: layers (scripts/check-layers.sh)"
CARGO=$CARGO bash scripts/check-layers.sh || failed+=(layers)
if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint: failed: ${failed[*]}" >&2
    exit 1
fi
echo "lint: rustfmt, clippy, shellcheck and layers pass"
