#Requires -Version 7.6
# Pester 5 tests of the VM store as the cmdlets see it, and of the module's input handling: names in any case, a
# store that cannot be used, ConvertFrom-XhyveCommandLine -Save's paths and pasted lines, memory against the host's
# RAM, Remove-XhyveVM -Force's prompt, Get-XhyveVM's pipeline input and Connect-XhyveVM's terminal. Run by
# `./build.ps1 -Task Pester -PesterTag Store` (which packages the module into out/Xhyve first).

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:home0 = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-store-$PID"
    $env:XHYVE_HOME = $home0
    $script:module = Join-Path $root 'out/Xhyve/Xhyve.psd1'
    Import-Module $module -Force
    $script:hello = Join-Path $root 'tests/guests/build/hello.elf'
    $script:work = Join-Path $home0 'work'
    New-Item -ItemType Directory -Force $work | Out-Null
    $script:kvm = Test-Path /dev/kvm
    $script:pwsh = (Get-Command pwsh -CommandType Application | Select-Object -First 1).Source
    $script:memTotal = [long]((Get-Content /proc/meminfo | Select-String '^MemTotal:\s+(\d+) kB').Matches[0].Groups[1].Value) * 1KB

    # Runs a command in a child pwsh that cannot prompt (-NonInteractive, input from /dev/null): a prompt there is an
    # error instead of a wait. Returns its output lines.
    function Invoke-Child([string] $Command) {
        $script = "Import-Module '$module'; `$ErrorActionPreference = 'Continue'; $Command"
        bash -c 'exec "$0" -NoProfile -NonInteractive -Command "$1" < /dev/null 2>&1' $pwsh $script
    }

    # The errors a command reports, terminating or not.
    function Get-Errors([scriptblock] $Command) {
        try { @(& $Command 2>&1 | Where-Object { $_ -is [Management.Automation.ErrorRecord] }) }
        catch { @($_) }
    }
}

AfterAll {
    $env:XHYVE_HOME = $home0
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $home0
}

Describe 'VM names are case-insensitive and keep their case' -Tag Store {
    BeforeAll { New-XhyveVM Web -MultibootPath $hello | Out-Null }

    It 'finds a VM by its name in any case, and by wildcards in any case' {
        (Get-XhyveVM WEB).Name | Should -BeExactly 'Web'
        (Get-XhyveVM web).Name | Should -BeExactly 'Web'
        (Get-XhyveVM 'wE*').Name | Should -BeExactly 'Web'
    }
    It 'refuses a new VM whose name is taken in another case, as VMExists, and stores nothing' {
        New-XhyveVM web -MultibootPath $hello -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VMExists,*'
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $err[0].Exception.Message | Should -Match "'Web' already exists"
        @(Get-XhyveVM).Name | Should -BeExactly @('Web')
    }
    It 'changes, starts and removes a VM named in another case' {
        (Set-XhyveVM WEB -ProcessorCount 2 -PassThru).Name | Should -BeExactly 'Web'
        (Get-XhyveVM web).ProcessorCount | Should -Be 2
        New-XhyveVM Temp -MultibootPath $hello | Out-Null
        Remove-XhyveVM TEMP -Confirm:$false
        Get-XhyveVM temp -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
    It 'completes VM names typed in another case' {
        (TabExpansion2 'Get-XhyveVM WE' 14).CompletionMatches.CompletionText | Should -Be 'Web'
    }
    It 'reports two VM folders that differ only in case, made by hand, naming both' {
        New-XhyveVM twin -MultibootPath $hello | Out-Null
        $vms = Join-Path $home0 'vms'
        New-Item -ItemType Directory (Join-Path $vms 'TWIN') | Out-Null
        Copy-Item (Join-Path $vms 'twin/vm.json') (Join-Path $vms 'TWIN/vm.json')
        try {
            Get-XhyveVM twin -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].Exception.Message | Should -Match ([regex]::Escape((Join-Path $vms 'twin')))
            $err[0].Exception.Message | Should -Match ([regex]::Escape((Join-Path $vms 'TWIN')))
            New-XhyveVM Twin -MultibootPath $hello -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].Exception.Message | Should -Match 'differ only in case'
        }
        finally { Remove-Item -Recurse -Force (Join-Path $vms 'TWIN') }
        Remove-XhyveVM twin -Force
    }
}

