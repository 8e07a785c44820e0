#!/usr/bin/env bash
# Management benchmark (issues 5 and 16): time to a running VM through the management library (what
# New-XhyveVM | Start-XhyveVM | Wait-XhyveVM -For Running does) against the engine started directly.
#   bench/management.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dotnet publish "$root/src/Xhyve.Engine" -c Release -o "$root/out/xhyve" --nologo -v quiet >/dev/null
make -s -C "$root/tests/guests"
dotnet run --project "$root/bench/ManagementStartup" -c Release -- "$root/out/xhyve/xhyve" "$root/tests/guests/build/hello.elf" "${1:-10}"
