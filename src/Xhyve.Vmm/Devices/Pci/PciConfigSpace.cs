using System.Buffers.Binary;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// A function's 256-byte type-0 configuration header with per-bit write masks: the guest can
/// change only the bits a device declares writable (PCI Local Bus 3.0, ch. 6).
/// </summary>
public sealed class PciConfigSpace
{
    public const int Size = 256;
    public const int VendorId = 0x00, DeviceId = 0x02, Command = 0x04, Status = 0x06, RevisionId = 0x08,
        ClassCode = 0x09, CacheLineSize = 0x0C, HeaderType = 0x0E, SubsystemVendorId = 0x2C, SubsystemId = 0x2E,
        CapabilitiesPointer = 0x34, InterruptLine = 0x3C, InterruptPin = 0x3D;

    private readonly byte[] _data = new byte[Size];
    private readonly byte[] _writable = new byte[Size];
    private readonly Lock _lock = new();

    public PciConfigSpace(ushort vendor, ushort device, byte classCode, byte subclass, byte progIf, byte revision = 0, byte headerType = 0)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(VendorId), vendor);
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(DeviceId), device);
        _data[RevisionId] = revision;
        _data[ClassCode] = progIf;
        _data[ClassCode + 1] = subclass;
        _data[ClassCode + 2] = classCode;
        _data[HeaderType] = headerType;
        // Command: I/O, memory, bus master, INTx disable are the bits guests toggle.
        _writable[Command] = 0x07;
        _writable[Command + 1] = 0x04;
        _writable[CacheLineSize] = 0xFF;
        _writable[InterruptLine] = 0xFF;
    }

    public ushort Vendor => BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(VendorId));
    public ushort Device => BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(DeviceId));

    /// <summary>Sets the multi-function bit in the header type.</summary>
    public bool MultiFunction
    {
        get => (_data[HeaderType] & 0x80) != 0;
        set => _data[HeaderType] = (byte)(value ? _data[HeaderType] | 0x80 : _data[HeaderType] & 0x7F);
    }

    /// <summary>Device setup: initial value and writable mask of a byte range.</summary>
    public void Define(int offset, ReadOnlySpan<byte> value, ReadOnlySpan<byte> writableMask)
    {
        value.CopyTo(_data.AsSpan(offset));
        writableMask.CopyTo(_writable.AsSpan(offset));
    }

    /// <summary>Guest read of 1, 2 or 4 bytes at an offset aligned to its width.</summary>
    public uint Read(int offset, int width)
    {
        if (!ValidAccess(offset, width)) return width == 4 ? 0xFFFF_FFFF : (1u << (width * 8)) - 1;
        lock (_lock)
        {
            uint v = 0;
            for (int i = width - 1; i >= 0; i--) v = (v << 8) | _data[offset + i];
            return v;
        }
    }

    /// <summary>Guest write: only writable bits change.</summary>
    public void Write(int offset, int width, uint value)
    {
        if (!ValidAccess(offset, width)) return;
        lock (_lock)
        {
            for (int i = 0; i < width; i++)
            {
                byte mask = _writable[offset + i];
                byte b = (byte)(value >> (8 * i));
                _data[offset + i] = (byte)((_data[offset + i] & ~mask) | (b & mask));
            }
        }
    }

    private static bool ValidAccess(int offset, int width) =>
        width is 1 or 2 or 4 && offset >= 0 && offset + width <= Size && (offset & (width - 1)) == 0;
}

/// <summary>A PCI function on the root bus: its configuration space (BARs and capabilities come with the platform work).</summary>
public interface IPciFunction
{
    string Name { get; }
    PciConfigSpace Config { get; }
}

/// <summary>A function with nothing but its identity: host bridges and the LPC bridge.</summary>
public sealed class PciIdentityFunction(string name, PciConfigSpace config) : IPciFunction
{
    public string Name => name;
    public PciConfigSpace Config => config;

    /// <summary>bhyve's "hostbridge": vendor/device 0x1275:0x1275, class 06/00.</summary>
    public static PciIdentityFunction HostBridge() => new("hostbridge", new PciConfigSpace(0x1275, 0x1275, 0x06, 0x00, 0x00));

    /// <summary>bhyve's "amd_hostbridge": 0x1022:0x7432.</summary>
    public static PciIdentityFunction AmdHostBridge() => new("amd_hostbridge", new PciConfigSpace(0x1022, 0x7432, 0x06, 0x00, 0x00));

    /// <summary>bhyve's "lpc": an Intel PIIX3-style ISA bridge (0x8086:0x7000), class 06/01.</summary>
    public static PciIdentityFunction LpcBridge() => new("lpc", new PciConfigSpace(0x8086, 0x7000, 0x06, 0x01, 0x00));
}
