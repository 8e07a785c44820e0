#!/usr/bin/env bash
# Module benchmark (issues 13 and 16): what the PowerShell module costs. Import-Module in a fresh pwsh (against a bare
# pwsh start, and timed inside); a fresh pwsh from Import-Module to a Running VM; and in one session one VM and then
# 10 VMs through New-XhyveVM | Start-XhyveVM | Wait-XhyveVM -For Running against the engine started directly (the same
# arguments, its socket awaited, one blocking wait-running). Wall and CPU time, median (min-max) of RUNS rounds
# (default 10) after one warm-up round, the ways interleaved, all in one run; prints the tables for docs/benchmarks.md.
#   bench/module.sh [RUNS]
# Needs pwsh (scripts/setup-debian.sh) and /dev/kvm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:${DOTNET_CLI_HOME:-${HOME:-}}/.dotnet/tools"
if [ -z "${DOTNET_ROOT:-}" ] && command -v dotnet >/dev/null 2>&1; then
  export DOTNET_ROOT=$(dirname "$(readlink -f "$(command -v dotnet)")")
fi
# The module as users import it (out/Xhyve: cmdlets, libraries, the ReadyToRun engine beside them) and the idle guest.
bash "$root/scripts/package-module.sh" >/dev/null
make -s -C "$root/tests/guests"
pwsh -NoProfile -NonInteractive -File "$root/bench/module.ps1" -Module "$root/out/Xhyve/Xhyve.psd1" \
  -Guest "$root/tests/guests/build/hello.elf" -Runs "${1:-10}"
