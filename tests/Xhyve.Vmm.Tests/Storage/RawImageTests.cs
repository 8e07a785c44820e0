using System.Runtime.InteropServices;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>Raw images: vectored I/O, O_DIRECT through bounce buffers, locking, read-only rules, zeroing.</summary>
public sealed unsafe class RawImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("raw").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private string NewFile(long size = 1 << 20)
    {
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        using (var f = File.Create(path)) f.SetLength(size);
        return path;
    }

    /// <summary>Scatter/gather lists in native memory, pointers as a device hands them over.</summary>
    private sealed class NativeBuffers : IDisposable
    {
        private readonly nint _block;
        public IoBuffer[] List { get; }
        public NativeBuffers(int alignment, params int[] lengths)
        {
            _block = (nint)NativeMemory.AlignedAlloc((nuint)(lengths.Sum() + lengths.Length * 4096 + 64), (nuint)4096);
            nint at = _block + alignment;
            List = lengths.Select(l => { var b = new IoBuffer(at, l); at += l + 4096 - (l % 4096) + alignment; return b; }).ToArray();
        }
        public void Dispose() => NativeMemory.AlignedFree((void*)_block);
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(true, 0)]       // O_DIRECT with aligned buffers: straight through
    [InlineData(true, 8)]       // O_DIRECT with misaligned buffers: through the bounce buffer
    public void VectoredWriteThenRead_RoundTripsAcrossBuffers(bool noCache, int misalign)
    {
        string path = NewFile();
        using var write = new NativeBuffers(misalign, 512, 3584, 4096);
        byte n = 1;
        foreach (var b in write.List) foreach (ref byte x in b.AsSpan()) x = unchecked(n++);
        using (var image = RawImage.Open(path, new RawImageOptions(NoCache: noCache)))
        {
            image.WriteVectored(4096, write.List);
            using var read = new NativeBuffers(misalign, 4096, 4096);
            image.ReadVectored(4096, read.List);
            Assert.Equal(write.List.SelectMany(b => b.AsSpan().ToArray()), read.List.SelectMany(b => b.AsSpan().ToArray()));
            image.Flush();
        }
        var onDisk = File.ReadAllBytes(path).AsSpan(4096, 8192).ToArray();
        Assert.Equal(write.List.SelectMany(b => b.AsSpan().ToArray()), onDisk);
    }

    [Fact]
    public void SecondReadWriteOpen_IsRefused_WhileTheFirstHoldsTheLock()
    {
        string path = NewFile();
        using (RawImage.Open(path, new RawImageOptions()))
        {
            var e = Assert.Throws<StorageException>(() => RawImage.Open(path, new RawImageOptions()));
            Assert.Contains($"{path}: the image is in use by another process", e.Message);
            Assert.Throws<StorageException>(() => RawImage.Open(path, new RawImageOptions(ReadOnly: true)));
        }
        using (RawImage.Open(path, new RawImageOptions(ReadOnly: true)))
        using (RawImage.Open(path, new RawImageOptions(ReadOnly: true)))   // readers share
            Assert.Throws<StorageException>(() => RawImage.Open(path, new RawImageOptions()));
    }

    [Fact]
    public void ReadOnlyImage_RefusesWrites_AndMissingFilesAreNamed()
    {
        string path = NewFile();
        using (var image = RawImage.Open(path, new RawImageOptions(ReadOnly: true)))
        {
            Assert.True(image.ReadOnly);
            Assert.Throws<StorageException>(() => image.Write(0, new byte[512]));
        }
        var e = Assert.Throws<StorageException>(() => RawImage.Open(Path.Combine(_dir, "none.img"), new RawImageOptions()));
        Assert.Contains("none.img: image file not found", e.Message);
        var dir = Assert.Throws<StorageException>(() => RawImage.Open(_dir, new RawImageOptions(ReadOnly: true)));
        Assert.Contains(_dir, dir.Message);
    }

    [Fact]
    public void SizeOption_CreatesANewImage_AndMustMatchAnExistingOne()
    {
        string path = Path.Combine(_dir, "new.img");
        using (var image = RawImage.Open(path, new RawImageOptions(CreateSize: 3 << 20))) Assert.Equal(3L << 20, image.Size);
        Assert.Equal(3L << 20, new FileInfo(path).Length);
        var e = Assert.Throws<StorageException>(() => RawImage.Open(path, new RawImageOptions(CreateSize: 1 << 20)));
        Assert.Contains("is 3145728 bytes but size= asks for 1048576", e.Message);
        Assert.Equal(3L << 20, new FileInfo(path).Length);
    }

    [Fact]
    public void OutOfRangeRequests_AreRefused()
    {
        using var image = RawImage.Open(NewFile(), new RawImageOptions());
        Assert.Throws<StorageException>(() => image.Read(image.Size - 512, new byte[1024]));
        Assert.Throws<StorageException>(() => image.Write(-512, new byte[512]));
        Assert.Throws<StorageException>(() => image.WriteZeroes(image.Size, 512));
    }

    [Fact]
    public void WriteZeroesAndDiscard_ReadBackAsZeroes()
    {
        string path = NewFile();
        using var image = RawImage.Open(path, new RawImageOptions());
        image.Write(0, Enumerable.Repeat((byte)0xCC, 64 * 1024).ToArray());
        image.WriteZeroes(4096, 8192);
        image.Discard(32768, 4096);
        var back = new byte[64 * 1024];
        image.Read(0, back);
        Assert.All(back[..4096], b => Assert.Equal(0xCC, b));
        Assert.All(back[4096..12288], b => Assert.Equal(0, b));
        Assert.All(back[32768..36864], b => Assert.Equal(0, b));   // ext4 punches holes; the test host's file system does
        Assert.All(back[36864..], b => Assert.Equal(0xCC, b));
    }
}

