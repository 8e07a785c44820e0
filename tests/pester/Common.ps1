# Shared set-up for Pester files that boot test guests: dot-source it in BeforeAll. Each file gets an XHYVE_HOME of
# its own (files run one after another in one process, and each removes its home at the end).

# Points XHYVE_HOME at a new temporary folder named after $Name, imports the packaged module (out/Xhyve, built by
# `build.ps1 -Task Pester`), and sets $root, $guests, $xhyve (the packaged engine), $kvm and $noKvm in the caller's scope.
function Initialize-XhyveTestHome([string] $Name) {
    $script:root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $env:XHYVE_HOME = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-$Name-$PID"
    New-Item -ItemType Directory -Force $env:XHYVE_HOME | Out-Null
    Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1') -Force
    $script:guests = Join-Path $root 'tests/guests/build'
    $script:xhyve = Join-Path $root 'out/Xhyve/xhyve'
    $script:kvm = Test-Path /dev/kvm
    $script:noKvm = if ($kvm) { $null } else { '/dev/kvm is absent: VM-starting tests need KVM' }
}

# Turns off and removes every VM of this file's home, then the home itself.
function Remove-XhyveTestHome {
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff -WarningAction SilentlyContinue
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $env:XHYVE_HOME
}

# Sends $Text to the VM's serial console through the engine's control socket (`xhyve ctl SOCKET console` sends what
# its standard input holds when that is not a terminal).
function Send-XhyveTestConsole([string] $VMName, [string] $Text) {
    $socket = Join-Path (Get-XhyveVM $VMName).Path 'control.sock'
    $Text | & $xhyve ctl $socket console | Out-Null
}

# A free UDP port on the host's loopback: bound, noted, and let go for passt to take.
function Get-XhyveTestFreeUdpPort {
    $probe = [Net.Sockets.UdpClient]::new([Net.IPEndPoint]::new([Net.IPAddress]::Loopback, 0))
    try { $probe.Client.LocalEndPoint.Port } finally { $probe.Dispose() }
}

# Sends a datagram to 127.0.0.1:$HostPort until it comes back (UDP may be dropped until the guest has answered
# passt's ARP); the reply as text, or $null when none came within 20 tries of 1 s.
function Invoke-XhyveTestUdpEcho([int] $HostPort, [string] $Text) {
    $udp = [Net.Sockets.UdpClient]::new()
    try {
        $udp.Client.ReceiveTimeout = 1000
        $udp.Connect([Net.IPAddress]::Loopback, $HostPort)
        $payload = [Text.Encoding]::ASCII.GetBytes($Text)
        for ($i = 0; $i -lt 20; $i++) {
            [void]$udp.Send($payload, $payload.Length)
            $from = [Net.IPEndPoint]::new([Net.IPAddress]::Any, 0)
            try { return [Text.Encoding]::ASCII.GetString($udp.Receive([ref]$from)) } catch [Net.Sockets.SocketException] { }
        }
        $null
    }
    finally { $udp.Dispose() }
}

# SIGSTOP and waits until every thread of the process is stopped: kill(1) returns once the signal is sent, and a
# thread that was running (the engine's control server) could still answer a request meanwhile.
function Suspend-XhyveTestProcess([int] $ProcessId) {
    kill -STOP $ProcessId
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    while ([DateTime]::UtcNow -lt $deadline) {
        $states = foreach ($task in Get-ChildItem "/proc/$ProcessId/task" -ErrorAction SilentlyContinue) {
            $stat = Get-Content (Join-Path $task.FullName 'stat') -Raw -ErrorAction SilentlyContinue
            if ($stat) { ($stat -split '\) ')[-1][0] }
        }
        if (@($states | Where-Object { $_ -cnotin 'T', 't' }).Count -eq 0) { return }
        Start-Sleep -Milliseconds 10
    }
    throw "process $ProcessId did not stop within 10 s of SIGSTOP"
}
