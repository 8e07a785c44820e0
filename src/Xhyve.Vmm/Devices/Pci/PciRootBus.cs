using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>A PCI address: bus 0-255, slot 0-31, function 0-7.</summary>
public readonly record struct PciAddress(int Bus, int Slot, int Function)
{
    public bool IsValid => Bus is >= 0 and <= 255 && Slot is >= 0 and <= 31 && Function is >= 0 and <= 7;
    public override string ToString() => $"{Bus}:{Slot}:{Function}";

    /// <summary>Parses an address as -s writes it: SLOT, SLOT:FUNCTION or BUS:SLOT:FUNCTION (decimal); false when the
    /// text is none of these or the numbers are out of range.</summary>
    public static bool TryParse(string text, out PciAddress address)
    {
        address = default;
        var parts = text.Split(':');
        if (parts.Length > 3) return false;
        Span<int> n = stackalloc int[3];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out n[i])) return false;
        address = parts.Length switch
        {
            1 => new PciAddress(0, n[0], 0),
            2 => new PciAddress(0, n[0], n[1]),
            _ => new PciAddress(n[0], n[1], n[2]),
        };
        return true;
    }
}

/// <summary>
/// The PCI host: configuration mechanism #1 (the address register at 0xCF8 and data window at
/// 0xCFC-0xCFF, registered as one 8-byte range at 0xCF8) and ECAM through <see cref="PciEcam"/>. It keeps
/// every BAR mapped on the port-I/O or MMIO bus exactly while its decode is enabled in the command
/// register and its address is valid. A byte write to 0xCF9 is the chipset's reset control register.
/// </summary>
public sealed class PciRootBus : IBusDevice
{
    private readonly Dictionary<PciAddress, IPciFunction> _functions = new();
    private readonly Dictionary<PciBar, (ulong Start, ulong Size)> _mapped = new();
    private readonly Lock _mapLock = new();
    private readonly Action<byte> _resetControl;
    private readonly DeviceBus? _pio, _mmio;
    private uint _address;
    private long _rejectedMappings;

    /// <param name="resetControl">Receives byte writes to port 0xCF9.</param>
    /// <param name="pio">Where I/O BARs are mapped (null: no BAR mapping, for tests of config space alone).</param>
    /// <param name="mmio">Where memory BARs are mapped.</param>
    public PciRootBus(Action<byte> resetControl, DeviceBus? pio = null, DeviceBus? mmio = null)
    {
        _resetControl = resetControl;
        _pio = pio;
        _mmio = mmio;
    }

    /// <summary>BAR placements the guest asked for that overlapped another device and were not mapped.</summary>
    public long RejectedMappings => Interlocked.Read(ref _rejectedMappings);

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

    /// <summary>Configuration read of one function (all-ones where nothing answers).</summary>
    public uint ReadConfig(PciAddress address, int offset, int width)
    {
        if (!_functions.TryGetValue(address, out var f)) return width == 4 ? 0xFFFF_FFFF : (1u << (8 * width)) - 1;
        return offset < PciConfigSpace.Size ? f.Config.Read(offset, width) : 0; // no extended capabilities
    }

    public void WriteConfig(PciAddress address, int offset, int width, uint value)
    {
        if (!_functions.TryGetValue(address, out var f) || offset >= PciConfigSpace.Size) return;
        f.Config.Write(offset, width, value);
        if (offset < PciConfigSpace.Bar0 + 24 && offset + width > PciConfigSpace.Command) UpdateMappings(f);
        f.ConfigWritten(offset, width);
    }

    /// <summary>Maps every BAR whose decode is on at its current address (initial placement included).</summary>
    public void UpdateMappings(IPciFunction f)
    {
        if (_pio == null || _mmio == null) return;
        lock (_mapLock)
        {
            ushort command = f.Config.CommandRegister;
            foreach (var bar in f.Bars)
            {
                bool io = bar.Kind == PciBarKind.Io;
                bool decode = (command & (io ? PciConfigSpace.CommandIo : PciConfigSpace.CommandMemory)) != 0;
                ulong start = bar.Address(f.Config);
                ulong limit = io ? 0x1_0000UL : ulong.MaxValue;
                bool valid = decode && start != 0 && start <= limit - bar.Size;
                var bus = io ? _pio : _mmio;
                if (_mapped.TryGetValue(bar, out var current))
                {
                    if (valid && current.Start == start) continue;
                    bus.Unregister(bar.Handler);
                    _mapped.Remove(bar);
                    f.BarMapped(bar, null);
                }
                if (!valid) continue;
                try
                {
                    bus.Register(start, bar.Size, bar.Handler, bar.Name);
                    _mapped[bar] = (start, bar.Size);
                    f.BarMapped(bar, start);
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref _rejectedMappings); // overlaps another device: leave it unmapped
                }
            }
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, Volatile.Read(ref _address));
            return;
        }
        if (offset >= 4 && Selected(out var address, out int register))
        {
            uint v = ReadConfig(address, register + (int)(offset - 4), data.Length);
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
            _resetControl(data[0]);
            return;
        }
        if (offset >= 4 && Selected(out var address, out int register))
        {
            uint v = 0;
            for (int i = data.Length - 1; i >= 0; i--) v = (v << 8) | data[i];
            WriteConfig(address, register + (int)(offset - 4), data.Length, v);
        }
    }

    private bool Selected(out PciAddress address, out int register)
    {
        uint a = Volatile.Read(ref _address);
        register = (int)(a & 0xFC);
        address = new PciAddress((int)(a >> 16) & 0xFF, (int)(a >> 11) & 0x1F, (int)(a >> 8) & 0x7);
        return (a & 0x8000_0000) != 0;
    }
}

/// <summary>PCI Express enhanced configuration access (ECAM): bus &lt;&lt; 20 | slot &lt;&lt; 15 | function &lt;&lt; 12 | register.</summary>
public sealed class PciEcam(PciRootBus root) : IBusDevice
{
    public void Read(ulong offset, Span<byte> data)
    {
        uint v = Decode(offset, data.Length, out var address, out int register) ? root.ReadConfig(address, register, data.Length) : 0xFFFF_FFFF;
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(v >> (8 * i));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!Decode(offset, data.Length, out var address, out int register)) return;
        uint v = 0;
        for (int i = data.Length - 1; i >= 0; i--) v = (v << 8) | data[i];
        root.WriteConfig(address, register, data.Length, v);
    }

    private static bool Decode(ulong offset, int width, out PciAddress address, out int register)
    {
        address = new PciAddress((int)(offset >> 20) & 0xFF, (int)(offset >> 15) & 0x1F, (int)(offset >> 12) & 0x7);
        register = (int)(offset & 0xFFF);
        return width is 1 or 2 or 4 && (register & (width - 1)) == 0;
    }
}
