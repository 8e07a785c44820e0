using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>One boot with three virtio-blk disks (raw, split+sparse, read-only) and virtio-rng, MSI-X
/// (the default), two vCPUs, ending in an ACPI S5 power-off.</summary>
public sealed class StorageBoot : LinuxBootFixture
{
    public const string SparseOptions = "size=128M,split=32M,sparse";
    public const string ReadOnlyText = "made on the host by mke2fs";

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string raw = Path.Combine(dir, "raw.img"), sparse = Path.Combine(dir, "sparse.img"), ro = Path.Combine(dir, "ro.img");
        using (var f = File.Create(raw)) f.SetLength(64 << 20);
        HostTools.MakeExt4(ro, "16M", new Dictionary<string, string> { ["readme.txt"] = ReadOnlyText });
        File.Copy(ro, ro + ".before");
        var spec = new LinuxBootSpec("""
            mkdir -p /mnt/a /mnt/b /mnt/c
            mark cpus "$(grep -c ^processor /proc/cpuinfo)"
            mkfs.ext4 -q -F /dev/vda > /tmp/mkfs-a 2>&1 & a=$!
            mkfs.ext4 -q -F /dev/vdb > /tmp/mkfs-b 2>&1 & b=$!
            wait $a; ra=$?; wait $b; rb=$?
            mark mkfs "$ra/$rb $(cat /tmp/mkfs-a /tmp/mkfs-b | tr '\n' ' ')"
            mount -t ext4 /dev/vda /mnt/a && mount -t ext4 /dev/vdb /mnt/b && mark mounted ok
            for d in a b; do
              echo "written by Linux on $d" > /mnt/$d/hello.txt
              dd if=/dev/urandom of=/mnt/$d/blob.bin bs=4096 count=64 2>/dev/null
              mark sha_$d "$(sha256sum /mnt/$d/blob.bin | cut -d' ' -f1)"
            done
            dd if=/dev/zero bs=64k count=128 2>/dev/null | tr '\0' x > /mnt/b/big.bin
            sync
            mark big_written "$(stat -c %s /mnt/b/big.bin)"
            rm /mnt/b/big.bin
            sync
            mark fstrim "$(fstrim -v /mnt/b 2>&1)"
            umount /mnt/a && umount /mnt/b && mark unmounted ok
            mark ro_sysfs "$(cat /sys/block/vdc/ro)"
            mount -t ext4 -o ro /dev/vdc /mnt/c && mark ro_read "$(cat /mnt/c/readme.txt)"
            if touch /mnt/c/new 2>/dev/null; then mark ro_fs_write succeeded; else mark ro_fs_write failed; fi
            if dd if=/dev/zero of=/dev/vdc bs=4096 count=1 conv=fsync 2>/dev/null; then mark ro_dev_write succeeded; else mark ro_dev_write failed; fi
            umount /mnt/c
            mark sizes "$(cat /sys/block/vda/size) $(cat /sys/block/vdb/size) $(cat /sys/block/vdc/size)"
            mark rng_current "$(cat /sys/class/misc/hw_random/rng_current)"
            mark rng_bytes "$(dd if=/dev/hwrng bs=256 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n')"
            for f in /sys/bus/pci/devices/*; do
              [ "$(cat $f/vendor)" = 0x1af4 ] && mark msi "${f##*/} $(cat $f/msi_irqs/* 2>/dev/null | sort | uniq -c | tr '\n' ' ')"
            done
            grep virtio /proc/interrupts | while read -r line; do mark irq "$line"; done
            dmesg | grep -i mmconfig | while read -r line; do mark mmconfig "$line"; done
            mark done ok
            poweroff -f
            """)
        {
            Cpus = 2,
            // Two mkfs.ext4 runs, 9 MiB through the page cache and an fstrim, all in emulated kernel code:
            // ~3 min on an idle host of ours, where a plain boot to /init takes ~30 s.
            Timeout = TimeSpan.FromSeconds(420),
            EngineArgs = ["-s", $"2,virtio-blk,{raw}", "-s", $"3,virtio-blk,{sparse},{SparseOptions}", "-s", $"4,virtio-blk,{ro},ro", "-s", "5,virtio-rnd"],
        };
        return LinuxHarness.Boot(kernel, dir, spec);
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxStorageTests(StorageBoot boot) : IClassFixture<StorageBoot>
{
    private static void AssertFilesystemWrittenByLinux(LinuxRun run, string image, string disk)
    {
        Assert.Equal("ok", run.Marker("unmounted"));
        HostTools.AssertFsckClean(image);
        Assert.Equal($"written by Linux on {disk}\n", System.Text.Encoding.ASCII.GetString(HostTools.ReadExt4File(image, "/hello.txt")));
        byte[] blob = HostTools.ReadExt4File(image, "/blob.bin");
        Assert.Equal(256 * 1024, blob.Length);
        Assert.Equal(run.Marker($"sha_{disk}"), Convert.ToHexStringLower(SHA256.HashData(blob)));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioBlk_RawImage_Ext4MadeByLinux_IsCleanForHostFsck_AndFilesReadBack(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.StartsWith("0/0", run.Marker("mkfs"));
        AssertFilesystemWrittenByLinux(run, Path.Combine(boot.KernelDir(kernel), "raw.img"), "a");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioBlk_SplitSparseImage_Ext4MadeByLinux_IsCleanForHostFsck_AndFilesReadBack(string kernel)
    {
        var run = boot.Run(kernel);
        string sparse = Path.Combine(boot.KernelDir(kernel), "sparse.img");
        var check = HostTools.Disk("check", sparse, StorageBoot.SparseOptions);
        Assert.True(check.ExitCode == 0, check.ToString());
        string flat = Path.Combine(boot.KernelDir(kernel), "sparse-as-raw.img");
        if (!File.Exists(flat))
        {
            var convert = HostTools.Disk("convert", sparse, flat, "--from", StorageBoot.SparseOptions);
            Assert.True(convert.ExitCode == 0, convert.ToString());
        }
        AssertFilesystemWrittenByLinux(run, flat, "b");
        // Linux's writes landed in more than one 32 MiB segment (mkfs spreads group descriptors and inodes).
        Assert.True(new[] { ".0000", ".0001", ".0002", ".0003" }.Count(s => new FileInfo(sparse + s) is { Exists: true, Length: > 0 }) >= 2,
            "Linux's data should be stored in several segment files of the split image");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioBlk_Fstrim_FreesTheSparseSectorsOfADeletedFile(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("8388608", run.Marker("big_written"));
        var trimmed = Regex.Match(run.Marker("fstrim"), @"(\d+) bytes trimmed");
        Assert.True(trimmed.Success && long.Parse(trimmed.Groups[1].Value) >= 8L << 20, $"fstrim: {run.Marker("fstrim")}");
        // 8 MiB of non-zero data were written, synced and deleted. The sparse format stores no all-zero
        // sector, so what stays is the file system's metadata and the 256 KiB blob: well under 8 MiB
        // only if the discards reached the image.
        long stored = HostTools.StoredBytes(Path.Combine(boot.KernelDir(kernel), "sparse.img"), StorageBoot.SparseOptions);
        Assert.True(stored < 6L << 20, $"the sparse image still stores {stored} bytes after fstrim");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioBlk_ReadOnlyDisk_IsReadOnlyForLinux_WritesFail_AndTheImageIsUnchanged(string kernel)
    {
        var run = boot.Run(kernel);
        string ro = Path.Combine(boot.KernelDir(kernel), "ro.img");
        Assert.Equal("1", run.Marker("ro_sysfs"));
        Assert.Equal(StorageBoot.ReadOnlyText, run.Marker("ro_read"));
        Assert.Equal("failed", run.Marker("ro_fs_write"));
        Assert.Equal("failed", run.Marker("ro_dev_write"));
        Assert.Equal(File.ReadAllBytes(ro + ".before"), File.ReadAllBytes(ro));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioBlk_CapacityIsWhatLinuxSees(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal($"{64 << 11} {128 << 11} {16 << 11}", run.Marker("sizes")); // 512-byte sectors
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioRng_IsLinuxsHwrng_AndDeliversRandomBytes(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.StartsWith("virtio_rng", run.Marker("rng_current"));
        string hex = run.Marker("rng_bytes");
        Assert.Equal(512, hex.Length);
        Assert.True(Convert.FromHexString(hex).Distinct().Count() > 100, $"256 bytes from /dev/hwrng look not random: {hex}");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void MsiX_EveryVirtioFunctionUsesMsiX_AndQueueInterruptsArrive(string kernel)
    {
        var run = boot.Run(kernel);
        var functions = run.All("msi");
        Assert.True(functions.Count == 4, $"expected 4 virtio functions, Linux listed: {string.Join(" | ", functions)}");
        Assert.All(functions, f => Assert.Matches(@"^\S+ +\d+ msix\s*$", f));
        // Per-queue vectors: each disk's request queue has its own line, and each took interrupts.
        var queues = run.All("irq").Where(l => Regex.IsMatch(l, @"virtio\d-req\.0")).ToList();
        Assert.True(queues.Count == 3, $"expected 3 virtio-blk request-queue vectors: {string.Join(" | ", run.All("irq"))}");
        Assert.All(queues, q => Assert.True(LinuxHarness.InterruptCount(q) > 0, $"no interrupts on: {q}"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Pci_LinuxUsesTheEcamWindow_BecauseTheFirmwareReservesIt(string kernel)
    {
        var lines = boot.Run(kernel).All("mmconfig");
        Assert.Contains(lines, l => l.Contains("PCI: MMCONFIG at [mem 0xe0000000-0xefffffff] reserved", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("not using MMCONFIG", StringComparison.Ordinal) || l.Contains("not reserved", StringComparison.Ordinal));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Smp_TwoVcpus_AreBothOnline(string kernel) => Assert.Equal("2", boot.Run(kernel).Marker("cpus"));

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void PowerOff_ThroughAcpiS5_ExitsZero(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("ok", run.Marker("done"));
        run.AssertExit(0);
    }
}
