using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>The boot-protocol parser and loader on the real Debian cloud kernel and on damaged copies of it.</summary>
public sealed class BzImageTests : IClassFixture<BzImageTests.Kernel>
{
    public sealed class Kernel
    {
        public string Path { get; } = HostTools.DebianKernel();
        public byte[] Bytes { get; }
        public Kernel() => Bytes = File.ReadAllBytes(Path);
    }

    private readonly Kernel _kernel;
    public BzImageTests(Kernel kernel) => _kernel = kernel;

    private static ReadOnlySpan<byte> Payload(BzImage bz, byte[] file) => file.AsSpan((int)bz.PayloadFileOffset, bz.PayloadLength);

    [Fact]
    public void DebianKernel_ParsesAsA64BitRelocatableBzImage()
    {
        var bz = BzImage.Parse(_kernel.Bytes, "vmlinuz");
        Assert.True(bz.Protocol >= 0x020F, $"protocol 0x{bz.Protocol:X}");
        Assert.True(bz.HasEntry64);
        Assert.True(bz.Relocatable);
        Assert.Equal(0x0020_0000u, bz.KernelAlignment);   // CONFIG_PHYSICAL_ALIGN
        Assert.Equal(0x0100_0000UL, bz.PreferredAddress);
        Assert.True(bz.InitSize > (uint)bz.ProtectedModeLength);
        Assert.Equal(2047u, bz.CommandLineSize);
        Assert.Equal(0x7FFF_FFFFu, bz.InitrdAddressMax);
        Assert.Equal(PayloadCompression.Lz4, KernelPayload.Detect(Payload(bz, _kernel.Bytes)));
    }

    [Fact]
    public void DebianKernelPayload_DecompressesToAnX8664Elf_OfTheAppendedSize()
    {
        var bz = BzImage.Parse(_kernel.Bytes, "vmlinuz");
        var elf = KernelPayload.Decompress(Payload(bz, _kernel.Bytes), "vmlinuz");
        uint appended = BinaryPrimitives.ReadUInt32LittleEndian(Payload(bz, _kernel.Bytes)[^4..]);
        Assert.Equal((int)appended, elf.Length);
        var image = ElfImage.Parse(elf, "vmlinux");
        Assert.True(image.Is64);
        Assert.Equal(0x0100_0000UL, image.LowestAddress);
        Assert.InRange(image.Entry, image.LowestAddress, image.EndAddress);
    }

