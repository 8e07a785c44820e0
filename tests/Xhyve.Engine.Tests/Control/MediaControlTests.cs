using Xhyve.Engine.Control;
using Xhyve.Engine.Runtime;
using Xhyve.Vmm.Config;

namespace Xhyve.Engine.Tests.Control;

/// <summary>The control API's "media" command: how a line parses, and how a change goes into the specification that
/// later boots are built from (no machine here: the change between two boots, which needs no KVM).</summary>
public sealed class MediaControlTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("xhyve-media-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [InlineData("media", null, null, null)]
    [InlineData("media eject", null, "eject", null)]
    [InlineData("media 5 eject", "5", "eject", null)]
    [InlineData("media 0:5:0/1 insert /isos/a.iso", "0:5:0/1", "insert", "/isos/a.iso")]
    [InlineData("media insert /my isos/disc 1.iso", null, "insert", "/my isos/disc 1.iso")]
    [InlineData("media  5   insert   /a  b.iso", "5", "insert", "/a  b.iso")]
    public void MediaLines_ParseIntoDriveActionAndPath_WithThePathsSpacesKept(string line, string? drive, string? action, string? path)
    {
        var request = ControlProtocol.Parse(line)!;
        Assert.Null(request.Error);
        Assert.Equal(("media", drive, action, path), (request.Command, request.Drive, request.MediaAction, request.MediumPath));
    }

    [Theory]
    [InlineData("media insert", "'media insert' needs the image's path")]
    [InlineData("media 5 insert", "'media insert' needs the image's path")]
    [InlineData("media 5", "usage: media")]
    [InlineData("media 5 open", "usage: media")]
    [InlineData("media eject /a.iso", "'media eject' takes no path")]
    public void BadMediaLines_AreRefusedWithTheUsage(string line, string error) =>
        Assert.StartsWith(error, ControlProtocol.Parse(line)!.Error);

    private EngineConfiguration Configuration(params string[] devices)
    {
        var spec = new VmSpecification { PciDevices = devices.Select(CommandLineParser.ParsePciDevice).ToArray() };
        return new EngineConfiguration(spec, new EngineLifecycle(OnReset.Restart));
    }

    private string Iso(string name)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllBytes(path, new byte[4 * 2048]);
        return path;
    }

    [Fact]
    public void Insert_BetweenBoots_GoesIntoTheSpecification_SoTheNextBootAndConfigHaveIt()
    {
        string iso = Iso("a.iso");
        var config = Configuration("4,ahci-hd,disk.img", "5,ahci-cd");
        Assert.Null(config.ChangeMedium("5", iso));
        Assert.Equal($"-s 0:5:0,ahci-cd,{iso}", config.Spec.PciDevices[1].ToString());
        Assert.Equal([new DriveMedium("0:5:0/0", iso, false)], config.Drives());

        Assert.Null(config.ChangeMedium(null, null));   // the only CD drive
        Assert.Equal("-s 0:5:0,ahci-cd", config.Spec.PciDevices[1].ToString());
        Assert.Equal("-s 0:4:0,ahci-hd,disk.img", config.Spec.PciDevices[0].ToString());
    }

    [Fact]
    public void Insert_IntoOnePortOfAController_ChangesThatPortAlone()
    {
        string iso = Iso("b.iso");
        var config = Configuration("6,ahci,hd:disk.img,ro,cd:,cd:old.iso");
        Assert.Null(config.ChangeMedium("0:6:0/1", iso));
        Assert.Equal($"-s 0:6:0,ahci,hd:disk.img,ro,cd:{iso},cd:old.iso", config.Spec.PciDevices[0].ToString());
        Assert.Equal(["0:6:0/1", "0:6:0/2"], config.Drives().Select(d => d.Drive));
    }

    [Theory]
    [InlineData("9", "9: the VM has no device at 0:9:0")]
    [InlineData("4", "4: 0:4:0 is virtio-rnd, not a CD/DVD drive")]
    [InlineData("6/0", "6/0: 0:6:0/0 is a disk, not a CD/DVD drive")]
    [InlineData("6/7", "6/7: the AHCI controller at 0:6:0 has 3 ports (0-2)")]
    [InlineData("6/x", "6/x: not a drive")]
    [InlineData("40", "40: not a drive")]
    [InlineData(null, "the VM has 2 CD/DVD drives (0:6:0/1, 0:6:0/2): name one")]
    public void ADriveThatIsNotACdDrive_IsRefusedByName_AndNothingChanges(string? drive, string error)
    {
        var config = Configuration("4,virtio-rnd", "6,ahci,hd:disk.img,cd:,cd:");
        var before = config.Spec;
        Assert.StartsWith(error, config.ChangeMedium(drive, Iso("c.iso")));
        Assert.Same(before, config.Spec);
    }

    [Fact]
    public void AMissingImage_OrAFolder_IsRefusedByName_AndTheDriveKeepsItsMedium()
    {
        string iso = Iso("d.iso");
        var config = Configuration($"5,ahci-cd,{iso}");
        string missing = Path.Combine(_folder, "missing.iso");
        Assert.Equal($"{missing}: file not found", config.ChangeMedium("5", missing));
        Assert.Equal($"{_folder}: is a folder, not an image", config.ChangeMedium("5", _folder));
        Assert.Equal(iso, Assert.Single(config.Drives()).Medium);
    }

    [Fact]
    public void AVmWithoutCdDrives_SaysSo() =>
        Assert.Equal("the VM has no CD/DVD drive", Configuration("4,ahci-hd,disk.img").ChangeMedium(null, null));
}
