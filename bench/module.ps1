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
    2. Time to Running (issue 16, benchmark h), the ways interleaved within each round, one warm-up round dropped;
       wall time, this pwsh's CPU time (getrusage: itself and the launchers it reaped) and the engine's CPU time up to
       Running (its threads' run time, /proc/PID/task/*/schedstat, read the moment it is Running):
       - a fresh pwsh: a bare start (spawn to its first command), and one that imports the module and runs
         New-XhyveVM | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running (spawn to Running, as the child reports);
       - the engine alone: started as a child process with the arguments the module gives it (read from
         /proc/PID/cmdline of a VM started once, its VM folder swapped for a folder of its own), its control socket
         awaited and then one blocking `wait-running`, as EngineHost does;
       - in this session (module imported): one VM through the pipeline against one direct start, and 10 VMs one
         after another each way (kept running until the tenth runs, then turned off).
    The guest is tests/guests hello.elf with idle=1 (prints "ready" and halts: ten of them idle side by side), 64 MiB,
    1 vCPU, ACPI.
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

    # ---- 2. Time to Running: the engine alone, a fresh pwsh importing the module, and 10 VMs in one session ----
    Import-Module $Module
    $engine = Join-Path (Split-Path $Module) 'xhyve'
    # CPU time: getrusage (microseconds; /proc/PID/stat counts 10 ms ticks) of this pwsh, itself and the children it
    # has reaped (the setsid launchers); an engine's, the sum of its threads' run time in /proc/PID/task/*/schedstat
    # (nanoseconds), read the moment it is Running: the guest's own run time after that is not counted.
    Add-Type -TypeDefinition @'
using System.Runtime.InteropServices;
public static class XhyveBenchCpu
{
    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage { public long USec, UUsec, SSec, SUsec, MaxRss, IxRss, IdRss, IsRss, MinFlt, MajFlt, NSwap, InBlock, OuBlock, MsgSnd, MsgRcv, NSignals, NvCsw, NivCsw; }
    [DllImport("libc")] private static extern int getrusage(int who, out RUsage usage);
    private static double Ms(int who) { getrusage(who, out var u); return (u.USec + u.SSec) * 1e3 + (u.UUsec + u.SUsec) / 1e3; }
    /// <summary>This process and the children it has waited for, in milliseconds.</summary>
    public static double Self() => Ms(0) + Ms(-1);
}
'@
    function EngineCpuMs([int] $processId) {
        $ns = 0L
        foreach ($t in [IO.Directory]::GetDirectories("/proc/$processId/task")) {
            try { $ns += [long](([IO.File]::ReadAllText("$t/schedstat")) -split ' ')[0] } catch [IO.IOException] { }
        }
        $ns / 1e6
    }
    $vmArgs = @{ MultibootPath = $Guest; KernelCommandLine = 'idle=1'; MemoryStartupBytes = 64MB }

    # The engine's own argument list, as the module gives it (read from /proc/PID/cmdline of a VM started once), with
    # the VM's folder in its paths: the direct starts use the same arguments with a folder of their own.
    $probe = New-XhyveVM probe @vmArgs | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
    $line = [IO.File]::ReadAllText("/proc/$($probe.ProcessId)/cmdline").TrimEnd("`0") -split "`0"
    $engineArgs = $line[1..($line.Count - 1)]
    $vmFolder = $probe.Path
    Stop-XhyveVM probe -TurnOff
    Remove-XhyveVM probe -Confirm:$false

    # One direct start: the engine as a child process, its socket awaited (1 ms sleeps until the file exists) and then
    # one blocking `wait-running`, as EngineHost does. Returns the process (left running), wall, pwsh and engine CPU.
    $directCount = 0
    function Start-Direct {
        $folder = [IO.Directory]::CreateDirectory((Join-Path $work "d$script:directCount"), [IO.UnixFileMode]'UserRead, UserWrite, UserExecute').FullName
        $script:directCount++
        $start = [Diagnostics.ProcessStartInfo]::new($engine)
        $start.RedirectStandardOutput = $true; $start.RedirectStandardError = $true
        foreach ($a in $engineArgs) { $start.ArgumentList.Add($a.Replace($vmFolder, $folder)) }
        $socket = Join-Path $folder 'control.sock'
        $cpu = [XhyveBenchCpu]::Self()
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $process = [Diagnostics.Process]::Start($start)
        while ($true) {
            if ($process.HasExited) { throw "the engine exited with $($process.ExitCode): $($process.StandardError.ReadToEnd())" }
            if ([IO.File]::Exists($socket)) {
                try {
                    $client = [Xhyve.Management.Engine.ControlClient]::new($socket, [TimeSpan]::FromSeconds(35))
                    try { $null = $client.Ask('wait-running timeout_ms=30000'); break } finally { $client.Dispose() }
                }
                catch [Management.Automation.MethodInvocationException] { }   # bound but not listening yet
            }
            [Threading.Thread]::Sleep(1)
        }
        $wall = $clock.Elapsed.TotalMilliseconds
        $pwshCpu = [XhyveBenchCpu]::Self() - $cpu
        [pscustomobject]@{ Process = $process; Folder = $folder; Wall = $wall; Cpu = $pwshCpu; EngineCpu = EngineCpuMs $process.Id }
    }
    function Stop-Direct($d) { $d.Process.Kill(); $d.Process.WaitForExit(); $d.Process.Dispose(); Remove-Item -Recurse -Force $d.Folder }

    # One VM through the cmdlets, as users write the pipeline, in this session.
    function Start-Module([string] $name) {
        $cpu = [XhyveBenchCpu]::Self()
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $vm = New-XhyveVM $name @vmArgs | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
        $wall = $clock.Elapsed.TotalMilliseconds
        $pwshCpu = [XhyveBenchCpu]::Self() - $cpu
        if ($vm.State -ne 'Running') { throw "$name is $($vm.State)" }
        [pscustomobject]@{ Name = $name; Wall = $wall; Cpu = $pwshCpu; EngineCpu = EngineCpuMs $vm.ProcessId }
    }
    function Stop-Module([string] $name) { Stop-XhyveVM $name -TurnOff; Remove-XhyveVM $name -Confirm:$false }

    # A fresh pwsh that imports the module and runs the pipeline: it prints the UTC time (ticks) at Running, its own
    # CPU time then, and the engine's, so pwsh's exit and the VM's removal after it are not counted.
    $freshScript = "Import-Module $(Quote $Module); `$guest = $(Quote $Guest); " + @'
$vm = New-XhyveVM fresh -MultibootPath $guest -KernelCommandLine idle=1 -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
$at = [DateTime]::UtcNow.Ticks
$cpu = [Diagnostics.Process]::GetCurrentProcess().TotalProcessorTime.TotalMilliseconds
$ns = 0L; foreach ($t in [IO.Directory]::GetDirectories("/proc/$($vm.ProcessId)/task")) { $ns += [long](([IO.File]::ReadAllText("$t/schedstat")) -split ' ')[0] }
$at; $cpu; $ns / 1e6
Stop-XhyveVM fresh -TurnOff; Remove-XhyveVM fresh -Confirm:$false
'@
    $bareScript = '[DateTime]::UtcNow.Ticks; [Diagnostics.Process]::GetCurrentProcess().TotalProcessorTime.TotalMilliseconds'
    function Fresh([string] $script) {
        $before = [DateTime]::UtcNow.Ticks
        $out = @(& $pwsh -NoProfile -NonInteractive -Command $script)
        if ($LASTEXITCODE -ne 0) { throw "pwsh -Command exited with $LASTEXITCODE" }
        [pscustomobject]@{ Wall = ([long]$out[0] - $before) / 1e4; Cpu = [double]$out[1]; EngineCpu = if ($out.Count -gt 2) { [double]$out[2] } else { 0 } }
    }

    $keys = 'freshBare', 'freshModule', 'freshDirect', 'oneDirect', 'oneModule', 'tenDirect', 'tenModule'
    $wall = [ordered]@{}; $cpu = [ordered]@{}; $engineCpu = [ordered]@{}
    foreach ($k in $keys) { $wall[$k] = [Collections.Generic.List[double]]::new(); $cpu[$k] = [Collections.Generic.List[double]]::new(); $engineCpu[$k] = [Collections.Generic.List[double]]::new() }
    function Add([string] $k, $r) { $wall[$k].Add($r.Wall); $cpu[$k].Add($r.Cpu); $engineCpu[$k].Add($r.EngineCpu) }
    $xhome = $env:XHYVE_HOME
    for ($i = 0; $i -le $Runs; $i++) {   # round 0 warms up (page cache, this session's JIT) and is dropped
        $round = @{}
        # Fresh pwsh processes, each with a store of its own (a VM name per store).
        $env:XHYVE_HOME = Join-Path $work "fresh$i"
        $round.freshBare = Fresh $bareScript
        $round.freshModule = Fresh $freshScript
        $env:XHYVE_HOME = $xhome
        $d = Start-Direct; Stop-Direct $d; $round.freshDirect = $d

        # One VM in this session, and then ten, the two ways interleaved.
        $m = Start-Module "one$i"; Stop-Module "one$i"; $round.oneModule = $m
        $d = Start-Direct; Stop-Direct $d; $round.oneDirect = $d
        $started = @(0..9 | ForEach-Object { Start-Direct })
        $round.tenDirect = [pscustomobject]@{ Wall = ($started.Wall | Measure-Object -Sum).Sum; Cpu = ($started.Cpu | Measure-Object -Sum).Sum; EngineCpu = ($started.EngineCpu | Measure-Object -Sum).Sum }
        $started | ForEach-Object { Stop-Direct $_ }
        $started = @(0..9 | ForEach-Object { Start-Module "ten$i-$_" })
        $round.tenModule = [pscustomobject]@{ Wall = ($started.Wall | Measure-Object -Sum).Sum; Cpu = ($started.Cpu | Measure-Object -Sum).Sum; EngineCpu = ($started.EngineCpu | Measure-Object -Sum).Sum }
        $started | ForEach-Object { Stop-Module $_.Name }
        if ($i -eq 0) { continue }
        foreach ($k in $keys) { Add $k $round[$k] }
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
    ''
    "Time to Running (the hello guest with idle=1, 64 MiB, 1 vCPU, ACPI); wall and CPU time, median (min-max), $Runs rounds:"
    ''
    function Three([double[]] $v) { '{0:F0} ({1:F0}-{2:F0})' -f (Median $v), ($v | Measure-Object -Minimum).Minimum, ($v | Measure-Object -Maximum).Maximum }
    function Row3([string] $what, [string] $k) { '| {0} | {1} | {2} | {3} |' -f $what, (Three $wall[$k]), (Three $cpu[$k]), (Three $engineCpu[$k]) }
    '| path | wall ms | pwsh CPU ms | engine CPU ms to Running |'
    '|---|---|---|---|'
    Row3 'fresh pwsh, bare: spawn to its first command' 'freshBare'
    Row3 'fresh pwsh: `Import-Module`, then `New-XhyveVM \| Start-XhyveVM -PassThru \| Wait-XhyveVM -For Running`' 'freshModule'
    Row3 'engine alone, started directly (child process, its socket awaited, one `wait-running`)' 'freshDirect'
    '| **fresh pwsh to Running, over a bare pwsh start and a direct engine start** (medians) | **{0:F0}** | | |' -f ((Median $wall.freshModule) - (Median $wall.freshBare) - (Median $wall.freshDirect))
    Row3 'one VM in this session: the pipeline' 'oneModule'
    Row3 'one VM: engine alone, started directly' 'oneDirect'
    '| **added by the module per VM** (one VM, difference of the medians) | **{0:F0}** (target <= 20) | | |' -f ((Median $wall.oneModule) - (Median $wall.oneDirect))
    Row3 '10 VMs in this session, one after another: the pipeline (sum)' 'tenModule'
    Row3 '10 direct engine starts, one after another (sum)' 'tenDirect'
    '| **10 VMs: the module against 10 direct starts** (ratio of the medians) | **{0:F2}x** (target <= 1.2x); {1:F0} ms per VM | | |' -f ((Median $wall.tenModule) / (Median $wall.tenDirect)), (((Median $wall.tenModule) - (Median $wall.tenDirect)) / 10)
}
finally {
    Get-Module Xhyve | ForEach-Object {
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    }
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
