#Requires -Version 7.6
# Runs every example of the module's help (docs/en-US: each cmdlet's EXAMPLES and about_Xhyve's), one It per
# example, so a wrong example fails CI. Each example runs in a fresh working folder holding the files examples
# name (./vmlinuz, ./initrd.gz, disk images), in a runspace of its own with the packaged module, against this
# file's temporary XHYVE_HOME; an error record or an exception fails it. Examples that need a VM to exist or run
# first get it from the $Examples table below (example id -> setup), never from reading the prose.
#   ./build.ps1 -Task Pester -PesterTag Help

BeforeDiscovery {
    $docs = Join-Path $PSScriptRoot '../../docs/en-US'
    # Each example: its file's topic (cmdlet or about_ topic), its number there, its title and code.
    $script:helpExamples = foreach ($file in Get-ChildItem (Join-Path $docs '*.md') | Sort-Object Name) {
        $text = (Get-Content -Raw $file.FullName) -replace "`r`n", "`n"
        $topic = $file.Name -replace '\.help\.md$|\.md$', ''
        # A cmdlet's examples are under '## EXAMPLES', an about topic's under '## Examples'.
        $section = [regex]::Match($text, '(?msi)^## EXAMPLES\n(.*?)(?=^## )').Groups[1].Value
        $n = 0
        foreach ($m in [regex]::Matches($section, '(?ms)^### (?<title>[^\n]+)\n+```powershell\n(?<code>.*?)\n```')) {
            $n++
            @{ Topic = $topic; Number = $n; Id = "$topic-$n"; Title = $m.Groups['title'].Value -replace '^Example \d+:\s*', ''; Code = $m.Groups['code'].Value }
        }
    }
}

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:module = Join-Path $root 'out/Xhyve/Xhyve.psd1'
    $env:XHYVE_HOME = Join-Path ([IO.Path]::GetTempPath()) "xhyve-help-$PID"
    Import-Module $module -Force
    $script:kvm = Test-Path /dev/kvm
    $script:background = $null   # a setup's background shutdown, if any
    $script:work = $null         # the running example's working folder
    $script:fixtures = Join-Path $env:XHYVE_HOME 'fixtures'
    New-Item -ItemType Directory -Force $fixtures | Out-Null

    # ./vmlinuz for the examples: a kernel that -KernelPath boots as it boots Linux's vmlinux (a 64-bit ELF entered
    # in long mode; the multiboot test guests are 32-bit and take -MultibootPath). It prints a banner and a login
    # prompt on COM1, then waits for the ACPI power button and powers off (S5), so examples can watch its console,
    # wait for 'login:', and shut it down gracefully.
    $source = Join-Path $fixtures 'vmlinuz.S'
    Set-Content -Path $source -Value @'
    .code64
    .globl _start
_start:
    lea banner(%rip), %rsi
    mov $0x3f8, %dx             /* COM1 */
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0x402, %dx             /* PM1a_EN: the power button event */
    mov $0x100, %ax
    out %ax, %dx
3:  pause
    mov $0x400, %dx             /* PM1a_STS: until the button is pressed */
    in %dx, %ax
    test $0x100, %ax
    jz 3b
    mov $0x404, %dx             /* PM1a_CNT: SLP_TYP 5 | SLP_EN */
    mov $0x3400, %ax
    out %ax, %dx
4:  hlt
    jmp 4b
