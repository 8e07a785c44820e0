#!/usr/bin/env bash
# Storage benchmark (issue 4; issue 16 (f)): one run, every figure as min / median / max of interleaved runs, with
# the CPU time the measured process used beside the wall time.
#  1. As before: the vblk test guest reads a 256 MiB raw image through virtio-blk sequentially (1 MiB requests, QD1)
#     and randomly (4 KiB, QD1 and QD32); QEMU's virtio-blk-pci runs the same guest; the host reads the same file the
#     same way with fio.
#  2. Image formats on the same data: random data converted (xhyve disk convert) to raw, sparse, split+sparse (64 MiB
#     segments) and split images; the guest reads each sequentially, overwrites it sequentially, and writes an empty one of
#     each format sequentially (allocating: a sparse image appends, syncs and updates its LUT).
#   bench/storage.sh [--runs N] [--quick] [--irq]   (needs scripts/setup-debian.sh: qemu-system-x86, fio)
#     --runs N   interleaved runs of everything (default 5)
#     --quick    one run, a quarter of the requests: checks the script, its figures are start-up noise
#     --irq      the guest waits for an MSI-X interrupt instead of polling (msix=1), so the CPU time is the device's
#                work and the guest's driver rather than a polling vCPU
# Guest figures come from two runs of different length, so start-up (QEMU's firmware, .NET) cancels out, for wall and
# CPU time alike. Each round runs every set-up of a workload one after the other, so a change in host load hits all of
# them. Every guest must print bench_done=n (all n requests completed without error), else the script stops. The
# images are freshly written, so every side reads from the host page cache.
set -euo pipefail
shopt -s inherit_errexit   # a failed run inside $(...) stops the script too
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5 quick=0 irq=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --quick) quick=1; runs=1 ;;
    --irq) irq=" msix=1" ;;
    *) echo "usage: bench/storage.sh [--runs N] [--quick] [--irq]" >&2; exit 2 ;;
  esac
  shift
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench/storage.sh: --runs $runs: not a positive number" >&2; exit 2; }
. "$root/bench/lib.sh"
bench_engine   # the shipped (NativeAOT) engine, or $XHYVE_ENGINE
make -s -C "$root/tests/guests"
xhyve=$engine
guest="$root/tests/guests/build/vblk.elf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
img="$work/raw.img"
# Every image, raw included, is written by the same converter in 1 MiB writes: how a file was written (large or small
# writes) shapes its page cache, which changed read rates by up to 2x in our runs, so the formats must not differ in it.
head -c 256M /dev/urandom > "$work/random.bin"
"$xhyve" disk convert "$work/random.bin" "$img" >/dev/null
rm "$work/random.bin"
split_opts="size=256M,split=64M"
declare -A opts=([raw]="" [sparse]=",size=256M,sparse" [split+sparse]=",$split_opts,sparse" [split]=",$split_opts")
declare -A path=([raw]="$img" [sparse]="$work/sparse.img" [split+sparse]="$work/splitsparse.img" [split]="$work/split.img")
for f in sparse split+sparse split; do "$xhyve" disk convert "$img" "${path[$f]}" "${opts[$f]#,}" >/dev/null; done
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)

# A fresh, empty image of format $1 at $work/fresh.img (for the allocating writes); prints its -s path and options.
fresh() {
  rm -f "$work"/fresh.img*
  if [ "$1" = raw ]; then truncate -s 256M "$work/fresh.img"; else "$xhyve" disk create "$work/fresh.img" "${opts[$1]#,}" >/dev/null; fi
  echo "$work/fresh.img${opts[$1]}"
}

# Runs one guest to its end; prints "wall_us cpu_us" (user + system time of the engine or QEMU, start-up included).
# The guest's COM1 goes to a file that must say bench_done=<n>.
run_guest() { # setup disk "args" n
  local out="$work/com1.txt" tf="$work/time.txt" TIMEFORMAT='%3R %3U %3S'
  case "$1" in
    qemu) { time qemu-system-x86_64 -enable-kvm -m 256 -display none -nodefaults -no-reboot -serial stdio -kernel "$guest" \
      -append "$3 n=$4$irq" -drive "file=$2,format=raw,if=none,id=d0,cache=writeback,aio=threads" \
      -device virtio-blk-pci,drive=d0,disable-legacy=on >"$out" 2>&1; } 2>"$tf" || true ;;
    *) { time "$xhyve" -s 0,hostbridge -s 31,lpc -l com1,stdio -s "4,virtio-blk,$2" -f "multiboot,$guest,,$3 n=$4$irq" \
      >"$out" 2>&1; } 2>"$tf" || true ;;   # our engine exits with 2 on the guest's reset
  esac
  if ! grep -q "^XHYVE-TEST bench_done=$4\b" "$out"; then
    echo "$1 on $2 '$3 n=$4': no bench_done=$4; its output:" >&2
    cat "$out" >&2
    exit 1
  fi
  awk '{ printf "%.0f %.0f\n", $1 * 1e6, ($2 + $3) * 1e6 }' "$tf"
}

