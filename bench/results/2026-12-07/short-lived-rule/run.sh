#!/bin/bash
# The short-lived rule (--short-lived-after, default 8) against the build
# before it, alternated: churn in eight rounds, then one round of rr and
# streams as a check that long-lived connections are unchanged.
# BIN holds before-daemon (main before the rule) and rule-daemon.
set -u
OUT=${OUT:-out}
BIN=${BIN:-bin}
mkdir -p "$OUT"
bench() { # NAME BUILD ARGS...
  local name=$1 b=$2; shift 2
  target/release/accel-bench loopback --worker-io epoll "$@" \
    --daemon-bin "$BIN/$b-daemon" --out-dir "$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(date +%T)"
}
for round in 1 2 3 4 5 6 7 8; do
  for b in before rule; do
    bench churn-$b-$round $b --workloads churn --placements one-core,two-core \
      --repeats 5 --duration 1
  done
done
for b in before rule; do
  bench rrstream-$b $b --workloads rr,stream --sizes 100,16K,64K \
    --placements one-core,two-core --repeats 3 --duration 0.5
done
