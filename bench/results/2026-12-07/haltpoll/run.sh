#!/bin/bash
# Same benchmarks with the guest's halt polling as found (0) and at the kernel default (200000 ns); restores 0.
set -u
P=/sys/module/haltpoll/parameters/guest_halt_poll_ns
orig=$(cat $P)
trap 'echo $orig > $P' EXIT
cd "$(dirname "$0")/../../../.."  # the repository root
OUT=${OUT:-/tmp/haltpoll}; mkdir -p "$OUT"
for round in 1 2; do
 for ns in 0 200000; do
  echo $ns > $P
  target/release/accel-bench loopback --worker-io epoll --workloads rr,churn --sizes 64,1K,16K --placements one-core,two-core --repeats 3 --duration 0.5 --out-dir $OUT/loop-$ns-$round > $OUT/loop-$ns-$round.log 2>&1
  target/release/accel-bench mesh --worker-io epoll --workloads wrk,rr --sizes 100,1K,16K --placements two-core --repeats 3 --wrk-duration 1 --duration 0.5 --out-dir $OUT/mesh-$ns-$round > $OUT/mesh-$ns-$round.log 2>&1
 done
done
echo DONE
