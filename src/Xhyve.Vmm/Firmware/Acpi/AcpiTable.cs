using System.Buffers.Binary;
using System.Text;

namespace Xhyve.Vmm.Firmware.Acpi;

/// <summary>Builds one ACPI system description table: the 36-byte header (ACPI 6.4 §5.2.6), a body,
/// then the length and a checksum that makes all bytes sum to zero.</summary>
public sealed class AcpiTable
{
    public const string OemId = "XHYVE ";
    public const int HeaderSize = 36;
    private readonly List<byte> _bytes = new();

    public string Signature { get; }

    public AcpiTable(string signature, byte revision, string oemTableId)
    {
        if (signature.Length != 4) throw new ArgumentException("ACPI signatures have 4 characters", nameof(signature));
        Signature = signature;
        _bytes.AddRange(Encoding.ASCII.GetBytes(signature));
        _bytes.AddRange(new byte[4]);                                         // length, set in Finish
        _bytes.Add(revision);
        _bytes.Add(0);                                                        // checksum, set in Finish
        _bytes.AddRange(Encoding.ASCII.GetBytes(OemId));
        _bytes.AddRange(Encoding.ASCII.GetBytes(oemTableId.PadRight(8)[..8]));
        _bytes.AddRange(BitConverter.GetBytes(1u));                           // OEM revision
        _bytes.AddRange(Encoding.ASCII.GetBytes("XHYV"));                     // creator id
        _bytes.AddRange(BitConverter.GetBytes(1u));                           // creator revision
    }

    public int Length => _bytes.Count;

    public AcpiTable Bytes(ReadOnlySpan<byte> data) { foreach (var b in data) _bytes.Add(b); return this; }
    public AcpiTable U8(byte v) { _bytes.Add(v); return this; }
    public AcpiTable U16(ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); return Bytes(b); }
    public AcpiTable U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return Bytes(b); }
    public AcpiTable U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return Bytes(b); }
    public AcpiTable Zeros(int n) { for (int i = 0; i < n; i++) _bytes.Add(0); return this; }

    /// <summary>A Generic Address Structure (§5.2.3.2).</summary>
    public AcpiTable Gas(byte addressSpace, byte bitWidth, byte bitOffset, byte accessSize, ulong address) =>
        U8(addressSpace).U8(bitWidth).U8(bitOffset).U8(accessSize).U64(address);

    public byte[] Finish()
    {
        var table = _bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(4), (uint)table.Length);
        table[9] = Checksum.For(table);
        return table;
    }
}

public static class Checksum
{
    /// <summary>The byte that makes the sum of <paramref name="data"/> (with the checksum byte zero) zero mod 256.</summary>
    public static byte For(ReadOnlySpan<byte> data)
    {
        int sum = 0;
        foreach (var b in data) sum += b;
        return (byte)(-sum);
    }

    public static bool IsValid(ReadOnlySpan<byte> data)
    {
        int sum = 0;
        foreach (var b in data) sum += b;
        return (byte)sum == 0;
    }
}
