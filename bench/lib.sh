# Shared by the issue-16 benchmarks (bench/run.sh, bench/linux.sh, bench/idle.sh); source it, do not run it.
# - where the engine comes from (one place, so a NativeAOT engine is measured by every script the same way),
# - the QEMU command lines for `pc` and `microvm`,
# - one run of a VM process under GNU time (wall, CPU user+sys, peak RSS, PSS/RSS sampled at a console marker),
# - min / median / max over the runs of a configuration, and "target: met/missed" from the medians.
# Results are kept as lines "FIGURE CONFIG VALUE" in the file $BENCH_RESULTS, so any figure's statistics come
# from the same code.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_die() { echo "${0##*/}: $*" >&2; exit 1; }

# The engine: $XHYVE_ENGINE if set, else the engine as it ships, the NativeAOT executable scripts/build-engine.sh
# makes (out/engine/xhyve; incremental). The path is exported, so the scripts a Bench run starts after the first
# build use the same file.
bench_engine() {
  if [ -z "${XHYVE_ENGINE:-}" ]; then
    echo "building the engine (scripts/build-engine.sh; set XHYVE_ENGINE to measure another build)" >&2
    bash "$bench_root/scripts/build-engine.sh" >/dev/null || bench_die "scripts/build-engine.sh failed"
    export XHYVE_ENGINE=$bench_root/out/engine/xhyve
  fi
  [ -x "$XHYVE_ENGINE" ] || bench_die "engine '$XHYVE_ENGINE' (XHYVE_ENGINE) is missing or not executable"
  engine=$XHYVE_ENGINE
}

bench_guests() {
  make -s -C "$bench_root/tests/guests" || bench_die "building the test guests (make -C tests/guests) failed"
  guests=$bench_root/tests/guests/build
}

bench_require() {
  command -v qemu-system-x86_64 >/dev/null || bench_die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
  [ -x /usr/bin/time ] || bench_die "/usr/bin/time (GNU time) is missing: apt-get install time"
  [ -w /dev/kvm ] || bench_die "/dev/kvm is missing or not writable"
}

# A positive integer from the environment or a default, with an error naming the variable.
bench_count() { # NAME DEFAULT
  local v=${!1:-$2}
  [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "$1 wants a positive integer, got '$v'"
  echo "$v"
}

bench_host() {
  echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg); $(qemu-system-x86_64 --version | head -1); engine: $engine"
}

