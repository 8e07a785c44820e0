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
    $script:vnet = Join-Path $guests 'vnet.elf'
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
        $added = Add-XhyveNetworkAdapter devices -MacAddress 52:54:00:12:34:56 -PassThru
        ($added.Mode, $added.MacAddress, $added.MacAddressSource) | Should -Be @('User', '52:54:00:12:34:56', 'Static')
        (Get-XhyveNetworkAdapter devices).MacAddress | Should -Be '52:54:00:12:34:56'
        Get-XhyveNetworkAdapter devices | Remove-XhyveNetworkAdapter -Confirm:$false
        Get-XhyveNetworkAdapter devices | Should -BeNullOrEmpty
    }
}

Describe 'Network adapters: Add, Get, Set, Remove' {
    BeforeAll {
        $script:netVm = New-XhyveVM nets -MultibootPath $hello
        function Stable([int] $slot) { [Xhyve.Vmm.Config.MacAddress]::Derive($netVm.Id, [Xhyve.Vmm.Devices.Pci.PciAddress]::new(0, $slot, 0)).ToString() }
    }
    It 'adds a user-mode adapter with port forwards, and shows the stable MAC the engine will give it' {
        $a = Add-XhyveNetworkAdapter nets -Name wan -PortForward 'tcp:8080:80', 'udp:127.0.0.1:5353-:53' -PassThru
        ($a.Mode, $a.TapName, $a.Slot, $a.MacAddressSource) | Should -Be @('User', $null, 2, 'Stable')
        $a.PortForwards | Should -Be @('tcp:8080:80', 'udp:127.0.0.1:5353:53')
        $a.MacAddress | Should -Be (Stable 2)
        (Get-XhyveNetworkAdapter nets -Name wan).MacAddress | Should -Be (Stable 2)
    }
    It 'adds a TAP adapter, with -TapName or the old -TapDevice' {
        (Add-XhyveNetworkAdapter nets -Name lan -Mode Tap -TapName tap0 -PassThru).TapName | Should -Be 'tap0'
        $old = Add-XhyveNetworkAdapter nets -Name old -TapDevice tap1 -PassThru
        ($old.Mode, $old.TapName, $old.Slot) | Should -Be @('Tap', 'tap1', 4)
        (Get-XhyveNetworkAdapter nets).Name | Should -Be @('wan', 'lan', 'old')
        (Get-XhyveNetworkAdapter nets -Name 'l*').Name | Should -Be 'lan'
    }
    It 'refuses <case>, naming the value, and adds nothing' -ForEach @(
        @{ case = 'a multicast MAC'; params = @{ MacAddress = '01:00:5e:00:00:01' }; id = 'InvalidMacAddress'; target = '01:00:5e:00:00:01'; message = '-MacAddress 01:00:5e:00:00:01: a multicast address' }
        @{ case = 'a MAC that is not one'; params = @{ MacAddress = '52:54:00' }; id = 'InvalidMacAddress'; target = '52:54:00'; message = '-MacAddress 52:54:00: expected six hex pairs' }
        @{ case = 'a forward that is not one'; params = @{ PortForward = 'tcp:80' }; id = 'InvalidPortForward'; target = 'tcp:80'; message = '-PortForward tcp:80: expected PROTOCOL:HOSTPORT-:GUESTPORT \(e.g. tcp:8080:80\)' }
        @{ case = 'a forward on a TAP adapter'; params = @{ TapName = 'tap5'; PortForward = 'tcp:8080:80' }; id = 'InvalidNetworkAdapter'; target = 'bad'; message = "network adapter 'bad': hostfwd=tcp:8080-:80: port forwards are for user-mode networking" }
        @{ case = 'a TAP device in User mode'; params = @{ Mode = 'User'; TapName = 'tap5' }; id = 'InvalidNetworkAdapter'; target = 'bad'; message = "TapName 'tap5': only an adapter in Mode Tap" }
        @{ case = 'Tap mode without a TAP device'; params = @{ Mode = 'Tap' }; id = 'InvalidNetworkAdapter'; target = 'bad'; message = 'Mode Tap needs a TapName' }
    ) {
        Add-XhyveNetworkAdapter nets -Name bad @params -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].FullyQualifiedErrorId | Should -BeLike "$id,*"
        $err[0].TargetObject | Should -Be $target
        $err[0].Exception.Message | Should -Match $message
        Get-XhyveNetworkAdapter nets -Name bad | Should -BeNullOrEmpty
    }
    It 'refuses a second adapter with a MAC, TAP device or host port one has, naming both' {
        Add-XhyveNetworkAdapter nets -Name dup -TapName tap0 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "network adapter 'dup': TAP device tap0 is already used by network adapter 'lan'"
        Add-XhyveNetworkAdapter nets -Name dup -PortForward 'tcp:8080:22' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "host port tcp:8080 is already used by network adapter 'wan'"
        Add-XhyveNetworkAdapter nets -Name dup -MacAddress (Stable 2) -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "MAC address .* is already used by network adapter 'wan'"
        Get-XhyveNetworkAdapter nets -Name dup | Should -BeNullOrEmpty
    }
    It 'changes an adapter: a static MAC, then the stable one again, and a new list of forwards' {
        $a = Set-XhyveNetworkAdapter nets wan -MacAddress 52-54-00-AA-BB-CC -PortForward 'tcp:2222:22' -PassThru
        ($a.MacAddress, $a.MacAddressSource, $a.PortForwards) | Should -Be @('52:54:00:aa:bb:cc', 'Static', 'tcp:2222:22')
        $a = Get-XhyveNetworkAdapter nets -Name wan | Set-XhyveNetworkAdapter -StableMacAddress -PortForward @() -PassThru
        ($a.MacAddress, $a.MacAddressSource) | Should -Be @((Stable 2), 'Stable')
        $a.PortForwards | Should -BeNullOrEmpty
    }
    It 'switches modes: to User drops the TAP device, to Tap needs one and refuses forwards' {
        $a = Set-XhyveNetworkAdapter nets old -Mode User -PortForward 'tcp:9000:90' -PassThru
        ($a.Mode, $a.TapName, $a.PortForwards) | Should -Be @('User', $null, 'tcp:9000:90')
        Set-XhyveNetworkAdapter nets old -Mode Tap -TapName tap9 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "-Mode Tap: the adapter forwards host ports \(tcp:9000:90\).*-PortForward @\(\)"
        Set-XhyveNetworkAdapter nets old -Mode Tap -PortForward @() -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "network adapter 'old': Mode Tap needs a TapName"
        $a = Set-XhyveNetworkAdapter nets old -Mode Tap -TapName tap9 -PortForward @() -PassThru
        ($a.Mode, $a.TapName) | Should -Be @('Tap', 'tap9')
        Set-XhyveNetworkAdapter nets old -PortForward 'tcp:1:1' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'port forwards are for user-mode networking'
        (Get-XhyveNetworkAdapter nets -Name old).PortForwards | Should -BeNullOrEmpty
    }
    It 'refuses -MacAddress with -StableMacAddress, a missing adapter, and changes nothing with -WhatIf' {
        Set-XhyveNetworkAdapter nets wan -MacAddress 52:54:00:00:00:09 -StableMacAddress -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'give one of them'
        Set-XhyveNetworkAdapter nets nosuch -StableMacAddress -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match "VM 'nets' has no network adapter named 'nosuch'"
        Set-XhyveNetworkAdapter nets wan -MacAddress 52:54:00:00:00:09 -WhatIf
        (Get-XhyveNetworkAdapter nets -Name wan).MacAddressSource | Should -Be 'Stable'
    }
    It 'removes adapters by name and from the pipeline' {
        (Remove-XhyveNetworkAdapter nets lan -Confirm:$false -PassThru).Name | Should -Be 'lan'
        Get-XhyveNetworkAdapter nets | Remove-XhyveNetworkAdapter -Confirm:$false
        Get-XhyveNetworkAdapter nets | Should -BeNullOrEmpty
    }
    It 'loads a vm.json written before the typed fields' {
        New-XhyveVM oldnet -MultibootPath $hello | Out-Null
        $file = Join-Path $env:XHYVE_HOME 'vms/oldnet/vm.json'
        (Get-Content -Raw $file) -replace '"networkAdapters": \[\]', '"networkAdapters": [ { "name": "Network Adapter", "slot": 2, "emulation": "virtio-tap", "options": "tap0", "macAddress": "52:54:00:12:34:56" } ]' |
            Set-Content -NoNewline $file
        $a = Get-XhyveNetworkAdapter oldnet
        ($a.Mode, $a.TapName, $a.MacAddress) | Should -Be @('Tap', 'tap0', '52:54:00:12:34:56')
    }
}

