using System.Buffers.Binary;
using Xhyve.Vmm.Firmware.FwCfg;

namespace Xhyve.Vmm.Firmware.Acpi;

/// <summary>The ACPI tables as firmware takes them over fw_cfg: every table but the RSDP in one blob, the RSDP
/// alone, pointers as offsets into the tables blob, and the loader commands that place and link them.</summary>
public sealed record AcpiFwCfgFiles(byte[] Tables, byte[] Rsdp);

/// <summary>
/// Turns the tables <see cref="AcpiTables.Build"/> placed at fixed addresses into QEMU's relocatable form:
/// "etc/acpi/tables" (allocated high, 64-byte aligned for the FACS) and "etc/acpi/rsdp" (allocated in the
/// F-segment), with an ADD_POINTER for each pointer field (RSDP to RSDT/XSDT, the RSDT/XSDT entries, FADT to
/// FACS/DSDT in both widths) and an ADD_CHECKSUM for each checksum. The same build is used, so the tables
/// SeaBIOS or OVMF install are byte for byte those a -A guest finds below 1 MiB, apart from addresses.
/// </summary>
public static class AcpiTableLoader
{
    public const string TablesFile = "etc/acpi/tables", RsdpFile = "etc/acpi/rsdp";
    public const uint TablesAlignment = 64, RsdpAlignment = 16;
    private const string RsdpSignature = "RSD PTR ";

    public static AcpiFwCfgFiles Build(IReadOnlyList<PlacedTable> placed, TableLoader loader)
    {
        var rsdpTable = placed.Single(t => t.Signature == RsdpSignature);
        var tables = placed.Where(t => t.Signature != RsdpSignature).OrderBy(t => t.Address).ToList();
        ulong start = tables[0].Address & ~(ulong)(TablesAlignment - 1);
        ulong end = tables.Max(t => t.Address + (ulong)t.Bytes.Length);
        var blob = new byte[end - start];
        foreach (var t in tables) t.Bytes.CopyTo(blob, (int)(t.Address - start));
        var rsdp = (byte[])rsdpTable.Bytes.Clone();

        loader.Allocate(TablesFile, TablesAlignment, TableLoaderZone.High);
        loader.Allocate(RsdpFile, RsdpAlignment, TableLoaderZone.FSeg);

        // A pointer field holds the offset of its target in the tables blob; the firmware adds the blob's address.
        void Pointer(string file, byte[] bytes, int at, int size)
        {
            var field = bytes.AsSpan(at, size);
            ulong value = size == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(field) : BinaryPrimitives.ReadUInt64LittleEndian(field);
            if (value == 0) return;   // an absent table (e.g. no 32-bit copy of a pointer)
            if (!tables.Any(t => t.Address == value))
                throw new InvalidOperationException($"ACPI pointer at {file}+{at} (0x{value:X}) does not point at a table");
            if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(field, (uint)(value - start));
            else BinaryPrimitives.WriteUInt64LittleEndian(field, value - start);
            loader.AddPointer(file, TablesFile, (uint)at, (byte)size);
        }

        foreach (var t in tables)
        {
            int at = (int)(t.Address - start);
            switch (t.Signature)
            {
                case "FACP":
                    Pointer(TablesFile, blob, at + 36, 4);      // FIRMWARE_CTRL (FACS)
                    Pointer(TablesFile, blob, at + 40, 4);      // DSDT
                    if (t.Bytes.Length >= 148)
                    {
                        Pointer(TablesFile, blob, at + 132, 8); // X_FIRMWARE_CTRL
                        Pointer(TablesFile, blob, at + 140, 8); // X_DSDT
                    }
                    break;
                case "XSDT":
                    for (int e = AcpiTable.HeaderSize; e + 8 <= t.Bytes.Length; e += 8) Pointer(TablesFile, blob, at + e, 8);
                    break;
                case "RSDT":
                    for (int e = AcpiTable.HeaderSize; e + 4 <= t.Bytes.Length; e += 4) Pointer(TablesFile, blob, at + e, 4);
                    break;
            }
        }
        Pointer(RsdpFile, rsdp, 16, 4);   // RsdtAddress
        Pointer(RsdpFile, rsdp, 24, 8);   // XsdtAddress

        // Checksums last: they cover the patched pointers. The loader expects the checksum bytes zero.
        foreach (var t in tables)
        {
            if (t.Signature == "FACS") continue;   // the FACS has no checksum
            int at = (int)(t.Address - start);
            blob[at + 9] = 0;
            loader.AddChecksum(TablesFile, (uint)(at + 9), (uint)at, (uint)t.Bytes.Length);
        }
        rsdp[8] = 0;
        rsdp[32] = 0;
        loader.AddChecksum(RsdpFile, 8, 0, 20);
        loader.AddChecksum(RsdpFile, 32, 0, (uint)rsdp.Length);
        return new AcpiFwCfgFiles(blob, rsdp);
    }
}
