using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>
/// Disks attach by path alone: the geometry (size, split, sparse, sector size) comes from the image's descriptor,
/// or for images without one (the original xhyve's) from its files where they say it unambiguously. Options that
/// contradict the image, and damaged descriptors, are refused naming the file and the option, and nothing changes.
/// </summary>
public sealed class ImageGeometryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("geometry").FullName;
    private string Image => Path.Combine(_dir, "web.img");

    public void Dispose() => Directory.Delete(_dir, true);

    private static BlockDeviceOptions Opts(string path, params string[] items) => BlockDeviceOptions.ParseOptions(path, items);

    private Dictionary<string, byte[]> Snapshot() => Directory.GetFiles(_dir).ToDictionary(f => f, File.ReadAllBytes);

    private DiskImageException Refused(DiskImageProblem problem, BlockDeviceOptions options)
    {
        var before = Snapshot();
        var e = Assert.Throws<DiskImageException>(() => ImageGeometry.Resolve(options));
        Assert.Equal(problem, e.Problem);
        Assert.Equal(before.Keys.Order(), Snapshot().Keys.Order());
        foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));
        return e;
    }

    [Fact]
    public void CreatedSplitSparseImage_ResolvesFromThePathAlone()
    {
        DiskImages.Create(Opts(Image, "size=8M", "split=1M", "sparse", "sectorsize=4096"));
        Assert.True(File.Exists(Image + ".desc"));
        var r = ImageGeometry.Resolve(Opts(Image));
        Assert.Equal((8L << 20, 1L << 20, true, 4096, 4096), (r.Size, r.SplitSize, r.Sparse, r.LogicalSectorSize, r.PhysicalSectorSize));
        Assert.Equal(new SplitImageLayout(8 << 20, 1 << 20, true, 4096), r.SplitLayout);
        using var image = BlockBackends.Open(r);
        Assert.Equal(8L << 20, image.Size);
    }

    [Theory]
    [InlineData(new[] { "size=4M" }, DiskImageFormat.Raw, null)]
    [InlineData(new[] { "size=4M", "sectorsize=4096" }, DiskImageFormat.Raw, null)]
    [InlineData(new[] { "size=4M", "split=1M" }, DiskImageFormat.Split, 1L << 20)]
    [InlineData(new[] { "size=4M", "sparse" }, DiskImageFormat.Sparse, null)]
    [InlineData(new[] { "size=4M", "split=2M", "sparse" }, DiskImageFormat.SplitSparse, 2L << 20)]
    public void EveryFormat_RecordsItsGeometryInTheDescriptor(string[] options, DiskImageFormat format, long? split)
    {
        var created = Opts(Image, options);
        DiskImages.Create(created);
        var g = ImageGeometry.Detect(Image)!;
        Assert.Equal((format, 4L << 20, split, created.LogicalSectorSize, true), (g.Format, g.Size, g.SplitSize, g.SectorSize, g.FromDescriptor));
        Assert.Equal(created.LogicalSectorSize, ImageGeometry.Resolve(Opts(Image)).LogicalSectorSize);
        Assert.Empty(Directory.GetFiles(_dir, ".*.tmp"));   // the descriptor went in by rename, nothing left beside it
        Assert.Contains($"\"format\": \"{(format switch { DiskImageFormat.SplitSparse => "split+sparse", _ => format.ToString().ToLowerInvariant() })}\"", File.ReadAllText(Image + ".desc"));
    }

    [Fact]
    public void AnImageTheEngineCreates_GetsADescriptorToo()
    {
        using (BlockBackends.Open(Opts(Image, "size=2M", "split=1M", "sparse"))) { }
        var r = ImageGeometry.Resolve(Opts(Image));
        Assert.Equal((2L << 20, 1L << 20, true), (r.Size, r.SplitSize, r.Sparse));
    }

    [Fact]
    public void XhyveSparseImage_WithoutDescriptor_TakesItsSizeFromTheLut()
    {
        // One segment (all the disk in PATH) and the LUT: made by xhyve with size=1M,sparse and no split.
        using (SplitSparseImage.Open(Image, new SplitImageLayout(1 << 20, null, true, 512), readOnly: false)) { }
        var r = ImageGeometry.Resolve(Opts(Image));
        Assert.Equal((1L << 20, (long?)null, true, 512), (r.Size, r.SplitSize, r.Sparse, r.LogicalSectorSize));
        // sectorsize= given: the LUT's 2048 entries are 4096-byte sectors.
        Assert.Equal(8L << 20, ImageGeometry.Resolve(Opts(Image, "sectorsize=4096")).Size);
    }

    [Fact]
    public void XhyveSplitSparseImage_WithSeveralSegments_NeedsSplit_AndThenResolves()
    {
        // xhyve made size/split + 1 segment files: five for size=1M,split=256K.
        ReferenceSparseImage.Create(Image, 1 << 20, 256 << 10, 512, new Dictionary<long, byte[]> { [3] = Enumerable.Repeat((byte)9, 512).ToArray() });
        var e = Refused(DiskImageProblem.OptionNeeded, Opts(Image));
        Assert.Contains("5 segment files (web.img.0000 to web.img.0004)", e.Message);
        Assert.Contains("give split=SIZE", e.Message);
        var r = ImageGeometry.Resolve(Opts(Image, "split=256K"));
        Assert.Equal((1L << 20, 256L << 10, true), (r.Size, r.SplitSize, r.Sparse));
        using var image = BlockBackends.Open(r with { ReadOnly = true });
        var sector = new byte[512];
        image.Read(3 * 512, sector);
        Assert.All(sector, b => Assert.Equal(9, b));
        // A split that does not give five segments for the LUT's 1 MiB is refused naming both.
        Assert.Contains("split=128K: the image", Refused(DiskImageProblem.Conflict, Opts(Image, "split=128K")).Message);
    }

    [Fact]
    public void XhyveSplitImage_WithoutDescriptor_TakesSplitFromItsSegments_AndNeedsSize()
    {
        using (SplitSparseImage.Open(Image, new SplitImageLayout(1 << 20, 256 << 10, false, 512), readOnly: false)) { }
        var e = Refused(DiskImageProblem.OptionNeeded, Opts(Image));
        Assert.Contains("4 segment files of 256 KiB", e.Message);
        Assert.Contains("give size=SIZE", e.Message);
        var r = ImageGeometry.Resolve(Opts(Image, "size=1M"));
        Assert.Equal((1L << 20, 256L << 10, false), (r.Size, r.SplitSize, r.Sparse));
        Assert.Contains("split=512K: the image", Refused(DiskImageProblem.Conflict, Opts(Image, "size=1M", "split=512K")).Message);
        Assert.Contains("size=4M: the image", Refused(DiskImageProblem.Conflict, Opts(Image, "size=4M")).Message);
    }

    [Fact]
    public void PlainFile_IsRaw_AsBefore()
    {
        File.WriteAllBytes(Image, new byte[1 << 20]);
        var r = ImageGeometry.Resolve(Opts(Image));
        Assert.Null(r.SplitLayout);
        Assert.Null(r.Size);
        Assert.Equal(DiskImageFormat.Raw, ImageGeometry.Detect(Image)!.Format);
    }

    [Fact]
    public void MissingImage_IsNotFound_UnlessSizeAsksForANewOne()
    {
        var e = Refused(DiskImageProblem.NotFound, Opts(Image, "split=1M", "sparse"));
        Assert.Contains("give size= to create one", e.Message);
        var given = Opts(Image, "size=1M", "sparse");
        Assert.Same(given, ImageGeometry.Resolve(given));
    }

    [Fact]
    public void SizeThatContradictsTheLut_IsRefusedNamingTheLutsSectorCount()
    {
        using (SplitSparseImage.Open(Image, new SplitImageLayout(1 << 20, null, true, 512), readOnly: false)) { }
        var e = Refused(DiskImageProblem.Conflict, Opts(Image, "size=2M"));
        Assert.Equal($"size=2M: the image {Image} is 1 MiB (its web.img.lut has 2048 sectors)", e.Message);
    }

    [Theory]
    [InlineData(new[] { "size=16M" }, "size=16M: the image {img} is 8 MiB (as its web.img.desc records)")]
    [InlineData(new[] { "split=2M" }, "split=2M: the image {img} has segments of 1 MiB")]
    [InlineData(new[] { "sectorsize=512" }, "sectorsize=512: the image {img} has 4096-byte sectors (its web.img.desc records them)")]
    [InlineData(new[] { "size=16M", "sectorsize=512" }, "size=16M: the image {img} is 8 MiB (as its web.img.desc records); sectorsize=512:")]
    public void OptionsThatContradictADescriptor_AreRefusedNamingTheConflict(string[] options, string message)
    {
        DiskImages.Create(Opts(Image, "size=8M", "split=1M", "sparse", "sectorsize=4096"));
        var e = Refused(DiskImageProblem.Conflict, Opts(Image, options));
        Assert.StartsWith(message.Replace("{img}", Image), e.Message);
        Assert.Equal(Image, e.File);
    }

    [Theory]
    [InlineData("split=1M", "split=1M: the image {img} is not split (there is no web.img.0000)")]
    [InlineData("sparse", "sparse: the image {img} is not sparse (there is no web.img.lut)")]
    [InlineData("size=2M", "size=2M: the image {img} is 1 MiB (")]
    public void SplitOrSparseOrSize_OnARawImage_IsAConflict(string option, string message)
    {
        File.WriteAllBytes(Image, new byte[1 << 20]);
        Assert.StartsWith(message.Replace("{img}", Image), Refused(DiskImageProblem.Conflict, Opts(Image, option)).Message);
    }

    [Fact]
    public void OptionsThatAgree_AreAccepted()
    {
        DiskImages.Create(Opts(Image, "size=8M", "split=1M", "sparse", "sectorsize=4096"));
        var r = ImageGeometry.Resolve(Opts(Image, "size=8M", "split=1M", "sparse", "sectorsize=4096/8192", "sync"));
        Assert.Equal((8L << 20, 4096, 8192, true), (r.Size, r.LogicalSectorSize, r.PhysicalSectorSize, r.WriteThrough));
    }

    [Theory]
    [InlineData("{ not json", "not valid JSON")]
    [InlineData("[1]", "not a JSON object")]
    [InlineData("""{"version":1,"format":"raw","size":1048576,"sectorSize":512,"extra":1}""", "unknown member \"extra\"")]
    [InlineData("""{"version":1,"format":"raw","size":1048576,"size":2097152,"sectorSize":512}""", "\"size\" appears twice")]
    [InlineData("""{"version":2,"format":"raw","size":1048576,"sectorSize":512}""", "version 2 is not supported")]
    [InlineData("""{"version":1,"format":"qcow2","size":1048576,"sectorSize":512}""", "\"format\" must be")]
    [InlineData("""{"version":1,"format":"raw","size":-5,"sectorSize":512}""", "\"size\" must be a positive whole number")]
    [InlineData("""{"version":1,"format":"raw","size":1048576,"sectorSize":520}""", "sectorSize 520: must be a power of two from 512 to 65536")]
    [InlineData("""{"version":1,"format":"split","size":1048576,"sectorSize":512}""", "\"split\" is missing")]
    [InlineData("""{"version":1,"format":"raw","sectorSize":512}""", "\"size\" is missing")]
    public void DamagedDescriptor_IsRefusedNamingIt(string content, string problem)
    {
        File.WriteAllBytes(Image, new byte[1 << 20]);
        File.WriteAllText(Image + ".desc", content);
        var e = Refused(DiskImageProblem.Damaged, Opts(Image));
        Assert.StartsWith($"{Image}.desc: damaged disk descriptor: ", e.Message);
        Assert.Contains(problem, e.Message);
        Assert.Equal(Image + ".desc", e.File);
    }

    [Fact]
    public void HugeDescriptor_IsRefusedWithoutReadingIt()
    {
        File.WriteAllBytes(Image, new byte[1 << 20]);
        File.WriteAllText(Image + ".desc", """{"version":1,"format":"raw","size":1048576,"sectorSize":512}""" + new string(' ', 1 << 20));
        Assert.Contains("bytes; a descriptor is at most 4096", Refused(DiskImageProblem.Damaged, Opts(Image)).Message);
    }

    [Fact]
    public void SymlinkedDescriptor_IsRefused_NotFollowed()
    {
        File.WriteAllBytes(Image, new byte[1 << 20]);
        string elsewhere = Path.Combine(_dir, "other.json");
        File.WriteAllText(elsewhere, """{"version":1,"format":"raw","size":1048576,"sectorSize":4096}""");
        File.CreateSymbolicLink(Image + ".desc", elsewhere);
        var e = Refused(DiskImageProblem.Damaged, Opts(Image));
        Assert.Contains($"{Image}.desc: damaged disk descriptor: is a symbolic link", e.Message);
    }

    [Fact]
    public void DescriptorThatDoesNotMatchTheLut_IsRefusedNamingTheLut()
    {
        DiskImages.Create(Opts(Image, "size=2M", "split=1M", "sparse"));
        File.WriteAllBytes(Image + ".lut", Enumerable.Repeat((byte)0xFF, 2048 * 4).ToArray());   // a 1 MiB disk's LUT
        var e = Refused(DiskImageProblem.Damaged, Opts(Image));
        Assert.Equal($"{Image}.lut: has 2048 sectors (8192 bytes), but web.img.desc records a 2 MiB disk of 512-byte sectors (4096 sectors)", e.Message);
        Assert.Equal(Image + ".lut", e.File);
    }

    [Fact]
    public void DescriptorThatDoesNotMatchARawImagesLength_IsRefused()
    {
        DiskImages.Create(Opts(Image, "size=1M"));
        File.WriteAllBytes(Image, new byte[2 << 20]);
        var e = Refused(DiskImageProblem.Damaged, Opts(Image));
        Assert.Contains("records a 1 MiB image, but", e.Message);
        Assert.Contains("delete web.img.desc", e.Message);
    }

    [Fact]
    public void DescriptorWithoutItsImage_IsRefused()
    {
        DiskImages.Create(Opts(Image, "size=2M", "split=1M", "sparse"));
        foreach (var f in Directory.GetFiles(_dir).Where(f => !f.EndsWith(".desc"))) File.Delete(f);
        Assert.Contains("the image's files are missing (only its descriptor web.img.desc is there)", Refused(DiskImageProblem.Damaged, Opts(Image)).Message);
    }

    [Fact]
    public void LutOfAPartialEntry_IsRefusedNamingIt()
    {
        File.WriteAllBytes(Image, []);
        File.WriteAllBytes(Image + ".lut", new byte[4097]);
        Assert.Contains($"{Image}.lut: 4097 bytes is not a whole number of 4-byte sector entries", Refused(DiskImageProblem.Damaged, Opts(Image)).Message);
    }

    [Fact]
    public void DescriptorOfAHugeSize_IsRefusedNamingIt_NotAnOverflow()
    {
        // 2^63 - 512 bytes in 1536-byte segments: size + split - 1 wrapped negative, and the segment count with it.
        File.WriteAllBytes(Image + ".0000", new byte[1536]);
        File.WriteAllText(Image + ".desc", """{"version":1,"format":"split","size":9223372036854775296,"split":1536,"sectorSize":512}""");
        var e = Refused(DiskImageProblem.Damaged, Opts(Image));
        Assert.Equal(Image + ".desc", e.File);
        Assert.Contains("size 9223372036854775296: larger than the largest disk an image may be (8192 TiB)", e.Message);
    }

    [Fact]
    public void SegmentCount_OfAHugeSize_IsComputedWithoutWrapping()
    {
        var layout = new SplitImageLayout(9223372036854775296, 1536, false, 512);
        Assert.Contains("split=1536: more than 9999 segments", layout.Validate());
        Assert.Throws<OverflowException>(() => layout.SegmentCount);
        Assert.Equal(3, new SplitImageLayout(long.MaxValue - 511, long.MaxValue / 3, false, 512).SegmentCount);
    }

    [Fact]
    public void ANewImageLargerThanADescriptorMayRecord_IsRefusedBeforeAnythingIsWritten()
    {
        var e = Assert.Throws<FormatException>(() => Opts(Image, "size=16384T", "split=4096T"));
        Assert.Contains("larger than the largest disk an image may be (8192 TiB)", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        Assert.Empty(new SplitImageLayout(ImageGeometry.MaxImageSize, 1L << 50, false, 512).Validate());
    }

    [Fact]
    public void HugeSparseLut_IsRefusedNamingIt()
    {
        File.WriteAllBytes(Image, []);
        using (var lut = new FileStream(Image + ".lut", FileMode.CreateNew))
            lut.SetLength((1L << 44) - 4096);   // sparse: 16 TiB of entries, 2^42 - 1024 sectors, on no disk space
        // Not Refused(): its snapshot would read the 16 TiB.
        var e = Assert.Throws<DiskImageException>(() => ImageGeometry.Resolve(Opts(Image, "sectorsize=4096")));
        Assert.Equal((DiskImageProblem.Damaged, Image + ".lut"), (e.Problem, e.File));
        Assert.Equal((1L << 44) - 4096, new FileInfo(Image + ".lut").Length);
        Assert.Contains($"{Image}.lut: 4398046510080 sectors of 4096 bytes is larger than the largest disk an image may be", e.Message);
    }

    [Fact]
    public void SymlinkedLut_IsMeasuredByItsTarget_AsOpeningTheImageFollowsIt()
    {
        File.WriteAllBytes(Image, []);
        string real = Path.Combine(_dir, "elsewhere.lut");
        File.WriteAllBytes(real, Enumerable.Repeat((byte)0xFF, 4096 * 4).ToArray());
        File.CreateSymbolicLink(Image + ".lut", real);
        var r = ImageGeometry.Resolve(Opts(Image));
        Assert.Equal((4096L * 512, true), (r.Size, r.Sparse));
        using var image = BlockBackends.Open(r);
        Assert.Equal(4096L * 512, image.Size);
    }

    [Fact]
    public void SymlinkedSegment_IsMeasuredByItsTarget()
    {
        string real = Path.Combine(_dir, "elsewhere.0000");
        File.WriteAllBytes(real, new byte[1 << 20]);
        File.CreateSymbolicLink(Image + ".0000", real);
        var r = ImageGeometry.Resolve(Opts(Image, "size=1M"));
        Assert.Equal((1L << 20, (long?)(1L << 20)), (r.Size, r.SplitSize));
    }

    [Fact]
    public void SymlinkedLutToNothing_IsRefusedNamingIt()
    {
        File.WriteAllBytes(Image, []);
        File.CreateSymbolicLink(Image + ".lut", Path.Combine(_dir, "gone.lut"));
        var e = Assert.Throws<DiskImageException>(() => ImageGeometry.Resolve(Opts(Image)));   // Refused() cannot read the link
        Assert.Equal((DiskImageProblem.Damaged, Image + ".lut"), (e.Problem, e.File));
        Assert.False(File.Exists(Path.Combine(_dir, "gone.lut")));
        Assert.Contains($"{Image}.lut: a symbolic link to '{Path.Combine(_dir, "gone.lut")}', which does not exist", e.Message);
    }
}
