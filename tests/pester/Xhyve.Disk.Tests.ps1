#Requires -Version 7.6
# Pester 5 tests: disks attach by path alone (issue 13, item 3). An image made by New-XhyveDiskImage carries its
# geometry in a descriptor (PATH.desc), so Add-XhyveDisk -Path is enough, and options that contradict the image are
# refused with DiskImageConflict before anything is stored. Run alone with: ./build.ps1 -Task Pester -PesterTag Disk

BeforeAll {
    $root = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $env:XHYVE_HOME = Join-Path ([IO.Path]::GetTempPath()) "xhyve-pester-disk-$PID"
    Import-Module (Join-Path $root 'out/Xhyve/Xhyve.psd1') -Force
    $script:hello = Join-Path $root 'tests/guests/build/hello.elf'
    $script:work = Join-Path $env:XHYVE_HOME 'work'
    New-Item -ItemType Directory -Force $work | Out-Null
    $script:kvm = Test-Path /dev/kvm

    # The files of an image and their hashes: a refused Add-XhyveDisk must leave them exactly as they were.
    function script:Get-ImageState([string] $path) {
        Get-ChildItem -Force "$path*" | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Name, (Get-FileHash $_.FullName).Hash }
    }
    # A free TCP port on the host: other test runs share this machine, so the README's 8080 may be taken.
    function script:Get-FreePort {
        $l = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $l.Start(); try { $l.LocalEndpoint.Port } finally { $l.Stop() }
    }
}

AfterAll {
    Get-XhyveVM | Where-Object State -ne 'Off' | Stop-XhyveVM -TurnOff
    Get-XhyveVM | Remove-XhyveVM -Force -Confirm:$false
    Remove-Item -Recurse -Force $env:XHYVE_HOME
}

