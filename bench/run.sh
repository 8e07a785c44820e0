#!/usr/bin/env bash
# Side-by-side benchmarks: the XhyvePS engine and QEMU (-enable-kvm) on the same host, same guests,
# in one run. Prints a markdown table for docs/benchmarks.md.
#   bench/run.sh [--quick]     (--quick skips the Linux boot figure, which takes ~3 minutes)
# Needs: scripts/setup-debian.sh (qemu-system-x86, time, the Debian kernel).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=${1:-}
runs=${RUNS:-10}

dotnet publish "$root/src/Xhyve.Engine" -c Release -r linux-x64 --self-contained false -o "$root/out/xhyve" --nologo -v quiet >/dev/null
make -s -C "$root/tests/guests"
xhyve="$root/out/xhyve/xhyve"
guests="$root/tests/guests/build"
qemu=(qemu-system-x86_64 -enable-kvm -m 256 -display none -nodefaults -no-reboot)

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# (a) hello guest: process start -> reset exit. Wall seconds and peak RSS (KiB) via GNU time.
measure_hello() {
  local out=$(mktemp) i
  for ((i = 0; i < runs; i++)); do /usr/bin/time -f "%e %M" -a -o "$out" "$@" >/dev/null 2>&1 || true; done
  # GNU time also writes "Command exited with non-zero status 2" (the hello guest resets): keep the figures only.
  grep -E '^[0-9.]+ [0-9]+$' "$out" > "$out.n"
  echo "$(cut -d' ' -f1 "$out.n" | median) $(cut -d' ' -f2 "$out.n" | median)"
  rm -f "$out.n"
  rm -f "$out"
}
read -r x_hello_s x_hello_kb < <(measure_hello "$xhyve" -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "multiboot,$guests/hello.elf")
read -r q_hello_s q_hello_kb < <(measure_hello "${qemu[@]}" -serial stdio -kernel "$guests/hello.elf")

# (b) exits guest: `out` round trips per second, from two run lengths so start-up cancels out.
wall() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 )); }
exits_rate() { # $1 = "xhyve" | "qemu"
  local n1=20000 n2=220000 a b
  if [ "$1" = xhyve ]; then
    a=$(wall "$xhyve" -s 31,lpc -l com1,null -f "multiboot,$guests/exits.elf,,n=$n1")
    b=$(wall "$xhyve" -s 31,lpc -l com1,null -f "multiboot,$guests/exits.elf,,n=$n2")
  else
    a=$(wall "${qemu[@]}" -serial null -kernel "$guests/exits.elf" -append "n=$n1")
    b=$(wall "${qemu[@]}" -serial null -kernel "$guests/exits.elf" -append "n=$n2")
  fi
  echo $(( (n2 - n1) * 1000000 / (b - a) ))
}
x_exits=$(exits_rate xhyve)
q_exits=$(exits_rate qemu)

# (c) Debian kernel: process start -> "Linux version" on the serial console.
to_banner() {
  # The clock stops at the matching line, not when the process exits: on a software-nested host both
  # engines later hit the same emulation failure, and QEMU then pauses rather than exiting.
  local pidfile t0 t1 line fd found=0
  pidfile=$(mktemp)
  t0=$(date +%s%N)
  exec {fd}< <("$@" 2>/dev/null & echo $! > "$pidfile"; wait)
  while IFS= read -r -t 600 line <&$fd; do
    case "$line" in *"Linux version"*) found=1; break;; esac
  done
  t1=$(date +%s%N)
  kill "$(cat "$pidfile")" 2>/dev/null || true
  exec {fd}<&-
  rm -f "$pidfile"
  if [ $found -eq 1 ]; then awk -v d=$(( (t1 - t0) / 1000000 )) 'BEGIN { printf "%.1f", d / 1000 }'; else echo "no banner"; fi
}
if [ "$quick" != "--quick" ]; then
  kernel=$("$root/tests/linux/fetch-debian-kernel.sh")
  cmdline="earlyprintk=serial console=ttyS0"
  x_linux=$(to_banner "$xhyve" -m 512M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "kexec,$kernel,,$cmdline")
  x_linux_bz=$(to_banner "$xhyve" --kernel-load=bzimage -m 512M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "kexec,$kernel,,$cmdline")
  q_linux=$(to_banner qemu-system-x86_64 -enable-kvm -m 512 -display none -nodefaults -no-reboot -serial stdio -kernel "$kernel" -append "$cmdline")
else
  x_linux=skipped; x_linux_bz=skipped; q_linux=skipped
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }
echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm); $(qemu-system-x86_64 --version | head -1); runs per figure: $runs (median)"
echo
echo "| figure | XhyvePS | QEMU | XhyvePS / QEMU |"
echo "|---|---|---|---|"
echo "| (a) hello guest, start -> reset exit (s) | $x_hello_s | $q_hello_s | $(ratio "$x_hello_s" "$q_hello_s") |"
echo "| (a) hello guest, peak RSS (MiB) | $(awk -v k="$x_hello_kb" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$q_hello_kb" 'BEGIN{printf "%.1f", k/1024}') | $(ratio "$x_hello_kb" "$q_hello_kb") |"
echo "| (b) exits guest, \`out\` round trips per second | $x_exits | $q_exits | $(ratio "$x_exits" "$q_exits") |"
echo "| (c) Debian kernel, start -> \"Linux version\" (s), host-decompressed | $x_linux | $q_linux | $(ratio "$x_linux" "$q_linux") |"
echo "| (c) Debian kernel, start -> \"Linux version\" (s), self-decompressing bzImage | $x_linux_bz | $q_linux | $(ratio "$x_linux_bz" "$q_linux") |"
