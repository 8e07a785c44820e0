#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Makes the Xhyve module's PSResourceGet package (Xhyve.<version>.nupkg) from the built module folder.
.DESCRIPTION
    Publishes ModulePath (out/Xhyve, as scripts/package-module.sh builds it) with Publish-PSResource into the
    local (folder) repository DestinationPath, which Install-PSResource then installs from:
        Register-PSResourceRepository -Name XhyveLocal -Uri ./out/repo -Trusted
        Install-PSResource Xhyve -Repository XhyveLocal
    The package's version is the manifest's ModuleVersion (and PSData.Prerelease). It holds what the module needs
    at run time: the cmdlet and library assemblies, the linux-x64 engine host, the manifest, format and type
    files and the MAML help; not the symbols (*.pdb) or the compilers' doc-comment files (*.xml beside the dlls).
    A package of the same version already in DestinationPath is replaced.

    Publish-PSResource needs a registered repository. It is registered in a PSResourceGet store of this run's
    own (a child pwsh whose HOME and XDG folders are a temporary folder), so the user's repositories and
    module folders are never touched.
.EXAMPLE
    ./scripts/publish-module.ps1 -ModulePath out/Xhyve -DestinationPath out/repo
#>
[CmdletBinding()]
param(
    # The module folder to package (its manifest is <folder>/<folder name>.psd1).
    [Parameter(Mandatory)] [string] $ModulePath,
    # The folder repository the .nupkg is written to; made if missing.
    [Parameter(Mandatory)] [string] $DestinationPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ModulePath = (Resolve-Path -LiteralPath $ModulePath).Path
$name = Split-Path -Leaf $ModulePath
$manifestPath = Join-Path $ModulePath "$name.psd1"
if (-not (Test-Path -LiteralPath $manifestPath)) { throw "publish-module: $ModulePath has no module manifest $name.psd1 (run scripts/package-module.sh first)" }
$manifest = Import-PowerShellDataFile -LiteralPath $manifestPath
$version = $manifest.ModuleVersion
$psData = if ($manifest['PrivateData'] -and $manifest.PrivateData['PSData']) { $manifest.PrivateData.PSData } else { @{} }
$prerelease = $psData['Prerelease']
if ($prerelease) { $version = "$version-$prerelease" }
# pwsh brings System.Management.Automation; a copy in the module would shadow it or fail to load.
if (Get-ChildItem -LiteralPath $ModulePath -Recurse -Filter 'System.Management.Automation*') {
    throw "publish-module: $ModulePath holds System.Management.Automation, which must come from pwsh"
}

$DestinationPath = [IO.Path]::GetFullPath($DestinationPath, (Get-Location).Path)
New-Item -ItemType Directory -Force -Path $DestinationPath | Out-Null
$package = Join-Path $DestinationPath "$name.$version.nupkg"
Remove-Item -LiteralPath $package -ErrorAction Ignore   # a local repository refuses a version it already has

$work = Join-Path ([IO.Path]::GetTempPath()) "xhyve-publish-$PID-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
$saved = @{}
try {
    # Publish-PSResource packs everything in the folder: the module is staged without what it does not need at
    # run time. Doc-comment files are the *.xml named after an assembly beside them; en-US/*-Help.xml stays.
    $stage = Join-Path $work "stage/$name"
    New-Item -ItemType Directory -Force -Path $stage | Out-Null
    Copy-Item -Path (Join-Path $ModulePath '*') -Destination $stage -Recurse
    Get-ChildItem -LiteralPath $stage -Recurse -Filter '*.pdb' | Remove-Item
    Get-ChildItem -LiteralPath $stage -Filter '*.xml' |
        Where-Object { Test-Path -LiteralPath ([IO.Path]::ChangeExtension($_.FullName, '.dll')) } | Remove-Item

    # The child's PSResourceGet keeps its repository list under $XDG_DATA_HOME/PSResourceGet. The folder must
    # exist: .NET reports a missing XDG_DATA_HOME as "" and PSResourceGet then writes ./PSResourceGet instead.
    $tempHome = Join-Path $work 'home'
    $isolated = @{
        HOME            = $tempHome
        XDG_DATA_HOME   = Join-Path $tempHome '.local/share'
        XDG_CONFIG_HOME = Join-Path $tempHome '.config'
        XDG_CACHE_HOME  = Join-Path $tempHome '.cache'
    }
    foreach ($k in $isolated.Keys) {
        New-Item -ItemType Directory -Force -Path $isolated[$k] | Out-Null
        $saved[$k] = [Environment]::GetEnvironmentVariable($k)
        [Environment]::SetEnvironmentVariable($k, $isolated[$k])
    }
    # The pwsh running this script ($PSHOME has its executable also when pwsh is a dotnet tool).
    $pwsh = Join-Path $PSHOME 'pwsh'
    Push-Location $work
    try {
        & $pwsh -NoProfile -NonInteractive -Command {
            param($Stage, $Repository)
            $ErrorActionPreference = 'Stop'
            Register-PSResourceRepository -Name XhyveBuild -Uri $Repository -Trusted
            Publish-PSResource -Path $Stage -Repository XhyveBuild
        } -args $stage, $DestinationPath
        if ($LASTEXITCODE -ne 0) { throw "publish-module: Publish-PSResource failed (exit code $LASTEXITCODE)" }
    }
    finally { Pop-Location }
}
finally {
    foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) }
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction Ignore
}
if (-not (Test-Path -LiteralPath $package)) { throw "publish-module: Publish-PSResource wrote no $package" }
Write-Host "package: $package"
