using System.Buffers.Binary;
using System.Text;

namespace Xhyve.Vmm.Firmware.Acpi.Aml;

/// <summary>
/// An encoder for the subset of AML (ACPI 6.4, chapter 20) the DSDT needs: names, scopes, devices,
/// packages, integers, strings, buffers and resource templates. Each method returns the encoded bytes
/// of one term so definitions compose like ASL.
/// </summary>
public static class Aml
{
    private const byte ZeroOp = 0x00, OneOp = 0x01, NameOp = 0x08, BytePrefix = 0x0A, WordPrefix = 0x0B,
        DWordPrefix = 0x0C, StringPrefix = 0x0D, QWordPrefix = 0x0E, ScopeOp = 0x10, BufferOp = 0x11,
        PackageOp = 0x12, MethodOp = 0x14, DualNamePrefix = 0x2E, MultiNamePrefix = 0x2F, ExtOpPrefix = 0x5B,
        DeviceOp = 0x82, ReturnOp = 0xA4, OnesOp = 0xFF, Local0Op = 0x60, Arg0Op = 0x68, StoreOp = 0x70,
        AndOp = 0x7B, OrOp = 0x7D, CreateDWordFieldOp = 0x8A, LNotOp = 0x92, LEqualOp = 0x93, IfOp = 0xA0, ElseOp = 0xA1,
        NullTarget = 0x00;

    /// <summary>PkgLength (§20.2.4): the length of what follows plus the encoding itself, in 1 to 4 bytes.</summary>
    public static byte[] PkgLength(int contentLength)
    {
        for (int n = 1; n <= 4; n++)
        {
            int total = contentLength + n;
            if (n == 1 && total < 0x40) return [(byte)total];
            if (n > 1 && total < 1 << (4 + 8 * (n - 1)))
            {
                var b = new byte[n];
                b[0] = (byte)(((n - 1) << 6) | (total & 0x0F));
                for (int i = 1; i < n; i++) b[i] = (byte)(total >> (4 + 8 * (i - 1)));
                return b;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(contentLength), "AML package longer than 2^28 bytes");
    }

    /// <summary>A NameString: "\_SB.PCI0", "COM1", "^FOO". Segments shorter than 4 characters are padded with '_'.</summary>
    public static byte[] Name(string path)
    {
        var bytes = new List<byte>();
        int i = 0;
        if (path.StartsWith('\\')) { bytes.Add((byte)'\\'); i = 1; }
        while (i < path.Length && path[i] == '^') { bytes.Add((byte)'^'); i++; }
        var segments = path[i..].Length == 0 ? [] : path[i..].Split('.');
        if (segments.Length == 2) bytes.Add(DualNamePrefix);
        else if (segments.Length > 2) { bytes.Add(MultiNamePrefix); bytes.Add((byte)segments.Length); }
        else if (segments.Length == 0) bytes.Add(0x00); // NullName
        foreach (var s in segments) bytes.AddRange(NameSeg(s));
        return bytes.ToArray();
    }

    private static byte[] NameSeg(string s)
    {
        if (s.Length is 0 or > 4) throw new ArgumentException($"AML name segment '{s}' must have 1 to 4 characters");
        foreach (char c in s)
            if (!(c is >= 'A' and <= 'Z' or >= '0' and <= '9' or '_')) throw new ArgumentException($"AML name segment '{s}' has an invalid character");
        if (s[0] is >= '0' and <= '9') throw new ArgumentException($"AML name segment '{s}' starts with a digit");
        return Encoding.ASCII.GetBytes(s.PadRight(4, '_'));
    }

    /// <summary>An integer with the shortest encoding (Zero, One, Ones, Byte/Word/DWord/QWord).</summary>
    public static byte[] Integer(ulong value)
    {
        if (value == 0) return [ZeroOp];
        if (value == 1) return [OneOp];
        if (value == ulong.MaxValue) return [OnesOp];
        if (value <= byte.MaxValue) return [BytePrefix, (byte)value];
        if (value <= ushort.MaxValue) return [WordPrefix, (byte)value, (byte)(value >> 8)];
        if (value <= uint.MaxValue) { var b = new byte[5]; b[0] = DWordPrefix; BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(1), (uint)value); return b; }
        var q = new byte[9]; q[0] = QWordPrefix; BinaryPrimitives.WriteUInt64LittleEndian(q.AsSpan(1), value); return q;
    }

