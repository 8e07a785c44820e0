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

    /// <summary>How long the kernel runs here before it stops by itself: at KVM's emulation failure (exit 100) on a
    /// software-nested host, or at its panic for want of a root file system (panic=-1: reboot, exit 2) elsewhere.</summary>
    private static readonly TimeSpan EarlyStopBound = TimeSpan.FromSeconds(300);

    /// <summary>One boot per case, run until the kernel stops by itself: the banner, the engine's e820 map, our command
    /// line, PAT (the MTRRs are enabled), no TSC firmware bug, and where the kernel runs. With KASLR the kernel sits at
    /// the physical address and virtual offset the engine drew (--verbose): the panic's "Kernel Offset" says so on
    /// hosts with VT-x/AMD-V, and here the RIP and physical address of the instruction KVM could not emulate do
    /// (link-time address + virtual offset, at the drawn physical place). With nokaslr it runs where it was linked.</summary>
    [SkippableTheory]
    [InlineData("512M", 512UL << 20, true)]
    [InlineData("3200M", 3200UL << 20, false)]   // 3 GiB below the PCI hole, 128 MiB above 4 GiB
    public void DebianKernel_PrintsBannerE820MapAndCommandLine_KeepsPat_NoTscFirmwareBug_AndRunsWhereKaslrPutIt(string memory, ulong bytes, bool kaslr)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        string commandLine = CommandLine + " panic=-1" + (kaslr ? "" : " nokaslr");
        var run = EngineProcess.Run(["--verbose", "-m", memory, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{commandLine}"],
            (int)EarlyStopBound.TotalSeconds);
        string console = run.Stdout;
        Assert.True(run.ExitCode is 100 or 2, run.ToString());
        Assert.Matches(@"Linux version 6\.\d+\.\d+-\d+-cloud-amd64", console);
        Assert.Contains($"Kernel command line: {commandLine}", console);
        var e820 = Regex.Matches(console, @"BIOS-e820: \[mem 0x[0-9a-f]{16}-0x[0-9a-f]{16}\] \w+").Select(m => m.Value).ToList();
        Assert.Equal(ExpectedE820(bytes), e820);
        // The MTRRs the engine programs are enabled (default write-back), so Linux 6.1 initialises PAT with its
        // write-combining layout instead of "x86/PAT: MTRRs disabled, skipping PAT initialization too."
        Assert.Contains("x86/PAT: Configuration [0-7]: WB  WC  UC- UC  WB  WP  UC- WT", console);
        Assert.DoesNotContain("MTRRs disabled", console);
        // Invariant TSC is advertised only where (on AMD) HWCR.TscFreqSel agrees with it.
        Assert.DoesNotContain("TSC doesn't count with P0 frequency", console);

        const ulong link = 0x100_0000, startKernelMap = 0xFFFF_FFFF_8000_0000;
        ulong physical = link, offset = 0;
        if (kaslr)
        {
            var drawn = Regex.Match(run.Stderr, @"KASLR: physical 0x(?<p>[0-9A-F]+), virtual offset 0x(?<v>[0-9A-F]+)");
            Assert.True(drawn.Success, run.ToString());
            physical = Convert.ToUInt64(drawn.Groups["p"].Value, 16);
            offset = Convert.ToUInt64(drawn.Groups["v"].Value, 16);
        }
        else Assert.Contains("KASLR off (nokaslr)", run.Stderr);
        var panicOffset = Regex.Match(console, @"Kernel Offset: (?<o>0x[0-9a-f]+|disabled)");
        if (panicOffset.Success)
        {
            Assert.Equal(kaslr ? $"0x{offset:x}" : "disabled", panicOffset.Groups["o"].Value);
            return;
        }
        var stop = Regex.Match(run.Stderr, @"at RIP 0x(?<rip>[0-9A-F]+) \(physical 0x(?<pa>[0-9A-F]+)\)");
        Assert.True(stop.Success, $"the kernel neither panicked nor stopped at an emulation failure:\n{run}");
        ulong rip = Convert.ToUInt64(stop.Groups["rip"].Value, 16), pa = Convert.ToUInt64(stop.Groups["pa"].Value, 16);
        ulong linked = rip - offset;                                          // where the instruction was linked
        Assert.InRange(linked, startKernelMap + link, startKernelMap + link + (64UL << 20));
        Assert.Equal(linked - startKernelMap - link + physical, pa);
    }

    /// <summary>Two starts of the same VM draw their own KASLR placements from the host RNG (the engine's --verbose
    /// kernel line), as two boots of the kernel's own decompressor would. Each runs to the banner only.</summary>
    [SkippableFact]
    public void DebianKernel_TwoStartsDrawDifferentKaslrPlacements()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        string Placement()
        {
            using var p = EngineProcess.Start(["--verbose", "-m", "512M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{CommandLine}"]);
            try { EngineProcess.ReadUntil(p, "Linux version", Bound); }
            finally
            {
                EngineProcess.Signal(p, "TERM");
                p.WaitForExit(10_000);
            }
            var m = Regex.Match(p.Stderr, @"KASLR: physical 0x[0-9A-F]+, virtual offset 0x[0-9A-F]+");
            Assert.True(m.Success, p.Stderr);
            return m.Value;
        }
        // About 240 virtual and 200 physical slots with 512 MiB: equal draws twice in a row are a ~1e-5 event.
        Assert.NotEqual(Placement(), Placement());
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
