#!/usr/bin/env bash
# AHCI benchmark (issue 14): the ahci test guest reads a 256 MiB raw image through our AHCI HBA (-s N,ahci-hd)
# and through QEMU's (ich9 ahci + ide-hd), with READ FPDMA QUEUED: sequentially in 1 MiB requests at queue
# depth 1, and at random 4 KiB offsets at queue depth 1 and 32 (NCQ tags kept busy). The vblk guest reads the
# same image the same way through our virtio-blk, for comparison. One run, side by side.
#   bench/ahci.sh             (needs scripts/setup-debian.sh: qemu-system-x86)
#   bench/ahci.sh --quick     (runs a tenth as long: checks the script, its figures are start-up noise)
#   bench/ahci.sh --irq       (the guests wait for an interrupt instead of polling the device's registers:
#                              ahci irq=1, MSI; vblk msix=1)
# Guest figures come from two runs of different length, so start-up (QEMU's firmware, .NET) cancels out. Each
# workload runs on the three set-ups one after the other, so a change in host load hits all three. Every run
# must print bench_done=n (all n reads completed without error), else the script stops: a guest that failed
# early would otherwise pass for a fast one. The image is freshly written, so every side reads from the host
# page cache.
set -euo pipefail
shopt -s inherit_errexit   # a failed run inside $(...) stops the script too
root=$(cd "$(dirname "$0")/.." && pwd)
scale=1 ahci_opt="" vblk_opt="" mode=polling
for a in "$@"; do
  case "$a" in
    --quick) scale=10 ;;
    --irq) ahci_opt=" irq=1" vblk_opt=" msix=1" mode="interrupts (ahci irq=1, vblk msix=1)" ;;
    *) echo "usage: bench/ahci.sh [--quick] [--irq]" >&2; exit 2 ;;
  esac
done
. "$root/bench/lib.sh"
bench_engine   # the shipped (NativeAOT) engine, or $XHYVE_ENGINE
make -s -C "$root/tests/guests"
xhyve=$engine
guests="$root/tests/guests/build"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
img="$work/bench.img"
head -c 256M /dev/urandom > "$img"
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)

# Runs one guest to its end; prints the microseconds it took, start-up included. The guest's COM1 goes to a file
# that must say bench_done=<n>.
run_guest() { # setup "args" n
  local out="$work/com1.txt" t0 t1
  t0=$(date +%s%N)
  case "$1" in
    xhyve-ahci) "$xhyve" -s 0,hostbridge -s 31,lpc -l com1,stdio -s "4,ahci-hd,$img" -f "multiboot,$guests/ahci.elf,,$2 n=$3$ahci_opt" ;;
    qemu-ahci) qemu-system-x86_64 -enable-kvm -m 256 -display none -nodefaults -no-reboot -serial stdio -kernel "$guests/ahci.elf" \
      -append "$2 n=$3$ahci_opt" -device ahci,id=ahci -drive "if=none,id=d0,file=$img,format=raw,cache=writeback,aio=threads" \
      -device ide-hd,drive=d0,bus=ahci.0 ;;
    xhyve-vblk) "$xhyve" -s 0,hostbridge -s 31,lpc -l com1,stdio -s "4,virtio-blk,$img" -f "multiboot,$guests/vblk.elf,,$2 n=$3$vblk_opt" ;;
  esac >"$out" 2>&1 || true   # our engine exits with 2 on the guest's reset
  t1=$(date +%s%N)
  if ! grep -q "^XHYVE-TEST bench_done=$3\b" "$out"; then
    echo "$1 '$2 n=$3': no bench_done=$3; its output:" >&2
    cat "$out" >&2
    exit 1
  fi
  echo $(( (t1 - t0) / 1000 ))
}
# Requests per second from two run lengths: (n2 - n1) / (t2 - t1).
rate() { # setup "args" n1 n2
  local n1=$(( $3 / scale )) n2=$(( $4 / scale )) a b
  a=$(run_guest "$1" "$2" "$n1")
  b=$(run_guest "$1" "$2" "$n2")
  awk -v n=$(( n2 - n1 )) -v us=$(( b - a )) 'BEGIN { if (us <= 0) print 0; else printf "%.0f", n * 1e6 / us }'
}

declare -A r
for w in seq r1 r32; do
  case $w in
    seq) args="bench=1 reqkb=1024 qd=1"; n1=256; n2=1280 ;;
    r1) args="bench=2 qd=1"; n1=2000; n2=20000 ;;
    r32) args="bench=2 qd=32"; n1=2000; n2=20000 ;;
  esac
  for s in xhyve-ahci qemu-ahci xhyve-vblk; do r[$w,$s]=$(rate $s "$args" $n1 $n2); done
done

mib() { awk -v r="$1" -v kb="$2" 'BEGIN { printf "%.0f", r * kb / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
row() { # label workload unit-kb (0: IOPS)
  local x=${r[$2,xhyve-ahci]} q=${r[$2,qemu-ahci]} v=${r[$2,xhyve-vblk]}
  if [ "$3" != 0 ]; then x=$(mib "$x" "$3"); q=$(mib "$q" "$3"); v=$(mib "$v" "$3"); fi
  echo "| $1 | $x | $q | $v | $(ratio "$x" "$q") |"
}
echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm); $(qemu-system-x86_64 --version | head -1)"
echo "Guests wait by $mode; load average $load_start at the start, $(load) at the end$( [ $scale != 1 ] && echo "; --quick (runs 1/$scale as long)")"
echo
echo "| workload | XhyvePS AHCI | QEMU AHCI | XhyvePS virtio-blk | ours/QEMU |"
echo "|---|---|---|---|---|"
row "sequential 1 MiB, QD1 (MiB/s)" seq 1024
row "random 4 KiB, QD1 (IOPS)" r1 0
row "random 4 KiB, NCQ QD32 (IOPS)" r32 0
