namespace Xhyve.Vmm.Boot;

/// <summary>Every fixed guest-physical address and platform constant the VMM uses, in one place.</summary>
public static class X86Layout
{
    // Low memory used by the loaders (all below the first MiB, outside the EBDA/BIOS areas).
    public const ulong BootGdt = 0x500;
    public const ulong BootIdt = 0x520;
    public const ulong ZeroPage = 0x7000;              // Linux boot_params
    public const ulong BootStack = 0x8FF0;
    public const ulong Pml4 = 0x9000;                  // 64-bit identity map: PML4, PDPT, 4 PDs
    public const ulong Pdpt = 0xA000;
    public const ulong PageDirectories = 0xB000;       // 4 pages: 0xB000..0xEFFF
    public const ulong MultibootInfo = 0x9000;         // multiboot boot uses this area instead of page tables
    public const ulong MultibootScratch = 0xA000;      // strings and module list for multiboot (to 0x1FFFF)
    public const ulong MultibootScratchEnd = 0x20000;
    public const ulong CommandLine = 0x20000;
    public const int CommandLineMax = 0x10000;         // bytes reserved for the command line (with NUL)
    public const ulong EbdaStart = 0x9FC00;
    public const ulong LowRamEnd = 0xA0000;            // end of conventional memory (640 KiB)
    public const ulong BiosStart = 0xE0000;            // firmware tables (ACPI, MP table, SMBIOS) live here
    public const ulong HighMemoryStart = 0x100000;     // 1 MiB: bzImage protected-mode kernel
    public const ulong KernelLoad = 0x100000;

    // bhyve's split of RAM around the 32-bit PCI hole.
    public const ulong PciHoleStart = 0xC000_0000;     // RAM above this moves to 4 GiB
    public const ulong FourGiB = 0x1_0000_0000;

    public const ulong PageSize = 0x1000;
    public const ulong LapicBase = 0xFEE0_0000;
    public const ulong IoapicBase = 0xFEC0_0000;

    // KVM's private pages on Intel (the EPT identity-map page, then the 3-page real-mode TSS), below the top
    // 16 MiB where a boot ROM (at most BootRomMaxSize) is mapped. The KVM
    // backend hands these addresses to KVM_SET_IDENTITY_MAP_ADDR / KVM_SET_TSS_ADDR (KvmVm, which a test
    // keeps equal to these); the e820 map reserves them so no guest puts a BAR there.
    public const ulong KvmIdentityMapAddress = 0xFEFF_C000;
    public const ulong KvmTssAddress = 0xFEFF_D000;
    public const ulong KvmPrivatePagesEnd = KvmTssAddress + 3 * PageSize;

    // A boot ROM (-l bootrom): mapped read-only so that it ends at 4 GiB (the reset vector at 0xFFFFFFF0 is in its
    // last 16 bytes), and its last 256 KiB copied into RAM at 0xC0000-0xFFFFF, the most of it a BIOS runs below 1 MiB
    // (SeaBIOS's 256 KiB build has code from 0xD2720, which it copies down itself only through an Intel chipset's
    // PAM registers; the 128 KiB build lies within 0xE0000-0xFFFFF).
    public const ulong BootRomMaxSize = 16UL << 20;
    public const ulong BiosLowCopyStart = 0xC0000;
    public const ulong BiosLowCopySize = 0x40000;
    public const ulong ResetVector = 0xFFFF_FFF0;

    // Legacy I/O ports.
    public const ushort Com1Port = 0x3F8, Com2Port = 0x2F8;
    public const int Com1Irq = 4, Com2Irq = 3;
    public const ushort RtcPort = 0x70;
    public const int RtcIrq = 8;
    public const ushort PostPort = 0x80;
    public const ushort I8042DataPort = 0x60, I8042CommandPort = 0x64;
    public const ushort PciConfigAddressPort = 0xCF8, PciConfigDataPort = 0xCFC;
    public const ushort ResetControlPort = 0xCF9;

    /// <summary>bhyve's RAM layout: up to 3 GiB low, the rest above 4 GiB.</summary>
    public static IReadOnlyList<Memory.MemoryRegion> RamRegions(ulong bytes)
    {
        var low = Math.Min(bytes, PciHoleStart);
        var regions = new List<Memory.MemoryRegion> { new(new Memory.GuestAddress(0), low) };
        if (bytes > low) regions.Add(new(new Memory.GuestAddress(FourGiB), bytes - low));
        return regions;
    }
}
