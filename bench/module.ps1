#Requires -Version 7.6
<#
.SYNOPSIS
    The module benchmark (issue 13); bench/module.sh builds what it needs and runs it.
.DESCRIPTION
    1. Import-Module in a fresh process: child pwsh processes, interleaved, timed from here:
       `pwsh -NoProfile -NonInteractive -Command '$null'` (a bare start) and the same with `Import-Module MODULE`;
       the difference is what importing adds to a start. Further children time inside themselves (Stopwatch):
       Import-Module and the first Get-XhyveVM (empty store); a one-function script module's import followed by the
       module's (the first import of any module pays for PowerShell's own module code, so the second figure is the
       module's own cost); and after that warm-up, Xhyve.PowerShell.dll alone (without the format and types files).
    2. Time to a running VM, two ways per round, interleaved, in this process (module imported, one warm-up round):
       - engine alone: the engine started as a child process with the arguments the module gave it in the warm-up
         round (read from /proc/PID/cmdline, its VM folder swapped for a folder of its own), its control socket
         polled until `state` says Running;
       - the cmdlets: New-XhyveVM | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running; and the same three one
         statement at a time, each timed, to show where the time goes.
    The guest is tests/guests hello.elf with spin=1 (prints "ready" and idles), 64 MiB, 1 vCPU, ACPI.
