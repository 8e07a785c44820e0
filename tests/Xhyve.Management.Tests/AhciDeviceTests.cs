using System.Net.Sockets;
using System.Text;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;

namespace Xhyve.Management.Tests;

/// <summary>AHCI disks and DVD drives in the VM object: the engine line they make, the line they are read from, and
/// their vm.json form (which older versions of the module still read when neither is used).</summary>
public sealed class AhciDeviceTests
{
    private static VirtualMachine Vm()
    {
        var vm = new VirtualMachine { Name = "sata", Id = Guid.Parse("11111111-2222-3333-4444-555555555555"), KernelPath = "/vm/vmlinuz" };
        vm.Disks.Add(new VmDisk { Path = "/vm/a.img", Slot = 2 });
        vm.Disks.Add(new VmDisk { Path = "/vm/b.img", Slot = 3, Options = "ro,sectorsize=4096", ControllerType = DiskControllerType.AHCI });
        vm.DvdDrives.Add(new VmDvdDrive { Path = "/iso/install me.iso", Slot = 4 });
        vm.DvdDrives.Add(new VmDvdDrive { Slot = 5 });
        return vm;
    }

    private static List<string> Devices(IReadOnlyList<string> args) =>
        args.Select((a, i) => (a, i)).Where(x => x.a == "-s").Select(x => args[x.i + 1]).ToList();

    [Fact]
    public void AhciDisks_AndDvdDrives_BecomeAhciHdAndAhciCd_InTheEngineLine()
    {
        Assert.Equal(["0:0:0,hostbridge", "0:31:0,lpc", "0:2:0,virtio-blk,/vm/a.img", "0:3:0,ahci-hd,/vm/b.img,ro,sectorsize=4096",
            "0:4:0,ahci-cd,/iso/install me.iso", "0:5:0,ahci-cd"], Devices(VmArguments.ToArguments(Vm(), null)));
    }

    [Fact]
    public void Json_WithoutAhciDisksOrDvdDrives_HasNoNewFields_SoOlderVersionsStillReadIt()
    {
        var vm = new VirtualMachine { Name = "old", KernelPath = "/k" };
        vm.Disks.Add(new VmDisk { Path = "/vm/a.img", Slot = 2 });
        string json = VmJson.Serialize(vm);
        Assert.DoesNotContain("controllerType", json);
        Assert.DoesNotContain("dvdDrives", json);
        Assert.Equal(DiskControllerType.VirtIO, Assert.Single(VmJson.Deserialize(json, "vm.json").Disks).ControllerType);
    }

    [Fact]
    public void Json_RoundTripsAhciDisksAndDvdDrives()
    {
        string json = VmJson.Serialize(Vm());
        Assert.Contains("\"controllerType\": \"AHCI\"", json);
        var again = VmJson.Deserialize(json, "vm.json");
        Assert.Equal(json, VmJson.Serialize(again));
        Assert.Equal([DiskControllerType.VirtIO, DiskControllerType.AHCI], again.Disks.Select(d => d.ControllerType));
        Assert.Equal(["/iso/install me.iso", null], again.DvdDrives.Select(d => d.Path));
        Assert.Equal(["0:4:0/0", "0:5:0/0"], again.DvdDrives.Select(d => d.Drive));
    }

