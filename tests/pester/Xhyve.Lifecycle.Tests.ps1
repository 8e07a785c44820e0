#Requires -Version 7.6
# Pester 5 tests of the VM lifecycle through the cmdlets (issue 13 item 3): reboots keep a VM Running, waits end when
# what they wait for cannot come, an engine that does not respond can be turned off and removed, Restart-XhyveVM's
# -Type, and the errors and warnings of state conflicts. Run alone with: ./build.ps1 -Task Pester -PesterTag Lifecycle

BeforeAll {
    . (Join-Path $PSScriptRoot 'Common.ps1')
    Initialize-XhyveTestHome 'life'
    $script:hello = Join-Path $guests 'hello.elf'
    $script:power = Join-Path $guests 'power.elf'

    # The error records a command wrote (its warnings dropped), so a test can look at their ids and targets.
    function Get-Errors([scriptblock] $Command) {
        $ErrorActionPreference = 'Continue'
        $WarningPreference = 'SilentlyContinue'
        @(& $Command 2>&1 | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
    }
}

AfterAll { Remove-XhyveTestHome }

Describe 'Wait-XhyveVM' -Tag 'Lifecycle' {
    BeforeAll {
        if ($kvm) {
            # The power guest powers off at once (S5): a VM that ran and is off again.
            New-XhyveVM gone -MultibootPath $power -KernelCommandLine 's5=1' -MemoryStartupBytes 64MB | Out-Null
            Start-XhyveVM gone -WarningAction SilentlyContinue
            Wait-XhyveVM gone -For Off -TimeoutSec 30 | Out-Null
        }
    }
    It 'fails at once for -For Running on a VM that is off, naming how its last run ended' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $clock = [Diagnostics.Stopwatch]::StartNew()
        Wait-XhyveVM gone -For Running -TimeoutSec 60 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VMNotRunning,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err[0].TargetObject | Should -Be 'gone'
        $err[0].Exception.Message | Should -Match "VM 'gone' is Off \(exit status 0: .*S5"
    }
    It 'returns at once for -For Off on a VM that is off' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $clock = [Diagnostics.Stopwatch]::StartNew()
        (Wait-XhyveVM gone -For Off -TimeoutSec 60).State | Should -Be 'Off'
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
    }
    It 'fails at once for -For ConsoleText on a VM that is off when its log holds no match, and finds a match that is there' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $clock = [Diagnostics.Stopwatch]::StartNew()
        Wait-XhyveVM gone -For ConsoleText -Pattern 'never printed' -TimeoutSec 60 -ErrorVariable err -ErrorAction SilentlyContinue
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VMNotRunning,*'
        $err[0].Exception.Message | Should -Match 'holds no match'
        (Wait-XhyveVM gone -For ConsoleText -Pattern 's5=1' -TimeoutSec 60).Name | Should -Be 'gone'
    }
}

Describe 'A guest reboot' -Tag 'Lifecycle' {
    It 'keeps the VM Running in the same engine: the log goes on, the uptime starts again, Resets counts it' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        # The hello guest prints, waits for one byte on COM1, and resets; its next boot waits again.
        $vm = New-XhyveVM reboots -MultibootPath $hello -KernelCommandLine 'echo=1' -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru
        $vm.State | Should -Be 'Running'
        Wait-XhyveVM reboots -For ConsoleText -Pattern 'echo_ready=1' -TimeoutSec 30 | Out-Null
        Send-XhyveTestConsole reboots 'x'
        Wait-XhyveVM reboots -For ConsoleText -Pattern '(?s)echo_ready=1.*echo_ready=1' -TimeoutSec 30 | Out-Null
        $after = Wait-XhyveVM reboots -For Running -TimeoutSec 30
        $after.State | Should -Be 'Running'
        $after.ProcessId | Should -Be $vm.ProcessId
        $after.Resets | Should -Be 1
        $after.Uptime | Should -BeLessThan ([TimeSpan]::FromSeconds(30))
        ([regex]::Matches((Get-XhyveConsoleOutput reboots) -join "`n", 'Hello from the XhyvePS hello guest')).Count | Should -Be 2
    }
    It 'of a guest that resets at once is not reported as a start that failed, and a reset storm ends it' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $errors = Get-Errors { New-XhyveVM storm -MultibootPath $power -KernelCommandLine 'reset=1' -MemoryStartupBytes 64MB | Start-XhyveVM }
        $errors | Should -BeNullOrEmpty
        $off = Wait-XhyveVM storm -For Off -TimeoutSec 60
        $off.ExitCode | Should -Be 2
        $off.ExitReason | Should -Match 'reset storm'
    }
}

