#!/bin/bash
# Churn rounds, the current rule (rule3) against probes limited to about
# 100 a second (probe), the order of the two builds swapped every round.
# BIN holds rule3-daemon and probe-daemon; N rounds (16 here).
set -u
OUT=${OUT:-out}
BIN=${BIN:-bin}
mkdir -p "$OUT"
for round in $(seq 1 "${N:-16}"); do
  if [ $((round % 2)) = 1 ]; then order="rule3 probe"; else order="probe rule3"; fi
  for b in $order; do
    target/release/accel-bench loopback --worker-io epoll --workloads churn \
      --placements one-core,two-core --repeats 5 --duration 1 \
      --daemon-bin "$BIN/$b-daemon" --out-dir "$OUT/$b-$round" > "$OUT/$b-$round.log" 2>&1
    echo "$b-$round rc=$? $(date +%T)"
  done
done
