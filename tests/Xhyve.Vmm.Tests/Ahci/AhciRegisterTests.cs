using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>The HBA's PCI identity and register semantics (AHCI 1.3.1 chapter 3), driven through BAR5 as a guest would.</summary>
public sealed class AhciRegisterTests
{
    [Fact]
    public void PciIdentity_IsAnIch9AhciFunctionWithAbarInBar5AndMsi()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        var c = bed.Hba.Config;
        Assert.Equal(0x8086u, c.Read(PciConfigSpace.VendorId, 2));
        Assert.Equal(0x2922u, c.Read(PciConfigSpace.DeviceId, 2));
        Assert.Equal(0x01_06_01u, c.Read(PciConfigSpace.RevisionId, 4) >> 8);
        var bar = Assert.Single(bed.Hba.Bars);
        Assert.Equal(5, bar.Index);
        Assert.Equal(PciBarKind.Memory32, bar.Kind);
        Assert.True(bar.Size >= 0x100 + 32 * 0x80);
        c.Write(0x24, 4, 0xFFFF_FFFF);
        Assert.Equal(~((uint)bar.Size - 1), c.Read(0x24, 4));
        int cap = (int)c.Read(PciConfigSpace.CapabilitiesPointer, 1);
        Assert.Equal(PciInterrupts.MsiCapabilityId, (byte)c.Read(cap, 1));
        Assert.Equal(1u, c.Read(PciConfigSpace.InterruptPin, 1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(32)]
    public void GenericHostRegisters_DescribeTheHbaAndItsPorts(int ports)
    {
        using var bed = new AhciTestBed(Enumerable.Range(0, ports).Select(_ => (IAhciDrive)new FakeDrive()).ToArray());
        uint cap = bed.R(AhciRegisters.Cap);
        Assert.Equal((uint)ports - 1, cap & 0x1F);                    // NP
        Assert.Equal(31u, (cap >> 8) & 0x1F);                           // NCS: 32 slots
        Assert.NotEqual(0u, cap & AhciRegisters.CapS64A);
        Assert.NotEqual(0u, cap & AhciRegisters.CapSncq);
        Assert.NotEqual(0u, cap & AhciRegisters.CapSam);
        Assert.Equal(0u, cap & (1u << 29));                             // no SNotification
        Assert.Equal(3u, (cap >> 20) & 0xF);                            // gen 3
        Assert.Equal(ports == 32 ? 0xFFFF_FFFF : (1u << ports) - 1, bed.R(AhciRegisters.Pi));
        Assert.Equal(0x0001_0301u, bed.R(AhciRegisters.Vs));
        Assert.Equal(AhciRegisters.GhcAe, bed.R(AhciRegisters.Ghc));
        bed.W(AhciRegisters.Ghc, 0);                                             // AE cannot be cleared with SAM
        Assert.Equal(AhciRegisters.GhcAe, bed.R(AhciRegisters.Ghc));
        bed.W(AhciRegisters.Ghc, AhciRegisters.GhcIe);
        Assert.Equal(AhciRegisters.GhcAe | AhciRegisters.GhcIe, bed.R(AhciRegisters.Ghc));
        Assert.Equal(0u, bed.R(AhciRegisters.CccCtl));
    }

    [Fact]
    public void PortsAfterReset_ReportTheirDriveSignatureAndAnActiveGen3Link()
    {
        using var bed = new AhciTestBed(new FakeDrive(), new FakeDrive(atapi: true));
        Assert.Equal(0x133u, bed.PR(0, AhciRegisters.PxSsts));
        Assert.Equal(0x133u, bed.PR(1, AhciRegisters.PxSsts));
        Assert.Equal(0x0000_0101u, bed.PR(0, AhciRegisters.PxSig));
        Assert.Equal(0xEB14_0101u, bed.PR(1, AhciRegisters.PxSig));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxTfd) & (AhciRegisters.TfdBsy | AhciRegisters.TfdDrq));
        uint cmd = bed.PR(0, AhciRegisters.PxCmd);
        Assert.Equal(AhciRegisters.CmdSud | AhciRegisters.CmdPod, cmd);                   // stopped, spun up, powered on
    }

    [Fact]
    public void StartAndStop_CrFollowsStFrFollowsFreAndStoppingClearsCiAndSact()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.PW(0, AhciRegisters.PxClb, (uint)AhciTestBed.Clb(0));
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        Assert.Equal(AhciRegisters.CmdFre | AhciRegisters.CmdFr, bed.PR(0, AhciRegisters.PxCmd) & (AhciRegisters.CmdFre | AhciRegisters.CmdFr | AhciRegisters.CmdSt | AhciRegisters.CmdCr));
        bed.PW(0, AhciRegisters.PxCi, 1);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCi));                         // CI cannot be set while ST is clear
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
        Assert.Equal(AhciRegisters.CmdSt | AhciRegisters.CmdCr, bed.PR(0, AhciRegisters.PxCmd) & (AhciRegisters.CmdSt | AhciRegisters.CmdCr));

        drive.Gate.Reset();                                             // a command stays in flight
        bed.Build(0, 0, AhciTestBed.H2D(0x25, count: 1), [(AhciTestBed.DataBase, 512)]);
        bed.PW(0, AhciRegisters.PxSact, 0x8000_0000);                           // a queued tag the guest announced
        bed.Issue(0, 1);
        Assert.True(SpinWait.SpinUntil(() => drive.Calls == 1, 5000));
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCi));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxSact));
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxCmd) & AhciRegisters.CmdCr);        // the I/O thread still owns the slot
        drive.Gate.Set();
        Assert.True(SpinWait.SpinUntil(() => (bed.PR(0, AhciRegisters.PxCmd) & AhciRegisters.CmdCr) == 0, 5000));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIs) & AhciRegisters.IsDhrs);           // the forgotten command reports nothing
        bed.PW(0, AhciRegisters.PxCmd, 0);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCmd) & (AhciRegisters.CmdFre | AhciRegisters.CmdFr));
    }

    [Fact]
    public void PxIsAndPxSerr_AreWriteOneToClear()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        Assert.Equal(AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));
        bed.PW(0, AhciRegisters.PxIs, 0);
        Assert.Equal(AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));
        bed.PW(0, AhciRegisters.PxIs, ~AhciRegisters.IsDhrs);
        Assert.Equal(AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));
        bed.PW(0, AhciRegisters.PxIs, AhciRegisters.IsDhrs);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIs));

        bed.PW(0, AhciRegisters.PxSctl, 1);
        bed.PW(0, AhciRegisters.PxSctl, 0);
        Assert.Equal(AhciRegisters.SerrDiagX, bed.PR(0, AhciRegisters.PxSerr));
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxIs) & AhciRegisters.IsPcs);        // PCS mirrors DIAG.X
        bed.PW(0, AhciRegisters.PxIs, AhciRegisters.IsPcs);                               // PCS is not cleared through PxIS
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxIs) & AhciRegisters.IsPcs);
        bed.PW(0, AhciRegisters.PxSerr, 0);
        Assert.Equal(AhciRegisters.SerrDiagX, bed.PR(0, AhciRegisters.PxSerr));
        bed.PW(0, AhciRegisters.PxSerr, AhciRegisters.SerrDiagX);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxSerr));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIs));
    }

    [Fact]
    public void ComReset_ResetsTheDriveAndPostsTheSignatureFis()
    {
        var drive = new FakeDrive(atapi: true);
        using var bed = new AhciTestBed(drive);
        bed.PW(0, AhciRegisters.PxFb, (uint)AhciTestBed.Fb(0));
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        int resets = drive.Resets;
        bed.PW(0, AhciRegisters.PxSctl, 0x301);                                  // DET=1, IPM: no partial/slumber
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxSsts) & 0xF);                 // link down during COMRESET
        Assert.Equal(resets, drive.Resets);
        bed.PW(0, AhciRegisters.PxSctl, 0x300);
        Assert.Equal(resets + 1, drive.Resets);
        Assert.Equal(0x133u, bed.PR(0, AhciRegisters.PxSsts));
        Assert.Equal(0xEB14_0101u, bed.PR(0, AhciRegisters.PxSig));
        Assert.Equal(0x300u, bed.PR(0, AhciRegisters.PxSctl));
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxSerr) & AhciRegisters.SerrDiagX);
        var fis = bed.ReceivedFis(0, AhciRegisters.RxRfis, 20);
        Assert.Equal(AhciRegisters.FisRegD2H, fis[0]);
        Assert.Equal(0, fis[1] & 0x40);                                 // no interrupt for the signature
        Assert.Equal((byte)1, fis[12]);                                 // count, LBA low/mid/high: the signature
        Assert.Equal(new byte[] { 0x01, 0x14, 0xEB }, fis[4..7]);
    }

    [Fact]
    public void ComResetWithFisReceiveOff_PostsTheSignatureWhenFreIsSet()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.PW(0, AhciRegisters.PxFb, (uint)AhciTestBed.Fb(0));
        bed.PW(0, AhciRegisters.PxSctl, 1);
        bed.PW(0, AhciRegisters.PxSctl, 0);
        Assert.Equal(0, bed.ReceivedFis(0, AhciRegisters.RxRfis, 1)[0]);
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        var fis = bed.ReceivedFis(0, AhciRegisters.RxRfis, 20);
        Assert.Equal(AhciRegisters.FisRegD2H, fis[0]);
        Assert.Equal(0x50, fis[2]);
        Assert.Equal(1, fis[3]);
    }

    [Fact]
    public void HbaReset_ResetsPortRegistersButKeepsListAndFisAddresses()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0xE7), []));
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        bed.PW(0, AhciRegisters.PxClbu, 0x12);
        int resets = drive.Resets;
        bed.W(AhciRegisters.Ghc, AhciRegisters.GhcHr | AhciRegisters.GhcIe);
        Assert.Equal(AhciRegisters.GhcAe, bed.R(AhciRegisters.Ghc));                      // HR reads back 0 once done; IE cleared
        Assert.Equal(resets + 1, drive.Resets);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIe));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCmd) & (AhciRegisters.CmdSt | AhciRegisters.CmdFre | AhciRegisters.CmdCr | AhciRegisters.CmdFr));
        Assert.Equal((uint)AhciTestBed.Clb(0), bed.PR(0, AhciRegisters.PxClb));
        Assert.Equal(0x12u, bed.PR(0, AhciRegisters.PxClbu));
        Assert.Equal((uint)AhciTestBed.Fb(0), bed.PR(0, AhciRegisters.PxFb));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIs) & ~AhciRegisters.IsPcs);
        Assert.Equal(0x133u, bed.PR(0, AhciRegisters.PxSsts));
    }

    [Fact]
    public void CommandListOverride_ClearsBusyAndDrq()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        drive.Gate.Reset();
        bed.Build(0, 0, AhciTestBed.H2D(0xE7), []);
        bed.Issue(0, 1);
        Assert.True(SpinWait.SpinUntil(() => drive.Calls == 1, 5000));
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxTfd) & AhciRegisters.TfdBsy);
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdClo);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxTfd) & (AhciRegisters.TfdBsy | AhciRegisters.TfdDrq));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCmd) & AhciRegisters.CmdClo);
        drive.Gate.Set();
    }

    [Fact]
    public void AddressRegisters_DropReservedLowBitsAndKeepUpperDwords()
    {
        using var bed = new AhciTestBed(new FakeDrive());
        bed.PW(0, AhciRegisters.PxClb, 0x1234_57FF);
        bed.PW(0, AhciRegisters.PxFb, 0x1234_57FF);
        bed.PW(0, AhciRegisters.PxFbu, 0x1);
        Assert.Equal(0x1234_5400u, bed.PR(0, AhciRegisters.PxClb));
        Assert.Equal(0x1234_5700u, bed.PR(0, AhciRegisters.PxFb));
        Assert.Equal(1u, bed.PR(0, AhciRegisters.PxFbu));
    }

    [Fact]
    public void UnimplementedRegistersAndAbsentPorts_ReadZeroAndIgnoreWrites()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        foreach (int offset in new[] { AhciRegisters.CccCtl, AhciRegisters.CccPorts, AhciRegisters.EmLoc, AhciRegisters.EmCtl, AhciRegisters.Cap2, AhciRegisters.Bohc, 0x2C, 0xA0, 0xFC })
        {
            bed.W(offset, 0xFFFF_FFFF);
            Assert.Equal(0u, bed.R(offset));
        }
        foreach (int reg in new[] { 0x1C, 0x40, 0x44, 0x70, 0x7C })
        {
            bed.PW(0, reg, 0xFFFF_FFFF);
            Assert.Equal(0u, bed.PR(0, reg));
        }
        for (int reg = 0; reg < AhciRegisters.PortSize; reg += 4)
        {
            bed.PW(5, reg, 0xFFFF_FFFF);
            Assert.Equal(0u, bed.PR(5, reg));
        }
        // Narrow and misaligned accesses do nothing harmful.
        var abar = bed.Hba.Bars[0].Handler;
        abar.Write(AhciRegisters.PortBase + AhciRegisters.PxCi, [0xFF]);
        abar.Write(0x1FFF, [1, 2, 3, 4]);
        abar.Read(0x1FFE, new byte[4]);
        abar.Read(0x5000, new byte[4]);
        Assert.Equal(0, drive.Calls);
        Assert.Equal(0x133u, bed.PR(0, AhciRegisters.PxSsts) & 0xFFF);
        Assert.Equal(0x33u, bed.R(AhciRegisters.PortBase + AhciRegisters.PxSsts) & 0xFF);
        Span<byte> one = stackalloc byte[1];
        abar.Read(AhciRegisters.PortBase + AhciRegisters.PxSsts + 1, one);
        Assert.Equal(1, one[0]);                                        // byte reads see the register's bytes
    }
}
