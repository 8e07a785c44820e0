using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Firmware;

/// <summary>
/// The Intel MultiProcessor Specification 1.4 tables: the floating pointer and a configuration table
/// with one processor entry per vCPU, the PCI and ISA buses, the IOAPIC, ISA IRQs 0-15 on pins 0-15 (as
/// the in-kernel IOAPIC routes them), the INTx lines of present PCI slots, and the local interrupts.
/// </summary>
public static class MpTable
{
    /// <summary>Processor entries carry an 8-bit APIC id, 0xFF is the broadcast id and the IOAPIC needs
    /// one above the CPUs: the MP table can describe at most 254 vCPUs.</summary>
    public const int MaxVcpus = 254;

    /// <summary>Why the MP table cannot describe this platform in its area below 1 MiB, or null when it can.
    /// The table is then left out (ACPI's MADT lists the CPUs); guests without ACPI see one CPU.</summary>
    public static string? WhyOmitted(PlatformDescription p)
    {
        if (p.Vcpus > MaxVcpus) return $"-c {p.Vcpus}: the MP table describes at most {MaxVcpus} vCPUs; it is left out (the ACPI MADT, given with -A, lists every vCPU)";
        int size = Size(p);
        if (size > (int)FirmwareArea.MpTable.Capacity)
            return $"-c {p.Vcpus}: the MP table would need {size} bytes, more than the {FirmwareArea.MpTable.Capacity} reserved for it below 1 MiB; it is left out (the ACPI MADT, given with -A, lists every vCPU)";
        return null;
    }

    /// <summary>The table's size from the configuration (floating pointer, header, then 20 bytes per
    /// processor, 8 per bus, IOAPIC, 15 ISA interrupts, 4 INTx per PCI slot and 2 local interrupts).</summary>
    public static int Size(PlatformDescription p) =>
        16 + 44 + 20 * p.Vcpus + 8 * (PciBusIds(p).Length + 1) + 8 + 8 * 15 + 8 * 4 * p.PciSlots.Count + 8 * 2;

    private static int[] PciBusIds(PlatformDescription p)
    {
        // Plain arrays rather than LINQ over (Bus, Slot) tuples: generic code over value types is JIT-compiled at start.
        var ids = new int[p.EffectivePciBuses.Count + p.PciSlots.Count];
        int n = 0;
        foreach (var b in p.EffectivePciBuses) ids[n++] = b.Bus;
        foreach (var s in p.PciSlots) ids[n++] = s.Bus;
        Array.Sort(ids);
        int unique = 0;
        for (int i = 0; i < ids.Length; i++)
            if (unique == 0 || ids[unique - 1] != ids[i]) ids[unique++] = ids[i];
        return ids[..unique];
    }

    /// <summary>The floating pointer (16 bytes) followed by the configuration table.</summary>
    public static byte[] Build(PlatformDescription p, ulong address)
    {
        if (p.Vcpus > MaxVcpus) throw new ArgumentOutOfRangeException(nameof(p), $"the MP table describes at most {MaxVcpus} vCPUs");
        var entries = new List<byte[]>();
        byte ioapic = AcpiTables.IoapicId(p);
        for (int i = 0; i < p.Vcpus; i++)
        {
            var e = new byte[20];
            e[0] = 0; e[1] = (byte)i; e[2] = 0x14; e[3] = (byte)(1 | (i == 0 ? 2 : 0)); // enabled, BSP
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(4), 0x600);               // family 6 signature
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(8), 0x201);               // FPU, APIC
            entries.Add(e);
        }
        // MP bus ids: the PCI bus numbers, then the ISA bus after the highest.
        var pciBuses = PciBusIds(p);
        byte isaBusId = (byte)(pciBuses.Max() + 1);
        foreach (int bus in pciBuses) entries.Add([1, (byte)bus, .. "PCI   "u8]);
        entries.Add([1, isaBusId, .. "ISA   "u8]);
        var io = new byte[8];
        io[0] = 2; io[1] = ioapic; io[2] = 0x11; io[3] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(io.AsSpan(4), (uint)X86Layout.IoapicBase);
        entries.Add(io);
        for (int irq = 0; irq < 16; irq++)
        {
            if (irq == 2) continue; // the cascade
            entries.Add(Interrupt(type: 0, flags: irq == PlatformLayout.SciIrq ? (ushort)0x0D : (ushort)0, isaBusId, (byte)irq, ioapic, (byte)irq));
        }
        foreach (var (bus, slot) in p.PciSlots)
            for (int pin = 0; pin < 4; pin++) // level, active low, as PCI INTx is
                entries.Add(Interrupt(0, 0x0F, (byte)bus, (byte)((slot << 2) | pin), ioapic, (byte)PlatformLayout.PciGsi(slot, pin)));
        entries.Add([4, 3, 0, 0, isaBusId, 0, 0xFF, 0]);  // ExtINT -> LINT0 of every CPU
        entries.Add([4, 1, 0, 0, isaBusId, 0, 0xFF, 1]);  // NMI -> LINT1

        int bodyLength = entries.Sum(e => e.Length);
        var table = new byte[16 + 44 + bodyLength];
        var fp = table.AsSpan(0, 16);
        "_MP_"u8.CopyTo(fp);
        BinaryPrimitives.WriteUInt32LittleEndian(fp[4..], (uint)(address + 16));
        fp[8] = 1; fp[9] = 4;
        fp[10] = Checksum.For(fp);

        var header = table.AsSpan(16, 44);
        "PCMP"u8.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], (ushort)(44 + bodyLength));
        header[6] = 4;
        Encoding.ASCII.GetBytes("XHYVE   ").CopyTo(header[8..]);
        Encoding.ASCII.GetBytes("XhyvePS     ").CopyTo(header[16..]);
        BinaryPrimitives.WriteUInt16LittleEndian(header[34..], (ushort)entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(header[36..], (uint)X86Layout.LapicBase);
        int at = 60;
        foreach (var e in entries) { e.CopyTo(table, at); at += e.Length; }
        table[16 + 7] = Checksum.For(table.AsSpan(16));
        return table;
    }

    private static byte[] Interrupt(byte type, ushort flags, byte bus, byte busIrq, byte ioapic, byte pin) =>
        [3, type, (byte)flags, (byte)(flags >> 8), bus, busIrq, ioapic, pin];
}
