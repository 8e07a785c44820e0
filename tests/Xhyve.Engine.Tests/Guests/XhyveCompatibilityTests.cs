using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>Lines from xhyve's man page (EXAMPLES) and from users' xhyverun.sh scripts, run as written but for the kernel
/// (a test guest that enumerates PCI) and macOS's vmnet (here the default user-mode network): each must start and put
/// its devices where it says.</summary>
public sealed class XhyveCompatibilityTests : IDisposable
{
    private const string LpcIds = "0x70008086,0x00060100";
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-compat-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Image(string name, long bytes = 1 << 20)
    {
        string path = Path.Combine(_dir, name);
        using (var f = File.Create(path)) f.SetLength(bytes);
        return path;
    }

    private static string[] Line(string line, params (string Name, string Value)[] values)
    {
        foreach (var (name, value) in values) line = line.Replace("{" + name + "}", value);
        return line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static string PciGuest => $"multiboot,{EngineProcess.Guest("pci")}";

    /// <summary>xhyve(1): "two virtual CPUs, a virtio block device ... and a serial port for the console", with the LPC
    /// bridge in slot 1 as the man page has it (not bhyve's usual 31).</summary>
    [SkippableFact]
    public void ManPage_TwoCpusVirtioBlockAndTheLpcBridgeInSlot1_Starts()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.Run(Line("-c 2 -m 1G -s 0:0,hostbridge -s 1,lpc -s 2,virtio-blk,{img} -l com1,stdio -A -H -P -f {fw}",
            ("img", Image("image")), ("fw", PciGuest)));
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x12751275,0x00060000", run.Results["pci_0_0"]);
        Assert.Equal(LpcIds, run.Results["pci_1_0"]);
        Assert.StartsWith("0x", run.Results["pci_2_0"]);
        Assert.Contains("1af4", run.Results["pci_2_0"]);   // virtio's vendor
        Assert.Equal("3", run.Results["pci_functions"]);
    }

    /// <summary>bhyve(8)'s example with the AMD host bridge, a CD and a SATA disk (its frame buffer, USB tablet and UEFI
    /// ROM left out).</summary>
    [SkippableFact]
    public void ManPage_AmdHostBridgeWithAhciCdAndDisk_Starts()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string iso = IsoImage.WithHelloFile(Path.Combine(_dir, "install.iso"), "INSTALL", "hello");
        var run = EngineProcess.Run(Line("-c 2 -m 1G -w -H -s 0,amd_hostbridge -s 3,ahci-cd,{iso} -s 4,ahci-hd,{img} -s 31,lpc -l com1,stdio -f {fw}",
            ("iso", iso), ("img", Image("disk.img")), ("fw", PciGuest)));
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x74321022,0x00060000", run.Results["pci_0_0"]);
        Assert.Equal("0x29228086,0x00010601", run.Results["pci_3_0"]);   // ICH9 AHCI, class 01/06/01
        Assert.Equal("0x29228086,0x00010601", run.Results["pci_4_0"]);
        Assert.Equal(LpcIds, run.Results["pci_31_0"]);
    }

    /// <summary>xhyve(1): "three network ports, one of which has a MAC address specified" — with -M the engine prints
    /// each port's MAC in slot order and exits 0 without running the VM (so 24 GiB of RAM is never asked for).</summary>
    [Fact]
    public void ManPage_ThreeNetworkPortsWithDashM_PrintsEachMacInSlotOrder_AndExitsZero()
    {
        var run = EngineProcess.Run(Line("-s 0,hostbridge -s 1,lpc -s 2:0,virtio-net -s 2:1,virtio-net -s 2:2,virtio-net,mac=00:be:fa:76:45:00 -s 3,virtio-blk,{img} -l com1,stdio -A -H -P -m 24G -M -f {fw}",
            ("img", Path.Combine(_dir, "never-created.img")), ("fw", PciGuest)));
        Assert.Equal(0, run.ExitCode);
        var macs = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, macs.Length);
        Assert.All(macs, m => Assert.Matches("^MAC: ([0-9a-f]{2}:){5}[0-9a-f]{2}$", m));
        Assert.Equal("MAC: 00:be:fa:76:45:00", macs[2]);
        Assert.Equal(3, macs.Distinct().Count());
        Assert.False(File.Exists(Path.Combine(_dir, "never-created.img")));
    }

    /// <summary>The how-to's xhyverun.sh: MEM, an installer CD in slot 1, the 20 GB sparse split disk with 4 KiB sectors,
    /// PCI_DEV with "0:0,hostbridge", LPC_DEV and ACPI, put together as the script does.</summary>
    [SkippableFact]
    public void HowTo_XhyverunSh_WithTheSparseSplitDisk_StartsAndCreatesTheImage()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string iso = IsoImage.WithHelloFile(Path.Combine(_dir, "ubuntu-15.10-server-amd64.iso"), "UBUNTU", "hello");
        string hdd = Path.Combine(_dir, "hdd.img");
        var vars = new (string, string)[]
        {
            ("MEM", "-m 1G"), ("IMG_CD", $"-s 1,ahci-cd,{iso}"), ("IMG_HDD", $"-s 4,virtio-blk,{hdd},sectorsize=4096,size=20G,split=1G,sparse"),
            ("PCI_DEV", "-s 0:0,hostbridge -s 31,lpc"), ("LPC_DEV", "-l com1,stdio"), ("ACPI", "-A"), ("FW", PciGuest),
        };
        var run = EngineProcess.Run(Line("{ACPI} {MEM} {PCI_DEV} {LPC_DEV} {IMG_CD} {IMG_HDD} -f {FW}", vars), timeoutSeconds: 120);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x29228086,0x00010601", run.Results["pci_1_0"]);
        Assert.Contains("1af4", run.Results["pci_4_0"]);
        // A sparse image: 20 one-gigabyte segments named, none of them filled.
        var segments = Directory.GetFiles(_dir, "hdd.img.*").Where(f => !f.EndsWith(".lut", StringComparison.Ordinal)).ToList();
        Assert.True(File.Exists(hdd) || segments.Count > 0, string.Join(", ", Directory.GetFiles(_dir)));
        Assert.All(segments, s => Assert.True(new FileInfo(s).Length < 1 << 20, $"{s}: {new FileInfo(s).Length} bytes"));
    }

    /// <summary>xhyve takes the last -l com1: a script that sets a default and then overrides it gets the override (the
    /// first backend is never opened).</summary>
    [SkippableFact]
    public void SecondDashLCom1_OverridesTheFirst()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string log = Path.Combine(_dir, "first.log");
        var run = EngineProcess.Run(["-s", "31,lpc", "-l", $"com1,log={log}", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")}"]);
        Assert.True(run.Done, run.ToString());
        Assert.Contains("Hello from the XhyvePS hello guest", run.Stdout);
        Assert.False(File.Exists(log) && new FileInfo(log).Length > 0, "the overridden backend got output");
    }
}
