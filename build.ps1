#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds and tests XhyvePS.
.DESCRIPTION
    Tasks:
      Build   - build the solution (Release) and the test guests
      Test    - run every test: the xUnit suites and the Pester suite (scripts/test.sh)
      Pester  - run only the Pester suite in tests/pester (imports the packaged module from out/Xhyve;
                Pester from .cache/pester/modules, as scripts/setup-debian.sh installs it); -PesterTag
                runs only the tests with those tags (e.g. -PesterTag Network)
      Package - build the importable module folder out/Xhyve with its MAML help (scripts/package-module.sh)
      Publish - Package, then make out/repo/Xhyve.<ModuleVersion>.nupkg with Publish-PSResource
                (scripts/publish-module.ps1): a local repository that Install-PSResource installs from
                (Register-PSResourceRepository -Name XhyveLocal -Uri ./out/repo -Trusted;
                 Install-PSResource Xhyve -Repository XhyveLocal)
      Docs    - bring docs/en-US/*.md (platyPS markdown) in step with the cmdlets: new cmdlets and
                parameters get sections (seeded from the code's comments), syntax and yaml are regenerated
      Bench   - run every benchmark of issue 16 in one go (bench/run.sh, bench/hello-phases.sh, bench/idle.sh,
                bench/linux.sh, bench/storage.sh, bench/management.sh, bench/module.sh) against QEMU pc and microvm, then print all their tables
                (also written to out/bench/tables.md) and the total time. The engine is published once (bench/lib.sh;
                XHYVE_ENGINE measures another build); run counts come from the environment (RUNS, EXIT_RUNS,
                LINUX_RUNS, IDLE_RUNS, docs/benchmarks.md). A script that fails does not stop the others; the task
                fails at the end, naming it.
      Clean   - remove build output
.EXAMPLE
    ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Pester', 'Package', 'Publish', 'Docs', 'Bench', 'Clean')]
    [string[]] $Task = @('Build'),
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # Pester only: run just the tests with these tags (e.g. Network, or Packaging,Remoting); a tag no test has is an error.
    [string[]] $PesterTag = @()
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
            # scripts/setup-debian.sh lays Pester out here (from NuGet); a Pester installed otherwise works too.
            $modules = Join-Path $root '.cache/pester/modules'
            if ((Test-Path $modules) -and ($env:PSModulePath -split [IO.Path]::PathSeparator) -notcontains $modules) {
                $env:PSModulePath = $modules + [IO.Path]::PathSeparator + $env:PSModulePath
            }
            if (-not (Get-Module -ListAvailable Pester | Where-Object Version -ge '5.0')) {
                throw 'Pester 5 is not installed: run scripts/setup-debian.sh (or Install-Module Pester -MinimumVersion 5.0)'
            }
            Import-Module Pester -MinimumVersion 5.0
            # pwsh -File passes "-PesterTag A,B" as the one string 'A,B'.
            $tags = @($PesterTag | ForEach-Object { $_ -split ',' } | ForEach-Object Trim | Where-Object { $_ })
            if ($tags) {
                # A tag no test has (a typo) would run nothing for it and pass: a discovery (no build needed) finds
                # the tags there are, on tests and on the blocks around them, which Filter.Tag matches with -like.
                $probe = New-PesterConfiguration
                $probe.Run.Path = $pesterDir
                $probe.Run.SkipRun = $true
                $probe.Run.PassThru = $true
                $probe.Output.Verbosity = 'None'
                $discovered = Invoke-Pester -Configuration $probe
                $known = @(foreach ($test in $discovered.Tests) { $test.Tag; for ($b = $test.Block; $b; $b = $b.Parent) { $b.Tag } }) |
                    Where-Object { $_ } | Sort-Object -Unique
                $unknown = @($tags | Where-Object { $tag = $_; -not ($known | Where-Object { $_ -like $tag }) })
                if ($unknown) { throw "Pester: no test has the tags $($unknown -join ', ') (-PesterTag; the tags there are: $($known -join ', '))" }
            }
            Invoke-Native make @('-s', '-C', (Join-Path $root 'tests/guests'))   # the guests the VM tests boot
            Invoke-Native bash @((Join-Path $root 'scripts/package-module.sh'))
            $config = New-PesterConfiguration
            $config.Run.Path = $pesterDir
            $config.Run.PassThru = $true
            if ($tags) { $config.Filter.Tag = $tags }
            $config.Output.Verbosity = 'Detailed'   # prints every skipped test with its reason
            if ([Console]::IsOutputRedirected) { $config.Output.RenderMode = 'Plaintext' }   # no colour codes in CI logs
            $result = Invoke-Pester -Configuration $config
            # A file that failed outside its tests (does not parse, an AfterAll threw) counts as one failure;
            # a failed BeforeAll already fails the tests under it.
            $failed = $result.FailedCount + @($result.Containers | Where-Object { $_.Result -eq 'Failed' -and $_.FailedCount -eq 0 }).Count
            # scripts/test.sh adds these to the xUnit counts of its summary line.
            Write-Host "Pester totals: passed=$($result.PassedCount) failed=$failed skipped=$($result.SkippedCount) notrun=$($result.NotRunCount)"
            if ($failed -gt 0 -or $result.Result -ne 'Passed') { throw "Pester: $failed failure(s) (result: $($result.Result))" }
        }
        'Package' {
            Invoke-Native bash @((Join-Path $root 'scripts/package-module.sh'))
        }
        'Publish' {
            Invoke-Native bash @((Join-Path $root 'scripts/package-module.sh'))
            & (Join-Path $root 'scripts/publish-module.ps1') -ModulePath (Join-Path $root 'out/Xhyve') -DestinationPath (Join-Path $root 'out/repo')
        }
        'Docs' {
            Invoke-Native dotnet @('build', (Join-Path $root 'src/Xhyve.PowerShell'), '-c', $Configuration, '--nologo')
            $assembly = Join-Path $root "src/Xhyve.PowerShell/bin/$Configuration/net10.0/Xhyve.PowerShell.dll"
            Invoke-Native dotnet @('run', '--project', (Join-Path $root 'src/Xhyve.HelpBuilder'), '-c', $Configuration, '--', 'markdown', $assembly, (Join-Path $root 'docs/en-US'))
        }
        'Bench' {
            $clock = [Diagnostics.Stopwatch]::StartNew()
            # One engine for every script of bench/lib.sh: built here once, unless XHYVE_ENGINE names one. The variable is
            # put back afterwards: ./build.ps1 runs in the caller's session, where a later Bench must build afresh.
            $callersEngine = $env:XHYVE_ENGINE
            try {
                $env:XHYVE_ENGINE = (& bash -c '. "$1/bench/lib.sh" && bench_engine >&2 && echo "$engine"' bench $root | Select-Object -Last 1)
                if ($LASTEXITCODE -ne 0 -or -not $env:XHYVE_ENGINE) { throw 'Bench: publishing the engine (bench/lib.sh) failed' }
                $tables = [Collections.Generic.List[string]]::new()
                $failed = @()
                # Progress goes to stderr (shown as it comes); each script's stdout is its tables.
                foreach ($script in 'run.sh', 'hello-phases.sh', 'idle.sh', 'linux.sh', 'storage.sh', 'management.sh', 'module.sh') {
                    $started = $clock.Elapsed
                    Write-Host "== bench/$script"
                    # management.sh and module.sh take their run count as an argument: RUNS, when set, is passed on.
                    $arguments = @((Join-Path $root "bench/$script"))
                    if ($script -in 'management.sh', 'module.sh' -and $env:RUNS) { $arguments += $env:RUNS }
                    $out = & bash @arguments
                    if ($LASTEXITCODE -ne 0) { $failed += "bench/$script (exit $LASTEXITCODE)" }
                    $tables.Add("### bench/$script ($([int]($clock.Elapsed - $started).TotalSeconds) s)")
                    $tables.AddRange([string[]] @($out))
                    $tables.Add('')
                }
            } finally { $env:XHYVE_ENGINE = $callersEngine }
            $tables.Add("Bench task: $([math]::Round($clock.Elapsed.TotalMinutes, 1)) minutes in all$(if ($failed) { '; failed: ' + ($failed -join ', ') }).")
            $dir = Join-Path $root 'out/bench'
            New-Item -ItemType Directory -Force $dir | Out-Null
            $tables | Set-Content (Join-Path $dir 'tables.md')
            $tables | ForEach-Object { Write-Output $_ }
            if ($failed) { throw "Bench: $($failed -join ', ') failed (their output above)" }
        }
        'Clean' {
            Invoke-Native dotnet @('clean', (Join-Path $root 'XhyvePS.sln'), '--nologo')
            Invoke-Native make @('-s', '-C', (Join-Path $root 'tests/guests'), 'clean')
        }
    }
}
