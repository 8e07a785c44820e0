using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Legacy;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Serial;

namespace Xhyve.Vmm;

/// <summary>Why a VM stopped; the values are HyperKit's process exit codes.</summary>
public enum VmExitStatus
{
    PoweredOff = 0,
    Error = 1,
    Reset = 2,
    TripleFault = 3,
    UnhandledExit = 100,
}

/// <summary>Requests that leave devices through callbacks (reset lines, power), never by calling the VM.</summary>
public interface IPlatformEvents
{
    void RequestStop(VmExitStatus status, string reason);
}

/// <summary>A built VM: hypervisor objects, memory, buses, devices and vCPUs, ready to run.</summary>
public sealed class Machine : IDisposable
{
    public required IVirtualMachine Vm { get; init; }
    public required GuestMemory Memory { get; init; }
    public required DeviceBus PortIo { get; init; }
    public required DeviceBus Mmio { get; init; }
    public required ExitDispatcher Dispatcher { get; init; }
    /// <summary>What the builder left out or changed, for the engine to print once at start.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
    public required IReadOnlyList<IVcpu> Vcpus { get; init; }
    public required LoadedKernel Kernel { get; init; }
    /// <summary>The boot ROM the machine starts from (-l bootrom), or null when a kernel was loaded instead. A machine
    /// with a ROM treats a triple fault as the reset it is on real hardware.</summary>
    public Boot.BootRom? Rom { get; init; }
    /// <summary>The UEFI variable store's flash image (-l bootrom,CODE,VARS), or null; like the ROM, a memory slot maps it.</summary>
    public Devices.Flash.FlashImage? Flash { get; init; }
    public required PciRootBus Pci { get; init; }
    public required PostCode Post { get; init; }
    public required IReadOnlyList<SerialPort> SerialPorts { get; init; }
    public required IReadOnlyList<(string Name, Uart16550 Uart)> Uarts { get; init; }
    public required Devices.Acpi.PowerManagement Power { get; init; }
    /// <summary>Whether the guest was given ACPI tables (-A): only then can it handle the power button.</summary>
    public required bool Acpi { get; init; }
    public required IReadOnlyList<IDisposable> HostResources { get; init; }
    public IReadOnlyList<Devices.Virtio.VirtioPciDevice> Virtio { get; init; } = [];
    /// <summary>The AHCI controllers by their PCI address (the control API changes CD/DVD media through them).</summary>
    public IReadOnlyList<(PciAddress Address, Devices.Ahci.AhciController Controller)> Ahci { get; init; } = [];

    /// <summary>After <see cref="Dispose"/>: whether everything was released. False when a vCPU thread outlived the
    /// runner's join, so the VM and guest memory were kept for it until the process exits.</summary>
    public bool DisposedFully { get; private set; }

    public void Dispose()
    {
        foreach (var r in HostResources) r.Dispose();
        foreach (var s in SerialPorts) s.Dispose();
        foreach (var v in Vcpus) v.Dispose();
        // A vCPU thread that has not ended (stuck past the runner's join) may still touch guest memory from
        // KVM or a device: the mapping then stays until the process exits instead of vanishing under it.
        foreach (var v in Vcpus) if (v.IsAttached) return;
        Vm.Dispose();
        Memory.Dispose();
        Rom?.Dispose();
        Flash?.Dispose();
        DisposedFully = true;
    }
}

/// <summary>An interrupt line wired to a GSI of the in-kernel PIC/IOAPIC.</summary>
public sealed class GsiLine(IVirtualMachine vm, int gsi) : IInterruptLine
{
    public void Set(bool level) => vm.SetIrqLine(gsi, level);
}