#>
param(
    [Parameter(Mandatory)] [string] $Module,
    [Parameter(Mandatory)] [string] $Guest,
    [ValidateRange(1, 1000)] [int] $Runs = 10
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Median([double[]] $values) {
    $sorted = @($values | Sort-Object)
    $n = $sorted.Count
    if ($n % 2) { $sorted[($n - 1) / 2] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
}

# The pwsh users start (a .NET global tool runs as `dotnet pwsh.dll`, so this process's own path would not do).
$loadStart = ((Get-Content /proc/loadavg) -split ' ')[0]
$pwsh = (Get-Command pwsh -CommandType Application -TotalCount 1).Source
# A short folder: the engine's control socket path must fit in a Unix socket address (107 bytes).
$work = (New-Item -ItemType Directory -Path (Join-Path ([IO.Path]::GetTempPath()) "xhyve-mbench-$PID")).FullName
$env:XHYVE_HOME = Join-Path $work 'home'
try {
    # ---- 1. Import-Module in a fresh pwsh ----
    # Any first Import-Module in a process pays for PowerShell's module code (its JIT): a one-function script module
    # imported first takes that cost, so what follows it is the Xhyve module's own.
    $empty = Join-Path $work 'empty.psm1'
    Set-Content -LiteralPath $empty -Value 'function Get-Nothing {}'
    function Quote([string] $s) { "'" + ($s -replace "'", "''") + "'" }
    $dll = Join-Path (Split-Path $Module) 'Xhyve.PowerShell.dll'
    $clockIn = '$s = [Diagnostics.Stopwatch]::StartNew(); '
    $lap = '$s.Elapsed.TotalMilliseconds; $s.Restart(); '
    $cold = $clockIn + "Import-Module $(Quote $Module); " + $lap + '$null = Get-XhyveVM; ' + $lap
    $warm = $clockIn + "Import-Module $(Quote $empty); " + $lap + "Import-Module $(Quote $Module); " + $lap
    $warmDll = "Import-Module $(Quote $empty); " + $clockIn + "Import-Module $(Quote $dll); " + $lap
    $figures = [ordered]@{}
    foreach ($k in 'bare', 'imported', 'cold', 'first', 'empty', 'warm', 'dll') { $figures[$k] = [Collections.Generic.List[double]]::new() }
    function Child([string] $command) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $out = & $pwsh -NoProfile -NonInteractive -Command $command
        if ($LASTEXITCODE -ne 0) { throw "pwsh -Command $command exited with $LASTEXITCODE" }
        [pscustomobject]@{ Ms = $clock.Elapsed.TotalMilliseconds; Out = @($out | ForEach-Object { [double]$_ }) }
    }
    for ($i = 0; $i -le $Runs; $i++) {   # round 0 warms the page cache and is dropped
        $b = Child '$null'
        $m = Child "Import-Module $(Quote $Module)"
        $c = (Child $cold).Out
        $w = (Child $warm).Out
        $d = (Child $warmDll).Out
        if ($i -eq 0) { continue }
        $figures.bare.Add($b.Ms); $figures.imported.Add($m.Ms); $figures.cold.Add($c[0]); $figures.first.Add($c[1])
        $figures.empty.Add($w[0]); $figures.warm.Add($w[1]); $figures.dll.Add($d[0])
    }

    # ---- 2. Time to Running ----
    Import-Module $Module
    $engine = Join-Path (Split-Path $Module) 'xhyve'
    $direct = [Collections.Generic.List[double]]::new()
    $cmdlets = [Collections.Generic.List[double]]::new()
    $stages = @{ New = [Collections.Generic.List[double]]::new(); Start = [Collections.Generic.List[double]]::new(); Wait = [Collections.Generic.List[double]]::new() }
    $engineArgs = $null
    for ($i = 0; $i -le $Runs; $i++) {
        $clock = [Diagnostics.Stopwatch]::new()

        # The cmdlets, as users write the pipeline.
        $name = "cmdlets$i"
        $clock.Restart()
        $vm = New-XhyveVM $name -MultibootPath $Guest -KernelCommandLine spin=1 -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
        $cmdletsMs = $clock.Elapsed.TotalMilliseconds
        if ($vm.State -ne 'Running') { throw "$name is $($vm.State)" }
        if ($null -eq $engineArgs) {
            # The engine's own argument list, with the VM's folder in its file paths: the direct runs use the same.
            $line = [IO.File]::ReadAllText("/proc/$($vm.ProcessId)/cmdline").TrimEnd("`0") -split "`0"
            $engineArgs = $line[1..($line.Count - 1)]
            $vmFolder = $vm.Path
        }
        Stop-XhyveVM $name -TurnOff
        Remove-XhyveVM $name -Confirm:$false

        # The engine alone, with the same arguments.
        # Owner-only, as the store makes a VM's folder: the engine refuses a control socket others could reach.
        $folder = [IO.Directory]::CreateDirectory((Join-Path $work "d$i"), [IO.UnixFileMode]'UserRead, UserWrite, UserExecute').FullName
        $start = [Diagnostics.ProcessStartInfo]::new($engine)
        $start.RedirectStandardOutput = $true; $start.RedirectStandardError = $true
        foreach ($a in $engineArgs) { $start.ArgumentList.Add($a.Replace($vmFolder, $folder)) }
        $socket = Join-Path $folder 'control.sock'
        $clock.Restart()
        $process = [Diagnostics.Process]::Start($start)
        while ($true) {
            if ($process.HasExited) { throw "the engine exited with $($process.ExitCode): $($process.StandardError.ReadToEnd())" }
            # Connect only once the socket exists (as EngineHost does): a failed connect costs a caught exception here.
            if ([IO.File]::Exists($socket)) {
                try {
                    $client = [Xhyve.Management.Engine.ControlClient]::new($socket, [TimeSpan]::FromSeconds(5))
                    try { if ($client.Ask('state').GetProperty('state').GetString() -eq 'Running') { break } } finally { $client.Dispose() }
                }
                catch [Management.Automation.MethodInvocationException] { }   # bound but not listening yet
            }
            # A poll a millisecond: back-to-back polls while the engine builds the machine would take CPU from it.
            [Threading.Thread]::Sleep(1)
        }
        $directMs = $clock.Elapsed.TotalMilliseconds
        $process.Kill(); $process.WaitForExit(); $process.Dispose()
        Remove-Item -Recurse -Force $folder

        # The same three cmdlets one statement at a time: where the pipeline's time goes.
        $name = "staged$i"
        $clock.Restart()
        $vm = New-XhyveVM $name -MultibootPath $Guest -KernelCommandLine spin=1 -MemoryStartupBytes 64MB
        $newMs = $clock.Elapsed.TotalMilliseconds; $clock.Restart()
        $vm = $vm | Start-XhyveVM -PassThru
        $startMs = $clock.Elapsed.TotalMilliseconds; $clock.Restart()
        $vm = $vm | Wait-XhyveVM -For Running
        $waitMs = $clock.Elapsed.TotalMilliseconds
        if ($vm.State -ne 'Running') { throw "$name is $($vm.State)" }
        Stop-XhyveVM $name -TurnOff
        Remove-XhyveVM $name -Confirm:$false

        if ($i -eq 0) { continue }
        $direct.Add($directMs); $cmdlets.Add($cmdletsMs); $stages.New.Add($newMs); $stages.Start.Add($startMs); $stages.Wait.Add($waitMs)
    }

    $kvm = if (Test-Path /sys/module/kvm_intel) { 'kvm_intel' } elseif (Test-Path /sys/module/kvm_amd) { 'kvm_amd' } elseif (Test-Path /sys/module/kvm_pvm) { 'kvm_pvm' } else { 'unknown' }
    $load = (Get-Content /proc/loadavg) -split ' '
    "Host: $([Environment]::ProcessorCount) CPUs, $(uname -r), KVM module: $kvm; PowerShell $($PSVersionTable.PSVersion); load average $loadStart at the start, $($load[0]) at the end; $Runs runs each (median, min-max)"
    ''
    function Row([string] $what, [double[]] $v) { '| {0} | {1:F0} ({2:F0}-{3:F0}) |' -f $what, (Median $v), ($v | Measure-Object -Minimum).Minimum, ($v | Measure-Object -Maximum).Maximum }
    "| figure | ms, median (min-max), $Runs runs |"
    '|---|---|'
    Row 'pwsh start, bare (`pwsh -NoProfile -NonInteractive -Command ''$null''`)' $figures.bare
    Row 'pwsh start with `Import-Module out/Xhyve/Xhyve.psd1`' $figures.imported
    '| **Import-Module, added to a pwsh start** (difference of the medians) | **{0:F0}** |' -f ((Median $figures.imported) - (Median $figures.bare))
    Row 'Import-Module Xhyve.psd1, timed inside a fresh pwsh (Stopwatch)' $figures.cold
    Row 'first `Get-XhyveVM` after it (empty store)' $figures.first
    Row 'a first Import-Module of a one-function script module (PowerShell''s own module code)' $figures.empty
    Row '**Import-Module Xhyve.psd1 after that one: the module''s own cost**' $figures.warm
    Row 'of which the binary module alone (Xhyve.PowerShell.dll, no format and types files)' $figures.dll
    Row 'engine alone, started directly, control socket polled until Running' $direct
    Row '`New-XhyveVM \| Start-XhyveVM -PassThru \| Wait-XhyveVM -For Running`' $cmdlets
    '| **added by the module over the engine alone** | **{0:F0}** (target <= 50) |' -f ((Median $cmdlets) - (Median $direct))
    Row 'one at a time: `New-XhyveVM` (store the VM)' $stages.New
    Row 'one at a time: `Start-XhyveVM -PassThru` (detached launch, wait for the control socket and the vCPUs)' $stages.Start
    Row 'one at a time: `Wait-XhyveVM -For Running`' $stages.Wait
}
finally {
    Get-Module Xhyve | ForEach-Object {
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    }
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
