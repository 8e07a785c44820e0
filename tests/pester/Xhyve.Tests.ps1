#Requires -Version 7.6
# Pester 5 tests of the Xhyve module's cmdlets, run by `./build.ps1 -Task Pester` (which packages the
# module into out/Xhyve first). VM-starting tests need /dev/kvm and skip with the reason otherwise.

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $env:XHYVE_HOME = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-$PID"
    Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1') -Force
    $script:guests = Join-Path $root 'tests/guests/build'
    $script:hello = Join-Path $guests 'hello.elf'
    $script:power = Join-Path $guests 'power.elf'
    $script:work = Join-Path $env:XHYVE_HOME 'work'
    New-Item -ItemType Directory -Force $work | Out-Null
    $script:kvm = Test-Path /dev/kvm
    $script:noKvm = if ($kvm) { $null } else { '/dev/kvm is absent: VM-starting tests need KVM' }
}

AfterAll {
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $env:XHYVE_HOME
}

Describe 'The module' {
    It 'exports exactly the cmdlets of its manifest' {
        $manifest = Import-PowerShellDataFile (Join-Path $root 'module/Xhyve.psd1')
        (Get-Command -Module Xhyve).Name | Sort-Object | Should -Be ($manifest.CmdletsToExport | Sort-Object)
    }
    It 'has help for every cmdlet' {
        foreach ($c in Get-Command -Module Xhyve) { (Get-Help $c.Name).Synopsis | Should -Not -BeNullOrEmpty -Because $c.Name }
    }
}

