using System.Text.Json;
using Xhyve.Engine.Tests.Support;
using Xunit.Abstractions;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>
/// Issue 15: machines that start from a boot ROM. Debian's SeaBIOS prints its banner on COM1 (fw_cfg's sercon port)
/// and boots an MBR (tests/guests/bootsector.S) that the test writes into a disk image, through its own virtio-blk and
/// AHCI drivers (so its PCI scan found and programmed our devices); the MBR prints on COM1 and powers off, or resets first (i8042, CF9 or a triple fault), which restarts
/// the machine from the ROM in the same engine process. The same image under QEMU's SeaBIOS is the cross-check.
/// </summary>
public sealed class BootRomGuestTests(ITestOutputHelper output) : ControlledEngineTest("xhyve-bootrom")
{
    private const string SeaBios = "/usr/share/seabios/bios.bin";
    private const string NoSeaBios = "SeaBIOS (/usr/share/seabios/bios.bin) is absent: scripts/setup-debian.sh installs the seabios package";
    private static string BootSector => Path.Combine(EngineProcess.GuestDir, "bootsector.bin");

    public enum ResetBy : byte { I8042 = 0, Cf9 = 1, TripleFault = 2 }

    /// <summary>A 4 MiB raw disk: the MBR, then LBA 1 with the boot count (0), the resets wanted, how to reset, and
    /// whether to halt at the end instead of powering off.</summary>
    private string Disk(int resets = 0, ResetBy by = ResetBy.I8042, bool stayOn = false, string name = "disk.img")
    {
        var image = new byte[4 << 20];
        byte[] mbr = File.ReadAllBytes(BootSector);
        Assert.Equal(512, mbr.Length);
        mbr.CopyTo(image, 0);
        image[513] = (byte)resets;
        image[514] = (byte)by;
        image[515] = stayOn ? (byte)1 : (byte)0;
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, image);
        return path;
    }

    private static int BootsCounted(string disk)
    {
        using var f = File.OpenRead(disk);
        f.Position = 512;
        return f.ReadByte();
    }

    private static void RequireSeaBios()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(File.Exists(SeaBios), NoSeaBios);
    }

    private EngineRun RunRom(string disk, string slot, params string[] extra) => RunRomFile(SeaBios, disk, slot, extra);

    private EngineRun RunRomFile(string rom, string disk, string slot, params string[] extra) => EngineProcess.Run(
        ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-s", $"{slot},{disk}", .. extra, "-l", $"bootrom,{rom}",
         "--exit-file", ExitFile], timeoutSeconds: 120);

    [SkippableTheory]
    [InlineData("2,virtio-blk", "bios.bin", 1)]         // SeaBIOS's virtio driver
    [InlineData("4,ahci-hd", "bios.bin", 1)]            // SeaBIOS's AHCI driver
    [InlineData("2,virtio-blk", "bios-256k.bin", 2)]    // code below 0xE0000; SeaBIOS starts the AP and counts it
    public void SeaBios_BootsTheMbr_FromOurDisk_AndTheGuestPowersOff(string slot, string rom, int vcpus)
    {
        RequireSeaBios();
        string disk = Disk();
        string romPath = Path.Combine(Path.GetDirectoryName(SeaBios)!, rom);
        var run = RunRomFile(romPath, disk, slot, "-c", vcpus.ToString(), "--verbose");
        output.WriteLine($"xhyve + SeaBIOS ({rom}, {vcpus} vCPUs), {slot}: {run.Elapsed.TotalSeconds:F1} s to power-off");
        Assert.True(run.Done, run.ToString());
        Assert.Equal(0, run.ExitCode);
        // SeaBIOS's screen on COM1 (fw_cfg's etc/sercon-port), the VM's UUID from fw_cfg, then its boot.
        Assert.Contains("SeaBIOS (version", run.Stdout);
        Assert.Contains("Machine UUID", run.Stdout);
        Assert.True(run.Stdout.IndexOf("Booting from Hard Disk", StringComparison.Ordinal) < run.Stdout.IndexOf("XHYVE-TEST boot=", StringComparison.Ordinal),
            run.ToString());
        Assert.Equal("01 drive=80", run.Results["boot"]);   // the first hard disk SeaBIOS found
        Assert.Equal(1, BootsCounted(disk));                 // INT 13h wrote through SeaBIOS's driver to our device
        Assert.DoesNotContain("restarting", run.Stderr);
        long size = new FileInfo(romPath).Length;
        Assert.Contains($"xhyve: firmware {romPath}: boot ROM, {size} bytes at 0x{0x1_0000_0000 - size:X}", run.Stderr);
    }

    [SkippableTheory]
    [InlineData(ResetBy.I8042, "reset requested through the i8042")]
    [InlineData(ResetBy.Cf9, "reset requested through port 0xCF9")]
    [InlineData(ResetBy.TripleFault, "triple fault (shutdown), a reset for a machine booted from a ROM")]
    public void AGuestReset_RestartsTheMachineFromTheRom_InTheSameProcess(ResetBy by, string reason)
    {
        RequireSeaBios();
        string disk = Disk(resets: 1, by: by);
        var run = RunRom(disk, "2,virtio-blk");
        Assert.True(run.Done, run.ToString());
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("XHYVE-TEST boot=01 drive=80", run.Stdout);
        Assert.Contains("XHYVE-TEST resetting", run.Stdout);
        Assert.Equal("02 drive=80", run.Results["boot"]);   // SeaBIOS ran again and booted the disk again
        Assert.Contains($"{reason}", run.Stderr);
        Assert.Contains("restarting the machine (reset 1)", run.Stderr);
        Assert.Equal(2, BootsCounted(disk));
        Assert.Equal(1, ReadExitFile().GetProperty("resets").GetInt32());
        Assert.Equal(2, run.Stdout.Split("SeaBIOS (version").Length - 1);   // the firmware itself ran twice
    }

    [SkippableFact]
    public void TheControlApi_SeesTheSameProcessRunning_AcrossTheReset_WithTheResetCounted()
    {
        RequireSeaBios();
        string disk = Disk(resets: 1, stayOn: true);
        using var p = EngineProcess.Start(["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-s", $"2,virtio-blk,{disk}",
            "-l", $"bootrom,{SeaBios}", "--control-socket", Socket, "--exit-file", ExitFile]);
        try
        {
            p.ReadUntil("XHYVE-TEST boot=01", TimeSpan.FromSeconds(90));
            p.ReadUntil("XHYVE-TEST done", TimeSpan.FromSeconds(90));
            var state = Ask("state");
            Assert.Equal("Running", state.GetProperty("state").GetString());
            Assert.Equal(1, state.GetProperty("resets").GetInt32());
            Assert.Equal(p.Id, state.GetProperty("pid").GetInt32());
            Assert.Contains("XHYVE-TEST boot=02", p.Output);
            Assert.False(p.HasExited);
            Ask("stop");
            Assert.True(p.WaitForExit(15_000), "the engine did not end after stop");
            Assert.Equal(0, p.ExitCode);
            Assert.Equal(1, ReadExitFile().GetProperty("resets").GetInt32());
        }
        finally { p.Kill(); }
    }

    [SkippableFact]
    public void WithOnResetExit_ARomMachinesReset_EndsTheEngineWithXhyvesStatus2()
    {
        RequireSeaBios();
        string disk = Disk(resets: 1);
        var run = RunRom(disk, "2,virtio-blk", "--on-reset", "exit");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("XHYVE-TEST resetting", run.Stdout);
        Assert.DoesNotContain("boot=02", run.Stdout);
        Assert.Equal(1, BootsCounted(disk));
    }

    [Theory]
    [InlineData(0, "file is empty")]
    [InlineData(4096 + 100, "4196 bytes is not a multiple of 4 KiB")]
    [InlineData((16 << 20) + 4096, "16781312 bytes is larger than the 16 MiB a boot ROM may have below 4 GiB")]
    public void ABadRomFile_IsRefused_InOneLineNamingIt_WithStatus1_AndNothingWritten(int size, string problem)
    {
        string rom = Path.Combine(_dir, "bad.rom"), pid = Path.Combine(_dir, "xhyve.pid");
        using (var f = File.Create(rom)) f.SetLength(size);
        var run = EngineProcess.Run(["-F", pid, "-s", "0,hostbridge", "-s", "31,lpc", "-l", $"bootrom,{rom}"]);
        Assert.Equal(1, run.ExitCode);
        string line = Assert.Single(run.Stderr.TrimEnd().Split('\n'));
        Assert.StartsWith($"xhyve: bootrom: ROM {rom}: {problem}", line);
        Assert.Empty(run.Stdout);
        Assert.False(File.Exists(pid), "nothing may be written for a bad ROM");
    }

    /// <summary>The same MBR under QEMU's SeaBIOS (same ROM file, QEMU's i440FX and virtio-blk): the guest sees the
    /// same boot; both times go to the test output.</summary>
    [SkippableFact]
    public void SameMbrUnderQemuAndSeaBios_BootsTheSame()
    {
        RequireSeaBios();
        Skip.If(FindOnPath("qemu-system-x86_64") == null, "qemu-system-x86_64 is absent (scripts/setup-debian.sh installs it): no cross-check");
        string ours = Disk(name: "ours.img"), theirs = Disk(name: "qemu.img");
        var qemu = EngineProcess.RunProgram("qemu-system-x86_64", ["-enable-kvm", "-m", "256", "-display", "none", "-nodefaults",
            "-no-reboot", "-serial", "stdio", "-bios", SeaBios, "-drive", $"file={theirs},format=raw,if=virtio"], timeoutSeconds: 120);
        var run = RunRom(ours, "2,virtio-blk");
        output.WriteLine($"QEMU + SeaBIOS: {qemu.Elapsed.TotalSeconds:F1} s; xhyve + SeaBIOS: {run.Elapsed.TotalSeconds:F1} s (start to power-off)");
        Assert.True(qemu.Done, qemu.ToString());
        Assert.True(run.Done, run.ToString());
        Assert.Equal(qemu.Results["boot"], run.Results["boot"]);
        Assert.Equal(BootsCounted(theirs), BootsCounted(ours));
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal(0, run.ExitCode);
    }

    private static string? FindOnPath(string program) => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private JsonElement Ask(string command)
    {
        using var c = new ControlTestClient(Socket);
        return c.Ask(command).Clone();
    }
}
