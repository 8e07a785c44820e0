#!/usr/bin/env bash
# Issue 16, figure (g): 20 idle VMs at once under our engine, QEMU `pc` and QEMU `microvm`. Each VM is the hello
# test guest with idle=1 (it prints "XHYVE-TEST ready=1", then halts with interrupts off, so an idle VM costs no
# CPU), 64 MiB, 1 vCPU. Per run: the 20 processes start together; the time until every one has printed its ready
# line on the serial console (the guest has run, on every VMM alike); then, SETTLE seconds later, the total PSS and
# RSS of the 20 processes (/proc/PID/smaps_rollup) and their CPU time (user+sys, /proc/PID/stat) so far.
# Runs are interleaved (ours, pc, microvm, ours, ...); min / median / max.
#   bench/idle.sh      IDLE_RUNS (default 3), VMS (20), SETTLE (2 s), BOUND (600 s for one batch)
# Engine: bench/lib.sh (XHYVE_ENGINE, else the shipped NativeAOT engine, out/engine/xhyve from scripts/build-engine.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=$(bench_count IDLE_RUNS 3)
vms=$(bench_count VMS 20)
settle=$(bench_count SETTLE 2)
bound=$(bench_count BOUND 600)
bench_require
command -v python3 >/dev/null || bench_die "python3 is missing: apt-get install python3"
bench_engine
bench_guests
bench_workdir

argv_of() { # CONFIG
  case $1 in
    ours) argv=("$engine" -m 64M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "multiboot,$guests/hello.elf,,idle=1") ;;
    pc) bench_qemu pc 64; argv+=(-kernel "$guests/hello.elf" -append idle=1) ;;
    # The guest uses neither ACPI nor an i8042 (see bench/run.sh); microvm runs the PVH build of the same code.
    microvm) bench_qemu microvm,acpi=off 64; argv+=(-kernel "$guests/hello.pvh.elf" -append idle=1) ;;
  esac
}

# Starts VMS copies of argv, waits for all ready lines, samples, kills them. Prints "ready_s cpu_s pss_kib rss_kib"
# or a line starting with "failed".
batch() {
  python3 - "$vms" "$settle" "$bound" "${argv[@]}" <<'EOF'
import os, selectors, signal, subprocess, sys, time
vms, settle, bound = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
argv = sys.argv[4:]
# Whatever happens (a VM that cannot start, one that exits while its /proc files are read), every VM started is
# killed and reaped: idle guests never end by themselves.
procs = []
failure = None
try:
    t0 = time.monotonic()
    for _ in range(vms):
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    sel = selectors.DefaultSelector()
    buf = {}
    for p in procs:
        os.set_blocking(p.stdout.fileno(), False)
        sel.register(p.stdout, selectors.EVENT_READ, p)
        buf[p.pid] = b""
    ready = {}
    failure = None
    while len(ready) < vms and failure is None:
        left = bound - (time.monotonic() - t0)
        if left <= 0:
            failure = f"failed: {len(ready)} of {vms} ready after {bound:.0f} s"
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            p = key.data
            data = p.stdout.read()
            if not data:
                sel.unregister(p.stdout)
                if p.pid not in ready:
                    failure = f"failed: a VM exited before it was ready (status {p.wait()}): {buf[p.pid][-300:]!r}"
                continue
            buf[p.pid] += data
            if p.pid not in ready and b"XHYVE-TEST ready=1" in buf[p.pid]:
                ready[p.pid] = time.monotonic() - t0
    if failure is None:
        all_ready = max(ready.values())
        time.sleep(settle)
        pss = rss = 0
        ticks = 0
        hz = os.sysconf("SC_CLK_TCK")
        for p in procs:
            if p.poll() is not None:
                failure = f"failed: a VM exited while idle (status {p.returncode})"
                break
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"): pss += int(line.split()[1])
                    elif line.startswith("Rss:"): rss += int(line.split()[1])
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15)
except (OSError, ValueError, IndexError) as e:
    failure = f"failed: {e}"
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
print(failure if failure else f"{all_ready:.3f} {ticks / hz:.2f} {pss} {rss}")
EOF
}

configs=(ours pc microvm)
for ((i = 1; i <= runs; i++)); do
  for cfg in "${configs[@]}"; do
    argv_of "$cfg"
    r=$(batch)
    echo "run $i idle $cfg: all ready s, CPU s, total PSS KiB, total RSS KiB = $r" >&2
    case $r in
      failed*) bench_failures+=("idle/$cfg run $i: $r"); continue ;;
    esac
    read -r t c p s <<< "$r"
    bench_put ready_s "$cfg" "$t"; bench_put cpu "$cfg" "$c"; bench_put pss_kib "$cfg" "$p"; bench_put rss_kib "$cfg" "$s"
  done
done

echo
bench_host
echo "$vms idle VMs at once (hello idle=1, 64 MiB each), $runs runs each (min / median / max), interleaved; sampled $settle s after the last ready line."
echo
bench_header
bench_row "(g) $vms idle VMs, start -> all ready (s)" ready_s %.2f 1 ours -
bench_row "(g) $vms idle VMs, CPU user+sys until sampled (s)" cpu %.2f 1 ours -
bench_row "(g) $vms idle VMs, total PSS (MiB)" pss_kib %.1f $bench_mib ours le 0.2 microvm
bench_row "(g) $vms idle VMs, total RSS (MiB)" rss_kib %.1f $bench_mib ours -
bench_failed
