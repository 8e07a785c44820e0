#!/usr/bin/env bash
# Issue 16 benchmarks (a), (b), (c) and (e) during (c): our engine against QEMU `pc` (what users get by default)
# and QEMU `microvm` with the PVH entry (QEMU's fastest), same guests, one run, interleaved (ours, pc, microvm,
# ours, ...), min / median / max with CPU time (user+sys) beside wall time. Prints markdown for docs/benchmarks.md
# with "target: met/missed" computed from the medians.
#   bench/run.sh [--quick]      (--quick leaves out (c), the Debian kernel boots)
#   RUNS (a) hello runs, default 10; EXIT_RUNS (b), default 5; LINUX_RUNS (c), default 3; BOUND seconds per boot, 300
# (a) hello guest, process start -> exit, and peak RSS. ours: multiboot hello.elf; pc: the same ELF (QEMU's multiboot
#     loader, behind SeaBIOS); microvm: hello.pvh.elf, the same code with a PVH entry note instead of the multiboot
#     header (QEMU prefers multiboot when both are present), and, as one more row, the multiboot ELF on microvm.
# (b) exits guest: `out` round trips per second and CPU per exit, from two run lengths so start-up cancels out.
# (c) Debian cloud kernel, start -> "Linux version": ours boots the bzImage (payload decompressed on the host, the
#     default) and, as one more row, the vmlinux; pc the bzImage (SeaBIOS, self-decompressing); microvm the vmlinux
#     through its PVH note (extracted here from the bzImage with the system's decompressor).
# (e) during (c): peak RSS (GNU time) and PSS/RSS of the VM process sampled at the banner.
# Engine: bench/lib.sh (XHYVE_ENGINE, else the shipped NativeAOT engine, out/engine/xhyve from scripts/build-engine.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
quick=${1:-}
[ -z "$quick" ] || [ "$quick" = --quick ] || bench_die "unknown argument '$quick' (only --quick)"
runs=$(bench_count RUNS 10)
exit_runs=$(bench_count EXIT_RUNS 5)
linux_runs=$(bench_count LINUX_RUNS 3)
bound=$(bench_count BOUND 300)
bench_require
bench_engine
bench_guests
bench_workdir
# The hello and exits guests end in a reset: our engine exits with status 2 on it, QEMU (-no-reboot) with 0.
bench_accept="ok exit-2"

# The Debian kernel and its vmlinux: the payload of a bzImage starts payload_offset (setup header 0x248) bytes into
# the protected-mode part, after (setup_sects + 1) * 512 bytes (setup_sects 0 means 4); the build appends the
# uncompressed size as its last 4 bytes, which the decompressors do not expect.
extract_vmlinux() { # BZIMAGE OUT
  local sects poff plen start magic
  [ "$(od -An -c -j $((0x202)) -N4 "$1" 2>/dev/null | tr -d ' ')" = HdrS ] || bench_die "'$1' is not a bzImage (no HdrS setup header)"
  sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$1" | tr -d ' ')
  [ "$sects" != 0 ] || sects=4
  read -r poff plen < <(od -An -tu4 -j $((0x248)) -N8 "$1")
  [ "${plen:-0}" -gt 4 ] || bench_die "'$1' has no compressed payload in its setup header (not a bzImage of boot protocol 2.08+)"
  start=$(( (sects + 1) * 512 + poff ))
  magic=$(od -An -tx1 -j "$start" -N6 "$1" | tr -d ' ')
  local tool
  case $magic in
    02214c18*) tool=(lz4 -dc) ;;
    fd377a585a00) tool=(xz -dc) ;;
    28b52ffd*) tool=(zstd -dcq) ;;
    1f8b*) tool=(gzip -dc) ;;
    *) bench_die "'$1': payload compression with magic $magic is not one bench/run.sh extracts (lz4, xz, zstd, gzip)" ;;
  esac
  dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$start" count=$((plen - 4)) status=none | "${tool[@]}" > "$2" ||
    bench_die "'$1': ${tool[0]} could not decompress the payload"
  local want
  want=$(od -An -tu4 -j $((start + plen - 4)) -N4 "$1" | tr -d ' ')
  [ "$(stat -c %s "$2")" = "$want" ] || bench_die "'$1': the extracted vmlinux is $(stat -c %s "$2") bytes, the bzImage says $want"
  # QEMU enters an uncompressed kernel only through its PVH note (XEN_ELFNOTE_PHYS32_ENTRY, type 18).
  # (into a file first: grep -q stops reading at its match, and readelf's SIGPIPE would fail the pipeline.)
  readelf -nW "$2" > "$2.notes" || bench_die "'$1': readelf could not read the extracted vmlinux"
  grep -q 'Xen.*(0x00000012)' "$2.notes" || bench_die "'$1': the vmlinux has no PVH entry note (a kernel without CONFIG_PVH)"
}
if [ "$quick" != --quick ]; then
  kernel=$("$bench_root/tests/linux/fetch-debian-kernel.sh")
  vmlinux=$bench_work/vmlinux
  extract_vmlinux "$kernel" "$vmlinux"
  kcmd="earlyprintk=serial console=ttyS0"
