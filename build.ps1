#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds and tests XhyvePS.
.DESCRIPTION
    Tasks:
      Build   - build the solution (Release) and the test guests
      Test    - run the xUnit suites (scripts/test.sh) and then Pester when it is installed
      Pester  - run only the Pester suite in tests/pester (imports the packaged module from out/Xhyve)
      Package - build the importable module folder out/Xhyve with its MAML help (scripts/package-module.sh)
      Docs    - bring docs/en-US/*.md (platyPS markdown) in step with the cmdlets: new cmdlets and
                parameters get sections (seeded from the code's comments), syntax and yaml are regenerated
      Bench   - run the benchmarks (bench/run.sh, bench/storage.sh, bench/management.sh, bench/linux.sh) and print the tables for docs/benchmarks.md
      Clean   - remove build output
.EXAMPLE
    ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Pester', 'Package', 'Docs', 'Bench', 'Clean')]
    [string[]] $Task = @('Build'),
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$root = $PSScriptRoot

function Invoke-Native([string] $File, [string[]] $Arguments) {
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

foreach ($t in $Task) {
    switch ($t) {
        'Build' {
            Invoke-Native dotnet @('build', (Join-Path $root 'XhyvePS.sln'), '-c', $Configuration, '--nologo')
            Invoke-Native make @('-s', '-C', (Join-Path $root 'tests/guests'))
        }
        'Test' {
            Invoke-Native bash @((Join-Path $root 'scripts/test.sh'))
        }
        'Pester' {
            $pesterDir = Join-Path $root 'tests/pester'
            if (-not (Test-Path $pesterDir)) { Write-Host 'No Pester tests yet (tests/pester).'; break }
            if (-not (Get-Module -ListAvailable Pester)) { throw 'Pester is not installed: Install-Module Pester -MinimumVersion 5.0' }
            Import-Module Pester -MinimumVersion 5.0
            Invoke-Native bash @((Join-Path $root 'scripts/package-module.sh'))
            $result = Invoke-Pester -Path $pesterDir -PassThru -Output Detailed
            if ($result.FailedCount -gt 0) { throw "$($result.FailedCount) Pester test(s) failed" }
        }
        'Package' {
            Invoke-Native bash @((Join-Path $root 'scripts/package-module.sh'))
        }
        'Docs' {
            Invoke-Native dotnet @('build', (Join-Path $root 'src/Xhyve.PowerShell'), '-c', $Configuration, '--nologo')
            $assembly = Join-Path $root "src/Xhyve.PowerShell/bin/$Configuration/net10.0/Xhyve.PowerShell.dll"
            Invoke-Native dotnet @('run', '--project', (Join-Path $root 'src/Xhyve.HelpBuilder'), '-c', $Configuration, '--', 'markdown', $assembly, (Join-Path $root 'docs/en-US'))
        }
        'Bench' {
            Invoke-Native bash @((Join-Path $root 'bench/run.sh'))
            Invoke-Native bash @((Join-Path $root 'bench/storage.sh'))
            Invoke-Native bash @((Join-Path $root 'bench/management.sh'))
            Invoke-Native bash @((Join-Path $root 'bench/linux.sh'))
        }
        'Clean' {
            Invoke-Native dotnet @('clean', (Join-Path $root 'XhyvePS.sln'), '--nologo')
            Invoke-Native make @('-s', '-C', (Join-Path $root 'tests/guests'), 'clean')
        }
    }
}
