using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Vmm.Config;

namespace Xhyve.PowerShell;

/// <summary>What Get-XhyveVM and the other cmdlets emit: a VM's definition with its runtime status at the
/// time it was read. Xhyve.format.ps1xml shows Name, State, CPUs, Memory and Uptime in tables.</summary>
public sealed class XhyveVM
{
    internal XhyveVM(VirtualMachine definition, VmStatus status, string path)
    {
        Definition = definition;
        Status = status;
        Path = path;
    }

    internal VirtualMachine Definition { get; }
    internal VmStatus Status { get; }

    public string Name => Definition.Name;
    public Guid Id => Definition.Id;
    public VmState State => Status.State;
    public int ProcessorCount => Definition.ProcessorCount;
    public long MemoryStartupBytes => Definition.MemoryStartupBytes;
    /// <summary>How long the guest has run since it last started or reset; zero until its vCPUs run.</summary>
    public TimeSpan Uptime => Status.Uptime ?? TimeSpan.Zero;
    /// <summary>How many times the guest reset (rebooted) and was started again in the same engine, in this run or
    /// (for a VM that is off) its last run.</summary>
    public int Resets => Status.Resets ?? 0;
    public int? ProcessId => Status.ProcessId;
    public int? ExitCode => Status.ExitCode;
    public string? ExitReason => Status.ExitReason;
    public bool Acpi => Definition.Acpi;
    public string? KernelPath => Definition.KernelPath;
    public string? InitrdPath => Definition.InitrdPath;
    public string? KernelCommandLine => Definition.KernelCommandLine;
    public string? MultibootPath => Definition.MultibootPath;
    public IReadOnlyList<MultibootModuleDefinition> MultibootModules => Definition.MultibootModules;
    /// <summary>Hyper-V's generation: 2 for a UEFI VM (a boot ROM with its own variable store), else 1.</summary>
    public int Generation => Definition.Generation;
    /// <summary>The firmware ROM the VM boots from instead of a kernel, or null.</summary>
    public string? BootRomPath => Definition.BootRomPath;
    /// <summary>The template the VM's UEFI variable store was copied from, or null.</summary>
    public string? UefiVariablesTemplatePath => Definition.UefiVariablesTemplatePath;
    /// <summary>The VM's own UEFI variable store (in its folder), or null when it has none.</summary>
    public string? UefiVariablesPath => Definition.UefiVariablesTemplatePath != null ? System.IO.Path.Combine(Path, VirtualMachine.UefiVariablesFile) : null;
    public IReadOnlyList<XhyveDisk> HardDrives => Definition.Disks.Select(d => new XhyveDisk(Name, d)).ToList();
    public IReadOnlyList<XhyveDvdDrive> DvdDrives => Definition.DvdDrives.Select(d => new XhyveDvdDrive(Name, d)).ToList();
    public IReadOnlyList<XhyveNetworkAdapter> NetworkAdapters => Definition.NetworkAdapters.Select(n => new XhyveNetworkAdapter(Definition, n)).ToList();
    public IReadOnlyList<string> ExtraArguments => Definition.ExtraArguments;
    /// <summary>The VM's folder: definition, console log, engine files.</summary>
    public string Path { get; }
    public DateTime CreationTime => Definition.CreatedUtc.ToLocalTime();

    public override string ToString() => Name;
}

/// <summary>A disk of a VM (Get-XhyveDisk, Add-XhyveDisk -PassThru).</summary>
public sealed partial class XhyveDisk(string vmName, VmDisk disk)
{
    public string VMName => vmName;
    public string Path => disk.Path;
    public int Slot => disk.Slot;
    public string? Options => disk.Options;
    public bool ReadOnly => disk.ReadOnly;
    /// <summary>VirtIO (a virtio-blk device) or AHCI (a SATA disk).</summary>
    public DiskControllerType ControllerType => disk.ControllerType;
    public override string ToString() => Path;
}

/// <summary>A CD/DVD drive of a VM (Get-XhyveDvdDrive, Add-/Set-/Remove-XhyveDvdDrive -PassThru): an ATAPI drive on an
/// AHCI controller of its own in a PCI slot, holding an ISO image or empty.</summary>
public sealed class XhyveDvdDrive
{
    internal XhyveDvdDrive(string vmName, VmDvdDrive drive, string? liveMedium = null, bool live = false)
    {
        VMName = vmName;
        Slot = drive.Slot;
        Path = live ? liveMedium : drive.Path;
    }

    public string VMName { get; }
    /// <summary>The PCI slot of the drive's AHCI controller (Hyper-V's ControllerNumber).</summary>
    public int Slot { get; }
    /// <summary>The drive's port on its controller (Hyper-V's ControllerLocation): each drive has a controller of its own, so 0.</summary>
    public int ControllerLocation => 0;
    /// <summary>Always AHCI.</summary>
    public string ControllerType => "AHCI";
    /// <summary>The ISO image in the drive, or null when it is empty.</summary>
    public string? Path { get; }
    /// <summary>ISO, or None for an empty drive (Hyper-V's DvdMediaType).</summary>
    public string DvdMediaType => Path != null ? "ISO" : "None";
    /// <summary>The drive as the engine's control API (media) names it: 0:SLOT:0/0.</summary>
    public string Drive => FormattableString.Invariant($"0:{Slot}:0/0");
    public override string ToString() => Path ?? $"DVD drive in slot {Slot} (empty)";
}

/// <summary>A network adapter of a VM (Get-XhyveNetworkAdapter, Add-/Set-/Remove-XhyveNetworkAdapter -PassThru).</summary>
public sealed class XhyveNetworkAdapter
{
    private readonly VmNetworkAdapter _adapter;

    internal XhyveNetworkAdapter(VirtualMachine vm, VmNetworkAdapter adapter) => (VMName, VMId, _adapter) = (vm.Name, vm.Id, adapter);

    public string VMName { get; }
    public Guid VMId { get; }
    public string Name => _adapter.Name;
    public int Slot => _adapter.Slot;
    /// <summary>User: user-mode networking through passt. Tap: the host TAP device TapName.</summary>
    public NetBackendKind Mode => _adapter.Mode;
    public string? TapName => _adapter.TapName;

    /// <summary>The address the guest sees: the static one, or else the stable one the engine derives from the VM's Id and
    /// the slot (the same before the first start, on every start and on every host). A static address that is not one
    /// (a hand-edited vm.json) is shown as written; the VM refuses to start with it.</summary>
    public string MacAddress
    {
        get
        {
            try { return _adapter.EffectiveMacAddress(VMId).ToString(); }
            catch (FormatException) { return _adapter.MacAddress ?? ""; }
        }
    }

    /// <summary>Static when MacAddress was set on the adapter, Stable when it is derived.</summary>
    public MacAddressSource MacAddressSource => _adapter.MacAddressSource;
    /// <summary>Host ports forwarded into the guest, as PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT.</summary>
    public IReadOnlyList<string> PortForwards => _adapter.PortForwards;

    public override string ToString() => Name;
}