    /// <summary>A DWord constant even when shorter encodings exist (for values patched or compared as 32 bits).</summary>
    public static byte[] DWord(uint value) { var b = new byte[5]; b[0] = DWordPrefix; BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(1), value); return b; }

    public static byte[] String(string s) => [StringPrefix, .. Encoding.ASCII.GetBytes(s), 0];

    /// <summary>EISAID("PNP0A03"): three letters packed 5 bits each, then four hex digits (§19.6.35).</summary>
    public static byte[] EisaId(string id)
    {
        if (id.Length != 7 || !id[..3].All(c => c is >= 'A' and <= 'Z') || !id[3..].All(Uri.IsHexDigit))
            throw new ArgumentException($"'{id}' is not an EISA id (three capitals and four hex digits)");
        int Hex(char c) => Convert.ToInt32(c.ToString(), 16);
        byte b0 = (byte)(((id[0] - 0x40) << 2) | ((id[1] - 0x40) >> 3));
        byte b1 = (byte)((((id[1] - 0x40) & 0x7) << 5) | (id[2] - 0x40));
        byte b2 = (byte)((Hex(id[3]) << 4) | Hex(id[4]));
        byte b3 = (byte)((Hex(id[5]) << 4) | Hex(id[6]));
        return DWord(BinaryPrimitives.ReadUInt32LittleEndian([b0, b1, b2, b3]));
    }

    /// <summary>Name(NAME, value)</summary>
    public static byte[] NameObject(string name, byte[] value) => [NameOp, .. Name(name), .. value];

    /// <summary>Scope(NAME) { terms }</summary>
    public static byte[] Scope(string name, params byte[][] terms) => WithPkg([ScopeOp], [.. Name(name), .. Concat(terms)]);

    /// <summary>Device(NAME) { terms }</summary>
    public static byte[] Device(string name, params byte[][] terms) => WithPkg([ExtOpPrefix, DeviceOp], [.. Name(name), .. Concat(terms)]);

    /// <summary>Package() { elements }</summary>
    public static byte[] Package(params byte[][] elements)
    {
        if (elements.Length > 255) throw new ArgumentException("AML Package with more than 255 elements needs VarPackage");
        return WithPkg([PackageOp], [(byte)elements.Length, .. Concat(elements)]);
    }

    /// <summary>Buffer() { bytes }</summary>
    public static byte[] Buffer(byte[] data) => WithPkg([BufferOp], [.. Integer((ulong)data.Length), .. data]);

    /// <summary>Method(NAME, 0, NotSerialized) { Return (value) }: a constant method.</summary>
    public static byte[] MethodReturning(string name, byte[] value) => WithPkg([MethodOp], [.. Name(name), 0x00, ReturnOp, .. value]);

    /// <summary>Method(NAME, argCount, NotSerialized) { terms }</summary>
    public static byte[] Method(string name, int argCount, params byte[][] terms)
    {
        if (argCount is < 0 or > 7) throw new ArgumentOutOfRangeException(nameof(argCount), "an AML method takes 0 to 7 arguments");
        return WithPkg([MethodOp], [.. Name(name), (byte)argCount, .. Concat(terms)]);
    }

    /// <summary>ArgN (0-6) as an operand.</summary>
    public static byte[] Arg(int n) => n is >= 0 and <= 6 ? [(byte)(Arg0Op + n)] : throw new ArgumentOutOfRangeException(nameof(n));

    /// <summary>LocalN (0-7) as an operand.</summary>
    public static byte[] Local(int n) => n is >= 0 and <= 7 ? [(byte)(Local0Op + n)] : throw new ArgumentOutOfRangeException(nameof(n));

    /// <summary>A reference to a named object as an operand or target.</summary>
    public static byte[] Ref(string path) => Name(path);

    /// <summary>Return (value)</summary>
    public static byte[] Return(byte[] value) => [ReturnOp, .. value];

    /// <summary>Store (source, target)</summary>
    public static byte[] Store(byte[] source, byte[] target) => [StoreOp, .. source, .. target];

    /// <summary>And (a, b, target); a null target discards the result (use it as an operand).</summary>
    public static byte[] And(byte[] a, byte[] b, byte[]? target = null) => [AndOp, .. a, .. b, .. target ?? [NullTarget]];

    /// <summary>Or (a, b, target)</summary>
    public static byte[] Or(byte[] a, byte[] b, byte[]? target = null) => [OrOp, .. a, .. b, .. target ?? [NullTarget]];

    /// <summary>LEqual (a, b)</summary>
    public static byte[] LEqual(byte[] a, byte[] b) => [LEqualOp, .. a, .. b];

    /// <summary>LNot (a)</summary>
    public static byte[] LNot(byte[] a) => [LNotOp, .. a];

    /// <summary>If (predicate) { terms }</summary>
    public static byte[] If(byte[] predicate, params byte[][] terms) => WithPkg([IfOp], [.. predicate, .. Concat(terms)]);

    /// <summary>Else { terms } (directly after an If)</summary>
    public static byte[] Else(params byte[][] terms) => WithPkg([ElseOp], Concat(terms));

    /// <summary>CreateDWordField (buffer, byteIndex, NAME)</summary>
    public static byte[] CreateDWordField(byte[] buffer, int byteIndex, string name) =>
        [CreateDWordFieldOp, .. buffer, .. Integer((ulong)byteIndex), .. Name(name)];

    /// <summary>ToUUID ("...") as the 16-byte Buffer ASL compiles it to (§19.6.142: the GUID's mixed-endian byte order).</summary>
    public static byte[] Uuid(Guid uuid) => Buffer(uuid.ToByteArray());

    private static byte[] WithPkg(byte[] op, byte[] content) => [.. op, .. PkgLength(content.Length), .. content];

    public static byte[] Concat(params ReadOnlySpan<byte[]> parts) => ByteArrays.Concat(parts);
}

