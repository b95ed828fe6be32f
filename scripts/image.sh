#!/usr/bin/env bash
# Builds the accel-daemon container image from scratch (no base image, no
# registry): the daemon binary, the shared libraries it links and the
# system CA bundle, nothing else, as an OCI archive tagged with the
# daemon's version.
#
#   scripts/image.sh                      # release build, then the image
#   scripts/image.sh --binary PATH        # an already built accel-daemon
#   scripts/image.sh --out DIR --name REGISTRY/REPO
#
# Writes DIR/accel-daemon-VERSION.oci.tar and DIR/accel-daemon-VERSION.env
# (archive, image, digest, ref, size) and prints the same lines. The digest
# is the manifest's, read from the archive and checked against its blob:
# loading the archive (podman load, ctr import, skopeo copy) keeps it, so
# `accel-installer install --image REF` pins exactly this image.
# Podman runs with a private storage root that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "image.sh: $*" >&2; exit 1; }

binary=""
out="${CARGO_TARGET_DIR:-target}/image"
name="localhost/sidecar-accel/accel-daemon"
while (($#)); do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --name) name=${2:?--name needs an image name}; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
command -v podman >/dev/null 2>&1 || die "podman is needed: run scripts/install-deps.sh (apt-get install podman)"
[[ ${name##*/} == *:* || $name == *@* ]] && die "--name takes no tag or digest: the tag is the daemon's version"

if [[ -z $binary ]]; then
  cargo build --release --locked -p accel-daemon
  binary="${CARGO_TARGET_DIR:-target}/release/accel-daemon"
fi
[[ -x $binary ]] || die "$binary is not an executable: build it first (cargo build -p accel-daemon)"
version=$("$binary" --version | awk '{print $2}')
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read the version of $binary (got '$version')"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/accel-image.XXXXXX")
pod=(podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/libpod" --storage-driver vfs
     --cgroup-manager cgroupfs --events-backend none)
cleanup() {
  "${pod[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The root filesystem: the binary (debug info stripped, symbols kept for
# backtraces) and every library ldd resolves, at the path ldd names.
root="$work/context/rootfs"
mkdir -p "$root/usr/local/bin"
strip --strip-debug -o "$root/usr/local/bin/accel-daemon" "$binary"
ldd_out=$(ldd "$binary" 2>&1) || true
if grep -q "not found" <<<"$ldd_out"; then
  die "$binary links libraries this machine lacks: $ldd_out"
fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# The system CA bundle: with no CA in its kubeconfig (an API server with a
# publicly trusted certificate) the Kubernetes client verifies against the
# system roots, and refuses to start without any (the in-cluster service
# account brings its own CA).
certs=/etc/ssl/certs/ca-certificates.crt
[[ -s $certs ]] || die "$certs is missing: apt-get install ca-certificates"
mkdir -p "$root/etc/ssl/certs"
cp -L "$certs" "$root$certs"
cat >"$work/context/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/local/bin/accel-daemon"]
EOF

# Reproducible: the same binary gives the same digest (the time of the
# commit, not of the build).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
image="$name:$version"
start=$SECONDS
"${pod[@]}" build --quiet --pull=never --identity-label=false --timestamp "$epoch" \
  --label "org.opencontainers.image.title=accel-daemon" \
  --label "org.opencontainers.image.version=$version" \
  -t "$image" "$work/context" >/dev/null
archive="$out/accel-daemon-$version.oci.tar"
rm -f "$archive"
# gzip layers, as a registry stores them: skopeo copy to a registry then
# keeps the manifest, and with it the digest.
"${pod[@]}" push --quiet --compression-format gzip "$image" "oci-archive:$archive:$image"

manifest=$(tar -xOf "$archive" index.json | grep -oE '"digest":"sha256:[0-9a-f]{64}"' | cut -d'"' -f4)
[[ $(wc -l <<<"$manifest") -eq 1 && -n $manifest ]] || die "$archive does not hold exactly one manifest"
blob_sum=$(tar -xOf "$archive" "blobs/sha256/${manifest#sha256:}" | sha256sum | cut -d' ' -f1)
[[ sha256:$blob_sum == "$manifest" ]] || die "the manifest blob in $archive does not match its digest"

record="$out/accel-daemon-$version.env"
cat >"$record" <<EOF
archive=$archive
image=$image
digest=$manifest
ref=$image@$manifest
size_bytes=$(stat -c %s "$archive")
build_seconds=$((SECONDS - start))
EOF
cat "$record"
