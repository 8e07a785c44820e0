using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>Linux boots are slow here (30-60 s), so each test class boots once per kernel and its tests
/// assert on different parts of that one boot. The boot happens on first use, and a failed boot fails
/// every test that asks for it (with the console tail). Classes share one collection so boots never
/// compete with each other for the host's cores.</summary>
public abstract class LinuxBootFixture : IDisposable
{
    private readonly Dictionary<string, Lazy<LinuxRun>> _runs = [];
    private readonly Lock _lock = new();

    /// <summary>This fixture's folder for images and initramfs (removed at the end).</summary>
    public string Dir { get; } = Directory.CreateTempSubdirectory("xhyve-linux-").FullName;

    /// <summary>The kernels every Linux test runs on: the test kernel everywhere, Debian's where the host can.</summary>
    public static TheoryData<string> Kernels => new() { LinuxKernel.TestKernel, LinuxKernel.Debian };

    /// <summary>Skips (with the reason) when the host cannot boot that kernel; otherwise boots once.</summary>
    public LinuxRun Run(string kind)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var kernel = LinuxKernels.Find(kind, out string reason);
        Skip.If(kernel == null, reason);
        Lazy<LinuxRun> run;
        lock (_lock)
        {
            if (!_runs.TryGetValue(kind, out run!))
                _runs[kind] = run = new Lazy<LinuxRun>(() => Boot(kernel!, KernelDir(kind)));
        }
        return run.Value;
    }

    /// <summary>A folder per kernel kind, so two kernels' images never mix.</summary>
    public string KernelDir(string kind) => Directory.CreateDirectory(Path.Combine(Dir, kind)).FullName;

    protected abstract LinuxRun Boot(LinuxKernel kernel, string dir);

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

[CollectionDefinition("Linux")]
public sealed class LinuxCollection;

/// <summary>Host tools the Linux tests check images with (e2fsprogs) and the engine's disk command.</summary>
public static class HostTools
{
    public static EngineRun Run(string program, params string[] args) => EngineProcess.RunProgram(program, args, 120);

    /// <summary>e2fsck -fn: a forced, read-only check; exit 0 means the file system is clean.</summary>
    public static void AssertFsckClean(string image)
    {
        var fsck = Run("e2fsck", "-fn", image);
        Assert.True(fsck.ExitCode == 0, $"e2fsck -fn {image} exited {fsck.ExitCode}:\n{fsck.Stdout}{fsck.Stderr}");
    }

    /// <summary>A file's bytes from an ext4 image, read by debugfs (not by our code).</summary>
    public static byte[] ReadExt4File(string image, string path)
    {
        string target = Path.Combine(Path.GetDirectoryName(image)!, $"debugfs-{Guid.NewGuid():N}");
        var dump = Run("debugfs", "-R", $"dump {path} {target}", image);
        Assert.True(File.Exists(target), $"debugfs could not dump {path} from {image}:\n{dump.Stdout}{dump.Stderr}");
        try { return File.ReadAllBytes(target); } finally { File.Delete(target); }
    }

    public static EngineRun Disk(params string[] args) => EngineProcess.Run(["disk", .. args], 120);

    /// <summary>Bytes a split/sparse image stores, from `xhyve disk info`.</summary>
    public static long StoredBytes(string image, string options)
    {
        var info = Disk("info", image, options);
        Assert.True(info.ExitCode == 0, info.ToString());
        var m = System.Text.RegularExpressions.Regex.Match(info.Stdout, @"(\d+) bytes stored");
        Assert.True(m.Success, info.Stdout);
        return long.Parse(m.Groups[1].Value);
    }

    /// <summary>Makes an ext4 image on the host holding the given files (mke2fs -d).</summary>
    public static void MakeExt4(string image, string size, IReadOnlyDictionary<string, string> files)
    {
        string content = image + ".d";
        Directory.CreateDirectory(content);
        foreach (var (name, text) in files) File.WriteAllText(Path.Combine(content, name), text);
        var mkfs = Run("mkfs.ext4", "-q", "-F", "-d", content, image, size);
        Assert.True(mkfs.ExitCode == 0, mkfs.ToString());
        Directory.Delete(content, true);
    }
}