fi

ours_base=("$engine" -s 0,hostbridge -s 31,lpc -l com1,stdio)
# The guests of (a) and (b) use neither ACPI nor an i8042: microvm without ACPI, and the guests' reset falls back
# to a triple fault there, on which QEMU with -no-reboot exits.
mvm=microvm,acpi=off
argv_of() { # FIGURE CONFIG [ARG] -> argv
  case $1.$2 in
    hello.ours) argv=("${ours_base[@]}" -m 256M -f "multiboot,$guests/hello.elf") ;;
    hello.pc) bench_qemu pc 256; argv+=(-kernel "$guests/hello.elf") ;;
    hello.microvm) bench_qemu "$mvm" 256; argv+=(-kernel "$guests/hello.pvh.elf") ;;
    hello.microvm-mb) bench_qemu "$mvm" 256; argv+=(-kernel "$guests/hello.elf") ;;
    exits.ours) argv=("${ours_base[@]}" -m 256M -f "multiboot,$guests/exits.elf,,n=$3") ;;
    exits.pc) bench_qemu pc 256; argv+=(-kernel "$guests/exits.elf" -append "n=$3") ;;
    exits.microvm) bench_qemu "$mvm" 256; argv+=(-kernel "$guests/exits.pvh.elf" -append "n=$3") ;;
    linux.ours) argv=("${ours_base[@]}" -m 512M -f "kexec,$kernel,,$kcmd") ;;
    linux.ours-vmlinux) argv=("${ours_base[@]}" -m 512M -f "kexec,$vmlinux,,$kcmd") ;;
    linux.pc) bench_qemu pc 512; argv+=(-kernel "$kernel" -append "$kcmd") ;;
    linux.microvm) bench_qemu microvm 512; argv+=(-kernel "$vmlinux" -append "$kcmd") ;;
    *) bench_die "no command for $1 on $2" ;;
  esac
}

