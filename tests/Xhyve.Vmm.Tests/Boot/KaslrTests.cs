using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>Host-side KASLR: the appended relocation table read and applied as the kernel's decompressor does, and the
/// random placement's bounds. The real Debian kernel's case is in <see cref="BzImageTests"/>.</summary>
public sealed class KaslrTests
{
    internal const ulong Link = 0x100_0000;                   // LOAD_PHYSICAL_ADDR
    internal const ulong LinkVirtual = 0xFFFF_FFFF_8100_0000;  // __START_KERNEL_map + LOAD_PHYSICAL_ADDR

    /// <summary>A 4 KiB kernel image with a 64-bit pointer at +0x10, a sign-extended 32-bit one at +0x20, a field the
    /// inverse list names at +0x30 and a pointer no list names at +0x40; then the table (each list 0-terminated,
    /// read from the end: 32-bit, inverse 32-bit, 64-bit).</summary>
    internal static (byte[] File, ElfImage Elf) Image(params uint[][] lists)
    {
        var text = new byte[0x1000];
        BinaryPrimitives.WriteUInt64LittleEndian(text.AsSpan(0x10), LinkVirtual + 0x100);
        BinaryPrimitives.WriteUInt32LittleEndian(text.AsSpan(0x20), unchecked((uint)(LinkVirtual + 0x200)));
        BinaryPrimitives.WriteUInt32LittleEndian(text.AsSpan(0x30), 0x100);
        BinaryPrimitives.WriteUInt64LittleEndian(text.AsSpan(0x40), LinkVirtual + 0x300);
        var elf = ImageBuilder.Elf(true, Link, text);
        // File order: 0, 64-bit..., 0, inverse..., 0, 32-bit... (the reader walks back from the end).
        var table = new List<uint> { 0 };
        table.AddRange(lists[2]); table.Add(0);
        table.AddRange(lists[1]); table.Add(0);
        table.AddRange(lists[0]);
        var file = elf.Concat(table.SelectMany(BitConverter.GetBytes)).ToArray();
        return (file, ElfImage.Parse(file, "vmlinux"));
    }

    internal static uint At(ulong offset) => unchecked((uint)(LinkVirtual + offset));