Describe 'Restart-XhyveVM' -Tag 'Lifecycle' {
    It 'resets a VM in place by default: the same engine, Running again, the guest booted twice' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $vm = New-XhyveVM hard -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru
        Wait-XhyveVM hard -For ConsoleText -Pattern 'ready=1' -TimeoutSec 30 | Out-Null
        $after = Restart-XhyveVM hard -Confirm:$false -PassThru
        $after.State | Should -Be 'Running'
        $after.ProcessId | Should -Be $vm.ProcessId
        $after.Resets | Should -Be 1
        Wait-XhyveVM hard -For ConsoleText -Pattern '(?s)ready=1.*ready=1' -TimeoutSec 30 | Out-Null
    }
    It 'with -Type Reboot lets the guest shut down through the power button and runs it again' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $vm = New-XhyveVM soft -MultibootPath $power -KernelCommandLine 'button=1' -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru
        Wait-XhyveVM soft -For ConsoleText -Pattern 'ready=1' -TimeoutSec 30 | Out-Null
        $after = Restart-XhyveVM soft -Type Reboot -TimeoutSec 30 -Confirm:$false -PassThru
        $after.State | Should -Be 'Running'
        $after.ProcessId | Should -Be $vm.ProcessId
        $after.Resets | Should -Be 1
        # The guest saw the button and powered off (S5), then booted again.
        Wait-XhyveVM soft -For ConsoleText -Pattern '(?s)button=pressed.*s5=1.*ready=1' -TimeoutSec 30 | Should -Not -BeNullOrEmpty
    }
    It 'with -Type Reboot refuses a guest that does not listen to the power button, naming -Force' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $errors = Get-Errors { Restart-XhyveVM hard -Type Reboot -Confirm:$false }
        $errors[0].Exception.Message | Should -Match 'power-button event'
        (Get-XhyveVM hard).State | Should -Be 'Running'
    }
    It 'on a VM that is off is a VMNotRunning error that says to start it' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $errors = Get-Errors { Restart-XhyveVM storm -Confirm:$false }
        $errors[0].FullyQualifiedErrorId | Should -BeLike 'VMNotRunning,*'
        $errors[0].Exception.Message | Should -Match 'start it with Start-XhyveVM'
    }
}

Describe 'State conflicts' -Tag 'Lifecycle' {
    BeforeAll {
        if ($kvm) { New-XhyveVM states -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Out-Null }
    }
    It 'Suspend-XhyveVM and Resume-XhyveVM on a VM that is off are VMNotRunning errors naming Start-XhyveVM, with the VM as target' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        foreach ($command in { Suspend-XhyveVM states }, { Resume-XhyveVM states }) {
            $errors = Get-Errors $command
            $errors[0].FullyQualifiedErrorId | Should -BeLike 'VMNotRunning,*'
            $errors[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
            $errors[0].TargetObject | Should -Be 'states'
            $errors[0].Exception.Message | Should -Be "VM 'states' is Off; start it with Start-XhyveVM."
        }
    }
    It 'Stop-XhyveVM on a VM that is off is a warning, not an error' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        Stop-XhyveVM states -ErrorVariable err -WarningVariable warn -WarningAction SilentlyContinue
        $err | Should -BeNullOrEmpty
        $warn[0] | Should -Be "VM 'states' is already Off."
    }
    It 'Start on Running, Suspend on Paused and Resume on Running are warnings, not errors' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $vm = Start-XhyveVM states -PassThru
        # Item 4: the uptime right after the start is the guest's, not the age of DateTime.MinValue.
        $vm.Uptime | Should -BeLessThan ([TimeSpan]::FromMinutes(1))
        Start-XhyveVM states -ErrorVariable err1 -WarningVariable warn1 -WarningAction SilentlyContinue
        Suspend-XhyveVM states
        Suspend-XhyveVM states -ErrorVariable err2 -WarningVariable warn2 -WarningAction SilentlyContinue
        Resume-XhyveVM states
        Resume-XhyveVM states -ErrorVariable err3 -WarningVariable warn3 -WarningAction SilentlyContinue
        @($err1) + @($err2) + @($err3) | Should -BeNullOrEmpty
        $warn1[0] | Should -Be "VM 'states' is already Running."
        $warn2[0] | Should -Be "VM 'states' is already Paused."
        $warn3[0] | Should -Be "VM 'states' is already Running."
        (Get-XhyveVM states).State | Should -Be 'Running'
    }
}

