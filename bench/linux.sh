#!/usr/bin/env bash
# Linux boot benchmark (issue 10): the test kernel with a minimal initramfs (/init mounts /proc, prints
# a marker, powers off) under our engine, QEMU `pc` and QEMU `microvm`, same kernel, initramfs, 2 vCPUs
# and 256 MiB. Per run: wall time from process start to the marker line and to process exit, peak RSS
# and CPU time (user+sys, GNU time), and the VM process's RSS when the marker arrives (the steady RSS
# after boot, from /proc/PID/status). Runs are interleaved so host load drifts hit every configuration.
#   bench/linux.sh [-n RUNS] [-t BOUND_SECONDS]      (defaults: 3 runs, 300 s per run)
# Kernel: $XHYVE_TEST_KERNEL, else ../shared/linux-testkernel/bzImage beside the clone, else
# .cache/linux/testkernel/bzImage; its cmdline.txt is used, plus rdinit=/init.
# Engine: $XHYVE_ENGINE, else the Release build (dotnet build XhyvePS.sln -c Release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "bench/linux.sh: $*" >&2; exit 1; }

runs=3 bound=300
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
engine=${XHYVE_ENGINE:-$root/src/Xhyve.Engine/bin/Release/net10.0/xhyve}
[ -x "$engine" ] || die "engine '$engine' is missing: run dotnet build XhyvePS.sln -c Release (or set XHYVE_ENGINE)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is missing: apt-get install time"
[ -w /dev/kvm ] || die "/dev/kvm is missing or not writable"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

# microvm has no HPET, no ACPI PM timer, and PIT calibration fails when the guest's ring 0 is emulated
# (kvm_pvm), so Linux marks the TSC unstable and then stalls; without kvm-clock in this kernel the
# remaining way is to tell it the TSC rate, which is the host's (KVM does not scale it here).
tsc_khz() {
  local mhz
  mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p; s/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
  [ -n "$mhz" ] || mhz=$(awk -F': ' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
  awk -v m="$mhz" 'BEGIN { printf "%d", m * 1000 }'
}
microvm_extra="tsc_early_khz=$(tsc_khz)"
# `-cpu host` alone aborts QEMU 7.2 on kvm_pvm ("failed to set MSR 0x10a"): the host refuses the
# ARCH_CAPABILITIES value QEMU derives, so that one feature is left out.
qemu_argv() { # machine append
  argv=(qemu-system-x86_64 -enable-kvm -machine "$1" -cpu host,-arch-capabilities -smp 2 -m 256M -nodefaults
    -no-reboot -display none -monitor none -serial stdio -kernel "$kernel" -initrd "$initrd" -append "$2")
}
command_of() { # configuration -> the argv of its VM process, in the array `argv`
  case $1 in
    ours) argv=("$engine" -A -c 2 -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "kexec,$kernel,$initrd,$cmdline") ;;
    pc) qemu_argv pc "$cmdline" ;;
    microvm) qemu_argv microvm,acpi=on "$cmdline $microvm_extra" ;;
  esac
}
configs=(ours pc microvm)

