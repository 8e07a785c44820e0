using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Storage;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>The ATA disk's command set (ACS-3) called directly, with data buffers in pinned host memory.</summary>
public sealed unsafe class AtaDiskTests
{
    private static IoBuffer[] Buffers(byte[] pinned, params int[] lengths)
    {
        var list = new IoBuffer[lengths.Length];
        fixed (byte* p = pinned)
        {
            int at = 0;
            for (int i = 0; i < lengths.Length; i++) { list[i] = new IoBuffer((nint)(p + at), lengths[i]); at += lengths[i]; }
        }
        return list;
    }

    private static byte[] Pinned(int length) => GC.AllocateArray<byte>(length, pinned: true);

    private static AtaCompletion Run(AtaDisk disk, AtaCommand c, byte[] buffer, params int[] lengths) =>
        disk.Execute(c, [], Buffers(buffer, lengths.Length == 0 ? [buffer.Length] : lengths));

    private static ushort Word(byte[] id, int word) => BinaryPrimitives.ReadUInt16LittleEndian(id.AsSpan(2 * word));

    private static string AtaString(byte[] id, int word, int words)
    {
        var s = new StringBuilder();
        for (int i = 0; i < words; i++) s.Append((char)id[2 * (word + i) + 1]).Append((char)id[2 * (word + i)]);
        return s.ToString();
    }

    private static byte[] Identify(AtaDisk disk)
    {
        var id = Pinned(512);
        Assert.Equal(AtaCompletion.Ok(512), Run(disk, new AtaCommand(AtaDisk.IdentifyDevice, 0, 0, 0, 0, 0), id));
        return id;
    }

