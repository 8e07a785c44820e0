#Requires -Version 7.6
# Pester 5 tests of DVD drives and AHCI disks through the module (issue 14, item 5): Add-/Get-/Set-/Remove-XhyveDvdDrive,
# Add-XhyveDisk -ControllerType, the engine arguments a VM with them makes, ConvertFrom-XhyveCommandLine both ways,
# and a running VM's medium changed through the control API. Run alone with: ./build.ps1 -Task Pester -PesterTag DvdDrive

BeforeAll {
    . (Join-Path $PSScriptRoot 'Common.ps1')
    Initialize-XhyveTestHome 'dvd'
    $script:hello = Join-Path $guests 'hello.elf'
    $script:work = Join-Path $env:XHYVE_HOME 'work'
    New-Item -ItemType Directory -Force $work | Out-Null
    # Files that serve as ISO images and a disk: the module checks that they exist; nothing here reads them as such.
    $script:iso = Join-Path $work 'install.iso'
    $script:iso2 = Join-Path $work 'drivers disc.iso'
    $script:img = Join-Path $work 'sata.img'
    foreach ($f in $iso, $iso2, $img) { $s = [IO.File]::Create($f); $s.SetLength(1MB); $s.Dispose() }

    # The error records a command wrote (its warnings dropped), so a test can look at their ids and targets.
    function Get-Errors([scriptblock] $Command) {
        $ErrorActionPreference = 'Continue'
        $WarningPreference = 'SilentlyContinue'
        @(& $Command 2>&1 | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
    }
    # The engine's arguments for a stored VM, as Start-XhyveVM passes them (without its console log).
    function Get-EngineArguments([string] $Name) {
        $json = Get-Content -Raw (Join-Path (Get-XhyveVM $Name).Path 'vm.json')
        [Xhyve.Management.Model.VmArguments]::ToArguments([Xhyve.Management.Model.VmJson]::Deserialize($json, 'vm.json'), [NullString]::Value)
    }
    function Get-Devices([string[]] $Arguments) {
        for ($i = 0; $i -lt $Arguments.Count - 1; $i++) { if ($Arguments[$i] -eq '-s') { $Arguments[$i + 1] } }
    }
}

AfterAll { Remove-XhyveTestHome }

Describe 'DVD drives' -Tag 'DvdDrive' {
    BeforeEach {
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff -WarningAction SilentlyContinue
        Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
        New-XhyveVM cd -MultibootPath $hello -MemoryStartupBytes 64MB | Out-Null
    }

    It 'adds, lists, changes and removes drives, and each becomes -s SLOT,ahci-cd[,PATH] for the engine' {
        Push-Location $work
        try { $first = Add-XhyveDvdDrive cd -Path ./install.iso -PassThru } finally { Pop-Location }
        ($first.Slot, $first.Path, $first.DvdMediaType, $first.ControllerType, $first.ControllerLocation) | Should -Be @(2, $iso, 'ISO', 'AHCI', 0)
        Get-XhyveVM cd | Add-XhyveDvdDrive -Slot 7
        (Get-XhyveDvdDrive cd).Slot | Should -Be @(2, 7)
        (Get-XhyveDvdDrive cd -ControllerNumber 7).DvdMediaType | Should -Be 'None'
        Get-Devices (Get-EngineArguments cd) | Select-Object -Skip 2 | Should -Be @("0:2:0,ahci-cd,$iso", '0:7:0,ahci-cd')

        Set-XhyveDvdDrive cd -Slot 7 -Path $iso2
        Get-XhyveDvdDrive cd -Slot 2 | Set-XhyveDvdDrive -Path $null
        (Get-XhyveDvdDrive cd).Path | Should -Be @($null, $iso2)
        Get-Devices (Get-EngineArguments cd) | Select-Object -Skip 2 | Should -Be @('0:2:0,ahci-cd', "0:7:0,ahci-cd,$iso2")

        Get-XhyveDvdDrive cd -Slot 2 | Remove-XhyveDvdDrive -Confirm:$false
        (Get-XhyveDvdDrive cd).Slot | Should -Be 7
        (Get-XhyveVM cd).DvdDrives.Path | Should -Be $iso2
        Remove-XhyveDvdDrive cd 7 -Confirm:$false
        Get-XhyveDvdDrive cd | Should -BeNullOrEmpty
        Get-Content -Raw (Join-Path (Get-XhyveVM cd).Path 'vm.json') | Should -Not -Match 'dvdDrives' -Because 'a VM without drives keeps the vm.json older versions read'
    }

    It '-WhatIf adds, changes and removes nothing' {
        Add-XhyveDvdDrive cd -Path $iso
        $before = Get-Content -Raw (Join-Path (Get-XhyveVM cd).Path 'vm.json')
        Add-XhyveDvdDrive cd -WhatIf
        Set-XhyveDvdDrive cd 2 -Path $iso2 -WhatIf
        Set-XhyveDvdDrive cd 2 -WhatIf
        Remove-XhyveDvdDrive cd 2 -WhatIf
        Get-Content -Raw (Join-Path (Get-XhyveVM cd).Path 'vm.json') | Should -Be $before
    }

    It 'refuses a missing ISO (DvdMediaNotFound), a slot without a drive (DvdDriveNotFound) and a missing VM (VMNotFound), storing nothing' {
        Add-XhyveDvdDrive cd -Path $iso
        $before = Get-Content -Raw (Join-Path (Get-XhyveVM cd).Path 'vm.json')
        $e = Get-Errors { Add-XhyveDvdDrive cd -Path ./missing.iso }
        ($e[0].FullyQualifiedErrorId, $e[0].CategoryInfo.Category, $e[0].TargetObject) | Should -Be @('DvdMediaNotFound,Xhyve.PowerShell.Cmdlets.AddXhyveDvdDriveCommand', 'ObjectNotFound', './missing.iso')
        $e = Get-Errors { Set-XhyveDvdDrive cd 2 ./missing.iso }
        $e[0].FullyQualifiedErrorId | Should -BeLike 'DvdMediaNotFound,*'
        $e = Get-Errors { Set-XhyveDvdDrive cd 5 $iso2 }
        ($e[0].FullyQualifiedErrorId, $e[0].CategoryInfo.Category, $e[0].TargetObject) | Should -Be @('DvdDriveNotFound,Xhyve.PowerShell.Cmdlets.SetXhyveDvdDriveCommand', 'ObjectNotFound', 5)
        $e = Get-Errors { Remove-XhyveDvdDrive cd 5 -Confirm:$false }
        $e[0].FullyQualifiedErrorId | Should -BeLike 'DvdDriveNotFound,*'
        $e = Get-Errors { Get-XhyveDvdDrive nosuch }
        ($e[0].FullyQualifiedErrorId, $e[0].TargetObject) | Should -Be @('VMNotFound,Xhyve.PowerShell.Cmdlets.GetXhyveDvdDriveCommand', 'nosuch')
        Get-Content -Raw (Join-Path (Get-XhyveVM cd).Path 'vm.json') | Should -Be $before
    }
}

Describe 'AHCI disks' -Tag 'DvdDrive', 'Ahci' {
    BeforeEach {
        Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
        New-XhyveVM sata -MultibootPath $hello -MemoryStartupBytes 64MB | Out-Null
    }

    It 'Add-XhyveDisk -ControllerType AHCI becomes -s SLOT,ahci-hd,PATH,OPTIONS and Get-XhyveDisk shows it; VirtIO stays the default' {
        $disk = Add-XhyveDisk sata -Path $img -ControllerType AHCI -ReadOnly -PassThru
        ($disk.ControllerType, $disk.Slot) | Should -Be @('AHCI', 2)
        Add-XhyveDisk sata -Path $iso
        (Get-XhyveDisk sata).ControllerType | Should -Be @('AHCI', 'VirtIO')
        Get-Devices (Get-EngineArguments sata) | Select-Object -Skip 2 | Should -Be @("0:2:0,ahci-hd,$img,ro", "0:3:0,virtio-blk,$iso")
    }
}

Describe 'ConvertFrom-XhyveCommandLine with AHCI devices' -Tag 'DvdDrive', 'Ahci' {
    It 'maps ahci-hd to an AHCI disk and ahci-cd to DVD drives, and the VM writes the same devices back' {
        $line = "-m 256M -s 0,hostbridge -s 31,lpc -s 3,ahci-hd,$img,sectorsize=4096 -s 4,ahci-cd,$iso -s 5,ahci-cd -f multiboot,$hello"
        $vm = ConvertFrom-XhyveCommandLine $line -Name conv -Save
        ($vm.HardDrives.ControllerType, $vm.HardDrives.Options) | Should -Be @('AHCI', 'sectorsize=4096')
        $vm.DvdDrives.Path | Should -Be @($iso, $null)
        Get-Devices (Get-EngineArguments conv) | Should -Be @('0:0:0,hostbridge', '0:31:0,lpc', "0:3:0,ahci-hd,$img,sectorsize=4096", "0:4:0,ahci-cd,$iso", '0:5:0,ahci-cd')
    }
    It 'maps bhyve''s one-port ahci,hd:/ahci,cd: and refuses a controller with several ports, naming it' {
        $vm = ConvertFrom-XhyveCommandLine "-s 3,ahci,hd:$img,ro -s 4,ahci,cd: -f multiboot,$hello"
        ($vm.HardDrives.ControllerType, $vm.HardDrives.ReadOnly, $vm.DvdDrives.Slot, $vm.DvdDrives.DvdMediaType) | Should -Be @('AHCI', $true, 4, 'None')
        $e = Get-Errors { ConvertFrom-XhyveCommandLine "-s 3,ahci,hd:$img,cd:$iso -f multiboot,$hello" }
        $e[0].FullyQualifiedErrorId | Should -BeLike 'InvalidXhyveCommandLine,*'
        $e[0].Exception.Message | Should -Match '2 ports on one AHCI controller'
    }
}

Describe 'DVD drives of a running VM' -Tag 'DvdDrive' {
    BeforeEach {
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff -WarningAction SilentlyContinue
        Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    }
    AfterAll { Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff -WarningAction SilentlyContinue }

    It 'refuses Add-XhyveDvdDrive and Add-XhyveDisk with VMRunning naming Stop-XhyveVM' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM up -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Start-XhyveVM
        foreach ($command in { Add-XhyveDvdDrive up -Path $iso }, { Add-XhyveDisk up -Path $img -ControllerType AHCI }) {
            $e = Get-Errors $command
            ($e[0].FullyQualifiedErrorId -split ',')[0] | Should -Be 'VMRunning'
            ($e[0].CategoryInfo.Category, $e[0].TargetObject) | Should -Be @('InvalidOperation', 'up')
            $e[0].Exception.Message | Should -Be "VM 'up' is Running; stop it with Stop-XhyveVM before changing it."
        }
        Get-XhyveDvdDrive up | Should -BeNullOrEmpty
        Get-XhyveDisk up | Should -BeNullOrEmpty
    }

    It 'Set-XhyveDvdDrive changes the live medium through the control API, Get-XhyveDvdDrive shows it, and the VM keeps it' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM live -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Add-XhyveDvdDrive -Slot 5
        Start-XhyveVM live -ErrorAction Stop
        $socket = Join-Path (Get-XhyveVM live).Path 'control.sock'
        function Get-EngineMedium { (& $xhyve ctl $socket media | ConvertFrom-Json).drives }

        # A path with a space: the control API takes the rest of the line.
        Set-XhyveDvdDrive live 5 $iso2 -ErrorAction Stop
        $drives = @(Get-EngineMedium)
        ($drives.Count, $drives[0].drive, $drives[0].medium) | Should -Be @(1, '0:5:0/0', $iso2) -Because 'the engine has the medium now'
        (Get-XhyveDvdDrive live).Path | Should -Be $iso2
        ((& $xhyve ctl $socket config | ConvertFrom-Json).arguments -join ' ') | Should -Match ([regex]::Escape("ahci-cd,$iso2"))
        (Get-Content -Raw (Join-Path (Get-XhyveVM live).Path 'vm.json') | ConvertFrom-Json).dvdDrives[0].path | Should -Be $iso2 -Because 'the next start has it too'

        # The guest's view, not the stored one: an eject made outside the module (as a guest's eject would be) shows.
        & $xhyve ctl $socket media 5 eject | Out-Null
        (Get-XhyveDvdDrive live).DvdMediaType | Should -Be 'None'
        Set-XhyveDvdDrive live 5 $iso
        (Get-EngineMedium).medium | Should -Be $iso
        Get-XhyveDvdDrive live | Set-XhyveDvdDrive -Path $null
        (Get-EngineMedium).medium | Should -BeNullOrEmpty
        (Get-XhyveVM live).DvdDrives.Path | Should -BeNullOrEmpty

        # Adding or removing a drive needs the VM off.
        $e = Get-Errors { Remove-XhyveDvdDrive live 5 -Confirm:$false }
        ($e[0].FullyQualifiedErrorId -split ',')[0] | Should -Be 'VMRunning'
        (Get-XhyveDvdDrive live).Slot | Should -Be 5
        (Get-XhyveVM live).State | Should -Be 'Running'
    }

    It 'a change the running engine refuses is DvdMediaNotChanged with the engine''s reason, and the stored medium stays' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM stale -MultibootPath $hello -KernelCommandLine 'spin=1' -MemoryStartupBytes 64MB | Add-XhyveDvdDrive -Slot 5
        Start-XhyveVM stale -ErrorAction Stop
        # The definition edited by hand while the VM runs: it names a drive in slot 9, which the engine does not have.
        $json = Join-Path (Get-XhyveVM stale).Path 'vm.json'
        (Get-Content -Raw $json) -replace '"slot": 5', '"slot": 9' | Set-Content $json
        $e = Get-Errors { Set-XhyveDvdDrive stale 9 $iso }
        ($e[0].FullyQualifiedErrorId, $e[0].CategoryInfo.Category, $e[0].TargetObject) | Should -Be @('DvdMediaNotChanged,Xhyve.PowerShell.Cmdlets.SetXhyveDvdDriveCommand', 'InvalidOperation', 9)
        $e[0].Exception.Message | Should -Match "VM 'stale': the DVD drive in slot 9 \(0:9:0/0\): the engine did not change the medium: .*9"
        Get-Content -Raw $json | Should -Not -Match 'install\.iso' -Because 'nothing is stored when the engine refuses'
    }
}