Describe 'Disks by path alone' -Tag 'Disk' {
    It 'runs the README''s module pipeline with a split/sparse image: Add-XhyveDisk -Path only, and the VM is Running' {
        if (-not $kvm) { Set-ItResult -Skipped -Because '/dev/kvm is absent: VM-starting tests need KVM'; return }
        $kernel = Get-ChildItem (Join-Path $root '.cache/linux/vmlinuz-*') -ErrorAction SilentlyContinue | Select-Object -First 1 -ExpandProperty FullName
        if (-not $kernel) { Set-ItResult -Skipped -Because 'the Debian kernel is not fetched (tests/linux/fetch-debian-kernel.sh)'; return }
        if (-not (Get-Command passt -ErrorAction SilentlyContinue)) { Set-ItResult -Skipped -Because 'passt is not installed (scripts/setup-debian.sh)'; return }
        Push-Location $work
        try {
            Copy-Item $kernel vmlinuz
            Set-Content initrd.gz 'not a real initrd: the kernel stops before it matters on this host'
            $port = Get-FreePort
            # The README's lines, as written but for the host port.
            New-XhyveDiskImage web.img -SizeBytes 8GB -SplitBytes 1GB -Sparse
            New-XhyveVM web -MemoryStartupBytes 1GB -ProcessorCount 2 -KernelPath vmlinuz -InitrdPath initrd.gz `
                -KernelCommandLine 'console=ttyS0' | Add-XhyveNetworkAdapter -PortForward "tcp:${port}:80" -PassThru |
                Add-XhyveDisk -Path web.img -PassThru | Start-XhyveVM -PassThru | Wait-XhyveVM -For Running -OutVariable vm
            $vm[0].State | Should -Be 'Running'
            $disk = Get-XhyveDisk web
            $disk.Options | Should -BeNullOrEmpty
            ($disk.Format, $disk.SizeBytes, $disk.SectorSize) | Should -Be @('SplitSparse', 8GB, 512)
        }
        finally { Pop-Location; Stop-XhyveVM web -TurnOff -ErrorAction SilentlyContinue }
    }

    Context 'the image''s geometry' {
        BeforeAll {
            $script:sparse = Join-Path $work 'g-sparse.img'
            $script:raw = Join-Path $work 'g-raw.img'
            New-XhyveDiskImage $sparse -SizeBytes 1GB -SplitBytes 256MB -Sparse -SectorSize 4096 | Out-Null
            New-XhyveDiskImage $raw -SizeBytes 16MB | Out-Null
            New-XhyveVM geo -MultibootPath $hello | Out-Null
        }
        It 'New-XhyveDiskImage writes a descriptor beside the image' {
            Test-Path "$sparse.desc" | Should -BeTrue
            (Get-Content -Raw "$sparse.desc" | ConvertFrom-Json).format | Should -Be 'split+sparse'
        }
        It 'Get-XhyveDisk shows the format, size and sector size read from each image' {
            Add-XhyveDisk geo -Path $sparse
            Add-XhyveDisk geo -Path $raw
            $disks = Get-XhyveDisk geo | Sort-Object Slot
            ($disks[0].Format, $disks[0].SizeBytes, $disks[0].SectorSize) | Should -Be @('SplitSparse', 1GB, 4096)
            ($disks[1].Format, $disks[1].SizeBytes, $disks[1].SectorSize) | Should -Be @('Raw', 16MB, 512)
            $table = Get-XhyveDisk geo | Out-String
            $table | Should -Match 'Format'
            $table | Should -Match 'SplitSparse'
        }
        It 'accepts options that agree with the image' {
            New-XhyveVM agree -MultibootPath $hello | Out-Null
            $added = Add-XhyveDisk agree -Path $sparse -Options 'size=1G', 'split=256M', 'sparse', 'sectorsize=4096' -PassThru -ErrorAction Stop
            $added.Options | Should -Be 'size=1G,split=256M,sparse,sectorsize=4096'
            $added.SizeBytes | Should -Be 1GB
        }
    }

    Context 'options that contradict the image are refused at Add-XhyveDisk, and nothing is written' {
        BeforeAll {
            $script:img = Join-Path $work 'c-web.img'
            $script:plain = Join-Path $work 'c-raw.img'
            New-XhyveDiskImage $img -SizeBytes 1GB -SplitBytes 256MB -Sparse | Out-Null
            New-XhyveDiskImage $plain -SizeBytes 16MB | Out-Null
            New-XhyveVM conflicts -MultibootPath $hello | Out-Null
        }
        It '-Options <Options> on <Image>: DiskImageConflict naming the conflict' -ForEach @(
            @{ Image = 'c-web.img'; Options = 'size=2G'; Message = '^-Options size=2G: the image .*c-web\.img is 1 GiB \(as its c-web\.img\.desc records\)$' }
            @{ Image = 'c-web.img'; Options = 'split=512M'; Message = 'split=512M: the image .*c-web\.img has segments of 256 MiB' }
            @{ Image = 'c-web.img'; Options = 'sectorsize=4096'; Message = 'sectorsize=4096: the image .*c-web\.img has 512-byte sectors' }
            @{ Image = 'c-raw.img'; Options = 'sparse'; Message = 'sparse: the image .*c-raw\.img is not sparse \(there is no c-raw\.img\.lut\)' }
            @{ Image = 'c-raw.img'; Options = 'split=1M'; Message = 'split=1M: the image .*c-raw\.img is not split' }
            @{ Image = 'c-raw.img'; Options = 'size=32M'; Message = 'size=32M: the image .*c-raw\.img is 16 MiB' }
        ) {
            $path = Join-Path $work $Image
            $before = Get-ImageState $path
            Add-XhyveDisk conflicts -Path $path -Options $Options -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskImageConflict,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $err[0].TargetObject | Should -Be @($Options)
            $err[0].Exception.Message | Should -Match $Message
            Get-XhyveDisk conflicts | Should -BeNullOrEmpty
            Get-ImageState $path | Should -Be $before
        }
        It 'a damaged descriptor: DiskImageDamaged naming the file' {
            $bad = Join-Path $work 'd-bad.img'
            New-XhyveDiskImage $bad -SizeBytes 16MB -SplitBytes 4MB -Sparse | Out-Null
            Set-Content "$bad.desc" '{"version":1,"format":"split+sparse","size":16777216'
            Add-XhyveDisk conflicts -Path $bad -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskImageDamaged,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
            $err[0].TargetObject | Should -Be "$bad.desc"
            $err[0].Exception.Message | Should -Match 'd-bad\.img\.desc: damaged disk descriptor: not valid JSON'
            Get-XhyveDisk conflicts | Should -BeNullOrEmpty
        }
        It 'an xhyve image without a descriptor whose files do not tell its split: DiskImageOptionNeeded saying which option' {
            $old = Join-Path $work 'o-old.img'
            New-XhyveDiskImage $old -SizeBytes 16MB -SplitBytes 4MB -Sparse | Out-Null
            Remove-Item "$old.desc"   # as the original xhyve leaves it
            Add-XhyveDisk conflicts -Path $old -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskImageOptionNeeded,*'
            $err[0].Exception.Message | Should -Match 'give split=SIZE'
            # With the split given, the LUT tells the rest.
            Add-XhyveDisk conflicts -Path $old -Options 'split=4M' -PassThru | Select-Object -ExpandProperty SizeBytes | Should -Be 16MB
            Get-XhyveDisk conflicts | Remove-XhyveDisk -Confirm:$false
        }
        It 'a missing image: DiskImageNotFound' {
            Add-XhyveDisk conflicts -Path (Join-Path $work 'nothing.img') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskImageNotFound,*'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }
    }
}
