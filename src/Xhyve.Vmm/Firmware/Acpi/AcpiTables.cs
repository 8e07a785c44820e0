using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Firmware.Acpi.Aml;
using Xhyve.Vmm.Memory;
using A = Xhyve.Vmm.Firmware.Acpi.Aml.Aml;

namespace Xhyve.Vmm.Firmware.Acpi;

/// <summary>One table and the guest-physical address it was placed at.</summary>
public sealed record PlacedTable(string Signature, ulong Address, byte[] Bytes);

/// <summary>
/// Builds the ACPI tables for -A (ACPI 6.4): RSDP, XSDT and RSDT, FADT, FACS, MADT, HPET, MCFG and a DSDT
/// written with <see cref="A"/>, laid out from <see cref="PlatformLayout.AcpiTablesStart"/>.
/// </summary>
public static class AcpiTables
{
    private const byte SystemIo = 1, SystemMemory = 0;

    public static IReadOnlyList<PlacedTable> Build(PlatformDescription p)
    {
        var placed = new List<PlacedTable>();
        ulong next = PlatformLayout.AcpiTablesStart;
        ulong Place(string sig, byte[] bytes, ulong alignment = 16)
        {
            ulong at = (next + alignment - 1) & ~(alignment - 1);
            if (!FirmwareArea.Acpi.Fits(at, bytes.Length))
                throw new FirmwareTableTooLargeException(FirmwareArea.Acpi,
                    $"-A with -c {p.Vcpus} and {p.EffectivePciBuses.Count} PCI bus(es): the ACPI tables up to the {sig} ({at + (ulong)bytes.Length - PlatformLayout.AcpiTablesStart} bytes)");
            placed.Add(new PlacedTable(sig, at, bytes));
            next = at + (ulong)bytes.Length;
            return at;
        }

        ulong facs = Place("FACS", Facs(), 64);
        ulong dsdt = Place("DSDT", Dsdt(p));
        ulong fadt = Place("FACP", Fadt(facs, dsdt));
        ulong madt = Place("APIC", Madt(p));
        ulong hpet = Place("HPET", Hpet());
        ulong mcfg = Place("MCFG", Mcfg(p.Ecam));
        ulong[] described = [fadt, madt, hpet, mcfg];
        ulong xsdt = Place("XSDT", Xsdt(described));
        ulong rsdt = Place("RSDT", Rsdt(described));
        placed.Add(new PlacedTable("RSD PTR ", PlatformLayout.Rsdp, Rsdp(rsdt, xsdt)));
        return placed;
    }

    public static void Write(IGuestMemory memory, IReadOnlyList<PlacedTable> tables)
    {
        foreach (var t in tables) (t.Signature == "RSD PTR " ? FirmwareArea.Rsdp : FirmwareArea.Acpi).Write(memory, t.Address, t.Bytes);
    }

