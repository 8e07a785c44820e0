using System.Management.Automation;
using Xhyve.Management.Model;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>Add-XhyveDisk: attaches an image (raw, or split/sparse) as a virtio-blk or AHCI (SATA) disk in a free PCI slot.</summary>
[Cmdlet(VerbsCommon.Add, "XhyveDisk", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveDisk))]
public sealed class AddXhyveDiskCommand : XhyveVMDeviceCmdlet
{
    /// <summary>The image file: a raw image or block device, or the base path of a split/sparse image. Relative paths are resolved against the current location.</summary>
    [Parameter(Mandatory = true, Position = 1)] [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>The PCI slot (1 to 30) for the disk. By default, the lowest free slot from 2 up.</summary>
    [Parameter] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    /// <summary>The controller the guest sees the disk on: VirtIO (the default; a virtio-blk device, for guests with virtio drivers) or AHCI (a SATA disk on an AHCI controller of its own, for guests without them, such as installers).</summary>
    [Parameter]
    public DiskControllerType ControllerType { get; set; } = DiskControllerType.VirtIO;

    /// <summary>Attach the disk read-only: the guest sees a read-only disk (the virtio-blk RO feature; on AHCI, writes fail), and its writes fail.</summary>
    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    /// <summary>Further block options: sync, direct, nocache, sectorsize=, size=, split=, sparse. The geometry (size=, split=,
    /// sparse, sectorsize=) is read from the image, so these are needed only for an image made without a descriptor
    /// whose files do not tell it, or to create a new image (size=); given for an existing image they must agree with it.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string[] Options { get; set; } = [];

    /// <summary>Write the added disk to the pipeline. Its VMName property lets Start-XhyveVM and the other VM cmdlets take it as input.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        string path = ResolvePath(Path);
        var items = Options.Concat(ReadOnly ? ["ro"] : []).ToArray();
        BlockDeviceOptions options;
        try { options = BlockDeviceOptions.ParseOptions(path, items); }
        catch (FormatException e)
        {
            WriteError(new ErrorRecord(new ArgumentException($"-Options: {e.Message}", e), "InvalidDiskOptions", ErrorCategory.InvalidArgument, DeviceErrors.BadOption(e.Message, items) ?? (object)Options));
            return;
        }
        // The geometry comes from the image (its descriptor, or its files); options that contradict it are refused
        // now, before anything is stored. A missing image is created by the engine only when size= is given.
        try { ImageGeometry.Resolve(options); }
        catch (DiskImageException e)
        {
            WriteError(e.Problem switch
            {
                DiskImageProblem.NotFound => new ErrorRecord(new FileNotFoundException($"-Path {Path}: the image does not exist ({path}); create it with New-XhyveDiskImage.", path),
                    "DiskImageNotFound", ErrorCategory.ObjectNotFound, Path),
                DiskImageProblem.Conflict => new ErrorRecord(new ArgumentException($"-Options {e.Message}", e), "DiskImageConflict", ErrorCategory.InvalidArgument, DeviceErrors.BadOption(e.Message, items) ?? (object)Options),
                DiskImageProblem.OptionNeeded => new ErrorRecord(new ArgumentException($"-Path {Path}: {e.Message} (in -Options)", e), "DiskImageOptionNeeded", ErrorCategory.InvalidArgument, Path),
                _ => new ErrorRecord(new InvalidDataException(e.Message, e), "DiskImageDamaged", ErrorCategory.InvalidData, e.File),
            });
            return;
        }
        catch (StorageException e)
        {
            WriteError(new ErrorRecord(e, "DiskImageUnreadable", ErrorCategory.ReadError, Path));
            return;
        }
        foreach (var name in TargetNames)
        {
            if (!ShouldProcess(name, ControllerType == DiskControllerType.AHCI ? $"Add AHCI disk {path}" : $"Add disk {path}")) continue;
            Try(name, () =>
            {
                VmDisk? added = null;
                if (DeviceErrors.ChangeStoppedVm(this, name, vm =>
                {
                    if (vm.Disks.Any(d => d.Path == path))
                        throw new DeviceErrorException(new ErrorRecord(new InvalidOperationException($"VM '{name}' already has the disk {path}."), "DiskExists", ErrorCategory.ResourceExists, Path));
                    added = new VmDisk { Path = path, Slot = Slot != 0 ? Slot : vm.NextFreeSlot(), Options = items.Length > 0 ? string.Join(",", items) : null, ControllerType = ControllerType };
                    vm.Disks.Add(added);
                }) == null) return;
                if (PassThru) WriteObject(new XhyveDisk(name, added!));
            });
        }
    }
}

