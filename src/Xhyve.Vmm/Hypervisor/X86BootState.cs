namespace Xhyve.Vmm.Hypervisor;

/// <summary>A segment register as the CPU caches it (base, limit, attributes).</summary>
public struct X86Segment
{
    public ulong Base;
    public uint Limit;
    public ushort Selector;
    /// <summary>Descriptor type field (4 bits).</summary>
    public byte Type;
    public bool Present, CodeOrData, Long, Default32, Granularity4K;
    public byte Dpl;

    public static X86Segment Flat(ushort selector, byte type, bool longMode) => new()
    {
        Base = 0, Limit = 0xFFFF_FFFF, Selector = selector, Type = type, Present = true,
        CodeOrData = true, Long = longMode && (type & 0x8) != 0, Default32 = !(longMode && (type & 0x8) != 0),
        Granularity4K = true,
    };
}

/// <summary>The architectural state a vCPU starts in, independent of the backend.</summary>
public struct X86BootState
{
    public ulong Rip, Rsp, Rflags, Rax, Rbx, Rsi, Rdi;
    public X86Segment Cs, Ds, Es, Fs, Gs, Ss, Tr;
    public ulong GdtBase, IdtBase;
    public ushort GdtLimit, IdtLimit;
    public ulong Cr0, Cr3, Cr4, Efer;
}
