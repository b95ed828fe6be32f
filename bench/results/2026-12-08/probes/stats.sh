#!/bin/bash
# sock_ops + sk_msg CPU per connection, one-core churn, per daemon build.
set -u
# CGROUP2: the cgroup v2 mount (this VM: /sys/fs/cgroup/unified); BIN: the
# daemons, as in run.sh. Run as root from the repository.
CG=${CGROUP2:-/sys/fs/cgroup}/accel-probe-stats
OUT=${OUT:-out}
mkdir -p "$OUT"
sysctl -qw kernel.bpf_stats_enabled=1
prog() { bpftool -j prog show name "$1" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,dict) else d[0]; print(d.get("run_time_ns",0), d.get("run_cnt",0))'; }
for round in ${ROUNDS:-1 2 3}; do
  for b in rule3 probe; do
    mkdir -p $CG; rm -rf $OUT/state
    ${BIN:-bin}/$b-daemon run --cgroup $CG --pin-dir /sys/fs/bpf/accel-probe-stats --state-dir $OUT/state \
      --metrics-addr 127.0.0.1:0 --pod-acceleration all --proxy-uid 0 > $OUT/daemon-$b-$round.log 2>&1 &
    dpid=$!
    for i in $(seq 100); do grep -q "ready" $OUT/daemon-$b-$round.log && break; sleep 0.2; done
    sleep 1
    s0=$(prog accel_sockops); m0=$(prog accel_sk_msg)
    res=$(bash -c "echo \$\$ > $CG/cgroup.procs; exec taskset -c 0 target/release/accel-integrity churn --listen 127.0.0.1:7201 --threads 1 --bytes 100 --duration-ms 3000")
    sleep 0.5
    s1=$(prog accel_sockops); m1=$(prog accel_sk_msg)
    kill -TERM $dpid; wait $dpid; ${BIN:-bin}/$b-daemon unload --pin-dir /sys/fs/bpf/accel-probe-stats --cgroup $CG > $OUT/unload-$b-$round.log 2>&1 || echo UNLOAD FAILED
    rmdir $CG 2>/dev/null
    conns=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])')
    python3 - "$b" "$round" "$conns" $s0 $s1 $m0 $m1 <<'PY'
import sys
b,r,c=sys.argv[1],sys.argv[2],int(sys.argv[3])
st0,sc0,st1,sc1,mt0,mc0,mt1,mc1=map(int,sys.argv[4:12])
print(f"{b} round {r}: {c} conns ({c/3:.0f}/s); sock_ops {(sc1-sc0)/c:.2f} runs/conn {(st1-st0)/max(1,sc1-sc0):.0f} ns/run {(st1-st0)/c:.0f} ns/conn; sk_msg {(mc1-mc0)/c:.3f} runs/conn {(mt1-mt0)/c:.0f} ns/conn")
PY
  done
done
sysctl -qw kernel.bpf_stats_enabled=0