Describe 'An engine that does not respond' -Tag 'Lifecycle' {
    It 'is NotResponding within a second, refuses other commands with VMNotResponding, and is turned off with Stop-XhyveVM -TurnOff' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $vm = New-XhyveVM frozen -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru
        Suspend-XhyveTestProcess $vm.ProcessId
        try {
            $clock = [Diagnostics.Stopwatch]::StartNew()
            (Get-XhyveVM frozen).State | Should -Be 'NotResponding'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 1.5
            $errors = Get-Errors { Suspend-XhyveVM frozen }
            $errors[0].FullyQualifiedErrorId | Should -BeLike 'VMNotResponding,*'
            $errors[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            $errors[0].Exception.Message | Should -Match 'Stop-XhyveVM -TurnOff'
            $off = Stop-XhyveVM frozen -TurnOff -PassThru
            $off.State | Should -Be 'Off'
            $off.ExitReason | Should -Match 'killed by the management library'
            Test-Path (Join-Path $vm.Path 'engine.pid') | Should -BeFalse
            Test-Path (Join-Path $vm.Path 'control.sock') | Should -BeFalse
        }
        finally { kill -CONT $vm.ProcessId 2>$null }
    }
    It 'is removed with Remove-XhyveVM -Force' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        $vm = New-XhyveVM frozen2 -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Start-XhyveVM -PassThru
        Suspend-XhyveTestProcess $vm.ProcessId
        try {
            Remove-XhyveVM frozen2 -Force -Confirm:$false
            Get-XhyveVM frozen2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            # Gone, or a zombie (Z) its parent has not reaped yet.
            $stat = Get-Content "/proc/$($vm.ProcessId)/stat" -ErrorAction SilentlyContinue
            if ($stat) { ($stat -split '\) ')[-1][0] | Should -BeIn @('Z', 'X') }
        }
        finally { kill -CONT $vm.ProcessId 2>$null }
    }
}

# Needs passt: run with -PesterTag Network (or Lifecycle).
Describe 'A reset of a VM with a user-mode network adapter' -Tag 'Lifecycle', 'Network' {
    It 'builds its passt again: the port forward is bound anew and reaches the guest after the reset' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        if (-not ((Test-XhyveHost) | Where-Object Check -eq 'passt').Passed) {
            Set-ItResult -Skipped -Because 'passt is not installed ($XHYVE_PASST, or passt on PATH): user-mode networking needs it'; return
        }
        $hostPort = Get-XhyveTestFreeUdpPort
        New-XhyveVM netreset -MultibootPath (Join-Path $guests 'vnet.elf') -KernelCommandLine 'mode=listen listen=7777 n=1 secs=120' |
            Add-XhyveNetworkAdapter -PortForward "udp:127.0.0.1:${hostPort}:7777" | Out-Null
        try {
            $vm = Start-XhyveVM netreset -PassThru -ErrorAction Stop
            Wait-XhyveVM netreset -For ConsoleText -Pattern 'XHYVE-TEST listening=' -TimeoutSec 120 -ErrorAction Stop | Out-Null
            $after = Restart-XhyveVM netreset -Confirm:$false -PassThru -ErrorAction Stop
            $after.ProcessId | Should -Be $vm.ProcessId
            # The second boot got its address by DHCP again, through the new passt.
            Wait-XhyveVM netreset -For ConsoleText -Pattern '(?s)XHYVE-TEST listening=.*XHYVE-TEST listening=' -TimeoutSec 120 -ErrorAction Stop | Out-Null
            Invoke-XhyveTestUdpEcho $hostPort "after-reset-$hostPort" | Should -Be "after-reset-$hostPort"
        }
        finally { if ((Get-XhyveVM netreset).State -ne 'Off') { Stop-XhyveVM netreset -TurnOff } }
    }
}