    /// <summary>RSDP revision 2 (§5.2.5.3): checksum over the first 20 bytes, extended checksum over all 36.</summary>
    public static byte[] Rsdp(ulong rsdt, ulong xsdt)
    {
        var b = new byte[36];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(b, 0);
        Encoding.ASCII.GetBytes(AcpiTable.OemId).CopyTo(b, 9);
        b[15] = 2;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), (uint)rsdt);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(20), 36);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), xsdt);
        b[8] = Checksum.For(b.AsSpan(0, 20));
        b[32] = Checksum.For(b);
        return b;
    }

    public static byte[] Xsdt(IEnumerable<ulong> tables)
    {
        var t = new AcpiTable("XSDT", 1, "XHYVEXSD");
        foreach (var a in tables) t.U64(a);
        return t.Finish();
    }

    public static byte[] Rsdt(IEnumerable<ulong> tables)
    {
        var t = new AcpiTable("RSDT", 1, "XHYVERSD");
        foreach (var a in tables) t.U32((uint)a);
        return t.Finish();
    }

    /// <summary>FACS (§5.2.10): 64 bytes, no checksum.</summary>
    public static byte[] Facs()
    {
        var b = new byte[64];
        Encoding.ASCII.GetBytes("FACS").CopyTo(b, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 64);
        b[32] = 2; // version
        return b;
    }

    /// <summary>FADT revision 6 (§5.2.9): PM1a event/control and PM timer in I/O space, SCI on IRQ 9,
    /// fixed-feature power button, the CF9 reset register, no SMI command port (always in ACPI mode).</summary>
    public static byte[] Fadt(ulong facs, ulong dsdt)
    {
        const uint flagWbinvd = 1 << 0, flagProcC1 = 1 << 2, flagSleepButtonIsControlMethod = 1 << 5,
            flagTmrValExt = 1 << 8, flagResetRegSup = 1 << 10;
        const ushort bootArchLegacyDevices = 1 << 0, bootArch8042 = 1 << 1, bootArchNoVga = 1 << 2;
        var t = new AcpiTable("FACP", 6, "XHYVEFAC");
        t.U32((uint)facs).U32((uint)dsdt)
         .U8(0)                                   // reserved (INT_MODEL in ACPI 1.0)
         .U8(0)                                   // preferred PM profile: unspecified
         .U16(PlatformLayout.SciIrq)
         .U32(0).U8(0).U8(0).U8(0).U8(0)           // SMI_CMD, ACPI_ENABLE/DISABLE, S4BIOS_REQ, PSTATE_CNT
         .U32(PlatformLayout.Pm1aEventPort).U32(0)
         .U32(PlatformLayout.Pm1aControlPort).U32(0)
         .U32(0)                                  // PM2_CNT_BLK
         .U32(PlatformLayout.PmTimerPort)
         .U32(0).U32(0)                           // GPE0, GPE1
         .U8(PlatformLayout.Pm1EventLength).U8(PlatformLayout.Pm1ControlLength).U8(0).U8(PlatformLayout.PmTimerLength)
         .U8(0).U8(0).U8(0).U8(0)                 // GPE0/1 lengths, GPE1 base, CST_CNT
         .U16(101).U16(1001)                      // C2/C3 latency: not supported
         .U16(0).U16(0).U8(0).U8(0)               // flush size/stride, duty offset/width
         .U8(0).U8(0).U8(0x32)                    // day/month alarm, century register in CMOS
         .U16((ushort)(bootArchLegacyDevices | bootArch8042 | bootArchNoVga))
         .U8(0)
         .U32(flagWbinvd | flagProcC1 | flagSleepButtonIsControlMethod | flagTmrValExt | flagResetRegSup)
         .Gas(SystemIo, 8, 0, 1, PlatformLayout.ResetControlPortAddress).U8(PlatformLayout.ResetValue)
         .U16(0).U8(4)                            // ARM boot arch, FADT minor version
         .U64(facs).U64(dsdt)
         .Gas(SystemIo, 32, 0, 2, PlatformLayout.Pm1aEventPort).Gas(0, 0, 0, 0, 0)
         .Gas(SystemIo, 16, 0, 2, PlatformLayout.Pm1aControlPort).Gas(0, 0, 0, 0, 0)
         .Gas(0, 0, 0, 0, 0)                      // X_PM2_CNT_BLK
         .Gas(SystemIo, 32, 0, 3, PlatformLayout.PmTimerPort)
         .Gas(0, 0, 0, 0, 0).Gas(0, 0, 0, 0, 0)   // X_GPE0, X_GPE1
         .Gas(0, 0, 0, 0, 0).Gas(0, 0, 0, 0, 0)   // sleep control/status (HW-reduced only)
         .Bytes("XHYVEKVM"u8);                    // hypervisor vendor identity
        return t.Finish();
    }

    /// <summary>MADT (§5.2.12): one Local APIC (or Local x2APIC with -x) per vCPU, the IOAPIC, the SCI's
    /// interrupt source override (level, active high) and LINT1 as NMI.</summary>
    public static byte[] Madt(PlatformDescription p)
    {
        var t = new AcpiTable("APIC", 5, "XHYVEMAD");
        t.U32((uint)X86Layout.LapicBase).U32(1);  // PCAT_COMPAT: there are 8259s too
        for (int i = 0; i < p.Vcpus; i++)
        {
            // An xAPIC entry holds an 8-bit id and 0xFF means "all": ids from 255 up need x2APIC entries (§5.2.12.12).
            if (p.X2Apic || i >= 255) t.U8(9).U8(16).U16(0).U32((uint)i).U32(1).U32((uint)i);
            else t.U8(0).U8(8).U8((byte)i).U8((byte)i).U32(1);
        }
        t.U8(1).U8(12).U8(IoapicId(p)).U8(0).U32((uint)X86Layout.IoapicBase).U32(0);
        t.U8(2).U8(10).U8(0).U8(PlatformLayout.SciIrq).U32(PlatformLayout.SciIrq).U16(0x000D);
        if (p.X2Apic) t.U8(0x0A).U8(12).U16(0x0005).U32(0xFFFF_FFFF).U8(1).Zeros(3);
        else t.U8(4).U8(6).U8(0xFF).U16(0x0005).U8(1);  // all processors, edge/high, LINT1
        return t.Finish();
    }

    /// <summary>The IOAPIC's id: the first id above the CPUs' APIC ids (the in-kernel IOAPIC accepts any).</summary>
    public static byte IoapicId(PlatformDescription p) => (byte)Math.Min(p.Vcpus, 254);

    /// <summary>HPET description (IA-PC HPET spec 1.0a, table 3).</summary>
    public static byte[] Hpet()
    {
        var t = new AcpiTable("HPET", 1, "XHYVEHPE");
        t.U32(Devices.Timers.Hpet.CapabilitiesLow)
         .Gas(SystemMemory, 64, 0, 0, PlatformLayout.HpetBase)
         .U8(0)            // HPET number
         .U16(0x80)        // minimum clock tick in periodic mode
         .U8(0);           // page protection: none
        return t.Finish();
    }

    /// <summary>MCFG (PCI Firmware spec 3.2, §4.1.2): one ECAM allocation for segment 0.</summary>
    public static byte[] Mcfg(EcamWindow ecam)
    {
        var t = new AcpiTable("MCFG", 1, "XHYVEMCF");
        t.Zeros(8).U64(ecam.Base).U16(0).U8((byte)ecam.StartBus).U8((byte)ecam.EndBus).U32(0);
        return t.Finish();
    }

    /// <summary>The DSDT: one host bridge per root bus (\_SB.PCI0 for bus 0, \_SB.PCxx for bus xx) with its
    /// windows, _OSC and _PRT, the PCI interrupt link devices (\_SB.LNKA..LNKH) that _PRT names in PIC mode,
    /// \_PIC, the LPC devices under PCI0 (COM1, COM2, RTC, HPET, the 8042 reset port), the motherboard
    /// resources (\_SB.MRES: the ECAM window) and the S5 sleep package.</summary>
    public static byte[] Dsdt(PlatformDescription p)
    {
        // The routing tables are the same for every root bus (the swizzle ignores the bus): \_SB holds them once.
        var routing = RoutingTables();
        var buses = p.EffectivePciBuses;
        var devices = new byte[routing.Length + buses.Count + PlatformLayout.PciGsiCount + 1][];
        int d = 0;
        foreach (var table in routing) devices[d++] = table;
        foreach (var bus in buses) devices[d++] = HostBridge(p, bus);
        for (int link = 0; link < PlatformLayout.PciGsiCount; link++) devices[d++] = LinkDevice(link);
        devices[d] = MotherboardResources(p.Ecam);
        var body = A.Concat(
            // The OS calls \_PIC(1) once it uses the IOAPIC; until then (and for good with `noapic`) it routes INTx
            // through the 8259, and _PRT must name the link devices instead of GSIs.
            A.NameObject(InterruptModel, A.Integer(0)),
            A.Method("\\_PIC", 1, A.Store(A.Arg(0), A.Ref(InterruptModel))),
            A.Scope("\\_SB", devices),
            A.NameObject("\\_S5", A.Package(A.Integer(PlatformLayout.SlpTypS5), A.Integer(PlatformLayout.SlpTypS5), A.Integer(0), A.Integer(0))));
        return new AcpiTable("DSDT", 2, "XHYVEDSD").Bytes(body).Finish();
    }

    /// <summary>Where \_PIC keeps the interrupt model the OS chose: 0 = 8259 PIC, 1 = IOAPIC.</summary>
    private const string InterruptModel = "\\PICM";

    /// <summary>The link device of PCI GSI <c>FirstPciGsi + index</c>: LNKA for GSI 16 ... LNKH for GSI 23.</summary>
    public static string LinkName(int index) => $"LNK{(char)('A' + index)}";

    /// <summary>A PCI interrupt link (PNP0C0F) for one PCI GSI. The platform wires each PCI GSI to one 8259 input
    /// (<see cref="PlatformLayout.PciPicIrq"/>), so the link offers exactly that IRQ: level-triggered, shareable,
    /// active high (the in-kernel PIC sees the line as the device drives it). _SRS cannot move it and _DIS cannot cut
    /// it; they only keep _STA truthful about what the OS asked.</summary>
    private static byte[] LinkDevice(int index)
    {
        int irq = PlatformLayout.PciPicIrq(PlatformLayout.FirstPciGsi + index);
        const ulong enabled = 0x0B, disabled = 0x09;     // present, functioning; enabled or not
        return A.Device(LinkName(index),
            A.NameObject("_HID", A.EisaId("PNP0C0F")),
            A.NameObject("_UID", A.Integer((ulong)index + 1)),
            A.NameObject("STAT", A.Integer(enabled)),
            A.Method("_STA", 0, A.Return(A.Ref("STAT"))),
            A.NameObject("_PRS", Resources.Template(Resources.SharedLevelInterrupt(irq))),
            A.Method("_CRS", 0, A.Return(Resources.Template(Resources.SharedLevelInterrupt(irq)))),
            A.Method("_SRS", 1, A.Store(A.Integer(enabled), A.Ref("STAT"))),
            A.Method("_DIS", 0, A.Store(A.Integer(disabled), A.Ref("STAT"))));
    }

    /// <summary>The PCI Firmware spec's _OSC UUID for PCI/PCIe host bridges (§4.5.1).</summary>
    public static readonly Guid PciHostBridgeOsc = Guid.Parse("33DB4D5B-1FF7-401C-9657-7441C03DD766");

    /// <summary>The _OSC control bits (PCI Firmware spec §4.5.1, third dword) the platform grants the OS: PME (2),
    /// AER (3) and the PCIe capability structure (4). Not native hot plug (0) or SHPC (1): no slot here can hot plug.</summary>
    public const uint OscGrantedControl = (1u << 2) | (1u << 3) | (1u << 4);

    /// <summary>_OSC for a host bridge: CDW1 reports an unknown UUID (bit 2) or revision (bit 3); CDW3 keeps only
    /// the controls granted, with bit 4 of CDW1 set when some were masked.</summary>
    private static byte[] OscMethod() => A.Method("_OSC", 4,
        A.CreateDWordField(A.Arg(3), 0, "CDW1"),
        A.If(A.LEqual(A.Arg(0), A.Uuid(PciHostBridgeOsc)),
            A.CreateDWordField(A.Arg(3), 8, "CDW3"),
            A.If(A.LNot(A.LEqual(A.Arg(1), A.Integer(1))), A.Or(A.Ref("CDW1"), A.Integer(0x08), A.Ref("CDW1"))),
            A.And(A.Ref("CDW3"), A.Integer(OscGrantedControl), A.Local(0)),
            A.If(A.LNot(A.LEqual(A.Ref("CDW3"), A.Local(0))), A.Or(A.Ref("CDW1"), A.Integer(0x10), A.Ref("CDW1"))),
            A.Store(A.Local(0), A.Ref("CDW3")),
            A.Return(A.Arg(3))),
        A.Or(A.Ref("CDW1"), A.Integer(0x04), A.Ref("CDW1")),
        A.Return(A.Arg(3)));

    /// <summary>\_SB.PRTA (slot/pin to GSI, for APIC mode) and \_SB.PRTP (slot/pin to link device, for PIC mode).</summary>
    private static byte[][] RoutingTables()
    {
        byte[] Table(Func<int, byte[]> source, Func<int, ulong> index)
        {
            var entries = new byte[32 * 4][];
            for (int slot = 0; slot < 32; slot++)
                for (int pin = 0; pin < 4; pin++)
                {
                    int gsi = PlatformLayout.PciGsi(slot, pin);
                    entries[slot * 4 + pin] = A.Package(A.DWord(((uint)slot << 16) | 0xFFFF), A.Integer((ulong)pin), source(gsi), A.Integer(index(gsi)));
                }
            return A.Package(entries);
        }
        return
        [
            A.NameObject("PRTA", Table(_ => A.Integer(0), gsi => (ulong)gsi)),
            A.NameObject("PRTP", Table(gsi => A.Ref("\\_SB." + LinkName(gsi - PlatformLayout.FirstPciGsi)), _ => 0)),
        ];
    }

    /// <summary>A host bridge's _PRT: the GSI table in APIC mode, the link table in PIC mode.</summary>
    private static byte[] RoutingMethod() =>
        A.Method("_PRT", 0, A.If(A.Ref(InterruptModel), A.Return(A.Ref("\\_SB.PRTA"))), A.Return(A.Ref("\\_SB.PRTP")));

    /// <summary>A PNP0C02 device that claims the MCFG's ECAM window: Linux uses MMCONFIG only when
    /// the window is reserved by such a motherboard device (or in e820), otherwise it falls back to 0xCF8.</summary>
    private static byte[] MotherboardResources(EcamWindow ecam)
    {
        if (ecam.End > uint.MaxValue) throw new InvalidOperationException("the ECAM window must lie below 4 GiB for Memory32Fixed");
        return A.Device("MRES",
            A.NameObject("_HID", A.EisaId("PNP0C02")),
            A.NameObject("_UID", A.Integer(0)),
            A.NameObject("_CRS", Resources.Template(Resources.Memory32Fixed(true, (uint)ecam.Start, (uint)ecam.Size))));
    }

    private static byte[] HostBridge(PlatformDescription p, PciBusWindows w)
    {
        bool root = w.Bus == 0;
        var (firstBus, lastBus) = p.BusRange(w);
        var resources = new List<byte[]> { Resources.WordBusNumber((ushort)firstBus, (ushort)lastBus) };
        if (root)
        {
            // Bus 0 also decodes the configuration ports, the legacy I/O below them and the VGA hole.
            resources.Add(Resources.Io(0xCF8, 0xCF8, 1, 8));
            resources.Add(Resources.WordIo(0x0000, 0x0CF7));
            resources.Add(Resources.DWordMemory(0x000A_0000, 0x000B_FFFF));
        }
        resources.Add(Resources.WordIo(root ? (ushort)0x0D00 : w.IoStart, w.IoEnd));
        resources.Add(Resources.DWordMemory(w.Mmio32Start, w.Mmio32End));
        resources.Add(Resources.QWordMemory(w.Mmio64Start, w.Mmio64End));
        List<byte[]> terms =
        [
            A.NameObject("_HID", A.EisaId(root ? "PNP0A08" : "PNP0A03")),
            A.NameObject("_CID", A.EisaId("PNP0A03")),
            A.NameObject("_ADR", A.Integer(0)),
            A.NameObject("_UID", A.Integer((ulong)w.Bus)),
            A.NameObject("_BBN", A.Integer((ulong)w.Bus)),
            A.NameObject("_SEG", A.Integer(0)),
            A.NameObject("_CRS", Resources.Template(resources.ToArray())),
            OscMethod(),
            RoutingMethod(),
        ];
        if (root && p.HasLpc) terms.Add(LpcDevice(p));
        return A.Device(root ? "PCI0" : $"PC{w.Bus:X2}", terms.ToArray());
    }

    private static byte[] LpcDevice(PlatformDescription p)
    {
        static byte[] Com(string name, int uid, ushort port, int irq) => A.Device(name,
            A.NameObject("_HID", A.EisaId("PNP0501")),
            A.NameObject("_UID", A.Integer((ulong)uid)),
            A.NameObject("_CRS", Resources.Template(Resources.Io(port, port, 1, 8), Resources.IrqNoFlags(irq))));
        return A.Device("ISA",
            A.NameObject("_ADR", A.Integer(((ulong)(uint)p.LpcSlot << 16) | (uint)p.LpcFunction)),
            Com("COM1", 1, X86Layout.Com1Port, X86Layout.Com1Irq),
            Com("COM2", 2, X86Layout.Com2Port, X86Layout.Com2Irq),
            A.Device("RTC",
                A.NameObject("_HID", A.EisaId("PNP0B00")),
                A.NameObject("_CRS", Resources.Template(Resources.Io(X86Layout.RtcPort, X86Layout.RtcPort, 1, 2), Resources.IrqNoFlags(X86Layout.RtcIrq)))),
            A.Device("HPET",
                A.NameObject("_HID", A.EisaId("PNP0103")),
                A.NameObject("_UID", A.Integer(0)),
                A.NameObject("_CRS", Resources.Template(Resources.Memory32Fixed(false, (uint)PlatformLayout.HpetBase, 0x400)))),
            A.Device("KBC",
                // The 8042 is there for its reset line; no keyboard is attached.
                A.NameObject("_HID", A.EisaId("PNP0303")),
                A.NameObject("_STA", A.Integer(0x0B)),
                A.NameObject("_CRS", Resources.Template(Resources.Io(X86Layout.I8042DataPort, X86Layout.I8042DataPort, 1, 1),
                    Resources.Io(X86Layout.I8042CommandPort, X86Layout.I8042CommandPort, 1, 1)))));
    }
}
