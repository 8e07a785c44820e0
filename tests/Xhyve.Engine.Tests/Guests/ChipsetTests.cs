using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>
/// -s 0,hostbridge,model=i440fx|q35: a guest doing what OVMF's PlatformPei and AcpiTimerLib do (host bridge id, then
/// the chipset's PM base register and enable bit, then the timer at PMBA+8; on Q35 the ECAM PCIEXBAR names) finds the
/// engine's own PM block at 0x400 and its ECAM, and cannot move either by rewriting the registers.
/// </summary>
public sealed class ChipsetTests
{
    private static EngineRun RunChipset(string model) => EngineProcess.Run(
        ["-s", $"0,hostbridge,model={model}", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("chipset")}"]);

    /// <summary>What OVMF's PlatformPei finds through either chipset: our PM block (enabled from reset, at 0x400), its
    /// timer counting, and SCI_EN kept.</summary>
    private static void AssertFirmwareFindsOurPmBlock(EngineRun run)
    {
        Assert.Equal("1", run.Results["pm_enabled_at_reset"]);
        Assert.Equal("0x00000400", run.Results["pm_base"]);
        Assert.Equal("1", run.Results["pm_timer_counts"]);
        Assert.Equal("1", run.Results["sci_en"]);
    }

    [SkippableFact]
    public void I440fx_FirmwareFindsThePmTimerThroughThePiix4PmFunction()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = RunChipset("i440fx");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x00001237", run.Results["hostbridge_did"]);
        AssertFirmwareFindsOurPmBlock(run);
    }

    [SkippableFact]
    public void Q35_FirmwareFindsThePmTimerThroughTheIch9Lpc_AndTheEcamThroughPciexbar()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = RunChipset("q35");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x000029c0", run.Results["hostbridge_did"]);
        AssertFirmwareFindsOurPmBlock(run);
        Assert.Equal("0xe0000001", run.Results["pciexbar_lo"]);
        Assert.Equal("0x00000000", run.Results["pciexbar_hi"]);
        Assert.Equal("0x29c08086", run.Results["ecam_0_0_0"]);
        Assert.Equal("0x29188086", run.Results["ecam_0_31_0"]);
        Assert.Equal("0x0b0b0a0a", run.Results["pirq_a_d"]);
    }
}
