using System.Buffers.Binary;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>Builds small ELF files and multiboot images for loader tests.</summary>
internal static class ImageBuilder
{
    /// <summary>An ELF executable with one PT_LOAD segment holding <paramref name="payload"/> at <paramref name="paddr"/>.</summary>
    public static byte[] Elf(bool is64, ulong paddr, byte[] payload, ulong extraBss = 0, ulong? entry = null, byte[]? prefix = null)
    {
        int ehsize = is64 ? 64 : 52, phsize = is64 ? 56 : 32;
        int dataOffset = ehsize + phsize + (prefix?.Length ?? 0);
        var f = new byte[dataOffset + payload.Length];
        var s = f.AsSpan();
        s[0] = 0x7F; s[1] = (byte)'E'; s[2] = (byte)'L'; s[3] = (byte)'F';
        s[4] = (byte)(is64 ? 2 : 1); s[5] = 1; s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x10..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x12..], (ushort)(is64 ? 62 : 3));
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x14..], 1);
        ulong e = entry ?? paddr;
        if (is64)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s[0x18..], e);
            BinaryPrimitives.WriteUInt64LittleEndian(s[0x20..], (ulong)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x34..], (ushort)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x36..], (ushort)phsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x38..], 1);
            var ph = s[ehsize..];
            BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], (ulong)dataOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], paddr | 0xFFFF_FFFF_8000_0000);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)payload.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], (ulong)payload.Length + extraBss);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(s[0x18..], (uint)e);
            BinaryPrimitives.WriteUInt32LittleEndian(s[0x1C..], (uint)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x28..], (ushort)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x2A..], (ushort)phsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x2C..], 1);
            var ph = s[ehsize..];
            BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], (uint)dataOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[8..], (uint)paddr);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[12..], (uint)paddr);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[16..], (uint)payload.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[20..], (uint)(payload.Length + (long)extraBss));
        }
        prefix?.CopyTo(s[(ehsize + phsize)..]);
        payload.CopyTo(s[dataOffset..]);
        return f;
    }

    /// <summary>The 12-byte multiboot header (magic, flags, checksum).</summary>
    public static byte[] MultibootHeader(uint flags = 3)
    {
        var h = new byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x1BAD_B002);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), unchecked(0u - 0x1BAD_B002 - flags));
        return h;
    }
}
