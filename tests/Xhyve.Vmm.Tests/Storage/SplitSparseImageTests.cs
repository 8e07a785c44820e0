using System.Buffers.Binary;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>
/// A minimal implementation of the sparse-disk format written from its description
/// (../shared/reference/sparse-disk.md), independent of the engine's, to check compatibility both ways.
/// </summary>
internal static class ReferenceSparseImage
{
    public static byte[] ReadSector(string path, long sizeBytes, long split, int ss, long sector)
    {
        var lut = File.ReadAllBytes(path + ".lut");
        uint v = BinaryPrimitives.ReadUInt32LittleEndian(lut.AsSpan((int)(sector * 4)));
        var result = new byte[ss];
        if (v == 0xFFFF_FFFF) return result;
        string segment = $"{path}.{sector * ss / split:D4}";
        using var f = File.OpenRead(segment);
        f.Position = (long)v * ss;
        f.ReadExactly(result);
        return result;
    }

    /// <summary>Writes a new image: sectors appended to their segment in the order given, LUT entries after.</summary>
    public static void Create(string path, long sizeBytes, long split, int ss, IReadOnlyDictionary<long, byte[]> sectors)
    {
        var lut = new byte[sizeBytes / ss * 4];
        lut.AsSpan().Fill(0xFF);
        var segments = new Dictionary<long, FileStream>();
        for (long i = 0; i <= sizeBytes / split; i++) segments[i] = File.Create($"{path}.{i:D4}");
        foreach (var (sector, data) in sectors)
        {
            var f = segments[sector * ss / split];
            BinaryPrimitives.WriteUInt32LittleEndian(lut.AsSpan((int)(sector * 4)), (uint)(f.Length / ss));
            f.Seek(0, SeekOrigin.End);
            f.Write(data);
        }
        foreach (var f in segments.Values) f.Dispose();
        File.WriteAllBytes(path + ".lut", lut);
    }
}

