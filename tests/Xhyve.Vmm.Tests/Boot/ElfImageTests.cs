using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Boot;

public sealed class ElfImageTests
{
    [Fact]
    public void Elf64_LoadsSegmentAtPhysicalAddress_AndZeroesBss()
    {
        var file = ImageBuilder.Elf(true, 0x200000, [1, 2, 3, 4], extraBss: 4, entry: 0x200002);
        using var mem = new GuestMemory(X86Layout.RamRegions(8UL << 20));
        mem.WriteExactly(new GuestAddress(0x200004), [9, 9, 9, 9]);
        var elf = ElfImage.Parse(file, "k");
        elf.Load(mem, file, "k");
        var back = new byte[8];
        mem.ReadExactly(new GuestAddress(0x200000), back);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 0, 0, 0, 0 }, back);
        Assert.Equal(0x200002UL, elf.Entry);
        Assert.Equal(0x200008UL, elf.EndAddress);
        Assert.True(elf.Is64);
    }

    [Fact]
    public void Elf32_IsParsed()
    {
        var elf = ElfImage.Parse(ImageBuilder.Elf(false, 0x100000, [0x90]), "g");
        Assert.False(elf.Is64);
        Assert.Equal(0x100000UL, elf.LowestAddress);
    }

    [Fact]
    public void TruncatedFile_IsRefusedNamingTheFile()
    {
        var file = ImageBuilder.Elf(true, 0x200000, new byte[100]);
        var e = Assert.Throws<BootImageException>(() => ElfImage.Parse(file.AsSpan(0, file.Length - 10), "vmlinux"));
        Assert.Contains("vmlinux", e.Message);
        Assert.Contains("outside the file", e.Message);
    }

    [Fact]
    public void ProgramHeadersPastTheEnd_AreRefused()
    {
        var file = ImageBuilder.Elf(true, 0x200000, [1]);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x20), 0xFFFF_FFFF_FFFF_FF00);
        Assert.Throws<BootImageException>(() => ElfImage.Parse(file, "k"));
    }

    [Fact]
    public void FileSizeLargerThanMemorySize_IsRefused()
    {
        var file = ImageBuilder.Elf(true, 0x200000, [1, 2]);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(64 + 40), 1);
        Assert.Throws<BootImageException>(() => ElfImage.Parse(file, "k"));
    }

    [Fact]
    public void SegmentOutsideRam_IsRefusedWhenLoading()
    {
        var file = ImageBuilder.Elf(true, 0x4000_0000, [1]);
        using var mem = new GuestMemory(X86Layout.RamRegions(8UL << 20));
        var e = Assert.Throws<BootImageException>(() => ElfImage.Parse(file, "k").Load(mem, file, "k"));
        Assert.Contains("does not fit", e.Message);
    }

    [Fact]
    public void SegmentBelowOneMiB_IsRefused()
    {
        var file = ImageBuilder.Elf(false, 0x7000, [1]);
        using var mem = new GuestMemory(X86Layout.RamRegions(8UL << 20));
        Assert.Throws<BootImageException>(() => ElfImage.Parse(file, "k").Load(mem, file, "k"));
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 })]
    [InlineData(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' })]
    public void NonElfOrTinyInput_IsRefused(byte[] data)
    {
        Assert.Throws<BootImageException>(() => ElfImage.Parse(data, "x"));
    }

    [Fact]
    public void WrongMachine_IsRefused()
    {
        var file = ImageBuilder.Elf(true, 0x200000, [1]);
        file[0x12] = 183; // aarch64
        var e = Assert.Throws<BootImageException>(() => ElfImage.Parse(file, "k"));
        Assert.Contains("machine", e.Message);
    }
}
