#!/usr/bin/env bash
# Builds the engine host as it ships: a NativeAOT executable, out/engine/xhyve (one native file that needs no .NET
# runtime). Needs the .NET SDK and clang (scripts/setup-debian.sh installs it). Incremental: with nothing changed a
# second run only checks. scripts/package-module.sh puts this file in the module; the test build makes the same one
# (tests/EngineUnderTest.targets).
#   scripts/build-engine.sh [OUTPUT_DIR]      default: out/engine
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/engine}
command -v clang >/dev/null || { echo "build-engine: NativeAOT links with clang, which is not installed: run scripts/setup-debian.sh (or apt-get install clang)" >&2; exit 1; }
# The engine is a KVM x86 host, so it is built for linux-x64 whatever the build machine.
dotnet publish "$root/src/Xhyve.Engine" -c Release -r linux-x64 -o "$out" --nologo -v quiet
echo "engine: $out/xhyve"
