#!/usr/bin/env bash
# Runs each of hookd's fuzz targets (fuzz/fuzz_targets/) under libFuzzer,
# coverage-guided, on stable Rust: the targets are built with the same
# instrumentation cargo-fuzz adds (sancov, value-profile comparisons), so
# neither cargo-fuzz nor a nightly compiler is needed.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]   default 30 s each, all targets
#   bash scripts/fuzz.sh --merge [TARGET...]     fold what runs found into
#                                                fuzz/corpus/ (minimised), to commit
#
# Seeds are fuzz/corpus/TARGET/ (kept in the repository); what a run finds
# goes to target/fuzz/corpus/TARGET/. A crash, a failed check, an input that
# takes longer than 5 s or allocates more than 512 MiB fails the run and
# leaves the input in target/fuzz/artifacts/TARGET/; replay it with
#   target/fuzz/x86_64-unknown-linux-gnu/release/TARGET FILE
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

merge=0
if [ "${1:-}" = --merge ]; then
    merge=1
    shift
fi
secs=30
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
ALL=(domain_xml policy_splice network_xml hook_args state_blob dbus_calls)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL[@]}")

triple=x86_64-unknown-linux-gnu
out=target/fuzz
# Without --target, RUSTFLAGS would reach build scripts and proc macros too.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    "${CARGO:-cargo}" build -q --locked --manifest-path fuzz/Cargo.toml --release \
    --target "$triple" --target-dir "$out"

status=0
for t in "${targets[@]}"; do
    bin=$out/$triple/release/$t
    if [ ! -x "$bin" ]; then
        echo "fuzz: no target $t (have: ${ALL[*]})" >&2
        exit 2
    fi
    seeds=fuzz/corpus/$t
    work=$out/corpus/$t
    mkdir -p "$work" "$out/artifacts/$t" "$seeds"
    if [ "$merge" = 1 ]; then
        # Minimised: only inputs that add coverage to what the seeds have.
        "$bin" -merge=1 "$seeds" "$work" 2>&1 | grep -E '^MERGE-OUTER: [0-9]+ new files' || true
        continue
    fi
    log=$out/$t.log
    # -max_len: the largest seed is longer than libFuzzer's default guess.
    if "$bin" "$work" "$seeds" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -max_len=131072 -use_value_profile=1 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t/" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
        printf 'fuzz: %-14s %9s inputs in %s s (%s/s), %s edges, 0 failures\n' \
            "$t" "$runs" "$secs" "$rate" "${cov#cov: }"
    else
        status=1
        echo "fuzz: $t FAILED; its log:" >&2
        # The panic's message first (it can be long), then how libFuzzer ended.
        sed -n '/panicked at/,/^stack backtrace:/p' "$log" | head -40 >&2
        grep -vE '^(#[0-9]+|INFO:|  +at |  +[0-9]+: )' "$log" | tail -15 >&2
        echo "fuzz: the input is in $out/artifacts/$t/" >&2
    fi
done
exit "$status"
