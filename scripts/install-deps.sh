#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian/Ubuntu machine.
# Idempotent: does nothing when everything is present.
set -euo pipefail

# podman and runc build and run the daemon's image (scripts/image.sh,
# tests/tests/image.rs); crun, podman's default, refuses hybrid cgroup hosts.
need=()
for pkg_cmd in clang:clang llvm:llc libbpf-dev:/usr/include/bpf/bpf_helpers.h \
               linux-libc-dev:/usr/include/linux/bpf.h bpftool:bpftool tcpdump:tcpdump \
               iproute2:ip iptables:iptables curl:curl haproxy:haproxy nginx-light:nginx \
               podman:podman runc:runc binutils:strip \
               ca-certificates:/etc/ssl/certs/ca-certificates.crt; do
  pkg=${pkg_cmd%%:*}; probe=${pkg_cmd#*:}
  if [[ $probe == /* ]]; then [[ -e $probe ]] || need+=("$pkg")
  else command -v "$probe" >/dev/null 2>&1 || need+=("$pkg"); fi
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# podman creates its lock files on first use; two first uses at once (the
# image tests run in parallel) fail with "failed to create 2048 locks".
# One use here, before any test, creates them.
podman info >/dev/null || { echo "podman does not start: run 'podman info' to see why" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust >= 1.95) is required: https://rustup.rs" >&2; exit 1; }