/// <summary>Get-XhyveDisk: a VM's disks, with the geometry read from each image (Format, SizeBytes, SectorSize).</summary>
[Cmdlet(VerbsCommon.Get, "XhyveDisk", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveDisk))]
public sealed class GetXhyveDiskCommand : XhyveVMDeviceCmdlet
{
    protected override void ProcessRecord()
    {
        foreach (var name in TargetNames)
            Try(name, () => { foreach (var d in Store.Get(name).Disks) WriteObject(new XhyveDisk(name, d)); });
    }
}

/// <summary>Remove-XhyveDisk: detaches disks (by path or slot, or piped from Get-XhyveDisk); the image files stay.</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveDisk", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Disk")]
[OutputType(typeof(XhyveDisk))]
public sealed class RemoveXhyveDiskCommand : XhyveCmdlet
{
    /// <summary>Disks to remove, as Get-XhyveDisk writes them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Disk", ValueFromPipeline = true)]
    [ValidateNotNull]
    public XhyveDisk[] Disk { get; set; } = [];

    /// <summary>The VM to remove the disk from.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Path")]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string VMName { get; set; } = "";

    /// <summary>The image path of the disk to remove.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = "Path")] [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>Write the removed disk to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var targets = ParameterSetName == "Disk" ? Disk.Select(d => (d.VMName, d.Path, d.Path)) : [(VMName, ResolvePath(Path), Path)];
        foreach (var (vmName, path, given) in targets)
        {
            Try(vmName, () =>
            {
                // Checked before asking: a VM that is not there is the same VMNotFound error as Get-XhyveVM's.
                if (!DeviceErrors.VmExists(this, vmName) || !ShouldProcess(vmName, $"Remove disk {path}")) return;
                VmDisk? removed = null;
                if (DeviceErrors.ChangeStoppedVm(this, vmName, vm =>
                {
                    removed = vm.Disks.FirstOrDefault(d => d.Path == path) ?? throw new DeviceErrorException(
                        new ErrorRecord(new ItemNotFoundException($"VM '{vmName}' has no disk {path}."), "DiskNotFound", ErrorCategory.ObjectNotFound, given));
                    vm.Disks.Remove(removed);
                }) == null) return;
                if (PassThru) WriteObject(new XhyveDisk(vmName, removed!));
            });
        }
    }
}

/// <summary>New-XhyveDiskImage: creates a raw, split or sparse image (the format ../shared/reference/sparse-disk.md describes).</summary>
[Cmdlet(VerbsCommon.New, "XhyveDiskImage", SupportsShouldProcess = true)]
[OutputType(typeof(DiskImageInfo))]
public sealed class NewXhyveDiskImageCommand : XhyveCmdlet
{
    /// <summary>The image to create. For a split or sparse image, the base path: the segments and the LUT are named after it.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)] [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>The disk's size in bytes, a multiple of 1 KB (e.g. 20GB).</summary>
    [Parameter(Mandatory = true, Position = 1)] [ValidateRange(512L, long.MaxValue)]
    public long SizeBytes { get; set; }

    /// <summary>Split the image into segment files of this size.</summary>
    [Parameter] [ValidateRange(512L, long.MaxValue)]
    public long SplitBytes { get; set; }

    /// <summary>Store only written sectors (a LUT maps them).</summary>
    [Parameter]
    public SwitchParameter Sparse { get; set; }

    /// <summary>The logical sector size the image is laid out in: a power of two from 512 (the default) to 65536.</summary>
    [Parameter] [ValidateSectorSize]
    public int SectorSize { get; set; } = 512;

