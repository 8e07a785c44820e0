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

    /// <summary>A bzImage (boot protocol 2.15, 4 setup sectors, 64-bit entry) around a compressed
    /// <paramref name="payload"/>, with the header fields host decompression and KASLR read.</summary>
    public static byte[] BzImage(byte[] payload, bool relocatable = false, ulong preferredAddress = 0x100_0000, uint initSize = 0)
    {
        const int setup = 5 * 512;
        var f = new byte[setup + payload.Length];
        var s = f.AsSpan();
        s[0x1F1] = 4;                                                           // setup_sects
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x1FE..], 0xAA55);
        s[0x201] = 0x6A;                                                        // the header ends at 0x26C
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x202..], 0x5372_6448);      // "HdrS"
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x206..], 0x020F);
        s[0x211] = 0x01;                                                        // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x22C..], 0x7FFF_FFFF);      // initrd_addr_max
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x230..], 0x20_0000);        // kernel_alignment
        s[0x234] = (byte)(relocatable ? 1 : 0);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x236..], 0x1);              // XLF_KERNEL_64
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x238..], 2047);             // cmdline_size
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x248..], 0);                // payload_offset
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x24C..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(s[0x258..], preferredAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x260..], initSize);
        payload.CopyTo(s[setup..]);
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
