using Xhyve.Management.Model;

namespace Xhyve.Management.Tests;

public sealed class VirtualMachineTests
{
    private static VirtualMachine Valid() => new() { Name = "web", KernelPath = "/vm/vmlinuz", InitrdPath = "/vm/initrd.gz" };

    [Fact]
    public void ADefaultVm_Has256MB_OneProcessor_AndAcpi() =>
        Assert.Equal((256L << 20, 1, true), (Valid().MemoryStartupBytes, Valid().ProcessorCount, Valid().Acpi));

    [Fact]
    public void AValidVm_HasNoProblems() => Assert.Empty(Valid().Validate());

    [Theory]
    [InlineData("", "Name ''")]
    [InlineData("-web", "Name '-web'")]
    [InlineData("a/b", "Name 'a/b'")]
    public void BadNames_AreRefused_Naming_TheValue(string name, string expected)
    {
        var vm = Valid();
        vm.Name = name;
        Assert.Contains(vm.Validate(), p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void EachProblem_NamesItsSetting()
    {
        var vm = Valid();
        vm.ProcessorCount = 0;
        vm.MemoryStartupBytes = 1000;
        vm.MultibootPath = "/k.elf";
        vm.InitrdPath = "/a,b";
        vm.Disks.Add(new VmDisk { Path = "/d.img", Slot = 31 });
        var problems = vm.Validate();
        Assert.Contains(problems, p => p.StartsWith("ProcessorCount 0", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("MemoryStartupBytes 1000", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("KernelPath and MultibootPath", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("InitrdPath '/a,b'", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("disk /d.img: slot 31", StringComparison.Ordinal));
    }

    [Fact]
    public void AVmWithoutAKernel_IsRefused()
    {
        var vm = new VirtualMachine { Name = "empty" };
        Assert.Contains(vm.Validate(), p => p.Contains("no boot kernel"));
    }

    [Fact]
    public void TwoDevicesInOneSlot_AreRefused()
    {
        var vm = Valid();
        vm.Disks.Add(new VmDisk { Path = "/a.img", Slot = 2 });
        vm.NetworkAdapters.Add(new VmNetworkAdapter { Slot = 2 });
        Assert.Contains(vm.Validate(), p => p.Contains("slot 2 is already used by disk /a.img"));
        Assert.Equal(3, vm.NextFreeSlot());
    }

    [Fact]
    public void Json_RoundTrips_AndAnUnknownFieldIsAnErrorNamingTheFile()
    {
        var vm = Valid();
        vm.Disks.Add(new VmDisk { Path = "/d.img", Slot = 2, Options = "ro" });
        var again = VmJson.Deserialize(VmJson.Serialize(vm), "vm.json");
        Assert.Equal(VmJson.Serialize(vm), VmJson.Serialize(again));
        var e = Assert.Throws<VmDefinitionException>(() => VmJson.Deserialize("{\"name\":\"x\",\"procesorCount\":2}", "/store/x/vm.json"));
        Assert.StartsWith("/store/x/vm.json: not a valid VM definition", e.Message);
    }
}