public sealed class SplitSparseImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sparse").FullName;
    private string Image => Path.Combine(_dir, "hdd.img");
    private static readonly SplitImageLayout Layout = new(Size: 1 << 20, SplitSize: 256 << 10, Sparse: true, SectorSize: 4096);

    public void Dispose() => Directory.Delete(_dir, true);

    private static byte[] Pattern(int length, int seed) => Enumerable.Range(0, length).Select(i => unchecked((byte)(i * 7 + seed))).ToArray();

    [Fact]
    public void NewImage_HasAnAllUnallocatedLut_EmptySegments_AndReadsZeroes()
    {
        using (var img = SplitSparseImage.Open(Image, Layout, readOnly: false))
        {
            var buffer = Pattern(8192, 1);
            img.Read(4096, buffer);
            Assert.All(buffer, b => Assert.Equal(0, b));
        }
        Assert.Equal(256 * 4, new FileInfo(Image + ".lut").Length);
        Assert.All(File.ReadAllBytes(Image + ".lut"), b => Assert.Equal(0xFF, b));
        for (int i = 0; i < 4; i++) Assert.Equal(0, new FileInfo($"{Image}.{i:D4}").Length);
    }

    [Fact]
    public void WritingZeroSectors_AllocatesNothing()
    {
        using var img = SplitSparseImage.Open(Image, Layout, readOnly: false);
        img.Write(0, new byte[16384]);
        Assert.Equal(0, img.AllocatedSectors);
        Assert.All(img.StoredSectors, n => Assert.Equal(0, n));
    }

    [Fact]
    public void Writes_AppendToTheirSegment_AndReadBack()
    {
        using var img = SplitSparseImage.Open(Image, Layout, readOnly: false);
        var a = Pattern(4096, 1);
        var b = Pattern(4096, 2);
        img.Write(10 * 4096, a);
        img.Write(3 * 4096, b);
        var back = new byte[4096];
        img.Read(10 * 4096, back);
        Assert.Equal(a, back);
        img.Read(3 * 4096, back);
        Assert.Equal(b, back);
        Assert.Equal(8192, new FileInfo(Image + ".0000").Length);   // two sectors, in write order
        Assert.Equal(2, img.AllocatedSectors);
    }

    [Fact]
    public void RequestAcrossASegmentBoundary_IsSplit()
    {
        long boundary = 256 << 10;
        var data = Pattern(16384, 3);
        using (var img = SplitSparseImage.Open(Image, Layout, readOnly: false))
        {
            img.Write(boundary - 8192, data);
            var back = new byte[data.Length];
            img.Read(boundary - 8192, back);
            Assert.Equal(data, back);
            Assert.Equal(new long[] { 2, 2, 0, 0 }, img.StoredSectors);
        }
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), ReferenceSparseImage.ReadSector(Image, 1 << 20, 256 << 10, 4096, boundary / 4096 - 2));
        Assert.Equal(data.AsSpan(12288, 4096).ToArray(), ReferenceSparseImage.ReadSector(Image, 1 << 20, 256 << 10, 4096, boundary / 4096 + 1));
    }

    [Fact]
    public void Reopen_ReadsWhatWasWritten_AndOverwritesInPlace()
    {
        var a = Pattern(4096, 4);
        using (var img = SplitSparseImage.Open(Image, Layout, readOnly: false))
        {
            img.Write(200 * 4096, a);
            img.Flush();
        }
        var b = Pattern(4096, 5);
        using (var img = SplitSparseImage.Open(Image, Layout, readOnly: false))
        {
            var back = new byte[4096];
            img.Read(200 * 4096, back);
            Assert.Equal(a, back);
            img.Write(200 * 4096, b);
            Assert.Equal(new long[] { 0, 0, 0, 1 }, img.StoredSectors);  // overwritten, not appended
        }
        using (var ro = SplitSparseImage.Open(Image, Layout, readOnly: true))
        {
            var back = new byte[4096];
            ro.Read(200 * 4096, back);
            Assert.Equal(b, back);
        }
    }

    [Fact]
    public void ImageWrittenByTheReferenceWriter_ReadsBackThroughTheEngine()
    {
        var sectors = new Dictionary<long, byte[]> { [0] = Pattern(4096, 6), [70] = Pattern(4096, 7), [255] = Pattern(4096, 8) };
        ReferenceSparseImage.Create(Image, 1 << 20, 256 << 10, 4096, sectors);
        using var img = SplitSparseImage.Open(Image, Layout, readOnly: false);   // the extra fifth segment is tolerated
        foreach (var (sector, data) in sectors)
        {
            var back = new byte[4096];
            img.Read(sector * 4096, back);
            Assert.Equal(data, back);
        }
        var zero = new byte[4096];
        img.Read(1 * 4096, zero);
        Assert.All(zero, x => Assert.Equal(0, x));
    }

    [Fact]
    public void LutOfTheWrongSize_IsRefusedNamingTheFile_AndLeftUntouched()
    {
        SplitSparseImage.Open(Image, Layout, readOnly: false).Dispose();
        File.WriteAllBytes(Image + ".lut", new byte[100]);
        var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: false));
        Assert.Contains(Image + ".lut", e.Message);
        Assert.Equal(100, new FileInfo(Image + ".lut").Length);
    }

    [Fact]
    public void LutEntryPastTheEndOfItsSegment_IsRefused()
    {
        using (var img = SplitSparseImage.Open(Image, Layout, readOnly: false)) img.Write(0, Pattern(4096, 9));
        var lut = File.ReadAllBytes(Image + ".lut");
        BinaryPrimitives.WriteUInt32LittleEndian(lut.AsSpan(4), 5);      // sector 1 -> index 5 of a 1-sector segment
        File.WriteAllBytes(Image + ".lut", lut);
        var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: false));
        Assert.Contains("hdd.img.0000", e.Message);
        Assert.Contains("sector 1", e.Message);
    }

    [Fact]
    public void WriteZeroes_UnmapsSectors_SoTheyReadAsZero()
    {
        using var img = SplitSparseImage.Open(Image, Layout, readOnly: false);
        img.Write(0, Pattern(8192, 10));
        img.WriteZeroes(0, 4096);
        var back = new byte[4096];
        img.Read(0, back);
        Assert.All(back, b => Assert.Equal(0, b));
        Assert.Equal(1, img.AllocatedSectors);
    }

    [Fact]
    public void MisalignedOrOutOfRangeRequests_AreRefused()
    {
        using var img = SplitSparseImage.Open(Image, Layout, readOnly: false);
        Assert.Throws<ArgumentException>(() => img.Write(512, new byte[4096]));
        Assert.Throws<ArgumentOutOfRangeException>(() => img.Read((1 << 20) - 4096, new byte[8192]));
        Assert.Throws<ArgumentOutOfRangeException>(() => img.Read(-4096, new byte[4096]));
    }

    [Fact]
    public void SecondReadWriteOpen_IsRefused_WhileTheFirstHoldsTheLock()
    {
        using var first = SplitSparseImage.Open(Image, Layout, readOnly: false);
        var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: false));
        Assert.Contains("another engine", e.Message);
    }

    [Fact]
    public void NonSparseSplit_PresizesSegments_AndSplitsRequests()
    {
        var layout = Layout with { Sparse = false };
        using var img = SplitSparseImage.Open(Image, layout, readOnly: false);
        for (int i = 0; i < 4; i++) Assert.Equal(256 << 10, new FileInfo($"{Image}.{i:D4}").Length);
        var data = Pattern(10000, 11);
        img.Write((256 << 10) - 5000, data);
        var back = new byte[data.Length];
        img.Read((256 << 10) - 5000, back);
        Assert.Equal(data, back);
        Assert.False(File.Exists(Image + ".lut"));
    }

    [Fact]
    public void SparseWithoutSplit_UsesPathAsTheOnlySegment()
    {
        var layout = Layout with { SplitSize = null };
        using var img = SplitSparseImage.Open(Image, layout, readOnly: false);
        img.Write(50 * 4096, Pattern(4096, 12));
        Assert.Equal(4096, new FileInfo(Image).Length);
    }

    [Theory]
    [InlineData(1000, 4096, "size=1000")]
    [InlineData(1 << 20, 1000, "split=1000")]
    public void BadLayout_IsRefusedWithTheOption(long size, long split, string expected)
    {
        var e = Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, new SplitImageLayout(size, split, true, 4096), false));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ReadOnlyOpenOfAMissingImage_IsRefused()
    {
        Assert.Throws<StorageException>(() => SplitSparseImage.Open(Image, Layout, readOnly: true));
        Assert.False(File.Exists(Image + ".lut"));
    }
}
