@{
    # The Xhyve module: binary cmdlets (Xhyve.PowerShell.dll) over the management library, driving one
    # `xhyve` engine host process per VM. Built into out/Xhyve by build.ps1 -Task Package, and into the
    # out/repo/Xhyve.<ModuleVersion>.nupkg that PSResourceGet installs by build.ps1 -Task Publish.
    RootModule           = 'Xhyve.PowerShell.dll'
    # 0.<issue>.<fix>: the minor number is the last issue (milestone) whose work the release completes, the
    # patch number counts fixes released on it; 1.0.0 once the cmdlets' surface is settled. The package's
    # version is this one (plus PSData.Prerelease, when set, e.g. 'preview1' for 0.15.0-preview1).
    ModuleVersion        = '0.15.0'
    GUID                 = '5b0f7a6e-3c2d-4e8b-9a41-7d2c6e1f0b93'
    Author               = 'XhyvePS developers'
    CompanyName          = 'XhyvePS'
    Copyright            = '(c) 2026, the XhyvePS developers. BSD 2-Clause License.'
    Description          = 'Lightweight VMs on KVM in the line of xhyve: define, start, watch and stop them from PowerShell.'
    # The cmdlets and the libraries under them target .NET 10, which PowerShell runs on from 7.6.
    CompatiblePSEditions = @('Core')
    PowerShellVersion    = '7.6'
    FormatsToProcess     = @('Xhyve.format.ps1xml')
    TypesToProcess       = @('Xhyve.types.ps1xml')
    CmdletsToExport      = @(
        'New-XhyveVM', 'Get-XhyveVM', 'Set-XhyveVM', 'Remove-XhyveVM',
        'Start-XhyveVM', 'Stop-XhyveVM', 'Restart-XhyveVM', 'Suspend-XhyveVM', 'Resume-XhyveVM', 'Wait-XhyveVM',
        'Add-XhyveDisk', 'Get-XhyveDisk', 'Remove-XhyveDisk', 'New-XhyveDiskImage',
        'Add-XhyveNetworkAdapter', 'Get-XhyveNetworkAdapter', 'Set-XhyveNetworkAdapter', 'Remove-XhyveNetworkAdapter',
        'Add-XhyveDvdDrive', 'Get-XhyveDvdDrive', 'Set-XhyveDvdDrive', 'Remove-XhyveDvdDrive',
        'Get-XhyveConsoleOutput', 'Connect-XhyveVM', 'Test-XhyveHost', 'ConvertFrom-XhyveCommandLine'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            # The engine host inside the package is a linux-x64 executable; PSEdition_Core and Linux are the
            # gallery's compatibility tags.
            Tags         = @('xhyve', 'KVM', 'hypervisor', 'virtualization', 'VM', 'PSEdition_Core', 'Linux', 'linux-x64')
            ProjectUri   = 'https://github.com/xhyveps/XhyvePS'
            LicenseUri   = 'https://github.com/xhyveps/XhyvePS/blob/main/LICENSE'
            # Prerelease = 'preview1'   # makes the package 0.15.0-preview1 (a PSResourceGet prerelease)
            ReleaseNotes = @'
0.15.0: VMs that boot from firmware, as Hyper-V's generations: New-/Set-XhyveVM -Generation 1 (SeaBIOS) or 2
(UEFI, OVMF), or -BootRomPath [-UefiVariablesTemplatePath]; a UEFI VM keeps its own copy of the variable store
in its folder. ConvertFrom-XhyveCommandLine converts -l bootrom,CODE[,VARS].
0.14.0: SATA disks and CD/DVD drives on AHCI: Add-XhyveDisk -ControllerType AHCI, and Add-, Get-, Set- and
Remove-XhyveDvdDrive (an ISO, or an empty drive; Set- changes the disc of a running VM at once). Changing a
running VM's devices is now a VMRunning error naming Stop-XhyveVM.
0.13.0: the module is published as a versioned package that PSResourceGet installs
(Install-PSResource Xhyve), with the linux-x64 engine host, MAML help and the format and type files inside;
the cmdlets work over PowerShell's SSH remoting (Invoke-Command -HostName), and the VM objects that come back
pipe into further remote calls by their Name.
'@
        }
    }
}