banner: .asciz "Linux version 6.1.0 (example kernel)\nweb login: \n"
'@
    # One writable segment at 1 MiB (-N), entered at _start.
    & gcc '-nostdlib' '-static' '-no-pie' '-Wl,-N' '-Wl,-Ttext=0x100000' '-Wl,--build-id=none' '-Wl,-z,noexecstack' '-Wl,--no-warn-rwx-segments' -o (Join-Path $fixtures 'vmlinuz') $source
    if ($LASTEXITCODE -ne 0) { throw "gcc could not build the example kernel from $source" }
    # ./initrd.gz: a gzip file, as an initramfs is (the example kernel does not read it).
    $gz = [IO.Compression.GZipStream]::new([IO.File]::Create((Join-Path $fixtures 'initrd.gz')), [IO.Compression.CompressionLevel]::Optimal)
    try { $bytes = [Text.Encoding]::ASCII.GetBytes("070701 initramfs of the help examples`n"); $gz.Write($bytes, 0, $bytes.Length) } finally { $gz.Dispose() }

    function script:New-WebVM { New-XhyveVM web -KernelPath ./vmlinuz -InitrdPath ./initrd.gz -KernelCommandLine 'console=ttyS0' | Out-Null }
    function script:Start-WebVM {
        New-WebVM
        Start-XhyveVM web
        Wait-XhyveVM web -For ConsoleText -Pattern 'login:' -TimeoutSec 60 -ErrorAction Stop | Out-Null
    }
    # What an example needs before it runs. The key is the setup's name in $Examples.
    $script:setups = @{
        'web'              = { New-WebVM }
        'web-started'      = { New-WebVM; Start-XhyveVM web }
        'web-running'      = { Start-WebVM }
        'web-paused'       = { Start-WebVM; Suspend-XhyveVM web }
        'web-and-db'       = { New-WebVM; New-XhyveVM db -KernelPath ./vmlinuz | Out-Null }
        'web-disks'        = {
            New-WebVM
            Add-XhyveDisk web -Path ./web.img
            Add-XhyveDisk web -Path ./base.img -ReadOnly
            Add-XhyveDisk web -Path ./old.img
        }
        'web-user-adapter' = { New-WebVM; Add-XhyveNetworkAdapter web -PortForward 'tcp:8080:80' }
        # Slot 2: debian.iso; slot 3: an empty drive.
        'web-dvd'          = { New-WebVM; Add-XhyveDvdDrive web -Path ./debian.iso; Add-XhyveDvdDrive web }
        'web-dvd-running'  = {
            New-WebVM; Add-XhyveDvdDrive web -Path ./debian.iso
            Start-XhyveVM web
            Wait-XhyveVM web -For ConsoleText -Pattern 'login:' -TimeoutSec 60 -ErrorAction Stop | Out-Null
        }
        'web-adapters'     = {
            New-WebVM
            Add-XhyveNetworkAdapter web -PortForward 'tcp:8080:80'
            Add-XhyveNetworkAdapter web -Name lan -TapName tap0 -MacAddress 52:54:00:12:34:56
        }
        # Get-XhyveConsoleOutput -Wait follows the console until the VM is off: here it is shut down after 3 s.
        'web-stops-soon'   = {
            Start-WebVM
            $script:background = [powershell]::Create()
            [void]$background.AddScript("Import-Module '$module'; Start-Sleep 3; Stop-XhyveVM web -TimeoutSec 30")
            $script:backgroundRun = $background.BeginInvoke()
        }
    }

    # Runs an example's code in a new runspace with the module, in $Folder; its output as text, its errors as records.
    function script:Invoke-Example([string] $Code, [string] $Folder) {
        $state = [initialsessionstate]::CreateDefault2()
        $state.ImportPSModule($module)
        $ps = [powershell]::Create($state)
        try {
            [void]$ps.AddCommand('Set-Location').AddParameter('LiteralPath', $Folder).AddStatement()
            # Out-String renders what the example writes as a user would see it (format files included).
            [void]$ps.AddScript($Code).AddCommand('Out-String')
            $run = $ps.BeginInvoke()
            if (-not $run.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(240))) {
                $ps.Stop()
                throw "the example did not finish within 240 s"
            }
            $output = $ps.EndInvoke($run) -join ''
            [pscustomobject]@{ Output = $output; Errors = @($ps.Streams.Error) }
        }
        finally { $ps.Dispose() }
    }

    # Runs an interactive example in a child pwsh under a pseudo-terminal (python3's pty): once the console is
    # attached it types Ctrl-] (0x1D) and expects the cmdlet to detach and pwsh to end without an error.
    function script:Invoke-ExampleInTerminal([string] $Code, [string] $Folder) {
        $script = "`$ErrorActionPreference = 'Continue'; Import-Module '$module'; Set-Location -LiteralPath '$Folder'`n$Code`nif (`$Error.Count) { `$Error | ForEach-Object { 'ERROR: ' + `$_ }; exit 1 }"
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($script))
        $pwsh = (Get-Command pwsh -CommandType Application | Select-Object -First 1).Source
        $driver = Join-Path $fixtures 'terminal.py'   # not pty.py: it would shadow the pty module it imports
        Set-Content -Path $driver -Value @'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out, sent, deadline = b"", False, time.time() + 120
while time.time() < deadline:
    if select.select([fd], [], [], 0.5)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
        if b"\x1b[6n" in data:   # the terminal is asked where its cursor is: answer as a terminal would
            os.write(fd, b"\x1b[1;1R")
    if not sent and b"Press Ctrl-] to detach" in out:
        time.sleep(1)            # the console is attached and the history shown
        os.write(fd, b"\x1d")
        sent = True
