#!/usr/bin/env bash
# Builds the x2APIC variant of the Linux test kernel (the shared test kernel's build.sh with
# tests/linux/x2apic.config) into .cache/linux/testkernel-x2apic/, with the test kernel's cmdline.txt
# beside it, unless a build from the same inputs is already there. Prints the bzImage path.
# Usage: tests/linux/build-x2apic-kernel.sh [TESTKERNEL_DIR]   (default: ../shared/linux-testkernel)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-${XHYVE_TEST_KERNEL_SOURCE:-$root/../shared/linux-testkernel}}
[ -x "$src/build.sh" ] || { echo "build-x2apic-kernel: no test kernel build script at $src/build.sh" >&2; exit 1; }
out=$root/.cache/linux/testkernel-x2apic
stamp=$(cat "$src/build.sh" "$src/fragment.config" "$src"/*.patch "$root/tests/linux/x2apic.config" | sha256sum | cut -d' ' -f1)
if [ -f "$out/bzImage" ] && [ "$(cat "$out/inputs.sha256" 2>/dev/null)" = "$stamp" ]; then echo "$out/bzImage"; exit 0; fi
mkdir -p "$out"
rm -f "$out/inputs.sha256"
# Kconfig's override warnings are expected (the fragments override tinyconfig): keep them in a log.
if ! "$src/build.sh" "$out" "$root/tests/linux/x2apic.config" > "$out/build.log" 2>&1; then
  tail -n 30 "$out/build.log" >&2
  echo "build-x2apic-kernel: the kernel build failed (log: $out/build.log)" >&2
  exit 1
fi
grep -q '^CONFIG_X86_X2APIC=y' "$out/config" || { echo "build-x2apic-kernel: the kernel came out without CONFIG_X86_X2APIC" >&2; exit 1; }
cp "$src/cmdline.txt" "$out/cmdline.txt"
echo "$stamp" > "$out/inputs.sha256"
echo "$out/bzImage"
