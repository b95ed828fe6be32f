#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 120) and prints
# one summary line per target: executions, corpus size, crash or not.
#
#   scripts/fuzz.sh            # 120 s per target
#   scripts/fuzz.sh 20         # CI-sized smoke
#   scripts/fuzz.sh 600 frame  # one target, longer
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain for
# the sanitizer flags (`rustup toolchain install nightly`). Without nightly,
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes:
#   FUZZ_TOOLCHAIN=stable scripts/fuzz.sh
# (unsupported by the Rust project, but enough for a smoke run).
# Crashes land in fuzz/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

secs="${1:-120}"
shift || true
cd "$(dirname "$0")/../fuzz"

toolchain="${FUZZ_TOOLCHAIN:-nightly}"
if [[ "$toolchain" == nightly ]] && ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    toolchain=stable
fi
cargo_fuzz=(cargo "+$toolchain" fuzz)
if [[ "$toolchain" != nightly ]]; then
    export RUSTC_BOOTSTRAP=1
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo_fuzz[@]}" list)
fi

"${cargo_fuzz[@]}" build -O
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$(mktemp)"
    if "${cargo_fuzz[@]}" run -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    echo "$t: $result, ${execs} executions in ${secs}s, corpus ${corpus} inputs"
    if [[ "$result" != ok ]]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5
    fi
    rm -f "$log"
done
exit "$status"
