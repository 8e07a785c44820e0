@{
    # The Xhyve module: binary cmdlets (Xhyve.PowerShell.dll) over the management library, driving one
    # `xhyve` engine host process per VM. Built into out/Xhyve by build.ps1 -Task Package.
    RootModule           = 'Xhyve.PowerShell.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0f7a6e-3c2d-4e8b-9a41-7d2c6e1f0b93'
    Author               = 'XhyvePS developers'
    CompanyName          = 'XhyvePS'
    Copyright            = 'BSD-2-Clause'
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
        'Get-XhyveConsoleOutput', 'Connect-XhyveVM', 'Test-XhyveHost', 'ConvertFrom-XhyveCommandLine'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('xhyve', 'KVM', 'hypervisor', 'virtualization', 'Linux')
            ProjectUri = 'https://github.com/xhyveps/XhyvePS'
            LicenseUri = 'https://github.com/xhyveps/XhyvePS/blob/main/LICENSE'
        }
    }
}
