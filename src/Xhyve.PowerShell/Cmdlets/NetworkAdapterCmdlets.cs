using System.Management.Automation;
using Xhyve.Management.Model;
using Xhyve.Vmm.Config;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>What Add- and Set-XhyveNetworkAdapter check before touching a VM: each -MacAddress and -PortForward value
/// on its own (so the error names the parameter and the value), in the spelling the VM stores.</summary>
internal static class AdapterParameters
{
    /// <summary>The canonical MAC address (lower case, ':'), or null after writing an error naming -MacAddress.</summary>
    public static string? MacAddress(Cmdlet cmdlet, string value)
    {
        try { return Vmm.Config.MacAddress.Parse(value).ToString(); }
        catch (FormatException e)
        {
            cmdlet.WriteError(new ErrorRecord(Reworded("MacAddress", value, "mac", e), "InvalidMacAddress", ErrorCategory.InvalidArgument, value));
            return null;
        }
    }

    /// <summary>The forwards as PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT, or null after writing an error naming each bad one.</summary>
    public static List<string>? PortForwards(Cmdlet cmdlet, string[] values)
    {
        var forwards = new List<string>();
        foreach (var value in values)
        {
            try { forwards.Add(VmNetworkAdapter.FormatPortForward(PortForward.Parse(value))); }
            catch (FormatException e)
            {
                cmdlet.WriteError(new ErrorRecord(Reworded("PortForward", value, "hostfwd", e), "InvalidPortForward", ErrorCategory.InvalidArgument, value));
            }
        }
        return forwards.Count == values.Length ? forwards : null;
    }

    // The engine's parser names the value in its own spelling (mac=X, hostfwd=X and QEMU's example); the user wrote -Parameter X.
    private static ArgumentException Reworded(string parameter, string value, string engineOption, FormatException e)
    {
        string why = e.Message.StartsWith($"{engineOption}={value}: ", StringComparison.Ordinal) ? e.Message[(engineOption.Length + value.Length + 3)..] : e.Message;
        return new ArgumentException($"-{parameter} {value}: {why.Replace("(e.g. hostfwd=tcp:8080-:80)", "(e.g. tcp:8080:80)", StringComparison.Ordinal)}", e);
    }
}

