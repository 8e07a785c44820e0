using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;
using Xhyve.TestSupport;

namespace Xhyve.Management.Tests;

/// <summary>What the tests that start real engines share: a store in a temporary folder, an engine host with the
/// engine under test (the NativeAOT build), the test guests, and a cleanup that leaves no engine running.</summary>
public abstract class EngineTestBase : IDisposable
{
    protected const string KvmSkipReason = "/dev/kvm is absent: these tests start real engines";
    protected static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    protected readonly string _root;
    protected readonly VmStore _store;
    protected readonly EngineHost _host;

    protected EngineTestBase(string folderPrefix)
    {
        _root = Directory.CreateTempSubdirectory(folderPrefix).FullName;
        _store = new VmStore(_root);
        _host = new EngineHost(_store, EngineUnderTest.Path);
    }

    public virtual void Dispose()
    {
        foreach (var name in _store.Names())
            if (_host.GetStatus(name).State != VmState.Off) try { _host.TurnOff(name); } catch (EngineException) { }
        KillEnginesUnder(_root);
        Directory.Delete(_root, true);
        GC.SuppressFinalize(this);
    }

    protected static bool HasKvm => File.Exists("/dev/kvm");

    /// <summary>An engine a failed test left behind without a pid file the store knows (two racing starts) would
    /// run on after the test: any process whose command line names this test's folder is killed.</summary>
    private static void KillEnginesUnder(string root)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == Environment.ProcessId) continue;
            string cmdline;
            try { cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            if (!cmdline.Contains(root + "/", StringComparison.Ordinal)) continue;
            try { using var p = System.Diagnostics.Process.GetProcessById(pid); p.Kill(); p.WaitForExit(5000); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception) { }
        }
    }

    protected static string Guest(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "XhyvePS.sln"))) dir = dir.Parent;
        return Path.Combine(dir!.FullName, "tests", "guests", "build", name + ".elf");
    }

    protected VirtualMachine Create(string name, string guest, string cmdline) =>
        _store.Create(new VirtualMachine { Name = name, MultibootPath = Guest(guest), KernelCommandLine = cmdline, MemoryStartupBytes = 64L << 20 });
}
