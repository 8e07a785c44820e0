using System.Buffers.Binary;
using System.Text;

namespace Xhyve.Vmm.Firmware.FwCfg;

/// <summary>Where firmware allocates a blob: anywhere high in RAM, or in the 0xE0000-0xFFFFF F-segment (where the RSDP must be).</summary>
public enum TableLoaderZone : byte { High = 1, FSeg = 2 }

/// <summary>
/// The "etc/table-loader" script (QEMU's BIOSLinker format, which SeaBIOS and OVMF execute): 128-byte
/// little-endian commands that allocate fw_cfg files in guest RAM, patch pointers between them and fill
/// checksums, so tables built without knowing their address end up linked where the firmware put them.
/// </summary>
public sealed class TableLoader
{
    public const string FileName = "etc/table-loader";
    public const int CommandSize = 128;
    public const uint CommandAllocate = 1, CommandAddPointer = 2, CommandAddChecksum = 3;

    private readonly List<byte[]> _commands = new();

    public int Count => _commands.Count;

    /// <summary>ALLOCATE: load file <paramref name="file"/> into RAM at an address aligned to <paramref name="alignment"/> (a power of two).</summary>
    public TableLoader Allocate(string file, uint alignment, TableLoaderZone zone)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(alignment), "must be a power of two");
        var c = Command(CommandAllocate);
        Name(c.AsSpan(4), file);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(60), alignment);
        c[64] = (byte)zone;
        return Add(c);
    }

    /// <summary>ADD_POINTER: the <paramref name="size"/>-byte little-endian value at <paramref name="offset"/> in
    /// <paramref name="destination"/> (an offset into <paramref name="source"/>) gets the address <paramref name="source"/> was loaded at added.</summary>
    public TableLoader AddPointer(string destination, string source, uint offset, byte size)
    {
        if (size is not (1 or 2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(size), "must be 1, 2, 4 or 8");
        var c = Command(CommandAddPointer);
        Name(c.AsSpan(4), destination);
        Name(c.AsSpan(60), source);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(116), offset);
        c[120] = size;
        return Add(c);
    }

    /// <summary>ADD_CHECKSUM: the byte at <paramref name="resultOffset"/> (zero in the file) becomes the value
    /// that makes bytes [<paramref name="start"/>, start + <paramref name="length"/>) of <paramref name="file"/> sum to zero.</summary>
    public TableLoader AddChecksum(string file, uint resultOffset, uint start, uint length)
    {
        var c = Command(CommandAddChecksum);
        Name(c.AsSpan(4), file);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(60), resultOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(64), start);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(68), length);
        return Add(c);
    }

    /// <summary>The script as the file's bytes.</summary>
    public byte[] ToArray() => ByteArrays.Concat(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_commands));

    private TableLoader Add(byte[] command) { _commands.Add(command); return this; }

    private static byte[] Command(uint kind)
    {
        var c = new byte[CommandSize];
        BinaryPrimitives.WriteUInt32LittleEndian(c, kind);
        return c;
    }

    private static void Name(Span<byte> field, string name)
    {
        if (name.Length >= 56) throw new ArgumentException($"fw_cfg file name '{name}' is too long for a loader command", nameof(name));
        Encoding.ASCII.GetBytes(name, field);
    }
}
