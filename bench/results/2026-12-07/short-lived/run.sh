#!/bin/bash
set -u
OUT=${OUT:-out}
mkdir -p $OUT
for round in 1 2 3 4; do
  for b in main short; do
    target/release/accel-bench loopback --worker-io epoll --workloads churn \
      --placements one-core,two-core --repeats 5 --duration 1 \
      --daemon-bin ${BIN:-bin}/$b-daemon --out-dir $OUT/$b-$round > $OUT/$b-$round.log 2>&1
    echo "$b-$round rc=$? $(date +%T)"
  done
done
