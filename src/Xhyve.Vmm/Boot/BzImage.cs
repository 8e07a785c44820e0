using System.Buffers.Binary;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// A Linux bzImage's real-mode setup header (Linux boot protocol, Documentation/x86/boot.rst).
/// Parsing only reads; every field used later is validated here.
/// </summary>
public sealed class BzImage
{
    public const ushort MinimumProtocol = 0x0206;
    private const int HeaderStart = 0x1F1;

    public ushort Protocol { get; }
    public int SetupBytes { get; }
    /// <summary>The setup header bytes [0x1F1, end of header) to copy into boot_params.</summary>
    public ReadOnlyMemory<byte> SetupHeader { get; }
    public uint InitrdAddressMax { get; }
    public uint CommandLineSize { get; }
    public uint KernelAlignment { get; }
    public bool Relocatable { get; }
    public bool HasEntry64 { get; }
    public ulong PreferredAddress { get; }
    public uint InitSize { get; }
    public int PayloadOffset { get; }
    public int PayloadLength { get; }
    /// <summary>The protected-mode kernel's size: everything after the setup sectors (which end at
    /// <see cref="SetupBytes"/>).</summary>
    public long ProtectedModeLength { get; }
    /// <summary>Where the compressed vmlinux payload (protocol 2.08+) starts in the file.</summary>
    public long PayloadFileOffset => SetupBytes + PayloadOffset;

    /// <summary>How much of the file's start <see cref="Parse(ReadOnlySpan{byte}, long, string)"/> needs: the setup
    /// header (the setup sectors themselves are not read).</summary>
    public const int HeadBytes = 0x400;

    public static bool HasBzImageMagic(ReadOnlySpan<byte> data) =>
        data.Length >= 0x206 && BinaryPrimitives.ReadUInt16LittleEndian(data[0x1FE..]) == 0xAA55 &&
        BinaryPrimitives.ReadUInt32LittleEndian(data[0x202..]) == 0x5372_6448; // "HdrS"

    /// <summary>The real-mode setup's size: setup_sects (0 meaning 4) sectors plus the boot sector. Needs the first
    /// 0x1F2 bytes.</summary>
    public static int SetupBytesOf(ReadOnlySpan<byte> data) => ((data[HeaderStart] == 0 ? 4 : data[HeaderStart]) + 1) * 512;

    private BzImage(ReadOnlySpan<byte> data, long fileLength, string name)
    {
        if (fileLength < 0x270 || data.Length < 0x270)
            throw new BootImageException($"{name}: file is too short for a Linux setup header ({fileLength} bytes)");
        if (!HasBzImageMagic(data))
            throw new BootImageException($"{name}: not a Linux bzImage (no 0xAA55 boot flag and \"HdrS\" header)");
        Protocol = BinaryPrimitives.ReadUInt16LittleEndian(data[0x206..]);
        if (Protocol < MinimumProtocol)
            throw new BootImageException($"{name}: boot protocol {Protocol >> 8}.{Protocol & 0xFF:D2} is older than the required 2.06");
        SetupBytes = SetupBytesOf(data);
        if (SetupBytes >= fileLength)
            throw new BootImageException($"{name}: truncated: setup ({SetupBytes} bytes) leaves no protected-mode kernel");
        int headerEnd = 0x202 + data[0x201];
        if (headerEnd > SetupBytes || headerEnd < 0x23C)
            throw new BootImageException($"{name}: setup header length is inconsistent (ends at 0x{headerEnd:X})");
        SetupHeader = data[HeaderStart..headerEnd].ToArray();
        if ((data[0x211] & 0x01) == 0)
            throw new BootImageException($"{name}: a zImage (not loaded high) cannot be booted; use a bzImage");
        InitrdAddressMax = BinaryPrimitives.ReadUInt32LittleEndian(data[0x22C..]);
        KernelAlignment = BinaryPrimitives.ReadUInt32LittleEndian(data[0x230..]);
        Relocatable = data[0x234] != 0;
        ushort xloadflags = BinaryPrimitives.ReadUInt16LittleEndian(data[0x236..]);
        HasEntry64 = (xloadflags & 0x1) != 0;
        CommandLineSize = BinaryPrimitives.ReadUInt32LittleEndian(data[0x238..]);
        ProtectedModeLength = fileLength - SetupBytes;
        if (Protocol >= 0x0208)
        {
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(data[0x248..]);
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(data[0x24C..]);
            if (offset > ProtectedModeLength || length > ProtectedModeLength - offset)
                throw new BootImageException($"{name}: truncated or corrupt: payload (offset 0x{offset:X}, length 0x{length:X}) lies outside the file");
            PayloadOffset = (int)offset;
            PayloadLength = (int)length;
        }
        if (Protocol >= 0x020A)
        {
            PreferredAddress = BinaryPrimitives.ReadUInt64LittleEndian(data[0x258..]);
            InitSize = BinaryPrimitives.ReadUInt32LittleEndian(data[0x260..]);
        }
        if (!HasEntry64)
            throw new BootImageException($"{name}: kernel has no 64-bit entry point (XLF_KERNEL_64); only x86-64 kernels are supported");
    }

    /// <summary>Parses a whole file.</summary>
    public static BzImage Parse(ReadOnlySpan<byte> file, string name) => new(file, file.Length, name);

    /// <summary>Parses the header in <paramref name="head"/>, the first bytes (<see cref="HeadBytes"/>, or all of a
    /// shorter file) of a file of <paramref name="fileLength"/> bytes; every offset is checked against that length.</summary>
    public static BzImage Parse(ReadOnlySpan<byte> head, long fileLength, string name) => new(head, fileLength, name);
}
