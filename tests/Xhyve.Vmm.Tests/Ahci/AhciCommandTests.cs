using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>Command list, command FIS and PRDT processing (AHCI §5), with an ATA disk or a fake drive behind the port,
/// including hostile command tables that must end in a task-file error without reaching the drive.</summary>
public sealed class AhciCommandTests
{
    private const ulong Data = AhciTestBed.DataBase;

    private static byte[] Pattern(int length, int seed) => Enumerable.Range(0, length).Select(i => (byte)(i * 7 + seed)).ToArray();

    [Fact]
    public void DmaWriteThenRead_RoundTripsThroughAScatteredPrdt()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        var data = Pattern(4096, 3);
        bed.Write(Data, data[..1024]);
        bed.Write(Data + 0x10000, data[1024..3072]);
        bed.Write(Data + 0x20000, data[3072..]);
        Assert.True(bed.Run(0, 2, AhciTestBed.H2D(AtaDisk.WriteDmaExt, lba: 10, count: 8),
            [(Data, 1024), (Data + 0x10000, 2048), (Data + 0x20000, 1024)], write: true));
        Assert.Equal(4096u, bed.Prdbc(0, 2));
        var stored = new byte[4096];
        backend.Read(10 * 512, stored);
        Assert.Equal(data, stored);

