#!/usr/bin/env bash
# Builds the initramfs of one Linux test boot: Debian's busybox-static (applet links made here, so the
# guest forks nothing to install them) with udhcpc's event hook (udhcpc.script), our freestanding tools
# (tests/linux/tools), mkfs.ext4 with its shared libraries, optional extra host programs and a kernel
# module tree, and the given /init script.
# The archive is an uncompressed newc cpio: under a software-nested KVM the kernel unpacks it ~10x
# faster than a gzip one.
# Usage: tests/linux/make-initramfs.sh OUT.cpio INIT_SCRIPT [--program PATH]... [--modules DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT.cpio INIT_SCRIPT [--program PATH]... [--modules DIR]" >&2; exit 2; }
out=$1 init=$2; shift 2
programs=(/sbin/mke2fs) modules=""
while [ $# -gt 0 ]; do
  case $1 in
    --program) programs+=("$2"); shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    *) echo "make-initramfs: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x /bin/busybox ] || { echo "make-initramfs: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
[ -f "$init" ] || { echo "make-initramfs: init script '$init' does not exist" >&2; exit 1; }
command -v cpio >/dev/null || { echo "make-initramfs: cpio is missing (apt-get install cpio)" >&2; exit 1; }

tools=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$root" "$tools"' EXIT
make -s -C "$here/tools" BUILD="$tools"

mkdir -p "$root"/{bin,sbin,etc/udhcpc,proc,sys,dev,tmp,mnt,run,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$root/bin/busybox"
cp "$here/udhcpc.script" "$root/etc/udhcpc/default.script"
for applet in $(/bin/busybox --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
cp "$tools"/* "$root/sbin/"

# Host programs with the shared libraries ldd names (mke2fs as mkfs.ext4, which makes it default to ext4).
copy_with_libs() {
  local program=$1 target=$2
  cp "$program" "$target"
  ldd "$program" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}
for p in "${programs[@]}"; do
  [ -x "$p" ] || { echo "make-initramfs: program '$p' does not exist" >&2; exit 1; }
  case $(basename "$p") in
    mke2fs) copy_with_libs "$p" "$root/sbin/mkfs.ext4"; [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/" ;;
    *) copy_with_libs "$p" "$root/sbin/$(basename "$p")" ;;
  esac
done
if [ -n "$modules" ]; then mkdir -p "$root/lib/modules"; cp -a "$modules"/. "$root/lib/modules/"; fi

cp "$init" "$root/init"
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
