#!/bin/sh
# /init of the kernel-matrix guest (busybox). Runs the real accel-daemon on
# this kernel, byte-checked loopback traffic in a child cgroup, the refusal
# path of the kernel gate, and prints machine-readable sections for the host.
export PATH=/bin:/sbin:/usr/bin
mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /sys/fs/cgroup /sys/fs/bpf
mount -t cgroup2 none /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
ulimit -l unlimited
START=$(cut -d' ' -f1 /proc/uptime)
echo "@@KERNEL $(uname -r)"
echo "@@BTF $( [ -e /sys/kernel/btf/vmlinux ] && echo yes || echo no )"
mkdir /sys/fs/cgroup/accel
# A 1 MiB flow budget (default 4 MiB): under TCG the writer of the 8 MiB
# slow-reader stream below may run only a little faster than its reader, and
# whether flow control engages must not hang on the host's speed (a CI run
# peaked at 4.0 MiB unread, just under the default, and never switched).
# The traffic below runs as root on both ends (applications, to the default
# mode, which would keep that pair on TCP): `all` exercises the datapath's
# mechanics; the default mode has its own section after the flow check.
ARGS="--cgroup /sys/fs/cgroup/accel --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel --metrics-addr 127.0.0.1:0 --flow-budget-bytes 1048576"
NO_COLOR=1 accel-daemon run $ARGS --pod-acceleration all >/tmp/daemon.log 2>&1 &
DAEMON=$!
i=0
while ! grep -q "ready" /tmp/daemon.log && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
echo "@@BEGIN daemon-log"; cat /tmp/daemon.log; echo "@@END daemon-log"
echo "@@BEGIN status"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status"
echo "@@BEGIN loadgen"
sh -c 'echo $$ > /sys/fs/cgroup/accel/cgroup.procs; exec accel-loadgen --conns 10 --sizes 1,100,1500,65536,1048576 --rounds 1'
echo "@@END loadgen"
echo "@@BEGIN status-after"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status-after"
# Flow control: an 8 MiB stream into a slow reader, plain TCP (outside the
# cgroup) and accelerated (inside), peak TCP memory in pages sampled alongside.
peak_of() {
  peak=0
  "$@" >/tmp/stream.out 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    m=$(awk '/^TCP:/ {for (i=1;i<=NF;i++) if ($i=="mem") print $(i+1)}' /proc/net/sockstat)
    [ "$m" -gt "$peak" ] && peak=$m
    sleep 0.01
  done
  wait $pid
  echo "$? $peak"
}
STREAM="accel-loadgen --listen 127.0.0.1:7070 --conns 1 --stream-bytes 8388608 --read-size 4096 --reader-delay-us 5000"
echo "@@FLOW_PLAIN $(peak_of $STREAM)"
echo "@@FLOW_ACCEL $(peak_of sh -c "echo \$\$ > /sys/fs/cgroup/accel/cgroup.procs; exec $STREAM")"
echo "@@BEGIN status-flow"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status-flow"
# Short TCP phases: a non-blocking writer of 1 MiB messages into a reader
# that sleeps 1 ms per read; once flow control has sent it by TCP, sock_ops
# sets its TCP_NOTSENT_LOWAT (reported at the end), or counts this
# kernel's refusal (tcp_phase_options_refused).
echo "@@BEGIN phases"
sh -c 'echo $$ > /sys/fs/cgroup/accel/cgroup.procs; exec accel-integrity stream --send nonblock --recv read --conns 1 --bytes 16777216 --min-msg 1048576 --max-msg 1048576 --delay-us 1000 --timeout-secs 300'
echo "@@END phases"
echo "@@BEGIN status-phases"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status-phases"
# The default mode: the daemon restarted without --pod-acceleration adopts
# the datapath and applies `auto`. An application with each I/O style talks
# to a "sidecar" owned by uid 1337: blocking sockets must leave the
# sockhash (guard.h's file-flag reads and self-delete on this kernel), the
# non-blocking application's sends must still be redirected. On kernels
# whose FIONREAD leaves out TCP bytes on sockhash sockets (I-4, the
# matrix's column) `auto` would keep applications on TCP altogether;
# --allow-auto-fionread-gap records them, so the guard runs on every kernel.
kill $DAEMON; wait $DAEMON 2>/dev/null
NO_COLOR=1 accel-daemon run $ARGS --allow-auto-fionread-gap >/tmp/daemon2.log 2>&1 &
DAEMON=$!
i=0
while ! grep -q "ready" /tmp/daemon2.log && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
echo "@@BEGIN status-guard-before"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status-guard-before"
echo "@@BEGIN guard"
for style in "blocking --app-side server" "connect-timeout --app-side client" "nonblocking --app-side client"; do
  sh -c "echo \$\$ > /sys/fs/cgroup/accel/cgroup.procs; exec accel-integrity app-proxy --app $style --conns 10 --rounds 5 --timeout-secs 300"
done
echo "@@END guard"
echo "@@BEGIN status-guard"; accel-daemon status --json --pin-dir /sys/fs/bpf/accel/v1 --state-dir /run/accel; echo "@@END status-guard"
echo "@@BEGIN unload"; accel-daemon unload --pin-dir /sys/fs/bpf/accel/v1 --drain-timeout 10; echo "@@UNLOAD_RC $?"; echo "@@END unload"
kill $DAEMON 2>/dev/null
# The gate's refusal path: no kernel older than 5.10 can be fetched, so
# pretend one and check the daemon stays up, unaccelerated, and says why.
mkdir /sys/fs/cgroup/gate
NO_COLOR=1 accel-daemon run --kernel-release 5.4.0 --cgroup /sys/fs/cgroup/gate --pin-dir /sys/fs/bpf/gate/v1 --state-dir /run/gate --metrics-addr 127.0.0.1:0 >/tmp/gate.log 2>&1 &
i=0
while ! grep -q "ready" /tmp/gate.log && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
echo "@@BEGIN gate"; accel-daemon status --json --pin-dir /sys/fs/bpf/gate/v1 --state-dir /run/gate; echo "@@END gate"
END=$(cut -d' ' -f1 /proc/uptime)
echo "@@ELAPSED $START $END"
echo "@@DONE"
poweroff -f
