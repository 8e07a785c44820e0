using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>Guest memory is checked against the host's physical memory (MemTotal) before a VM is stored or started.</summary>
public sealed class HostFactsTests
{
    [Fact]
    public void MemTotal_IsReadFromMeminfo_InBytes()
    {
        Assert.Equal(16318464L * 1024, HostFacts.ParseMemTotal("MemTotal:       16318464 kB\nMemFree:         1000 kB\n"));
        Assert.Null(HostFacts.ParseMemTotal("MemFree: 1000 kB\n"));
        Assert.Null(HostFacts.ParseMemTotal("MemTotal: lots kB\n"));
        Assert.True(HostFacts.MemoryTotalBytes() > 0);
    }

    [Fact]
    public void MemoryUpToTheHostsRam_Fits_AndAboveIt_IsRefusedNamingBothSizes()
    {
        long host = 8L << 30;
        Assert.Null(HostFacts.MemoryProblem(host, host));
        Assert.Null(HostFacts.MemoryProblem(512L << 20, host));
        Assert.Null(HostFacts.MemoryProblem(1L << 50, null));   // unknown host size: nothing to hold it against
        string? problem = HostFacts.MemoryProblem(16L << 30, host);
        Assert.Contains("16 GB", problem);
        Assert.Contains("8 GB", problem);
        Assert.Contains("512 MB", HostFacts.MemoryProblem(512L << 20, 256L << 20));
    }

    [Fact]
    public void Start_RefusesMemoryAboveTheHostsRam_BeforeLaunchingAnything()
    {
        string root = Directory.CreateTempSubdirectory("xhyve-mem").FullName;
        try
        {
            var store = new VmStore(root);
            long host = HostFacts.MemoryTotalBytes()!.Value;
            var vm = store.Create(new VirtualMachine { Name = "huge", KernelPath = "/vm/vmlinuz", MemoryStartupBytes = (host + (1L << 30)) & ~4095L });
            // An engine path that is not there: the memory check must come before the engine is even looked for.
            var engines = new EngineHost(store, Path.Combine(root, "no-engine"));
            var e = Assert.Throws<VmDefinitionException>(() => engines.Start(vm, TimeSpan.FromSeconds(5)));
            Assert.Contains("physical memory", e.Message);
            Assert.Contains(HostFacts.FormatSize(host), e.Message);
            Assert.False(File.Exists(engines.FileOf("huge", EngineHost.PidFile)));
        }
        finally { Directory.Delete(root, true); }
    }
}
