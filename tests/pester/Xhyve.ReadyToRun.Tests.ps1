#Requires -Version 7.6
# The packaged module's assemblies are ReadyToRun (issue 16 item 4): Import-Module and the first cmdlets run
# precompiled code rather than waiting for the JIT. src/Xhyve.PowerShell's csproj turns it on for `dotnet publish`,
# which scripts/package-module.sh runs. Run alone with: ./build.ps1 -Task Pester -PesterTag ReadyToRun

BeforeAll {
    $script:root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:module = Join-Path $root 'out/Xhyve'

    # Whether the file carries a ReadyToRun image: a managed native header (the READYTORUN_HEADER) in its CLI header,
    # and the IL-library flag the ReadyToRun compiler sets. An IL-only assembly has neither.
    function Test-ReadyToRun([string] $Path) {
        $stream = [IO.File]::OpenRead($Path)
        try {
            $pe = [Reflection.PortableExecutable.PEReader]::new($stream)
            $cor = $pe.PEHeaders.CorHeader
            $null -ne $cor -and $cor.ManagedNativeHeaderDirectory.Size -gt 0 -and
                ($cor.Flags -band [Reflection.PortableExecutable.CorFlags]::ILLibrary) -ne 0
        }
        finally { $stream.Dispose() }
    }
}

Describe 'The packaged assemblies' -Tag 'ReadyToRun', 'Packaging' {
    It '<_> is ReadyToRun' -ForEach 'Xhyve.PowerShell.dll', 'Xhyve.Management.dll', 'Xhyve.Vmm.dll' {
        Test-ReadyToRun (Join-Path $module $_) | Should -BeTrue -Because "$_ in out/Xhyve should be precompiled (PublishReadyToRun)"
    }
    It 'tells an IL-only build apart (the check can fail)' {
        # The plain Release build of the same assembly, which is not published and so stays IL-only.
        $il = Join-Path $root 'src/Xhyve.Management/bin/Release/net10.0/Xhyve.Management.dll'
        if (-not (Test-Path $il)) { Set-ItResult -Skipped -Because "$il is not built (dotnet build src/Xhyve.Management -c Release)"; return }
        Test-ReadyToRun $il | Should -BeFalse
    }
}
