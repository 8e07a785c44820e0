using System.Management.Automation;
using System.Text.RegularExpressions;
using Xhyve.Management.Model;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>Add-XhyveNetworkAdapter: defines a network adapter (virtio-net with user-mode networking, or
/// virtio-tap on a host TAP device). The engine builds the device once networking lands; until then a VM
/// with an adapter does not start.</summary>
[Cmdlet(VerbsCommon.Add, "XhyveNetworkAdapter", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class AddXhyveNetworkAdapterCommand : XhyveVMDeviceCmdlet
{
    private static readonly Regex Mac = new("^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$", RegexOptions.CultureInvariant);

    /// <summary>The adapter's name, unique within the VM (default "Network Adapter").</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "Network Adapter";

    /// <summary>A host TAP device (virtio-tap); without it the adapter uses user-mode networking (virtio-net).</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? TapDevice { get; set; }

    /// <summary>The adapter's MAC address, six hex pairs separated by ':'. By default the engine derives one from the VM.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? MacAddress { get; set; }

    /// <summary>The PCI slot (1 to 30) for the adapter. By default, the lowest free slot from 2 up.</summary>
    [Parameter] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    /// <summary>Write the added adapter to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (MacAddress != null && !Mac.IsMatch(MacAddress))
        {
            WriteError(new ErrorRecord(new ArgumentException($"-MacAddress {MacAddress}: expected six hex pairs separated by ':' (52:54:00:12:34:56)"),
                "InvalidMacAddress", ErrorCategory.InvalidArgument, MacAddress));
            return;
        }
        foreach (var vmName in TargetNames)
        {
            if (!ShouldProcess(vmName, $"Add network adapter '{Name}'")) continue;
            Try(vmName, () =>
            {
                VmNetworkAdapter? added = null;
                ChangeStoppedVm(vmName, vm =>
                {
                    if (vm.NetworkAdapters.Any(n => n.Name == Name)) throw new VmDefinitionException($"VM '{vmName}' already has a network adapter named '{Name}'");
                    added = new VmNetworkAdapter
                    {
                        Name = Name, Slot = Slot != 0 ? Slot : vm.NextFreeSlot(), MacAddress = MacAddress?.ToLowerInvariant(),
                        Emulation = TapDevice != null ? "virtio-tap" : "virtio-net", Options = TapDevice,
                    };
                    vm.NetworkAdapters.Add(added);
                });
                if (PassThru) WriteObject(new XhyveNetworkAdapter(vmName, added!));
            });
        }
    }
}

/// <summary>Get-XhyveNetworkAdapter: a VM's network adapters.</summary>
[Cmdlet(VerbsCommon.Get, "XhyveNetworkAdapter", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class GetXhyveNetworkAdapterCommand : XhyveVMDeviceCmdlet
{
    /// <summary>Only adapters whose name matches (wildcards allowed).</summary>
    [Parameter] [SupportsWildcards] [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "*";

    protected override void ProcessRecord()
    {
        var pattern = new WildcardPattern(Name, WildcardOptions.IgnoreCase);
        foreach (var vmName in TargetNames)
            Try(vmName, () =>
            {
                foreach (var n in Store.Get(vmName).NetworkAdapters.Where(n => pattern.IsMatch(n.Name)))
                    WriteObject(new XhyveNetworkAdapter(vmName, n));
            });
    }
}

/// <summary>Remove-XhyveNetworkAdapter: removes adapters by name, or piped from Get-XhyveNetworkAdapter.</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveNetworkAdapter", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Adapter")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class RemoveXhyveNetworkAdapterCommand : XhyveCmdlet
{
    /// <summary>Adapters to remove, as Get-XhyveNetworkAdapter writes them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Adapter", ValueFromPipeline = true)]
    [ValidateNotNull]
    public XhyveNetworkAdapter[] NetworkAdapter { get; set; } = [];

    /// <summary>The VM to remove the adapter from.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Name")]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string VMName { get; set; } = "";

    /// <summary>The name of the adapter to remove.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = "Name")] [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "";

    /// <summary>Write the removed adapter to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var targets = ParameterSetName == "Adapter" ? NetworkAdapter.Select(n => (n.VMName, n.Name)) : [(VMName, Name)];
        foreach (var (vmName, adapterName) in targets)
        {
            if (!ShouldProcess(vmName, $"Remove network adapter '{adapterName}'")) continue;
            Try(vmName, () =>
            {
                VmNetworkAdapter? removed = null;
                ChangeStoppedVm(vmName, vm =>
                {
                    removed = vm.NetworkAdapters.FirstOrDefault(n => n.Name == adapterName)
                        ?? throw new VmDefinitionException($"VM '{vmName}' has no network adapter named '{adapterName}'");
                    vm.NetworkAdapters.Remove(removed);
                });
                if (PassThru) WriteObject(new XhyveNetworkAdapter(vmName, removed!));
            });
        }
    }
}
