#!/usr/bin/env bash
# Where the hello guest's start -> exit time goes (issue 16, figure (a)), ours against QEMU microvm, interleaved:
#   start -> first console byte, first -> last console byte (the guest printing), last byte -> process reaped
#   (the guest's reset, the VMM's teardown and the kernel's: both VMMs' KVM VM is destroyed on the way out),
# and, for ours, how long close() of the KVM VM descriptor takes in that teardown (perf trace, when perf is installed):
# that close runs kvm_destroy_vm, whose SRCU grace periods (kvm_free_pit's I/O bus unregistrations,
# mmu_notifier_unregister) QEMU pays too, inside its exit_group.
#   bash bench/hello-phases.sh            RUNS=20 (default)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
runs=$(bench_count RUNS 20)
bench_require
bench_engine
bench_guests
bench_host

bench_qemu microvm,acpi=off 256
qemu=("${argv[@]}" -kernel "$guests/hello.pvh.elf")
ours=("$engine" -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "multiboot,$guests/hello.elf")

python3 - "$runs" "${#ours[@]}" "${ours[@]}" "${qemu[@]}" <<'EOF'
import os, resource, statistics, subprocess, sys, threading, time
runs, n = int(sys.argv[1]), int(sys.argv[2])
cmds = {"ours": sys.argv[3:3 + n], "QEMU microvm": sys.argv[3 + n:]}

def once(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = last = None
    # A VM that hangs is killed at the bound (it then closes its output, which ends the loop).
    bound = threading.Timer(30, p.kill)
    bound.start()
    while chunk := os.read(p.stdout.fileno(), 4096):
        now = time.monotonic()
        first = first or now
        last = now
    p.wait()
    end = time.monotonic()
    bound.cancel()
    # The hello guest ends in a reset: our engine exits with 2 for it, QEMU (-no-reboot) with 0.
    if p.returncode not in (0, 2):
        sys.exit(f"hello-phases: {argv[0]} ended with status {p.returncode} (killed at the 30 s bound if negative)")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if first is None:
        sys.exit(f"hello-phases: {argv[0]} printed nothing (exit status {p.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (first - t0, last - first, end - last, end - t0, cpu)

results = {k: [] for k in cmds}
for _ in range(runs):
    for k, argv in cmds.items():
        results[k].append(once(argv))

def ms(values):
    values = sorted(values)
    return f"{statistics.median(values) * 1000:.1f} ({values[0] * 1000:.1f}-{values[-1] * 1000:.1f})"

print(f"\n{runs} runs each, interleaved; milliseconds, median (min-max)\n")
print("| phase | ours | QEMU microvm |")
print("|---|---|---|")
labels = ["start -> first console byte", "first -> last console byte", "last byte -> process reaped", "start -> reaped", "CPU user+sys"]
for i, label in enumerate(labels):
    print(f"| {label} | {ms([r[i] for r in results['ours']])} | {ms([r[i] for r in results['QEMU microvm']])} |")
EOF

if command -v perf >/dev/null; then
  bench_workdir
  trace=$bench_work/close.trace
  for _ in $(seq 1 "$runs"); do
    rm -f "$trace" "$trace.old"
    # The VM descriptor's close is the longest close of the run (perf names it anon_inode:kvm-vm when it can).
    if perf trace -e close -o "$trace" -- "${ours[@]}" </dev/null >/dev/null 2>&1 || [ -s "$trace" ] &&
       close=$(awk 'match($0, /\( *[0-9.]+ ms\): .* close\(/) { d = substr($0, RSTART + 1); sub(/ ms.*/, "", d); if (d + 0 > max) max = d + 0; n++ }
                   END { if (!n) exit 1; printf "%.2f", max }' "$trace"); then
      bench_put close_ms ours "$close"
    else
      echo "perf trace could not trace the engine's close() (it needs root or perf_event_paranoid <= 1): not timed" >&2
      : > "$BENCH_RESULTS"
      break
    fi
  done
  if [ -s "$BENCH_RESULTS" ]; then
    echo
    echo "ours, close() of the KVM VM descriptor (kvm_destroy_vm), $runs runs under perf trace, ms min / median / max: $(bench_stat close_ms ours %.2f)"
  fi
else
  echo "perf is not installed (apt-get install linux-perf): the close() of the KVM VM descriptor is not timed"
fi
