#!/usr/bin/env bash
# `make test` RUNS times in a row (default 5) with BUSY CPU-burning loops (default 2) beside it,
# stopping at the first red run: the suite must hold on a busy 2-core CI machine.
# Usage: scripts/test_under_load.sh [RUNS]   (logs under LOG_DIR, default ./load-logs)
set -u
runs=${1:-5}
busy=${BUSY:-2}
log_dir=${LOG_DIR:-load-logs}
mkdir -p "$log_dir"
burners=()
for _ in $(seq "$busy"); do
    (while :; do :; done) &
    burners+=($!)
done
trap 'kill "${burners[@]}" 2>/dev/null' EXIT
echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD) on $(nproc) cores, $busy busy loops"
for run in $(seq "$runs"); do
    started=$(date +%s)
    make test >"$log_dir/run-$run.log" 2>&1
    status=$?
    took=$(($(date +%s) - started))
    summary=$(grep -E '^[0-9]+ passed|[0-9]+ (passed|failed)' "$log_dir/run-$run.log" | tr '\n' ';')
    if [ "$status" -ne 0 ]; then
        echo "run $run: RED after ${took} s: $summary (see $log_dir/run-$run.log)"
        exit 1
    fi
    echo "run $run: green in ${took} s, load $(cut -d' ' -f1-3 /proc/loadavg): $summary"
done
