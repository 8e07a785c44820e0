using System.Diagnostics;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>End-to-end: the firmware tables, ACPI power control and the HPET as guests see them.</summary>
public sealed class PlatformTests
{
    private static EngineRun Acpi(params string[] extra) => EngineProcess.RunGuest("acpi", extra: extra);

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(3)]
    public void AcpiGuest_WalksRsdpXsdtMadt_AndFindsOneLapicPerVcpu(int cpus)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = Acpi("-A", "-c", cpus.ToString());
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        Assert.Equal("1", r["rsdp_checksum_ok"]);
        Assert.Equal("1", r["xsdt_checksum_ok"]);
        Assert.DoesNotContain("bad_checksum", run.Stdout);
        foreach (var table in new[] { "FACP", "APIC", "HPET", "MCFG" }) Assert.Contains($"XHYVE-TEST table={table}", run.Stdout);
        Assert.Equal(cpus.ToString(), r["madt_lapics"]);
        Assert.Equal("0x00000400", r["pm1a_evt"]);
        Assert.Equal("0x00000404", r["pm1a_cnt"]);
        Assert.Equal("0x00000408", r["pm_tmr"]);
        Assert.Equal(cpus.ToString(), r["mp_cpus"]);
        Assert.Equal("1", r["mp_checksum_ok"]);
        Assert.Equal((9 + cpus - 1).ToString(), r["smbios_structures"]); // 0,1,3,4xN,16,17,19,32,127
    }

    [SkippableFact]
    public void X2ApicFlag_DescribesCpusAsX2ApicEntries_AndMinusYDropsTheMpTable()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = Acpi("-A", "-x", "-Y", "-c", "2");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0", run.Results["madt_lapics"]);
        Assert.Equal("2", run.Results["madt_x2apics"]);
        Assert.Equal("0", run.Results["mp_found"]);
    }

    [SkippableFact]
    public void WithoutMinusA_TheGuestGetsAnMpTableButNoAcpi()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = Acpi("-c", "2");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0", run.Results["rsdp_found"]);
        Assert.Equal("2", run.Results["mp_cpus"]);
        Assert.Equal("1", run.Results["smbios_found"]);
    }

    /// <summary>Issue 11, item 5: past what the MP table's area holds (-c 190 used to write a corrupt one),
    /// the table is left out with one warning and ACPI still lists every vCPU.</summary>
    [SkippableFact]
    public void MoreVcpusThanTheMpTableHolds_LeaveItOut_WithOneWarning()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = Acpi("-A", "-c", "190");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0", run.Results["mp_found"]);
        Assert.Equal("190", run.Results["madt_lapics"]);
        Assert.Equal("1", run.Results["smbios_found"]);
        Assert.Equal((9 + 190 - 1).ToString(), run.Results["smbios_structures"]);
        Assert.StartsWith("xhyve: warning: -c 190: the MP table would need ", run.Stderr);
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
    }

    /// <summary>Issue 11, item 5: -c 900 with a 70,000-character name used to write SMBIOS over the kernel at
    /// 1 MiB; now the tables fit below it and the guest runs and finds them.</summary>
    [SkippableFact]
    public void NineHundredVcpusAndALongName_KeepTheTablesBelowTheKernel()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = Acpi("-A", "-x", "-c", "900", "--name", new string('n', 70_000));
        Assert.True(run.Done, run.ToString());
        Assert.Equal("1", run.Results["rsdp_checksum_ok"]);
        Assert.Equal("900", run.Results["madt_x2apics"]);
        Assert.Equal("0", run.Results["mp_found"]);
        Assert.Equal((9 + 900 - 1).ToString(), run.Results["smbios_structures"]);
    }

    [SkippableFact]
    public void GuestWritingS5ToPm1aCnt_PowersOff_WithExitStatus0()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("power", "s5=1", extra: ["-A"]);
        Assert.Contains("XHYVE-TEST s5=1", run.Stdout);
        Assert.Equal(0, run.ExitCode);
    }

    [SkippableFact]
    public void GuestWritingTheFadtResetRegister_Resets_WithExitStatus2()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("power", "reset=1", extra: ["-A"]);
        Assert.Contains("XHYVE-TEST reset=1", run.Stdout);
        Assert.Equal(2, run.ExitCode);
    }

    [SkippableFact]
    public void Sigterm_PressesThePowerButton_AndTheGuestShutsDownWithinASecond()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = EngineProcess.Start(["-A", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("power")},,button=1"]);
        EngineProcess.ReadUntil(p, "XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var sw = Stopwatch.StartNew();
        EngineProcess.Signal(p, "TERM");
        string rest = EngineProcess.ReadUntil(p, "XHYVE-TEST s5=1", TimeSpan.FromSeconds(10));
        Assert.True(p.WaitForExit(10_000));
        Assert.Contains("XHYVE-TEST button=pressed", rest);
        Assert.Equal(0, p.ExitCode);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"shutdown took {sw.Elapsed.TotalMilliseconds:F0} ms");
    }

    [SkippableFact]
    public void SecondSigterm_TurnsOffAGuestThatIgnoresThePowerButton()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = EngineProcess.Start(["-A", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("power")},,ignore=1"]);
        EngineProcess.ReadUntil(p, "XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        EngineProcess.Signal(p, "TERM");
        Assert.False(p.WaitForExit(1500), "the first SIGTERM only presses the power button");
        EngineProcess.Signal(p, "TERM");
        Assert.True(p.WaitForExit(5000), "the second SIGTERM turns the VM off");
        Assert.Equal(0, p.ExitCode);
    }

    [SkippableFact]
    public void Rtc_PeriodicUpdateAndAlarmInterrupts_ReachTheGuestOnIrq8()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("rtcirq", extra: ["-A"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("1", run.Results["periodic_ok"]);
        Assert.Equal("1", run.Results["update_ok"]);
        Assert.Equal("1", run.Results["alarm_seen"]);
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void UnknownMsr_ReadsZeroWithMinusW_AndRaisesGpWithout(bool ignore)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hello", "msr=1", extra: ignore ? ["-w"] : []);
        if (ignore)
        {
            Assert.True(run.Done, run.ToString());
            Assert.Equal("0x00000000", run.Results["msr_lo"]);
            Assert.Equal("0x00000000", run.Results["msr_hi"]);
        }
        else
        {
            Assert.False(run.Done);
            Assert.Equal(3, run.ExitCode);                    // #GP with no handler in the guest: triple fault
            Assert.DoesNotContain("msr_lo", run.Stdout);
        }
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void X2ApicFlag_StartsTheLocalApicInX2ApicMode(bool x2apic)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hello", "x2apic=1", extra: x2apic ? ["-x"] : []);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("1", run.Results["apic_enabled"]);
        Assert.Equal(x2apic ? "1" : "0", run.Results["x2apic_mode"]);
        if (x2apic) Assert.Equal("0", run.Results["x2apic_id"]);
    }

    [SkippableFact]
    public void Hpet_OneShotAndPeriodicComparators_InterruptTheGuest()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hpet", extra: ["-A"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("100000000", run.Results["period_fs"]);
        Assert.Equal("3", run.Results["timers"]);
        Assert.Equal("1", run.Results["oneshot_ok"]);
        Assert.Equal("1", run.Results["oneshot_irqs"]);
        Assert.Equal("1", run.Results["periodic_ok"]);
        Assert.True(int.Parse(run.Results["total_irqs"]) >= 4);
    }
}