    private sealed class NamedBackend(string path, long size, int sector = 512) : IBlockBackend
    {
        public string Path => path;
        public long Size => size;
        public int LogicalSectorSize => sector;
        public bool ReadOnly => false;
        public void Read(long offset, Span<byte> buffer) { }
        public void Write(long offset, ReadOnlySpan<byte> data) { }
        public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers) { }
        public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers) { }
        public void Flush() { }
        public void WriteZeroes(long offset, long length) { }
        public void Discard(long offset, long length) { }
        public void Dispose() { }
    }

    [Fact]
    public void Identify_ReportsCapacityLba48NcqTrimAndAValidChecksum()
    {
        const long sectors = 0x1_2345_6789;                             // beyond 28 bits
        using var disk = new AtaDisk("d", new FakeBlockBackend(sectors * 512), 512, 512);
        var id = Identify(disk);
        Assert.Equal(0x0FFF_FFFFu, BinaryPrimitives.ReadUInt32LittleEndian(id.AsSpan(120)));   // words 60-61 saturate
        Assert.Equal((ulong)sectors, BinaryPrimitives.ReadUInt64LittleEndian(id.AsSpan(200))); // words 100-103
        Assert.NotEqual(0, Word(id, 83) & 0x0400);                      // 48-bit supported
        Assert.NotEqual(0, Word(id, 86) & 0x0400);                      // and enabled
        Assert.NotEqual(0, Word(id, 49) & 0x0300);                      // LBA and DMA
        Assert.Equal(0x407F, Word(id, 88));                             // UDMA 0-6, UDMA6 selected
        Assert.Equal(31, Word(id, 75));                                 // queue depth 32
        Assert.NotEqual(0, Word(id, 76) & 0x0100);                      // NCQ
        Assert.Equal(1, Word(id, 169) & 1);                             // TRIM
        Assert.Equal(AtaDisk.MaxDsmBlocks, Word(id, 105));
        Assert.NotEqual(0, Word(id, 83) & 0x2000);                      // FLUSH CACHE EXT
        Assert.NotEqual(0, Word(id, 85) & 0x0020);                      // write cache enabled
        Assert.NotEqual(0, Word(id, 84) & 0x0020);                      // general purpose logging
        Assert.Equal("XHYVE SATA DISK".PadRight(40), AtaString(id, 27, 20));
        Assert.Equal(AtaDisk.SerialFor("fake.img"), AtaString(id, 10, 10));
        Assert.Equal("1.0".PadRight(8), AtaString(id, 23, 4));
        Assert.Equal(0xA5, id[510]);
        Assert.Equal(0, id.Aggregate(0, (s, b) => (s + b) & 0xFF));
    }

    [Theory]
    [InlineData(512, 512, 0x4000, 0)]
    [InlineData(512, 4096, 0x6003, 0)]
    [InlineData(4096, 4096, 0x5000, 2048)]
    [InlineData(4096, 16384, 0x7002, 2048)]
    [InlineData(2048, 2048, 0x5000, 1024)]
    [InlineData(65536, 65536, 0x5000, 32768)]
    [InlineData(512, 65536, 0x6007, 0)]
    public void Identify_ReportsLogicalAndPhysicalSectorSizes(int logical, int physical, int word106, int logicalWords)
    {
        using var disk = new AtaDisk("d", new FakeBlockBackend(64L << 20), logical, physical);
        var id = Identify(disk);
        Assert.Equal(word106, Word(id, 106));
        Assert.Equal(logicalWords, Word(id, 117) | (Word(id, 118) << 16));
        Assert.Equal((ulong)((64L << 20) / logical), BinaryPrimitives.ReadUInt64LittleEndian(id.AsSpan(200)));
    }

    [Fact]
    public void Serial_IsTwentyCharactersStablePerPathAndDifferentAcrossPaths()
    {
        using var a = new AtaDisk("a", new NamedBackend("/vm/a.img", 1 << 20), 512, 512);
        using var a2 = new AtaDisk("a2", new NamedBackend("/vm/a.img", 2 << 20), 512, 512);
        using var b = new AtaDisk("b", new NamedBackend("/vm/b.img", 1 << 20), 512, 512);
        string sa = AtaString(Identify(a), 10, 10), sa2 = AtaString(Identify(a2), 10, 10), sb = AtaString(Identify(b), 10, 10);
        Assert.Equal(20, sa.Trim().Length);
        Assert.Equal(sa, sa2);
        Assert.NotEqual(sa, sb);
        Assert.Equal(AtaDisk.SerialFor("/vm/a.img"), sa);
    }

    [Fact]
    public void Constructor_RefusesBadSectorSizesAndPartialSectorImages()
    {
        Assert.Throws<ArgumentException>(() => new AtaDisk("d", new FakeBlockBackend(1 << 20), 1000, 1000));
        Assert.Throws<ArgumentException>(() => new AtaDisk("d", new FakeBlockBackend(1 << 20), 4096, 512));
        Assert.Throws<ArgumentException>(() => new AtaDisk("d", new FakeBlockBackend(1 << 20), 4096, 6144));
        var e = Assert.Throws<StorageException>(() => new AtaDisk("d", new NamedBackend("/vm/odd.img", (1 << 20) + 100), 512, 512));
        Assert.Contains("/vm/odd.img", e.Message);
    }

    [Theory]
    [InlineData(AtaDisk.ReadDmaExt, 2047, 1, true)]
    [InlineData(AtaDisk.ReadDmaExt, 2047, 2, false)]
    [InlineData(AtaDisk.ReadDmaExt, 2048, 1, false)]
    [InlineData(AtaDisk.ReadDmaExt, 0xFFFF_FFFF_FFFF, 1, false)]
    [InlineData(AtaDisk.WriteDmaExt, 2040, 9, false)]
    [InlineData(AtaDisk.ReadVerifyExt, 2000, 49, false)]
    public void LbaAndCountOutOfRange_EndWithIdnfAndTouchNothing(byte command, ulong lba, ushort count, bool ok)
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(count * 512);
        var c = Run(disk, new AtaCommand(command, 0, lba, count, 0x40, 0), buffer);
        if (ok) { Assert.False(c.IsError); return; }
        Assert.Equal(AtaCompletion.Failed(AtaCompletion.ErrorIdNotFound), c);
        Assert.Equal(0, backend.Reads + backend.Writes);
    }

    [Fact]
    public void CountZero_Means256For28BitAnd65536For48BitCommands()
    {
        var backend = new FakeBlockBackend(64L << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(65536 * 512);
        Assert.False(Run(disk, new AtaCommand(AtaDisk.ReadDma, 0, 0, 0, 0x40, 0), buffer).IsError);
        Assert.Equal(256 * 512, backend.LastLength);
        Assert.False(Run(disk, new AtaCommand(AtaDisk.ReadDmaExt, 0, 0, 0, 0x40, 0), buffer).IsError);
        Assert.Equal(65536 * 512, backend.LastLength);
        Assert.False(Run(disk, new AtaCommand(AtaDisk.ReadFpdmaQueued, 0, 0, 0, 0x40, 0), buffer).IsError);
        Assert.Equal(65536 * 512, backend.LastLength);
    }

    [Fact]
    public void Lba28_TakesBits27To24FromTheDeviceRegister()
    {
        var backend = new FakeBlockBackend(1L << 40);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(512);
        // The FIS's LBA (31:24) byte is not part of a 28-bit address; DEVICE 3:0 is.
        Assert.False(Run(disk, new AtaCommand(AtaDisk.ReadDma, 0, 0xFF12_3456, 1, 0x4A, 0), buffer).IsError);
        Assert.Equal(0x0A12_3456L * 512, backend.LastOffset);
    }

    [Fact]
    public void ReadAndWrite_UseTheLogicalSectorSizeAndOnlyThePrdtPrefixTheCommandMoves()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 4096, 4096);
        var buffer = Pinned(3 * 4096);
        new Random(5).NextBytes(buffer);
        var c = Run(disk, new AtaCommand(AtaDisk.WriteDmaExt, 0, 3, 2, 0x40, 0), buffer, 1000, 7192, 4096);
        Assert.Equal(AtaCompletion.Ok(8192), c);
        Assert.Equal(3 * 4096, backend.LastOffset);
        Assert.Equal(8192, backend.LastLength);
        var back = new byte[8192];
        backend.Read(3 * 4096, back);
        Assert.Equal(buffer[..8192], back);
    }

    [Fact]
    public void ShortPrdt_AbortsWithoutIo()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.ReadDmaExt, 0, 0, 2, 0x40, 0), Pinned(1000)));
        Assert.Equal(AtaCompletion.Abort(), disk.Execute(new AtaCommand(AtaDisk.IdentifyDevice, 0, 0, 0, 0, 0), [], []));
        Assert.Equal(0, backend.Reads);
    }

    [Fact]
    public void ReadOnlyDisk_AbortsWritesAndTrimButReads()
    {
        var backend = new FakeBlockBackend(1 << 20, readOnly: true);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(512);
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.WriteDmaExt, 0, 0, 1, 0x40, 0), buffer));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.WriteFpdmaQueued, 1, 0, 0, 0x40, 0), buffer));
        BinaryPrimitives.WriteUInt64LittleEndian(buffer, 1UL << 48);
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.DataSetManagement, 1, 0, 1, 0x40, 0), buffer));
        Assert.Equal(0, backend.Writes + backend.Discards);
        Assert.False(Run(disk, new AtaCommand(AtaDisk.ReadDmaExt, 0, 0, 1, 0x40, 0), buffer).IsError);
    }

    [Fact]
    public void Trim_DiscardsEveryRangeAndSkipsEmptyEntries()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var list = Pinned(1024);
        BinaryPrimitives.WriteUInt64LittleEndian(list.AsSpan(0), 10 | (8UL << 48));
        BinaryPrimitives.WriteUInt64LittleEndian(list.AsSpan(8), 0);                 // unused
        BinaryPrimitives.WriteUInt64LittleEndian(list.AsSpan(512), 2000 | (48UL << 48));   // in the second block, ends at the last sector
        Assert.Equal(AtaCompletion.Ok(1024), Run(disk, new AtaCommand(AtaDisk.DataSetManagement, 1, 0, 2, 0x40, 0), list, 300, 724));
        Assert.Equal(2, backend.Discards);
        Assert.Equal(2000 * 512, backend.LastOffset);
        Assert.Equal(48 * 512, backend.LastLength);
    }

    [Theory]
    [InlineData(2041UL, 8UL, 1, 1)]   // past the end
    [InlineData(0UL, 1UL, 0, 1)]      // TRIM bit clear
    [InlineData(0UL, 1UL, 1, 0)]      // no blocks
    [InlineData(0UL, 1UL, 1, 9)]      // more blocks than IDENTIFY allows
    public void BadTrim_AbortsAndDiscardsNothing(ulong lba, ulong length, ushort features, ushort blocks)
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var list = Pinned(9 * 512);
        BinaryPrimitives.WriteUInt64LittleEndian(list.AsSpan(0), 1 | (1UL << 48));   // a good range first
        BinaryPrimitives.WriteUInt64LittleEndian(list.AsSpan(8), lba | (length << 48));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.DataSetManagement, features, 0, blocks, 0x40, 0), list));
        Assert.Equal(0, backend.Discards);
    }

    [Fact]
    public void Fua_AndWriteCacheOff_FlushAfterTheWrite()
    {
        var backend = new FakeBlockBackend(1 << 20);
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(512);
        Run(disk, new AtaCommand(AtaDisk.WriteFpdmaQueued, 1, 0, 0, 0x40, 0), buffer);
        Assert.Equal(0, backend.Flushes);
        Run(disk, new AtaCommand(AtaDisk.WriteFpdmaQueued, 1, 0, 0, 0xC0, 0), buffer);
        Assert.Equal(1, backend.Flushes);
        Assert.Equal(AtaCompletion.Ok(), disk.Execute(new AtaCommand(AtaDisk.SetFeatures, 0x82, 0, 0, 0, 0), [], []));
        Assert.Equal(0, Word(Identify(disk), 85) & 0x20);
        Run(disk, new AtaCommand(AtaDisk.WriteDmaExt, 0, 0, 1, 0x40, 0), buffer);
        Assert.Equal(2, backend.Flushes);
        disk.Reset();
        Assert.NotEqual(0, Word(Identify(disk), 85) & 0x20);          // back to the power-on default
    }

    [Theory]
    [InlineData(0x03, 0x45, true)]    // UDMA5
    [InlineData(0x03, 0x0C, true)]    // PIO4
    [InlineData(0x03, 0x47, false)]   // no UDMA7
    [InlineData(0x02, 0, true)]
    [InlineData(0xAA, 0, true)]
    [InlineData(0x55, 0, true)]
    [InlineData(0x10, 2, false)]      // SATA features: none offered
    [InlineData(0x99, 0, false)]
    public void SetFeatures_AcceptsTransferModesAndCacheSettingsAndAbortsTheRest(byte feature, byte count, bool accepted)
    {
        using var disk = new AtaDisk("d", new FakeBlockBackend(1 << 20), 512, 512);
        var c = disk.Execute(new AtaCommand(AtaDisk.SetFeatures, feature, 0, count, 0, 0), [], []);
        Assert.Equal(accepted, !c.IsError);
        if (feature == 0x03 && count == 0x45) Assert.Equal(0x207F, Word(Identify(disk), 88));
    }

    [Fact]
    public void ReadLogExt_DirectoryListsTheNcqErrorLogAndBadPagesAbort()
    {
        using var disk = new AtaDisk("d", new FakeBlockBackend(1 << 20), 512, 512);
        var page = Pinned(1024);
        Assert.Equal(AtaCompletion.Ok(512), Run(disk, new AtaCommand(AtaDisk.ReadLogExt, 0, AtaDisk.LogDirectory, 1, 0, 0), page));
        Assert.Equal(1, Word(page, 0));
        Assert.Equal(1, Word(page, AtaDisk.LogNcqError));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.ReadLogExt, 0, 0x30, 1, 0, 0), page));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.ReadLogExt, 0, AtaDisk.LogNcqError | 0x100, 1, 0, 0), page));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.ReadLogExt, 0, AtaDisk.LogNcqError, 2, 0, 0), page));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.ReadLogExt, 0, AtaDisk.LogNcqError, 0, 0, 0), page));
        Assert.Equal(AtaCompletion.Ok(512), Run(disk, new AtaCommand(AtaDisk.ReadLogDmaExt, 0, AtaDisk.LogNcqError, 1, 0, 0), page));
        Assert.Equal(0x80, page[0]);
        Assert.Equal(0, page[..512].Aggregate(0, (s, b) => (s + b) & 0xFF));
    }

    [Fact]
    public void PowerAndMiscCommands_CompleteAndUnknownOnesAbort()
    {
        using var disk = new AtaDisk("d", new FakeBlockBackend(1 << 20), 512, 512);
        var power = disk.Execute(new AtaCommand(AtaDisk.CheckPowerMode, 0, 0, 0, 0, 0), [], []);
        Assert.False(power.IsError);
        Assert.Equal(0xFF, power.Count);
        foreach (byte c in new[] { AtaDisk.IdleImmediate, AtaDisk.StandbyImmediate, AtaDisk.FlushCache })
            Assert.Equal(AtaCompletion.Ok(), disk.Execute(new AtaCommand(c, 0, 0, 0, 0, 0), [], []));
        foreach (byte c in new byte[] { 0x00, 0x08, 0xA0, 0xA1, 0xB0, 0xF1, 0xFF })
            Assert.Equal(AtaCompletion.Abort(), disk.Execute(new AtaCommand(c, 0, 0, 0, 0, 0), [], []));
    }

    [Fact]
    public void BackendFailure_IsAMediaErrorNotAnException()
    {
        var backend = new FakeBlockBackend(1 << 20) { Throw = new IOException("EIO") };
        using var disk = new AtaDisk("d", backend, 512, 512);
        var buffer = Pinned(512);
        Assert.Equal(AtaCompletion.Failed(AtaCompletion.ErrorUncorrectable), Run(disk, new AtaCommand(AtaDisk.ReadDmaExt, 0, 0, 1, 0x40, 0), buffer));
        Assert.Equal(AtaCompletion.Abort(), Run(disk, new AtaCommand(AtaDisk.WriteDmaExt, 0, 0, 1, 0x40, 0), buffer));
        Assert.True(Run(disk, new AtaCommand(AtaDisk.FlushCacheExt, 0, 0, 0, 0, 0), buffer).IsError);
    }
}
