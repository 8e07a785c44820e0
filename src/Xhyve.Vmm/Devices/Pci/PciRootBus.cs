using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>A PCI address: bus 0-255, slot 0-31, function 0-7.</summary>
public readonly record struct PciAddress(int Bus, int Slot, int Function)
{
    public bool IsValid => Bus is >= 0 and <= 255 && Slot is >= 0 and <= 31 && Function is >= 0 and <= 7;
    public override string ToString() => $"{Bus}:{Slot}:{Function}";
}

/// <summary>
/// PCI configuration mechanism #1: the address register at 0xCF8 and data window at 0xCFC-0xCFF
/// (registered as one 8-byte range at 0xCF8). A byte write to 0xCF9 is the reset control register
/// of the same chipset, so it is forwarded to <paramref name="resetControl"/>.
/// </summary>
public sealed class PciRootBus(Action<byte> resetControl) : IBusDevice
{
    private readonly Dictionary<PciAddress, IPciFunction> _functions = new();
    private uint _address;

    public void Add(PciAddress address, IPciFunction function)
    {
        if (!address.IsValid) throw new ArgumentOutOfRangeException(nameof(address), $"PCI address {address} is out of range");
        if (_functions.TryGetValue(address, out var existing))
            throw new InvalidOperationException($"PCI {address} is already used by {existing.Name}");
        _functions[address] = function;
        // A slot with a function other than 0 must say so in function 0's header.
        if (address.Function != 0 && _functions.TryGetValue(address with { Function = 0 }, out var f0)) f0.Config.MultiFunction = true;
        if (address.Function == 0 && _functions.Keys.Any(a => a.Bus == address.Bus && a.Slot == address.Slot && a.Function != 0))
            function.Config.MultiFunction = true;
    }

    public IReadOnlyDictionary<PciAddress, IPciFunction> Functions => _functions;

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, Volatile.Read(ref _address));
            return;
        }
        if (offset >= 4)
        {
            var f = Selected(out int register);
            int at = register + (int)(offset - 4);
            uint v = f?.Config.Read(at, data.Length) ?? 0xFFFF_FFFF;
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(v >> (8 * i));
            return;
        }
        data.Fill(0xFF);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            Volatile.Write(ref _address, BinaryPrimitives.ReadUInt32LittleEndian(data) & 0x80FF_FFFC);
            return;
        }
        if (offset == 1 && data.Length == 1)
        {
            resetControl(data[0]);
            return;
        }
        if (offset >= 4)
        {
            var f = Selected(out int register);
            uint v = 0;
            for (int i = data.Length - 1; i >= 0; i--) v = (v << 8) | data[i];
            f?.Config.Write(register + (int)(offset - 4), data.Length, v);
        }
    }

    private IPciFunction? Selected(out int register)
    {
        uint a = Volatile.Read(ref _address);
        register = (int)(a & 0xFC);
        if ((a & 0x8000_0000) == 0) return null;
        var address = new PciAddress((int)(a >> 16) & 0xFF, (int)(a >> 11) & 0x1F, (int)(a >> 8) & 0x7);
        return _functions.GetValueOrDefault(address);
    }
}
