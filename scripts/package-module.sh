#!/usr/bin/env bash
# Builds the importable module folder out/Xhyve: the cmdlet assembly and the libraries under it, the engine
# host (xhyve, NativeAOT: scripts/build-engine.sh) beside them, and the manifest, format and types files from module/.
#   scripts/package-module.sh            then: Import-Module ./out/Xhyve/Xhyve.psd1
# scripts/publish-module.ps1 (build.ps1 -Task Publish) makes the PSResourceGet package from this folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/out/Xhyve"
rm -rf "$out"
dotnet publish "$root/src/Xhyve.PowerShell" -c Release -o "$out" --nologo -v quiet
# The engine host beside the cmdlets, where they look for it: the NativeAOT executable, one native file for linux-x64
# (the package says so). Built apart and copied, so the module's Xhyve.Vmm.dll stays the managed one the cmdlets load.
"$root/scripts/build-engine.sh" >/dev/null
cp "$root/out/engine/xhyve" "$out/xhyve"
for managed in xhyve.dll xhyve.runtimeconfig.json xhyve.deps.json; do
  if [ -e "$out/$managed" ]; then
    echo "package-module: $out/$managed: the engine host is the NativeAOT executable alone" >&2
    exit 1
  fi
done
cp "$root"/module/Xhyve.psd1 "$root"/module/*.ps1xml "$out/"
# Get-Help reads MAML: built from docs/en-US (platyPS markdown), which the help tests keep in step with the cmdlets.
# Beside it, the about topics (Get-Help about_Xhyve) as the plain text Get-Help finds in the culture folder.
dotnet run --project "$root/src/Xhyve.HelpBuilder" -c Release -- maml "$out/Xhyve.PowerShell.dll" "$root/docs/en-US" "$out/en-US/Xhyve.PowerShell.dll-Help.xml"
if [ ! -s "$out/en-US/about_Xhyve.help.txt" ]; then
  echo "package-module: $out/en-US/about_Xhyve.help.txt was not written (docs/en-US/about_Xhyve.help.md)" >&2
  exit 1
fi
if [ -e "$out/System.Management.Automation.dll" ]; then
  echo "package-module: System.Management.Automation.dll must come from pwsh, not the module" >&2
  exit 1
fi
echo "module: $out"
