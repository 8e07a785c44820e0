#Requires -Version 7.6
# The module as users get it: scripts/publish-module.ps1 (build.ps1 -Task Publish) makes the .nupkg from out/Xhyve
# with Publish-PSResource, PSResourceGet installs it from a folder repository, and a fresh pwsh runs a VM through
# the installed module and the engine host inside it. Run alone with: ./build.ps1 -Task Pester -PesterTag Packaging
#
# Isolation: every PSResourceGet call runs in a child pwsh whose HOME and XDG folders are this test's temporary
# folder, so the repository is registered in a store of its own ($XDG_DATA_HOME/PSResourceGet) and -Scope
# CurrentUser installs under it; the user's repositories and module folders are checked to be untouched.

BeforeAll {
    $root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:manifest = Import-PowerShellDataFile (Join-Path $root 'module/Xhyve.psd1')
    $script:version = $manifest.ModuleVersion + $(if ($manifest.PrivateData.PSData['Prerelease']) { '-' + $manifest.PrivateData.PSData.Prerelease })
    $script:t = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pkg-$PID"
    New-Item -ItemType Directory -Force $t | Out-Null
    $script:repo = Join-Path $t 'repo'
    $script:fakeHome = Join-Path $t 'home'
    $script:modules = Join-Path $fakeHome '.local/share/powershell/Modules'   # -Scope CurrentUser under that HOME
    $script:hello = Join-Path $root 'tests/guests/build/hello.elf'
    $script:pwsh = Join-Path $PSHOME 'pwsh'

    # The user's own PSResourceGet store and module folder, to prove they are left as they were.
    $realData = if ($env:XDG_DATA_HOME) { $env:XDG_DATA_HOME } else { Join-Path $HOME '.local/share' }
    $script:realStore = Join-Path $realData 'PSResourceGet/PSResourceRepository.xml'
    $script:realModules = Join-Path $realData 'powershell/Modules'
    function Get-Snapshot([string] $Path) {
        if (Test-Path -LiteralPath $Path) {
            Get-ChildItem -LiteralPath $Path -Recurse -Force -File -ErrorAction Ignore | ForEach-Object { "$($_.FullName) $($_.Length) $($_.LastWriteTimeUtc.Ticks)" }
        }
        else { '<absent>' }
    }
    $script:before = @{ Store = @(Get-Snapshot $realStore); Modules = @(Get-Snapshot $realModules) }

    # Runs $Script in a child `pwsh -NoProfile` with a HOME and XDG folders of this test's own and $Environment
    # ($null values unset), restoring this process's variables afterwards. XDG_DATA_HOME must exist: .NET reports a
    # missing one as "" and PSResourceGet then keeps its store in ./PSResourceGet (so the child runs in $t too).
    function Invoke-IsolatedPwsh([scriptblock] $Script, [object[]] $ArgumentList = @(), [hashtable] $Environment = @{}) {
        $vars = @{
            HOME = $fakeHome; XDG_DATA_HOME = Join-Path $fakeHome '.local/share'
            XDG_CONFIG_HOME = Join-Path $fakeHome '.config'; XDG_CACHE_HOME = Join-Path $fakeHome '.cache'
        }
        foreach ($k in @($vars.Keys)) { New-Item -ItemType Directory -Force $vars[$k] | Out-Null }
        foreach ($k in $Environment.Keys) { $vars[$k] = $Environment[$k] }
        $saved = @{}
        foreach ($k in $vars.Keys) { $saved[$k] = [Environment]::GetEnvironmentVariable($k); [Environment]::SetEnvironmentVariable($k, $vars[$k]) }
        Push-Location $t
        try {
            $out = & $pwsh -NoProfile -NonInteractive -Command $Script -args $ArgumentList 2>&1
            $errors = @($out | Where-Object { $_ -is [Management.Automation.ErrorRecord] })
            if ($LASTEXITCODE -ne 0) { throw "child pwsh failed (exit code $LASTEXITCODE): $($errors -join "`n")" }
            $errors | ForEach-Object { Write-Warning "child pwsh: $_" }
            $out | Where-Object { $_ -isnot [Management.Automation.ErrorRecord] }
        }
        finally {
            Pop-Location
            foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) }
        }
    }

    & (Join-Path $root 'scripts/publish-module.ps1') -ModulePath (Join-Path $root 'out/Xhyve') -DestinationPath $repo
    $script:package = Join-Path $repo "Xhyve.$version.nupkg"
}

AfterAll {
    Remove-Item -LiteralPath $t -Recurse -Force -ErrorAction Ignore
}

Describe 'The published package' -Tag 'Packaging' {
    BeforeAll {
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($package)
        try {
            $script:entries = @($zip.Entries.FullName)
            $reader = [IO.StreamReader]::new($zip.GetEntry('Xhyve.nuspec').Open())
            try { $script:nuspec = [xml]$reader.ReadToEnd() } finally { $reader.Dispose() }
            $bytes = [IO.BinaryReader]::new($zip.GetEntry('xhyve').Open())
            try { $script:engineHeader = $bytes.ReadBytes(20) } finally { $bytes.Dispose() }
        }
        finally { $zip.Dispose() }
    }

    It 'is named Xhyve.(ModuleVersion).nupkg, with the manifest''s version and metadata in its nuspec' {
        $package | Should -Exist
        $nuspec.package.metadata.id | Should -Be 'Xhyve'
        $nuspec.package.metadata.version | Should -Be $version
        $nuspec.package.metadata.projectUrl | Should -Be $manifest.PrivateData.PSData.ProjectUri
        $nuspec.package.metadata.licenseUrl | Should -Be $manifest.PrivateData.PSData.LicenseUri
        $nuspec.package.metadata.releaseNotes | Should -Not -BeNullOrEmpty
        $nuspec.package.metadata.tags -split ' ' | Should -Contain 'PSEdition_Core'
    }

    It 'holds the cmdlets, the engine host, the manifest, format and type files and the MAML help' {
        foreach ($file in 'Xhyve.psd1', 'Xhyve.PowerShell.dll', 'Xhyve.Management.dll', 'Xhyve.Vmm.dll', 'xhyve',
            'Xhyve.format.ps1xml', 'Xhyve.types.ps1xml', 'en-US/Xhyve.PowerShell.dll-Help.xml') {
            $entries | Should -Contain $file
        }
    }

    It 'holds an x86-64 ELF engine host, the NativeAOT executable alone' {
        [Text.Encoding]::ASCII.GetString($engineHeader, 1, 3) | Should -Be 'ELF'
        [BitConverter]::ToUInt16($engineHeader, 18) | Should -Be 0x3E -Because 'e_machine is EM_X86_64'
        # What a framework-dependent engine host would need beside it: the native one carries its code.
        foreach ($file in 'xhyve.dll', 'xhyve.runtimeconfig.json', 'xhyve.deps.json') { $entries | Should -Not -Contain $file }
    }

    It 'holds nothing the module does not need at run time' {
        $entries | Where-Object { $_ -like '*.pdb' } | Should -BeNullOrEmpty
        $entries | Where-Object { $_ -like 'System.Management.Automation*' } | Should -BeNullOrEmpty
        $entries | Where-Object { $_ -match 'Tests?\b|xunit|Pester|Fuzz|HelpBuilder' } | Should -BeNullOrEmpty
        # Doc-comment files of the assemblies: en-US/*-Help.xml is the help, the rest only IntelliSense's.
        $entries | Where-Object { $_ -like '*.xml' -and $_ -notlike 'en-US/*' -and $_ -ne '[Content_Types].xml' } | Should -BeNullOrEmpty
    }
}

Describe 'Installing with PSResourceGet and running a VM' -Tag 'Packaging' {
    BeforeAll {
        $script:installed = Invoke-IsolatedPwsh -ArgumentList $repo -Script {
            param($Repository)
            $ErrorActionPreference = 'Stop'
            Register-PSResourceRepository -Name XhyveLocal -Uri $Repository -Trusted
            Install-PSResource Xhyve -Repository XhyveLocal -Scope CurrentUser -PassThru | Out-Null
            $store = Join-Path $env:XDG_DATA_HOME 'PSResourceGet/PSResourceRepository.xml'
            [pscustomobject]@{
                Store       = $store
                Registered  = (Get-Content -Raw $store) -match 'XhyveLocal'
                ModuleBase  = (Get-Module -ListAvailable Xhyve).ModuleBase
                EngineMode  = [IO.File]::GetUnixFileMode((Join-Path (Get-Module -ListAvailable Xhyve).ModuleBase 'xhyve')).ToString()
            }
        }
        $script:installedBase = Join-Path $modules "Xhyve/$($manifest.ModuleVersion)"
    }

    It 'installs into the CurrentUser module folder of the test''s own HOME, from a repository in its own store' {
        $installed.ModuleBase | Should -Be $installedBase
        $installed.Store | Should -BeLike "$t/*"
        $installed.Registered | Should -BeTrue
        Join-Path $t 'PSResourceGet' | Should -Not -Exist   # the store did not fall back to the working folder
    }

    It 'leaves the user''s PSResourceGet repositories and module folder as they were' {
        @(Get-Snapshot $realStore) | Should -Be $before.Store
        @(Get-Snapshot $realModules) | Should -Be $before.Modules
    }

    It 'gives the installed engine host its execute bits back when the module is first imported' {
        Write-Host "engine host mode as installed: $($installed.EngineMode)"   # the zip carries no Unix modes
        $mode = Invoke-IsolatedPwsh -Environment @{ PSModulePath = $modules } -Script {
            $ErrorActionPreference = 'Stop'
            Import-Module Xhyve
            [IO.File]::GetUnixFileMode((Join-Path (Get-Module Xhyve).ModuleBase 'xhyve')).ToString()
        }
        $mode | Should -Match 'UserExecute'
        $mode | Should -Match 'OtherExecute'
    }

    It 'has an engine host that runs as the NativeAOT executable it is' {
        $version = Invoke-IsolatedPwsh -Environment @{ PSModulePath = $modules } -Script {
            $ErrorActionPreference = 'Stop'
            Import-Module Xhyve   # gives the engine its execute bits, as above
            & (Join-Path (Get-Module Xhyve).ModuleBase 'xhyve') -v
            if ($LASTEXITCODE -ne 0) { throw "xhyve -v: exit code $LASTEXITCODE" }
        }
        $version | Should -Match '^xhyve: .*\(XhyvePS, KVM backend, NativeAOT\)$'
    }

    It 'runs a VM in a fresh pwsh that has only the installed module, on the engine host inside it' {
        if (-not (Test-Path /dev/kvm)) { Set-ItResult -Skipped -Because '/dev/kvm is absent: VM-starting tests need KVM'; return }
        # XHYVE_ENGINE unset: the module must find the engine beside its own assemblies.
        $run = Invoke-IsolatedPwsh -Environment @{ PSModulePath = $modules; XHYVE_ENGINE = $null; XHYVE_HOME = (Join-Path $t 'vms') } -ArgumentList $hello -Script {
            param($Hello)
            $ErrorActionPreference = 'Stop'
            Import-Module Xhyve
            $vm = New-XhyveVM pkg -MultibootPath $Hello -KernelCommandLine 'spin=1' | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running -TimeoutSec 60
            $ready = Wait-XhyveVM pkg -For ConsoleText -Pattern 'ready' -TimeoutSec 60
            $engine = (Get-Item "/proc/$($vm.ProcessId)/exe").LinkTarget
            $off = Stop-XhyveVM pkg -TurnOff -PassThru
            Remove-XhyveVM pkg -Confirm:$false
            [pscustomobject]@{
                ModuleBase = (Get-Module Xhyve).ModuleBase
                Running    = "$($vm.State)"
                Ready      = [bool]$ready
                Engine     = $engine
                Off        = "$($off.State)"
                Left       = @(Get-XhyveVM).Count
            }
        }
        $run.ModuleBase | Should -Be $installedBase
        $run.Running | Should -Be 'Running'
        $run.Ready | Should -BeTrue
        $run.Engine | Should -Be (Join-Path $installedBase 'xhyve')
        $run.Off | Should -Be 'Off'
        $run.Left | Should -Be 0
    }
}

Describe 'build.ps1 -Task Pester -PesterTag' -Tag 'Packaging' {
    # pwsh -File hands "-PesterTag A,B" over as the one string 'A,B' (it parses no arrays): that selected no test,
    # and a run of nothing passed.
    It 'takes comma-separated tags from pwsh -File, and fails, naming them, when no test has one of them' {
        $out = & $pwsh -NoProfile -NonInteractive -File (Join-Path $root 'build.ps1') -Task Pester -PesterTag 'Packaging,NoSuchTagA,NoSuchTagB' 2>&1
        $LASTEXITCODE | Should -Not -Be 0
        # pwsh's error view colours the message and wraps it to the console's width, each line after a '|' gutter.
        $message = ($out -join "`n") -replace '\x1b\[[0-9;]*m' -replace '\s*\n\s*\|\s*', ' '
        $message | Should -Match 'no test has the tags NoSuchTagA, NoSuchTagB \(-PesterTag; the tags there are: .*Packaging'
    }
}