Describe 'ConvertFrom-XhyveCommandLine' {
    It 'turns an xhyverun.sh line into a VM object' {
        $vm = ConvertFrom-XhyveCommandLine "-A -m 1G -c 2 -s 0:0,hostbridge -s 31,lpc -l com1,stdio -s 2,virtio-blk,hdd.img -f kexec,vmlinuz,initrd.gz,`"earlyprintk=serial console=ttyS0`"" -Name ubuntu -WarningAction SilentlyContinue
        $vm.MemoryStartupBytes | Should -Be 1GB
        $vm.KernelCommandLine | Should -Be 'earlyprintk=serial console=ttyS0'
        $vm.HardDrives.Path | Should -Be 'hdd.img'
    }
    It 'turns every network adapter spelling into a typed adapter' {
        $line = '-U 6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11 -s 2,virtio-net -s 3,virtio-net,user,mac=52:54:00:12:34:56,hostfwd=tcp:8080-:80,hostfwd=udp:127.0.0.1:5353-:53 ' +
            '-s 4,virtio-net,tap=tap0 -s 5,virtio-tap,tap1,mac=02:00:00:00:00:01 -f kexec,vmlinuz'
        $n = (ConvertFrom-XhyveCommandLine $line).NetworkAdapters
        $n.Mode | Should -Be @('User', 'User', 'Tap', 'Tap')
        $n.TapName | Should -Be @($null, $null, 'tap0', 'tap1')
        $n.MacAddressSource | Should -Be @('Stable', 'Static', 'Stable', 'Static')
        $n[0].MacAddress | Should -Be ([Xhyve.Vmm.Config.MacAddress]::Derive('6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11', [Xhyve.Vmm.Devices.Pci.PciAddress]::new(0, 2, 0)).ToString())
        $n[1].PortForwards | Should -Be @('tcp:8080:80', 'udp:127.0.0.1:5353:53')
    }
    It 'refuses a bad adapter on the line, naming it' {
        ConvertFrom-XhyveCommandLine '-s 2,virtio-net,mac=01:00:5e:00:00:01 -f kexec,vmlinuz' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].Exception.Message | Should -Match 'virtio-net,mac=01:00:5e:00:00:01: mac=01:00:5e:00:00:01: a multicast address'
    }
    It 'reports a bad line as InvalidArgument' {
        ConvertFrom-XhyveCommandLine '-m lots -f kexec,k' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
    It 'refuses at conversion a line the engine would refuse at start, with the engine''s message' {
        ConvertFrom-XhyveCommandLine '-l com1,stdio -f kexec,vmlinuz' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidXhyveCommandLine*'
        $err[0].Exception.Message | Should -Match 'the COM ports live on the LPC bridge; add -s 31,lpc'
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
        # Without options the hello guest prints a line and resets (exit status 2) on every boot: a reset storm.
        New-XhyveVM brief -MultibootPath $hello | Start-XhyveVM -ErrorAction SilentlyContinue -WarningAction SilentlyContinue
        Wait-XhyveVM brief -For Off -TimeoutSec 60 | Select-Object -ExpandProperty ExitCode | Should -Be 2
        Wait-XhyveVM brief -For Running -TimeoutSec 1 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err[0].Exception.Message | Should -Match 'is Off \(exit status 2: reset storm.*reset requested'
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

# Run alone with: ./build.ps1 -Task Pester -PesterTag Network
Describe 'Networking' -Tag 'Network' {
    It 'a VM with a user-mode adapter and a port forward starts, and the host reaches the guest service through the forward' {
        if (-not $kvm) { Set-ItResult -Skipped -Because $noKvm; return }
        if (-not ((Test-XhyveHost) | Where-Object Check -eq 'passt').Passed) {
            Set-ItResult -Skipped -Because 'passt is not installed ($XHYVE_PASST, or passt on PATH): user-mode networking needs it'; return
        }
        # A host port nobody uses: bind it, note it, let it go for passt to take.
        $probe = [Net.Sockets.UdpClient]::new([Net.IPEndPoint]::new([Net.IPAddress]::Loopback, 0))
        $hostPort = $probe.Client.LocalEndPoint.Port
        $probe.Dispose()
        $guestPort = 7777
        $adapter = New-XhyveVM netecho -MultibootPath $vnet -KernelCommandLine "mode=listen listen=$guestPort n=1 secs=120" |
            Add-XhyveNetworkAdapter -PortForward "udp:127.0.0.1:${hostPort}:$guestPort" -PassThru
        $udp = [Net.Sockets.UdpClient]::new()
        try {
            Start-XhyveVM netecho -ErrorAction Stop
            Wait-XhyveVM netecho -For ConsoleText -Pattern 'XHYVE-TEST listening=' -TimeoutSec 120 -ErrorAction Stop | Out-Null
            # The guest got its address by DHCP through passt; the same MAC Get-XhyveNetworkAdapter showed before the start.
            Get-XhyveConsoleOutput netecho | Should -Contain "XHYVE-TEST mac=$($adapter.MacAddress)"
            $udp.Client.ReceiveTimeout = 1000
            $udp.Connect([Net.IPAddress]::Loopback, $hostPort)
            $payload = [Text.Encoding]::ASCII.GetBytes("xhyve-pester-$hostPort")
            $reply = $null
            # UDP may be dropped until the guest has answered passt's ARP: send again until the echo comes back.
            for ($i = 0; $i -lt 20 -and -not $reply; $i++) {
                [void]$udp.Send($payload, $payload.Length)
                $from = [Net.IPEndPoint]::new([Net.IPAddress]::Any, 0)
                try { $reply = $udp.Receive([ref]$from) } catch [Net.Sockets.SocketException] { }
            }
            $reply | Should -Not -BeNullOrEmpty -Because "the guest echoes what arrives at udp:$guestPort through the forward from 127.0.0.1:$hostPort"
            [Text.Encoding]::ASCII.GetString($reply) | Should -Be ([Text.Encoding]::ASCII.GetString($payload))
            Wait-XhyveVM netecho -For ConsoleText -Pattern 'XHYVE-TEST udp_echoed=1' -TimeoutSec 30 | Should -Not -BeNullOrEmpty
        }
        finally {
            $udp.Dispose()
            if ((Get-XhyveVM netecho).State -ne 'Off') { Stop-XhyveVM netecho -TurnOff }
        }
    }
}
