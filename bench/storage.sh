#!/usr/bin/env bash
# Storage benchmark (issue 4): the vblk test guest reads a 256 MiB raw image through virtio-blk
# sequentially (1 MiB requests, QD1) and randomly (4 KiB, QD1 and QD32); the host reads the same file the
# same way with fio; QEMU's virtio-blk-pci runs the same guest. One run, side by side.
#   bench/storage.sh          (needs scripts/setup-debian.sh: qemu-system-x86, fio)
# Guest figures come from two runs of different length, so start-up cancels out. The image is freshly
# written, so every side reads from the host page cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dotnet publish "$root/src/Xhyve.Engine" -c Release -r linux-x64 --self-contained false -o "$root/out/xhyve" --nologo -v quiet >/dev/null
make -s -C "$root/tests/guests"
xhyve="$root/out/xhyve/xhyve"
guest="$root/tests/guests/build/vblk.elf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
img="$work/bench.img"
head -c 256M /dev/urandom > "$img"

us() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 )); }
run_guest() { # engine cmdline
  if [ "$1" = xhyve ]; then
    us "$xhyve" -s 0,hostbridge -s 31,lpc -l com1,null -s "4,virtio-blk,$img" -f "multiboot,$guest,,$2"
  else
    us qemu-system-x86_64 -enable-kvm -m 256 -display none -nodefaults -no-reboot -serial null -kernel "$guest" -append "$2" \
      -drive "file=$img,format=raw,if=none,id=d0,cache=writeback,aio=threads" -device virtio-blk-pci,drive=d0,disable-legacy=on
  fi
}
# Requests per second from two run lengths: (n2 - n1) / (t2 - t1).
rate() { # engine "args" n1 n2
  local a b
  a=$(run_guest "$1" "$2 n=$3")
  b=$(run_guest "$1" "$2 n=$4")
  awk -v n=$(( $4 - $3 )) -v us=$(( b - a )) 'BEGIN { if (us <= 0) print 0; else printf "%.0f", n * 1e6 / us }'
}
fio_iops() { # fio args...
  fio --name=b --filename="$img" --size=256M --time_based --runtime=3 --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

x_seq=$(rate xhyve "bench=1 reqkb=1024 qd=1" 256 1280)
x_r1=$(rate xhyve "bench=2 qd=1" 2000 20000)
x_r32=$(rate xhyve "bench=2 qd=32" 2000 20000)
q_seq=$(rate qemu "bench=1 reqkb=1024 qd=1" 256 1280)
q_r1=$(rate qemu "bench=2 qd=1" 2000 20000)
q_r32=$(rate qemu "bench=2 qd=32" 2000 20000)
h_seq=$(fio_iops --rw=read --bs=1m --ioengine=psync)
h_r1=$(fio_iops --rw=randread --bs=4k --ioengine=psync)
h_r32=$(fio_iops --rw=randread --bs=4k --ioengine=io_uring --iodepth=32)

mib() { awk -v r="$1" -v kb="$2" 'BEGIN { printf "%.0f", r * kb / 1024 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.1f %%", 100 * a / b }'; }
echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm); $(qemu-system-x86_64 --version | head -1); $(fio --version)"
echo
echo "| workload | XhyvePS | QEMU virtio-blk | host (fio) | XhyvePS / host | QEMU / host |"
echo "|---|---|---|---|---|---|"
echo "| sequential 1 MiB, QD1 (MiB/s) | $(mib "$x_seq" 1024) | $(mib "$q_seq" 1024) | $(mib "$h_seq" 1024) | $(pct "$x_seq" "$h_seq") | $(pct "$q_seq" "$h_seq") |"
echo "| random 4 KiB, QD1 (IOPS) | $x_r1 | $q_r1 | $h_r1 | $(pct "$x_r1" "$h_r1") | $(pct "$q_r1" "$h_r1") |"
echo "| random 4 KiB, QD32 (IOPS) | $x_r32 | $q_r32 | $h_r32 | $(pct "$x_r32" "$h_r32") | $(pct "$q_r32" "$h_r32") |"
