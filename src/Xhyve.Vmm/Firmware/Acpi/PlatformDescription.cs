using Xhyve.Vmm.Boot;

namespace Xhyve.Vmm.Firmware.Acpi;

/// <summary>What the firmware tables describe: CPUs, the interrupt and power-management resources and
/// the PCI windows. One record so ACPI, the MP table and SMBIOS cannot disagree.</summary>
public sealed record PlatformDescription
{
    public required int Vcpus { get; init; }
    public bool X2Apic { get; init; }
    public bool HasLpc { get; init; }
    /// <summary>The LPC bridge's slot and function on bus 0 (its -s address): the DSDT's _ADR for it.</summary>
    public int LpcSlot { get; init; } = 31;
    /// <summary>The LPC bridge's function (the low word of its _ADR).</summary>
    public int LpcFunction { get; init; }
    public required ulong LowMemoryBytes { get; init; }
    public ulong HighMemoryBytes { get; init; }
    /// <summary>PCI slots that have a device, per bus (their INTx lines appear in the MP table).</summary>
    public IReadOnlyList<(int Bus, int Slot)> PciSlots { get; init; } = [];

    /// <summary>The root buses and the resources each decodes; one host bridge each in the DSDT.</summary>
    public IReadOnlyList<PciBusWindows> PciBuses { get; init; } = [];

    /// <summary>The buses to describe: as given, or bus 0 with the whole windows.</summary>
    public IReadOnlyList<PciBusWindows> EffectivePciBuses =>
        PciBuses.Count > 0 ? PciBuses : [PciBusWindows.Whole(0, Mmio64Start)];

    public ulong Mmio64Start => PlatformLayout.Mmio64Start(HighMemoryBytes);

    /// <summary>The bus numbers a root bus's host bridge claims: a lone root bus takes every bus after it
    /// (room for what the guest enumerates), several each take only their own.</summary>
    public (int First, int Last) BusRange(PciBusWindows w) => (w.Bus, EffectivePciBuses.Count == 1 ? 255 : w.Bus);

    /// <summary>The ECAM window the MCFG describes and the DSDT's motherboard device reserves: from the
    /// ECAM base (bus 0) up to the last bus any host bridge claims.</summary>
    public EcamWindow Ecam => new(PlatformLayout.EcamBase, 0, EffectivePciBuses.Max(b => BusRange(b).Last));
}

/// <summary>An ECAM region: 1 MiB of configuration space per bus, bus <c>StartBus</c> at
/// <c>Base + StartBus * 1 MiB</c> (the MCFG convention: the base address is that of bus 0).</summary>
public sealed record EcamWindow(ulong Base, int StartBus, int EndBus)
{
    public const ulong BytesPerBus = 1UL << 20;
    public ulong Start => Base + (ulong)StartBus * BytesPerBus;
    public ulong Size => (ulong)(EndBus - StartBus + 1) * BytesPerBus;
    public ulong End => Start + Size - 1;
}

/// <summary>The slice of the PCI windows one root bus decodes (bhyve gives each bus its own).</summary>
public sealed record PciBusWindows(int Bus, ushort IoStart, ushort IoEnd, uint Mmio32Start, uint Mmio32End, ulong Mmio64Start, ulong Mmio64End)
{
    public static PciBusWindows Whole(int bus, ulong mmio64Start) => new(bus, PlatformLayout.PciIoStart, PlatformLayout.PciIoEnd,
        PlatformLayout.Mmio32Start, PlatformLayout.Mmio32End, mmio64Start, mmio64Start + PlatformLayout.Mmio64Size - 1);
}

/// <summary>The fixed resources of the platform the tables describe (port numbers, windows, GSIs).</summary>
public static class PlatformLayout
{
    public const ushort Pm1aEventPort = 0x400, Pm1aControlPort = 0x404, PmTimerPort = 0x408;
    public const int Pm1EventLength = 4, Pm1ControlLength = 2, PmTimerLength = 4;
    public const int SciIrq = 9;
    public const byte ResetValue = 0x06;                     // CF9: full reset (SYS_RST | RST_CPU)
    public const byte SlpTypS5 = 5;
    public const ulong ResetControlPortAddress = 0xCF9;

    public const ulong EcamBase = 0xE000_0000;               // 256 buses x 1 MiB
    public const ulong EcamSize = 0x1000_0000;
    public const uint Mmio32Start = 0xC000_0000, Mmio32End = 0xDFFF_FFFF;
    public const ushort PciIoStart = 0x2000, PciIoEnd = 0xFFFF;
    public const ulong Mmio64Size = 32UL << 30;
    public const ulong HpetBase = 0xFED0_0000;
    public const int FirstPciGsi = 16, PciGsiCount = 8;

    /// <summary>The 64-bit PCI window starts at the first GiB boundary above RAM.</summary>
    public static ulong Mmio64Start(ulong highMemoryBytes) => (X86Layout.FourGiB + highMemoryBytes + (1UL << 30) - 1) & ~((1UL << 30) - 1);

    /// <summary>The GSI of a slot's INTx pin (0 = INTA): the swizzle _PRT and the MP table describe.</summary>
    public static int PciGsi(int slot, int pin) => FirstPciGsi + (slot + pin) % PciGsiCount;

    /// <summary>The 8259 input each PCI GSI also drives, for guests in PIC mode (they read it from the
    /// Interrupt Line register). ISA IRQs nobody else uses on this platform, one per GSI so no line is shared.</summary>
    public static readonly IReadOnlyList<int> PciPicIrqs = [5, 6, 7, 10, 11, 12, 14, 15];

    public static int PciPicIrq(int gsi) => PciPicIrqs[gsi - FirstPciGsi];

    // Where the tables go: ACPI tables in 0xE0000-0xEFFFF, the RSDP, MP table and SMBIOS in the
    // 0xF0000 BIOS area that guests scan. The whole 0xE0000-0xFFFFF range is e820-reserved.
    public const ulong AcpiTablesStart = 0xE_0000, AcpiTablesEnd = 0xF_0000;
    public const ulong Rsdp = 0xF_0000;
    public const ulong MpFloatingPointer = 0xF_0100;
    public const ulong SmbiosEntryPoint = 0xF_1000;
    public const ulong SmbiosEnd = 0x10_0000;
}
