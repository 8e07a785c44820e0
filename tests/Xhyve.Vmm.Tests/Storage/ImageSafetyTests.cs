using System.Buffers.Binary;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>Issue 11 item 4: an existing image is never recreated or changed when it is refused, damage the
/// engine would refuse is found, and files that cannot hold a disk are refused at once.</summary>
public sealed class ImageSafetyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("imgsafety").FullName;
    private string Image => Path.Combine(_dir, "hdd.img");
    private static readonly SplitImageLayout Layout = new(Size: 1 << 20, SplitSize: 256 << 10, Sparse: true, SectorSize: 4096);

    public void Dispose() => Directory.Delete(_dir, true);

    private static byte[] Pattern(int length, int seed) => Enumerable.Range(0, length).Select(i => unchecked((byte)(i * 7 + seed))).ToArray();

    /// <summary>Every file of the image with its bytes, to show a refused image was left exactly as it was.</summary>
    private Dictionary<string, byte[]> Snapshot() =>
        Directory.GetFiles(_dir).ToDictionary(f => f, File.ReadAllBytes);

    private static void AssertSame(Dictionary<string, byte[]> before, Dictionary<string, byte[]> after)
    {
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (f, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(after[f]), $"{f} changed");
    }

    private void MakeImage(SplitImageLayout layout)
    {
        using var img = SplitSparseImage.Open(Image, layout, readOnly: false);
        img.Write(0, Pattern(4096, 1));
        img.Write(300 << 10, Pattern(8192, 2));
    }

    [Theory]
    [InlineData(".0002", true)]
    [InlineData(".lut", true)]
    [InlineData(".0001", false)]
    public void MissingFileOfAnExistingImage_IsRefusedNamingIt_AndNothingIsCreated(string suffix, bool sparse)
    {
        var layout = Layout with { Sparse = sparse };
        MakeImage(layout);
        File.Delete(Image + suffix);
        var before = Snapshot();
        foreach (bool ro in new[] { false, true })
        {
            var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, layout, readOnly: ro));
            Assert.StartsWith(Image + suffix + ": missing", e.Message);
        }
        AssertSame(before, Snapshot());
    }

    [Fact]
    public void DuplicateLutEntries_AreRefused_AndTheImageIsLeftUntouched()
    {
        MakeImage(Layout);
        var lut = File.ReadAllBytes(Image + ".lut");
        // Sectors 75 and 76 live in segment 1 at indices 0 and 1: point 76 at 75's place too.
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(lut.AsSpan(75 * 4)));
        BinaryPrimitives.WriteUInt32LittleEndian(lut.AsSpan(76 * 4), 0);
        File.WriteAllBytes(Image + ".lut", lut);
        var before = Snapshot();
        foreach (bool ro in new[] { false, true })
        {
            var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: ro));
            Assert.Contains($"{Image}.lut: entry for sector 76 points to sector 0 of {Image}.0001, which another sector's entry already uses", e.Message);
        }
        AssertSame(before, Snapshot());
    }

    [Fact]
    public void RefusedImage_KeepsItsPartialTailSector()
    {
        MakeImage(Layout);
        using (var f = File.OpenWrite(Image + ".0000")) { f.Seek(0, SeekOrigin.End); f.Write(new byte[100]); }  // a torn append
        var lut = File.ReadAllBytes(Image + ".lut");
        BinaryPrimitives.WriteUInt32LittleEndian(lut.AsSpan(4), 7);      // and a LUT entry past the end of the segment
        File.WriteAllBytes(Image + ".lut", lut);
        var before = Snapshot();
        Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: false));
        AssertSame(before, Snapshot());
    }

    [Fact]
    public void RefusedNonSparseImage_IsNotGrown()
    {
        var layout = Layout with { Sparse = false };
        MakeImage(layout);
        using (var f = File.OpenWrite(Image + ".0000")) f.SetLength(4096);    // a short segment: grown when the image opens...
        File.Delete(Image + ".0003");
        Assert.True(Mkfifo(Image + ".0003"));                               // ...but not when a later one is refused
        var e = Assert.Throws<StorageException>(() => OpenWithin(() => SplitSparseImage.Open(Image, layout, readOnly: false)));
        Assert.Equal($"{Image}.0003: is a FIFO, not a regular file or block device", e.Message);
        Assert.Equal(4096, new FileInfo(Image + ".0000").Length);
    }

    [Fact]
    public void FifoAsARawDisk_IsRefusedAtOnce()
    {
        string fifo = Path.Combine(_dir, "fifo");
        Assert.True(Mkfifo(fifo));
        foreach (bool ro in new[] { true, false })
        {
            var e = Assert.Throws<StorageException>(() => OpenWithin(() => RawImage.Open(fifo, new RawImageOptions(ReadOnly: ro))));
            Assert.Equal($"{fifo}: is a FIFO, not a regular file or block device", e.Message);
            e = Assert.Throws<StorageException>(() => OpenWithin(() => DiskImages.Inspect(BlockDeviceOptions.ParseOptions(fifo, [""]))));
            Assert.Contains("is a FIFO", e.Message);
        }
    }

    [Fact]
    public void FifoAsTheLut_IsRefusedAtOnce()
    {
        MakeImage(Layout);
        File.Delete(Image + ".lut");
        Assert.True(Mkfifo(Image + ".lut"));
        var e = Assert.Throws<StorageException>(() => OpenWithin(() => SplitSparseImage.Open(Image, Layout, readOnly: true)));
        Assert.Equal($"{Image}.lut: is a FIFO, not a regular file or block device", e.Message);
    }

    [Fact]
    public void SparseLut_SpansChunks()
    {
        long n = (1L << 20) * 2 + 5;
        var lut = new SparseLut(n);
        Assert.Equal(0, lut.CountAllocated());
        foreach (long i in new[] { 0L, (1L << 20) - 1, 1L << 20, n - 1 }) lut[i] = (uint)i;
        Assert.Equal(4, lut.CountAllocated());
        Assert.Equal((uint)(1L << 20), lut[1L << 20]);
        Assert.Equal(SplitSparseImage.Unallocated, lut[(1L << 20) + 1]);
        Assert.Equal((uint)(n - 1), lut[n - 1]);
    }

    [Fact]
    public void SparseLut_RunLength_FollowsRunsAcrossChunks_AndStopsWhereTheyBreak()
    {
        const long Chunk = 1L << 20;
        var lut = new SparseLut(3 * Chunk + 7);           // chunk 2 is never allocated
        for (long i = Chunk - 2; i <= Chunk + 2; i++) lut[i] = (uint)(10 + i - (Chunk - 2));   // slots 10..14 across a chunk edge
        lut[Chunk + 3] = 16;                               // not 15: the run breaks
        Assert.Equal(5, lut.RunLength(Chunk - 2, 100));
        Assert.Equal(3, lut.RunLength(Chunk - 2, 3));      // bounded by max
        Assert.Equal(Chunk - 2, lut.RunLength(0, 2 * Chunk));
        Assert.Equal(3 * Chunk + 7 - (Chunk + 4), lut.RunLength(Chunk + 4, 3 * Chunk));   // through the unallocated chunk to the end
        lut[Chunk + 4] = 17;
        lut[Chunk + 5] = SplitSparseImage.Unallocated;
        Assert.Equal(2, lut.RunLength(Chunk + 3, 10));     // 16, 17, then a never-written sector
    }

    [Fact]
    public void SparseLut_HoldsMoreEntriesThanAnArrayCan()
    {
        // 9999 segments of 2^32-1 sectors is what the format allows; 2^34 entries is far past Array.MaxLength.
        var lut = new SparseLut(1L << 34);
        long far = (1L << 34) - 3;
        lut[far] = 42;
        lut[5] = SplitSparseImage.Unallocated;
        Assert.Equal(42u, lut[far]);
        Assert.Equal(SplitSparseImage.Unallocated, lut[far - 1]);
        Assert.Equal(1, lut.CountAllocated());
    }

    private static bool Mkfifo(string path)
    {
        using var p = System.Diagnostics.Process.Start("mkfifo", path)!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    /// <summary>Runs an open that must not block (on a FIFO it would wait for a writer forever before the fix).</summary>
    private static T OpenWithin<T>(Func<T> open)
    {
        var task = Task.Run(open);
        bool done;
        try { done = task.Wait(TimeSpan.FromSeconds(10)); }
        catch (AggregateException e) { throw e.InnerException!; }
        if (!done) throw new TimeoutException("the open blocked");
        return task.Result;
    }
}
