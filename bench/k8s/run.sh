#!/usr/bin/env bash
# Runs fortio load between the benchmark pods (same node and cross node),
# without and with the acceleration add-on, and collects fortio's JSON
# results for `accel-bench report`. See README.md in this directory.
#
# The add-on is either installed by you between two invocations
# (--phase baseline, then --phase accel), or toggled by this script with
# `accel-installer uninstall` / `accel-installer install` (--phase both;
# needs accel-installer on PATH), rounds alternating A B B A ...
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: run.sh --phase baseline|accel|both [options]

  --phase P         baseline: the add-on is NOT installed, label runs mode=baseline
                    accel:    the add-on IS installed, label runs mode=accel
                    both:     toggle the add-on with accel-installer between rounds
  --out DIR         results directory (default: results/<UTC date>-k8s)
  --pairs LIST      pairs to measure (default: "same-node cross-node")
  --sizes LIST      fortio -payload-size values in bytes (default: "64 1024 16384 65536")
  --conns LIST      fortio -c values (default: "1 8 64")
  --qps LIST        fortio -qps values, 0 = max (default: "0 1000")
  --duration D      fortio -t per run (default: 30s)
  --rounds N        repeats of every case per phase (default: 3)
  --node NAME       put the same-node pair on node NAME (nodeName) instead of
                    letting podAffinity pick the node
  --namespace NS    namespace of the pods (default: accel-bench)
  --no-deploy       use the pods already deployed (skip kubectl apply)
  --restart-pods    restart the pods after every add-on toggle (--phase both)
  -h, --help        this text

