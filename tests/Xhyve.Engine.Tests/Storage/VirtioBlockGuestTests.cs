using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Tests.Storage;

/// <summary>
/// virtio-blk end to end: the vblk driver guest writes a pattern (at the start, across a boundary the test
/// names, at the end), flushes and reads back through each interface and interrupt mode; the test then
/// checks the image files byte by byte. The same guest under QEMU's virtio-blk-pci must agree.
/// </summary>
public sealed class VirtioBlockGuestTests : IDisposable
{
    private const int Sectors = 16384;            // 8 MiB
    private const int Cross = 4096;
    private readonly string _dir = Directory.CreateTempSubdirectory("vblk").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>The guest's pattern: byte i of sector lba.</summary>
    public static byte Pattern(long lba, int i) => unchecked((byte)(lba * 31 + i * 7 + 1));

    private string NewRawImage(string name = "disk.img")
    {
        string path = Path.Combine(_dir, name);
        using (var f = File.Create(path)) f.SetLength(Sectors * 512L);
        return path;
    }

    private static EngineRun RunVblk(string disk, string cmdline, params string[] extra) =>
        EngineProcess.RunGuest("vblk", cmdline, ["-s", $"4,virtio-blk,{disk}", .. extra]);

    /// <summary>The sectors the guest wrote hold the pattern, LBA 8 was zeroed, and nothing else changed.</summary>
    private static void AssertImageContents(Func<long, byte[]> readSector, long sectors, int cross)
    {
        var written = new List<long> { 0, 1, cross - 2, cross - 1, cross, cross + 1, sectors - 1 };
        foreach (long lba in written)
        {
            var data = readSector(lba);
            for (int i = 0; i < 512; i++)
                Assert.True(data[i] == Pattern(lba, i), $"sector {lba} byte {i}: 0x{data[i]:x2}, expected 0x{Pattern(lba, i):x2}");
        }
        foreach (long lba in new long[] { 2, 7, 8, 9, cross - 3, cross + 2, sectors - 2 })
            Assert.True(readSector(lba).All(b => b == 0), $"sector {lba} should be all zero");
    }

    private static Func<long, byte[]> FileSectors(string path) => lba =>
    {
        using var f = File.OpenRead(path);
        var b = new byte[512];
        f.Position = lba * 512;
        f.ReadExactly(b);
        return b;
    };

    private static void AssertDriverResults(EngineRun run, bool modern)
    {
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        Assert.Equal(modern ? "0x0000000f" : "0x00000007", r["status"]);
        Assert.Equal(Sectors.ToString(), r["capacity"]);
        foreach (var key in new[] { "write_a", "write_b", "write_c", "flush", "write_zeroes", "get_id" }) Assert.True(r[key] == "0", $"{key}={r[key]}\n{run}");
        Assert.Equal("7", r["readback"]);
        Assert.Equal("1", r["zeroes_read_back"]);
        Assert.Equal("1", r["read_past_end"]);          // IOERR
        Assert.Equal("2", r["unknown_type"]);           // UNSUPP
        Assert.Equal("8", r["in_flight_completed"]);
        Assert.StartsWith("XHYVE-", r["id"]);
    }

