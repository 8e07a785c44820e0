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

    [Theory]
    [InlineData("0,hostbridge,model=i440fx", HostBridgeModel.I440fx, null, null)]
    [InlineData("0,hostbridge,model=Q35", HostBridgeModel.Q35, null, null)]
    [InlineData("0,hostbridge,vendor=0x8086,devid=4663", HostBridgeModel.Bhyve, (ushort)0x8086, (ushort)4663)]
    [InlineData("0,hostbridge,devid=010", HostBridgeModel.Bhyve, null, (ushort)8)]   // bhyve's strtol: octal
    public void HostBridgeOptions_ChooseTheChipsetOrTheIds(string value, HostBridgeModel model, ushort? vendor, ushort? device)
    {
        Assert.Equal(new HostBridgeSpec(Amd: false, model, vendor, device), Device(value));
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
    [InlineData("0,hostbridge,x", "-s 0:0:0,hostbridge,x: 'x': unknown option (hostbridge takes model=i440fx|q35, vendor=ID, devid=ID)")]
    [InlineData("0,hostbridge,model=pc", "-s 0:0:0,hostbridge,model=pc: model=pc: not one of i440fx, q35, bhyve")]
    [InlineData("0,hostbridge,vendor=0x10000", "-s 0:0:0,hostbridge,vendor=0x10000: 'vendor=0x10000': not a 16-bit id")]
    [InlineData("0,hostbridge,devid=", "-s 0:0:0,hostbridge,devid=: 'devid=': not a 16-bit id")]
    [InlineData("0,hostbridge,model=q35,devid=0x1234", "-s 0:0:0,hostbridge,model=q35,devid=0x1234: model=q35 sets the ids itself")]
    public void BadOption_IsInvalidAndNamesTheArgument(string value, string problemStart)
    {
        var invalid = Assert.IsType<InvalidDeviceSpec>(Device(value));
        Assert.StartsWith(problemStart, invalid.Problem);
    }

    [Theory]
    [InlineData("3,frobnicator", "-s 0:3:0,frobnicator: unknown emulation 'frobnicator'")]
    [InlineData("3,virtio-9p,share", "-s 0:3:0,virtio-9p,share: emulation 'virtio-9p' is not supported yet")]
    public void UnknownOrPlannedEmulation_IsUnsupportedAndNamesTheArgument(string value, string problem)
    {
        var unsupported = Assert.IsType<UnsupportedDeviceSpec>(Device(value));
        Assert.Equal(problem, unsupported.Problem);
    }

    [Fact]
    public void AhciHd_IsOneDiskPortWithTheBlockOptions()
    {
        var ahci = Assert.IsType<AhciSpec>(Device("4,ahci-hd,disk.img,ro,sectorsize=4096"));
        var disk = Assert.IsType<AhciDiskPort>(Assert.Single(ahci.Ports));
        Assert.Equal("disk.img", disk.Options.Path);
        Assert.True(disk.Options.ReadOnly);
        Assert.Equal(4096, disk.Options.LogicalSectorSize);
    }

    [Theory]
    [InlineData("5,ahci-cd,install.iso", "install.iso")]
    [InlineData("5,ahci-cd,install.iso,ro", "install.iso")]
    [InlineData("5,ahci-cd", null)]
    public void AhciCd_IsOneCdromPort_EmptyWithoutAPath(string value, string? medium) =>
        Assert.Equal(medium, Assert.IsType<AhciCdromPort>(Assert.Single(Assert.IsType<AhciSpec>(Device(value)).Ports)).MediumPath);

    [Fact]
    public void Ahci_TakesBhyvesPortList_OptionsBelongToThePortBeforeThem()
    {
        var ahci = Assert.IsType<AhciSpec>(Device("4,ahci,hd:a.img,ro,nocache,cd:x.iso,cd:,hd:b.img"));
        Assert.Equal(4, ahci.Ports.Count);
        var a = Assert.IsType<AhciDiskPort>(ahci.Ports[0]).Options;
        Assert.True(a.ReadOnly && a.NoCache);
        Assert.Equal("x.iso", Assert.IsType<AhciCdromPort>(ahci.Ports[1]).MediumPath);
        Assert.Null(Assert.IsType<AhciCdromPort>(ahci.Ports[2]).MediumPath);
        var b = Assert.IsType<AhciDiskPort>(ahci.Ports[3]).Options;
        Assert.False(b.ReadOnly);
        Assert.Equal("b.img", b.Path);
    }

    [Theory]
    [InlineData("4,ahci-hd,disk.img")]
    [InlineData("4,ahci-hd,disk.img,ro,sectorsize=4096/8192")]
    [InlineData("5,ahci-cd,x.iso")]
    [InlineData("5,ahci-cd")]
    [InlineData("6,ahci,hd:a.img,ro,cd:x.iso,cd:")]
    public void AhciOptions_WrittenBack_ParseToTheSamePorts(string value)
    {
        var d = CommandLineParser.ParsePciDevice(value);
        var ahci = Assert.IsType<AhciSpec>(d.Device);
        var again = Assert.IsType<AhciSpec>(CommandLineParser.ParsePciDevice(CommandLineFormatter.FormatPciDevice(d with { Options = ahci.Options })).Device);
        Assert.Equal(ahci.Ports, again.Ports);
    }

    [Theory]
    [InlineData("4,ahci-hd", "-s 0:4:0,ahci-hd: no image path given")]
    [InlineData("4,ahci-hd,d.img,cache=none", "-s 0:4:0,ahci-hd,d.img,cache=none: cache=none: unknown block option")]
    [InlineData("5,ahci-cd,x.iso,sync", "-s 0:5:0,ahci-cd,x.iso,sync: sync: a CD/DVD drive takes only an image path")]
    [InlineData("6,ahci", "-s 0:6:0,ahci: no ports given")]
    [InlineData("6,ahci,disk.img", "-s 0:6:0,ahci,disk.img: disk.img: expected a port, hd:PATH or cd:[PATH]")]
    [InlineData("6,ahci,hd:", "-s 0:6:0,ahci,hd:: hd:: no image path given")]
    [InlineData("6,ahci,cd:x.iso,nocache", "-s 0:6:0,ahci,cd:x.iso,nocache: nocache: a CD/DVD drive takes only")]
    public void BadAhciOption_IsInvalidAndNamesTheArgument(string value, string problemStart) =>
        Assert.StartsWith(problemStart, Assert.IsType<InvalidDeviceSpec>(Device(value)).Problem);

    [Theory]
    [InlineData("5", "0:5:0/0")]
    [InlineData("5:1", "0:5:1/0")]
    [InlineData("2:5:1/3", "2:5:1/3")]
    [InlineData("5/31", "0:5:0/31")]
    public void AhciDriveAddress_ParsesEverySpellingOfTheControllerAndAPort(string text, string canonical)
    {
        Assert.True(AhciDriveAddress.TryParse(text, out var drive));
        Assert.Equal(canonical, drive.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("x")]
    [InlineData("5/")]
    [InlineData("5/32")]
    [InlineData("32")]
    [InlineData("1:2:3:4")]
    [InlineData("5/-1")]
    public void AhciDriveAddress_RefusesWhatIsNotADrive(string text) => Assert.False(AhciDriveAddress.TryParse(text, out _));

    [Fact]
    public void Ahci_RefusesMoreThan32Ports()
    {
        string ports = string.Join(',', Enumerable.Range(0, 33).Select(_ => "cd:"));
        Assert.Contains("at most 32 ports", Assert.IsType<InvalidDeviceSpec>(Device("6,ahci," + ports)).Problem);
        Assert.Equal(32, Assert.IsType<AhciSpec>(Device("6,ahci," + string.Join(',', Enumerable.Range(0, 32).Select(_ => "cd:")))).Ports.Count);
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
