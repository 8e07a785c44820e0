using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>
/// Issue 16, item 2: a bzImage's payload is decompressed straight into guest RAM. Synthetic kernels (an ELF vmlinux
/// with one large segment, compressed by the real tools) prove that the managed memory a load allocates does not grow
/// with the kernel, that a payload cut short inside a segment is refused without leaving half a kernel behind, and
/// that KASLR still works when it is decided before the relocation table has streamed in.
/// </summary>
public sealed class StreamingLoadTests : IDisposable
{
    private const ulong Link = KaslrTests.Link;
    private readonly string _dir = Directory.CreateTempSubdirectory("streaming").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    public static TheoryData<string, string> Formats => new()
    {
        { "gzip", "-1 -c" }, { "xz", "-0 --check=crc32 -c" }, { "lz4", "-l -c" }, { "zstd", "-1 -c" },
    };

    /// <summary>A vmlinux with one segment of <paramref name="size"/> bytes at 16 MiB: random bytes in its first and last
    /// 64 KiB (they must arrive intact), zeros between (so a large one compresses small).</summary>
    private static (byte[] Vmlinux, byte[] Segment) Vmlinux(int size, int seed = 1)
    {
        var segment = new byte[size];
        var random = new Random(seed);
        random.NextBytes(segment.AsSpan(0, Math.Min(size, 64 << 10)));
        random.NextBytes(segment.AsSpan(Math.Max(0, size - (64 << 10))));
        return (ImageBuilder.Elf(true, Link, segment), segment);
    }

