#!/usr/bin/env bash
# Fetches the Debian cloud kernel (bzImage) with apt-get download and caches it under .cache/linux/
# (gitignored) with its build config (config-*), the virtio modules a virtio-blk initramfs needs
# (modules/), and the module tree the Linux tests load on hosts with VT-x/AMD-V (lib-modules/VERSION:
# the storage, network, serial and file-system drivers with modules.dep, for busybox modprobe).
# Prints the path of the cached vmlinuz on stdout.
# Usage: tests/linux/fetch-debian-kernel.sh [CACHE_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-$root/.cache/linux}
mkdir -p "$cache"
existing=$(ls "$cache"/vmlinuz-* 2>/dev/null | head -n 1 || true)
if [ -n "$existing" ] && ls "$cache"/config-* >/dev/null 2>&1 && [ -f "$cache/modules/virtio_blk.ko" ] && [ -d "$cache/lib-modules" ]; then
  echo "$existing"; exit 0
fi
# The meta package names the current ABI; resolve it so the cache holds a concrete version.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$pkg" ]; then
  echo "fetch-debian-kernel: cannot resolve linux-image-cloud-amd64 (run 'apt-get update' first)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg" >&2)
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/x"
cp "$work"/x/boot/vmlinuz-* "$work"/x/boot/config-* "$cache"/
mkdir -p "$cache/modules"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko; do
  cp "$work"/x/lib/modules/*/kernel/$m "$cache/modules/"
done
# The module tree for the Linux test suite: only the driver folders it loads from, to keep the initramfs small.
version=$(basename "$(ls -d "$work"/x/lib/modules/*)")
tree="$work/x/lib/modules/$version"
rm -rf "$cache/lib-modules"
mkdir -p "$cache/lib-modules/$version"
cp "$tree"/modules.* "$cache/lib-modules/$version/"
folders=()
for d in drivers/virtio drivers/block drivers/char drivers/net drivers/ata drivers/scsi drivers/cdrom drivers/tty \
         drivers/rtc fs lib crypto arch; do
  [ -d "$tree/kernel/$d" ] && folders+=("kernel/$d")
done
(cd "$tree" && find "${folders[@]}" -name '*.ko*' | cpio -pdm --quiet "$cache/lib-modules/$version")
ls "$cache"/vmlinuz-* | head -n 1