n1=20000 n2=220000
total=$(( runs > exit_runs ? runs : exit_runs ))
[ "$quick" = --quick ] || total=$(( total > linux_runs ? total : linux_runs ))
for ((i = 1; i <= total; i++)); do
  if ((i <= runs)); then
    for cfg in ours pc microvm microvm-mb; do
      bench_once hello "$cfg" "$i" "XHYVE-TEST done" exit || continue
      bench_put hello_s "$cfg" "${f[1]}"; bench_put hello_cpu "$cfg" "${f[2]}"; bench_put hello_kib "$cfg" "${f[3]}"
    done
  fi
  if ((i <= exit_runs)); then
    for cfg in ours pc microvm; do
      bench_once exits "$cfg" "$i" "XHYVE-TEST done" exit $n1 || continue
      e1=${f[1]} c1=${f[2]}
      bench_once exits "$cfg" "$i" "XHYVE-TEST done" exit $n2 || continue
      e2=${f[1]} c2=${f[2]}
      # A slower long run than short one (host noise) gives no rate.
      awk -v a="$e1" -v b="$e2" 'BEGIN { exit !(b > a) }' || { echo "run $i exits $cfg: the long run was not slower; no figure" >&2; continue; }
      bench_put exits_rate "$cfg" "$(awk -v n=$((n2 - n1)) -v a="$e1" -v b="$e2" 'BEGIN { printf "%.0f", n / (b - a) }')"
      bench_put exits_cpu_us "$cfg" "$(awk -v n=$((n2 - n1)) -v a="$c1" -v b="$c2" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')"
    done
  fi
  if [ "$quick" != --quick ] && ((i <= linux_runs)); then
    for cfg in ours ours-vmlinux pc microvm; do
      bench_once linux "$cfg" "$i" "Linux version" kill || continue
      bench_put banner_s "$cfg" "${f[0]}"; bench_put banner_cpu "$cfg" "${f[2]}"; bench_put banner_peak_kib "$cfg" "${f[3]}"
      bench_put banner_pss_kib "$cfg" "${f[4]}"; bench_put banner_rss_kib "$cfg" "${f[5]}"
    done
  fi
done

echo
bench_host
echo "Runs (min / median / max): (a) $runs, (b) $exit_runs, (c) $( [ "$quick" = --quick ] && echo skipped || echo "$linux_runs"); interleaved."
echo
bench_header
bench_row "(a) hello guest, start -> exit (s)" hello_s %.3f 1 ours le 0.5 microvm
bench_row "(a) hello guest, CPU user+sys (s)" hello_cpu %.2f 1 ours -
bench_row "(a) hello guest, peak RSS (MiB)" hello_kib %.1f $bench_mib ours le 0.2 microvm
bench_row_one "(a) hello guest on microvm with the multiboot ELF (s)" hello_s %.3f 1 microvm-mb microvm
bench_row_one "(a) hello guest on microvm with the multiboot ELF, peak RSS (MiB)" hello_kib %.1f $bench_mib microvm-mb microvm
bench_row "(b) exits guest, \`out\` round trips per second" exits_rate %.0f 1 ours -
bench_row "(b) exits guest, CPU per round trip (µs)" exits_cpu_us %.2f 1 ours -
if [ "$quick" != --quick ]; then
  bench_row "(c) Debian kernel, start -> \"Linux version\" (s)" banner_s %.1f 1 ours le 1 microvm
  bench_row_one "(c) the same, ours booting the vmlinux (s)" banner_s %.1f 1 ours-vmlinux ours
  bench_row "(c) Debian kernel, CPU user+sys to the banner (s)" banner_cpu %.1f 1 ours -
  bench_row "(e) during (c): peak RSS (MiB)" banner_peak_kib %.1f $bench_mib ours le 1 pc microvm
  # The vmlinux row shows what host decompression of the bzImage adds to ours.
  bench_row_one "(e) the same, ours booting the vmlinux (MiB)" banner_peak_kib %.1f $bench_mib ours-vmlinux ours
  bench_row "(e) during (c): PSS at the banner (MiB)" banner_pss_kib %.1f $bench_mib ours le 1 pc microvm
  bench_row "(e) during (c): RSS at the banner (MiB)" banner_rss_kib %.1f $bench_mib ours le 1 pc microvm
fi
echo
echo "ours: \`xhyve -s 0,hostbridge -s 31,lpc -l com1,stdio\` (hello, exits: multiboot ELF, 256 MiB; (c): the bzImage, decompressed on the host, 512 MiB)."
echo "QEMU pc: the same ELF / the bzImage through SeaBIOS. QEMU microvm: \`-machine $mvm\` with hello.pvh.elf / exits.pvh.elf; (c) \`-machine microvm\` with the PVH vmlinux."
bench_failed
