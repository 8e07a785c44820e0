using System.Diagnostics;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>
/// Boots the Debian cloud kernel (fetched with apt-get download by tests/linux/fetch-debian-kernel.sh).
/// On a software-nested KVM host the kernel runs only to its early console, so these tests assert on that
/// part and stop the VM themselves. Its userspace runs (the Linux device tests with Debian's kernel and
/// modules) live with the other Linux tests and need VT-x/AMD-V.
/// </summary>
[Collection("Linux"), Trait("Category", "Linux")]
public sealed class DebianKernelTests
{
    private const string CommandLine = "earlyprintk=serial,ttyS0,115200 console=ttyS0 xhyve.smoke=1";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    private static string FetchKernel()
    {
        var psi = new ProcessStartInfo(Path.Combine(EngineProcess.Root, "tests/linux/fetch-debian-kernel.sh"))
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"fetch-debian-kernel.sh failed: {stderr}");
        return stdout.Trim().Split('\n').Last();
    }

    /// <summary>The e820 lines as Linux prints them ("BIOS-e820: [mem 0x...-0x...] usable").</summary>
    private static List<string> ExpectedE820(ulong memoryBytes)
    {
        using var memory = new GuestMemory(X86Layout.RamRegions(memoryBytes));
        return E820Map.Build(memory).Select(e =>
            $"BIOS-e820: [mem 0x{e.Address:x16}-0x{e.End - 1:x16}] {(e.Type == E820Type.Ram ? "usable" : "reserved")}").ToList();
    }

    [SkippableTheory]
    [InlineData("512M", 512UL << 20)]
    [InlineData("3200M", 3200UL << 20)]   // 3 GiB below the PCI hole, 128 MiB above 4 GiB
    public void DebianKernel_PrintsBannerTheEngineE820MapAndOurCommandLine(string memory, ulong bytes)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        using var p = EngineProcess.Start(["-m", memory, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{CommandLine}"]);
        string console;
        try
        {
            console = EngineProcess.ReadUntil(p, $"Kernel command line: {CommandLine}", Bound);
        }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
        }
        Assert.Equal(0, p.ExitCode);
        Assert.Matches(@"Linux version 6\.\d+\.\d+-\d+-cloud-amd64", console);
        var e820 = Regex.Matches(console, @"BIOS-e820: \[mem 0x[0-9a-f]{16}-0x[0-9a-f]{16}\] \w+").Select(m => m.Value).ToList();
        Assert.Equal(ExpectedE820(bytes), e820);
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void DebianKernel_FindsAcpiTablesWithMinusA_AndTheMpTableWithout(bool acpi)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        string[] flags = acpi ? ["-A"] : [];
        using var p = EngineProcess.Start([.. flags, "-c", "2", "-m", "512M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{CommandLine}"]);
        string console;
        // With MP or ACPI tables the kernel allows 2 CPUs; a kernel that can read neither allows 1.
        try { console = EngineProcess.ReadUntil(p, "smpboot: Allowing ", Bound) + EngineProcess.ReadUntil(p, "CPUs", TimeSpan.FromSeconds(30)); }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
        }
        Assert.Contains("SMBIOS 2.8 present", console);
        Assert.Contains(acpi ? "smpboot: Allowing 2 CPUs" : "smpboot: Allowing", console);
        Assert.Contains("DMI: XhyvePS xhyve", console);
        if (acpi)
        {
            foreach (var table in new[] { "RSDP", "XSDT", "FACP", "DSDT", "FACS", "APIC", "HPET", "MCFG" })
                Assert.Matches($@"ACPI: {table} 0x[0-9A-F]+ ", console);
            Assert.Contains("ACPI: PM-Timer IO Port: 0x408", console);
            Assert.Contains("Using ACPI (MADT) for SMP configuration information", console);
        }
        else
        {
            Assert.Contains("A valid RSDP was not found", console);
            // Debian's cloud kernel is built without CONFIG_X86_MPPARSE and ignores MP tables; the MP
            // table itself is checked by the acpi test guest. A kernel with MP support must use it.
            string config = File.ReadAllText(Directory.GetFiles(Path.GetDirectoryName(kernel)!, "config-*").Single());
            if (config.Contains("CONFIG_X86_MPPARSE=y")) Assert.Contains("Intel MultiProcessor Specification v1.4", console);
            else Assert.Contains("smpboot: Boot CPU (id 0) not listed by BIOS", console);
        }
    }
}