Describe 'A VM store that cannot be used' -Tag Store {
    BeforeAll {
        $script:blocker = Join-Path $work 'blocker'
        Set-Content $blocker 'a file where a folder should be'
    }
    AfterEach { $env:XHYVE_HOME = $home0 }

    It 'is a VMStoreUnavailable error naming <Path> from every cmdlet, never a .NET message' -ForEach @(
        @{ StoreHome = '/proc/xhyve-store'; Path = '/proc' }
        @{ StoreHome = 'FILE'; Path = 'FILE' }
        @{ StoreHome = 'FILE/xhyve'; Path = 'FILE' }
    ) {
        $env:XHYVE_HOME = $StoreHome -replace '^FILE', $blocker
        $expected = $Path -replace '^FILE', $blocker
        $commands = @(
            { Get-XhyveVM }
            { Get-XhyveVM web }
            { New-XhyveVM web -MultibootPath $hello }
            { Set-XhyveVM web -ProcessorCount 2 }
            { Start-XhyveVM web }
            { Remove-XhyveVM web -Force }
            { ConvertFrom-XhyveCommandLine "-f multiboot,$hello" -Name web -Save }
            { Get-XhyveNetworkAdapter web }
        )
        foreach ($command in $commands) {
            $err = @(Get-Errors $command)
            $err.Count | Should -BeGreaterThan 0 -Because "$command"
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VMStoreUnavailable,*' -Because "$command"
            $err[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable' -Because "$command"
            $err[0].TargetObject | Should -Be $expected -Because "$command"
            $err[0].Exception.Message | Should -Match ([regex]::Escape($env:XHYVE_HOME)) -Because "$command"
        }
        $check = Test-XhyveHost | Where-Object Check -eq 'VM store'
        $check.Passed | Should -BeFalse
        $check.Detail | Should -Match ([regex]::Escape($expected))
        $check.Advice | Should -Match 'XHYVE_HOME'
        Test-XhyveHost -Quiet | Should -BeFalse
        Test-Path $env:XHYVE_HOME | Should -Be ($StoreHome -eq 'FILE')   # nothing was created
    }
    It 'is nothing to Get-XhyveVM while it does not exist yet, and passes Test-XhyveHost' {
        $env:XHYVE_HOME = Join-Path $work 'not-yet/store'
        Get-XhyveVM -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
        (Test-XhyveHost | Where-Object Check -eq 'VM store').Passed | Should -BeTrue
        Test-Path (Join-Path $work 'not-yet') | Should -BeFalse
    }
}

Describe 'ConvertFrom-XhyveCommandLine -Save' -Tag Store {
    BeforeAll {
        $script:conv = Join-Path $work 'conv'
        New-Item -ItemType Directory -Force $conv | Out-Null
        foreach ($f in 'vmlinuz', 'initrd.gz', 'disk.img', 'mod.bin') { Set-Content (Join-Path $conv $f) 'x' }
        Copy-Item $hello (Join-Path $conv 'hello.elf')
    }
    BeforeEach { Push-Location $conv }
    AfterEach { Pop-Location }

    It 'stores kernel, initrd and disk paths made absolute from the current location' {
        $vm = ConvertFrom-XhyveCommandLine '-m 64M -f kexec,vmlinuz,initrd.gz,"console=ttyS0" -s 2,virtio-blk,disk.img' -Name rel -Save
        $vm.KernelPath | Should -Be (Join-Path $conv 'vmlinuz')
        $vm.InitrdPath | Should -Be (Join-Path $conv 'initrd.gz')
        (Get-XhyveVM rel).HardDrives[0].Path | Should -Be (Join-Path $conv 'disk.img')
    }
    It 'stores multiboot kernel and module paths made absolute' {
        $vm = ConvertFrom-XhyveCommandLine '-f multiboot,hello.elf,mod.bin' -Name mb -Save
        $vm.MultibootPath | Should -Be (Join-Path $conv 'hello.elf')
        (Get-XhyveVM mb).MultibootModules[0].Path | Should -Be (Join-Path $conv 'mod.bin')
    }
    It 'refuses a missing <What> as FileNotFound naming the flag and the path, and stores nothing' -ForEach @(
        @{ What = 'kernel'; Line = '-f kexec,nokernel'; Flag = '-f kexec kernel nokernel' }
        @{ What = 'initrd'; Line = '-f kexec,vmlinuz,noinitrd'; Flag = '-f kexec initrd noinitrd' }
        @{ What = 'multiboot module'; Line = '-f multiboot,hello.elf,nomod'; Flag = '-f multiboot module nomod' }
        @{ What = 'disk'; Line = '-f kexec,vmlinuz -s 3,virtio-blk,nodisk.img'; Flag = '-s 3,virtio-blk,nodisk.img' }
    ) {
        ConvertFrom-XhyveCommandLine $Line -Name missing -Save -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'FileNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].Exception.Message | Should -Match ([regex]::Escape($Flag))
        $err[0].Exception.Message | Should -Match ([regex]::Escape($conv))
        Get-XhyveVM missing -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
    It 'takes a missing disk with size=, which the engine creates' {
        $vm = ConvertFrom-XhyveCommandLine '-f kexec,vmlinuz -s 3,virtio-blk,new.img,size=1M' -Name sized -Save
        $vm.HardDrives[0].Path | Should -Be (Join-Path $conv 'new.img')
    }
    It 'skips a leading xhyve or path to xhyve' {
        (ConvertFrom-XhyveCommandLine 'xhyve -c 2 -f kexec,vmlinuz').ProcessorCount | Should -Be 2
        (ConvertFrom-XhyveCommandLine '/usr/local/bin/xhyve -c 3 -f kexec,vmlinuz').ProcessorCount | Should -Be 3
        (ConvertFrom-XhyveCommandLine @('xhyve', '-c', '4', '-f', 'kexec,vmlinuz')).ProcessorCount | Should -Be 4
    }
    It 'joins backslash-newline continuations pasted from a shell script, in one string' {
        $line = "sudo_not_needed=1; xhyve -A \`n  -c 2 \`n  -m 1G \`r`n  -f kexec,vmlinuz,initrd.gz,`"earlyprintk=serial console=ttyS0`"" -replace '^sudo_not_needed=1; ', ''
        $vm = ConvertFrom-XhyveCommandLine $line -Name pasted -Save
        $vm.ProcessorCount | Should -Be 2
        $vm.MemoryStartupBytes | Should -Be 1GB
        $vm.KernelCommandLine | Should -Be 'earlyprintk=serial console=ttyS0'
        $vm.KernelPath | Should -Be (Join-Path $conv 'vmlinuz')
    }
    It 'joins an array of lines ending with backslashes, as Get-Content reads a script, by argument and by pipeline' {
        $lines = @('xhyve -A \', '  -c 2 \', '  -m 512M \', '  -f kexec,vmlinuz,,"console=ttyS0 quiet"')
        $vm = ConvertFrom-XhyveCommandLine $lines
        ($vm.ProcessorCount, $vm.MemoryStartupBytes, $vm.KernelCommandLine) | Should -Be @(2, 512MB, 'console=ttyS0 quiet')
        $piped = $lines | ConvertFrom-XhyveCommandLine
        ($piped.ProcessorCount, $piped.MemoryStartupBytes, $piped.KernelCommandLine) | Should -Be @(2, 512MB, 'console=ttyS0 quiet')
    }
}

Describe 'Memory above the host''s physical memory' -Tag Store {
    It 'is refused by New-XhyveVM, naming both sizes, and nothing is stored' {
        New-XhyveVM huge -MultibootPath $hello -MemoryStartupBytes ($memTotal + 1GB) -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'MemoryExceedsHost,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].Exception.Message | Should -Match '\d+(\.\d)? GB is more than this host''s physical memory \(\d+(\.\d)? GB'
        Get-XhyveVM huge -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
    It 'is fine up to MemTotal' {
        (New-XhyveVM fits -MultibootPath $hello -MemoryStartupBytes ([long][math]::Floor($memTotal / 4KB) * 4KB)).Name | Should -Be 'fits'
        Remove-XhyveVM fits -Force
    }
    It 'is refused by Set-XhyveVM, and the VM is unchanged' {
        New-XhyveVM small -MultibootPath $hello | Out-Null
        Set-XhyveVM small -MemoryStartupBytes ($memTotal + 1GB) -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'MemoryExceedsHost,*'
        (Get-XhyveVM small).MemoryStartupBytes | Should -Be 256MB
    }
    It 'is refused by Start-XhyveVM for a definition edited by hand, and the VM stays off' {
        $file = Join-Path $home0 'vms/small/vm.json'
        $json = Get-Content -Raw $file | ConvertFrom-Json
        $json.memoryStartupBytes = [long]([math]::Ceiling(($memTotal + 1GB) / 4KB) * 4KB)
        $json | ConvertTo-Json -Depth 10 | Set-Content $file
        Start-XhyveVM small -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'more than this host''s physical memory'
        (Get-XhyveVM small).State | Should -Be 'Off'
    }
}

Describe 'Remove-XhyveVM -Force and confirmation' -Tag Store {
    It 'removes without a prompt under -Force even when $ConfirmPreference would ask' {
        New-XhyveVM forced -MultibootPath $hello | Out-Null
        $out = Invoke-Child "`$ConfirmPreference = 'Low'; Remove-XhyveVM forced -Force; 'exit:' + `$?"
        $out | Should -Contain 'exit:True'
        Get-XhyveVM forced -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
    It 'asks without -Force, so a session that cannot prompt keeps the VM' {
        New-XhyveVM asked -MultibootPath $hello | Out-Null
        $out = Invoke-Child 'Remove-XhyveVM asked' | Out-String
        $out | Should -Match 'NonInteractive'
        Get-XhyveVM asked | Should -Not -BeNullOrEmpty
    }
    It 'still asks with -Force when -Confirm is given explicitly' {
        $out = Invoke-Child 'Remove-XhyveVM asked -Force -Confirm' | Out-String
        $out | Should -Match 'NonInteractive'
        Get-XhyveVM asked | Should -Not -BeNullOrEmpty
    }
    It 'only reports with -Force -WhatIf' {
        Remove-XhyveVM asked -Force -WhatIf
        Get-XhyveVM asked | Should -Not -BeNullOrEmpty
        Remove-XhyveVM asked -Force
    }
}

Describe 'Get-XhyveVM pipeline input' -Tag Store {
    BeforeAll { $script:piped = New-XhyveVM Piped -MultibootPath $hello }

    It 'takes -Name as -VMName' {
        (Get-XhyveVM -VMName piped).Name | Should -BeExactly 'Piped'
        ([pscustomobject]@{ VMName = 'PIPED' } | Get-XhyveVM).Name | Should -BeExactly 'Piped'
    }
    It 'takes -Id as -VMId, and by property name from the pipeline' {
        (Get-XhyveVM -VMId $piped.Id).Name | Should -BeExactly 'Piped'
        ([pscustomobject]@{ VMId = $piped.Id } | Get-XhyveVM).Name | Should -BeExactly 'Piped'
    }
    It 'takes a network adapter from the pipeline' {
        (Add-XhyveNetworkAdapter Piped -PassThru | Get-XhyveVM).Name | Should -BeExactly 'Piped'
    }
}

Describe 'Connect-XhyveVM in a terminal' -Tag Store {
    It 'refuses input from /dev/null with a clear error' {
        New-XhyveVM term -MultibootPath $hello | Out-Null
        $out = Invoke-Child 'Connect-XhyveVM term -ErrorVariable e -ErrorAction SilentlyContinue; $e[0].FullyQualifiedErrorId; $e[0].Exception.Message'
        $out[0] | Should -BeLike 'NoTerminal,*'
        $out[1] | Should -Match 'needs an interactive terminal.*Get-XhyveConsoleOutput term -Wait'
    }
    It 'sends what is typed and detaches on the first Ctrl-], every time' {
        if (-not $kvm) { Set-ItResult -Skipped -Because '/dev/kvm is absent: the test attaches to a running VM'; return }
        if (-not (Get-Command python3 -ErrorAction SilentlyContinue)) { Set-ItResult -Skipped -Because 'python3 is needed for the pseudo-terminal'; return }
        New-XhyveVM echo -MultibootPath $hello -KernelCommandLine 'echo=3 spin=1' | Start-XhyveVM
        Wait-XhyveVM echo -For ConsoleText -Pattern 'echo_ready' -TimeoutSec 30 | Out-Null
        # pwsh on a pseudo-terminal; 'abc' then one Ctrl-] per connection, twice: each must end the cmdlet in a second.
        $driver = Join-Path $work 'pty-driver.py'
        Set-Content $driver @'
import os, pty, select, sys, time
pwsh, module, home, keys = sys.argv[1:5]
os.environ["XHYVE_HOME"] = home
pid, fd = pty.fork()
if pid == 0:
    os.execv(pwsh, [pwsh, "-NoProfile", "-NonInteractive", "-Command",
        f"Import-Module '{module}'; foreach ($i in 1..2) {{ Connect-XhyveVM echo; 'back' + $i }}"])
out = b""
def wait_for(text, timeout):
    global out
    end = time.time() + timeout
    while text.encode() not in out:
        left = end - time.time()
        if left <= 0: return False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try: out += os.read(fd, 4096)
            except OSError: return False
    return True
ok = True
for i, k in ((1, keys), (2, "")):
    if not wait_for("Press Ctrl-] to detach", 30): print("NOT CONNECTED", i); ok = False; break
    time.sleep(0.5)
    os.write(fd, k.encode() + b"\x1d")
    start = time.time()
    if not wait_for(f"back{i}", 5): print("NOT DETACHED", i); ok = False; break
    print(f"DETACHED {i} {time.time() - start:.2f}")
if not ok: os.kill(pid, 9)   # a console that did not let go would hold the test forever
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
'@
        $out = python3 $driver $pwsh $module $home0 'abc'
        $detached = $out | Where-Object { $_ -match '^DETACHED (\d) ([\d.]+)' } | ForEach-Object { [double]$_.Split(' ')[2] }
        @($detached).Count | Should -Be 2 -Because ($out -join "`n")
        $detached | ForEach-Object { $_ | Should -BeLessThan 1.0 }
        Wait-XhyveVM echo -For ConsoleText -Pattern 'echo=abc' -TimeoutSec 10 | Should -Not -BeNullOrEmpty
        Stop-XhyveVM echo -TurnOff
    }
}
