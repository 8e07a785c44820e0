#!/usr/bin/env bash
# Installs what XhyvePS needs on a fresh Debian 12 machine (run as root, or with sudo available):
# the .NET SDK must already be there (dotnet on PATH); this adds the C toolchain for the test
# guests, the kernel headers the layout tests compile against, the compression libraries the
# kernel loader uses, iasl for the ACPI tests, QEMU for the side-by-side benchmarks, and fetches
# the Debian cloud kernel.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  gcc gcc-multilib make linux-libc-dev        # test guests (gcc -m32) and <linux/kvm.h>
  liblzma5 liblz4-1 libzstd1                  # host-side kernel payload decompression
  gzip xz-utils lz4 zstd                      # reference compressors for the payload tests
  acpica-tools                                # iasl: the ACPI tables are checked with the real disassembler
  procps                                      # kill(1), used by the tests to signal the engine
  cpio busybox-static                         # initramfs test (hardware-virtualization hosts)
  qemu-system-x86 time                        # QEMU cross-checks (virtio-blk) and side-by-side benchmarks
  fio                                         # the host baseline of the storage benchmark
  e2fsprogs                                   # chattr: an unwritable image even for root (disk tests)
)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v dotnet >/dev/null || { echo "setup: the .NET 10 SDK (dotnet) is required" >&2; exit 1; }
dotnet restore "$root/XhyvePS.sln" --nologo -v quiet
"$root/tests/linux/fetch-debian-kernel.sh" >/dev/null
echo "setup: done"