    private string Kernel(string name, byte[] bzImage)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bzImage);
        return path;
    }

    private static byte[] Read(GuestMemory memory, ulong address, int length)
    {
        var bytes = new byte[length];
        memory.ReadExactly(new GuestAddress(address), bytes);
        return bytes;
    }

    private static long AllocatedByLoad(string kernel, GuestMemory memory)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        new LinuxLoader(kernel, null, "console=ttyS0", KernelLoadMode.HostDecompress).Load(memory);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void LoadingAKernel_AllocatesLittleManagedMemory_WhateverTheKernelsSize(string tool, string args)
    {
        var (smallElf, _) = Vmlinux(1 << 20);
        var (bigElf, bigSegment) = Vmlinux(96 << 20);
        string small = Kernel("small", ImageBuilder.BzImage(HostTools.CompressPayload(tool, args, smallElf, _dir)));
        string big = Kernel("big", ImageBuilder.BzImage(HostTools.CompressPayload(tool, args, bigElf, _dir)));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        AllocatedByLoad(small, memory);          // first use: static state, pools
        long forSmall = AllocatedByLoad(small, memory);
        long forBig = AllocatedByLoad(big, memory);

        // The old loader held the whole decompressed kernel (96 MiB here) in managed arrays.
        Assert.True(forBig < 256 << 10, $"loading a kernel with a 96 MiB segment allocated {forBig} managed bytes");
        Assert.True(forBig - forSmall < 32 << 10, $"a 96 MiB segment allocated {forBig} bytes, a 1 MiB one {forSmall}: the load grows with the kernel");
        Assert.Equal(bigSegment.AsSpan(0, 64 << 10).ToArray(), Read(memory, Link, 64 << 10));
        Assert.Equal(bigSegment.AsSpan(bigSegment.Length - (64 << 10)).ToArray(), Read(memory, Link + (ulong)bigSegment.Length - (64 << 10), 64 << 10));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void APayloadCutShortInsideASegment_IsRefusedNamingTheFile_AndLeavesNoHalfLoadedKernel(string tool, string args)
    {
        // Random bytes all through, more than one 8 MiB lz4 block: 3/4 into the compressed stream is inside the segment.
        var segment = new byte[12 << 20];
        new Random(7).NextBytes(segment);
        var payload = HostTools.CompressPayload(tool, args, ImageBuilder.Elf(true, Link, segment), _dir, appendedSize: -1);
        string kernel = Kernel("cut", ImageBuilder.BzImage(payload.AsSpan(0, payload.Length / 4 * 3).ToArray()));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var stale = new byte[4096];
        Array.Fill(stale, (byte)0x55);
        memory.WriteExactly(new GuestAddress(Link), stale);
        memory.WriteExactly(new GuestAddress(Link + (ulong)segment.Length - 4096), stale);

        var e = Assert.Throws<BootImageException>(() => new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress).Load(memory));
        Assert.StartsWith(kernel, e.Message);
        Assert.True(e.Message.Contains("truncated", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("corrupt"), e.Message);
        // What streamed in before the end (and the stale bytes under the rest of the segment) is zeroed again.
        Assert.All(Read(memory, Link, 4096), b => Assert.Equal(0, b));
        Assert.All(Read(memory, Link + (ulong)segment.Length - 4096, 4096), b => Assert.Equal(0, b));

        var loaded = new LinuxLoader(kernel, null, "", KernelLoadMode.Auto).Load(memory);
        Assert.Contains("self-decompressing", loaded.Description);
        Assert.Equal(X86Layout.KernelLoad + 0x200, loaded.EntryState.Rip);
    }

    [Fact]
    public void ARelocatableKernelWhosePayloadEndsWithVmlinux_StaysAtItsLinkAddress_WithoutDrawingAPlacement()
    {
        var (elf, _) = Vmlinux(1 << 20);
        string kernel = Kernel("plain", ImageBuilder.BzImage(HostTools.CompressPayload("gzip", "-c", elf, _dir), relocatable: true, initSize: 8 << 20));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var draws = new List<long>();
        var loaded = new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress, n => { draws.Add(n); return n - 1; }).Load(memory);
        Assert.Equal(Link, loaded.EntryState.Rip);
        Assert.Contains("KASLR off (no relocation table follows vmlinux (0 bytes))", loaded.Description);
        Assert.Empty(draws);
    }

    [Fact]
    public void ARelocatableKernelWithATable_IsPlacedBeforeItStreams_AndRelocatedFromTheTableAtTheEnd()
    {
        var (file, _) = KaslrTests.Image([KaslrTests.At(0x20)], [KaslrTests.At(0x30)], [KaslrTests.At(0x10)]);
        string kernel = Kernel("kaslr", ImageBuilder.BzImage(HostTools.CompressPayload("xz", "-c", file, _dir), relocatable: true, initSize: 8 << 20));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var draws = new List<long>();
        var loaded = new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress, n => { draws.Add(n); return n - 1; }).Load(memory);
        Assert.Equal(2, draws.Count);
        var m = System.Text.RegularExpressions.Regex.Match(loaded.Description, @"KASLR: physical 0x([0-9A-F]+), virtual offset 0x([0-9A-F]+)");
        Assert.True(m.Success, loaded.Description);
        ulong physical = Convert.ToUInt64(m.Groups[1].Value, 16), delta = Convert.ToUInt64(m.Groups[2].Value, 16);
        Assert.Equal(physical, loaded.EntryState.Rip);
        Assert.True(physical > Link && delta > 0, loaded.Description);
        var image = Read(memory, physical, 0x48);
        Assert.Equal(KaslrTests.LinkVirtual + 0x100 + delta, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x10)));
        Assert.Equal(unchecked((uint)(KaslrTests.LinkVirtual + 0x200 + delta)), BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x20)));
        Assert.Equal(unchecked((uint)(0x100 - delta)), BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x30)));
        Assert.Equal(KaslrTests.LinkVirtual + 0x300, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x40)));
    }

    [Fact]
    public void AnAppendedSizeThatPromisesATableThatIsNotThere_KeepsTheLinkedVirtualBase_WhereverTheImageWent()
    {
        var (file, _) = KaslrTests.Image([], [], []);
        var vmlinux = file.AsSpan(0, file.Length - 12).ToArray();     // the bare ELF: no table at all
        string kernel = Kernel("liar", ImageBuilder.BzImage(
            HostTools.CompressPayload("zstd", "-c", vmlinux, _dir, appendedSize: vmlinux.Length + 16), relocatable: true, initSize: 8 << 20));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var loaded = new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress, n => n - 1).Load(memory);
        Assert.Contains("KASLR off (no relocation table follows vmlinux (0 bytes)), loaded at 0x", loaded.Description);
        var zeroPage = Read(memory, X86Layout.ZeroPage, 4096);
        Assert.Equal(0, zeroPage[0x211] & 0x02);                                // no KASLR_FLAG
        Assert.Equal(KaslrTests.LinkVirtual + 0x100, BinaryPrimitives.ReadUInt64LittleEndian(Read(memory, loaded.EntryState.Rip + 0x10, 8)));
    }

    [Fact]
    public void SegmentsThatShareFileBytes_AreRefused_NotLoadedOutOfOrder()
    {
        var elf = ImageBuilder.Elf(true, Link, new byte[256]);
        // A second program header naming the same file bytes for another address.
        var twice = new byte[elf.Length + 56];
        elf.AsSpan(0, 64 + 56).CopyTo(twice);
        elf.AsSpan(64, 56).CopyTo(twice.AsSpan(64 + 56));
        BinaryPrimitives.WriteUInt64LittleEndian(twice.AsSpan(64 + 56 + 24), Link + 0x10_0000);
        BinaryPrimitives.WriteUInt16LittleEndian(twice.AsSpan(0x38), 2);
        elf.AsSpan(64 + 56).CopyTo(twice.AsSpan(64 + 112));
        for (int h = 0; h < 2; h++) BinaryPrimitives.WriteUInt64LittleEndian(twice.AsSpan(64 + h * 56 + 8), 64 + 112);
        string kernel = Kernel("twice", ImageBuilder.BzImage(HostTools.CompressPayload("gzip", "-c", twice, _dir)));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var e = Assert.Throws<BootImageException>(() => new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress).Load(memory));
        Assert.Contains("share file bytes", e.Message);
    }

    /// <summary>A 64-bit vmlinux with the given PT_LOAD segments (file offset, physical address, file bytes, memory
    /// size) after its headers; the file is as long as its last segment's file bytes reach.</summary>
    private static byte[] ElfWithSegments(params (ulong Offset, ulong Paddr, byte[] Data, ulong MemSize)[] segments)
    {
        const int ehsize = 64, phsize = 56;
        ulong length = (ulong)(ehsize + phsize * segments.Length);
        foreach (var g in segments) if (g.Data.Length > 0) length = Math.Max(length, g.Offset + (ulong)g.Data.Length);
        var f = new byte[length];
        f[0] = 0x7F; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F'; f[4] = 2; f[5] = 1; f[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x10), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x12), 62);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x14), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x18), segments[0].Paddr);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x20), ehsize);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x34), ehsize);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x36), phsize);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x38), (ushort)segments.Length);
        for (int i = 0; i < segments.Length; i++)
        {
            var (offset, paddr, data, memSize) = segments[i];
            var ph = f.AsSpan(ehsize + i * phsize);
            BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], offset);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], paddr | 0xFFFF_FFFF_8000_0000);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)data.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], memSize);
            data.CopyTo(f.AsSpan((int)offset));
        }
        return f;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ASegmentWithNoFileBytes_BetweenTwoOthers_IsZeroed_AndTheNextSegmentGetsItsOwnBytes(bool compressed)
    {
        var first = new byte[0x100];
        var third = new byte[0x100];
        new Random(3).NextBytes(first);
        new Random(4).NextBytes(third);
        // The .bss-only segment's p_offset lies past the first segment's bytes and before the third's, as linkers
        // write it: it must read nothing and must not move the stream past the gap before the third segment.
        byte[] elf = ElfWithSegments((0x1000, Link, first, 0x100), (0x1180, Link + 0x10000, [], 0x1000), (0x1200, Link + 0x20000, third, 0x100));
        string kernel = Kernel("bss", compressed ? ImageBuilder.BzImage(HostTools.CompressPayload("gzip", "-c", elf, _dir)) : elf);
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var stale = new byte[0x1000];
        Array.Fill(stale, (byte)0x55);
        memory.WriteExactly(new GuestAddress(Link + 0x10000), stale);

        new LinuxLoader(kernel, null, "nokaslr", KernelLoadMode.HostDecompress).Load(memory);

        Assert.Equal(first, Read(memory, Link, first.Length));
        Assert.All(Read(memory, Link + 0x10000, 0x1000), b => Assert.Equal(0, b));
        Assert.Equal(third, Read(memory, Link + 0x20000, third.Length));
    }

    [Fact]
    public void APayloadSegmentBeyondTheLargestDecompressedKernel_IsRefusedNamingTheFile()
    {
        // A decompressed payload's length is unknown until it ends; an offset past the decoders' limit (here 2^63,
        // which as a signed skip would be negative) cannot be real and must not be read from the bytes that follow.
        byte[] elf = ElfWithSegments((0x1000, Link, new byte[0x100], 0x100));
        BinaryPrimitives.WriteUInt64LittleEndian(elf.AsSpan(64 + 8), 1UL << 63);
        string kernel = Kernel("far", ImageBuilder.BzImage(HostTools.CompressPayload("gzip", "-c", elf, _dir)));
        using var memory = new GuestMemory(X86Layout.RamRegions(256UL << 20));

        var e = Assert.Throws<BootImageException>(() => new LinuxLoader(kernel, null, "", KernelLoadMode.HostDecompress).Load(memory));
        Assert.StartsWith(kernel, e.Message);
        Assert.Contains("outside the file", e.Message);
    }
}