    [Theory]
    [InlineData("\"controllerType\": 1", "$.disks[0].controllerType")]
    [InlineData("\"controllerType\": \"SCSI\"", "$.disks[0].controllerType")]
    public void Json_ABadControllerType_IsRefusedNamingTheField(string field, string expected)
    {
        string json = "{\"name\":\"x\",\"kernelPath\":\"/k\",\"disks\":[{\"path\":\"/a.img\",\"slot\":2," + field + "}]}";
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmJson.Deserialize(json, "vm.json")).Message);
    }

    [Fact]
    public void Json_ANullDvdDriveEntry_IsRefusedNamingIt() =>
        Assert.Contains("field 'dvdDrives[0]': null", Assert.Throws<VmDefinitionException>(() =>
            VmJson.Deserialize("{\"name\":\"x\",\"kernelPath\":\"/k\",\"dvdDrives\":[null]}", "vm.json")).Message);

    [Fact]
    public void ADvdDriveInAnotherDevicesSlot_IsRefused_AndNextFreeSlotSkipsIt()
    {
        var vm = Vm();
        Assert.Equal(6, vm.NextFreeSlot());
        vm.DvdDrives.Add(new VmDvdDrive { Path = "/iso/b.iso", Slot = 3 });
        Assert.Contains(vm.Validate(), p => p == "DVD drive in slot 3 (/iso/b.iso): slot 3 is already used by disk /vm/b.img");
    }

    [Theory]
    [InlineData("/iso/a,b.iso")]
    [InlineData("/iso/a:b.iso")]
    [InlineData("")]
    public void ADvdDrivePathTheEngineLineCannotHold_IsRefused(string path)
    {
        var vm = Vm();
        vm.DvdDrives[0].Path = path;
        Assert.Contains(vm.Validate(), p => p.StartsWith($"DVD drive Path '{path}': a path for the engine cannot", StringComparison.Ordinal));
    }

    [Fact]
    public void AhciDevicesInExtraArguments_AreRefused_TheyBelongToTheVm()
    {
        var vm = Vm();
        vm.ExtraArguments.AddRange(["-s", "9,ahci-cd,/x.iso"]);
        Assert.Contains(vm.Validate(), p => p.Contains("'-s 9,ahci-cd,/x.iso': ahci-cd devices belong to the VM", StringComparison.Ordinal));
    }

    [Fact]
    public void TheLine_AhciHdAndAhciCd_BecomeAnAhciDiskAndDvdDrives()
    {
        var vm = VmArguments.FromArguments(["-s", "3,ahci-hd,/vm/b.img,ro", "-s", "4,ahci-cd,/iso/x.iso", "-s", "5,ahci-cd", "-f", "kexec,/k"], "l").Vm;
        var disk = Assert.Single(vm.Disks);
        Assert.Equal(("/vm/b.img", "ro", 3, DiskControllerType.AHCI), (disk.Path, disk.Options, disk.Slot, disk.ControllerType));
        Assert.Equal([("/iso/x.iso", 4), (null, 5)], vm.DvdDrives.Select(d => (d.Path, d.Slot)));
        Assert.Empty(vm.ExtraArguments);
    }

    [Fact]
    public void TheLine_BhyvesAhciSpelling_WithOnePort_BecomesADiskOrADvdDrive()
    {
        var vm = VmArguments.FromArguments(["-s", "3,ahci,hd:/vm/b.img,nocache,ro", "-s", "4,ahci,cd:/iso/x.iso,ro", "-s", "5,ahci,cd:", "-f", "kexec,/k"], "l").Vm;
        var disk = Assert.Single(vm.Disks);
        Assert.Equal(("/vm/b.img", "nocache,ro", DiskControllerType.AHCI), (disk.Path, disk.Options, disk.ControllerType));
        Assert.Equal([("/iso/x.iso", 4), (null, 5)], vm.DvdDrives.Select(d => (d.Path, d.Slot)));
        // Written back in the one-drive spelling, which the engine reads as the same controller.
        Assert.Equal(["0:3:0,ahci-hd,/vm/b.img,nocache,ro", "0:4:0,ahci-cd,/iso/x.iso", "0:5:0,ahci-cd"], Devices(VmArguments.ToArguments(vm, null)).Skip(2));
    }

    [Theory]
    [InlineData("4,ahci,hd:/a.img,cd:/x.iso", "-s 0:4:0,ahci,hd:/a.img,cd:/x.iso: 2 ports on one AHCI controller")]
    [InlineData("4,ahci,ro", "-s 0:4:0,ahci,ro: ro: expected a port")]
    [InlineData("4,ahci", "-s 0:4:0,ahci: no ports given")]
    [InlineData("4,ahci,hd:", "-s 0:4:0,ahci,hd:: hd:: no image path given")]
    [InlineData("4,ahci-cd,/x.iso,nocache", "-s 0:4:0,ahci-cd,/x.iso,nocache: nocache: a CD/DVD drive takes only an image path")]
    [InlineData("4,ahci-hd,/a.img,bogus", "-s 0:4:0,ahci-hd,/a.img,bogus: bogus: unknown block option")]
    public void LinesTheModelCannotHold_AreRefusedNamingTheDevice(string device, string expected) =>
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmArguments.FromArguments(["-s", device, "-f", "kexec,/k"])).Message);

    [Fact]
    public void LineToVmToLine_IsStable_ForAhciDevices()
    {
        string[] line = ["-s", "0,hostbridge", "-s", "31,lpc", "-s", "3,ahci-hd,/vm/b.img,sectorsize=4096", "-s", "4,ahci-cd,/iso/x.iso", "-s", "5,ahci-cd", "-f", "kexec,/k"];
        var first = VmArguments.FromArguments(line, "rt").Vm;
        var second = VmArguments.FromArguments(VmArguments.ToArguments(first, null), "rt").Vm;
        second.CreatedUtc = first.CreatedUtc;
        Assert.Equal(VmJson.Serialize(first), VmJson.Serialize(second));
    }

    [Fact]
    public async Task MediaCommands_GoOutAsTheControlApiSpellsThem_AndTheReplyIsRead()
    {
        string folder = Directory.CreateTempSubdirectory("xhyve-media").FullName;
        try
        {
            string path = Path.Combine(folder, "c.sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var received = new List<string>();
            var server = Task.Run(() =>
            {
                using var peer = listener.Accept();
                using var stream = new NetworkStream(peer);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                for (int i = 0; i < 2; i++)
                {
                    string line = reader.ReadLine()!;
                    received.Add(line);
                    string medium = line.EndsWith(" eject", StringComparison.Ordinal) ? "null" : "\"/iso/my disc.iso\"";
                    peer.Send(Encoding.UTF8.GetBytes("{\"ok\":true,\"drives\":[{\"drive\":\"0:5:0/0\",\"medium\":" + medium + ",\"locked\":true}]}\n"));
                }
            });
            using var client = new ControlClient(path, TimeSpan.FromSeconds(10));
            Assert.Equal([new DriveMedium("0:5:0/0", "/iso/my disc.iso", true)], MediaCommand.Parse(client.Ask(MediaCommand.Insert("0:5:0/0", "/iso/my disc.iso"))));
            Assert.Equal([new DriveMedium("0:5:0/0", null, true)], MediaCommand.Parse(client.Ask(MediaCommand.Eject("0:5:0/0"))));
            await server.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(["media 0:5:0/0 insert /iso/my disc.iso", "media 0:5:0/0 eject"], received);
        }
        finally { Directory.Delete(folder, true); }
    }

    [Theory]
    [InlineData("0:5:0/0", 5, 0)]
    [InlineData("5", 5, 0)]
    [InlineData("5:0", 5, 0)]
    [InlineData("5/2", 5, 2)]
    [InlineData("0:12:0", 12, 0)]
    public void ADriveAddress_IsReadInEverySpellingTheControlApiTakes(string drive, int slot, int port) =>
        Assert.Equal((slot, port), MediaCommand.SlotAndPort(drive));

    [Theory]
    [InlineData("1:5:0/0")]   // another bus
    [InlineData("5:1")]       // another function
    [InlineData("x")]
    [InlineData("5/")]
    [InlineData("0:5:0:0")]
    [InlineData("")]
    public void AnAddressOfNoModelDrive_IsNull(string drive) => Assert.Null(MediaCommand.SlotAndPort(drive));

    [Fact]
    public void AMediaReplyWithoutDrives_IsAnEngineError() =>
        Assert.Throws<EngineException>(() => MediaCommand.Parse(System.Text.Json.JsonDocument.Parse("{\"ok\":true}").RootElement));

    [Fact]
    public void AnInsertPathWithALineBreak_IsRefused_RatherThanSentAsTwoCommands() =>
        Assert.Throws<ArgumentException>(() => MediaCommand.Insert("0:5:0/0", "/iso/a\nstop"));
}
