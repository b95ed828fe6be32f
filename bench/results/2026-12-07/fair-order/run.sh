#!/bin/bash
# Churn with the transports taking turns (accel-bench's order since
# "bench: let plain TCP and accelerated take turns going first"): the
# daemon before the short-lived rule, the daemon with it, and the floor
# experiment (nothing recorded after the first short close), alternated.
# BIN holds before-daemon, rule3-daemon and floor-daemon; ROUNDS and
# BUILDS narrow the plan (rounds 6-20 ran before and rule3 only:
# ROUNDS="$(seq -s " " 6 20)" BUILDS="before rule3").
set -u
OUT=${OUT:-out}
BIN=${BIN:-bin}
ROUNDS=${ROUNDS:-"1 2 3 4 5"}
BUILDS=${BUILDS:-"before rule3 floor"}
mkdir -p "$OUT"
for round in $ROUNDS; do
  for b in $BUILDS; do
    target/release/accel-bench loopback --worker-io epoll --workloads churn \
      --placements one-core,two-core --repeats 5 --duration 1 \
      --daemon-bin "$BIN/$b-daemon" --out-dir "$OUT/$b-$round" > "$OUT/$b-$round.log" 2>&1
    echo "$b-$round rc=$? $(date +%T)"
  done
done
