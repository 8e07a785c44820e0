using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>VM names are case-insensitive, as in PowerShell and Hyper-V, on a case-sensitive file system, and keep
/// the case they were created with.</summary>
public sealed class VmStoreNameCaseTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-case").FullName;
    private readonly VmStore _store;

    public VmStoreNameCaseTests() => _store = new VmStore(_root);

    public void Dispose() => Directory.Delete(_root, true);

    private static VirtualMachine Vm(string name) => new() { Name = name, KernelPath = "/vm/vmlinuz" };

    [Fact]
    public void AVm_IsFound_InAnyCase_AndKeepsItsOwnCase()
    {
        _store.Create(Vm("Web"));
        Assert.Equal("Web", _store.Get("WEB").Name);
        Assert.Equal("Web", _store.Get("web").Name);
        Assert.True(_store.Exists("wEB"));
        Assert.Equal("Web", _store.Find("WEB"));
        Assert.Equal(Path.Combine(_root, "vms", "Web"), _store.FolderOf("web"));
        Assert.Equal(["Web"], _store.Names());
    }

    [Fact]
    public void ANameTakenInAnotherCase_IsRefused_AndTheFirstIsUntouched()
    {
        var first = Vm("web");
        first.ProcessorCount = 3;
        _store.Create(first);
        var e = Assert.Throws<VmExistsException>(() => _store.Create(Vm("WEB")));
        Assert.Equal("web", e.Name);
        Assert.Equal(["web"], _store.Names());
        Assert.Equal(3, _store.Get("web").ProcessorCount);
        Assert.False(Directory.Exists(Path.Combine(_root, "vms", "WEB")));
    }

    [Fact]
    public void UpdateAndRemove_TakeTheNameInAnyCase()
    {
        _store.Create(Vm("Db"));
        Assert.Equal(2, _store.Update("DB", vm => vm.ProcessorCount = 2).ProcessorCount);
        Assert.Equal(2, _store.Get("db").ProcessorCount);
        _store.Remove("dB");
        Assert.Empty(_store.Names());
    }

    [Fact]
    public void TwoFoldersDifferingOnlyInCase_MadeByHand_AreAnErrorNamingBoth()
    {
        _store.Create(Vm("app"));
        // A copy made outside the store, as a user might with cp -r.
        string copy = Path.Combine(_root, "vms", "APP");
        Directory.CreateDirectory(copy);
        File.Copy(Path.Combine(_root, "vms", "app", VmStore.DefinitionFile), Path.Combine(copy, VmStore.DefinitionFile));
        var e = Assert.Throws<VmStoreException>(() => _store.Get("app"));
        Assert.Contains(Path.Combine(_root, "vms", "app"), e.Message);
        Assert.Contains(copy, e.Message);
        Assert.Contains("differ only in case", e.Message);
        Assert.Throws<VmStoreException>(() => _store.Create(Vm("App")));
    }

    [Fact]
    public void ALeftoverFolderWithoutDefinition_InAnotherCase_DoesNotMakeTheVmAmbiguous()
    {
        _store.Create(Vm("web"));
        Directory.CreateDirectory(Path.Combine(_root, "vms", "WEB"));   // e.g. left by a removal interrupted half-way
        Assert.Equal(["web"], _store.Names());
        Assert.Equal("web", _store.Find("WEB"));
        Assert.Equal("web", _store.Get("WEB").Name);
        Assert.Equal(Path.Combine(_root, "vms", "web"), _store.FolderOf("Web"));
    }

    [Fact]
    public void ConcurrentCreates_InTwoCases_StoreExactlyOne()
    {
        // mkdir is atomic for one spelling only: without the store's create lock both spellings got a folder.
        for (int round = 0; round < 30; round++)
        {
            string name = $"race{round}";
            using var start = new Barrier(2);
            var results = new[] { name, name.ToUpperInvariant() }.AsParallel().WithDegreeOfParallelism(2).Select(n =>
            {
                start.SignalAndWait();
                try { _store.Create(Vm(n)); return "created"; }
                catch (VmExistsException) { return "exists"; }
            }).ToList();
            Assert.Equal(["created", "exists"], results.Order());
            Assert.Single(_store.Names(), n => n.Equals(name, StringComparison.OrdinalIgnoreCase));
        }
    }
}
