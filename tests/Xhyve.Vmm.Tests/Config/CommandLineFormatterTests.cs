using Xhyve.Vmm.Config;

namespace Xhyve.Vmm.Tests.Config;

/// <summary>Arguments -> specification -> arguments: what the formatter writes parses back to the same VM.</summary>
public sealed class CommandLineFormatterTests
{
    public static TheoryData<string[]> XhyverunLines => new()
    {
        // xhyve's own xhyverun.sh (tinycorelinux), with ACPI as it has been on since 2015
        new[] { "-A", "-m", "1G", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", "kexec,test/vmlinuz,test/initrd.gz,earlyprintk=serial console=ttyS0" },
        // the how-to's install.sh: a split/sparse disk with a 4K sector size and two vCPUs
        new[] { "-c", "2", "-m", "1G", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-s", "2,virtio-blk,hdd.img,sectorsize=4096,size=20G,split=1G,sparse", "-f", "kexec,vmlinuz,initrd.gz,earlyprintk=serial console=ttyS0" },
        // every flag, a UUID, pinning, two serial ports, multiboot modules, a kernel command line with commas
        new[] { "-ACeHPuwWxY", "-c", "4", "-m", "1536M", "-U", "8a2f4b1c-0d3e-4f5a-9b6c-7d8e9f0a1b2c", "-F", "/run/vm.pid", "-p", "0:1", "-p", "1:0",
            "-s", "0,hostbridge", "-s", "1:2:3,virtio-rnd", "-s", "31,lpc", "-l", "com1,log=/tmp/c1.log,null", "-l", "com2,autopty=/tmp/pty",
            "-f", "multiboot,kern.elf,m1;a=1 b=2:m2,console=ttyS0,115200", "--name=web" },
        new[] { "-f", "kexec,vmlinuz,,root=/dev/vda", "--kernel-load=bzimage" },
        new[] { "-m", "3000K", "-f", "kexec,vmlinuz" },
        // bhyve's UEFI line: the ROM and the VM's variable store; and a ROM alone given with -f
        new[] { "-A", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-l", "bootrom,/usr/share/OVMF/OVMF_CODE.fd,/vm/OVMF_VARS.fd" },
        new[] { "-f", "bootrom,/usr/share/seabios/bios.bin" },
    };

    [Theory]
    [MemberData(nameof(XhyverunLines))]
    public void FormattedArguments_ParseBackToTheSameSpecification(string[] args)
    {
        var spec = CommandLineParser.Parse(args).Spec;
        var again = CommandLineParser.Parse(CommandLineFormatter.ToArguments(spec)).Spec;
        Assert.Equal(Describe(spec), Describe(again));
    }

    [Fact]
    public void ABootRom_IsWrittenAsBhyveWritesIt()
    {
        var spec = CommandLineParser.Parse(["-f", "bootrom,code.fd,vars.fd"]).Spec;
        Assert.Equal(["-c", "1", "-m", "256M", "-l", "bootrom,code.fd,vars.fd"], CommandLineFormatter.ToArguments(spec));
    }

    [Theory]
    [InlineData(256UL << 20, "256M")]
    [InlineData(1UL << 30, "1G")]
    [InlineData(1536UL << 20, "1536M")]
    [InlineData(3000UL << 10, "3000K")]
    [InlineData(1000UL, "1000B")]
    public void Sizes_UseTheLargestExactUnit(ulong bytes, string expected) => Assert.Equal(expected, CommandLineFormatter.FormatSize(bytes));

    [Fact]
    public void AMinimalSpecification_NamesCpusMemoryAndFirmwareOnly()
    {
        var spec = CommandLineParser.Parse(["-f", "kexec,vmlinuz,initrd.gz,console=ttyS0"]).Spec;
        Assert.Equal(["-c", "1", "-m", "256M", "-f", "kexec,vmlinuz,initrd.gz,console=ttyS0"], CommandLineFormatter.ToArguments(spec));
    }

    /// <summary>Records with lists compare by reference, so compare a rendering of every field instead.</summary>
    private static string Describe(VmSpecification s) => string.Join("\n",
        s with { PciDevices = [], VcpuPinning = new Dictionary<int, int>(), Com1 = null, Com2 = null, Firmware = null },
        string.Join(";", s.PciDevices), string.Join(";", s.VcpuPinning.OrderBy(p => p.Key)),
        s.Com1 == null ? "-" : string.Join(",", s.Com1), s.Com2 == null ? "-" : string.Join(",", s.Com2),
        s.Firmware == null ? "-" : CommandLineFormatter.FormatFirmware(s.Firmware) + (s.Firmware is KexecFirmware k ? k.LoadMode.ToString() : ""));
}
