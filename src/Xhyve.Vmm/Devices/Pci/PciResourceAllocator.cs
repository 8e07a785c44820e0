using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// Firmware's job, done by the platform at build time: gives every BAR an address in the I/O window,
/// the 32-bit MMIO window below 4 GiB or (64-bit BARs) the window above RAM, naturally aligned, and
/// turns decoding on. Guests may move BARs later; the root bus follows.
/// </summary>
public sealed class PciResourceAllocator
{
    private readonly ulong _mmio64End;
    private ulong _io = PlatformLayout.PciIoStart, _mmio32 = PlatformLayout.Mmio32Start, _mmio64;

    public PciResourceAllocator(ulong mmio64Start)
    {
        _mmio64 = mmio64Start;
        _mmio64End = mmio64Start + PlatformLayout.Mmio64Size;
    }

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

/// <summary>MSI delivery through the hypervisor.</summary>
public sealed class HypervisorMsiSink(Hypervisor.IVirtualMachine vm) : IMsiSink
{
    public void Signal(ulong address, uint data) => vm.SignalMsi(address, data);
}