/// <summary>The block option parser shared by the engine, the disk tool and the management library.</summary>
public sealed class BlockDeviceOptionsTests
{
    [Fact]
    public void EveryOption_IsParsed_AndPrintsBackTheSame()
    {
        var o = BlockDeviceOptions.Parse("hdd.img,ro,sync,nocache,sectorsize=4096/8192,size=20G,split=1G,sparse");
        Assert.Equal("hdd.img", o.Path);
        Assert.True(o.ReadOnly && o.WriteThrough && o.NoCache && o.Sparse);
        Assert.Equal((4096, 8192), (o.LogicalSectorSize, o.PhysicalSectorSize));
        Assert.Equal(20L << 30, o.Size);
        Assert.Equal(1L << 30, o.SplitSize);
        Assert.Equal(new SplitImageLayout(20L << 30, 1L << 30, true, 4096), o.SplitLayout);
        Assert.Equal(o, BlockDeviceOptions.Parse(o.ToString()));
        Assert.True(BlockDeviceOptions.Parse("a.img,direct").WriteThrough);
        Assert.Null(BlockDeviceOptions.Parse("a.img,size=1M").SplitLayout);
    }

    [Theory]
    [InlineData("", "no image path given")]
    [InlineData("a.img,rw", "rw: unknown block option")]
    [InlineData("a.img,ro=1", "ro=1: unknown block option")]
    [InlineData("a.img,sectorsize=520", "the logical sector size 520 must be a power of two from 512 to 65536")]
    [InlineData("a.img,sectorsize=131072", "the logical sector size 131072 must be a power of two from 512 to 65536")]
    [InlineData("a.img,sectorsize=2048/1024", "the physical sector size 1024 must be a power of two from the logical size 2048 to 65536")]
    [InlineData("a.img,sectorsize=4096/2048", "physical sector size")]
    [InlineData("a.img,sectorsize=x", "sectorsize=LOGICAL[/PHYSICAL]")]
    [InlineData("a.img,size=0", "size=0: not a size")]
    [InlineData("a.img,size=1000", "not a multiple of the 512-byte sector")]
    [InlineData("a.img,size=1M,split=1000", "split=1000")]
    public void BadOptions_AreRefusedNamingTheOption(string text, string message)
    {
        var e = Assert.Throws<FormatException>(() => BlockDeviceOptions.Parse(text));
        Assert.Contains(message, e.Message);
    }
}

/// <summary>Creating, inspecting and converting images (xhyve disk and New-XhyveDiskImage).</summary>
public sealed class DiskImagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("images").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void RawToSplitSparseAndBack_PreservesEveryByte_AndStoresOnlyNonZeroSectors()
    {
        string raw = Path.Combine(_dir, "a.img");
        var content = new byte[4 << 20];
        new Random(5).NextBytes(content.AsSpan(0, 4096));
        new Random(6).NextBytes(content.AsSpan((1 << 20) - 1024, 2048));    // across the 1 MiB segment boundary
        File.WriteAllBytes(raw, content);

        var sparse = BlockDeviceOptions.ParseOptions(Path.Combine(_dir, "b.img"), ["split=1M", "sparse"]);
        var info = DiskImages.Convert(BlockDeviceOptions.Parse(raw), sparse);
        Assert.Equal("split+sparse", info.Format);
        Assert.Equal(4L << 20, info.Size);
        Assert.Equal((4096 + 2048) / 512 * 512L, info.AllocatedBytes);
        Assert.Equal(6, info.Files.Count);                                   // four segments, the LUT and the descriptor

        string back = Path.Combine(_dir, "c.img");
        DiskImages.Convert(sparse with { Size = 4L << 20 }, BlockDeviceOptions.Parse(back));
        Assert.Equal(content, File.ReadAllBytes(back));
    }

    [Fact]
    public void CreateAndConvert_NeverOverwriteAnExistingImage()
    {
        string path = Path.Combine(_dir, "x.img");
        DiskImages.Create(BlockDeviceOptions.Parse(path + ",size=1M"));
        File.WriteAllBytes(path, Enumerable.Repeat((byte)7, 1 << 20).ToArray());
        var e = Assert.Throws<StorageException>(() => DiskImages.Create(BlockDeviceOptions.Parse(path + ",size=1M")));
        Assert.Contains("already exists", e.Message);
        Assert.Throws<StorageException>(() => DiskImages.Convert(BlockDeviceOptions.Parse(path), BlockDeviceOptions.Parse(path)));
        Assert.All(File.ReadAllBytes(path), b => Assert.Equal(7, b));
    }

    [Fact]
    public void Inspect_RefusesACorruptLut_NamingIt()
    {
        var opts = BlockDeviceOptions.Parse(Path.Combine(_dir, "s.img") + ",size=1M,sparse");
        DiskImages.Create(opts);
        File.WriteAllBytes(opts.Path + ".lut", new byte[100]);
        var e = Assert.ThrowsAny<StorageException>(() => DiskImages.Inspect(opts));
        Assert.Contains("s.img.lut: has 25 sectors (100 bytes), but s.img.desc records a 1 MiB disk", e.Message);
        // Without the descriptor the LUT gives the size, and size=1M contradicts it.
        File.Delete(opts.Path + ".desc");
        e = Assert.ThrowsAny<StorageException>(() => DiskImages.Inspect(opts));
        Assert.Contains("s.img is 12800 bytes (its s.img.lut has 25 sectors)", e.Message);
    }
}
