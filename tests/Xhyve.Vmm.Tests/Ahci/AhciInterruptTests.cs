using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>Interrupt generation (AHCI §10.7): PxIS &amp; PxIE and GHC.IE decide; MSI once per burst of completions
/// the guest has not acknowledged yet; INTx as a level that follows the pending state.</summary>
public sealed class AhciInterruptTests
{
    private const ulong Data = AhciTestBed.DataBase;

    private static byte[] Fpdma(int tag) => AhciTestBed.H2D(0x60, lba: (ulong)tag, count: (ushort)(tag << 3), features: 1);

    [Fact]
    public void Msi_OneMessagePerBurstOfCompletionsUntilTheGuestAcknowledges()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.EnableMsi();
        bed.StartPort(0);
        drive.Gate.Reset();
        for (int tag = 0; tag < 6; tag++) bed.Build(0, tag, Fpdma(tag), [(Data, 512)]);
        bed.Issue(0, 0x3F, queued: true);
        Assert.True(SpinWait.SpinUntil(() => drive.Calls >= 4, 5000));
        Assert.Equal(0, bed.Msi.Count);
        drive.Gate.Set();
        Assert.True(bed.WaitDone(0, 0x3F));
        Assert.Equal(1, bed.Msi.Count);                                 // six completions, one message
        Assert.Equal(1u, bed.R(AhciRegisters.Is));
        Assert.False(bed.Intx.Level);

        bed.PW(0, AhciRegisters.PxIs, bed.PR(0, AhciRegisters.PxIs));                     // the handler: PxIS, then IS
        bed.W(AhciRegisters.Is, 1);
        Assert.Equal(0u, bed.R(AhciRegisters.Is));
        Assert.Equal(1, bed.Msi.Count);
        Assert.True(bed.Run(0, 0, Fpdma(0), [(Data, 512)], queued: true));
        Assert.True(SpinWait.SpinUntil(() => bed.Msi.Count == 2, 5000));
        Assert.Equal(2, bed.Hba.Counters.Single(c => c.Key == "interrupts").Value);
    }

    [Fact]
    public void Msi_AnAcknowledgementThatLeavesSomethingPendingRaisesAnotherMessage()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive, new FakeDrive());
        bed.EnableMsi();
        bed.StartPort(0);
        bed.StartPort(1);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        Assert.True(bed.Run(1, 0, AhciTestBed.H2D(0xE7), []));
        Assert.Equal(1, bed.Msi.Count);
        Assert.Equal(0b11u, bed.R(AhciRegisters.Is));
        bed.PW(0, AhciRegisters.PxIs, 0xFFFF_FFFF);                              // port 1 is still pending: the guest must hear
        Assert.Equal(2, bed.Msi.Count);
        Assert.Equal(0b10u, bed.R(AhciRegisters.Is));
    }

    [Fact]
    public void Intx_FollowsThePendingStateAsALevel()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.StartPort(0);
        Assert.False(bed.Intx.Level);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        Assert.True(SpinWait.SpinUntil(() => bed.Intx.Level, 5000));
        Assert.NotEqual(0u, bed.Hba.Config.Read(PciConfigSpace.Status, 2) & PciConfigSpace.StatusInterrupt);
        Assert.Equal(1u, bed.R(AhciRegisters.Is));
        bed.W(AhciRegisters.Is, 1);                                              // PxIS still set: the line stays up
        Assert.True(bed.Intx.Level);
        bed.PW(0, AhciRegisters.PxIs, AhciRegisters.IsDhrs);
        Assert.False(bed.Intx.Level);
        Assert.Equal(0, bed.Msi.Count);
    }

    [Fact]
    public void MaskedPortOrGlobalEnableOff_RaisesNothingUntilEnabled()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.StartPort(0, interrupts: false);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        Assert.Equal(AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));                // the status is there,
        Assert.Equal(0u, bed.R(AhciRegisters.Is));                               // but PxIE masks it
        Assert.False(bed.Intx.Level);
        bed.PW(0, AhciRegisters.PxIe, AhciRegisters.IsDhrs);
        Assert.False(bed.Intx.Level);                                   // GHC.IE still off
        Assert.Equal(1u, bed.R(AhciRegisters.Is));
        bed.W(AhciRegisters.Ghc, AhciRegisters.GhcIe);
        Assert.True(bed.Intx.Level);
        bed.W(AhciRegisters.Ghc, 0);
        Assert.False(bed.Intx.Level);
    }

    [Fact]
    public void EnablingMsiWhileAnInterruptIsPending_DeliversItAsAMessage()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        Assert.True(bed.Intx.Level);
        bed.EnableMsi();
        Assert.False(bed.Intx.Level);
        Assert.Equal(1, bed.Msi.Count);
    }
}
