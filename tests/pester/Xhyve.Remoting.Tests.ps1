#Requires -Version 7.6
# The module over PowerShell's SSH remoting (Invoke-Command -HostName): the "remote" host is this machine, through
# an sshd of the test's own on 127.0.0.1 (its config, host key, client key, authorized_keys, known_hosts and pid file
# all in a temporary folder). sshd gives the session's pwsh the test's VM store (XHYVE_HOME) and the built module
# (out/Xhyve) on PSModulePath. Run alone with: ./build.ps1 -Task Pester -PesterTag Remoting
#
# The ssh client gets every option it needs with -Options (UserKnownHostsFile in the temporary folder, strict host
# key checking against the test's host key, no agent or other identities), so nothing is read from or written to
# the user's ~/.ssh; a test checks that.

BeforeAll {
    $root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:hello = Join-Path $root 'tests/guests/build/hello.elf'
    $script:t = Join-Path ([IO.Path]::GetTempPath()) "xhyve-remoting-$PID"
    $script:store = Join-Path $t 'home'
    $script:user = [Environment]::UserName

    $sshd = (Get-Command sshd -CommandType Application -ErrorAction Ignore | Select-Object -First 1).Source
    if (-not $sshd -and (Test-Path /usr/sbin/sshd)) { $sshd = '/usr/sbin/sshd' }   # sbin is not on every PATH
    $script:skip = if (-not $sshd) { 'sshd is not installed (scripts/setup-debian.sh installs openssh-server)' }
        elseif (@(Get-Command ssh, ssh-keygen -CommandType Application -ErrorAction Ignore | Sort-Object Name -Unique).Count -lt 2) {
            'ssh or ssh-keygen is not installed (scripts/setup-debian.sh installs openssh-client)' }
    if ($skip) { Write-Host "Remoting tests skip: $skip"; return }

    # The user's ~/.ssh as ssh sees it (the passwd entry's home, not $HOME), to prove it is left as it was.
    $passwdHome = (& getent passwd $user) -split ':' | Select-Object -Index 5
    $script:userSsh = Join-Path $(if ($passwdHome) { $passwdHome } else { $HOME }) '.ssh'
    function Get-Snapshot([string] $Path) {
        if (Test-Path -LiteralPath $Path) {
            Get-ChildItem -LiteralPath $Path -Recurse -Force -ErrorAction Ignore | ForEach-Object { "$($_.FullName) $($_.Length) $($_.LastWriteTimeUtc.Ticks)" }
        }
        else { '<absent>' }
    }
    $script:sshBefore = @(Get-Snapshot $userSsh)

    New-Item -ItemType Directory -Force $t, $store, (Join-Path $t 'work') | Out-Null
    foreach ($key in 'host_key', 'client_key') {
        & ssh-keygen -q -t ed25519 -N '' -C "xhyve-remoting-test $key" -f (Join-Path $t $key)
        if ($LASTEXITCODE -ne 0) { throw "ssh-keygen $key failed ($LASTEXITCODE)" }
    }
    Copy-Item (Join-Path $t 'client_key.pub') (Join-Path $t 'authorized_keys')

    # A free port: the kernel picks one for a listener that is closed at once (sshd binds it a moment later).
    $probe = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $probe.Start(); $script:port = $probe.LocalEndpoint.Port; $probe.Stop()

    # The session's pwsh is this one's ($PSHOME has the executable also when pwsh is a dotnet tool).
    $pwsh = Join-Path $PSHOME 'pwsh'
    $setEnv = @("XHYVE_HOME=$store", "PSModulePath=$(Join-Path $root 'out')")
    if ($env:DOTNET_ROOT) { $setEnv += "DOTNET_ROOT=$env:DOTNET_ROOT" }   # pwsh finds .NET by it (the engine host is native)
    $config = Join-Path $t 'sshd_config'
    Set-Content $config @(
        'ListenAddress 127.0.0.1'
        "Port $port"
        "HostKey $t/host_key"
        "PidFile $t/sshd.pid"
        "AuthorizedKeysFile $t/authorized_keys"
        'AuthenticationMethods publickey'
        'PasswordAuthentication no'
        'KbdInteractiveAuthentication no'
        'PermitRootLogin prohibit-password'
        "AllowUsers $user"
        'UsePAM no'
        # The keys live in a temporary folder, not a home folder with sshd's expected ownership and modes.
        'StrictModes no'
        ('SetEnv ' + (($setEnv | ForEach-Object { "`"$_`"" }) -join ' '))
        "Subsystem powershell $pwsh -sshs -NoLogo -NoProfile"
    )
    Set-Content (Join-Path $t 'known_hosts') "[127.0.0.1]:$port $(((Get-Content (Join-Path $t 'host_key.pub')) -split ' ')[0..1] -join ' ')"

    # sshd refuses to start without its privilege separation folder, which the ssh service makes at boot; where
    # the service never ran (containers, setup leaves it off) the test makes the same empty root-owned folder.
    if (-not (Test-Path /run/sshd)) { New-Item -ItemType Directory /run/sshd | Out-Null }
    & $sshd -t -f $config
    if ($LASTEXITCODE -ne 0) { throw "sshd -t rejected $config ($LASTEXITCODE)" }
    $script:sshdLog = Join-Path $t 'sshd.log'
    # sshd re-executes itself, so it is started by its absolute path; -D -e: in the foreground, logging to stderr.
    $script:sshdProcess = Start-Process -FilePath $sshd -ArgumentList '-f', $config, '-D', '-e' -RedirectStandardError $sshdLog -PassThru
    $deadline = [DateTime]::UtcNow.AddSeconds(30)
    while ($true) {
        if ($sshdProcess.HasExited) { throw "sshd exited ($($sshdProcess.ExitCode)): $(Get-Content -Raw $sshdLog)" }
        $client = [Net.Sockets.TcpClient]::new()
        try { $client.Connect([Net.IPAddress]::Loopback, $port); break } catch { } finally { $client.Dispose() }
        if ([DateTime]::UtcNow -gt $deadline) { throw "sshd did not listen on 127.0.0.1:$port within 30 s: $(Get-Content -Raw $sshdLog)" }
        Start-Sleep -Milliseconds 200
    }

    # What a user types, with the ssh options that keep the client to the test's files.
    $script:remote = @{
        HostName    = '127.0.0.1'
        Port        = $port
        UserName    = $user
        KeyFilePath = Join-Path $t 'client_key'
        Options     = @{
            UserKnownHostsFile    = Join-Path $t 'known_hosts'
            GlobalKnownHostsFile  = '/dev/null'
            StrictHostKeyChecking = 'yes'
            IdentitiesOnly        = 'yes'
            IdentityAgent         = 'none'
            BatchMode             = 'yes'
        }
    }
}

AfterAll {
    if ($skip) { return }
    if ($sshdProcess -and -not $sshdProcess.HasExited) { Stop-Process -Id $sshdProcess.Id; $sshdProcess.WaitForExit(10000) | Out-Null }
    # A VM a failed test left running in the test's store is turned off from here, with the built module.
    $saved = $env:XHYVE_HOME
    try {
        $env:XHYVE_HOME = $store
        Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1')
        Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    }
    finally { $env:XHYVE_HOME = $saved }
    Remove-Item -LiteralPath $t -Recurse -Force -ErrorAction Ignore
}

Describe 'The cmdlets over SSH remoting' -Tag 'Remoting' {
    It 'run in the pwsh that sshd starts for the session, with that host''s VM store and module' {
        if ($skip) { Set-ItResult -Skipped -Because $skip; return }
        $session = Invoke-Command @remote -ErrorAction Stop {
            [pscustomobject]@{ ProcessId = $PID; Store = $env:XHYVE_HOME; Module = (Import-Module Xhyve -PassThru).ModuleBase; Cmdlets = @(Get-Command -Module Xhyve).Count }
        }
        $session.PSComputerName | Should -Be '127.0.0.1'
        $session.ProcessId | Should -Not -Be $PID
        $session.Store | Should -Be $store
        $session.Module | Should -Be (Join-Path $root 'out/Xhyve')
        $session.Cmdlets | Should -BeGreaterThan 0
    }

    It 'drive a VM from New to Remove, the objects that come back piped into the next remote call by Name and VMName' {
        if ($skip) { Set-ItResult -Skipped -Because $skip; return }
        if (-not (Test-Path /dev/kvm)) { Set-ItResult -Skipped -Because '/dev/kvm is absent: VM-starting tests need KVM'; return }
        Invoke-Command @remote -ErrorAction Stop { param($Guest) New-XhyveVM web -MultibootPath $Guest -KernelCommandLine 'spin=1' } -ArgumentList $hello | Out-Null

        $vm = Invoke-Command @remote -ErrorAction Stop { Get-XhyveVM web }
        # Not an XhyveVM here: a property bag, which the cmdlets bind by its Name (and the device cmdlets by VMName).
        $vm.PSObject.TypeNames[0] | Should -Be 'Deserialized.Xhyve.PowerShell.XhyveVM'
        $vm.PSComputerName | Should -Be '127.0.0.1'

        $disk = Invoke-Command @remote -ErrorAction Stop {
            param($v, $Image)
            New-XhyveDiskImage $Image -SizeBytes 8MB | Out-Null
            $v | Add-XhyveDisk -Path $Image
            $v | Get-XhyveDisk
        } -ArgumentList $vm, (Join-Path $t 'work/web.img')
        $disk.VMName | Should -Be 'web'
        $disk.Path | Should -Be (Join-Path $t 'work/web.img')

        Invoke-Command @remote -ErrorAction Stop { param($v) $v | Start-XhyveVM } -ArgumentList $vm
        $running = Invoke-Command @remote -ErrorAction Stop {
            param($v)
            $v | Wait-XhyveVM -For Running -TimeoutSec 60
            $v | Wait-XhyveVM -For ConsoleText -Pattern 'ready' -TimeoutSec 60 | Out-Null
        } -ArgumentList $vm
        "$($running.State)" | Should -Be 'Running'
        # The engine runs on the "remote" host, the one from the session's module, for the store sshd gave the session.
        $engineArgs = (Get-Content -Raw "/proc/$($running.ProcessId)/cmdline") -split "`0"
        $engineArgs[0] | Should -Be (Join-Path $root 'out/Xhyve/xhyve')
        $engineArgs -join ' ' | Should -Match ([regex]::Escape((Join-Path $store 'vms/web/console.log')))
        Get-Content -Raw (Join-Path $store 'vms/web/console.log') | Should -Match 'ready'

        $off = Invoke-Command @remote -ErrorAction Stop { param($v) $v | Stop-XhyveVM -TurnOff -PassThru } -ArgumentList $vm
        "$($off.State)" | Should -Be 'Off'

        Invoke-Command @remote -ErrorAction Stop { param($v) $v | Remove-XhyveVM -Confirm:$false } -ArgumentList $vm
        # A remote cmdlet's error comes back as an error record with its category and target.
        Invoke-Command @remote { Get-XhyveVM web } -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be 'web'
        Join-Path $store 'vms/web' | Should -Not -Exist
    }

    It 'leave the user''s ~/.ssh as it was (no known_hosts written, nothing made)' {
        if ($skip) { Set-ItResult -Skipped -Because $skip; return }
        @(Get-Snapshot $userSsh) | Should -Be $sshBefore
    }
}
