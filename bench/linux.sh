#!/usr/bin/env bash
# Linux boot benchmark (issues 10 and 16, figures (d) and (e)): the test kernel with a minimal initramfs (/init
# mounts /proc, prints a marker, powers off) under our engine, QEMU `pc` and QEMU `microvm`, same kernel,
# initramfs, 2 vCPUs and 256 MiB. Per run: wall time from process start to the marker line and to process exit,
# CPU time (user+sys) and peak RSS (GNU time), and PSS/RSS of the VM process sampled at the marker. Runs are
# interleaved so host load drifts hit every configuration. The test kernel has no CONFIG_PVH, so microvm boots
# its bzImage (self-decompressing, LZ4) as pc does; ours decompresses the payload on the host (the default).
#   bench/linux.sh [-n RUNS] [-t BOUND_SECONDS]      (defaults: LINUX_RUNS or 3 runs, 300 s per run)
# Kernel: $XHYVE_TEST_KERNEL, else ../shared/linux-testkernel/bzImage beside the clone, else
# .cache/linux/testkernel/bzImage; its cmdline.txt is used, plus rdinit=/init.
# Engine: bench/lib.sh (XHYVE_ENGINE, else the shipped NativeAOT engine, out/engine/xhyve from scripts/build-engine.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
root=$bench_root
die() { bench_die "$@"; }

runs=$(bench_count LINUX_RUNS 3) bound=300
while getopts "n:t:" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    t) bound=$OPTARG ;;
    *) echo "usage: $0 [-n RUNS] [-t BOUND_SECONDS]" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer, got '$runs'"
[[ $bound =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive integer (seconds), got '$bound'"

# Same kernel lookup order as the Linux test harness (docs/linux-tests.md).
kernel=${XHYVE_TEST_KERNEL:-}
if [ -z "$kernel" ]; then
  for k in "$root/../shared/linux-testkernel/bzImage" "$root/.cache/linux/testkernel/bzImage"; do
    [ -f "$k" ] && { kernel=$(cd "$(dirname "$k")" && pwd)/bzImage; break; }
  done
fi
[ -n "$kernel" ] || die "no test kernel: set XHYVE_TEST_KERNEL or provide ../shared/linux-testkernel/bzImage"
[ -f "$kernel" ] || die "test kernel '$kernel' does not exist"
[ -f "$(dirname "$kernel")/cmdline.txt" ] || die "no cmdline.txt beside the kernel '$kernel'"
bench_require
bench_engine
bench_workdir
work=$bench_work
cmdline="$(tr -d '\n' < "$(dirname "$kernel")/cmdline.txt") rdinit=/init"
# `echo` is a shell builtin: the only forks are mount and poweroff (each costs up to a second when the
# guest's page faults are emulated).
cat > "$work/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
echo XHYVE-BENCH init
poweroff -f
EOF
"$root/tests/linux/make-initramfs.sh" "$work/initrd.cpio" "$work/init" || die "building the initramfs failed"
initrd=$work/initrd.cpio

# microvm: see bench_tsc_khz in bench/lib.sh (the test kernel has no kvm-clock either).
microvm_extra="tsc_early_khz=$(bench_tsc_khz)"
argv_of() { # FIGURE CONFIG
  case $2 in
    ours) argv=("$engine" -A -c 2 -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "kexec,$kernel,$initrd,$cmdline") ;;
    pc) bench_qemu pc 256M; argv+=(-smp 2 -kernel "$kernel" -initrd "$initrd" -append "$cmdline") ;;
    microvm) bench_qemu microvm,acpi=on 256M; argv+=(-smp 2 -kernel "$kernel" -initrd "$initrd" -append "$cmdline $microvm_extra") ;;
  esac
}
configs=(ours pc microvm)

echo "kernel: $kernel" >&2
echo "runs: $runs per configuration, interleaved; bound: $bound s per run" >&2
for ((i = 1; i <= runs; i++)); do
  for cfg in "${configs[@]}"; do
    # Every run must reach the marker and power off cleanly (ACPI S5, exit status 0 in all three).
    bench_once linux "$cfg" "$i" "XHYVE-BENCH init" exit || continue
    bench_put init_s "$cfg" "${f[0]}"; bench_put off_s "$cfg" "${f[1]}"; bench_put cpu "$cfg" "${f[2]}"
    bench_put peak_kib "$cfg" "${f[3]}"; bench_put pss_kib "$cfg" "${f[4]}"; bench_put rss_kib "$cfg" "${f[5]}"
  done
done

echo
bench_host
echo "$runs runs each (min / median / max), interleaved; the test kernel: ours the bzImage decompressed on the host, pc and microvm the bzImage decompressing itself."
echo
bench_header
bench_row "(d) test kernel, start -> \`XHYVE-BENCH init\` (s)" init_s %.1f 1 ours le 1 microvm
bench_row "(d) test kernel, start -> power-off (exit) (s)" off_s %.1f 1 ours le 1 microvm
bench_row "(d) test kernel, CPU user+sys to power-off (s)" cpu %.1f 1 ours -
bench_row "(e) during (d): peak RSS (MiB)" peak_kib %.1f $bench_mib ours le 1 pc microvm
bench_row "(e) during (d): PSS at the marker (MiB)" pss_kib %.1f $bench_mib ours le 1 pc microvm
bench_row "(e) during (d): RSS at the marker (MiB)" rss_kib %.1f $bench_mib ours le 1 pc microvm
bench_failed