Describe 'New-XhyveVM, Get-XhyveVM, Set-XhyveVM, Remove-XhyveVM' {
    It 'creates a VM with xhyve''s defaults' {
        $vm = New-XhyveVM defaults -MultibootPath $hello
        $vm.MemoryStartupBytes | Should -Be 256MB
        $vm.ProcessorCount | Should -Be 1
        $vm.Acpi | Should -BeTrue
        $vm.State | Should -Be 'Off'
    }
    It 'takes sizes in bytes, so 1GB works' {
        (New-XhyveVM big -MultibootPath $hello -MemoryStartupBytes 1GB -ProcessorCount 2).MemoryStartupBytes | Should -Be 1GB
    }
    It 'finds VMs by wildcard and by id' {
        (Get-XhyveVM 'de*').Name | Should -Be 'defaults'
        (Get-XhyveVM -Id (Get-XhyveVM big).Id).Name | Should -Be 'big'
    }
    It 'reports a missing VM as ObjectNotFound naming it' {
        Get-XhyveVM nosuchvm -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be 'nosuchvm'
    }
    It 'reports a missing kernel as ObjectNotFound naming the path, and stores nothing' {
        New-XhyveVM nokernel -KernelPath /nonexistent/vmlinuz -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].Exception.Message | Should -Match '/nonexistent/vmlinuz'
        Get-XhyveVM nokernel -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
    It 'changes a VM that is off' {
        Set-XhyveVM big -ProcessorCount 4 -PassThru | Select-Object -ExpandProperty ProcessorCount | Should -Be 4
    }
    It 'changes nothing with -WhatIf' {
        New-XhyveVM whatif -MultibootPath $hello -WhatIf
        Get-XhyveVM whatif -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Set-XhyveVM big -ProcessorCount 1 -WhatIf
        (Get-XhyveVM big).ProcessorCount | Should -Be 4
        Remove-XhyveVM big -WhatIf
        Get-XhyveVM big | Should -Not -BeNullOrEmpty
    }
    It 'removes VMs from the pipeline' {
        Get-XhyveVM big | Remove-XhyveVM -Confirm:$false
        Get-XhyveVM big -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}

Describe 'What the store and the console log refuse or cope with' {
    It 'refuses extra arguments that override the VM, naming the argument, and stores nothing' {
        New-XhyveVM owned -MultibootPath $hello | Out-Null
        Set-XhyveVM owned -ExtraArguments '-u', '-m', '256M' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "ExtraArguments '-m 256M': the memory size belongs to the VM; set MemoryStartupBytes"
        (Get-XhyveVM owned).ExtraArguments | Should -BeNullOrEmpty
    }
    It 'reports a vm.json field given twice, naming the field' {
        New-XhyveVM twice -MultibootPath $hello | Out-Null
        $file = Join-Path $env:XHYVE_HOME 'vms/twice/vm.json'
        (Get-Content -Raw $file) -replace '"processorCount": 1,', "`"processorCount`": 1,`n  `"processorCount`": 8," | Set-Content -NoNewline $file
        Get-XhyveVM twice -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match ([regex]::Escape('at $.processorCount: Duplicate property'))
        Remove-Item $file
    }
    It 'tails a 200 MB console log from its end, with CR LF and no final newline' {
        New-XhyveVM chatty -MultibootPath $hello | Out-Null
        $log = [IO.File]::Create((Join-Path $env:XHYVE_HOME 'vms/chatty/console.log'))
        try {
            $log.SetLength(200MB)   # a sparse hole of NULs: written in a moment
            $log.Position = $log.Length
            $bytes = [Text.Encoding]::UTF8.GetBytes("`nfirst`r`nsecond`r`nlast")
            $log.Write($bytes, 0, $bytes.Length)
        }
        finally { $log.Dispose() }
        Get-XhyveConsoleOutput chatty -Tail 2 | Should -Be @('second', 'last')
    }
    It 'writes a whole log line by line, its unfinished last line included' {
        New-XhyveVM short -MultibootPath $hello | Out-Null
        Set-Content -Path (Join-Path $env:XHYVE_HOME 'vms/short/console.log') -Value "one`r`ntwo`nthr" -NoNewline
        Get-XhyveConsoleOutput short | Should -Be @('one', 'two', 'thr')
        Get-XhyveConsoleOutput short -Tail 10 | Should -Be @('one', 'two', 'thr')
    }
}

Describe 'Disks and network adapters' {
    BeforeAll { New-XhyveVM devices -MultibootPath $hello | Out-Null }
    It 'creates raw and split/sparse images' {
        (New-XhyveDiskImage (Join-Path $work 'raw.img') -SizeBytes 8MB).Format | Should -Be 'raw'
        $sparse = New-XhyveDiskImage (Join-Path $work 'sparse.img') -SizeBytes 64MB -SplitBytes 16MB -Sparse
        $sparse.AllocatedBytes | Should -Be 0
    }
    It 'adds, lists and removes disks' {
        Add-XhyveDisk devices -Path (Join-Path $work 'raw.img') -PassThru | Select-Object -ExpandProperty Slot | Should -Be 2
        Add-XhyveDisk devices -Path (Join-Path $work 'sparse.img') -ReadOnly
        (Get-XhyveDisk devices).Count | Should -Be 2
        Get-XhyveDisk devices | Where-Object ReadOnly | Remove-XhyveDisk -Confirm:$false
        (Get-XhyveDisk devices).Path | Should -Be (Join-Path $work 'raw.img')
    }
    It 'refuses a missing image, naming it' {
        Add-XhyveDisk devices -Path (Join-Path $work 'missing.img') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }
    It 'defines network adapters' {
        Add-XhyveNetworkAdapter devices -MacAddress 52:54:00:12:34:56 -PassThru | Select-Object -ExpandProperty Emulation | Should -Be 'virtio-net'
        (Get-XhyveNetworkAdapter devices).MacAddress | Should -Be '52:54:00:12:34:56'
        Get-XhyveNetworkAdapter devices | Remove-XhyveNetworkAdapter -Confirm:$false
        Get-XhyveNetworkAdapter devices | Should -BeNullOrEmpty
    }
}

Describe 'ConvertFrom-XhyveCommandLine' {
    It 'turns an xhyverun.sh line into a VM object' {
        $vm = ConvertFrom-XhyveCommandLine "-A -m 1G -c 2 -s 0:0,hostbridge -s 31,lpc -l com1,stdio -s 2,virtio-blk,hdd.img -f kexec,vmlinuz,initrd.gz,`"earlyprintk=serial console=ttyS0`"" -Name ubuntu -WarningAction SilentlyContinue
        $vm.MemoryStartupBytes | Should -Be 1GB
        $vm.KernelCommandLine | Should -Be 'earlyprintk=serial console=ttyS0'
        $vm.HardDrives.Path | Should -Be 'hdd.img'
    }
    It 'reports a bad line as InvalidArgument' {
        ConvertFrom-XhyveCommandLine '-m lots -f kexec,k' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'Connect-XhyveVM' {
    It 'needs a terminal, and says so when its input is redirected' {
        New-XhyveVM console -MultibootPath $hello | Out-Null
        # A child pwsh whose standard input is a pipe: .NET cannot read keys from it.
        $module = Join-Path $root 'out/Xhyve/Xhyve.psd1'
        $pwsh = (Get-Command pwsh -CommandType Application | Select-Object -First 1).Source
        $out = '' | & $pwsh -NoProfile -NonInteractive -Command "Import-Module '$module'; Connect-XhyveVM console -ErrorVariable e -ErrorAction SilentlyContinue; `$e[0].CategoryInfo.Category; `$e[0].Exception.Message"
        $out[0] | Should -Be 'InvalidOperation'
        $out[1] | Should -Match 'needs an interactive terminal.*Get-XhyveConsoleOutput console -Wait'
    }
}

Describe 'Test-XhyveHost' {
    It 'reports each check with advice where it fails' {
        $checks = Test-XhyveHost
        ($checks | Where-Object Check -eq 'KVM device').Passed | Should -Be $kvm
        $checks | Where-Object { -not $_.Passed -and -not $_.Advice } | Should -BeNullOrEmpty
    }
}

Describe 'Running VMs' {
    It 'starts, waits on, pauses, resumes and stops a VM' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM spin -MultibootPath $hello -KernelCommandLine 'spin=1' | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running |
            Select-Object -ExpandProperty State | Should -Be 'Running'
        Wait-XhyveVM spin -For ConsoleText -Pattern 'ready' -TimeoutSec 30 | Should -Not -BeNullOrEmpty
        (Suspend-XhyveVM spin -PassThru).State | Should -Be 'Paused'
        (Resume-XhyveVM spin -PassThru).State | Should -Be 'Running'
        Get-XhyveConsoleOutput spin -Tail 1 | Should -Match 'ready'
        (Stop-XhyveVM spin -TurnOff -PassThru).State | Should -Be 'Off'
    }
    It 'shuts a guest down through the power button with exit code 0' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM power -MultibootPath $power -KernelCommandLine 'button=1' | Start-XhyveVM
        Wait-XhyveVM power -For ConsoleText -Pattern 'ready=1' -TimeoutSec 30 | Out-Null
        $off = Stop-XhyveVM power -TimeoutSec 20 -PassThru
        $off.State | Should -Be 'Off'
        $off.ExitCode | Should -Be 0
    }
    It 'runs the users'' pipeline' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        # fetch-debian-kernel.sh (run by setup-debian.sh) caches it as vmlinuz-<version>.
        $kernel = Get-ChildItem (Join-Path $root '.cache/linux/vmlinuz-*') -ErrorAction SilentlyContinue | Select-Object -First 1 -ExpandProperty FullName
        if (-not $kernel) { Set-ItResult -Skipped -Because 'the Debian kernel is not fetched (tests/linux/fetch-debian-kernel.sh)'; return }
        Set-Content (Join-Path $work 'initrd.gz') 'not a real initrd: the kernel stops before it matters on this host'
        New-XhyveDiskImage (Join-Path $work 'web.img') -SizeBytes 64MB | Out-Null
        Push-Location $work
        try {
            $vm = New-XhyveVM web -MemoryStartupBytes 1GB -ProcessorCount 2 -KernelPath $kernel -InitrdPath initrd.gz |
                Add-XhyveDisk -Path web.img -PassThru | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running
            $vm.State | Should -Be 'Running'
            $vm.ProcessorCount | Should -Be 2
        }
        finally { Pop-Location; Stop-XhyveVM web -TurnOff }
    }
    It 'says how a VM that did not reach Running ended' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        # Without options the hello guest prints a line and resets (exit status 2).
        New-XhyveVM brief -MultibootPath $hello | Start-XhyveVM -ErrorAction SilentlyContinue
        Wait-XhyveVM brief -For Off -TimeoutSec 30 | Select-Object -ExpandProperty ExitCode | Should -Be 2
        Wait-XhyveVM brief -For Running -TimeoutSec 1 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'OperationTimeout'
        $err[0].Exception.Message | Should -Match 'it is Off \(exit status 2: reset requested'
    }
    It 'refuses to remove a running VM without -Force' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        New-XhyveVM busy -MultibootPath $hello -KernelCommandLine 'spin=1' | Start-XhyveVM
        Remove-XhyveVM busy -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'stop it first'
        Remove-XhyveVM busy -Force -Confirm:$false
        Get-XhyveVM busy -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}
