using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Tests.Storage;

/// <summary>Bad disks and disk options: one message naming the image and the problem, exit 1, and the
/// image left exactly as it was.</summary>
public sealed class DiskBadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("diskbad").FullName;

    public void Dispose()
    {
        foreach (var f in Directory.GetFiles(_dir)) Immutable(f, false);
        Directory.Delete(_dir, true);
    }

    private string Image(long size = 1 << 20)
    {
        string path = Path.Combine(_dir, "disk.img");
        using (var f = File.Create(path)) f.SetLength(size);
        return path;
    }

    private static EngineRun RunWithDisk(string diskOptions) =>
        EngineProcess.RunGuest("vblk", "", ["-s", $"4,virtio-blk,{diskOptions}"]);

    [Theory]
    [InlineData("{dir}/none.img", "image {dir}/none.img not found")]
    [InlineData("{img},bogus", "bogus: unknown block option")]
    [InlineData("{img},sectorsize=1000", "sectorsize=1000: the logical sector size 1000 must be a power of two from 512 to 65536")]
    [InlineData("{img},sectorsize=4096/512", "the physical sector size 512 must be a power of two from the logical size 4096")]
    [InlineData("{img},split=1M", "split=1M: the image {img} is not split (there is no disk.img.0000)")]
    [InlineData("{img},size=1M,split=3", "split=3: must be a positive multiple")]
    [InlineData("{img},size=lots", "size=lots: not a size")]
    [InlineData("", "no image path given")]
    public void BadDiskOption_IsRefusedBeforeAnythingStarts(string options, string message)
    {
        string img = Image();
        var run = EngineProcess.Run(["-s", $"4,virtio-blk{(options.Length > 0 ? "," : "")}{options.Replace("{img}", img).Replace("{dir}", _dir)}",
            "-s", "31,lpc", "-f", "kexec,/etc/hostname"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message.Replace("{dir}", _dir).Replace("{img}", img), run.Stderr);
        Assert.Equal(1 << 20, new FileInfo(img).Length);
    }

    [Fact]
    public void SameImageTwice_IsRefused()
    {
        string img = Image();
        var run = EngineProcess.Run(["-s", $"4,virtio-blk,{img}", "-s", $"5,virtio-blk,{img},ro", "-s", "31,lpc", "-f", "kexec,/etc/hostname"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("is already the disk of", run.Stderr);
    }

    [SkippableFact]
    public void ReadOnlyFileWithoutRo_IsAnError_NotASilentReadOnlyDisk()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string img = Image();
        Immutable(img, true);
        var run = RunWithDisk(img);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"{img}: cannot open read-write", run.Stderr);
        Assert.Contains("add ,ro", run.Stderr);
        Assert.True(RunWithDisk($"{img},ro").Done, "the same file opens with ,ro");
    }

    [SkippableFact]
    public void ImageInUseByAnotherEngine_IsRefused()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string img = Image();
        using (RawImage.Open(img, new RawImageOptions()))   // holds the exclusive lock, as a running engine does
        {
            var run = RunWithDisk(img);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains($"{img}: the image is in use by another process", run.Stderr);
        }
        Assert.True(RunWithDisk(img).Done, "free again once the holder closed it");
    }

    [SkippableFact]
    public void SparseImageWithCorruptLut_IsRefusedNamingTheLut_AndNotTouched()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string img = Path.Combine(_dir, "sparse.img");
        Assert.True(RunWithDisk($"{img},size=1M,sparse").Done);
        string lut = img + ".lut";
        var bytes = File.ReadAllBytes(lut);
        BitConverter.GetBytes(12345u).CopyTo(bytes, 0);        // sector 0 -> far past the end of the segment
        File.WriteAllBytes(lut, bytes);
        var run = RunWithDisk($"{img},size=1M,sparse");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"{lut}: entry for sector 0 points to sector 12345", run.Stderr);
        Assert.Equal(bytes, File.ReadAllBytes(lut));
    }

    [Theory]
    [InlineData("{img},size=2M", "size=2M: the image {img} is 1 MiB (as its web.img.desc records)")]
    [InlineData("{img},split=512K", "split=512K: the image {img} has segments of 256 KiB")]
    [InlineData("{img},sectorsize=4096", "sectorsize=4096: the image {img} has 512-byte sectors")]
    [InlineData("{raw},sparse", "sparse: the image {raw} is not sparse (there is no disk.img.lut)")]
    [InlineData("{old}", "give split=SIZE, the segment size it was made with")]
    [InlineData("{old},split=128K", "split=128K: the image {old} has 4 segment files")]
    public void OptionsThatContradictTheImage_AreRefusedBeforeAnythingStarts(string options, string message)
    {
        string img = Path.Combine(_dir, "web.img"), raw = Image(), old = Path.Combine(_dir, "old.img");
        DiskImages.Create(Xhyve.Vmm.Config.BlockDeviceOptions.ParseOptions(img, ["size=1M", "split=256K", "sparse"]));
        using (SplitSparseImage.Open(old, new SplitImageLayout(1 << 20, 256 << 10, true, 512), readOnly: false)) { }   // as xhyve made it: no descriptor
        var before = Snapshot();
        string Fill(string s) => s.Replace("{img}", img).Replace("{raw}", raw).Replace("{old}", old);
        var run = EngineProcess.Run(["-s", $"4,virtio-blk,{Fill(options)}", "-s", "31,lpc", "-f", "kexec,/etc/hostname"]);
        AssertOneLineError(run, Fill(message));
        Assert.Equal(before, Snapshot());
    }

    [SkippableFact]
    public void CorruptKernel_IsRefusedBeforeANewImageIsCreated()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = Path.Combine(_dir, "vmlinuz");
        File.WriteAllBytes(kernel, new byte[4096]);
        string img = Path.Combine(_dir, "new.img");
        var run = EngineProcess.Run(["-s", $"4,virtio-blk,{img},size=1M,split=512K,sparse", "-s", "31,lpc", "-f", $"kexec,{kernel}"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("not a Linux bzImage", run.Stderr);
        Assert.Empty(Directory.GetFiles(_dir, "new.img*"));
    }

    private const string SparseOptions = "size=1M,split=256K,sparse,sectorsize=4096";

    /// <summary>A split+sparse image with data in segments 0 and 1 (sectors 0, 75 and 76; 75 and 76 at indices 0 and 1 of segment 1).</summary>
    private string SparseImage()
    {
        string img = Path.Combine(_dir, "sparse.img");
        using var image = SplitSparseImage.Open(img, new SplitImageLayout(1 << 20, 256 << 10, true, 4096), readOnly: false);
        image.Write(0, Enumerable.Repeat((byte)1, 4096).ToArray());
        image.Write(300 << 10, Enumerable.Repeat((byte)2, 8192).ToArray());
        return img;
    }

    private Dictionary<string, byte[]> Snapshot() => Directory.GetFiles(_dir).ToDictionary(f => f, File.ReadAllBytes);

    private static void AssertOneLineError(EngineRun run, string expected)
    {
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains(expected, run.Stderr);
        Assert.DoesNotContain('\n', run.Stderr.TrimEnd());
        Assert.DoesNotContain(": ok", run.Stdout);
    }

    [Fact]
    public void DiskCheck_FindsTwoSectorsSharingASlot_AndChangesNothing()
    {
        string img = SparseImage();
        var lut = File.ReadAllBytes(img + ".lut");
        BitConverter.GetBytes(0u).CopyTo(lut, 76 * 4);          // sector 76 -> sector 75's place in segment 1
        File.WriteAllBytes(img + ".lut", lut);
        var before = Snapshot();
        foreach (string command in new[] { "check", "info" })
            AssertOneLineError(EngineProcess.Run(["disk", command, img, SparseOptions]),
                $"{img}.lut: entry for sector 76 points to sector 0 of {img}.0001, which another sector's entry already uses");
        Assert.Equal(before.Keys.Order(), Snapshot().Keys.Order());
        foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));
    }

    [Theory]
    [InlineData(".0002")]
    [InlineData(".lut")]
    public void DiskCheck_OfAnImageMissingAFile_NamesIt_AndCreatesNothing(string suffix)
    {
        string img = SparseImage();
        File.Delete(img + suffix);
        var before = Snapshot();
        AssertOneLineError(EngineProcess.Run(["disk", "check", img, SparseOptions]), $"{img}{suffix}: missing from the existing image {img}");
        Assert.Equal(before.Keys.Order(), Snapshot().Keys.Order());
    }

    [Fact]
    public void Fifo_AsADisk_IsRefusedAtOnce()
    {
        string fifo = Path.Combine(_dir, "fifo");
        Assert.Equal(0, Run("mkfifo", fifo).Item1);
        AssertOneLineError(EngineProcess.Run(["disk", "info", fifo], timeoutSeconds: 20), $"{fifo}: is a FIFO, not a regular file or block device");
        File.WriteAllBytes(fifo + ".lut", new byte[8192]);       // a sparse image whose data file is the FIFO
        AssertOneLineError(EngineProcess.Run(["disk", "check", fifo, "size=1M,sparse"], timeoutSeconds: 20), $"{fifo}: is a FIFO, not a regular file or block device");
    }

    /// <summary>ENOSPC: a 1 MiB tmpfs mounted in the test's own folder (root only), unmounted afterwards.</summary>
    [SkippableTheory]
    [InlineData("create", "size=1G,sparse")]                 // an 8 MiB LUT
    [InlineData("create", "size=64M,split=4M,sparse")]       // 16 segments, then a 512 KiB LUT
    [InlineData("convert", "")]                              // raw target
    [InlineData("convert", "split=1M,sparse")]               // sparse target
    public void NoSpace_IsOneLine_AndRemovesThePartialImage(string command, string options)
    {
        Skip.IfNot(Environment.UserName == "root", "mounting a tmpfs needs root");
        string full = Path.Combine(_dir, "full");
        Directory.CreateDirectory(full);
        Assert.Equal(0, Run("mount", $"-t tmpfs -o size=1M tmpfs {full}").Item1);
        try
        {
            File.WriteAllBytes(Path.Combine(full, "filler"), new byte[768 << 10]);   // leaves about 256 KiB
            string output = Path.Combine(full, "out.img");
            EngineRun run;
            if (command == "create") run = EngineProcess.Run(["disk", "create", output, options]);
            else
            {
                string source = Path.Combine(_dir, "source.img");
                var data = new byte[4 << 20];
                new Random(5).NextBytes(data);
                File.WriteAllBytes(source, data);
                run = EngineProcess.Run(options.Length > 0 ? ["disk", "convert", source, output, options] : ["disk", "convert", source, output]);
            }
            AssertOneLineError(run, $"{output}");
            Assert.Contains("No space left on device", run.Stderr);
            Assert.Contains("the partial image was removed", run.Stderr);
            Assert.Equal([Path.Combine(full, "filler")], Directory.GetFileSystemEntries(full));
        }
        finally { Run("umount", full); }
    }

    /// <summary>A file nobody can open for writing: chattr +i as root (root ignores mode bits), mode 0444 otherwise.</summary>
    private static void Immutable(string path, bool on)
    {
        if (Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root")
        {
            var (code, _, err) = Run("chattr", $"{(on ? "+" : "-")}i {path}");
            if (on) Assert.True(code == 0, $"chattr +i failed: {err}");
        }
        else File.SetUnixFileMode(path, on ? UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead : UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private static (int, string, string) Run(string file, string args)
    {
        var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        string o = p.StandardOutput.ReadToEnd(), e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, e);
    }
}
