using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>
/// How split/sparse images turn a request into system calls, counted through <see cref="RecordingFileSystem"/>:
/// one vectored call per run of sectors stored one after the other in one segment, none for never-written sectors,
/// new sectors given consecutive slots, and one LUT write per request, after the data it points at is synced.
/// </summary>
public sealed class SparseRunTests : IDisposable
{
    private const string Image = "/images/runs.img";
    private const int Ss = 512;
    private static readonly string Lut = SplitSparseImage.LutPath(Image);
    private static readonly string Seg0 = Image + ".0000", Seg1 = Image + ".0001";
    // 64 sectors in two segments of 32.
    private static readonly SplitImageLayout Layout = new(Size: 64 * Ss, SplitSize: 32 * Ss, Sparse: true, SectorSize: Ss);

    private readonly RecordingFileSystem _files = new(tearSize: Ss);
    private readonly SplitSparseImage _image;

    public SparseRunTests() => _image = SplitSparseImage.Open(Image, Layout, readOnly: false, _files);

    public void Dispose() => _image.Dispose();

    /// <summary>A scatter list over one pinned array, cut at the given lengths (not sector multiples: guests' buffers
    /// need not be).</summary>
    private sealed class Scatter
    {
        public byte[] Bytes { get; }
        public IoBuffer[] List { get; }

        public Scatter(params int[] lengths)
        {
            Bytes = GC.AllocateArray<byte>(lengths.Sum(), pinned: true);
            List = new IoBuffer[lengths.Length];
            int at = 0;
            for (int i = 0; i < lengths.Length; i++)
            {
                List[i] = new IoBuffer(Marshal.UnsafeAddrOfPinnedArrayElement(Bytes, at), lengths[i]);
                at += lengths[i];
            }
        }

        public static Scatter Of(byte[] data, params int[] lengths)
        {
            var s = new Scatter(lengths);
            data.CopyTo(s.Bytes, 0);
            return s;
        }
    }

    /// <summary>Sector contents that say which sector and write they belong to; <paramref name="zero"/> sectors are all zero.</summary>
    private static byte[] Data(int sectors, int seed, params int[] zero)
    {
        var data = new byte[sectors * Ss];
        for (int s = 0; s < sectors; s++)
            if (!zero.Contains(s)) new Random(seed * 1000 + s).NextBytes(data.AsSpan(s * Ss, Ss));
        return data;
    }

    private static uint[] LutEntries(FileOp lutWrite)
    {
        var entries = new uint[lutWrite.Data!.Length / 4];
        for (int i = 0; i < entries.Length; i++) entries[i] = BinaryPrimitives.ReadUInt32LittleEndian(lutWrite.Data.AsSpan(i * 4));
        return entries;
    }

    [Fact]
    public void Read_OfThreeStoredTwoUnwrittenThreeStoredSectors_IsTwoVectoredReads_AndZeroesTheGapWithoutIo()
    {
        var a = Data(3, 1);
        var b = Data(3, 2);
        _image.Write(0, a);                 // sectors 0-2: slots 0-2
        _image.Write(5 * Ss, b);            // sectors 5-7: slots 3-5
        _files.Reads.Clear();
        // Buffer boundaries fall inside sectors, and the gap's buffer holds old bytes that must become zeroes.
        var scatter = new Scatter(700, 1300, 600, 1496);
        scatter.Bytes.AsSpan().Fill(0xAA);
        _image.ReadVectored(0, scatter.List);
        Assert.Equal([(Seg0, 0L, 3L * Ss), (Seg0, 3L * Ss, 3L * Ss)], _files.Reads);
        Assert.Equal(a, scatter.Bytes[..(3 * Ss)]);
        Assert.All(scatter.Bytes[(3 * Ss)..(5 * Ss)], x => Assert.Equal(0, x));
        Assert.Equal(b, scatter.Bytes[(5 * Ss)..]);
    }

    [Fact]
    public void Read_OfNeverWrittenSectors_DoesNoIo()
    {
        _files.Reads.Clear();
        var back = Enumerable.Repeat((byte)0x55, 40 * Ss).ToArray();    // across both segments
        _image.Read(10 * Ss, back);
        Assert.Empty(_files.Reads);
        Assert.All(back, x => Assert.Equal(0, x));
    }