Then: accel-bench report DIR/*.json --out-dir DIR
EOF
}

phase=""
out=""
pairs="same-node cross-node"
sizes="64 1024 16384 65536"
conns="1 8 64"
qpss="0 1000"
duration="30s"
rounds=3
node=""
ns="accel-bench"
deploy=1
restart=0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_arg() {
    if [[ $# -lt 2 || -z "$2" ]]; then
        echo "run.sh: $1 needs a value" >&2
        exit 2
    fi
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --phase) need_arg "$@"; phase="$2"; shift 2 ;;
        --out) need_arg "$@"; out="$2"; shift 2 ;;
        --pairs) need_arg "$@"; pairs="$2"; shift 2 ;;
        --sizes) need_arg "$@"; sizes="$2"; shift 2 ;;
        --conns) need_arg "$@"; conns="$2"; shift 2 ;;
        --qps) need_arg "$@"; qpss="$2"; shift 2 ;;
        --duration) need_arg "$@"; duration="$2"; shift 2 ;;
        --rounds) need_arg "$@"; rounds="$2"; shift 2 ;;
        --node) need_arg "$@"; node="$2"; shift 2 ;;
        --namespace) need_arg "$@"; ns="$2"; shift 2 ;;
        --no-deploy) deploy=0; shift ;;
        --restart-pods) restart=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$phase" in
    baseline | accel | both) ;;
    *) echo "run.sh: --phase baseline|accel|both is required" >&2; usage >&2; exit 2 ;;
esac
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: --rounds must be a positive integer" >&2
    exit 2
fi
command -v kubectl >/dev/null || { echo "run.sh: kubectl not found" >&2; exit 1; }

if [[ "$phase" == both ]]; then
    # The installer is optional: only --phase both needs it, and only its
    # install/uninstall subcommands.
    if ! command -v accel-installer >/dev/null; then
        echo "run.sh: --phase both needs accel-installer on PATH (or run --phase baseline, install the add-on, run --phase accel)" >&2
        exit 1
    fi
    help_text="$(accel-installer --help 2>&1 || true)"
    for sub in install uninstall; do
        if ! grep -Eq "^[[:space:]]+${sub}([[:space:]]|$)" <<<"$help_text"; then
            echo "run.sh: accel-installer has no '$sub' subcommand; use --phase baseline/accel" >&2
            exit 1
        fi
    done
fi

out="${out:-results/$(date -u +%Y-%m-%d)-k8s}"
mkdir -p "$out"
log="$out/run.log"
say() { echo "run.sh: $*" | tee -a "$log" >&2; }

deploy_pair() {
    local pair="$1"
    if [[ "$pair" == same-node && -n "$node" ]]; then
        kubectl kustomize "$here/overlays/same-node-pinned" |
            sed "s/REPLACE_WITH_NODE_NAME/${node}/" | kubectl apply -f -
    else
        kubectl apply -k "$here/overlays/$pair"
    fi
}

prefix_of() {
    case "$1" in
        same-node) echo same ;;
        cross-node) echo cross ;;
        *) echo "run.sh: unknown pair $1 (same-node or cross-node)" >&2; exit 2 ;;
    esac
}

wait_ready() {
    local p
    for pair in $pairs; do
        p="$(prefix_of "$pair")"
        kubectl -n "$ns" rollout status "deploy/${p}-fortio-server" --timeout=300s
        kubectl -n "$ns" rollout status "deploy/${p}-fortio-client" --timeout=300s
    done
}

if [[ "$deploy" == 1 ]]; then
    kubectl apply -f "$here/namespace.yaml"
    for pair in $pairs; do
        deploy_pair "$pair"
    done
fi
wait_ready

# Where each pair really runs, for the record.
for pair in $pairs; do
    p="$(prefix_of "$pair")"
    kubectl -n "$ns" get pods -l "bench-pair=${pair}" -o wide | tee -a "$log" >&2
    if [[ "$pair" == same-node ]]; then
        nodes="$(kubectl -n "$ns" get pods -l "bench-pair=${pair}" \
            -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)"
        if [[ "$nodes" != 1 ]]; then
            say "ERROR: the same-node pair is spread over $nodes nodes"
            exit 1
        fi
    fi
done

set_addon() {
    local mode="$1"
    if [[ "$phase" != both ]]; then
        return 0
    fi
    if [[ "$mode" == accel ]]; then
        say "installing the add-on"
        accel-installer install 2>&1 | tee -a "$log" >&2
    else
        say "uninstalling the add-on"
        accel-installer uninstall 2>&1 | tee -a "$log" >&2
    fi
    if [[ "$restart" == 1 ]]; then
        for pair in $pairs; do
            p="$(prefix_of "$pair")"
            kubectl -n "$ns" rollout restart "deploy/${p}-fortio-server" "deploy/${p}-fortio-client"
        done
        wait_ready
    fi
}

one_run() {
    local mode="$1" pair="$2" size="$3" c="$4" qps="$5" round="$6"
    local p qname file
    p="$(prefix_of "$pair")"
    qname="$qps"
    if [[ "$qps" == 0 ]]; then qname=max; fi
    file="$out/${pair}-s${size}-c${c}-q${qname}-${mode}-r${round}.json"
    say "$mode $pair size=$size c=$c qps=$qname round=$round"
    # fortio echoes the POSTed payload back: -payload-size bytes each way.
    # -json - writes the result to stdout; progress goes to stderr.
    if ! kubectl -n "$ns" exec "deploy/${p}-fortio-client" -c fortio -- \
        fortio load -json - -qps "$qps" -c "$c" -t "$duration" \
        -payload-size "$size" -p "50,75,90,99,99.9" \
        -labels "mode=${mode} placement=${pair} size=${size} round=${round}" \
        "http://${p}-fortio-server.${ns}.svc.cluster.local:8080/echo" \
        >"$file.tmp" 2>>"$log"; then
        say "ERROR: fortio load failed (see $log)"
        rm -f "$file.tmp"
        return 1
    fi
    mv "$file.tmp" "$file"
}

run_round() {
    local mode="$1" round="$2"
    for pair in $pairs; do
        for size in $sizes; do
            for c in $conns; do
                for qps in $qpss; do
                    one_run "$mode" "$pair" "$size" "$c" "$qps" "$round"
                done
            done
        done
    done
}

for ((round = 1; round <= rounds; round++)); do
    case "$phase" in
        baseline | accel) run_round "$phase" "$round" ;;
        both)
            # A B, B A, ...: each mode goes first every other round.
            if ((round % 2 == 1)); then order="baseline accel"; else order="accel baseline"; fi
            for mode in $order; do
                set_addon "$mode"
                run_round "$mode" "$round"
            done
            ;;
    esac
done

say "done: $(find "$out" -name '*.json' | wc -l) result files in $out"
say "compare: accel-bench report $out --out-dir $out"