# The VM process of a run: the last descendant of the run's process substitution (time -> timeout -> VM).
vm_pid() {
  local p=$1 c
  while c=$(ps -o pid= --ppid "$p" | head -n 1) && [ -n "$c" ]; do p=${c//[[:space:]]/}; done
  echo "$p"
}

# One run: prints "marker_s exit_s rss_kib cpu_s steady_kib status" (marker_s is "-" when the marker never
# came; steady_kib is the VM's VmRSS when it came).
run_one() {
  local cfg=$1 n=$2 log=$work/$1.$2.log tf=$work/$1.$2.time t0 tm=- te line rc steady=0 sub
  command_of "$cfg"
  t0=$EPOCHREALTIME
  # GNU time outside `timeout`: its figures include the VM process (wait4 returns the child's reaped
  # children too), and it still reports when the bound kills the run. The status line starts on a
  # line of its own in case the guest's last output had no newline.
  exec {fd}< <(/usr/bin/time -f "%M %U %S" -o "$tf" timeout -k 5 "$bound" "${argv[@]}" </dev/null 2>&1
    r=$?; printf '\nXHYVE-BENCH-RC %s\n' "$r")
  sub=$!
  rc=
  while IFS= read -r line <&$fd; do
    printf '%s\n' "$line" >> "$log"
    case $line in
      *"XHYVE-BENCH init"*)
        if [ "$tm" = - ]; then
          tm=$EPOCHREALTIME
          steady=$(awk '/^VmRSS:/ { print $2 }' "/proc/$(vm_pid "$sub")/status" 2>/dev/null || echo 0)
        fi ;;
      "XHYVE-BENCH-RC "*) rc=${line#XHYVE-BENCH-RC }; te=$EPOCHREALTIME ;;
    esac
  done
  exec {fd}<&-
  te=${te:-$EPOCHREALTIME}
  local status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout
  elif [ "$tm" = - ]; then status=no-marker
  elif [ "$rc" != 0 ]; then status=exit-$rc
  fi
  read -r rss user sys < <(grep -E '^[0-9]+ [0-9.]+ [0-9.]+$' "$tf" || echo "0 0 0")
  awk -v t0="$t0" -v tm="$tm" -v te="$te" -v rss="$rss" -v u="$user" -v s="$sys" -v sr="${steady:-0}" -v st="$status" \
    'BEGIN { printf "%s %.2f %d %.2f %d %s\n", (tm == "-") ? "-" : sprintf("%.2f", tm - t0), te - t0, rss, u + s, sr, st }'
}

echo "kernel: $kernel" >&2
echo "runs: $runs per configuration, interleaved; bound: $bound s per run" >&2
results=$work/results
for ((i = 1; i <= runs; i++)); do
  for cfg in "${configs[@]}"; do
    r=$(run_one "$cfg" "$i")
    echo "$cfg $r" >> "$results"
    echo "run $i $cfg: marker/exit/peak RSS KiB/CPU s/RSS at marker KiB/status = $r" >&2
    case $r in *" ok") ;; *) echo "--- last console lines of $cfg run $i:" >&2; tail -n 15 "$work/$cfg.$i.log" >&2 ;; esac
  done
done

# min / median / max of one column over the runs of one configuration that reached the marker; exit
# times only over the runs that also exited cleanly (a killed run's "exit" is the bound).
stats() { # cfg column scale format
  awk -v c="$1" -v col="$2" -v k="$3" -v f="$4" '$1 == c && $2 != "-" && (col != 3 || $7 == "ok") { v[++n] = $col * k }
    END { if (n == 0) { print "-"; exit }
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
          printf f " / " f " / " f, v[1], m, v[n] }' "$results"
}
echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm), load average $(cut -d' ' -f1-3 /proc/loadavg); $(qemu-system-x86_64 --version | head -1); $runs runs each (min / median / max)"
echo
echo "| configuration | start -> \`XHYVE-BENCH init\` (s) | start -> exit (s) | peak RSS (MiB) | RSS at the marker (MiB) | CPU user+sys (s) | runs ok |"
echo "|---|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  ok=$(awk -v c="$cfg" '$1 == c && $7 == "ok"' "$results" | wc -l)
  echo "| $cfg | $(stats "$cfg" 2 1 %.1f) | $(stats "$cfg" 3 1 %.1f) | $(stats "$cfg" 4 0.0009765625 %.1f) | $(stats "$cfg" 6 0.0009765625 %.1f) | $(stats "$cfg" 5 1 %.1f) | $ok/$runs |"
done
# Every run must reach the marker and power off cleanly; say which did not.
failed=$(awk '$7 != "ok" { print $1 "(" $7 ")" }' "$results" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')
[ -z "$failed" ] || { echo "bench/linux.sh: runs that failed: $failed" >&2; exit 1; }
