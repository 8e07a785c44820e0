using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Firmware.Smbios;

/// <summary>
/// SMBIOS 2.8 (DMTF DSP0134): the 32-bit entry point and structures of types 0 (BIOS), 1 (system, with
/// the VM's UUID), 3 (chassis), 4 (one per vCPU), 16, 17, 19 (memory), 32 (boot) and 127 (end).
/// </summary>
public static class SmbiosTables
{
    /// <summary>The most of the VM's name that goes into the type 1 SKU string: the string is informational
    /// and the whole table must fit its area below 1 MiB, so a longer name is cut there (not refused).</summary>
    public const int MaxNameLength = 64;

    /// <summary>The entry point and structures, to be placed at <paramref name="address"/> with room up to
    /// <paramref name="end"/>. When one type 4 per vCPU with its three strings does not fit (about 850
    /// vCPUs and up), the processors carry only their socket string; what still does not fit is refused.</summary>
    public static byte[] Build(PlatformDescription p, Guid uuid, string vmName, ulong address, ulong end = PlatformLayout.SmbiosEnd)
    {
        var area = new FirmwareArea("SMBIOS", address, end);
        // The 2.x entry point gives the structure table's length in 16 bits.
        bool Fits(byte[] b) => area.Fits(address, b.Length) && b.Length - 32 <= ushort.MaxValue;
        var full = Build(p, uuid, vmName, address, compactProcessors: false);
        if (Fits(full)) return full;
        var compact = Build(p, uuid, vmName, address, compactProcessors: true);
        if (Fits(compact)) return compact;
        throw new FirmwareTableTooLargeException(area, $"-c {p.Vcpus}: the SMBIOS tables ({compact.Length} bytes)");
    }

