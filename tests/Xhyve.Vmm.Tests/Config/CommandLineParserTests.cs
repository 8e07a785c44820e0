using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Serial;

namespace Xhyve.Vmm.Tests.Config;

public sealed class CommandLineParserTests
{
    private static VmSpecification Spec(params string[] args) => CommandLineParser.Parse(args).Spec;

    [Fact]
    public void TypicalXhyverunLine_ParsesEveryPart()
    {
        var spec = Spec("-A", "-m", "1G", "-c", "2", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-U", "8a5a6f0b-1f0e-4c5e-9d2a-3d3a6f1b2c4d", "-f", "kexec,vmlinuz,initrd.gz,earlyprintk=serial console=ttyS0 acpi=off,x");
        Assert.True(spec.Acpi);
        Assert.Equal(1UL << 30, spec.MemoryBytes);
        Assert.Equal(2, spec.Vcpus);
        Assert.Equal([new PciDeviceSpec(new PciAddress(0, 0, 0), "hostbridge", null), new PciDeviceSpec(new PciAddress(0, 31, 0), "lpc", null)], spec.PciDevices);
        Assert.Equal([new SerialBackendSpec(SerialBackendKind.Stdio)], spec.Com1);
        Assert.Equal(Guid.Parse("8a5a6f0b-1f0e-4c5e-9d2a-3d3a6f1b2c4d"), spec.Uuid);
        var k = Assert.IsType<KexecFirmware>(spec.Firmware);
        Assert.Equal("vmlinuz", k.Kernel);
        Assert.Equal("initrd.gz", k.Initrd);
        Assert.Equal("earlyprintk=serial console=ttyS0 acpi=off,x", k.CommandLine);
    }

    [Theory]
    [InlineData("kexec,k", "k", null, null)]
    [InlineData("kexec,k,,", "k", null, null)]
    [InlineData("kexec,k,,quiet", "k", null, "quiet")]
    [InlineData("kexec,k,i", "k", "i", null)]
    public void Kexec_AcceptsXhyveAndHyperKitForms(string value, string kernel, string? initrd, string? cmdline)
    {
        Assert.Equal(new KexecFirmware(kernel, initrd, cmdline), Spec("-f", value).Firmware);
    }

    [Fact]
    public void Multiboot_ParsesModulesWithCommandLines_AndTheKernelCommandLine()
    {
        var m = Assert.IsType<MultibootFirmware>(Spec("-f", "multiboot,kern,mod1;a b:mod2,root=x,y").Firmware);
        Assert.Equal("kern", m.Kernel);
        Assert.Equal([new MultibootModule("mod1", "a b"), new MultibootModule("mod2", null)], m.Modules);
        Assert.Equal("root=x,y", m.CommandLine);
    }

    [Fact]
    public void BootromAndFbsd_AreParsed_FbsdIsRefusedByValidation_BootromOnlyForAMissingRom()
    {
        Assert.IsType<BootromFirmware>(Spec("-f", "bootrom,rom.fd").Firmware);
        Assert.IsType<BootromFirmware>(Spec("-l", "bootrom,rom.fd").Firmware);
        Assert.IsType<FreeBsdFirmware>(Spec("-f", "fbsd,userboot.so,disk.img,").Firmware);
        Assert.Contains(Spec("-f", "fbsd,userboot.so,disk.img,").Validate(), p => p.Contains("not supported yet"));
        var problems = Spec("-f", "bootrom,no-such-rom.fd").Validate();
        Assert.DoesNotContain(problems, p => p.Contains("not supported yet"));
        Assert.Contains("bootrom: ROM no-such-rom.fd: file not found", problems);
    }

    [Theory]
    [InlineData("-l", "bootrom,OVMF_CODE.fd", "OVMF_CODE.fd", null)]
    [InlineData("-l", "bootrom,OVMF_CODE.fd,vm/OVMF_VARS.fd", "OVMF_CODE.fd", "vm/OVMF_VARS.fd")]
    [InlineData("-f", "bootrom,bios.bin", "bios.bin", null)]
    [InlineData("-f", "bootrom,code.fd,vars.fd", "code.fd", "vars.fd")]
    public void Bootrom_TakesTheRomAndAnOptionalVariableStore(string flag, string value, string rom, string? vars)
    {
        Assert.Equal(new BootromFirmware(rom, vars), Spec(flag, value).Firmware);
    }

    [Theory]
    [InlineData("-l", "bootrom", "-l bootrom: missing ROM path (bootrom,CODE[,VARS])")]
    [InlineData("-l", "bootrom,", "-l bootrom,: missing ROM path (bootrom,CODE[,VARS])")]
    [InlineData("-l", "bootrom,,vars.fd", "-l bootrom,,vars.fd: missing ROM path (bootrom,CODE[,VARS])")]
    [InlineData("-l", "bootrom,code.fd,", "-l bootrom,code.fd,: the variable store path after the comma is empty")]
    [InlineData("-f", "bootrom,a,b,c", "-f bootrom,a,b,c: expected bootrom,CODE[,VARS] (paths cannot contain commas)")]
    public void MalformedBootrom_IsRefusedNamingTheArgument(string flag, string value, string message)
    {
        Assert.Equal(message, Assert.Throws<CliException>(() => Spec(flag, value)).Message);
    }

    [Theory]
    [InlineData("256M", 256UL << 20)]
    [InlineData("256m", 256UL << 20)]
    [InlineData("256MB", 256UL << 20)]
    [InlineData("1g", 1UL << 30)]
    [InlineData("2GB", 2UL << 30)]
    [InlineData("1024", 1UL << 30)]        // bare number below 1 MiB: MiB
    [InlineData("4194304", 4UL << 20)]      // bare number of bytes
    [InlineData("524288k", 512UL << 20)]
    [InlineData("1t", 1UL << 40)]
    public void MemorySizes_FollowXhyveSuffixRules(string text, ulong bytes)
    {
        Assert.Equal(bytes, Spec("-m", text).MemoryBytes);
    }

    [Fact]
    public void NoArgumentFlags_SetTheirOptions_AndMayBeCombined()
    {
        var spec = Spec("-eHPuwWxYC");
        Assert.True(spec.StrictIo && spec.ExitOnHlt && spec.ExitOnPause && spec.RtcUtc && spec.IgnoreUnknownMsrs
            && spec.SingleVectorMsi && spec.X2Apic && spec.CoreDumpIncludesMemory);
        Assert.False(spec.MpTable);
    }

    [Fact]
    public void MinusY_TakesNoArgument()
    {
        var spec = Spec("-Y", "-c", "3");
        Assert.False(spec.MpTable);
        Assert.Equal(3, spec.Vcpus);
    }

    [Fact]
    public void AttachedArguments_AreAccepted()
    {
        var spec = Spec("-c4", "-m512M", "-s2,hostbridge", "-Awc2");
        Assert.Equal(2, spec.Vcpus);
        Assert.Equal(512UL << 20, spec.MemoryBytes);
        Assert.True(spec.Acpi && spec.IgnoreUnknownMsrs);
        Assert.Single(spec.PciDevices);
    }

    [Theory]
    [InlineData("-h", CliAction.Help)]
    [InlineData("-v", CliAction.Version)]
    [InlineData("-M", CliAction.PrintMacs)]
    public void InformationalFlags_SelectTheirAction(string flag, CliAction action)
    {
        Assert.Equal(action, CommandLineParser.Parse([flag]).Action);
    }

    [Fact]
    public void PidFileGdbPortAndPinning_AreRecorded()
    {
        var spec = Spec("-F", "/tmp/x.pid", "-g", "1234", "-c", "2", "-p", "1:0");
        Assert.Equal("/tmp/x.pid", spec.PidFile);
        Assert.Equal(1234, spec.GdbPort);
        Assert.Equal(0, spec.VcpuPinning[1]);
    }

    [Theory]
    [InlineData("5", 0, 5, 0)]
    [InlineData("5:3", 0, 5, 3)]
    [InlineData("2:5:3", 2, 5, 3)]
    public void PciSlots_AcceptAllThreeForms(string where, int bus, int slot, int fn)
    {
        Assert.Equal(new PciAddress(bus, slot, fn), Spec("-s", where + ",hostbridge").PciDevices[0].Address);
    }

    [Fact]
    public void SerialBackends_MayBeCombined()
    {
        var spec = Spec("-l", "com2,autopty=/tmp/p,log=/tmp/l,null");
        Assert.Equal([new SerialBackendSpec(SerialBackendKind.AutoPty, "/tmp/p"), new SerialBackendSpec(SerialBackendKind.Log, "/tmp/l"), new SerialBackendSpec(SerialBackendKind.Null)], spec.Com2);
        Assert.Equal([new SerialBackendSpec(SerialBackendKind.Tty, "/dev/ttyS5")], Spec("-l", "com1,/dev/ttyS5").Com1);
    }

    [Fact]
    public void KernelLoadOption_SetsTheKexecMode()
    {
        var k = Assert.IsType<KexecFirmware>(Spec("--kernel-load=bzimage", "-f", "kexec,k").Firmware);
        Assert.Equal(KernelLoadMode.BzImage, k.LoadMode);
        k = Assert.IsType<KexecFirmware>(Spec("-f", "kexec,k", "--kernel-load", "decompress").Firmware);
        Assert.Equal(KernelLoadMode.HostDecompress, k.LoadMode);
    }

    [Theory]
    [InlineData("-c", "-c")]
    [InlineData("-c 0", "-c 0")]
    [InlineData("-c x", "-c x")]
    [InlineData("-m 12q", "-m 12q")]
    [InlineData("-m ", "-m")]
    [InlineData("-m 99999999999999999999", "-m 99999999999999999999")]
    [InlineData("-U not-a-uuid", "-U not-a-uuid")]
    [InlineData("-g 70000", "-g 70000")]
    [InlineData("-p 1", "-p 1")]
    [InlineData("-s 32,hostbridge", "-s 32,hostbridge")]
    [InlineData("-s 0:8,hostbridge", "-s 0:8,hostbridge")]
    [InlineData("-s 256:0:0,hostbridge", "-s 256:0:0,hostbridge")]
    [InlineData("-s x,hostbridge", "-s x,hostbridge")]
    [InlineData("-s 3", "-s 3")]
    [InlineData("-l com3,stdio", "-l com3,stdio")]
    [InlineData("-l com1", "-l com1")]
    [InlineData("-l com1,bogus", "-l com1,bogus")]
    [InlineData("-l com1,log=", "-l com1,log=")]
    [InlineData("-f bios,x", "-f bios,x")]
    [InlineData("-f kexec", "-f kexec")]
    [InlineData("-f fbsd,a", "-f fbsd,a")]
    [InlineData("-q", "-q")]
    [InlineData("-b", "-b")]
    [InlineData("--frobnicate", "--frobnicate")]
    [InlineData("--kernel-load=fast", "--kernel-load")]
    [InlineData("stray", "'stray'")]
    public void MalformedArgument_FailsWithAMessageNamingIt(string commandLine, string named)
    {
        var args = commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (commandLine.EndsWith(' ')) args = [.. args, ""];
        var e = Assert.Throws<CliException>(() => CommandLineParser.Parse(args));
        Assert.StartsWith(named, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("-f kexec,a -f kexec,b", "-f kexec,b", "-f kexec,a")]
    [InlineData("-f kexec,a -l bootrom,rom.fd", "-l bootrom,rom.fd", "-f kexec,a")]
    [InlineData("-l bootrom,rom.fd -f kexec,a", "-f kexec,a", "-l bootrom,rom.fd")]
    [InlineData("-l bootrom,a.fd -l bootrom,b.fd", "-l bootrom,b.fd", "-l bootrom,a.fd")]
    [InlineData("-l com1,stdio,stdio", "-l com1,stdio,stdio", "stdio was already given")]
    [InlineData("-l com1,null,null", "-l com1,null,null", "null was already given")]
    [InlineData("-l com2,log=/tmp/a,autopty,log=/tmp/a", "-l com2,log=/tmp/a,autopty,log=/tmp/a", "log=/tmp/a was already given")]
    public void RepeatedOrContradictoryOption_IsRefusedNamingBoth(string commandLine, string named, string other)
    {
        var e = Assert.Throws<CliException>(() => CommandLineParser.Parse(commandLine.Split(' ')));
        Assert.StartsWith(named, e.Message);
        Assert.Contains(other, e.Message);
    }

    [Fact]
    public void RepeatedUartBackend_IsAProblemNamingBoth()
    {
        var problems = Spec("-s", "3,uart,stdio,stdio", "-f", "kexec,k").Validate();
        Assert.Contains(problems, p => p.Contains("uart") && p.Contains("stdio: stdio was already given"));
    }

    [Fact]
    public void SecondComPort_ReplacesTheFirst_AsInXhyve()
    {
        var spec = Spec("-l", "com1,stdio", "-l", "com1,null");
        Assert.Equal([new SerialBackendSpec(SerialBackendKind.Null)], spec.Com1);
    }

    [Theory]
    [InlineData("disk.img,size=4M,split=1M,split=2M", "split=2M", "split=1M")]
    [InlineData("disk.img,ro,ro", "ro", "ro")]
    [InlineData("disk.img,sync,direct", "direct", "sync")]
    [InlineData("disk.img,size=1M,size=2M", "size=2M", "size=1M")]
    [InlineData("disk.img,sectorsize=512,sectorsize=4096", "sectorsize=4096", "sectorsize=512")]
    public void RepeatedBlockOption_IsRefusedNamingBoth(string text, string named, string other)
    {
        var e = Assert.Throws<FormatException>(() => BlockDeviceOptions.Parse(text));
        Assert.StartsWith(named + ":", e.Message);
        Assert.Contains($"{other} was already given", e.Message);
    }

    [Theory]
    [InlineData("1024", 1024UL)]
    [InlineData("4096", 4096UL)]
    [InlineData("4M", 4UL << 20)]
    public void ImageSizes_TakeBareNumbersAsBytes(string text, ulong bytes)
    {
        Assert.True(SizeParser.TryParse(text, out ulong parsed, smallBareNumbersAreMiB: false));
        Assert.Equal(bytes, parsed);
        Assert.Equal((long)bytes, BlockDeviceOptions.Parse($"disk.img,size={text}").Size);
    }

    [Fact]
    public void SizeParser_RejectsGarbage()
    {
        foreach (var s in new[] { "", "b", "M", "12x", "1.5G", "-1", "1bb", "18446744073709551615T" })
            Assert.False(SizeParser.TryParse(s, out _), s);
    }
}
