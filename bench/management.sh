#!/usr/bin/env bash
# Management benchmark (issues 5 and 16): time to a running VM through the management library (what
# New-XhyveVM | Start-XhyveVM | Wait-XhyveVM -For Running does) against the engine started directly.
#   bench/management.sh [RUNS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
root=$bench_root
bench_engine   # the shipped (NativeAOT) engine, or $XHYVE_ENGINE
make -s -C "$root/tests/guests"
dotnet run --project "$root/bench/ManagementStartup" -c Release -- "$engine" "$root/tests/guests/build/hello.elf" "${1:-10}"
