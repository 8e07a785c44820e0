using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

public sealed class VmStoreTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-store").FullName;
    private readonly VmStore _store;

    public VmStoreTests() => _store = new VmStore(_root);

    public void Dispose() => Directory.Delete(_root, true);

    private static VirtualMachine Vm(string name = "web") => new() { Name = name, KernelPath = "/vm/vmlinuz" };

    [Fact]
    public void Create_Get_Names_Remove()
    {
        _store.Create(Vm("b"));
        _store.Create(Vm("a"));
        Assert.Equal(["a", "b"], _store.Names());
        var a = _store.Get("a");
        Assert.Equal(("a", "/vm/vmlinuz", 1), (a.Name, a.KernelPath, a.Version));
        _store.Remove("a");
        Assert.Equal(["b"], _store.Names());
        Assert.Contains("no VM named 'a'", Assert.Throws<VmStoreException>(() => _store.Get("a")).Message);
    }

    [Fact]
    public void VmFolders_AreOwnerOnly()
    {
        _store.Create(Vm());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_store.FolderOf("web")));
    }

    [Fact]
    public void ASecondVmWithTheSameName_IsRefused_AndTheFirstIsUntouched()
    {
        var first = Vm();
        first.ProcessorCount = 3;
        _store.Create(first);
        Assert.Contains("already exists", Assert.Throws<VmExistsException>(() => _store.Create(Vm())).Message);
        Assert.Equal(3, _store.Get("web").ProcessorCount);
    }

    [Fact]
    public void AnInvalidVm_IsNotStored()
    {
        var vm = Vm();
        vm.MemoryStartupBytes = 5;
        Assert.Contains("MemoryStartupBytes 5", Assert.Throws<VmStoreException>(() => _store.Create(vm)).Message);
        Assert.Empty(_store.Names());
    }

    [Fact]
    public void CorruptJson_IsReportedWithTheFileName()
    {
        _store.Create(Vm());
        string file = Path.Combine(_store.FolderOf("web"), VmStore.DefinitionFile);
        File.WriteAllText(file, "{ \"name\": \"web\", ");
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.StartsWith($"{file}: not a valid VM definition", e.Message);
    }

    [Fact]
    public void Writes_LeaveNoTemporaryFiles_AndReplaceTheDefinitionWhole()
    {
        _store.Create(Vm());
        for (int i = 0; i < 20; i++) _store.Update("web", vm => vm.KernelCommandLine = new string('x', i * 100));
        Assert.Equal([VmStore.DefinitionFile, ".lock"], Directory.GetFiles(_store.FolderOf("web")).Select(Path.GetFileName).OrderDescending());
        Assert.Equal(1900, _store.Get("web").KernelCommandLine!.Length);
    }

    [Fact]
    public void ConcurrentUpdates_FromManyWriters_AllLand()
    {
        _store.Create(Vm());
        // Separate store objects, as separate shells would have; each update takes the VM's lock file.
        Parallel.For(0, 8, w =>
        {
            var store = new VmStore(_root);
            for (int i = 0; i < 10; i++) store.Update("web", vm => { Thread.Sleep(1); vm.ExtraArguments.Add($"-p{w}:{i}"); });   // the sleep widens the read-change-write window
        });
        var vm = _store.Get("web");
        Assert.Equal(80, vm.ExtraArguments.Count);
        Assert.Equal(81, vm.Version);
    }

    [Fact]
    public void SavingAStaleCopy_IsRefused_AndKeepsTheOtherChange()
    {
        _store.Create(Vm());
        var mine = _store.Get("web");
        var theirs = _store.Get("web");
        theirs.ProcessorCount = 4;
        _store.Save(theirs);
        mine.MemoryStartupBytes = 1L << 30;
        var e = Assert.Throws<VmStoreException>(() => _store.Save(mine));
        Assert.Contains("was changed elsewhere", e.Message);
        var stored = _store.Get("web");
        Assert.Equal((4, 256L << 20), (stored.ProcessorCount, stored.MemoryStartupBytes));
    }

    [Fact]
    public void DefaultRoot_FollowsXhyveHome_ThenXdg()
    {
        string? home = Environment.GetEnvironmentVariable("XHYVE_HOME"), xdg = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
        try
        {
            Environment.SetEnvironmentVariable("XHYVE_HOME", "/srv/xhyve");
            Assert.Equal("/srv/xhyve", VmStore.DefaultRoot());
            Environment.SetEnvironmentVariable("XHYVE_HOME", null);
            Environment.SetEnvironmentVariable("XDG_DATA_HOME", "/home/u/.data");
            Assert.Equal("/home/u/.data/xhyve", VmStore.DefaultRoot());
        }
        finally
        {
            Environment.SetEnvironmentVariable("XHYVE_HOME", home);
            Environment.SetEnvironmentVariable("XDG_DATA_HOME", xdg);
        }
    }

    // Issue 11: the store writes only its own regular files in the VM folder; a planted symlink is refused, not followed.

    [Fact]
    public void ADefinitionThatIsASymlink_IsNotReplaced()
    {
        _store.Create(Vm());
        string file = Path.Combine(_store.FolderOf("web"), "vm.json");
        string elsewhere = Path.Combine(_root, "elsewhere.json");
        File.Move(file, elsewhere);
        File.CreateSymbolicLink(file, elsewhere);
        string before = File.ReadAllText(elsewhere);
        var e = Assert.Throws<VmStoreException>(() => _store.Update("web", vm => vm.ProcessorCount = 2));
        Assert.Contains($"{file}: is a symbolic link", e.Message);
        Assert.NotNull(new FileInfo(file).LinkTarget);
        Assert.Equal(before, File.ReadAllText(elsewhere));
    }

    [Fact]
    public void ALockFileThatIsASymlink_IsRefused_AndNothingIsCreatedThroughIt()
    {
        _store.Create(Vm());
        string lockFile = Path.Combine(_store.FolderOf("web"), ".lock");
        File.Delete(lockFile);
        string target = Path.Combine(_root, "created-through-the-link");
        File.CreateSymbolicLink(lockFile, target);
        var e = Assert.Throws<VmStoreException>(() => _store.Update("web", vm => vm.ProcessorCount = 2));
        Assert.Contains("symbolic link", e.Message);
        Assert.False(File.Exists(target));
    }

    // Issue 11 item 9: a damaged or hand-edited vm.json is refused when read, naming the field.

    private string DefinitionPath => Path.Combine(_store.FolderOf("web"), VmStore.DefinitionFile);

    [Fact]
    public void ADefinitionOverOneMiB_IsRefused_NamingItsSize()
    {
        _store.Create(Vm());
        // Valid JSON padded with whitespace: only its size is wrong.
        string json = File.ReadAllText(DefinitionPath);
        File.WriteAllText(DefinitionPath, json.TrimEnd().TrimEnd('}') + new string(' ', 1 << 20) + "}");
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.StartsWith($"{DefinitionPath}: ", e.Message);
        Assert.Contains("more than a VM definition may be (1048576 bytes)", e.Message);
    }

    [Fact]
    public void ADefinitionExactlyOneMiB_IsRead()
    {
        _store.Create(Vm());
        string json = File.ReadAllText(DefinitionPath).TrimEnd().TrimEnd('}');
        File.WriteAllText(DefinitionPath, json + new string(' ', (1 << 20) - json.Length - 1) + "}");
        Assert.Equal(1 << 20, new FileInfo(DefinitionPath).Length);
        Assert.Equal("web", _store.Get("web").Name);
    }

    [Fact]
    public void ReadingADefinition_AllocatesForItsSize_NotForTheOneMiBCap()
    {
        // A 1 MiB buffer per read went to the large object heap: a full collection every few cmdlets in a session.
        _store.Create(Vm());
        _store.Get("web");
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) _store.Get("web");
        long perRead = (GC.GetAllocatedBytesForCurrentThread() - before) / 10;
        Assert.True(perRead < 64 * 1024, $"one read of a {new FileInfo(DefinitionPath).Length}-byte vm.json allocated {perRead} bytes");
    }

    [Fact]
    public void AFieldGivenTwice_IsRefused_NamingTheField()
    {
        _store.Create(Vm());
        string json = File.ReadAllText(DefinitionPath);
        File.WriteAllText(DefinitionPath, json.Replace("\"processorCount\": 1,", "\"processorCount\": 1,\n  \"processorCount\": 64,"));
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.StartsWith($"{DefinitionPath}: not a valid VM definition at $.processorCount: Duplicate property 'processorCount'", e.Message);
    }

    [Fact]
    public void ADuplicateFieldInsideADisk_IsRefused_NamingTheField()
    {
        var vm = Vm();
        vm.Disks.Add(new VmDisk { Path = "/vm/a.img", Slot = 2 });
        _store.Create(vm);
        string json = File.ReadAllText(DefinitionPath);
        File.WriteAllText(DefinitionPath, json.Replace("\"path\": \"/vm/a.img\",", "\"path\": \"/vm/a.img\",\n      \"path\": \"/etc/shadow\","));
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.Contains("at $.disks[0].path: Duplicate property 'path'", e.Message);
    }

    [Theory]
    [InlineData("kernelCommandLine", "\"kernelPath\": \"/vm/vmlinuz\"", "\"kernelPath\": \"/vm/vmlinuz\", \"kernelCommandLine\": \"{0}\"")]
    [InlineData("kernelPath", "\"kernelPath\": \"/vm/vmlinuz\"", "\"kernelPath\": \"/{0}\"")]
    [InlineData("extraArguments[0]", "\"extraArguments\": []", "\"extraArguments\": [\"{0}\"]")]
    public void AnOversizedValue_IsRefusedWhenRead_NamingTheField(string field, string find, string replace)
    {
        _store.Create(Vm());
        string json = File.ReadAllText(DefinitionPath);
        Assert.Contains(find, json);
        File.WriteAllText(DefinitionPath, json.Replace(find, string.Format(replace, new string('x', 70_000))));
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.Contains($"field '{field}': ", e.Message);
        Assert.Contains("more than the", e.Message);
        Assert.True(e.Message.Length < 1000, "the message quotes the oversized value");
    }

    [Fact]
    public void AnOversizedNameInTheFile_IsRefused_WithoutQuotingIt()
    {
        _store.Create(Vm());
        File.WriteAllText(DefinitionPath, File.ReadAllText(DefinitionPath).Replace("\"name\": \"web\"", $"\"name\": \"{new string('n', 70_000)}\""));
        var e = Assert.Throws<VmStoreException>(() => _store.Get("web"));
        Assert.Contains("field 'name': 70000 characters, more than the 255 allowed", e.Message);
        Assert.True(e.Message.Length < 1000);
    }

    [Fact]
    public void ExtraArgumentsThatOverrideTheVm_AreRefusedWhenStored_NamingTheArgument()
    {
        var vm = Vm();
        vm.ExtraArguments.AddRange(["-u", "-c", "1"]);
        var e = Assert.Throws<VmStoreException>(() => _store.Create(vm));
        Assert.Contains("ExtraArguments '-c 1': the processor count belongs to the VM; set ProcessorCount", e.Message);
        _store.Create(Vm());
        e = Assert.Throws<VmStoreException>(() => _store.Update("web", v => v.ExtraArguments.Add("--name=other")));
        Assert.Contains("ExtraArguments '--name=other'", e.Message);
        Assert.Empty(_store.Get("web").ExtraArguments);
    }

    [Fact]
    public void ANullDisk_IsRefusedWhenRead_NamingTheEntry()
    {
        _store.Create(Vm());
        File.WriteAllText(DefinitionPath, File.ReadAllText(DefinitionPath).Replace("\"disks\": []", "\"disks\": [null]"));
        Assert.Contains("field 'disks[0]': null", Assert.Throws<VmStoreException>(() => _store.Get("web")).Message);
    }
}
