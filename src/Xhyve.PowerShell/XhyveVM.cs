using Xhyve.Management.Engine;
using Xhyve.Management.Model;

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
    public TimeSpan Uptime => Status.Uptime ?? TimeSpan.Zero;
    public int? ProcessId => Status.ProcessId;
    public int? ExitCode => Status.ExitCode;
    public string? ExitReason => Status.ExitReason;
    public bool Acpi => Definition.Acpi;
    public string? KernelPath => Definition.KernelPath;
    public string? InitrdPath => Definition.InitrdPath;
    public string? KernelCommandLine => Definition.KernelCommandLine;
    public string? MultibootPath => Definition.MultibootPath;
    public IReadOnlyList<MultibootModuleDefinition> MultibootModules => Definition.MultibootModules;
    public IReadOnlyList<XhyveDisk> HardDrives => Definition.Disks.Select(d => new XhyveDisk(Name, d)).ToList();
    public IReadOnlyList<XhyveNetworkAdapter> NetworkAdapters => Definition.NetworkAdapters.Select(n => new XhyveNetworkAdapter(Name, n)).ToList();
    public IReadOnlyList<string> ExtraArguments => Definition.ExtraArguments;
    /// <summary>The VM's folder: definition, console log, engine files.</summary>
    public string Path { get; }
    public DateTime CreationTime => Definition.CreatedUtc.ToLocalTime();

    public override string ToString() => Name;
}

/// <summary>A disk of a VM (Get-XhyveDisk, Add-XhyveDisk -PassThru).</summary>
public sealed class XhyveDisk(string vmName, VmDisk disk)
{
    public string VMName => vmName;
    public string Path => disk.Path;
    public int Slot => disk.Slot;
    public string? Options => disk.Options;
    public bool ReadOnly => disk.ReadOnly;
    public override string ToString() => Path;
}

/// <summary>A network adapter of a VM (Get-XhyveNetworkAdapter).</summary>
public sealed class XhyveNetworkAdapter(string vmName, VmNetworkAdapter adapter)
{
    public string VMName => vmName;
    public string Name => adapter.Name;
    public int Slot => adapter.Slot;
    public string Emulation => adapter.Emulation;
    public string? Options => adapter.Options;
    public string? MacAddress => adapter.MacAddress;
    public override string ToString() => Name;
}
