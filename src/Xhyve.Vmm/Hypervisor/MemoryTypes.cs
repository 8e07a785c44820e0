namespace Xhyve.Vmm.Hypervisor;

/// <summary>A guest-physical range firmware marks uncacheable (MMIO).</summary>
public readonly record struct UncachedRange(ulong Start, ulong Size)
{
    /// <summary>One past the last byte.</summary>
    public ulong End => Start + Size;
}

/// <summary>The memory types firmware sets up before the OS starts, as a real BIOS does with the MTRRs: everything
/// write-back except <see cref="Uncached"/>. Each backend programs it its own way (KVM: MTRR MSRs per vCPU).</summary>
public sealed record X86MemoryTypes(IReadOnlyList<UncachedRange> Uncached);

/// <summary>One model-specific register and its value.</summary>
public readonly record struct X86Msr(uint Index, ulong Value);

/// <summary>Turns <see cref="X86MemoryTypes"/> into MTRR values (Intel SDM vol. 3A §11.11; AMD APM vol. 2 §7.7):
/// IA32_MTRR_DEF_TYPE enabled with default type write-back, the fixed ranges below 1 MiB write-back except the
/// VGA window (0xA0000-0xBFFFF, uncacheable), and each uncached range as naturally aligned power-of-two blocks in
/// the variable MTRRs.</summary>
public static class Mtrrs
{
    /// <summary>MSR numbers: IA32_MTRRCAP, IA32_MTRR_PHYSBASE0 (PHYSMASKn = PHYSBASEn + 1, pairs follow), the fixed-range
    /// MTRRs and IA32_MTRR_DEF_TYPE.</summary>
    public const uint Cap = 0xFE, PhysBase0 = 0x200, Fix64K00000 = 0x250, Fix16K80000 = 0x258, Fix16KA0000 = 0x259,
        Fix4KC0000 = 0x268, Fix4KF8000 = 0x26F, DefType = 0x2FF;
    /// <summary>Memory type encodings (UC, WB).</summary>
    public const byte Uncacheable = 0, WriteBack = 6;
    private const ulong Valid = 1UL << 11, DefEnable = 1UL << 11, FixedEnable = 1UL << 10;
    private const ulong CapFixed = 1UL << 8, CapVariableCount = 0xFF;
    private const ulong AllWriteBack = 0x0606_0606_0606_0606, AllUncacheable = 0;

    /// <summary>The MSR values for a CPU whose MTRRcap reads <paramref name="mtrrCap"/> and whose physical addresses have
    /// <paramref name="physicalAddressBits"/> bits. Ranges that do not fit the variable MTRRs left (or are not page
    /// aligned, or lie beyond the address width) are returned in <paramref name="undescribed"/> and stay write-back.</summary>
    public static IReadOnlyList<X86Msr> Plan(X86MemoryTypes types, ulong mtrrCap, int physicalAddressBits, out IReadOnlyList<UncachedRange> undescribed)
    {
        int variableCount = (int)(mtrrCap & CapVariableCount);
        bool hasFixed = (mtrrCap & CapFixed) != 0;
        int bits = Math.Clamp(physicalAddressBits, 32, 52);
        ulong addressMask = (1UL << bits) - 1;
        var msrs = new List<X86Msr>();
        if (hasFixed)
        {
            msrs.Add(new(Fix64K00000, AllWriteBack));
            msrs.Add(new(Fix16K80000, AllWriteBack));
            msrs.Add(new(Fix16KA0000, AllUncacheable));      // legacy VGA window
            for (uint m = Fix4KC0000; m <= Fix4KF8000; m++) msrs.Add(new(m, AllWriteBack));
        }
        var missed = new List<UncachedRange>();
        int used = 0;
        foreach (var range in types.Uncached)
        {
            var blocks = range.Size > 0 && range.Start % 0x1000 == 0 && range.Size % 0x1000 == 0 && range.End > range.Start && range.End - 1 <= addressMask
                ? AlignedBlocks(range.Start, range.Size) : null;
            if (blocks == null || used + blocks.Count > variableCount) { missed.Add(range); continue; }
            foreach (var (start, size) in blocks)
            {
                msrs.Add(new(PhysBase0 + 2 * (uint)used, start | Uncacheable));
                msrs.Add(new(PhysBase0 + 2 * (uint)used + 1, (~(size - 1) & addressMask & ~0xFFFUL) | Valid));
                used++;
            }
        }
        for (int i = used; i < variableCount; i++)
        {
            msrs.Add(new(PhysBase0 + 2 * (uint)i, 0));
            msrs.Add(new(PhysBase0 + 2 * (uint)i + 1, 0));     // not valid
        }
        // The default type last: the ranges are in place before the MTRRs take effect.
        msrs.Add(new(DefType, DefEnable | (hasFixed ? FixedEnable : 0) | WriteBack));
        undescribed = missed;
        return msrs;
    }

    /// <summary>[start, start + size) as the fewest naturally aligned power-of-two blocks (what one variable MTRR covers).</summary>
    public static List<(ulong Start, ulong Size)> AlignedBlocks(ulong start, ulong size)
    {
        var blocks = new List<(ulong, ulong)>();
        while (size > 0)
        {
            ulong block = start == 0 ? 1UL << 63 : start & (~start + 1);       // the largest alignment of start
            while (block > size) block >>= 1;
            blocks.Add((start, block));
            start += block;
            size -= block;
        }
        return blocks;
    }
}
