using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

public enum PciBarKind { Io, Memory32, Memory64 }

/// <summary>A base address register a device declared: its kind, size and the device behind it.
/// Where it lives is decided by the platform (allocation) and the guest (reprogramming), never the device.</summary>
public sealed class PciBar
{
    public int Index { get; }
    public PciBarKind Kind { get; }
    public ulong Size { get; }
    public bool Prefetchable { get; }
    public IBusDevice Handler { get; }
    public string Name { get; }

    internal PciBar(int index, PciBarKind kind, ulong size, bool prefetchable, IBusDevice handler, string name)
    {
        Index = index; Kind = kind; Size = size; Prefetchable = prefetchable; Handler = handler; Name = name;
    }

    public int ConfigOffset => PciConfigSpace.Bar0 + 4 * Index;

    /// <summary>The low type bits of the register: I/O space, or memory with 32/64-bit and prefetch flags.</summary>
    public uint TypeBits => Kind switch
    {
        PciBarKind.Io => 0x1,
        PciBarKind.Memory64 => 0x4u | (Prefetchable ? 0x8u : 0),
        _ => Prefetchable ? 0x8u : 0,
    };

    /// <summary>The BAR's current address as the guest programmed it.</summary>
    public ulong Address(PciConfigSpace config)
    {
        ulong low = config.ReadDword(ConfigOffset) & (Kind == PciBarKind.Io ? ~0x3u : ~0xFu);
        return Kind == PciBarKind.Memory64 ? low | ((ulong)config.ReadDword(ConfigOffset + 4) << 32) : low;
    }

    /// <summary>Defines the register: type bits read-only, address bits below the size read-only zero.</summary>
    internal void Define(PciConfigSpace config)
    {
        Span<byte> value = stackalloc byte[8], mask = stackalloc byte[8];
        ulong writable = ~(Size - 1) & (Kind == PciBarKind.Io ? ~0x3UL : ~0xFUL);
        if (Kind != PciBarKind.Memory64) writable &= 0xFFFF_FFFF;
        BinaryPrimitives.WriteUInt64LittleEndian(value, TypeBits);
        BinaryPrimitives.WriteUInt64LittleEndian(mask, writable);
        int bytes = Kind == PciBarKind.Memory64 ? 8 : 4;
        config.Define(ConfigOffset, value[..bytes], mask[..bytes]);
    }

    /// <summary>Platform allocation: writes the address the firmware assigned (aligned to the size,
    /// so every address bit is writable).</summary>
    internal void Program(PciConfigSpace config, ulong address)
    {
        config.Write(ConfigOffset, 4, (uint)address);
        if (Kind == PciBarKind.Memory64) config.Write(ConfigOffset + 4, 4, (uint)(address >> 32));
    }
}