# The host's TSC rate in kHz. microvm has no HPET and no ACPI PM timer, and PIT calibration fails when the guest's
# ring 0 is emulated (kvm_pvm), so a kernel without kvm-clock is told the rate (tsc_early_khz=); KVM does not
# scale the TSC here, so the guest's rate is the host's.
bench_tsc_khz() {
  local mhz
  mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p; s/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
  [ -n "$mhz" ] || mhz=$(awk -F': ' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
  awk -v m="$mhz" 'BEGIN { printf "%d", m * 1000 }'
}

# QEMU's argv for MACHINE into the array `argv` (the rest is appended by the caller). `-cpu host` alone aborts
# QEMU 7.2 on kvm_pvm ("failed to set MSR 0x10a"): the host refuses the ARCH_CAPABILITIES value QEMU derives.
# -no-user-config and -nodefaults: no config files, no default devices (microvm's own isa-serial stays).
bench_qemu() { # MACHINE MEMORY_MIB
  argv=(qemu-system-x86_64 -enable-kvm -machine "$1" -cpu host,-arch-capabilities -m "$2" -no-user-config -nodefaults
    -no-reboot -display none -monitor none -serial stdio)
}

# One VM process: prints "marker_s exit_s cpu_s peak_rss_kib pss_kib rss_kib status".
#   bench_run_vm LOG MARKER BOUND_S STOP argv...
# The wall clock starts before the process and is read when a console line contains MARKER (marker_s, "-" if it
# never came) and when the process ends (exit_s). PSS and RSS of the VM process (/proc/PID/smaps_rollup) are
# sampled when the marker arrives. STOP=kill ends the VM with SIGKILL at the marker (a guest that runs on, as the
# Debian kernel does); STOP=exit waits for it to end by itself. GNU time sits outside `timeout`, so its CPU time
# and peak RSS include the VM process (wait4 counts reaped grandchildren) even when the bound kills the run.
# status: ok, no-marker, timeout or exit-N (a non-zero status is expected from some guests: the caller decides).
bench_run_vm() {
  local log=$1 marker=$2 bound=$3 stop=$4 tf pidf t0 tm=- te= line rc= fd pid pss=0 rss=0
  shift 4
  tf=$log.time pidf=$log.pid
  : > "$log"; rm -f "$pidf"
  t0=$EPOCHREALTIME
  # sh writes its pid and execs the VM: that pid is the VM process. The status line starts on a line of its own
  # in case the guest's last output had no newline.
  # (r=0 ... || r=$?: with errexit inherited, as under inherit_errexit, a failing VM would end the subshell before it
  # reports its status.)
  exec {fd}< <(r=0; /usr/bin/time -f "%M %U %S" -o "$tf" timeout -k 5 "$bound" sh -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$@" \
    </dev/null 2>&1 || r=$?; printf '\nXHYVE-BENCH-RC %s\n' "$r")
  while IFS= read -r line <&$fd; do
    case $line in
      "XHYVE-BENCH-RC "*) rc=${line#XHYVE-BENCH-RC }; te=$EPOCHREALTIME; continue ;;
    esac
    printf '%s\n' "$line" >> "$log"
    if [ "$tm" = - ] && [[ $line == *"$marker"* ]]; then
      tm=$EPOCHREALTIME
      pid=$(cat "$pidf" 2>/dev/null || true)
      if [ -n "$pid" ] && [ -r "/proc/$pid/smaps_rollup" ]; then
        read -r rss pss < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r + 0, p + 0 }' "/proc/$pid/smaps_rollup" 2>/dev/null)
      fi
      [ "$stop" = kill ] && [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    fi
  done
  exec {fd}<&-
  te=${te:-$EPOCHREALTIME}
  local status=ok
  if [ "$tm" = - ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout; else status=no-marker; fi
  elif [ "$stop" = exit ] && [ "$rc" != 0 ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout; else status=exit-$rc; fi
  fi
  local prss user sys
  read -r prss user sys < <(grep -E '^[0-9]+ [0-9.]+ [0-9.]+$' "$tf" || echo "0 0 0")
  awk -v t0="$t0" -v tm="$tm" -v te="$te" -v m="$prss" -v u="$user" -v s="$sys" -v p="$pss" -v r="$rss" -v st="$status" \
    'BEGIN { printf "%s %.3f %.2f %d %d %d %s\n", (tm == "-") ? "-" : sprintf("%.3f", tm - t0), te - t0, u + s, m, p, r, st }'
}

# A work folder (removed on exit) holding the run logs and the results file.
bench_workdir() {
  bench_work=$(mktemp -d)
  trap 'rm -rf "$bench_work"' EXIT
  BENCH_RESULTS=$bench_work/results
  : > "$BENCH_RESULTS"
  bench_failures=()
}

# One VM run of FIGURE on CONFIG, with the argv the calling script's `argv_of FIGURE CONFIG [ARG]` gives: its
# figures in the array `f` (marker_s exit_s cpu_s peak_kib pss_kib rss_kib status); false when the run failed (its
# status is not one of $bench_accept, default "ok"): the run is then named by bench_failed and left out.
bench_once() { # FIGURE CONFIG RUN MARKER STOP [ARG]
  local fig=$1 cfg=$2 i=$3 marker=$4 stop=$5 r log
  log=$bench_work/$fig.$cfg.$i.${6:-0}.log
  argv_of "$fig" "$cfg" "${6:-}"
  r=$(bench_run_vm "$log" "$marker" "$bound" "$stop" "${argv[@]}")
  echo "run $i $fig $cfg${6:+ ($6)}: marker_s exit_s cpu_s peak_kib pss_kib rss_kib status = $r" >&2
  read -r -a f <<< "$r"
  [[ " ${bench_accept:-ok} " == *" ${f[6]} "* ]] && return 0
  bench_failures+=("$fig/$cfg run $i: ${f[6]}")
  echo "--- last console lines:" >&2; tail -n 15 "$log" >&2
  return 1
}

# Exits non-zero naming the runs that failed, if any did.
bench_failed() {
  ((${#bench_failures[@]} == 0)) || bench_die "runs that failed (left out of the figures): ${bench_failures[*]}"
}

# Records one value: FIGURE CONFIG VALUE.
bench_put() { echo "$1 $2 $3" >> "$BENCH_RESULTS"; }

# "min / median / max" of FIGURE for CONFIG, each value times SCALE, printed with FORMAT; "-" when no run gave one.
bench_stat() { # FIGURE CONFIG FORMAT [SCALE]
  awk -v f="$1" -v c="$2" -v fmt="$3" -v k="${4:-1}" '$1 == f && $2 == c { v[++n] = $3 * k }
    END { if (n == 0) { print "-"; exit }
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
          printf fmt " / " fmt " / " fmt "\n", v[1], m, v[n] }' "$BENCH_RESULTS"
}

# The median of FIGURE for CONFIG (empty when no run gave one).
bench_median() { # FIGURE CONFIG
  awk -v f="$1" -v c="$2" '$1 == f && $2 == c { v[++n] = $3 }
    END { if (n == 0) exit
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }' "$BENCH_RESULTS"
}

# ours / theirs of the medians, e.g. "0.42".
bench_ratio() { # FIGURE OURS THEIRS
  local a b
  a=$(bench_median "$1" "$2"); b=$(bench_median "$1" "$3")
  awk -v a="$a" -v b="$b" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# "met" / "missed" / "no figure": the median of FIGURE for OURS against FACTOR x the median for each of THEIRS.
# DIRECTION le: ours must be at most that (times, memory); ge: at least (rates).
bench_target() { # FIGURE OURS DIRECTION FACTOR THEIRS...
  local fig=$1 ours=$2 dir=$3 factor=$4 a b verdict=met
  shift 4
  a=$(bench_median "$fig" "$ours")
  [ -n "$a" ] || { echo "no figure"; return; }
  for t in "$@"; do
    b=$(bench_median "$fig" "$t")
    [ -n "$b" ] || { echo "no figure"; return; }
    if ! awk -v a="$a" -v b="$b" -v f="$factor" -v d="$dir" 'BEGIN { exit !((d == "le") ? (a <= f * b) : (a >= f * b)) }'; then
      verdict="**missed**"
    fi
  done
  echo "$verdict"
}

# The tables: one row per figure, the columns ours | QEMU pc | QEMU microvm (configurations "ours", "pc", "microvm").
bench_mib=0.0009765625   # KiB -> MiB
bench_header() {
  echo "| figure | ours | QEMU pc | QEMU microvm | ours / pc | ours / microvm | target (medians) |"
  echo "|---|---|---|---|---|---|---|"
}
# A table row: the three configurations' min / median / max, ours / each QEMU, and the target.
bench_row() { # LABEL FIGURE FORMAT SCALE OURS TARGET...   (TARGET: "-" or DIRECTION FACTOR THEIRS...)
  local label=$1 fig=$2 fmt=$3 k=$4 ours=$5 target=-
  shift 5
  [ "$1" = - ] || target=$(bench_target "$fig" "$ours" "$@")
  echo "| $label | $(bench_stat "$fig" "$ours" "$fmt" "$k") | $(bench_stat "$fig" pc "$fmt" "$k") | $(bench_stat "$fig" microvm "$fmt" "$k") | $(bench_ratio "$fig" "$ours" pc) | $(bench_ratio "$fig" "$ours" microvm) | $target |"
}
# A row with only one configuration's figures, in the column of the QEMU machine it belongs to (or ours).
bench_row_one() { # LABEL FIGURE FORMAT SCALE CONFIG COLUMN(ours|microvm)
  local s
  s=$(bench_stat "$2" "$5" "$3" "$4")
  if [ "$6" = ours ]; then
    echo "| $1 | $s | - | - | $(bench_ratio "$2" "$5" pc) | $(bench_ratio "$2" "$5" microvm) | - |"
  else
    echo "| $1 | - | - | $s | - | $(bench_ratio "$2" ours "$5") | - |"
  fi
}
