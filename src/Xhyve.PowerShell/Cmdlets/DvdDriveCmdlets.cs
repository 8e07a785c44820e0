using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>The ISO image a -Path names, checked before any VM is touched.</summary>
internal static class DvdMedia
{
    /// <summary>The absolute path of the ISO image <paramref name="given"/>, or null after an error naming it: DvdMediaNotFound
    /// (no such file), DvdMediaUnreadable, or InvalidDvdMediaPath (a character the engine's command line cannot hold).</summary>
    public static string? Resolve(XhyveCmdlet cmdlet, string given)
    {
        string full = cmdlet.ResolvePath(given);
        if (!File.Exists(full))
        {
            cmdlet.WriteError(new ErrorRecord(new FileNotFoundException($"-Path {given}: the ISO image does not exist ({full}).", full),
                "DvdMediaNotFound", ErrorCategory.ObjectNotFound, given));
            return null;
        }
        try { using var _ = File.OpenRead(full); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            cmdlet.WriteError(new ErrorRecord(new IOException($"-Path {given}: the ISO image cannot be read ({full}): {e.Message}", e),
                "DvdMediaUnreadable", ErrorCategory.ReadError, given));
            return null;
        }
        // The engine's -s separates fields with ',' (and the VM's paths are checked for ':' and ';' as well).
        if (full.IndexOfAny([',', ':', ';', '\n', '\r']) >= 0)
        {
            cmdlet.WriteError(new ErrorRecord(new ArgumentException($"-Path {given}: a path for the engine cannot contain ',', ':', ';' or a line break ({full})."),
                "InvalidDvdMediaPath", ErrorCategory.InvalidArgument, given));
            return null;
        }
        return full;
    }

    public static DeviceErrorException NotFound(string vmName, int slot, object given) =>
        new(new ErrorRecord(new ItemNotFoundException($"VM '{vmName}' has no DVD drive in slot {slot}."), "DvdDriveNotFound", ErrorCategory.ObjectNotFound, given));
}

/// <summary>Add-XhyveDvdDrive: adds a CD/DVD drive (an ATAPI drive on an AHCI controller of its own) to a VM that is off,
/// holding an ISO image or empty.</summary>
[Cmdlet(VerbsCommon.Add, "XhyveDvdDrive", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveDvdDrive))]
public sealed class AddXhyveDvdDriveCommand : XhyveVMDeviceCmdlet
{
    /// <summary>The ISO image in the drive; it must exist. Relative paths are resolved against the current location. Without -Path the drive is empty (Set-XhyveDvdDrive inserts a medium later, also while the VM runs).</summary>
    [Parameter(Position = 1)] [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    /// <summary>The PCI slot (1 to 30) of the drive's AHCI controller. By default, the lowest free slot from 2 up.</summary>
    [Parameter] [Alias("ControllerNumber")] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    /// <summary>Write the added drive to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        string? iso = Path != null ? DvdMedia.Resolve(this, Path) : null;
        if (Path != null && iso == null) return;
        foreach (var name in TargetNames)
        {
            if (!ShouldProcess(name, iso != null ? $"Add DVD drive with {iso}" : "Add empty DVD drive")) continue;
            Try(name, () =>
            {
                VmDvdDrive? added = null;
                if (DeviceErrors.ChangeStoppedVm(this, name, vm =>
                {
                    added = new VmDvdDrive { Path = iso, Slot = Slot != 0 ? Slot : vm.NextFreeSlot() };
                    vm.DvdDrives.Add(added);
                    // A -Slot another device has: an error of its own naming both, rather than the store's refusal.
                    string drive = FormattableString.Invariant($"DVD drive in slot {added.Slot} ");
                    if (vm.Validate().FirstOrDefault(p => p.StartsWith(drive, StringComparison.Ordinal)) is { } taken)
                        throw new DeviceErrorException(new ErrorRecord(new InvalidOperationException($"VM '{name}': {taken}; give another -Slot, or none for the lowest free one."),
                            "SlotInUse", ErrorCategory.ResourceExists, Slot));
                }) == null) return;
                if (PassThru) WriteObject(new XhyveDvdDrive(name, added!));
            });
        }
    }
}

/// <summary>Get-XhyveDvdDrive: a VM's CD/DVD drives and the ISO image in each. For a VM that is running, the medium is the
/// one its engine has now (the guest may have ejected it).</summary>
[Cmdlet(VerbsCommon.Get, "XhyveDvdDrive", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveDvdDrive))]
public sealed class GetXhyveDvdDriveCommand : XhyveVMDeviceCmdlet
{
    /// <summary>Only the drive in this PCI slot.</summary>
    [Parameter] [Alias("ControllerNumber")] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var vmName in TargetNames)
            Try(vmName, () =>
            {
                var drives = Store.Get(vmName).DvdDrives.Where(d => Slot == 0 || d.Slot == Slot).ToList();
                IReadOnlyList<DriveMedium>? live = null;
                if (drives.Count > 0 && Engines.GetStatus(vmName).State is VmState.Running or VmState.Paused)
                {
                    // An engine that cannot say (busy, or stopping right now) leaves the stored media to show.
                    try { live = Engines.Media(vmName); }
                    catch (EngineException) { }
                }
                foreach (var d in drives)
                {
                    var now = live?.FirstOrDefault(m => MediaCommand.SlotAndPort(m.Drive) == (d.Slot, 0));
                    WriteObject(new XhyveDvdDrive(vmName, d, now?.Medium, now != null));
                }
            });
    }
}

