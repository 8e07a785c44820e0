using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Serial;

namespace Xhyve.Vmm.Tests.Config;

/// <summary>Each -s parses once into a typed device record; a bad one carries a problem naming the -s argument.</summary>
public sealed class DeviceSpecTests
{
    private static DeviceSpec Device(string value) => CommandLineParser.ParsePciDevice(value).Device;

    [Fact]
    public void HostBridge_ParsesIntoHostBridgeSpec()
    {
        Assert.Equal(new HostBridgeSpec(Amd: false), Device("0,hostbridge"));
        Assert.Equal(new HostBridgeSpec(Amd: true), Device("0,amd_hostbridge"));
    }

    [Fact]
    public void Lpc_ParsesIntoLpcSpec() => Assert.IsType<LpcSpec>(Device("31,lpc"));

    [Fact]
    public void TestDev_ParsesIntoTestDevSpec() => Assert.IsType<TestDevSpec>(Device("4,testdev"));

    [Fact]
    public void VirtioRnd_ParsesIntoVirtioRngSpec() => Assert.IsType<VirtioRngSpec>(Device("5,virtio-rnd"));

    [Fact]
    public void Uart_ParsesItsBackends()
    {
        var uart = Assert.IsType<UartSpec>(Device("6,uart,stdio,log=/tmp/u.log"));
        Assert.Equal([SerialBackendKind.Stdio, SerialBackendKind.Log], uart.Backends.Select(b => b.Kind));
    }

    [Fact]
    public void VirtioBlk_ParsesPathAndOptions()
    {
        var disk = Assert.IsType<VirtioBlockSpec>(Device("2,virtio-blk,disk.img,ro,sectorsize=4096,size=1G"));
        Assert.Equal("disk.img", disk.Path);
        Assert.True(disk.Options.ReadOnly);
        Assert.Equal(4096, disk.Options.LogicalSectorSize);
        Assert.Equal(1L << 30, disk.Options.Size);
    }

    [Theory]
    [InlineData("2,virtio-blk,disk.img,cache=none", "-s 0:2:0,virtio-blk,disk.img,cache=none: cache=none: unknown block option")]
    [InlineData("2,virtio-blk", "-s 0:2:0,virtio-blk: no image path given")]
    [InlineData("3,uart", "-s 0:3:0,uart: missing backend")]
    [InlineData("3,uart,stdio,stdio", "-s 0:3:0,uart,stdio,stdio: stdio: stdio was already given")]
    [InlineData("5,virtio-rnd,x", "-s 0:5:0,virtio-rnd,x: virtio-rnd takes no options")]
    [InlineData("0,hostbridge,x", "-s 0:0:0,hostbridge,x: hostbridge takes no options")]
    public void BadOption_IsInvalidAndNamesTheArgument(string value, string problemStart)
    {
        var invalid = Assert.IsType<InvalidDeviceSpec>(Device(value));
        Assert.StartsWith(problemStart, invalid.Problem);
    }

    [Theory]
    [InlineData("3,frobnicator", "-s 0:3:0,frobnicator: unknown emulation 'frobnicator'")]
    [InlineData("3,ahci-hd,disk.img", "-s 0:3:0,ahci-hd,disk.img: emulation 'ahci-hd' is not supported yet")]
    public void UnknownOrPlannedEmulation_IsUnsupportedAndNamesTheArgument(string value, string problem)
    {
        var unsupported = Assert.IsType<UnsupportedDeviceSpec>(Device(value));
        Assert.Equal(problem, unsupported.Problem);
    }

    [Fact]
    public void With_ChangingTheOptions_ParsesAgain()
    {
        var d = CommandLineParser.ParsePciDevice("2,virtio-blk,a.img");
        Assert.Equal("a.img", Assert.IsType<VirtioBlockSpec>(d.Device).Path);
        var e = d with { Options = "b.img,ro" };
        Assert.Equal("b.img", Assert.IsType<VirtioBlockSpec>(e.Device).Path);
        Assert.IsType<InvalidDeviceSpec>((e with { Emulation = "virtio-rnd" }).Device);
    }

    [Fact]
    public void Equality_FollowsWhatWasWritten()
    {
        var parsed = CommandLineParser.ParsePciDevice("6,uart,stdio");
        var built = new PciDeviceSpec(new PciAddress(0, 6, 0), "uart", "stdio");
        Assert.Equal(built, parsed);   // one parsed, one not yet: still equal
        Assert.Equal(built.GetHashCode(), parsed.GetHashCode());
        Assert.NotEqual(built, parsed with { Options = "null" });
    }

    [Fact]
    public void Validate_ReportsTheParseProblemOnce()
    {
        var spec = CommandLineParser.Parse(["-s", "3,virtio-blk,d.img,cache=none", "-f", "kexec,k"]).Spec;
        Assert.Single(spec.Validate(), p => p.StartsWith("-s 0:3:0,virtio-blk,d.img,cache=none: cache=none", StringComparison.Ordinal));
    }
}
