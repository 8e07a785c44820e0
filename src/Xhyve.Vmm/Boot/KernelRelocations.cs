using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// The relocation table a relocatable x86-64 kernel build appends to vmlinux before compressing it
/// (arch/x86/tools/relocs, "vmlinux.relocs"), read as the kernel's own decompressor reads it: backwards from the
/// end of the decompressed payload, 32-bit entries up to a zero, then inverse 32-bit entries up to a zero, then
/// 64-bit entries up to a zero. Each entry is the link-time virtual address (sign-extended from 32 bits) of a
/// field that holds a kernel virtual address.
/// </summary>
public sealed class KernelRelocations
{
    /// <summary>__START_KERNEL_map: the virtual address that maps physical 0 in the kernel's link-time layout.</summary>
    public const ulong StartKernelMap = 0xFFFF_FFFF_8000_0000;

    /// <summary>The kernel text mapping's size the random virtual offset must stay within: KERNEL_IMAGE_SIZE is 1 GiB
    /// when the kernel is built with KASLR and 512 MiB otherwise; the image header does not say which, so the
    /// smaller bound, which holds for both.</summary>
    public const ulong KernelImageSizeLimit = 512UL << 20;

    /// <summary>32-bit fields that hold a kernel address: the virtual offset is added.</summary>
    public IReadOnlyList<uint> Relocs32 { get; }
    /// <summary>32-bit fields that hold a distance to the kernel (per-CPU references): the offset is subtracted.</summary>
    public IReadOnlyList<uint> Inverse32 { get; }
    /// <summary>64-bit fields that hold a kernel address: the offset is added.</summary>
    public IReadOnlyList<uint> Relocs64 { get; }

    private KernelRelocations(uint[] r32, uint[] inv32, uint[] r64) => (Relocs32, Inverse32, Relocs64) = (r32, inv32, r64);

    /// <summary>Reads the table between the end of the ELF file (<paramref name="elfEnd"/>) and the end of
    /// <paramref name="payload"/> (the whole decompressed payload, or just what follows vmlinux with
    /// <paramref name="elfEnd"/> 0), walking back from the end in 4-byte steps as the decompressor does; the last
    /// list's terminator must be the table's first word. Throws <see cref="BootImageException"/> naming
    /// <paramref name="name"/> when there is no table (a kernel built without CONFIG_RANDOMIZE_BASE appends none) or
    /// the lists do not end exactly there.</summary>
    public static KernelRelocations Parse(ReadOnlySpan<byte> payload, int elfEnd, string name)
    {
        if (elfEnd < 0 || elfEnd > payload.Length || payload.Length - elfEnd < 12 || (payload.Length - elfEnd) % 4 != 0)
            throw new BootImageException($"{name}: no relocation table follows vmlinux ({payload.Length - elfEnd} bytes)");
        // One pass to find the lists' lengths, one to copy them into arrays of exactly that size.
        Span<int> counts = stackalloc int[3];
        int at = payload.Length;
        for (int list = 0; list < 3; list++)
        {
            while (true)
            {
                at -= 4;
                if (at < elfEnd) throw new BootImageException($"{name}: the relocation table after vmlinux does not end where vmlinux does");
                if (BinaryPrimitives.ReadUInt32LittleEndian(payload[at..]) == 0) break;
                counts[list]++;
            }
        }
        if (at != elfEnd) throw new BootImageException($"{name}: the relocation table after vmlinux does not end where vmlinux does");
        var lists = new uint[3][];
        at = payload.Length;
        for (int list = 0; list < 3; list++)
        {
            lists[list] = new uint[counts[list]];
            for (int i = 0; i < counts[list]; i++) lists[list][i] = BinaryPrimitives.ReadUInt32LittleEndian(payload[(at -= 4)..]);
            at -= 4;   // the terminator
        }
        return new KernelRelocations(lists[0], lists[1], lists[2]);
    }

    /// <summary>Applies the table to a kernel loaded at <paramref name="loadAddress"/> (linked for
    /// <paramref name="linkAddress"/>, LOAD_PHYSICAL_ADDR) whose virtual base moves by <paramref name="virtualDelta"/>.
    /// Every field must lie inside [<paramref name="loadAddress"/>, <paramref name="imageEnd"/>), as the decompressor
    /// checks; one outside is a <see cref="BootImageException"/>.</summary>
    public void Apply(IGuestMemory memory, ulong linkAddress, ulong loadAddress, ulong imageEnd, ulong virtualDelta, string name)
    {
        if (virtualDelta == 0) return;       // x86-64 needs relocating only when the virtual base moves
        void Patch(uint entry, int width, Func<ulong, ulong> change, string kind)
        {
            Span<byte> field = stackalloc byte[8];
            ulong linkVirtual = unchecked((ulong)(long)(int)entry);
            ulong physical = unchecked(linkVirtual - StartKernelMap - linkAddress + loadAddress);
            if (physical < loadAddress || physical > imageEnd - (ulong)width || imageEnd < (ulong)width)
                throw new BootImageException($"{name}: {kind} relocation 0x{linkVirtual:X} lies outside the kernel");
            var span = field[..width];
            memory.ReadExactly(new GuestAddress(physical), span);
            if (width == 4) BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)change(BinaryPrimitives.ReadUInt32LittleEndian(span)));
            else BinaryPrimitives.WriteUInt64LittleEndian(span, change(BinaryPrimitives.ReadUInt64LittleEndian(span)));
            memory.WriteExactly(new GuestAddress(physical), span);
        }
        foreach (uint e in Relocs32) Patch(e, 4, v => unchecked(v + virtualDelta), "32-bit");
        foreach (uint e in Inverse32) Patch(e, 4, v => unchecked(v - virtualDelta), "inverse 32-bit");
        foreach (uint e in Relocs64) Patch(e, 8, v => unchecked(v + virtualDelta), "64-bit");
    }
}

/// <summary>Where a relocatable kernel goes with KASLR, chosen as the kernel's decompressor chooses
/// (arch/x86/boot/compressed/kaslr.c): a random virtual base from LOAD_PHYSICAL_ADDR up, in steps of the kernel
/// alignment, leaving room for the whole image below the text mapping's end; and a random physical address in RAM
/// with the same alignment, at or above LOAD_PHYSICAL_ADDR, below <c>ceiling</c>.</summary>
public readonly record struct KaslrPlacement(ulong PhysicalAddress, ulong VirtualOffset)
{
    /// <summary>Picks a placement with <paramref name="random"/> (returns a value in [0, n)). Slots that do not exist
    /// (too little RAM, an image too large) leave that part at the link-time default.</summary>
    public static KaslrPlacement Choose(ulong linkAddress, ulong alignment, ulong imageSize, ulong ceiling, Func<long, long> random)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) alignment = 2UL << 20;
        ulong virtualOffset = 0;
        if (linkAddress + imageSize <= KernelRelocations.KernelImageSizeLimit)
        {
            ulong slots = 1 + (KernelRelocations.KernelImageSizeLimit - linkAddress - imageSize) / alignment;
            virtualOffset = (ulong)random((long)slots) * alignment;
        }
        ulong physical = linkAddress;
        if (ceiling > linkAddress && ceiling - linkAddress >= imageSize)
        {
            ulong slots = 1 + (ceiling - linkAddress - imageSize) / alignment;
            physical = linkAddress + (ulong)random((long)slots) * alignment;
        }
        return new KaslrPlacement(physical, virtualOffset);
    }
}
