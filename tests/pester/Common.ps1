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
