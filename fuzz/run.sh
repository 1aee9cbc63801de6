#!/bin/sh
# Runs every fuzz target for a bounded time and prints executions and crashes per target.
#   fuzz/run.sh [SECONDS]   (default 60 per target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags to
# rustc; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them. Crashing inputs are kept in
# fuzz/artifacts/TARGET/, the growing corpus in fuzz/corpus/TARGET/, libFuzzer's output in
# fuzz/logs/ (all git-ignored).
set -u
seconds="${1:-60}"
cd "$(dirname "$0")" || exit 2
export RUSTC_BOOTSTRAP=1
targets="imds_json config credentials_merge whole_path"

mkdir -p logs
cargo fuzz build --release >/dev/null 2>logs/build.log || { cat logs/build.log; exit 2; }
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
done

status=0
printf '%-18s %12s %8s %10s\n' target executions crashes exec/s
for target in $targets; do
    log="logs/$target.log"
    before=$(find "artifacts/$target" -type f | wc -l)
    # -fork keeps fuzzing after a crash, so one bad input does not hide the rest;
    # -ignore_crashes makes the children go on.
    cargo fuzz run --release "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -fork=1 -ignore_crashes=1 -rss_limit_mb=1024 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1
    after=$(find "artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    # Fork mode prints "#N: cov: … exec/s: R …" lines; the last one has the totals.
    execs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    rate=$(grep -Eo 'exec/s: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+')
    printf '%-18s %12s %8s %10s\n' "$target" "${execs:-?}" "$crashes" "${rate:-?}"
    if [ "$crashes" -ne 0 ]; then
        status=1
        ls -t "artifacts/$target" | head -n "$crashes" | sed "s|^|    artifacts/$target/|"
    fi
done
exit "$status"
