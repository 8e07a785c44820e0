using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Boot;

/// <summary>The CPU states the loaders enter guests in.</summary>
public static class EntryState
{
    private const ulong Cr0Pe = 1, Cr0Et = 0x10, Cr0Ne = 0x20, Cr0Pg = 0x8000_0000;
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

    // VM entry checks want a usable TR: a busy TSS (type 11) even though the guest never uses it.
    private static X86Segment BusyTss() => new() { Base = 0, Limit = 0x67, Selector = 0, Type = 11, Present = true };
}
