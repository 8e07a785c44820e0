#Requires -Version 7.6
# Pester 5 tests of VMs that boot from a boot ROM, as a script uses the packaged module: a UEFI VM's own variable
# store is copied from its template into the VM's folder, never shared, removed with the VM; missing firmware files
# are errors naming them; -WhatIf creates nothing. Run by `./build.ps1 -Task Pester -PesterTag BootRom`.

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:home0 = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-bootrom-$PID"
    $env:XHYVE_HOME = $home0
    Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1') -Force
    $script:work = Join-Path $home0 'work'
    New-Item -ItemType Directory -Force $work | Out-Null
    # Stand-ins for a UEFI code image and its variable store template (nothing boots them here).
    $script:rom = Join-Path $work 'CODE.fd'
    $script:template = Join-Path $work 'VARS.fd'
    [IO.File]::WriteAllBytes($rom, [byte[]]::new(64KB))
    [IO.File]::WriteAllBytes($template, [byte[]](0..8191 | ForEach-Object { ($_ * 7) % 256 }))
    $script:ovmf = (Test-Path /usr/share/OVMF/OVMF_CODE_4M.fd) -and (Test-Path /usr/share/OVMF/OVMF_VARS_4M.fd)
    $script:seabios = Test-Path /usr/share/seabios/bios.bin
}

AfterAll {
    $env:XHYVE_HOME = $home0
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $home0
}

Describe 'UEFI VMs and their variable stores' -Tag BootRom {
    AfterEach { Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false }

    It 'copies the template into the new VM''s own folder' {
        $vm = New-XhyveVM efi -BootRomPath $rom -UefiVariablesTemplatePath $template
        $vm.Generation | Should -Be 2
        $vm.UefiVariablesPath | Should -Be (Join-Path $vm.Path 'uefi-vars.fd')
        (Get-FileHash $vm.UefiVariablesPath).Hash | Should -Be (Get-FileHash $template).Hash
    }
    It 'gives two VMs separate copies' {
        $a = New-XhyveVM one -BootRomPath $rom -UefiVariablesTemplatePath $template
        $b = New-XhyveVM two -BootRomPath $rom -UefiVariablesTemplatePath $template
        $a.UefiVariablesPath | Should -Not -Be $b.UefiVariablesPath
        [IO.File]::WriteAllBytes($a.UefiVariablesPath, [byte[]]::new(8KB))
        (Get-FileHash $b.UefiVariablesPath).Hash | Should -Be (Get-FileHash $template).Hash -Because 'one VM''s firmware writes only its own copy'
    }
    It 'removes the copy with the VM' {
        $vars = (New-XhyveVM gone -BootRomPath $rom -UefiVariablesTemplatePath $template).UefiVariablesPath
        Remove-XhyveVM gone -Force
        $vars | Should -Not -Exist
    }
    It 'reports a missing template as FileNotFound naming it, and stores nothing' {
        $missing = Join-Path $work 'NO_VARS.fd'
        New-XhyveVM absent -BootRomPath $rom -UefiVariablesTemplatePath $missing -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'FileNotFound,*'
        $err[0].Exception.Message | Should -BeLike "*$missing*"
        Get-XhyveVM | Should -BeNullOrEmpty
    }
    It 'reports a missing boot ROM as FileNotFound naming it, and stores nothing' {
        $missing = Join-Path $work 'bios.bin'
        New-XhyveVM absent -BootRomPath $missing -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'FileNotFound,*'
        $err[0].Exception.Message | Should -BeLike "*$missing*"
        Get-XhyveVM | Should -BeNullOrEmpty
    }
    It 'refuses a ROM the engine could not map (not whole 4 KiB pages) as InvalidBootRom naming it, and stores nothing' {
        $odd = Join-Path $work 'odd.rom'
        [IO.File]::WriteAllBytes($odd, [byte[]]::new(5000))
        New-XhyveVM odd -BootRomPath $odd -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidBootRom,*'
        $err[0].Exception.Message | Should -BeLike "*$odd*not a multiple of 4 KiB*"
        Get-XhyveVM | Should -BeNullOrEmpty
    }
    It 'creates nothing with -WhatIf' {
        New-XhyveVM planned -BootRomPath $rom -UefiVariablesTemplatePath $template -WhatIf | Should -BeNullOrEmpty
        Join-Path $home0 'vms/planned' | Should -Not -Exist
    }
    It 'makes a generation 2 VM from Debian''s OVMF' {
        if (-not $ovmf) { Set-ItResult -Skipped -Because "Debian's ovmf package is not installed (/usr/share/OVMF/OVMF_CODE_4M.fd)"; return }
        $vm = New-XhyveVM g2 -Generation 2
        $vm.BootRomPath | Should -Be '/usr/share/OVMF/OVMF_CODE_4M.fd'
        (Get-FileHash $vm.UefiVariablesPath).Hash | Should -Be (Get-FileHash /usr/share/OVMF/OVMF_VARS_4M.fd).Hash
    }
    It 'makes a generation 1 VM from Debian''s SeaBIOS, with no variable store' {
        if (-not $seabios) { Set-ItResult -Skipped -Because "Debian's seabios package is not installed (/usr/share/seabios/bios.bin)"; return }
        $vm = New-XhyveVM g1 -Generation 1
        $vm.Generation | Should -Be 1
        $vm.BootRomPath | Should -Be '/usr/share/seabios/bios.bin'
        $vm.UefiVariablesPath | Should -BeNullOrEmpty
        Join-Path $vm.Path 'uefi-vars.fd' | Should -Not -Exist
    }
}