/// <summary>Cmdlets that act on one DVD drive at a time: named by -VMName (or -VM) and -Slot, or piped from Get-XhyveDvdDrive.</summary>
public abstract class XhyveDvdDriveCmdlet : XhyveVMDeviceCmdlet
{
    /// <summary>DVD drives, as Get-XhyveDvdDrive writes them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "DvdDrive", ValueFromPipeline = true)]
    [Alias("VMDvdDrive")]
    [ValidateNotNull]
    public XhyveDvdDrive[] DvdDrive { get; set; } = [];

    /// <summary>The PCI slot of the drive's AHCI controller, as Get-XhyveDvdDrive shows it.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = "Name")]
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = "VM")]
    [Alias("ControllerNumber")] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    /// <summary>Write the drive to the pipeline, as the change left it.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Each drive to act on: its VM, its slot, and the object the user named it by (the errors' target).</summary>
    protected IEnumerable<(string VMName, int Slot, object Given)> Targets =>
        ParameterSetName == "DvdDrive" ? DvdDrive.Select(d => (d.VMName, d.Slot, (object)d)) : TargetNames.Select(n => (n, Slot, (object)Slot));
}

/// <summary>Set-XhyveDvdDrive: inserts an ISO image into a DVD drive or ejects its medium; on a running VM, the guest sees
/// the change at once (through the engine's control API) and the VM keeps it.</summary>
[Cmdlet(VerbsCommon.Set, "XhyveDvdDrive", SupportsShouldProcess = true, DefaultParameterSetName = "DvdDrive")]
[OutputType(typeof(XhyveDvdDrive))]
public sealed class SetXhyveDvdDriveCommand : XhyveDvdDriveCmdlet
{
    /// <summary>The ISO image to insert; it must exist. Relative paths are resolved against the current location. Without -Path, or with -Path $null or '' (as Hyper-V's Set-VMDvdDrive -Path $null), the drive's medium is ejected and the drive is left empty.</summary>
    [Parameter(Position = 2, ParameterSetName = "Name")]
    [Parameter(Position = 2, ParameterSetName = "VM")]
    [Parameter(Position = 1, ParameterSetName = "DvdDrive")]
    [AllowNull] [AllowEmptyString]
    public string? Path { get; set; }

    protected override void ProcessRecord()
    {
        string? iso = string.IsNullOrEmpty(Path) ? null : DvdMedia.Resolve(this, Path);
        if (!string.IsNullOrEmpty(Path) && iso == null) return;
        foreach (var (vmName, slot, given) in Targets)
        {
            Try(vmName, () =>
            {
                // Checked before asking: a VM that is not there is the same VMNotFound error as Get-XhyveVM's.
                if (!DeviceErrors.VmExists(this, vmName)) return;
                if (!ShouldProcess(vmName, iso != null ? $"Insert {iso} into the DVD drive in slot {slot}" : $"Eject the medium of the DVD drive in slot {slot}")) return;
                if (Engines.GetStatus(vmName).State != VmState.Off)
                {
                    // The running engine first: if it refuses, the stored medium stays what the guest has.
                    var drive = Store.Get(vmName).DvdDrives.FirstOrDefault(d => d.Slot == slot) ?? throw DvdMedia.NotFound(vmName, slot, given);
                    try { Engines.ChangeMedium(vmName, drive.Drive, iso); }
                    catch (EngineException e)
                    {
                        throw new DeviceErrorException(new ErrorRecord(new InvalidOperationException(
                            $"VM '{vmName}': the DVD drive in slot {slot} ({drive.Drive}): the engine did not change the medium: {e.Message}", e),
                            "DvdMediaNotChanged", ErrorCategory.InvalidOperation, given));
                    }
                }
                VmDvdDrive? changed = null;
                Store.Update(vmName, vm =>
                {
                    changed = vm.DvdDrives.FirstOrDefault(d => d.Slot == slot) ?? throw DvdMedia.NotFound(vmName, slot, given);
                    changed.Path = iso;
                });
                if (PassThru) WriteObject(new XhyveDvdDrive(vmName, changed!));
            });
        }
    }
}

/// <summary>Remove-XhyveDvdDrive: removes DVD drives from a VM that is off; the ISO images stay.</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveDvdDrive", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "DvdDrive")]
[OutputType(typeof(XhyveDvdDrive))]
public sealed class RemoveXhyveDvdDriveCommand : XhyveDvdDriveCmdlet
{
    protected override void ProcessRecord()
    {
        foreach (var (vmName, slot, given) in Targets)
        {
            Try(vmName, () =>
            {
                if (!DeviceErrors.VmExists(this, vmName) || !ShouldProcess(vmName, $"Remove the DVD drive in slot {slot}")) return;
                VmDvdDrive? removed = null;
                if (DeviceErrors.ChangeStoppedVm(this, vmName, vm =>
                {
                    removed = vm.DvdDrives.FirstOrDefault(d => d.Slot == slot) ?? throw DvdMedia.NotFound(vmName, slot, given);
                    vm.DvdDrives.Remove(removed);
                }) == null) return;
                if (PassThru) WriteObject(new XhyveDvdDrive(vmName, removed!));
            });
        }
    }
}
