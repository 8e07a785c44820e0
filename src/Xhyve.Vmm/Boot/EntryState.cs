using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Boot;

/// <summary>The CPU states the loaders enter guests in.</summary>
public static class EntryState
{
    private const ulong Cr0Pe = 1, Cr0Et = 0x10, Cr0Ne = 0x20, Cr0Nw = 0x2000_0000, Cr0Cd = 0x4000_0000, Cr0Pg = 0x8000_0000;
    private const ulong Cr4Pae = 0x20;
    private const ulong EferLme = 0x100, EferLma = 0x400;

    /// <summary>Linux boot protocol 64-bit entry: paging on with the identity map, flat __BOOT_CS/__BOOT_DS,
    /// RSI = boot_params (Documentation/x86/boot.rst, "64-bit Boot Protocol").</summary>
    public static X86BootState Long64(ulong entry, ulong zeroPage)
    {
        var code = X86Segment.Flat(0x10, 0xB, longMode: true);
        var data = X86Segment.Flat(0x18, 0x3, longMode: true);
        return new X86BootState
        {
            Rip = entry, Rsi = zeroPage, Rsp = X86Layout.BootStack, Rflags = 2,
            Cs = code, Ds = data, Es = data, Fs = data, Gs = data, Ss = data, Tr = BusyTss(),
            GdtBase = X86Layout.BootGdt, GdtLimit = (ushort)(PageTables.LinuxGdt.Length * 8 - 1),
            IdtBase = X86Layout.BootIdt, IdtLimit = 7,
            Cr0 = Cr0Pe | Cr0Et | Cr0Ne | Cr0Pg, Cr3 = X86Layout.Pml4, Cr4 = Cr4Pae, Efer = EferLme | EferLma,
        };
    }

    /// <summary>32-bit flat protected mode without paging (multiboot: EAX = magic, EBX = info).</summary>
    public static X86BootState Protected32(ulong entry, uint eax, uint ebx)
    {
        var code = X86Segment.Flat(0x08, 0xB, longMode: false);
        var data = X86Segment.Flat(0x10, 0x3, longMode: false);
        return new X86BootState
        {
            Rip = entry, Rax = eax, Rbx = ebx, Rsp = X86Layout.ZeroPage - 0x10, Rflags = 2,
            Cs = code, Ds = data, Es = data, Fs = data, Gs = data, Ss = data, Tr = BusyTss(),
            GdtBase = X86Layout.BootGdt, GdtLimit = (ushort)(PageTables.FlatGdt32.Length * 8 - 1),
            IdtBase = X86Layout.BootIdt, IdtLimit = 7,
            Cr0 = Cr0Pe | Cr0Et, Cr3 = 0, Cr4 = 0, Efer = 0,
        };
    }

    /// <summary>The state a CPU comes out of reset in (Intel SDM Vol. 3, "Processor State After Reset"): real mode,
    /// CS selector 0xF000 with base 0xFFFF0000 so that IP 0xFFF0 fetches the reset vector at 0xFFFFFFF0 (the last 16
    /// bytes of a boot ROM), the other segments flat 64 KiB from 0, CR0 with CD, NW and ET set.</summary>
    public static X86BootState ResetVector()
    {
        var data = RealModeSegment(0, 0x3);
        return new X86BootState
        {
            Rip = 0xFFF0, Rflags = 2,
            Cs = RealModeSegment(0xF000, 0xB) with { Base = 0xFFFF_0000 },
            Ds = data, Es = data, Fs = data, Gs = data, Ss = data,
            Tr = new X86Segment { Base = 0, Limit = 0xFFFF, Selector = 0, Type = 11, Present = true },
            GdtBase = 0, GdtLimit = 0xFFFF, IdtBase = 0, IdtLimit = 0xFFFF,
            Cr0 = Cr0Cd | Cr0Nw | Cr0Et, Cr3 = 0, Cr4 = 0, Efer = 0,
        };
    }

    /// <summary>A real-mode segment: base = selector * 16, 64 KiB limit, byte granular, 16-bit.</summary>
    private static X86Segment RealModeSegment(ushort selector, byte type) => new()
    {
        Base = (ulong)selector << 4, Limit = 0xFFFF, Selector = selector, Type = type, Present = true, CodeOrData = true,
    };

    // VM entry checks want a usable TR: a busy TSS (type 11) even though the guest never uses it.
    private static X86Segment BusyTss() => new() { Base = 0, Limit = 0x67, Selector = 0, Type = 11, Present = true };
}