    [Fact]
    public void Write_OfNewSectors_IsOneDataWrite_ThenASync_ThenOneLutWrite_AndReadsBackInOneCall()
    {
        int start = _files.Log.Count;
        var data = Data(8, 3);
        _image.WriteVectored(4 * Ss, Scatter.Of(data, 1000, 24, 3072).List);
        var ops = _files.Log.Skip(start).ToList();
        Assert.Equal([FileOpKind.Write, FileOpKind.DataSync, FileOpKind.Write], ops.Select(o => o.Kind));
        Assert.Equal((Seg0, 0L), (ops[0].Path, ops[0].Offset));
        Assert.Equal(data, ops[0].Data);
        Assert.Equal(Seg0, ops[1].Path);
        Assert.Equal((Lut, 4L * 4), (ops[2].Path, ops[2].Offset));
        Assert.Equal([0u, 1, 2, 3, 4, 5, 6, 7], LutEntries(ops[2]));
        _files.Reads.Clear();
        var back = new byte[8 * Ss];
        _image.Read(4 * Ss, back);
        Assert.Equal(data, back);
        Assert.Single(_files.Reads);
    }

    [Fact]
    public void Write_WithAllZeroNewSectorsInside_StoresNothingForThem_AndStillWritesTheLutOnce()
    {
        int start = _files.Log.Count;
        var data = Data(8, 4, zero: [3, 4]);
        _image.Write(0, data);
        var segmentWrites = _files.WritesTo(Seg0).Where(o => _files.Log.IndexOf(o) >= start).ToList();
        Assert.Equal([(0L, 3 * Ss), (3L * Ss, 3 * Ss)], segmentWrites.Select(o => (o.Offset, o.Data!.Length)));
        var lutWrite = Assert.Single(_files.WritesTo(Lut), o => _files.Log.IndexOf(o) >= start);
        Assert.Equal([0u, 1, 2, SplitSparseImage.Unallocated, SplitSparseImage.Unallocated, 3, 4, 5], LutEntries(lutWrite));
        Assert.Equal(6, _image.AllocatedSectors);
        var back = new byte[8 * Ss];
        _image.Read(0, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Overwrite_OfStoredSectors_IsOneWriteInPlace_WithoutSyncOrLutWrite()
    {
        _image.Write(0, Data(8, 5));
        int start = _files.Log.Count;
        var again = Data(8, 6);
        _image.WriteVectored(0, Scatter.Of(again, 4000, 96).List);
        var op = Assert.Single(_files.Log.Skip(start));
        Assert.Equal((FileOpKind.Write, Seg0, 0L), (op.Kind, op.Path, op.Offset));
        Assert.Equal(again, op.Data);
    }

    [Fact]
    public void Write_AcrossASegmentBoundary_SyncsBothSegments_BeforeItsOneLutWrite()
    {
        int start = _files.Log.Count;
        var data = Data(8, 7);
        _image.Write(28 * Ss, data);                     // sectors 28-31 in segment 0, 32-35 in segment 1
        var ops = _files.Log.Skip(start).Select(o => (o.Kind, o.Path, o.Offset)).ToList();
        Assert.Equal([(FileOpKind.Write, Seg0, 0L), (FileOpKind.Write, Seg1, 0L), (FileOpKind.DataSync, Seg0, 0L),
            (FileOpKind.DataSync, Seg1, 0L), (FileOpKind.Write, Lut, 28L * 4)], ops);
        Assert.Equal([0u, 1, 2, 3, 0, 1, 2, 3], LutEntries(_files.Log[^1]));
        var back = new byte[8 * Ss];
        _image.Read(28 * Ss, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Discard_OfManyStoredSectors_IsOneLutWrite()
    {
        _image.Write(0, Data(4, 8));
        _image.Write(10 * Ss, Data(4, 9));
        int start = _files.Log.Count;
        _image.Discard(0, 20 * Ss);
        var op = Assert.Single(_files.Log.Skip(start));
        Assert.Equal((FileOpKind.Write, Lut, 0L), (op.Kind, op.Path, op.Offset));
        Assert.All(LutEntries(op), e => Assert.Equal(SplitSparseImage.Unallocated, e));
        Assert.Equal(14 * 4, op.Data!.Length);     // sectors 0..13: the first stored to the last
        Assert.Equal(0, _image.AllocatedSectors);
    }

    [Fact]
    public void PowerCut_InsideAMultiSectorAllocation_LeavesEverySectorOldOrNew_AndNoEntryBeforeItsData()
    {
        var old = Data(4, 10);
        _image.Write(30 * Ss, old);          // sectors 30-33, across the segment boundary
        _image.Flush();
        int start = _files.Log.Count;
        var data = Data(12, 11, zero: [1]);
        _image.Write(26 * Ss, data);         // sectors 26-37: new ones around the four stored ones, sector 27 all zero (not stored)
        _image.Dispose();
        int lutAt = _files.Log.FindIndex(start, o => o.Path == Lut);
        Assert.Equal(_files.Log.Count - 1, lutAt);
        foreach (var seg in new[] { Seg0, Seg1 })
        {
            int lastData = _files.Log.FindLastIndex(lutAt, o => o.Kind == FileOpKind.Write && o.Path == seg);
            int sync = _files.Log.FindIndex(start, o => o.Kind == FileOpKind.DataSync && o.Path == seg);
            Assert.InRange(lastData, start, sync - 1);
            Assert.InRange(sync, lastData + 1, lutAt - 1);
        }
        var random = new Random(16);
        for (int cut = start; cut <= _files.Log.Count; cut++)
            for (int subset = 0; subset < 8; subset++)
            {
                using var after = SplitSparseImage.Open(Image, Layout, readOnly: true, new RecordingFileSystem(_files.SurvivorsOfCut(cut, random)));
                var sector = new byte[Ss];
                for (int s = 0; s < 12; s++)
                {
                    after.Read((26 + s) * Ss, sector);
                    var before = s is >= 4 and < 8 ? old.AsSpan((s - 4) * Ss, Ss) : new byte[Ss];
                    bool ok = sector.AsSpan().SequenceEqual(before) || sector.AsSpan().SequenceEqual(data.AsSpan(s * Ss, Ss));
                    Assert.True(ok, $"cut after log entry {cut}: sector {26 + s} reads neither its old nor its new data");
                }
            }
    }

    [Fact]
    public void RandomScatterLists_ReadBackWhatWasWritten_OnEveryLayout()
    {
        SplitImageLayout[] layouts =
        [
            Layout,
            new(Size: 64 * Ss, SplitSize: null, Sparse: true, SectorSize: Ss),
            new(Size: 48 * 4096, SplitSize: 5 * 4096, Sparse: true, SectorSize: 4096),
            new(Size: 64 * Ss, SplitSize: 7 * Ss, Sparse: false, SectorSize: Ss),
        ];
        foreach (var layout in layouts)
        {
            var random = new Random(2026);
            var model = new byte[layout.Size];
            using var img = SplitSparseImage.Open(Image, layout, readOnly: false, new RecordingFileSystem());
            int ss = layout.SectorSize;
            for (int step = 0; step < 300; step++)
            {
                long sectors = layout.Sectors;
                long first = random.NextInt64(sectors);
                int count = (int)Math.Min(1 + random.Next(12), sectors - first);
                var cuts = RandomCuts(random, count * ss);
                if (random.Next(3) > 0)
                {
                    var data = new byte[count * ss];
                    for (int s = 0; s < count; s++)
                        if (random.Next(4) > 0) random.NextBytes(data.AsSpan(s * ss, ss));   // some all-zero sectors
                    img.WriteVectored(first * ss, Scatter.Of(data, cuts).List);
                    data.CopyTo(model, first * ss);
                }
                else
                {
                    var scatter = new Scatter(cuts);
                    random.NextBytes(scatter.Bytes);
                    img.ReadVectored(first * ss, scatter.List);
                    Assert.True(model.AsSpan((int)(first * ss), count * ss).SequenceEqual(scatter.Bytes),
                        $"{layout}: step {step}, read of {count} sectors at {first} differs from what was written");
                }
            }
        }
    }

    /// <summary>Lengths of 1 to 5 buffers adding up to <paramref name="total"/>, cut anywhere.</summary>
    private static int[] RandomCuts(Random random, int total)
    {
        var points = Enumerable.Range(0, random.Next(5)).Select(_ => random.Next(1, total)).Append(0).Append(total).Distinct().Order().ToArray();
        return points.Zip(points.Skip(1), (a, b) => b - a).ToArray();
    }
}