    private static byte[] Build(PlatformDescription p, Guid uuid, string vmName, ulong address, bool compactProcessors)
    {
        if (vmName.Length > MaxNameLength) vmName = vmName[..MaxNameLength];
        var structures = new List<byte[]>();
        ushort handle = 0;
        ushort Next() => handle++;

        structures.Add(Structure(0, Next(), [
            1, 2, 0x00, 0xF0, 3, 0,                                 // vendor, version, segment F000, date, ROM size
            0x08, 0, 0, 0, 0, 0, 0, 0,                              // characteristics: not supported
            0x00, 0x10,                                             // extension byte 2 bit 4: a virtual machine
            0, 1, 0xFF, 0xFF], ["XhyvePS", BuildInfo.Version, "11/21/2026"]));

        var system = new byte[23];
        system[0] = 1; system[1] = 2; system[2] = 3; system[3] = 4;  // manufacturer, product, version, serial
        uuid.TryWriteBytes(system.AsSpan(4));                          // SMBIOS 2.6+: first three fields little-endian
        system[20] = 6;                                                // wake-up: power switch
        system[21] = 5; system[22] = 6;                                // SKU, family
        structures.Add(Structure(1, Next(), system, ["XhyvePS", "xhyve", BuildInfo.Version, uuid.ToString(), vmName, "Virtual Machine"]));

        // Chassis: type "other", states "safe", no serial, asset tag or SKU strings.
        structures.Add(Structure(3, Next(), [1, 0x01, 2, 0, 0, 3, 3, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["XhyvePS", BuildInfo.Version]));

        for (int i = 0; i < p.Vcpus; i++)
        {
            var cpu = new byte[38];
            cpu[0] = 1; cpu[1] = 3; cpu[2] = 0x01;                       // socket, central processor, family other
            if (!compactProcessors) { cpu[3] = 2; cpu[12] = 3; }         // manufacturer and version strings
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(16), 2000);  // max speed, MHz (nominal)
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(18), 2000);  // current speed
            cpu[20] = 0x41;                                              // socket populated, CPU enabled
            cpu[21] = 0x01;                                              // upgrade: other
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(22), 0xFFFF); // no L1/L2/L3 cache structures
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(24), 0xFFFF);
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(26), 0xFFFF);
            cpu[31] = 1; cpu[32] = 1; cpu[33] = 1;                       // core count, enabled, threads
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(34), 0x04); // 64-bit capable
            BinaryPrimitives.WriteUInt16LittleEndian(cpu.AsSpan(36), 0x01);
            structures.Add(Structure(4, Next(), cpu, compactProcessors ? [$"CPU {i}"] : [$"CPU {i}", "XhyvePS", "Virtual CPU"]));
        }

        ulong total = p.LowMemoryBytes + p.HighMemoryBytes;
        ushort arrayHandle = Next();
        var array = new byte[19];
        array[0] = 0x01; array[1] = 0x03; array[2] = 0x03;                          // other, system memory, no ECC
        BinaryPrimitives.WriteUInt32LittleEndian(array.AsSpan(3), 0x8000_0000);     // see extended capacity
        BinaryPrimitives.WriteUInt16LittleEndian(array.AsSpan(7), 0xFFFE);
        BinaryPrimitives.WriteUInt16LittleEndian(array.AsSpan(9), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(array.AsSpan(11), total);
        structures.Add(Structure(16, arrayHandle, array, []));

        var dimm = new byte[36];
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(0), arrayHandle);
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(2), 0xFFFE);
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(4), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(6), 64);
        ulong mib = total >> 20;
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(8), mib < 0x7FFF ? (ushort)mib : (ushort)0x7FFF);
        dimm[10] = 0x09; dimm[12] = 1; dimm[13] = 2; dimm[14] = 0x07;              // DIMM, locators, RAM
        BinaryPrimitives.WriteUInt16LittleEndian(dimm.AsSpan(15), 0x02);
        dimm[19] = 3;
        BinaryPrimitives.WriteUInt32LittleEndian(dimm.AsSpan(24), mib < 0x7FFF ? 0 : (uint)mib);
        structures.Add(Structure(17, Next(), dimm, ["DIMM 0", "BANK 0", "XhyvePS"]));

        foreach (var (regionStart, size) in new[] { (0UL, p.LowMemoryBytes), (Boot.X86Layout.FourGiB, p.HighMemoryBytes) })
        {
            if (size == 0) continue;
            var map = new byte[27];
            ulong first = regionStart, last = regionStart + size - 1;
            bool extended = last >> 10 >= 0xFFFF_FFFF;
            BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(0), extended ? 0xFFFF_FFFF : (uint)(first >> 10));
            BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(4), extended ? 0xFFFF_FFFF : (uint)(last >> 10));
            BinaryPrimitives.WriteUInt16LittleEndian(map.AsSpan(8), arrayHandle);
            map[10] = 1;
            if (extended) { BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(11), first); BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(19), last); }
            structures.Add(Structure(19, Next(), map, []));
        }

        structures.Add(Structure(32, Next(), [0, 0, 0, 0, 0, 0, 0], []));
        structures.Add(Structure(127, Next(), [], []));

        var table = ByteArrays.Concat(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(structures));
        var entry = new byte[31];
        "_SM_"u8.CopyTo(entry);
        entry[5] = 31; entry[6] = 2; entry[7] = 8;
        BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(8), (ushort)structures.Max(s => s.Length));
        "_DMI_"u8.CopyTo(entry.AsSpan(16));
        BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(22), (ushort)table.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(24), (uint)(address + 32));
        BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(28), (ushort)structures.Count);
        entry[30] = 0x28;
        entry[21] = Checksum.For(entry.AsSpan(16, 15));
        entry[4] = Checksum.For(entry);
        var result = new byte[32 + table.Length];
        entry.CopyTo(result, 0);
        table.CopyTo(result, 32);
        return result;
    }

    /// <summary>Header (type, length, handle), formatted area, then the string set (double NUL when empty).</summary>
    private static byte[] Structure(byte type, ushort handle, byte[] formatted, string[] strings)
    {
        var b = new List<byte> { type, (byte)(4 + formatted.Length), (byte)handle, (byte)(handle >> 8) };
        b.AddRange(formatted);
        foreach (var s in strings) { b.AddRange(Encoding.ASCII.GetBytes(s.Length == 0 ? " " : s)); b.Add(0); }
        if (strings.Length == 0) b.Add(0);
        b.Add(0);
        return b.ToArray();
    }

    /// <summary>
    /// The UUID used when -U is absent (as bhyve derives one from the VM and host names): stable for a VM
    /// name on a host, different across names and hosts. Not a security property, so a 128-bit FNV-1a
    /// (two 64-bit lanes) serves; SHA-1 would load OpenSSL, ~6 MiB of RSS for one hash at start-up.
    /// Marked as an RFC 9562 version 8 (custom) UUID.
    /// </summary>
    public static Guid DefaultUuid(string vmName, string hostName)
    {
        const ulong prime = 0x0000_0100_0000_01B3;
        ulong a = 0xCBF2_9CE4_8422_2325, b = 0x6C62_272E_07BB_0142;
        foreach (byte x in Encoding.UTF8.GetBytes($"xhyve:{hostName}:{vmName}"))
        {
            a = unchecked((a ^ x) * prime);
            b = unchecked((b ^ (byte)~x) * prime);
        }
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, a);
        BinaryPrimitives.WriteUInt64BigEndian(bytes[8..], b);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x80);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes, bigEndian: true);
    }
}