        Assert.True(bed.Run(0, 5, AhciTestBed.H2D(AtaDisk.ReadDma, lba: 10, count: 8), [(Data + 0x40000, 4096)]));
        Assert.Equal(data, bed.Read(Data + 0x40000, 4096));
        Assert.Equal(4096u, bed.Prdbc(0, 5));
        var d2h = bed.ReceivedFis(0, AhciRegisters.RxRfis, 20);
        Assert.Equal(AhciRegisters.FisRegD2H, d2h[0]);
        Assert.Equal(0x40, d2h[1] & 0x40);
        Assert.Equal(0x40, d2h[2]);
        Assert.Equal(0, d2h[3]);
        Assert.Equal(0x40u, bed.PR(0, AhciRegisters.PxTfd));
        Assert.Equal(AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCi));
    }

    [Fact]
    public void Command_GetsTheDecodedRegisterFisAndAPrdtLongerThanTheTransfer()
    {
        var drive = new FakeDrive { Fill = 0x5A };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0x25, lba: 0x0000_BEEF_CAFE_F00D & 0xFFFF_FFFF_FFFF, count: 0x1234, features: 0xABCD, device: 0x4E, control: 0x08),
            [(Data, 512), (Data + 4096, 8192)]));
        Assert.True(drive.Commands.TryDequeue(out var c));
        Assert.Equal(new AtaCommand(0x25, 0xABCD, 0xBEEF_CAFE_F00D, 0x1234, 0x4E, 0x08), c);
        Assert.Equal(2, drive.LastEntries);
        Assert.Equal(512 + 8192, drive.LastDataLength);
        Assert.Empty(drive.LastPacket);                                 // no packet for an ATA drive
        Assert.Equal(512u + 8192, bed.Prdbc(0, 0));
    }

    [Fact]
    public void AtapiCommand_GetsTheCommandTablesPacket()
    {
        var drive = new FakeDrive(atapi: true) { Fill = 1 };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        var packet = Enumerable.Range(0x40, 16).Select(i => (byte)i).ToArray();
        bed.Build(0, 0, AhciTestBed.H2D(0xA0, features: 0), [(Data, 36)], packet: packet);
        bed.Issue(0, 1);
        Assert.True(bed.WaitDone(0, 1));
        Assert.Equal(packet, drive.LastPacket);
        // PIO data-in over PACKET: a PIO Setup FIS with the ending status, then the D2H FIS.
        var pss = bed.ReceivedFis(0, AhciRegisters.RxPsfis, 20);
        Assert.Equal(AhciRegisters.FisPioSetup, pss[0]);
        Assert.Equal(0x20, pss[1] & 0x20);
        Assert.Equal(0x40, pss[15]);
        Assert.Equal(36, BinaryPrimitives.ReadUInt16LittleEndian(pss.AsSpan(16)));
        Assert.Equal(AhciRegisters.IsPss | AhciRegisters.IsDhrs, bed.PR(0, AhciRegisters.PxIs));
    }

    [Fact]
    public void FailedCommand_SetsTfesErrAndStopsThePortUntilStIsCleared()
    {
        var drive = new FakeDrive { Result = AtaCompletion.Failed(AtaCompletion.ErrorIdNotFound) };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        bed.Build(0, 0, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)]);
        bed.Build(0, 1, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)]);
        bed.Issue(0, 0b11);
        Assert.True(bed.WaitDone(0, 1));
        Thread.Sleep(50);
        Assert.Equal(1, drive.Calls);                                   // slot 1 waits for the guest's recovery
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxIs) & AhciRegisters.IsTfes);
        Assert.Equal(0x1041u, bed.PR(0, AhciRegisters.PxTfd));                   // IDNF, DRDY|ERR
        Assert.Equal(0b11u, bed.PR(0, AhciRegisters.PxCi));                      // the failed slot stays issued (§6.3)
        var d2h = bed.ReceivedFis(0, AhciRegisters.RxRfis, 4);
        Assert.Equal(new byte[] { AhciRegisters.FisRegD2H, 0x40, 0x41, 0x10 }, d2h);
        bed.PW(0, AhciRegisters.PxCi, 0b100);                                    // more commands do not start either
        Thread.Sleep(20);
        Assert.Equal(1, drive.Calls);

        drive.Result = AtaCompletion.Ok();
        bed.RestartPort(0);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCi));
        Assert.True(bed.Run(0, 1, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)]));
        Assert.Equal(2, drive.Calls);
    }

    public static TheoryData<string> HostileTables => new()
    {
        "fis type", "cfl too short", "prdt outside ram", "prdt crossing regions", "prdt odd count", "prdt odd address",
        "prdtl 65535", "table outside ram", "table wraps", "list outside ram",
    };

    [Theory]
    [MemberData(nameof(HostileTables))]
    public void HostileCommandTable_EndsWithATaskFileErrorAndNeverReachesTheDrive(string kind)
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        var fis = AhciTestBed.H2D(0x25, count: 1);
        (ulong, uint)[] prdt = [(Data, 512)];
        switch (kind)
        {
            case "fis type": bed.Build(0, 3, AhciTestBed.H2D(0x25, count: 1, type: 0x34), prdt); break;
            case "cfl too short": bed.Build(0, 3, fis, prdt, cfl: 2); break;
            case "prdt outside ram": bed.Build(0, 3, fis, [(Data, 512), (AhciTestBed.RamSize - 256, 512)]); break;
            case "prdt crossing regions": bed.Build(0, 3, fis, [(AhciTestBed.RegionSplit - 256, 512)]); break;
            case "prdt odd count": bed.Build(0, 3, fis, [(Data, 511)]); break;
            case "prdt odd address": bed.Build(0, 3, fis, [(Data + 1, 512)]); break;
            case "prdtl 65535": bed.Build(0, 3, fis, prdt, prdtl: 65535); break;
            case "table outside ram": bed.Build(0, 3, fis, prdt, ctba: 0x1_0000_0000); break;
            case "table wraps": bed.Build(0, 3, fis, prdt, ctba: 0xFFFF_FFFF_FFFF_FF80); break;
            case "list outside ram":
                bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
                bed.PW(0, AhciRegisters.PxClb, 0xFFFF_FC00);
                bed.PW(0, AhciRegisters.PxClbu, 0xFFFF_FFFF);
                bed.PW(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
                break;
        }
        bed.Issue(0, 1 << 3);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000), "no task-file error");
        Assert.Equal(0, drive.Calls);
        Assert.Equal(0x0441u, bed.PR(0, AhciRegisters.PxTfd));                   // ABRT, DRDY|ERR
        Assert.Equal(3u, (bed.PR(0, AhciRegisters.PxCmd) >> 8) & 0x1F);          // CCS names the failed slot
        Assert.Equal(0x41, bed.ReceivedFis(0, AhciRegisters.RxRfis, 3)[2]);
        Assert.Equal(1, bed.Hba.Counters.Single(c => c.Key == "errors").Value);
        bed.RestartPort(0);
        bed.PW(0, AhciRegisters.PxClb, (uint)AhciTestBed.Clb(0));
        bed.PW(0, AhciRegisters.PxClbu, 0);
        Assert.True(bed.Run(0, 0, fis, prdt));                          // the port works again after recovery
    }

    [Fact]
    public void LongPrdt_UpToTheBoundReachesTheDriveWholeAndOneMoreEntryIsRefused()
    {
        var drive = new FakeDrive { Fill = 0x3C };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        // More entries than a slot starts with (its buffer list grows once), each a maximal 4 MiB or a small piece.
        var prdt = Enumerable.Range(0, 300).Select(i => (Data + (ulong)i * 16, (uint)16)).Append((0x40_0000UL, 4u << 20)).ToArray();
        Assert.True(bed.Run(0, 4, AhciTestBed.H2D(0x25, count: 1), prdt));
        Assert.Equal(301, drive.LastEntries);
        Assert.Equal(300 * 16 + (4 << 20), drive.LastDataLength);
        Assert.Equal((uint)(300 * 16 + (4 << 20)), bed.Prdbc(0, 4));
        Assert.Equal(0x3C, bed.Read(0x40_0000 + (4 << 20) - 1, 1)[0]);

        bed.Build(0, 5, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)], prdtl: AhciController.MaxPrdtEntries + 1);
        bed.Issue(0, 1 << 5);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000));
        Assert.Equal(1, drive.Calls);
    }

    [Fact]
    public void PrdtlZero_GivesTheDriveAnEmptyListSoANonDataCommandWorksAndADataCommandFails()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.FlushCacheExt), []));
        Assert.Equal(1, backend.Flushes);
        Assert.False(bed.Run(0, 1, AhciTestBed.H2D(AtaDisk.ReadDmaExt, count: 1), []));
        Assert.Equal(0, backend.Reads);
    }

    [Fact]
    public void IdentifyDevice_IsPioDataInWithAPioSetupFis()
    {
        using var bed = new AhciTestBed(new AtaDisk("disk", new FakeBlockBackend(1 << 20), 512, 512));
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.IdentifyDevice, device: 0), [(Data, 512)]));
        var id = bed.Read(Data, 512);
        Assert.Equal(2048u, BinaryPrimitives.ReadUInt32LittleEndian(id.AsSpan(120)));   // words 60-61: 1 MiB
        var pss = bed.ReceivedFis(0, AhciRegisters.RxPsfis, 20);
        Assert.Equal(AhciRegisters.FisPioSetup, pss[0]);
        Assert.Equal(0x40, pss[15] & 0x41);
        Assert.Equal(512u, bed.Prdbc(0, 0));
    }

    [Fact]
    public void SoftReset_ControlFisesResetTheDriveAndCompleteWithoutACommand()
    {
        var drive = new FakeDrive(atapi: true);
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        int resets = drive.Resets;
        bed.Build(0, 0, AhciTestBed.H2D(0, c: false, control: 0x04), []);
        bed.Issue(0, 1);
        Assert.True(bed.WaitDone(0, 1));
        Assert.Equal(resets, drive.Resets);
        bed.Build(0, 1, AhciTestBed.H2D(0, c: false, control: 0x00), []);
        bed.Issue(0, 2);
        Assert.True(bed.WaitDone(0, 2));
        Assert.Equal(resets + 1, drive.Resets);
        Assert.Equal(0, drive.Calls);
        Assert.Equal(0xEB14_0101u, bed.PR(0, AhciRegisters.PxSig));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxTfd) & AhciRegisters.TfdBsy);
        Assert.Equal(0x14, bed.ReceivedFis(0, AhciRegisters.RxRfis, 6)[5]);
    }

    [Fact]
    public void DriveException_EndsTheCommandWithAbortAndTheEngineGoesOn()
    {
        var drive = new FakeDrive { Throw = new InvalidOperationException("drive bug") };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        Assert.False(bed.Run(0, 0, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)]));
        Assert.Equal(0x0441u, bed.PR(0, AhciRegisters.PxTfd));
        drive.Throw = null;
        bed.RestartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(0x25, count: 1), [(Data, 512)]));
    }

    [Fact]
    public void Counters_CountReadsWritesFlushesTrimsErrorsAndBytes()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.WriteDmaExt, count: 2), [(Data, 1024)], write: true));
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.ReadDmaExt, count: 4), [(Data, 2048)]));
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.ReadFpdmaQueued, count: 0, features: 1), [(Data, 512)], queued: true));
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.FlushCache), []));
        bed.Write(Data, new byte[512]);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.DataSetManagement, count: 1, features: 1), [(Data, 512)], write: true));
        Assert.False(bed.Run(0, 0, AhciTestBed.H2D(0x00), []));
        var c = bed.Hba.Counters.ToDictionary(k => k.Key, k => k.Value);
        Assert.Equal(["reads", "writes", "flushes", "trims", "errors", "interrupts", "read_bytes", "written_bytes"], bed.Hba.Counters.Select(k => k.Key));
        Assert.Equal(2, c["reads"]);
        Assert.Equal(1, c["writes"]);
        Assert.Equal(1, c["flushes"]);
        Assert.Equal(1, c["trims"]);
        Assert.Equal(1, c["errors"]);
        Assert.Equal(2048 + 512, c["read_bytes"]);
        Assert.Equal(1024, c["written_bytes"]);
        Assert.True(c["interrupts"] >= 1);
    }

    [Fact]
    public void Dispose_DisposesTheDrives()
    {
        var a = new FakeDrive();
        var b = new FakeDrive(atapi: true);
        var bed = new AhciTestBed(a, b);
        Assert.Equal([a, b], bed.Hba.Drives);
        bed.Dispose();
        Assert.True(a.Disposed);
        Assert.True(b.Disposed);
    }

    [Fact]
    public void Constructor_RefusesNoPortsAndMoreThan32()
    {
        using var mem = new Xhyve.Vmm.Memory.GuestMemory([new(new(0), 1 << 20)]);
        Assert.Throws<ArgumentException>(() => new AhciController("a", [], mem, new CountingMsiSink(), new RecordingInterruptLine()));
        Assert.Throws<ArgumentException>(() => new AhciController("a", Enumerable.Range(0, 33).Select(_ => (IAhciDrive)new FakeDrive()).ToArray(), mem, new CountingMsiSink(), new RecordingInterruptLine()));
    }
}
