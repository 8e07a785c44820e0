using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>One boot with an AHCI disk (ahci-hd) and an AHCI CD drive (ahci-cd) holding an ISO built on the host:
/// Linux's libata/ahci, sd and sr drivers against our controller.</summary>
public sealed class AhciBoot : LinuxBootFixture
{
    public const string CdText = "read by Linux from the ISO";
    public static readonly byte[] CdBlob = RandomNumberGenerator.GetBytes(300 * 1024);

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string disk = Path.Combine(dir, "sata.img"), iso = Path.Combine(dir, "cd.iso");
        using (var f = File.Create(disk)) f.SetLength(64 << 20);
        // xorriso writes Rock Ridge names too: Linux shows HELLO.TXT as it was named.
        IsoImage.Create(iso, "XHYVE_TEST", [("HELLO.TXT", System.Text.Encoding.ASCII.GetBytes(CdText + "\n")), ("BLOB.BIN", CdBlob)]);
        var spec = new LinuxBootSpec("""
            mkdir -p /mnt/a /mnt/cd
            for f in /sys/bus/pci/devices/*; do
              [ "$(cat $f/class)" = 0x010601 ] && mark ahci_irq "${f##*/} $(ls $f/msi_irqs 2>/dev/null | wc -l) $(cat $f/irq)"
            done
            mark sda_model "$(cat /sys/block/sda/device/model)"
            mark sda_size "$(cat /sys/block/sda/size)"
            mark sda_queue_depth "$(cat /sys/block/sda/device/queue_depth)"
            mark sda_sectors "$(cat /sys/block/sda/queue/logical_block_size)/$(cat /sys/block/sda/queue/physical_block_size)"
            mark sda_discard "$(cat /sys/block/sda/queue/discard_max_bytes)"
            mark sr0_inquiry "$(cat /sys/block/sr0/device/vendor)/$(cat /sys/block/sr0/device/model)"
            dmesg | grep -E 'ata[0-9]+(\.00)?: ' | while read -r line; do mark ata "$line"; done
            mkfs.ext4 -q -F /dev/sda > /tmp/mkfs 2>&1; mark mkfs "$? $(cat /tmp/mkfs | tr '\n' ' ')"
            mount -t ext4 /dev/sda /mnt/a && mark mounted ok
            echo "written by Linux over AHCI" > /mnt/a/hello.txt
            dd if=/dev/urandom of=/mnt/a/blob.bin bs=4096 count=256 2>/dev/null
            mark sha_disk "$(sha256sum /mnt/a/blob.bin | cut -d' ' -f1)"
            sync
            umount /mnt/a && mark unmounted ok
            # Four direct readers at once, so the disk sees several NCQ commands in flight.
            for i in 0 1 2 3; do dd if=/dev/sda of=/dev/null bs=64k skip=$((i * 128)) count=32 iflag=direct 2>/dev/null & done
            wait
            mark parallel_reads ok
            mount -t iso9660 -o ro /dev/sr0 /mnt/cd 2>/tmp/mount-cd; mark cd_mount "$? $(cat /tmp/mount-cd)"
            mark cd_ls "$(ls /mnt/cd 2>&1 | tr '\n' ' ')"
            mark cd_text "$(cat /mnt/cd/HELLO.TXT 2>&1)"
            mark cd_sha "$(sha256sum /mnt/cd/BLOB.BIN 2>&1 | cut -d' ' -f1)"
            dmesg | grep -iE 'sr0|sr [0-9]|isofs|iso9660|ata[0-9]+\.00: (cmd|status|error)' | while read -r line; do mark cd_dmesg "$line"; done
            umount /mnt/cd
            mark sr0_size "$(cat /sys/block/sr0/size)"
            grep -i ahci /proc/interrupts | while read -r line; do mark irq "$line"; done
            mark done ok
            poweroff -f
            """)
        {
            Cpus = 2,
            // One mkfs.ext4 and 1 MiB of writes through the page cache in emulated kernel code, plus the ISO mount.
            Timeout = TimeSpan.FromSeconds(420),
            EngineArgs = ["-s", $"6,ahci-hd,{disk}", "-s", $"7,ahci-cd,{iso}"],
        };
        return LinuxHarness.Boot(kernel, dir, spec);
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxAhciTests(AhciBoot boot) : IClassFixture<AhciBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Libata_FindsTheSataDisk_WithItsCapacityModelAndNcq(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal($"{64 << 11}", run.Marker("sda_size"));
        Assert.Equal("512/512", run.Marker("sda_sectors"));
        Assert.StartsWith("XHYVE", run.Marker("sda_model"));
        // libata turns NCQ on only when IDENTIFY offers it and the HBA's CAP.SNCQ says so: the depth is then above 1.
        Assert.True(int.Parse(run.Marker("sda_queue_depth")) > 1, $"queue_depth {run.Marker("sda_queue_depth")}: NCQ is not in use");
        Assert.Contains(run.All("ata"), l => l.Contains("NCQ (depth 32)", StringComparison.Ordinal));
        Assert.True(long.Parse(run.Marker("sda_discard")) > 0, "Linux sees no TRIM support on the SATA disk");
        Assert.Equal("ok", run.Marker("parallel_reads"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Ext4MadeByLinuxOnTheSataDisk_IsCleanForHostFsck_AndFilesReadBack(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.StartsWith("0", run.Marker("mkfs"));
        Assert.Equal("ok", run.Marker("unmounted"));
        string image = Path.Combine(boot.KernelDir(kernel), "sata.img");
        HostTools.AssertFsckClean(image);
        Assert.Equal("written by Linux over AHCI\n", System.Text.Encoding.ASCII.GetString(HostTools.ReadExt4File(image, "/hello.txt")));
        Assert.Equal(run.Marker("sha_disk"), Convert.ToHexStringLower(SHA256.HashData(HostTools.ReadExt4File(image, "/blob.bin"))));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void TheCdDrive_IsLinuxsSr0_AndTheIsoMountsWithItsFilesIntact(string kernel)
    {
        var run = boot.Run(kernel);
        // SCSI INQUIRY's vendor and product fields, as sr read them (padded with spaces).
        Assert.Matches(@"^XHYVE +/DVD-ROM", run.Marker("sr0_inquiry"));
        string seen = $"mount: {run.Marker("cd_mount")}; ls: {run.Marker("cd_ls")}; kernel: {string.Join(" | ", run.All("cd_dmesg"))}";
        Assert.True(run.Marker("cd_text") == AhciBoot.CdText, $"HELLO.TXT read as '{run.Marker("cd_text")}'; {seen}");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(AhciBoot.CdBlob)), run.Marker("cd_sha"));
        long isoBytes = new FileInfo(Path.Combine(boot.KernelDir(kernel), "cd.iso")).Length;
        Assert.Equal(isoBytes / 512, long.Parse(run.Marker("sr0_size")));   // sysfs counts 512-byte sectors
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void TheController_UsesMsi_AndItsInterruptsArrive(string kernel)
    {
        var run = boot.Run(kernel);
        var controller = Regex.Match(run.Marker("ahci_irq"), @"^\S+ (\d+) \d+$");
        Assert.True(controller.Success && int.Parse(controller.Groups[1].Value) >= 1, $"the AHCI function has no MSI vector: {run.Marker("ahci_irq")}");
        var lines = run.All("irq");
        Assert.NotEmpty(lines);
        Assert.True(lines.Sum(LinuxHarness.InterruptCount) > 0, $"no AHCI interrupts: {string.Join(" | ", lines)}");
        Assert.Equal("ok", run.Marker("done"));
        run.AssertExit(0);
    }
}
