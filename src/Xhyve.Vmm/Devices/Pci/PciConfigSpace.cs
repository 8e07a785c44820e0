using System.Buffers.Binary;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// A function's 256-byte type-0 configuration header with per-bit write masks: the guest can change
/// only the bits a device declares writable (PCI Local Bus 3.0, ch. 6). BAR sizing needs no special
/// case: a BAR's address bits below its size are read-only zero, so writing all-ones reads back the size.
/// </summary>
public sealed class PciConfigSpace
{
    public const int Size = 256;
    public const int VendorId = 0x00, DeviceId = 0x02, Command = 0x04, Status = 0x06, RevisionId = 0x08,
        ClassCode = 0x09, CacheLineSize = 0x0C, HeaderType = 0x0E, Bar0 = 0x10, SubsystemVendorId = 0x2C,
        SubsystemId = 0x2E, CapabilitiesPointer = 0x34, InterruptLine = 0x3C, InterruptPin = 0x3D;
    public const ushort CommandIo = 1 << 0, CommandMemory = 1 << 1, CommandBusMaster = 1 << 2, CommandIntxDisable = 1 << 10;
    public const ushort StatusInterrupt = 1 << 3, StatusCapabilities = 1 << 4;

    private readonly byte[] _data = new byte[Size];
    private readonly byte[] _writable = new byte[Size];
    private readonly byte[] _writeOneToClear = new byte[Size];
    private readonly Lock _lock = new();
    private int _nextCapability = 0x40;
    private int _lastCapability;

    public PciConfigSpace(ushort vendor, ushort device, byte classCode, byte subclass, byte progIf, byte revision = 0, byte headerType = 0)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(VendorId), vendor);
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(DeviceId), device);
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(SubsystemVendorId), vendor);
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(SubsystemId), device);
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
    public ushort CommandRegister { get { lock (_lock) return BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(Command)); } }

    /// <summary>Sets the multi-function bit in the header type.</summary>
    public bool MultiFunction
    {
        get => (_data[HeaderType] & 0x80) != 0;
        set => _data[HeaderType] = (byte)(value ? _data[HeaderType] | 0x80 : _data[HeaderType] & 0x7F);
    }

    /// <summary>Device setup: initial value and writable mask of a byte range.</summary>
    public void Define(int offset, ReadOnlySpan<byte> value, ReadOnlySpan<byte> writableMask)
    {
        lock (_lock)
        {
            value.CopyTo(_data.AsSpan(offset));
            writableMask.CopyTo(_writable.AsSpan(offset));
        }
    }

    /// <summary>Appends a capability (id, next pointer, body) to the list; returns its offset.</summary>
    public int AddCapability(byte id, ReadOnlySpan<byte> body, ReadOnlySpan<byte> writableBody)
    {
        lock (_lock)
        {
            int at = _nextCapability;
            if (at + 2 + body.Length > Size) throw new InvalidOperationException("PCI capabilities do not fit in configuration space");
            _data[at] = id;
            body.CopyTo(_data.AsSpan(at + 2));
            writableBody.CopyTo(_writable.AsSpan(at + 2));
            if (_lastCapability == 0) _data[CapabilitiesPointer] = (byte)at;
            else _data[_lastCapability + 1] = (byte)at;
            _lastCapability = at;
            _data[Status] |= (byte)StatusCapabilities;
            _nextCapability = (at + 2 + body.Length + 3) & ~3;
            return at;
        }
    }

    /// <summary>Device-side update of read-only state (status bits, pending bits): ignores write masks.</summary>
    public void SetBits(int offset, byte mask, bool set)
    {
        lock (_lock) _data[offset] = (byte)(set ? _data[offset] | mask : _data[offset] & ~mask);
    }

    public ushort ReadWord(int offset) { lock (_lock) return BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(offset)); }
    public uint ReadDword(int offset) { lock (_lock) return BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(offset)); }

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
