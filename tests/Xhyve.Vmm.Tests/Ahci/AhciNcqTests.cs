using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>Native command queuing (SATA §13.6, AHCI §5.6.4): tags accepted at once, run in parallel, completed
/// with Set Device Bits FISes; a failing tag stops the port and shows in the NCQ error log.</summary>
public sealed class AhciNcqTests
{
    private const ulong Data = AhciTestBed.DataBase;

    private static byte[] Fpdma(byte command, int tag, ulong lba, ushort sectors, bool fua = false) =>
        AhciTestBed.H2D(command, lba: lba, count: (ushort)(tag << 3), features: sectors, device: (byte)(0x40 | (fua ? 0x80 : 0)));

    [Fact]
    public void QueuedTags_AreAcceptedAtOnceAndRunInParallel()
    {
        var drive = new FakeDrive { Fill = 0x77 };
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        drive.Gate.Reset();
        for (int tag = 0; tag < 8; tag++) bed.Build(0, tag, Fpdma(0x60, tag, (ulong)tag, 1), [(Data + (ulong)tag * 512, 512)]);
        bed.Issue(0, 0xFF, queued: true);
        Assert.True(SpinWait.SpinUntil(() => drive.InFlight == 4, 5000), $"{drive.InFlight} commands in flight, not the pool's 4");
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxCi));                         // accepted: CI clear, SACT still set
        Assert.Equal(0xFFu, bed.PR(0, AhciRegisters.PxSact));
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxTfd) & AhciRegisters.TfdBsy);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxIs) & AhciRegisters.IsDhrs);           // the acceptance FIS does not interrupt
        drive.Gate.Set();
        Assert.True(bed.WaitDone(0, 0xFF));
        Assert.False(bed.Failed(0));
        Assert.Equal(8, drive.Calls);
        Assert.Equal(Enumerable.Repeat((byte)0x77, 8 * 512), bed.Read(Data, 8 * 512));
        var sdb = bed.ReceivedFis(0, AhciRegisters.RxSdbfis, 8);
        Assert.Equal(AhciRegisters.FisSetDeviceBits, sdb[0]);
        Assert.Equal(0x40, sdb[1] & 0x40);
        Assert.Equal(0, sdb[3]);
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32LittleEndian(sdb.AsSpan(4)) & 0xFF);
        Assert.Equal(AhciRegisters.IsSdbs, bed.PR(0, AhciRegisters.PxIs) & (AhciRegisters.IsSdbs | AhciRegisters.IsTfes));
    }

    [Fact]
    public void QueuedWritesAndReads_OnAnAtaDiskMoveEveryTagsData()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        for (int tag = 0; tag < 32; tag++)
        {
            bed.Write(Data + (ulong)tag * 1024, Enumerable.Repeat((byte)(tag + 1), 1024).ToArray());
            bed.Build(0, tag, Fpdma(AtaDisk.WriteFpdmaQueued, tag, (ulong)(100 + 2 * tag), 2, fua: tag == 5), [(Data + (ulong)tag * 1024, 1024)], write: true);
        }
        bed.Issue(0, 0xFFFF_FFFF, queued: true);
        Assert.True(bed.WaitDone(0, 0xFFFF_FFFF));
        Assert.False(bed.Failed(0));
        Assert.Equal(1, backend.Flushes);                               // only tag 5 asked for FUA
        for (int tag = 0; tag < 32; tag++)
            bed.Build(0, tag, Fpdma(AtaDisk.ReadFpdmaQueued, tag, (ulong)(100 + 2 * tag), 2), [(Data + 0x10_0000 + (ulong)tag * 1024, 1024)]);
        bed.Issue(0, 0xFFFF_FFFF, queued: true);
        Assert.True(bed.WaitDone(0, 0xFFFF_FFFF));
        Assert.False(bed.Failed(0));
        for (int tag = 0; tag < 32; tag++)
            Assert.Equal(Enumerable.Repeat((byte)(tag + 1), 1024), bed.Read(Data + 0x10_0000 + (ulong)tag * 1024, 1024));
    }

    [Fact]
    public void FailingTag_StopsThePortAndTheNcqErrorLogNamesIt()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        bed.Build(0, 1, Fpdma(AtaDisk.ReadFpdmaQueued, 1, 0, 1), [(Data, 512)]);
        bed.Build(0, 3, Fpdma(AtaDisk.ReadFpdmaQueued, 3, 5000, 1), [(Data + 512, 512)]);   // past the 2048-sector disk
        bed.Issue(0, 0b1010, queued: true);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000));
        Assert.Equal(0x1041u, bed.PR(0, AhciRegisters.PxTfd));                   // IDNF
        Assert.NotEqual(0u, bed.PR(0, AhciRegisters.PxSact) & 0b1000);           // the failed tag stays active
        var sdb = bed.ReceivedFis(0, AhciRegisters.RxSdbfis, 8);
        Assert.Equal(AhciRegisters.FisSetDeviceBits, sdb[0]);
        Assert.Equal(0x01, sdb[2] & 0x01);
        Assert.Equal(AtaCompletion.ErrorIdNotFound, sdb[3]);

        bed.RestartPort(0);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxSact));
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.ReadLogExt, lba: AtaDisk.LogNcqError, count: 1), [(Data + 0x1000, 512)]));
        var log = bed.Read(Data + 0x1000, 512);
        Assert.Equal(3, log[0]);                                        // the tag, NQ clear
        Assert.Equal(0x41, log[2]);
        Assert.Equal(AtaCompletion.ErrorIdNotFound, log[3]);
        Assert.Equal(5000 & 0xFF, log[4]);
        Assert.Equal(5000 >> 8, log[5]);
        Assert.Equal(0, log.Aggregate(0, (s, b) => (s + b) & 0xFF));   // checksum

        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.ReadLogExt, lba: AtaDisk.LogNcqError, count: 1), [(Data + 0x1000, 512)]));
        Assert.Equal(0x80, bed.Read(Data + 0x1000, 1)[0]);              // read once: no queued error any more
    }

    [Fact]
    public void QueuedCommandWithABadPrdt_FailsThroughTheDriveSoTheLogNamesItsTag()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var bed = new AhciTestBed(new AtaDisk("disk", backend, 512, 512));
        bed.StartPort(0);
        bed.Build(0, 6, Fpdma(AtaDisk.WriteFpdmaQueued, 6, 0, 1), [(AhciTestBed.RamSize, 512)], write: true);
        bed.Issue(0, 1 << 6, queued: true);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000));
        Assert.Equal(0, backend.Writes);
        bed.RestartPort(0);
        Assert.True(bed.Run(0, 0, AhciTestBed.H2D(AtaDisk.ReadLogExt, lba: AtaDisk.LogNcqError, count: 1), [(Data, 512)]));
        Assert.Equal(6, bed.Read(Data, 1)[0]);
    }

    [Theory]
    [InlineData(0x63)]   // NCQ NON-DATA
    [InlineData(0x64)]   // SEND FPDMA QUEUED
    [InlineData(0x65)]   // RECEIVE FPDMA QUEUED
    public void UnsupportedQueuedCommands_AbortCleanly(byte command)
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        bed.Build(0, 2, Fpdma(command, 2, 0, 1), [(Data, 512)]);
        bed.Issue(0, 1 << 2, queued: true);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000));
        Assert.Equal(0, drive.Calls);
        Assert.Equal(0x0441u, bed.PR(0, AhciRegisters.PxTfd));
        bed.RestartPort(0);
        Assert.Equal(0u, bed.PR(0, AhciRegisters.PxSact));
    }

    [Fact]
    public void TagThatIsNotItsSlot_IsRefused()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        bed.Build(0, 2, Fpdma(0x60, 9, 0, 1), [(Data, 512)]);
        bed.Issue(0, 1 << 2, queued: true);
        Assert.True(SpinWait.SpinUntil(() => bed.Failed(0), 5000));
        Assert.Equal(0, drive.Calls);
    }

    [Fact]
    public void NonQueuedCommand_WaitsForQueuedOnesToDrain()
    {
        var drive = new FakeDrive();
        using var bed = new AhciTestBed(drive);
        bed.StartPort(0);
        drive.Gate.Reset();
        bed.Build(0, 0, Fpdma(0x60, 0, 0, 1), [(Data, 512)]);
        bed.Build(0, 1, Fpdma(0x60, 1, 1, 1), [(Data + 512, 512)]);
        bed.Issue(0, 0b11, queued: true);
        Assert.True(SpinWait.SpinUntil(() => drive.Calls == 2, 5000));
        bed.Build(0, 2, AhciTestBed.H2D(AtaDisk.FlushCacheExt), []);
        bed.Issue(0, 0b100);
        Thread.Sleep(50);
        Assert.Equal(2, drive.Calls);
        Assert.Equal(0b100u, bed.PR(0, AhciRegisters.PxCi));
        drive.Gate.Set();
        Assert.True(bed.WaitDone(0, 0b111));
        Assert.Equal(3, drive.Calls);
        Assert.Equal(AtaDisk.FlushCacheExt, drive.Commands.Last().Command);
    }
}