sys.stdout.write(out.decode("utf-8", "replace"))
_, status = os.waitpid(pid, 0)
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 99)
'@
        $output = & python3 $driver $pwsh -NoProfile -NonInteractive -EncodedCommand $encoded 2>&1 | Out-String
        [pscustomobject]@{ Output = $output; ExitCode = $LASTEXITCODE }
    }

    # Example id -> what it needs. Setup: a key of $setups (none: a fresh store). Images: the disk images the
    # working folder holds (default web.img, base.img, old.img). Kvm: it starts a VM. Terminal: it is interactive.
    # ExpectError: the error id the example documents. Then: what else the example's explanation promises, given
    # the run (Output, Errors).
    # Passt/Port: it starts a user-mode adapter that forwards this host port.
    $script:Examples = @{
        'about_Xhyve-1'                   = @{ Images = @(); Kvm = $true; Passt = $true; Port = 8080 }
        'Add-XhyveDisk-1'                 = @{ Setup = 'web' }
        'Add-XhyveDisk-2'                 = @{ Setup = 'web' }
        'Add-XhyveDisk-3'                 = @{ Setup = 'web'; Then = { (Get-XhyveDisk web).ControllerType | Should -Be 'AHCI' } }
        'Add-XhyveDisk-4'                 = @{ Setup = 'web'; Images = @() }
        'Add-XhyveDvdDrive-1'             = @{ Setup = 'web'; Images = @('debian.iso'); Then = { (Get-XhyveDvdDrive web).Path | Should -BeLike '*/debian.iso' } }
        'Add-XhyveDvdDrive-2'             = @{ Setup = 'web'; Images = @(); Then = { param($run) $run.Output | Should -Match 'None' } }
        'Add-XhyveNetworkAdapter-1'       = @{ Setup = 'web' }
        'Add-XhyveNetworkAdapter-2'       = @{ Setup = 'web' }
        'Connect-XhyveVM-1'               = @{ Setup = 'web-running'; Kvm = $true; Terminal = $true }
        'ConvertFrom-XhyveCommandLine-1'  = @{ Images = @('hdd.img') }
        'Get-XhyveConsoleOutput-1'        = @{ Setup = 'web-running'; Kvm = $true; Then = { param($run) $run.Output | Should -Match 'web login:' } }
        'Get-XhyveConsoleOutput-2'        = @{ Setup = 'web-stops-soon'; Kvm = $true; Then = {
                param($run)
                $run.Output | Should -Match 'web login:'
                (Get-XhyveVM web).State | Should -Be 'Off' -Because '-Wait ends when the VM is off'
            } }
        'Get-XhyveDisk-1'                 = @{ Setup = 'web-disks' }
        'Get-XhyveDisk-2'                 = @{ Setup = 'web-disks' }
        # A narrow host may cut the Path column short: the rows are checked by their other columns.
        'Get-XhyveDvdDrive-1'             = @{ Setup = 'web-dvd'; Images = @('debian.iso'); Then = { param($run) $run.Output | Should -Match 'web\s+2\s+AHCI\s+ISO' } }
        'Get-XhyveDvdDrive-2'             = @{ Setup = 'web-dvd'; Images = @('debian.iso'); Then = { param($run) $run.Output | Should -Match 'web\s+2\s' } }
        'Get-XhyveNetworkAdapter-1'       = @{ Setup = 'web-adapters' }
        'Get-XhyveNetworkAdapter-2'       = @{ Setup = 'web-adapters' }
        'Get-XhyveVM-1'                   = @{ Setup = 'web' }
        'Get-XhyveVM-2'                   = @{ Setup = 'web' }
        'New-XhyveDiskImage-1'            = @{ Setup = 'web'; Images = @() }
        'New-XhyveDiskImage-2'            = @{ Images = @() }
        'New-XhyveVM-2'                   = @{ Kvm = $true }
        'New-XhyveVM-3'                   = @{ Ovmf = $true; Then = { (Get-XhyveVM efi).UefiVariablesPath | Should -Exist; (Get-XhyveVM efi).Generation | Should -Be 2 } }
        'Remove-XhyveDisk-1'              = @{ Setup = 'web-disks' }
        'Remove-XhyveDisk-2'              = @{ Setup = 'web-disks' }
        'Remove-XhyveDvdDrive-1'          = @{ Setup = 'web-dvd'; Images = @('debian.iso'); Then = { (Get-XhyveDvdDrive web).Slot | Should -Be 2 } }
        'Remove-XhyveDvdDrive-2'          = @{ Setup = 'web-dvd'; Images = @('debian.iso'); Then = { Get-XhyveDvdDrive web | Should -BeNullOrEmpty } }
        'Remove-XhyveNetworkAdapter-1'    = @{ Setup = 'web-adapters' }
        'Remove-XhyveVM-1'                = @{ Setup = 'web' }
        'Remove-XhyveVM-2'                = @{ Setup = 'web-and-db' }
        'Restart-XhyveVM-1'               = @{ Setup = 'web-running'; Kvm = $true }
        'Restart-XhyveVM-2'               = @{ Setup = 'web-running'; Kvm = $true }
        'Resume-XhyveVM-1'                = @{ Setup = 'web-paused'; Kvm = $true }
        'Set-XhyveDvdDrive-1'             = @{ Setup = 'web-dvd'; Images = @('debian.iso', 'firmware.iso'); Then = { (Get-XhyveDvdDrive web -Slot 2).Path | Should -BeLike '*/firmware.iso' } }
        'Set-XhyveDvdDrive-2'             = @{ Setup = 'web-dvd'; Images = @('debian.iso'); Then = { (Get-XhyveDvdDrive web).DvdMediaType | Should -Be @('None', 'None') } }
        'Set-XhyveDvdDrive-3'             = @{ Setup = 'web-dvd-running'; Images = @('debian.iso', 'firmware.iso'); Kvm = $true; Then = {
                param($run)
                $run.Output | Should -Match '2\s+ISO'
                $socket = Join-Path (Get-XhyveVM web).Path 'control.sock'
                (& (Join-Path $root 'out/Xhyve/xhyve') ctl $socket media | ConvertFrom-Json).drives[0].medium | Should -BeLike '*/firmware.iso' -Because 'the running engine has the new disc'
            } }
        'Set-XhyveNetworkAdapter-1'       = @{ Setup = 'web-user-adapter' }
        'Set-XhyveNetworkAdapter-2'       = @{ Setup = 'web-user-adapter' }
        'Set-XhyveNetworkAdapter-3'       = @{ Setup = 'web-adapters' }
        'Set-XhyveVM-1'                   = @{ Setup = 'web' }
        'Set-XhyveVM-2'                   = @{ Setup = 'web' }
        'Set-XhyveVM-3'                   = @{ Setup = 'web'; ExpectError = 'InvalidVMDefinition'; Then = {
                param($run)
                $run.Errors[0].Exception.Message | Should -Match "ExtraArguments '-m 4G': the memory size belongs to the VM; set MemoryStartupBytes"
                (Get-XhyveVM web).ExtraArguments | Should -BeNullOrEmpty -Because 'nothing is stored'
            } }
        'Start-XhyveVM-1'                 = @{ Setup = 'web'; Kvm = $true }
        'Start-XhyveVM-2'                 = @{ Setup = 'web-and-db'; Kvm = $true }
        'Stop-XhyveVM-1'                  = @{ Setup = 'web-running'; Kvm = $true; Then = {
                $vm = Get-XhyveVM web
                ($vm.State, $vm.ExitCode) | Should -Be @('Off', 0) -Because 'the guest shut down through the power button'
            } }
        'Stop-XhyveVM-2'                  = @{ Setup = 'web-running'; Kvm = $true }
        'Suspend-XhyveVM-1'               = @{ Setup = 'web-running'; Kvm = $true }
        'Wait-XhyveVM-1'                  = @{ Setup = 'web'; Kvm = $true }
        'Wait-XhyveVM-2'                  = @{ Setup = 'web-started'; Kvm = $true }
    }
}

