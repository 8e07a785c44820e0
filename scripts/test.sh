#!/usr/bin/env bash
# Runs every test: xUnit (libraries, the engine with the test guests on KVM), then the Linux suite
# (Linux's drivers against our devices, docs/linux-tests.md), then the Pester suite in pwsh (installed
# by scripts/setup-debian.sh), then each fuzz target for a short fixed time (docs/fuzzing.md).
# Skipped tests print their reason; the last line sums all of them.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# setup-debian.sh installs pwsh as a .NET global tool; its apphost finds the runtime through DOTNET_ROOT
# when dotnet is not in a default location.
export PATH="$PATH:${DOTNET_CLI_HOME:-${HOME:-}}/.dotnet/tools"
if [ -z "${DOTNET_ROOT:-}" ] && command -v dotnet >/dev/null 2>&1; then
  export DOTNET_ROOT=$(dirname "$(readlink -f "$(command -v dotnet)")")
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The test build publishes the NativeAOT engine into out/engine (again only when a source changed), and every test
# that starts an engine runs that one (tests/EngineUnderTest.targets); the Pester suite packages the same file.
dotnet test "$root/XhyvePS.sln" -c Release --nologo --logger "console;verbosity=detailed" --filter "Category!=Linux" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The Linux suite (real kernels, 30-60 s a boot) runs on its own afterwards, so its boots never compete
# with the rest of the suite for the host's cores.
dotnet test "$root/tests/Xhyve.Engine.Tests" -c Release --nologo --no-build --logger "console;verbosity=detailed" --filter "Category=Linux" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if command -v pwsh >/dev/null 2>&1; then
  pwsh -NoProfile -NonInteractive -File "$root/build.ps1" -Task Pester 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  grep -q '^Pester totals:' "$log" || { echo "test.sh: the Pester suite did not report its totals" >&2; status=1; }
else
  echo "test.sh: pwsh is not installed, so the Pester suite cannot run: run scripts/setup-debian.sh" >&2
  status=1
fi

# Fuzzing (docs/fuzzing.md): every target under afl-fuzz for a fixed 20 s (with the build, about 4 minutes).
# A crash fails the run; bench/fuzz.sh prints the saved input's path and its stack trace. Without afl-fuzz it
# replays the corpus and the saved crashes instead. It ends with "Fuzz totals: passed=N failed=N" (targets).
"$root/bench/fuzz.sh" all "${XHYVE_FUZZ_SECONDS:-20}" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
grep -q '^Fuzz totals:' "$log" || { echo "test.sh: the fuzz step did not report its totals" >&2; status=1; }

# CI keeps only the end of this output, so the failures are repeated here, just above the summary: each failed
# xUnit test with the first lines of its message, and each failed Pester test ("[-] ...").
if grep -qE '^\s+Failed [A-Za-z]|^\s*\[-\] ' "$log"; then
  echo "Failures (repeated from above):"
  grep -E -A8 '^\s+Failed [A-Za-z]' "$log" | grep -vE '^\s+at |^--$' | head -n 60
  grep -E -A4 '^\s*\[-\] ' "$log" | head -n 40
fi

# One summary line in the plain form CI reads: "N passed, N failed, N skipped", summed over the
# per-project blocks dotnet test prints ("Total tests: N", "Passed: N", "Failed: N", "Skipped: N")
# and the lines build.ps1 prints after Pester ("Pester totals: passed=N failed=N skipped=N notrun=N") and
# bench/fuzz.sh after the fuzz targets ("Fuzz totals: passed=N failed=N", one per target).
awk '/^Total tests:/ { block = 1; next }
     block && $1 == "Passed:" { p += $2; next }
     block && $1 == "Failed:" { f += $2; next }
     block && $1 == "Skipped:" { s += $2; next }
     block && $1 == "Total" { block = 0 }
     /^(Pester|Fuzz) totals:/ {
       for (i = 3; i <= NF; i++) {
         split($i, kv, "=")
         if (kv[1] == "passed") p += kv[2]; else if (kv[1] == "failed") f += kv[2]; else if (kv[1] == "skipped") s += kv[2]
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit $status