    [SkippableTheory]
    [InlineData("", true)]
    [InlineData("legacy=1", false)]
    [InlineData("msix=1 indirect=1 eventidx=1", true)]
    [InlineData("intx=1", true)]
    [InlineData("legacy=1 msix=1", false)]
    [InlineData("legacy=1 intx=1 indirect=1", false)]
    public void Guest_WritesFlushesAndReadsBack_AndTheHostSeesTheBytes(string options, bool modern)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage();
        var run = RunVblk(disk, $"cross={Cross} {options}", "-A", "--verbose");
        AssertDriverResults(run, modern);
        var r = run.Results;
        Assert.Equal(options.Contains("indirect") ? "1" : "0", r["indirect"]);
        if (options.Contains("msix") || options.Contains("intx")) Assert.Equal("1", r["queue_irqs"]);
        if (options.Contains("msix"))
        {
            // MSI-X goes through irqfd, and the route follows the guest when it re-points a vector.
            Assert.Equal("0", r["retarget_read"]);
            Assert.True(r["retargeted_irqs"] == "1", run.ToString());
            Assert.True(r["old_vector_irqs_after"] == "0", run.ToString());
            var counters = Regex.Match(run.Stderr, @"msi_irqfd=(\d+) msi_ioctl=(\d+) msi_route_updates=(\d+)");
            Assert.True(counters.Success, run.ToString());
            Assert.True(long.Parse(counters.Groups[1].Value) > 0, counters.Value);
            Assert.Equal("0", counters.Groups[2].Value);
            Assert.True(long.Parse(counters.Groups[3].Value) >= 1, counters.Value);
        }
        // Hostile chains complete without a status and leave the device working (no NEEDS_RESET).
        Assert.Equal("1", r["outside_ram_completed"]);
        Assert.Equal("0", r["outside_ram_len"]);
        Assert.Equal("1", r["loop_completed"]);
        Assert.Equal("2", r["alive_after_bad"]);
        Assert.Equal(r["status"], r["status_after"]);
        AssertImageContents(FileSectors(disk), Sectors, Cross);
    }

    [SkippableFact]
    public void ReadOnlyDisk_RefusesWritesWithIoErr_AndLeavesTheImageUnchanged()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage();
        Assert.True(RunVblk(disk, $"cross={Cross}").Done);
        byte[] before = File.ReadAllBytes(disk);
        var run = RunVblk($"{disk},ro", $"cross={Cross}");
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        Assert.Equal("1", r["ro_feature"]);
        Assert.Equal(["1", "1", "1", "1"], new[] { r["write_a"], r["write_b"], r["write_c"], r["write_zeroes"] });
        Assert.Equal("7", r["readback"]);               // the first run's data, still readable
        Assert.Equal(before, File.ReadAllBytes(disk));
    }

    [SkippableFact]
    public void SplitSparseImage_RequestsAcrossTheSegmentBoundary_LandInBothSegments()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = Path.Combine(_dir, "sparse.img");
        const int sectors = 8192, boundary = 2048;      // 4 MiB in 1 MiB segments: LBA 2048 starts segment 1
        var run = RunVblk($"{disk},size=4M,split=1M,sparse", $"cross={boundary}");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("7", run.Results["readback"]);
        using (var image = SplitSparseImage.Open(disk, new SplitImageLayout(4 << 20, 1 << 20, true, 512), readOnly: true))
        {
            AssertImageContents(lba => { var b = new byte[512]; image.Read(lba * 512, b); return b; }, sectors, boundary);
            // Segment 0: LBA 0, 1, 2046, 2047 and the zeroed-then-unmapped LBA 8 (appended, not reclaimed);
            // segment 1: 2048, 2049; segment 2: nothing; segment 3: the last sector.
            Assert.Equal([5L, 2L, 0L, 1L], image.StoredSectors);
        }
        Assert.Equal(0, new FileInfo(disk + ".0002").Length);
        Assert.Equal(sectors * 4, new FileInfo(disk + ".lut").Length);
    }

    [SkippableFact]
    public void SplitSparseImage_GivenByPathAlone_BootsWithTheGeometryItsDescriptorRecords()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = Path.Combine(_dir, "web.img");
        // As New-XhyveDiskImage -SplitBytes -Sparse makes it; then -s 4,virtio-blk,web.img with no options.
        DiskImages.Create(Xhyve.Vmm.Config.BlockDeviceOptions.ParseOptions(disk, ["size=4M", "split=1M", "sparse"]));
        var run = RunVblk(disk, "cross=2048");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("8192", run.Results["capacity"]);
        Assert.Equal("7", run.Results["readback"]);
        using var image = SplitSparseImage.Open(disk, new SplitImageLayout(4 << 20, 1 << 20, true, 512), readOnly: true);
        AssertImageContents(lba => { var b = new byte[512]; image.Read(lba * 512, b); return b; }, 8192, 2048);
        Assert.Equal([5L, 2L, 0L, 1L], image.StoredSectors);
    }

    [SkippableFact]
    public void XhyveSplitSparseImage_WithoutDescriptor_BootsWithTheSplitGiven_AndTheLutGivesTheSize()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = Path.Combine(_dir, "old.img");
        using (SplitSparseImage.Open(disk, new SplitImageLayout(4 << 20, 1 << 20, true, 512), readOnly: false)) { }   // no descriptor
        var run = RunVblk($"{disk},split=1M,sparse", "cross=2048");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("8192", run.Results["capacity"]);
        Assert.Equal("7", run.Results["readback"]);
    }

    [SkippableFact]
    public void SplitImage_RequestsAcrossTheSegmentBoundary_AreSplitBetweenTheFiles()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = Path.Combine(_dir, "split.img");
        var run = RunVblk($"{disk},size=4M,split=1M", "cross=2048");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("7", run.Results["readback"]);
        AssertImageContents(lba => FileSectors($"{disk}.{lba / 2048:D4}")(lba % 2048), 8192, 2048);
    }

    [SkippableTheory]
    [InlineData("")]
    [InlineData("legacy=1")]
    public void EntropyDevice_GivesTheGuest4KiBOfVariedBytes(string options)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("vrng", options, ["-s", "5,virtio-rnd"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("4096", run.Results["bytes"]);
        Assert.True(int.Parse(run.Results["distinct"]) > 200, run.ToString());
        Assert.True(int.Parse(run.Results["longest_run"]) < 8, run.ToString());
    }

    /// <summary>The cross-check against an implementation nobody here wrote: QEMU's virtio-blk-pci.</summary>
    [SkippableTheory]
    [InlineData("", "disable-legacy=on")]
    [InlineData("legacy=1", "disable-modern=on")]
    [InlineData("msix=1 indirect=1 eventidx=1", "disable-legacy=on")]
    public void SameGuestUnderQemu_ReportsTheSameResults_AndWritesTheSameBytes(string options, string qemuDevice)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string ours = NewRawImage("ours.img"), theirs = NewRawImage("qemu.img");
        string cmdline = $"cross={Cross} hostile=0 {options}";
        var run = RunVblk(ours, cmdline, "-A");
        var qemu = RunQemu(theirs, cmdline, qemuDevice);
        Assert.True(qemu.Done, qemu.ToString());
        var keys = new[] { "found", "status", "capacity", "blk_size", "ro_feature", "indirect", "eventidx", "write_a", "write_b", "write_c",
            "flush", "readback", "write_zeroes", "zeroes_read_back", "get_id", "read_past_end", "unknown_type", "in_flight_completed" }
            .Concat(new[] { "retarget_read", "retargeted_irqs", "old_vector_irqs_after" }.Where(run.Results.ContainsKey));   // MSI-X runs
        foreach (var key in keys)
            Assert.True(run.Results[key] == qemu.Results[key], $"{key}: ours {run.Results[key]}, QEMU {qemu.Results[key]}\n{run}\n{qemu}");
        Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
    }

    private static EngineRun RunQemu(string disk, string cmdline, string deviceOptions)
    {
        try
        {
            return EngineProcess.RunProgram("qemu-system-x86_64", ["-enable-kvm", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
                "-serial", "stdio", "-kernel", EngineProcess.Guest("vblk"), "-append", cmdline,
                "-drive", $"file={disk},format=raw,if=none,id=d0", "-device", $"virtio-blk-pci,drive=d0,{deviceOptions}"], timeoutSeconds: 120);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("qemu-system-x86_64 is needed for the cross-check; scripts/setup-debian.sh installs it", e);
        }
    }
}