    protected override void ProcessRecord()
    {
        string path = ResolvePath(Path);
        // Block options read a bare number as MiB, so sizes go in with their largest exact unit.
        foreach (var (name, bytes) in new[] { (nameof(SizeBytes), SizeBytes), (nameof(SplitBytes), SplitBytes) })
            if (bytes % 1024 != 0)
            {
                WriteError(new ErrorRecord(new ArgumentException($"-{name} {bytes}: must be a multiple of 1 KB"), "InvalidDiskImageSize", ErrorCategory.InvalidArgument, bytes));
                return;
            }
        var items = new List<string> { "size=" + CommandLineFormatter.FormatSize((ulong)SizeBytes) };
        if (SplitBytes > 0) items.Add("split=" + CommandLineFormatter.FormatSize((ulong)SplitBytes));
        if (Sparse) items.Add("sparse");
        if (SectorSize != 512) items.Add($"sectorsize={SectorSize}");
        BlockDeviceOptions options;
        try { options = BlockDeviceOptions.ParseOptions(path, items.ToArray()); }
        catch (FormatException e)
        {
            WriteError(new ErrorRecord(new ArgumentException(e.Message, e), "InvalidDiskImage", ErrorCategory.InvalidArgument, Path));
            return;
        }
        if (!ShouldProcess(path, "Create disk image")) return;
        try { WriteObject(DiskImages.Create(options)); }
        catch (StorageException e) { WriteError(new ErrorRecord(e, "DiskImageNotCreated", ErrorCategory.WriteError, Path)); }
    }
}

/// <summary>The device cmdlets' errors that are not the store's: a specific id, category and target (the object as the
/// user gave it), as Hyper-V's cmdlets report them.</summary>
internal static class DeviceErrors
{
    /// <summary>Whether the VM is stored; if not, a VMNotFound error as Get-XhyveVM writes, naming it as given.</summary>
    public static bool VmExists(XhyveCmdlet cmdlet, string name)
    {
        if (cmdlet.Store.Exists(name)) return true;
        cmdlet.WriteError(new ErrorRecord(new ItemNotFoundException($"No VM named '{name}' exists in {cmdlet.Store.Root}."), "VMNotFound", ErrorCategory.ObjectNotFound, name));
        return false;
    }

    /// <summary><see cref="XhyveCmdlet.ChangeStoppedVm"/>, with a <see cref="DeviceErrorException"/> thrown by
    /// <paramref name="change"/> written as its error: the change is dropped and nothing is saved. Null then.</summary>
    public static VirtualMachine? ChangeStoppedVm(XhyveCmdlet cmdlet, string name, Action<VirtualMachine> change)
    {
        try { return cmdlet.ChangeStoppedVm(name, change); }
        catch (DeviceErrorException e)
        {
            cmdlet.WriteError(e.ErrorRecord);
            return null;
        }
    }

    /// <summary>The block option a parser message is about: the parser starts a message with the option as written
    /// ("bogus: unknown block option") or, for a value it checked after parsing, with its key ("size=N: ..."). Null when
    /// the message names none of <paramref name="items"/> (a problem of the options together).</summary>
    public static string? BadOption(string message, IReadOnlyList<string> items) =>
        items.FirstOrDefault(i => message.StartsWith(i + ":", StringComparison.Ordinal))
        ?? items.FirstOrDefault(i => i.IndexOf('=') is > 0 and var eq && message.StartsWith(i[..(eq + 1)], StringComparison.Ordinal));
}

/// <summary>Thrown from inside a store change to abandon it with an error of its own (DiskNotFound, DiskExists, ...).</summary>
internal sealed class DeviceErrorException(ErrorRecord record) : Exception(record.Exception.Message, record.Exception), IContainsErrorRecord
{
    public ErrorRecord ErrorRecord { get; } = record;
}

/// <summary>A logical sector size the engine accepts (<see cref="Vmm.Storage.SectorSize"/>), checked at binding time.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class ValidateSectorSizeAttribute : ValidateArgumentsAttribute
{
    protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
    {
        if (arguments is not int bytes || !Vmm.Storage.SectorSize.IsValidLogical(bytes))
            throw new ValidationMetadataException($"{arguments} is not a sector size: use a power of two from {Vmm.Storage.SectorSize.Min} to {Vmm.Storage.SectorSize.Max}.");
    }
}
