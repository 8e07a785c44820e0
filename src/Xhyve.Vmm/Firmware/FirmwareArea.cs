using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Firmware;

/// <summary>
/// The guest-physical range reserved for one kind of firmware table (all below 1 MiB, e820-reserved).
/// Every table write goes through <see cref="Write"/>, so a table that outgrew its range is our own error
/// instead of bytes over the next table or the kernel at 1 MiB.
/// </summary>
public sealed record FirmwareArea(string Name, ulong Start, ulong End)
{
    public static readonly FirmwareArea Acpi = new("ACPI tables", PlatformLayout.AcpiTablesStart, PlatformLayout.AcpiTablesEnd);
    public static readonly FirmwareArea Rsdp = new("ACPI RSDP", PlatformLayout.Rsdp, PlatformLayout.MpFloatingPointer);
    public static readonly FirmwareArea MpTable = new("MP table", PlatformLayout.MpFloatingPointer, PlatformLayout.SmbiosEntryPoint);
    public static readonly FirmwareArea Smbios = new("SMBIOS", PlatformLayout.SmbiosEntryPoint, PlatformLayout.SmbiosEnd);

    public ulong Capacity => End - Start;

    public bool Fits(ulong address, int length) => address >= Start && address <= End && (ulong)length <= End - address;

    /// <summary>Writes a table, refusing any byte outside the area.</summary>
    public void Write(IGuestMemory memory, ulong address, byte[] bytes)
    {
        if (!Fits(address, bytes.Length))
            throw new FirmwareTableTooLargeException(this, $"{bytes.Length} bytes at 0x{address:X}");
        memory.WriteExactly(new GuestAddress(address), bytes);
    }

    public override string ToString() => $"{Name} area 0x{Start:X}-0x{End - 1:X} ({Capacity} bytes)";
}

/// <summary>A firmware table does not fit the area reserved for it.</summary>
public sealed class FirmwareTableTooLargeException(FirmwareArea area, string what)
    : InvalidOperationException($"{what} do not fit the {area}")
{
    public FirmwareArea Area => area;
}
