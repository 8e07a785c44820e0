using System.Buffers.Binary;
using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Firmware.Smbios;

/// <summary>
/// The SMBIOS tables as firmware takes them over fw_cfg ("etc/smbios/smbios-anchor" and
/// "etc/smbios/smbios-tables", as QEMU hands them): the 31-byte 2.x entry point with a zero structure table
/// address (the firmware places the structures and fills it in) and the structures alone.
/// </summary>
public static class SmbiosFwCfg
{
    public const string AnchorFile = "etc/smbios/smbios-anchor", TablesFile = "etc/smbios/smbios-tables";
    private const int EntryPointLength = 31, StructuresOffset = 32;

    /// <summary>Splits what <see cref="SmbiosTables.Build(PlatformDescription, Guid, string, ulong, ulong)"/> returned.</summary>
    public static (byte[] Anchor, byte[] Tables) Split(byte[] built)
    {
        var anchor = built.AsSpan(0, EntryPointLength).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(anchor.AsSpan(24), 0);
        anchor[21] = 0;
        anchor[21] = Checksum.For(anchor.AsSpan(16, 15));
        anchor[4] = 0;
        anchor[4] = Checksum.For(anchor);
        return (anchor, built.AsSpan(StructuresOffset).ToArray());
    }
}
