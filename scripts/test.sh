#!/usr/bin/env bash
# Runs every test: xUnit (libraries, the engine with the test guests on KVM, the Debian kernel smoke
# test) and, where pwsh exists, the Pester suite. Skipped tests print their reason.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log=$(mktemp)
dotnet test "$root/XhyvePS.sln" -c Release --nologo --logger "console;verbosity=detailed" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if command -v pwsh >/dev/null 2>&1 && [ -d "$root/tests/pester" ]; then
  pwsh -NoProfile -File "$root/build.ps1" -Task Pester || status=1
else
  echo "Pester tests were NOT run: pwsh is not installed on this machine."
fi

# One summary line in the plain form CI reads: "N passed, N failed, N skipped", summed over the
# per-project blocks dotnet test prints ("Total tests: N", "Passed: N", "Failed: N", "Skipped: N").
awk '/^Total tests:/ { block = 1; next }
     block && $1 == "Passed:" { p += $2; next }
     block && $1 == "Failed:" { f += $2; next }
     block && $1 == "Skipped:" { s += $2; next }
     block && $1 == "Total" { block = 0 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit $status
