#Requires -Version 7.6
# The module driving a real Linux guest: the Linux test kernel (../shared/linux-testkernel, or
# $env:XHYVE_TEST_KERNEL) with a busybox initramfs whose /init waits for the ACPI power button
# (tests/linux/tools/powerbtn). Run by `./build.ps1 -Task Pester`; a boot takes 30-60 s here.

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $env:XHYVE_HOME = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-linux-$PID"
    Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1') -Force
    $script:work = Join-Path $env:XHYVE_HOME 'work'
    New-Item -ItemType Directory -Force $work | Out-Null

    $kernel = if ($env:XHYVE_TEST_KERNEL) { $env:XHYVE_TEST_KERNEL } else { Join-Path $root '../shared/linux-testkernel/bzImage' }
    $script:skip = if (-not (Test-Path /dev/kvm)) { '/dev/kvm is absent: VM-starting tests need KVM' }
        elseif (-not (Test-Path $kernel)) { "no Linux test kernel at $kernel (set XHYVE_TEST_KERNEL)" }
    if (-not $skip) {
        $script:kernel = (Resolve-Path $kernel).Path
        $script:cmdline = (Get-Content (Join-Path (Split-Path $script:kernel) 'cmdline.txt') -Raw).Trim() + ' rdinit=/init'
        $init = Join-Path $work 'init.sh'
        Set-Content $init -NoNewline -Value (@(
            '#!/bin/sh', 'export PATH=/bin:/sbin', 'mount -t proc proc /proc; mount -t sysfs sysfs /sys',
            'echo "XHYVE-LINUX cpus=$(grep -c ^processor /proc/cpuinfo)"', 'exec /sbin/powerbtn', '') -join "`n")
        $script:initrd = Join-Path $work 'initrd.cpio'
        & (Join-Path $root 'tests/linux/make-initramfs.sh') $initrd $init
        if ($LASTEXITCODE -ne 0) { throw "make-initramfs.sh failed ($LASTEXITCODE)" }
    }
}

AfterAll {
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $env:XHYVE_HOME
}

Describe 'A Linux guest through the module' {
    It 'boots the test kernel, shows its console marker, and Stop-XhyveVM powers it off through the ACPI power button (exit 0)' {
        if ($skip) { Set-ItResult -Skipped -Because $skip; return }
        $vm = New-XhyveVM linux -KernelPath $kernel -InitrdPath $initrd -KernelCommandLine $cmdline -MemoryStartupBytes 256MB -ProcessorCount 2 |
            Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
        $vm.State | Should -Be 'Running'
        Wait-XhyveVM linux -For ConsoleText -Pattern 'XHYVE-LINUX powerbtn=listening' -TimeoutSec 300 | Out-Null
        (Get-XhyveConsoleOutput linux) -join "`n" | Should -Match 'XHYVE-LINUX cpus=2'
        $off = Stop-XhyveVM linux -TimeoutSec 120 -PassThru
        $off.State | Should -Be 'Off'
        $off.ExitCode | Should -Be 0
        (Get-XhyveConsoleOutput linux -Tail 5) -join "`n" | Should -Match 'XHYVE-LINUX powerbtn=button/power'
    }
}
