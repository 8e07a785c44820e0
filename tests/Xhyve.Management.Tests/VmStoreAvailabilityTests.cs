using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>A store that cannot be created or used is a <see cref="VmStoreUnavailableException"/> naming the path and
/// the problem, and nothing is written; a store that is not there yet is simply empty.</summary>
public sealed class VmStoreAvailabilityTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("xhyve-avail").FullName;

    public void Dispose() => Directory.Delete(_temp, true);

    private static VirtualMachine Vm() => new() { Name = "web", KernelPath = "/vm/vmlinuz" };

    [Fact]
    public void AStoreNotCreatedYet_IsEmpty_AndCreatedByTheFirstVm()
    {
        var store = new VmStore(Path.Combine(_temp, "new", "store"));
        store.CheckAvailable();
        Assert.Empty(store.Names());
        Assert.False(store.Exists("web"));
        Assert.False(Directory.Exists(Path.Combine(_temp, "new")));   // the check leaves nothing behind
        store.Create(Vm());
        Assert.Equal(["web"], store.Names());
    }

    [Fact]
    public void AStoreThatIsAFile_IsUnavailable_NamingIt()
    {
        string file = Path.Combine(_temp, "home");
        File.WriteAllText(file, "not a folder");
        var store = new VmStore(file);
        var e = Assert.Throws<VmStoreUnavailableException>(() => store.CheckAvailable());
        Assert.Equal(file, e.Path);
        Assert.Contains($"{file} is a file, not a folder", e.Message);
        Assert.Throws<VmStoreUnavailableException>(() => store.Create(Vm()));
        Assert.Equal("not a folder", File.ReadAllText(file));
    }

    [Fact]
    public void AStoreUnderAFile_IsUnavailable_NamingTheFile()
    {
        string file = Path.Combine(_temp, "blocker");
        File.WriteAllText(file, "");
        var store = new VmStore(Path.Combine(file, "xhyve"));
        var e = Assert.Throws<VmStoreUnavailableException>(() => store.CheckAvailable());
        Assert.Equal(file, e.Path);
        Assert.Contains($"{file} is a file, not a folder", e.Message);
        Assert.Contains(Path.Combine(file, "xhyve"), e.Message);
        Assert.Throws<VmStoreUnavailableException>(() => store.Create(Vm()));
    }

    [Fact]
    public void AStoreWhereNoFolderCanBeMade_IsUnavailable_EvenForRoot()
    {
        // /proc takes no new folders, whoever asks: what an unwritable folder is to a user, for root as well.
        var store = new VmStore("/proc/xhyve-store-test");
        var e = Assert.Throws<VmStoreUnavailableException>(() => store.CheckAvailable());
        Assert.Equal("/proc", e.Path);
        Assert.Contains("/proc/xhyve-store-test", e.Message);
        Assert.Contains("cannot create", e.Message);
        Assert.Throws<VmStoreUnavailableException>(() => store.Create(Vm()));
        Assert.False(Directory.Exists("/proc/xhyve-store-test"));
    }

    [Fact]
    public void AnExistingStoreWhereNoFolderCanBeMade_FailsTheWriteProbe_AndCreate()
    {
        // /proc exists (so reading it as a store finds no VMs) but takes no vms/ folder.
        var store = new VmStore("/proc");
        store.CheckAvailable();
        Assert.Empty(store.Names());
        var e = Assert.Throws<VmStoreUnavailableException>(() => store.CheckAvailable(probeWrite: true));
        Assert.Equal("/proc", e.Path);
        Assert.Throws<VmStoreUnavailableException>(() => store.Create(Vm()));
    }

    [Fact]
    public void AVmsEntryThatIsAFile_IsUnavailable_NamingIt()
    {
        File.WriteAllText(Path.Combine(_temp, "vms"), "");
        var store = new VmStore(_temp);
        var e = Assert.Throws<VmStoreUnavailableException>(() => store.CheckAvailable());
        Assert.Equal(Path.Combine(_temp, "vms"), e.Path);
        Assert.Throws<VmStoreUnavailableException>(() => store.Create(Vm()));
    }
}