# One measurement: "requests/s cpu_us_per_request wall_us_per_request", from two run lengths: (n2 - n1) / (t2 - t1);
# nothing when the longer run was not the slower (load noise swamped it), so the run counts as not measured.
measure() { # setup workload
  local s=$1 w=$2 args n1 n2 disk1 disk2 a b
  case $w in
    seq) args="bench=1 reqkb=1024 qd=1"; n1=256; n2=1280 ;;
    r1) args="bench=2 qd=1"; n1=2000; n2=20000 ;;
    r32) args="bench=2 qd=32"; n1=2000; n2=20000 ;;
    write) args="bench=3 reqkb=1024 qd=1"; n1=256; n2=1280 ;;
    alloc) args="bench=3 reqkb=1024 qd=1"; n1=48; n2=240 ;;   # at most 256: every request lands on never-written sectors
  esac
  if [ "$quick" = 1 ]; then n1=$(( n1 / 4 )); n2=$(( n2 / 4 )); fi
  if [ "$s" = fio ]; then fio_measure "$w"; return; fi
  local fmt=${s#xhyve-}; [ "$s" = qemu ] && fmt=raw
  if [ "$w" = alloc ]; then disk1=$(fresh "$fmt"); a=$(run_guest "$s" "$disk1" "$args" "$n1"); disk2=$(fresh "$fmt"); b=$(run_guest "$s" "$disk2" "$args" "$n2")
  else disk1="${path[$fmt]}"; [ "$s" = qemu ] || disk1+="${opts[$fmt]}"; a=$(run_guest "$s" "$disk1" "$args" "$n1"); b=$(run_guest "$s" "$disk1" "$args" "$n2"); fi
  awk -v n=$(( n2 - n1 )) -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); us = y[1] - x[1]; cpu = y[2] - x[2];
    if (us > 0) printf "%.1f %.1f %.1f\n", n * 1e6 / us, cpu / n, us / n }'
}
# The host's own reads of the raw image: IOPS and fio's CPU share (usr + sys, % of one CPU) turned into µs per request.
fio_measure() { # workload
  local f=(--rw=read --bs=1m --ioengine=psync)
  case $1 in r1) f=(--rw=randread --bs=4k --ioengine=psync) ;; r32) f=(--rw=randread --bs=4k --ioengine=io_uring --iodepth=32) ;; esac
  fio --name=b --filename="$img" --size=256M --time_based --runtime=$(( quick ? 1 : 3 )) --output-format=json "${f[@]}" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; r=j["read"]["iops"]; c=(j["usr_cpu"]+j["sys_cpu"])/100
print("%.1f %.1f %.1f" % (r, c * 1e6 / r if r else 0, 1e6 / r if r else 0))'
}

workloads=(seq r1 r32 fmt_seq fmt_write fmt_alloc)
declare -A setups=([seq]="xhyve-raw qemu fio" [r1]="xhyve-raw qemu fio" [r32]="xhyve-raw qemu fio"
  [fmt_seq]="xhyve-raw xhyve-sparse xhyve-split+sparse xhyve-split" [fmt_write]="xhyve-raw xhyve-sparse xhyve-split+sparse xhyve-split"
  [fmt_alloc]="xhyve-raw xhyve-sparse xhyve-split+sparse xhyve-split")
declare -A results=()   # "workload,setup" -> one "rate cpu wall" line per run
for ((round = 1; round <= runs; round++)); do
  for w in "${workloads[@]}"; do
    case $w in fmt_seq) m=seq ;; fmt_write) m=write ;; fmt_alloc) m=alloc ;; *) m=$w ;; esac
    for s in ${setups[$w]}; do results[$w,$s]+="$(measure "$s" "$m")"$'\n'; done
  done
done

# min / median / max of column $2 (1: rate, 2: CPU µs per request, 3: wall µs per request), rate scaled by $3 (KiB per
# request, 0: as is); "-" without measurements, and how many there were when runs were not measured.
stats() { # lines column kb
  printf '%s' "$1" | awk -v c="$2" -v kb="$3" -v runs="$runs" 'NF { v[++n] = $c * (kb ? kb / 1024 : 1) } END { if (!n) { print "-"; exit }
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }   # mawk has no asort
    m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    f = c == 1 ? "%.0f" : "%.1f"; printf f " / " f " / " f, v[1], m, v[n]; if (n < runs) printf " (%d of %d runs)", n, runs }'
}
median() { stats "$1" "$2" 0 | awk -F' / ' '{ print (NF > 1 ? $2 : "-") }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b + 0 == 0) print "-"; else printf "%.1f %%", 100 * a / b }'; }
label() { case $1 in seq) echo "sequential read 1 MiB, QD1" ;; r1) echo "random read 4 KiB, QD1" ;; r32) echo "random read 4 KiB, QD32" ;;
  fmt_seq) echo "formats: sequential read 1 MiB, QD1" ;; fmt_write) echo "formats: sequential overwrite 1 MiB, QD1" ;;
  fmt_alloc) echo "formats: sequential write 1 MiB into an empty image, QD1" ;; esac; }

echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm); $(qemu-system-x86_64 --version | head -1); $(fio --version)"
echo "Runs: $runs$( [ "$quick" = 1 ] && echo ' (--quick: figures are start-up noise)'), guest $( [ -n "$irq" ] && echo 'waits for MSI-X interrupts' || echo polls); load average at start $load_start, at end $(load)"
echo
echo "| workload | set-up | rate (min / median / max) | wall µs per request (median) | CPU µs per request (min / median / max) | median rate vs the first set-up |"
echo "|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
  base=""
  for s in ${setups[$w]}; do
    r=${results[$w,$s]}
    if [ "$w" = r1 ] || [ "$w" = r32 ]; then unit=IOPS kb=0; else unit=MiB/s kb=1024; fi
    rate=$(median "$r" 1)
    [ -z "$base" ] && base=$rate
    st=$(stats "$r" 1 "$kb"); [ "$st" = - ] || st+=" $unit"
    echo "| $(label "$w") | $s | $st | $(median "$r" 3) | $(stats "$r" 2 0) | $(pct "$rate" "$base") |"
  done
done
