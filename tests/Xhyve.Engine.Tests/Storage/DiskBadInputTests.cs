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
    [InlineData("{img},sectorsize=1000", "sectorsize=1000: the logical sector size must be 512 or 4096")]
    [InlineData("{img},sectorsize=4096/512", "the physical sector size must be")]
    [InlineData("{img},split=1M", "size= is required with split=")]
    [InlineData("{img},size=1M,split=3", "split=3: must be a positive multiple")]
    [InlineData("{img},size=lots", "size=lots: not a size")]
    [InlineData("", "no image path given")]
    public void BadDiskOption_IsRefusedBeforeAnythingStarts(string options, string message)
    {
        string img = Image();
        var run = EngineProcess.Run(["-s", $"4,virtio-blk{(options.Length > 0 ? "," : "")}{options.Replace("{img}", img).Replace("{dir}", _dir)}",
            "-s", "31,lpc", "-f", "kexec,/etc/hostname"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message.Replace("{dir}", _dir), run.Stderr);
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
