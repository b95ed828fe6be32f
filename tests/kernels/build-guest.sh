#!/usr/bin/env bash
# Fetches one of Debian's kernels (cached under tests/kernels/cache, which
# git ignores) and builds an initramfs holding busybox, the given binaries,
# their shared libraries and guest-init.sh as /init.
#
#   build-guest.sh PACKAGE OUT_DIR BINARY...
# prints: KERNEL=<vmlinuz path> INITRD=<initrd path>
# PACKAGE "host" uses the running kernel's /boot/vmlinuz-$(uname -r).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkg=$1; out=$2; shift 2
cache=$here/cache
mkdir -p "$cache" "$out"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx ip || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$pkg" = host ]; then
  kernel=/boot/vmlinuz-$(uname -r)
  [ -r "$kernel" ] || { echo "no $kernel on this machine" >&2; exit 3; }
else
  kernel=$cache/$pkg.vmlinuz
  if [ ! -s "$kernel" ]; then
    # A private apt configuration: the machine's own sources stay untouched.
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial"
    cat > "$cache/apt/sources.list" <<SRC
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian-security trixie-security main
SRC
    apt_opts=(-o Dir::Etc::sourcelist="$cache/apt/sources.list" -o Dir::Etc::sourceparts=-
              -o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache="$cache/apt"
              -o Dir::State::status=/dev/null -o APT::Architecture=amd64 -o Debug::NoLocking=1)
    apt-get "${apt_opts[@]}" update -qq
    (cd "$cache" && apt-get "${apt_opts[@]}" download "$pkg" 2>/dev/null)
    deb=$(ls "$cache"/"$pkg"_*.deb | head -1)
    tmp=$(mktemp -d)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
    mv "$tmp"/boot/vmlinuz-* "$kernel"
    rm -rf "$tmp" "$deb"
  fi
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,proc,sys,tmp,run,dev,lib,lib64,etc}
cp /bin/busybox "$root/bin/busybox"
for app in $(/bin/busybox --list); do
  [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
done
for bin in "$@"; do
  # Debug info is useless in the guest and slow to unpack under TCG.
  strip --strip-debug -o "$root/bin/$(basename "$bin")" "$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
cp "$here/guest-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/$pkg.initrd"
echo "KERNEL=$kernel INITRD=$out/$pkg.initrd"