AfterAll {
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $env:XHYVE_HOME
}

Describe 'The help examples' -Tag 'Help' {
    AfterEach {
        if ($script:background) {
            try { [void]$background.EndInvoke($backgroundRun) } catch { }
            $background.Dispose()
            $script:background = $null
        }
        # Every VM an example or its setup made goes: the running ones are turned off first.
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
        Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
        if ($script:work) { Set-Location $root; Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }
    }

    It 'has a table entry only for examples that exist' {
        $ids = $helpExamples | ForEach-Object Id
        $Examples.Keys | Where-Object { $_ -notin $ids } | Should -BeNullOrEmpty -Because 'a renumbered or removed example leaves its setup behind'
    }

    It '<Topic> example <Number>: <Title>' -ForEach $helpExamples {
        $entry = if ($Examples.ContainsKey($Id)) { $Examples[$Id] } else { @{} }
        if ($entry['Kvm'] -and -not $kvm) { Set-ItResult -Skipped -Because '/dev/kvm is absent: the example starts a VM'; return }
        if ($entry['Passt'] -and -not ((Test-XhyveHost) | Where-Object Check -eq 'passt').Passed) {
            Set-ItResult -Skipped -Because 'passt is not installed: the example starts a user-mode network adapter'; return
        }
        if ($entry['Ovmf'] -and -not (Test-Path /usr/share/OVMF/OVMF_CODE_4M.fd)) {
            Set-ItResult -Skipped -Because "Debian's ovmf package is not installed: the example creates a generation 2 VM"; return
        }
        if ($entry['Port']) {
            try { $probe = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Any, $entry['Port']); $probe.Start(); $probe.Stop() }
            catch { Set-ItResult -Skipped -Because "host port $($entry['Port']), which the example forwards, is in use on this machine"; return }
        }
        $script:work = Join-Path $env:XHYVE_HOME "work-$Id"
        New-Item -ItemType Directory -Force $work | Out-Null
        Copy-Item (Join-Path $fixtures 'vmlinuz'), (Join-Path $fixtures 'initrd.gz') $work
        $images = if ($entry.ContainsKey('Images')) { $entry['Images'] } else { @('web.img', 'base.img', 'old.img') }
        foreach ($image in $images) { $f = [IO.File]::Create((Join-Path $work $image)); $f.SetLength(16MB); $f.Dispose() }
        Set-Location $work
        # A setup that goes wrong stops the test here, with its own error, rather than failing the example later.
        $ErrorActionPreference = 'Stop'
        if ($entry['Setup']) { & $setups[$entry['Setup']] }
        $ErrorActionPreference = 'Continue'

        if ($entry['Terminal']) {
            $run = Invoke-ExampleInTerminal $Code $work
            $run.Output | Should -Match "Connected to web's console" -Because $run.Output
            $run.Output | Should -Match 'web login:' -Because 'the -History replay shows what the guest printed before'
            $run.Output | Should -Match 'Detached from web' -Because $run.Output
            $run.ExitCode | Should -Be 0 -Because $run.Output
            (Get-XhyveVM web).State | Should -Be 'Running' -Because 'detaching leaves the VM running'
            return
        }
        $run = Invoke-Example $Code $work
        $errors = $run.Errors | ForEach-Object { "$($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
        if ($entry['ExpectError']) {
            $errors | Should -HaveCount 1 -Because "the example documents one error ($($entry['ExpectError'])); got: $($errors -join '; ')"
            $run.Errors[0].FullyQualifiedErrorId | Should -BeLike "$($entry['ExpectError']),*"
        }
        else {
            # An example new to the docs that needs a VM first fails here until the table gives it a setup: say so.
            $hint = if ($Examples.ContainsKey($Id)) { '' } else { " ($Id has no entry in the `$Examples table: an example that needs a VM, or files other than ./vmlinuz, ./initrd.gz, ./web.img, ./base.img and ./old.img, needs one)" }
            $errors | Should -BeNullOrEmpty -Because "the example must run without errors$hint; its output was:`n$($run.Output)"
        }
        if ($entry['Then']) { & $entry['Then'] $run }
    }
}

Describe 'The packaged help' -Tag 'Help' {
    It 'Get-Help about_Xhyve shows the about topic from the module''s en-US folder' {
        Join-Path (Split-Path $module) 'en-US/about_Xhyve.help.txt' | Should -Exist
        $topic = Get-Help about_Xhyve | Out-String
        $topic | Should -Match 'SHORT DESCRIPTION'
        $topic | Should -Match 'XHYVE_HOME'
        $topic | Should -Match 'NotResponding'
        $topic | Should -Not -Match '\]\('   # markdown links became their text
    }
    It 'shows a parameter''s default from the code, and related links that end with about_Xhyve' {
        (Get-Help Stop-XhyveVM -Parameter TimeoutSec).defaultValue | Should -Be '60'
        (Get-Help New-XhyveVM -Parameter MemoryStartupBytes).defaultValue | Should -Be '256MB'
        (Get-Help Add-XhyveDisk -Parameter Slot).defaultValue | Should -Be 'The lowest free slot from 2'
        $links = (Get-Help Start-XhyveVM -Full).relatedLinks.navigationLink.linkText
        $links | Should -Contain 'Wait-XhyveVM'
        $links[-1] | Should -Be 'about_Xhyve'
    }
}