/// <summary>Add-XhyveNetworkAdapter: defines a virtio-net adapter, with user-mode networking (passt) or on a host TAP
/// device, in a VM that is off.</summary>
[Cmdlet(VerbsCommon.Add, "XhyveNetworkAdapter", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class AddXhyveNetworkAdapterCommand : XhyveVMDeviceCmdlet
{
    /// <summary>The adapter's name, unique within the VM (default "Network Adapter").</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "Network Adapter";

    /// <summary>User: user-mode networking through passt (DHCP, DNS, NAT and port forwards; no root). Tap: the host TAP device -TapName. Without -Mode, Tap when -TapName is given and User otherwise.</summary>
    [Parameter]
    public NetBackendKind Mode { get; set; }

    /// <summary>The host TAP device (e.g. tap0) for -Mode Tap; refused with -Mode User.</summary>
    [Parameter] [Alias("TapDevice")] [ValidateNotNullOrEmpty]
    public string? TapName { get; set; }

    /// <summary>A fixed MAC address, six hex pairs separated by ':' (multicast addresses are refused). By default the adapter gets a stable address derived from the VM's Id and the slot, which Get-XhyveNetworkAdapter shows.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? MacAddress { get; set; }

    /// <summary>Host ports forwarded to the guest (-Mode User only), each PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT with tcp or udp, e.g. 'tcp:8080:80' or 'udp:127.0.0.1:5353:53'.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string[] PortForward { get; set; } = [];

    /// <summary>The PCI slot (1 to 30) for the adapter. By default, the lowest free slot from 2 up.</summary>
    [Parameter] [ValidateRange(1, 30)]
    public int Slot { get; set; }

    /// <summary>Write the added adapter to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        string? mac = MacAddress != null ? AdapterParameters.MacAddress(this, MacAddress) : null;
        var forwards = AdapterParameters.PortForwards(this, PortForward);
        if ((MacAddress != null && mac == null) || forwards == null) return;
        var mode = MyInvocation.BoundParameters.ContainsKey(nameof(Mode)) ? Mode : TapName != null ? NetBackendKind.Tap : NetBackendKind.User;
        var template = new VmNetworkAdapter { Name = Name, Mode = mode, TapName = TapName, MacAddress = mac, PortForwards = forwards };
        try { template.ToOptions(); }
        catch (FormatException e)
        {
            WriteError(new ErrorRecord(new ArgumentException($"network adapter '{Name}': {e.Message}", e), "InvalidNetworkAdapter", ErrorCategory.InvalidArgument, Name));
            return;
        }
        foreach (var vmName in TargetNames)
        {
            if (!ShouldProcess(vmName, $"Add network adapter '{Name}' ({mode}{(TapName != null ? " " + TapName : "")})")) continue;
            Try(vmName, () =>
            {
                VmNetworkAdapter? added = null;
                var vm = DeviceErrors.ChangeStoppedVm(this, vmName, vm =>
                {
                    if (vm.NetworkAdapters.Any(n => n.Name == Name))
                        throw new DeviceErrorException(new ErrorRecord(new InvalidOperationException($"VM '{vmName}' already has a network adapter named '{Name}'."),
                            "NetworkAdapterExists", ErrorCategory.ResourceExists, Name));
                    added = new VmNetworkAdapter
                    {
                        Name = Name, Slot = Slot != 0 ? Slot : vm.NextFreeSlot(), Mode = mode, TapName = TapName, MacAddress = mac, PortForwards = [.. forwards],
                    };
                    vm.NetworkAdapters.Add(added);
                    VmArguments.ToArguments(vm, null);   // a MAC, TAP device or host port another adapter has is refused here
                });
                if (vm == null) return;
                if (PassThru) WriteObject(new XhyveNetworkAdapter(vm, added!));
            });
        }
    }
}

/// <summary>Get-XhyveNetworkAdapter: a VM's network adapters, with the MAC address each one has (set, or the stable one).</summary>
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
                var vm = Store.Get(vmName);
                foreach (var n in vm.NetworkAdapters.Where(n => pattern.IsMatch(n.Name)))
                    WriteObject(new XhyveNetworkAdapter(vm, n));
            });
    }
}

/// <summary>Cmdlets that act on one adapter at a time: named by -VMName and -Name, or piped from Get-XhyveNetworkAdapter.</summary>
public abstract class XhyveNetworkAdapterCmdlet : XhyveCmdlet
{
    /// <summary>Adapters, as Get-XhyveNetworkAdapter writes them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Adapter", ValueFromPipeline = true)]
    [ValidateNotNull]
    public XhyveNetworkAdapter[] NetworkAdapter { get; set; } = [];

    /// <summary>The VM the adapter belongs to.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Name")]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string VMName { get; set; } = "";

    /// <summary>The adapter's name.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = "Name")] [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "";

    /// <summary>Write the adapter to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Runs <paramref name="change"/> on each target adapter the user confirms, in its stopped VM; a missing
    /// VM is VMNotFound and a missing adapter NetworkAdapterNotFound, each naming it as given, and -PassThru writes the adapter as the change left it.</summary>
    protected void ChangeEachAdapter(string action, Action<VirtualMachine, VmNetworkAdapter> change)
    {
        var targets = ParameterSetName == "Adapter" ? NetworkAdapter.Select(n => (n.VMName, n.Name)) : [(VMName, Name)];
        foreach (var (vmName, adapterName) in targets)
        {
            Try(vmName, () =>
            {
                // Checked before asking: a VM that is not there is the same VMNotFound error as Get-XhyveVM's.
                if (!DeviceErrors.VmExists(this, vmName) || !ShouldProcess(vmName, $"{action} network adapter '{adapterName}'")) return;
                VmNetworkAdapter? changed = null;
                var vm = DeviceErrors.ChangeStoppedVm(this, vmName, vm =>
                {
                    changed = vm.NetworkAdapters.FirstOrDefault(n => n.Name == adapterName) ?? throw new DeviceErrorException(new ErrorRecord(
                        new ItemNotFoundException($"VM '{vmName}' has no network adapter named '{adapterName}'."), "NetworkAdapterNotFound", ErrorCategory.ObjectNotFound, adapterName));
                    change(vm, changed);
                });
                if (vm == null) return;
                if (PassThru) WriteObject(new XhyveNetworkAdapter(vm, changed!));
            });
        }
    }
}

