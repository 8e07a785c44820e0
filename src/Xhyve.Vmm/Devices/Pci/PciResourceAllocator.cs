using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// Firmware's job, done by the platform at build time: gives every BAR an address in the I/O window,
/// the 32-bit MMIO window below 4 GiB or (64-bit BARs) the window above RAM, naturally aligned, and
/// turns decoding on. Guests may move BARs later; the root bus follows.
/// </summary>
public sealed class PciResourceAllocator
{
    private readonly ulong _mmio64Start, _mmio64End;
    private ulong _io = PlatformLayout.PciIoStart, _mmio32 = PlatformLayout.Mmio32Start, _mmio64;
    private readonly List<PciBusWindows> _buses = new();
    private (int Bus, ulong Io, ulong Mmio32, ulong Mmio64)? _open;

    public PciResourceAllocator(ulong mmio64Start)
    {
        _mmio64Start = _mmio64 = mmio64Start;
        _mmio64End = mmio64Start + PlatformLayout.Mmio64Size;
    }

    /// <summary>Starts the windows of root bus <paramref name="bus"/>: its devices are allocated next,
    /// and it decodes from here to where the next bus starts (buses in ascending order).</summary>
    public void BeginBus(int bus)
    {
        CloseBus(last: false);
        _open = (bus, _io, _mmio32, _mmio64);
    }

    /// <summary>The windows of every bus begun; the last one extends to the ends of the windows.</summary>
    public IReadOnlyList<PciBusWindows> Finish()
    {
        CloseBus(last: true);
        return _buses;
    }

    private void CloseBus(bool last)
    {
        if (_open is not { } o) return;
        // Round each slice up so the next bus starts on a boundary; leave room to grow in the last one.
        if (!last)
        {
            _io = Math.Max(AlignUp(_io, 0x1000), o.Io + 0x1000);
            _mmio32 = Math.Max(AlignUp(_mmio32, 1 << 20), o.Mmio32 + (1 << 20));
            _mmio64 = Math.Max(AlignUp(_mmio64, 1UL << 30), o.Mmio64 + (1UL << 30));
        }
        _buses.Add(new PciBusWindows(o.Bus, (ushort)o.Io, last ? PlatformLayout.PciIoEnd : (ushort)(_io - 1),
            (uint)o.Mmio32, last ? PlatformLayout.Mmio32End : (uint)(_mmio32 - 1),
            o.Mmio64, last ? _mmio64End - 1 : _mmio64 - 1));
        _open = null;
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) & ~(a - 1);

    public void Allocate(IPciFunction function)
    {
        ushort command = function.Config.CommandRegister;
        foreach (var bar in function.Bars.OrderByDescending(b => b.Size))
        {
            ulong address = bar.Kind switch
            {
                PciBarKind.Io => Take(ref _io, bar.Size, (ulong)PlatformLayout.PciIoEnd + 1, "I/O"),
                PciBarKind.Memory32 => Take(ref _mmio32, bar.Size, (ulong)PlatformLayout.Mmio32End + 1, "32-bit MMIO"),
                _ => Take(ref _mmio64, bar.Size, _mmio64End, "64-bit MMIO"),
            };
            bar.Program(function.Config, address);
            command |= bar.Kind == PciBarKind.Io ? PciConfigSpace.CommandIo : PciConfigSpace.CommandMemory;
        }
        function.Config.Write(PciConfigSpace.Command, 2, command);
    }

    private static ulong Take(ref ulong next, ulong size, ulong end, string window)
    {
        ulong at = (next + size - 1) & ~(size - 1);
        if (at + size > end || at + size < at)
            throw new VmConfigurationException([$"-s: the PCI devices need more {window} space than the window has"]);
        next = at + size;
        return at;
    }
}
