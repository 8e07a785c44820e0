using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Chipset;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Tests.Devices;

/// <summary>The chipset registers OVMF reads: they name the engine's fixed PM block and ECAM, enabled, and keep
/// naming them whatever the firmware writes.</summary>
public sealed class ChipsetFunctionsTests
{
    [Fact]
    public void I440fxHostBridge_HasTheIdOvmfAccepts_AndKeepsPamWrites()
    {
        var f = ChipsetFunctions.I440fxHostBridge();
        Assert.Equal(0x1237_8086u, f.Config.Read(0, 4));
        Assert.Equal(0x0600_0002u, f.Config.Read(8, 4));
        f.Config.Write(ChipsetFunctions.I440fxPam0, 1, 0x30);
        Assert.Equal(0x30u, f.Config.Read(ChipsetFunctions.I440fxPam0, 1));
    }

    [Fact]
    public void Piix4Pm_NamesOurPmBlockWithPmioseSet_AndIgnoresTheFirmwaresBase()
    {
        var f = ChipsetFunctions.Piix4PowerManagement();
        Assert.Equal(0x7113_8086u, f.Config.Read(0, 4));
        Assert.Equal(1u, f.Config.Read(ChipsetFunctions.Piix4PmRegMisc, 1) & 1);
        f.Config.Write(ChipsetFunctions.Piix4Pmba, 4, 0xB001);            // PIIX4_PMBA_VALUE, as OVMF writes it
        f.Config.Write(ChipsetFunctions.Piix4PmRegMisc, 1, 0);
        uint pmba = f.Config.Read(ChipsetFunctions.Piix4Pmba, 4);
        Assert.Equal(PlatformLayout.PmTimerPort, (ushort)((pmba & ~1u) + 8));   // AcpiTimerLib's timer address
        Assert.Equal(1u, pmba & 1);
        Assert.Equal(1u, f.Config.Read(ChipsetFunctions.Piix4PmRegMisc, 1) & 1);
    }

    [Fact]
    public void Q35Mch_NamesOurEcamInPciexbar_AndIgnoresWrites()
    {
        var f = ChipsetFunctions.Q35HostBridge();
        Assert.Equal(0x29C0_8086u, f.Config.Read(0, 4));
        f.Config.Write(ChipsetFunctions.Q35PciExBar, 4, 0xB000_0001);
        f.Config.Write(ChipsetFunctions.Q35PciExBar + 4, 4, 1);
        Assert.Equal((uint)PlatformLayout.EcamBase | 1, f.Config.Read(ChipsetFunctions.Q35PciExBar, 4));
        Assert.Equal(0u, f.Config.Read(ChipsetFunctions.Q35PciExBar + 4, 4));
        f.Config.Write(ChipsetFunctions.Q35Pam0 + 1, 1, 0x33);
        Assert.Equal(0x33u, f.Config.Read(ChipsetFunctions.Q35Pam0 + 1, 1));
    }

    [Fact]
    public void Ich9Lpc_NamesOurPmBlockWithAcpiEnOnIrq9_AndKeepsRoutingWrites()
    {
        var f = ChipsetFunctions.Ich9Lpc();
        Assert.Equal(0x2918_8086u, f.Config.Read(0, 4));
        Assert.Equal(0x0601_0002u, f.Config.Read(8, 4));
        f.Config.Write(ChipsetFunctions.Ich9PmBase, 4, 0x601);           // ICH9_PMBASE_VALUE
        f.Config.Write(ChipsetFunctions.Ich9AcpiCntl, 1, 0);
        Assert.Equal(ChipsetFunctions.PmBaseRegister, f.Config.Read(ChipsetFunctions.Ich9PmBase, 4));
        Assert.Equal(0x80u, f.Config.Read(ChipsetFunctions.Ich9AcpiCntl, 1));   // ACPI_EN, SCI_IRQ_SEL 0 = IRQ 9
        Assert.Equal(0x8080_8080u, f.Config.Read(ChipsetFunctions.Ich9PirqA, 4));
        f.Config.Write(ChipsetFunctions.Ich9PirqA, 4, 0x0B0B_0A0A);
        f.Config.Write(ChipsetFunctions.Ich9PirqE, 4, 0xFFFF_FFFF);         // reserved bits 6:4 stay zero
        Assert.Equal(0x0B0B_0A0Au, f.Config.Read(ChipsetFunctions.Ich9PirqA, 4));
        Assert.Equal(0x8F8F_8F8Fu, f.Config.Read(ChipsetFunctions.Ich9PirqE, 4));
        f.Config.Write(ChipsetFunctions.Ich9Rcba, 4, 0xFED1_C001);
        Assert.Equal(0xFED1_C001u, f.Config.Read(ChipsetFunctions.Ich9Rcba, 4));
    }

    private static IReadOnlyList<string> Problems(params string[] args) =>
        CommandLineParser.Parse([.. args, "-f", $"kexec,{typeof(ChipsetFunctionsTests).Assembly.Location}"]).Spec.Validate();

    [Fact]
    public void ChipsetModels_WithTheirFunctionsInPlace_HaveNoProblems()
    {
        Assert.Empty(Problems("-s", "0,hostbridge,model=q35", "-s", "31,lpc"));
        Assert.Empty(Problems("-s", "0,hostbridge,model=i440fx", "-s", "31,lpc", "-s", "1,virtio-rnd"));
    }

    [Theory]
    [InlineData("-s 0,hostbridge,model=q35", "-s 0:0:0,hostbridge,model=q35: Q35's ICH9 LPC bridge (the PM base firmware reads) must be at 0:31:0; add -s 31,lpc")]
    [InlineData("-s 0,hostbridge,model=q35 -s 30,lpc", "-s 0:0:0,hostbridge,model=q35: Q35's ICH9 LPC bridge (the PM base firmware reads) must be at 0:31:0; add -s 31,lpc")]
    [InlineData("-s 0,hostbridge,model=i440fx -s 1:3,virtio-rnd", "-s 0:1:3,virtio-rnd: 0:1:3 is the PIIX4 power-management function of -s 0:0:0,hostbridge,model=i440fx")]
    [InlineData("-s 2,hostbridge,model=i440fx", "-s 0:2:0,hostbridge,model=i440fx: a chipset's host bridge must be at 0:0:0, where firmware reads it")]
    [InlineData("-s 0,hostbridge,model=i440fx -s 1:0:0,hostbridge,model=q35 -s 31,lpc", "-s 1:0:0,hostbridge,model=q35: only one host bridge can name a chipset (already -s 0:0:0,hostbridge,model=i440fx)")]
    public void ChipsetModels_WithoutTheirFunctions_AreOneProblemNamingTheArgument(string line, string problem)
    {
        Assert.Equal([problem], Problems(line.Split(' ')));
    }
}