    [Fact]
    public void Relocations_AddTheVirtualDeltaTo64And32BitFields_SubtractItFromInverseOnes_AndTouchNothingElse()
    {
        var (file, elf) = Image([At(0x20)], [At(0x30)], [At(0x10)]);
        var relocs = KernelRelocations.Parse(file, (int)elf.FileEnd, "vmlinux");
        Assert.Equal([At(0x20)], relocs.Relocs32);
        Assert.Equal([At(0x30)], relocs.Inverse32);
        Assert.Equal([At(0x10)], relocs.Relocs64);

        using var mem = new GuestMemory(X86Layout.RamRegions(64UL << 20));
        const ulong physicalOffset = 0x40_0000, delta = 0x200_0000;
        elf.Load(mem, file, "vmlinux", physicalOffset);
        relocs.Apply(mem, Link, Link + physicalOffset, elf.EndAddress + physicalOffset, delta, "vmlinux");
        var image = new byte[0x1000];
        mem.ReadExactly(new GuestAddress(Link + physicalOffset), image);
        Assert.Equal(LinkVirtual + 0x100 + delta, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x10)));
        Assert.Equal(unchecked((uint)(LinkVirtual + 0x200 + delta)), BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x20)));
        Assert.Equal(unchecked((uint)(0x100 - delta)), BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x30)));
        Assert.Equal(LinkVirtual + 0x300, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x40)));
    }

    [Fact]
    public void ZeroVirtualDelta_LeavesTheImageAsLinked()
    {
        var (file, elf) = Image([At(0x20)], [At(0x30)], [At(0x10)]);
        using var mem = new GuestMemory(X86Layout.RamRegions(64UL << 20));
        elf.Load(mem, file, "vmlinux", 0x20_0000);
        KernelRelocations.Parse(file, (int)elf.FileEnd, "vmlinux").Apply(mem, Link, Link + 0x20_0000, elf.EndAddress + 0x20_0000, 0, "vmlinux");
        var image = new byte[0x1000];
        mem.ReadExactly(new GuestAddress(Link + 0x20_0000), image);
        Assert.Equal(LinkVirtual + 0x100, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x10)));
    }

    [Theory]
    [InlineData(0x1000u)]           // past the 4 KiB image
    [InlineData(0x0FFEu)]           // a 32-bit field straddling its end
    public void ARelocationOutsideTheKernel_IsRefused(uint offset)
    {
        var (file, elf) = Image([At(offset)], [], []);
        using var mem = new GuestMemory(X86Layout.RamRegions(64UL << 20));
        elf.Load(mem, file, "vmlinux");
        var relocs = KernelRelocations.Parse(file, (int)elf.FileEnd, "vmlinux");
        var e = Assert.Throws<BootImageException>(() => relocs.Apply(mem, Link, Link, elf.EndAddress, 0x20_0000, "vmlinux"));
        Assert.Contains("outside the kernel", e.Message);
    }

    [Fact]
    public void APayloadWithoutATable_OrWithOneThatDoesNotEndWhereTheElfDoes_IsRefused_NotReadIntoTheImage()
    {
        var (file, elf) = Image([At(0x20)], [], []);
        var bare = file.AsSpan(0, (int)elf.FileEnd).ToArray();
        Assert.Contains("no relocation table", Assert.Throws<BootImageException>(() => KernelRelocations.Parse(bare, (int)elf.FileEnd, "vmlinux")).Message);
        // A stray word between the ELF and the table: the lists end 4 bytes after the ELF instead of at it.
        var shifted = bare.Concat(new byte[] { 7, 0, 0, 0 }).Concat(file.AsSpan((int)elf.FileEnd).ToArray()).ToArray();
        Assert.Contains("does not end where vmlinux does", Assert.Throws<BootImageException>(() => KernelRelocations.Parse(shifted, (int)elf.FileEnd, "vmlinux")).Message);
        // Lists without their terminators run into the ELF: refused at its end.
        var unterminated = bare.Concat(new byte[] { 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0 }).ToArray();
        Assert.Throws<BootImageException>(() => KernelRelocations.Parse(unterminated, (int)elf.FileEnd, "vmlinux"));
    }

    [Fact]
    public void ElfFileEnd_CoversTheSectionHeaders()
    {
        var (file, elf) = Image([], [], []);
        Assert.Equal((ulong)(64 + 56 + 0x1000), elf.FileEnd);        // no section headers in this one
        // Point e_shoff/e_shnum at 2 headers of 64 bytes past the data: the file then ends after them.
        var withSections = file.AsSpan(0, (int)elf.FileEnd).ToArray().Concat(new byte[128]).ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(withSections.AsSpan(0x28), elf.FileEnd);
        BinaryPrimitives.WriteUInt16LittleEndian(withSections.AsSpan(0x3A), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(withSections.AsSpan(0x3C), 2);
        Assert.Equal(elf.FileEnd + 128, ElfImage.Parse(withSections, "vmlinux").FileEnd);
    }

    [Fact]
    public void Placement_WithTheLowestDraw_IsTheLinkTimeDefault()
    {
        var p = KaslrPlacement.Choose(Link, 0x20_0000, 0x300_0000, 256UL << 20, _ => 0);
        Assert.Equal(new KaslrPlacement(Link, 0), p);
    }

    [Fact]
    public void Placement_WithTheHighestDraw_StaysAlignedInsideTheTextMappingAndBelowTheCeiling()
    {
        const ulong image = 0x300_0000, ceiling = 0x1000_0000, align = 0x20_0000;
        var drawn = new List<long>();
        var p = KaslrPlacement.Choose(Link, align, image, ceiling, n => { drawn.Add(n); return n - 1; });
        Assert.Equal(0UL, p.VirtualOffset % align);
        Assert.Equal(KernelRelocations.KernelImageSizeLimit, Link + p.VirtualOffset + image);  // the last slot ends at the limit
        Assert.Equal(0UL, p.PhysicalAddress % align);
        Assert.Equal(ceiling, p.PhysicalAddress + image);
        Assert.Equal([(long)((KernelRelocations.KernelImageSizeLimit - Link - image) / align + 1), (long)((ceiling - Link - image) / align + 1)], drawn);
    }

    [Fact]
    public void Placement_WithNoRoomAboveTheLinkAddress_KeepsThePhysicalDefault()
    {
        var p = KaslrPlacement.Choose(Link, 0x20_0000, 0x300_0000, Link + 0x100_0000, n => n - 1);
        Assert.Equal(Link, p.PhysicalAddress);
        Assert.NotEqual(0UL, p.VirtualOffset);
    }

    [Theory]
    [InlineData("console=ttyS0 nokaslr", true)]
    [InlineData("nokaslr", true)]
    [InlineData("console=ttyS0\tnokaslr quiet", true)]
    [InlineData("console=ttyS0 nokaslrx", false)]
    [InlineData("xnokaslr", false)]
    [InlineData("", false)]
    public void Nokaslr_IsRecognisedOnlyAsAWholeWord(string commandLine, bool disabled) =>
        Assert.Equal(disabled, LinuxLoader.KaslrDisabled(commandLine));
}
