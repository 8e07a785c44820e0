#!/usr/bin/env bash
# Fuzzing with SharpFuzz and AFL++ (docs/fuzzing.md).
#   bench/fuzz.sh TARGET SECONDS     fuzz one target (or "all": each in turn) for SECONDS each
#   bench/fuzz.sh replay [TARGET]    no afl-fuzz needed: run the seed corpus, the regression inputs and every
#                                    saved crash through the harness in-process (all targets by default)
# Exits non-zero on a crash (or a hang that replays as one); the input is saved under
# .cache/fuzz/crashes/TARGET/ and its path printed, with the stack trace from an in-process replay.
# Without afl-fuzz on PATH, TARGET SECONDS falls back to the replay. The last line reads
# "Fuzz totals: passed=N failed=N" (one per target), which scripts/test.sh counts.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:${DOTNET_CLI_HOME:-${HOME:-}}/.dotnet/tools"
project="$root/tests/Xhyve.Fuzz/Xhyve.Fuzz.csproj"
corpus="$root/tests/Xhyve.Fuzz/corpus"
regressions="$root/tests/Xhyve.Vmm.Tests/Fuzz/Inputs"
out="${XHYVE_FUZZ_OUT:-$root/.cache/fuzz}"
crashes="$out/crashes"

usage() { echo "usage: bench/fuzz.sh TARGET|all SECONDS | bench/fuzz.sh replay [TARGET|all]" >&2; exit 2; }
[ $# -ge 1 ] || usage
mode=fuzz
if [ "$1" = replay ]; then mode=replay; what=${2:-all}; else what=$1; seconds=${2:-}; [[ "$seconds" =~ ^[0-9]+$ ]] || usage; fi

# Build once into .cache/fuzz/build (plain), then copy to .cache/fuzz/bin and instrument the copy, so an
# incremental build never meets an already instrumented assembly.
mkdir -p "$out"
echo "fuzz: building $(basename "$project")"
if ! dotnet build "$project" -c Release --nologo -v quiet -o "$out/build" >"$out/build.log" 2>&1; then
  cat "$out/build.log" >&2; echo "fuzz: build failed" >&2; exit 1
fi
harness="$out/build/Xhyve.Fuzz.dll"
targets=$(dotnet "$harness" list) || exit 1
if [ "$what" = all ]; then selected=$targets
elif grep -qx "$what" <<<"$targets"; then selected=$what
else echo "fuzz: unknown target '$what' (one of: $(echo $targets))" >&2; exit 2; fi

if [ $mode = fuzz ] && ! command -v afl-fuzz >/dev/null 2>&1; then
  echo "fuzz: afl-fuzz is not installed (scripts/setup-debian.sh installs afl++): replaying the corpus instead"
  mode=replay
fi
if [ $mode = fuzz ] && ! command -v sharpfuzz >/dev/null 2>&1; then
  echo "fuzz: the sharpfuzz tool is not installed (scripts/setup-debian.sh installs it): replaying the corpus instead"
  mode=replay
fi

passed=0 failed=0
replay() {   # replay TARGET PATH...: in-process, uninstrumented
  local t=$1; shift
  local existing=()
  for p in "$@"; do [ -e "$p" ] && existing+=("$p"); done
  dotnet "$harness" replay "$t" "${existing[@]}"
}

if [ $mode = replay ]; then
  for t in $selected; do
    if replay "$t" "$corpus/$t" "$regressions/$t" "$crashes/$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "Fuzz totals: passed=$passed failed=$failed"
  [ $failed -eq 0 ]; exit
fi

rm -rf "$out/bin" && cp -r "$out/build" "$out/bin"
for dll in Xhyve.Vmm.dll xhyve.dll; do
  if ! sharpfuzz "$out/bin/$dll" >"$out/instrument.log" 2>&1; then
    cat "$out/instrument.log" >&2; echo "fuzz: instrumenting $dll failed" >&2; exit 1
  fi
done

# A container: no CPU-frequency or core_pattern checks (nothing under /proc/sys is written), no CPU pinning
# (other work shares the cores), no UI; a .NET start-up is slow for a fork server.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
  AFL_SKIP_BIN_CHECK=1 AFL_FORKSRV_INIT_TMOUT=30000 AFL_BENCH_UNTIL_CRASH=1 AFL_QUIET=1 \
  AFL_NO_CRASH_README=1
stat() { sed -n "s/^$1 *: *//p" "$2" 2>/dev/null | head -n 1; }
for t in $selected; do
  # The seeds and the committed regression inputs first, in-process: a regression on one of them must fail
  # the run, not be skipped by afl-fuzz as a crashing seed.
  if ! replay "$t" "$corpus/$t" "$regressions/$t" >"$out/replay-$t.log" 2>&1; then
    cat "$out/replay-$t.log"
    echo "fuzz $t: a seed or regression input fails (log $out/replay-$t.log)"
    failed=$((failed + 1)); continue
  fi
  findings="$out/findings/$t"
  rm -rf "$findings" && mkdir -p "$out/findings"
  # -t: ms per input (generous: the cores are shared); -m none: the runtime reserves far more address space than AFL's default.
  timeout -k 10 $((seconds + 120)) afl-fuzz -i "$corpus/$t" -o "$findings" -V "$seconds" -t 5000 -m none \
    -- dotnet "$out/bin/Xhyve.Fuzz.dll" fuzz "$t" >"$out/afl-$t.log" 2>&1
  rc=$?
  s="$findings/default/fuzzer_stats"
  if [ ! -f "$s" ]; then
    tail -n 20 "$out/afl-$t.log" >&2
    echo "fuzz $t: afl-fuzz did not start (exit $rc; log $out/afl-$t.log)"
    failed=$((failed + 1)); continue
  fi
  execs=$(stat execs_done "$s"); rate=$(stat execs_per_sec "$s"); paths=$(stat corpus_count "$s"); took=$(stat run_time "$s")
  [ -n "$paths" ] || paths=$(stat paths_total "$s")
  bad=0
  for kind in crashes hangs; do
    for f in "$findings"/default/$kind/id*; do
      [ -f "$f" ] || continue
      mkdir -p "$crashes/$t"
      name=$(basename "$f" | tr -c 'A-Za-z0-9_.\n-' '_' | cut -c1-60)
      saved="$crashes/$t/$kind-$(sha1sum "$f" | cut -c1-12)-$name"
      cp "$f" "$saved"
      if replay "$t" "$saved"; then
        # A hang that replays in time was the shared machine being slow, not the input.
        if [ $kind = hangs ]; then rm -f "$saved"; echo "fuzz $t: a timeout under afl-fuzz replays in time (load), ignored"; continue; fi
        echo "fuzz $t: CRASH under afl-fuzz (the in-process replay passes: a crash of the process itself?): $saved"
      else
        echo "fuzz $t: $([ $kind = hangs ] && echo HANG || echo CRASH): $saved"
      fi
      bad=1
    done
  done
  if [ $rc -ne 0 ] && [ $bad -eq 0 ]; then
    # afl-fuzz gave up (the fork server died, a timeout it could not recover from): the last input is unknown.
    tail -n 20 "$out/afl-$t.log" >&2
    echo "fuzz $t: afl-fuzz stopped with exit $rc (log $out/afl-$t.log)"
    bad=1
  fi
  echo "fuzz $t: $execs execs in ${took:-$seconds} s (${rate}/s), $paths paths in the queue"
  if [ $bad -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "Fuzz totals: passed=$passed failed=$failed"
[ $failed -eq 0 ]