/// <summary>Set-XhyveNetworkAdapter: changes the mode, TAP device, MAC address or port forwards of an adapter of a VM that is off.</summary>
[Cmdlet(VerbsCommon.Set, "XhyveNetworkAdapter", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class SetXhyveNetworkAdapterCommand : XhyveNetworkAdapterCmdlet
{
    /// <summary>User (user-mode networking through passt) or Tap (the host TAP device -TapName). Going to User drops the TAP device; going to Tap needs -TapName unless the adapter has one, and refuses port forwards the adapter has unless -PortForward @() drops them.</summary>
    [Parameter]
    public NetBackendKind Mode { get; set; }

    /// <summary>The host TAP device (e.g. tap0) of an adapter in Tap mode.</summary>
    [Parameter] [Alias("TapDevice")] [ValidateNotNullOrEmpty]
    public string? TapName { get; set; }

    /// <summary>A fixed MAC address, six hex pairs separated by ':' (multicast addresses are refused). -StableMacAddress goes back to the derived one.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? MacAddress { get; set; }

    /// <summary>Drop the fixed MAC address: the adapter gets the stable address derived from the VM's Id and the slot again.</summary>
    [Parameter]
    public SwitchParameter StableMacAddress { get; set; }

    /// <summary>The host ports forwarded to the guest (Mode User only), replacing the adapter's list; @() removes them all. Each is PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT, e.g. 'tcp:8080:80'.</summary>
    [Parameter] [AllowEmptyCollection]
    public string[]? PortForward { get; set; }

    protected override void ProcessRecord()
    {
        if (MacAddress != null && StableMacAddress)
        {
            WriteError(new ErrorRecord(new ArgumentException($"-MacAddress {MacAddress} and -StableMacAddress: give one of them"), "ConflictingMacAddress", ErrorCategory.InvalidArgument, MacAddress));
            return;
        }
        string? mac = MacAddress != null ? AdapterParameters.MacAddress(this, MacAddress) : null;
        var forwards = PortForward != null ? AdapterParameters.PortForwards(this, PortForward) : null;
        if ((MacAddress != null && mac == null) || (PortForward != null && forwards == null)) return;
        bool modeGiven = MyInvocation.BoundParameters.ContainsKey(nameof(Mode));
        ChangeEachAdapter("Set", (vm, adapter) =>
        {
            if (modeGiven)
            {
                if (Mode == NetBackendKind.Tap && forwards == null && adapter.PortForwards.Count > 0)
                    throw new VmDefinitionException($"VM '{vm.Name}': network adapter '{adapter.Name}': -Mode Tap: the adapter forwards host ports ({string.Join(", ", adapter.PortForwards)}), which a TAP adapter cannot; add -PortForward @() to drop them");
                if (Mode == NetBackendKind.User && TapName == null) adapter.TapName = null;
                adapter.Mode = Mode;
            }
            if (TapName != null) adapter.TapName = TapName;
            if (mac != null) adapter.MacAddress = mac;
            if (StableMacAddress) adapter.MacAddress = null;
            if (forwards != null) adapter.PortForwards = [.. forwards];
            // Settings that do not go together, and a MAC, TAP device or host port another adapter has, are refused here.
            VmArguments.ToArguments(vm, null);
        });
    }
}

/// <summary>Remove-XhyveNetworkAdapter: removes adapters by name, or piped from Get-XhyveNetworkAdapter.</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveNetworkAdapter", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Adapter")]
[OutputType(typeof(XhyveNetworkAdapter))]
public sealed class RemoveXhyveNetworkAdapterCommand : XhyveNetworkAdapterCmdlet
{
    protected override void ProcessRecord() => ChangeEachAdapter("Remove", (vm, adapter) => vm.NetworkAdapters.Remove(adapter));
}