/// <summary>Resource descriptors for ResourceTemplate() (ACPI 6.4 §6.4), ended by an End Tag.</summary>
public static class Resources
{
    /// <summary>ResourceTemplate() { descriptors } as a Buffer.</summary>
    public static byte[] Template(params byte[][] descriptors) => Aml.Buffer([.. Aml.Concat(descriptors), 0x79, 0x00]);

    /// <summary>IO(Decode16, min, max, align, length)</summary>
    public static byte[] Io(ushort min, ushort max, byte alignment, byte length) =>
        [0x47, 0x01, (byte)min, (byte)(min >> 8), (byte)max, (byte)(max >> 8), alignment, length];

    /// <summary>IRQNoFlags() { irq }: edge, active high, exclusive.</summary>
    public static byte[] IrqNoFlags(int irq) => [0x22, (byte)(1 << irq), (byte)((1 << irq) >> 8)];

    /// <summary>Interrupt(ResourceConsumer, Level, ActiveHigh, Shared) { irq }: an Extended Interrupt descriptor (§6.4.3.6).</summary>
    public static byte[] SharedLevelInterrupt(int irq)
    {
        const byte consumer = 1 << 0, shared = 1 << 3;     // level (bit 1 clear), active high (bit 2 clear)
        var b = new byte[9];
        b[0] = 0x89; b[1] = 6; b[3] = consumer | shared; b[4] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(5), (uint)irq);
        return b;
    }

    /// <summary>Memory32Fixed(ReadWrite|ReadOnly, base, length)</summary>
    public static byte[] Memory32Fixed(bool writable, uint address, uint length)
    {
        var b = new byte[12];
        b[0] = 0x86; b[1] = 9; b[3] = (byte)(writable ? 1 : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), address);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), length);
        return b;
    }

    private const byte ResourceMemory = 0, ResourceIo = 1, ResourceBus = 2;
    // General flags for a bridge window the device produces: MinFixed | MaxFixed, positive decode.
    private const byte ProducerFixed = 0x0C;

    /// <summary>WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, count)</summary>
    public static byte[] WordBusNumber(ushort min, ushort max) => WordAddress(ResourceBus, 0, min, max);

    /// <summary>WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, length)</summary>
    public static byte[] WordIo(ushort min, ushort max) => WordAddress(ResourceIo, 0x03, min, max);

    private static byte[] WordAddress(byte type, byte typeFlags, ushort min, ushort max)
    {
        var b = new byte[16];
        b[0] = 0x88; b[1] = 13; b[3] = type; b[4] = ProducerFixed; b[5] = typeFlags;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), min);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), max);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(14), (ushort)(max - min + 1));
        return b;
    }

    /// <summary>DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length)</summary>
    public static byte[] DWordMemory(uint min, uint max)
    {
        var b = new byte[26];
        b[0] = 0x87; b[1] = 23; b[3] = ResourceMemory; b[4] = ProducerFixed; b[5] = 0x01; // read-write, non-cacheable
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(10), min);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(14), max);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(22), max - min + 1);
        return b;
    }

    /// <summary>QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length)</summary>
    public static byte[] QWordMemory(ulong min, ulong max)
    {
        var b = new byte[46];
        b[0] = 0x8A; b[1] = 43; b[3] = ResourceMemory; b[4] = ProducerFixed; b[5] = 0x01;
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(14), min);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(22), max);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(38), max - min + 1);
        return b;
    }
}