    [Theory]
    [InlineData(KernelLoadMode.Auto)]
    [InlineData(KernelLoadMode.BzImage)]
    public void Loader_WritesZeroPageCommandLineInitrdAndPageTables(KernelLoadMode mode)
    {
        string initrd = System.IO.Path.GetTempFileName();
        File.WriteAllBytes(initrd, Enumerable.Range(0, 10000).Select(i => unchecked((byte)i)).ToArray());
        try
        {
            using var mem = new GuestMemory(X86Layout.RamRegions(256UL << 20));
            var loaded = new LinuxLoader(_kernel.Path, initrd, "console=ttyS0 quiet", mode).Load(mem);
            var zp = new byte[4096];
            mem.ReadExactly(new GuestAddress(X86Layout.ZeroPage), zp);
            Assert.Equal(0x53726448u, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x202)));
            Assert.Equal((uint)X86Layout.CommandLine, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x228)));
            uint rdImage = BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x218));
            Assert.Equal(10000u, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x21C)));
            Assert.Equal(0u, rdImage % 4096);
            Assert.True(rdImage + 10000 <= 256u << 20);
            var rd = new byte[10000];
            mem.ReadExactly(new GuestAddress(rdImage), rd);
            Assert.Equal(File.ReadAllBytes(initrd), rd);
            Assert.Equal(loaded.MemoryMap.Count, zp[0x1E8]);
            var cmd = new byte[20];
            mem.ReadExactly(new GuestAddress(X86Layout.CommandLine), cmd);
            Assert.Equal("console=ttyS0 quiet\0"u8.ToArray(), cmd);
            Assert.Equal(X86Layout.ZeroPage, loaded.EntryState.Rsi);
            if (mode == KernelLoadMode.BzImage)
            {
                Assert.Equal(X86Layout.KernelLoad + 0x200, loaded.EntryState.Rip);
                Assert.Contains("self-decompressing", loaded.Description);
            }
            else
            {
                // KASLR may move the kernel up from 16 MiB in 2 MiB steps; startup_64 is its first byte.
                Assert.True(loaded.EntryState.Rip >= 0x0100_0000 && loaded.EntryState.Rip % 0x20_0000 == 0, $"entry 0x{loaded.EntryState.Rip:X}");
                Assert.Contains("decompressed on the host", loaded.Description);
            }
        }
        finally { File.Delete(initrd); }
    }

    /// <summary>Loads the kernel once with `nokaslr` and once with KASLR (a fixed draw), and compares the two images:
    /// moved by the physical offset, equal except at the fields the relocation table names, each changed by exactly the
    /// virtual offset.</summary>
    [Fact]
    public void DebianKernel_WithKaslr_IsMovedAndRelocated_OnlyWhereItsTableSays_AndNokaslrKeepsTheDefault()
    {
        const ulong ram = 512UL << 20;
        using var plain = new GuestMemory(X86Layout.RamRegions(ram));
        var fixedPlace = new LinuxLoader(_kernel.Path, null, "console=ttyS0 nokaslr", KernelLoadMode.HostDecompress).Load(plain);
        Assert.Equal(0x0100_0000UL, fixedPlace.EntryState.Rip);
        Assert.Contains("KASLR off (nokaslr)", fixedPlace.Description);
        Assert.Equal(0, ReadZeroPage(plain)[0x211] & 0x02);

        using var moved = new GuestMemory(X86Layout.RamRegions(ram));
        var draws = new List<long>();
        var randomPlace = new LinuxLoader(_kernel.Path, null, "console=ttyS0", KernelLoadMode.HostDecompress, n => { draws.Add(n); return n / 2; }).Load(moved);
        Assert.Equal(2, draws.Count);                                        // one virtual, one physical draw
        ulong physicalOffset = randomPlace.EntryState.Rip - 0x0100_0000;
        var m = System.Text.RegularExpressions.Regex.Match(randomPlace.Description, @"KASLR: physical 0x([0-9A-F]+), virtual offset 0x([0-9A-F]+)");
        Assert.True(m.Success, randomPlace.Description);
        Assert.Equal(0x0100_0000UL + physicalOffset, Convert.ToUInt64(m.Groups[1].Value, 16));
        ulong delta = Convert.ToUInt64(m.Groups[2].Value, 16);
        Assert.True(physicalOffset > 0 && delta > 0 && delta % 0x20_0000 == 0, randomPlace.Description);
        Assert.Equal(0x02, ReadZeroPage(moved)[0x211] & 0x02);              // KASLR_FLAG in loadflags

        var bz = BzImage.Parse(_kernel.Bytes, "vmlinuz");
        var payload = KernelPayload.Decompress(Payload(bz, _kernel.Bytes), "vmlinuz");
        var elf = ElfImage.Parse(payload, "vmlinux");
        var relocs = KernelRelocations.Parse(payload, (int)elf.FileEnd, "vmlinux");
        Assert.True(relocs.Relocs32.Count > 1000 && relocs.Relocs64.Count > 1000, $"{relocs.Relocs32.Count} / {relocs.Inverse32.Count} / {relocs.Relocs64.Count}");
        int size = (int)(elf.EndAddress - elf.LowestAddress);
        var a = new byte[size];
        var b = new byte[size];
        plain.ReadExactly(new GuestAddress(elf.LowestAddress), a);
        moved.ReadExactly(new GuestAddress(elf.LowestAddress + physicalOffset), b);
        var expected = (byte[])a.Clone();
        int Offset(uint entry) => (int)(unchecked((ulong)(long)(int)entry) - KernelRelocations.StartKernelMap - elf.LowestAddress);
        foreach (uint e in relocs.Relocs32) { var s = expected.AsSpan(Offset(e)); BinaryPrimitives.WriteUInt32LittleEndian(s, unchecked(BinaryPrimitives.ReadUInt32LittleEndian(s) + (uint)delta)); }
        foreach (uint e in relocs.Inverse32) { var s = expected.AsSpan(Offset(e)); BinaryPrimitives.WriteUInt32LittleEndian(s, unchecked(BinaryPrimitives.ReadUInt32LittleEndian(s) - (uint)delta)); }
        foreach (uint e in relocs.Relocs64) { var s = expected.AsSpan(Offset(e)); BinaryPrimitives.WriteUInt64LittleEndian(s, unchecked(BinaryPrimitives.ReadUInt64LittleEndian(s) + delta)); }
        Assert.True(expected.AsSpan().SequenceEqual(b), "the KASLR image differs from the linked one somewhere the relocation table does not name");
        Assert.False(a.AsSpan().SequenceEqual(b));
    }

    private static byte[] ReadZeroPage(GuestMemory memory)
    {
        var zp = new byte[4096];
        memory.ReadExactly(new GuestAddress(X86Layout.ZeroPage), zp);
        return zp;
    }

    [Fact]
    public void Loader_RefusesTooLongCommandLine()
    {
        using var mem = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var e = Assert.Throws<BootImageException>(() => new LinuxLoader(_kernel.Path, null, new string('x', 3000)).Load(mem));
        Assert.Contains("2047", e.Message);
    }

    [Fact]
    public void Loader_RefusesTooSmallRam()
    {
        using var mem = new GuestMemory(X86Layout.RamRegions(16UL << 20));
        Assert.Throws<BootImageException>(() => new LinuxLoader(_kernel.Path, null, "", KernelLoadMode.BzImage).Load(mem));
    }

    [Theory]
    [InlineData(100)]
    [InlineData(0x250)]
    [InlineData(0x4000)]
    [InlineData(1 << 20)]
    public void TruncatedKernel_IsRefusedWithAMessageNamingIt(int length)
    {
        var e = Assert.ThrowsAny<BootImageException>(() =>
        {
            var file = _kernel.Bytes.AsSpan(0, length).ToArray();
            var bz = BzImage.Parse(file, "short.bzImage");
            KernelPayload.Decompress(Payload(bz, file), "short.bzImage");
        });
        Assert.Contains("short.bzImage", e.Message);
    }

    [Fact]
    public void TruncatedKernel_InAutoMode_CannotBeLoaded()
    {
        string path = System.IO.Path.GetTempFileName();
        File.WriteAllBytes(path, _kernel.Bytes.AsSpan(0, _kernel.Bytes.Length / 2).ToArray());
        try
        {
            using var mem = new GuestMemory(X86Layout.RamRegions(256UL << 20));
            Assert.Throws<BootImageException>(() => new LinuxLoader(path, null, null).Load(mem));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void MissingBootFlag_IsRefused()
    {
        var copy = _kernel.Bytes.AsSpan(0, 64 * 1024).ToArray();
        copy[0x1FE] = 0;
        var e = Assert.Throws<BootImageException>(() => BzImage.Parse(copy, "k"));
        Assert.Contains("not a Linux bzImage", e.Message);
    }

    [Fact]
    public void OldProtocol_IsRefused()
    {
        var copy = _kernel.Bytes.AsSpan(0, 64 * 1024).ToArray();
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(0x206), 0x0204);
        var e = Assert.Throws<BootImageException>(() => BzImage.Parse(copy, "k"));
        Assert.Contains("2.04", e.Message);
    }

    [Fact]
    public void KernelWithout64BitEntry_IsRefused()
    {
        var copy = _kernel.Bytes.ToArray();
        copy[0x236] &= 0xFE;
        Assert.Throws<BootImageException>(() => BzImage.Parse(copy, "k"));
    }

    [Fact]
    public void PayloadOffsetPastTheEnd_IsRefused()
    {
        var copy = _kernel.Bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(0x248), 0x7FFF_FFF0);
        var e = Assert.Throws<BootImageException>(() => BzImage.Parse(copy, "k"));
        Assert.Contains("payload", e.Message);
    }

    [Fact]
    public void CorruptPayload_IsRefusedByHostDecompression_AndAutoFallsBackToBzImage()
    {
        var copy = _kernel.Bytes.ToArray();
        var bz = BzImage.Parse(copy, "k");
        int payloadStart = bz.SetupBytes + bz.PayloadOffset;
        for (int i = payloadStart + 8; i < payloadStart + 4096; i++) copy[i] ^= 0x5A;
        string path = System.IO.Path.GetTempFileName();
        File.WriteAllBytes(path, copy);
        try
        {
            using var mem = new GuestMemory(X86Layout.RamRegions(256UL << 20));
            Assert.Throws<BootImageException>(() => new LinuxLoader(path, null, null, KernelLoadMode.HostDecompress).Load(mem));
            var loaded = new LinuxLoader(path, null, null, KernelLoadMode.Auto).Load(mem);
            Assert.Contains("self-decompressing", loaded.Description);
        }
        finally { File.Delete(path); }
    }
}
