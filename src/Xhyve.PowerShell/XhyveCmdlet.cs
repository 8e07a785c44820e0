using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.PowerShell;

/// <summary>What every Xhyve cmdlet shares: the store and engine host, VM lookup by name (with wildcards)
/// or by object, and errors as ErrorRecords with a category and the object they concern.</summary>
public abstract class XhyveCmdlet : PSCmdlet
{
    private VmStore? _store;
    private EngineHost? _host;

    internal VmStore Store => _store ??= VmStore.OpenDefault();
    internal EngineHost Engines => _host ??= new EngineHost(Store);

    internal XhyveVM Snapshot(string name) => new(Store.Get(name), Engines.GetStatus(name), Store.FolderOf(name));

    internal XhyveVM Snapshot(VirtualMachine vm) => new(vm, Engines.GetStatus(vm.Name), Store.FolderOf(vm.Name));

    /// <summary>The VMs that -Name (wildcards allowed) or -VM name. A name without wildcards that matches
    /// nothing is an ObjectNotFound error; a pattern that matches nothing is not.</summary>
    internal IEnumerable<string> ResolveNames(string[]? names, XhyveVM[]? vms)
    {
        if (vms != null)
        {
            foreach (var vm in vms) yield return vm.Name;
            yield break;
        }
        var all = Store.Names();
        foreach (var name in names ?? ["*"])
        {
            if (WildcardPattern.ContainsWildcardCharacters(name))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                foreach (var n in all.Where(pattern.IsMatch)) yield return n;
            }
            else if (all.Contains(name, StringComparer.Ordinal)) yield return name;
            else WriteError(new ErrorRecord(new ItemNotFoundException($"No VM named '{name}' exists in {Store.Root}."), "VMNotFound", ErrorCategory.ObjectNotFound, name));
        }
    }

    /// <summary>A file the user named: resolved against the current location; an error naming it when it does not exist.</summary>
    internal string? ResolveExistingFile(string path, string parameter)
    {
        string full = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
        if (File.Exists(full)) return full;
        WriteError(new ErrorRecord(new FileNotFoundException($"-{parameter} {path}: the file does not exist ({full}).", full), "FileNotFound", ErrorCategory.ObjectNotFound, path));
        return null;
    }

    internal string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>Changes a stored VM that is off (a running engine's machine is fixed for its lifetime).</summary>
    internal VirtualMachine ChangeStoppedVm(string name, Action<VirtualMachine> change)
    {
        if (Engines.GetStatus(name).State != VmState.Off)
            throw new EngineException($"VM '{name}' is running; stop it before changing it");
        return Store.Update(name, change);
    }

    /// <summary>Progress of a wait with a timeout; <paramref name="elapsed"/> null completes the record.</summary>
    internal void WaitProgress(int id, string activity, string status, TimeSpan? elapsed, int timeoutSec) =>
        WriteProgress(elapsed is TimeSpan e
            ? new ProgressRecord(id, activity, status)
            {
                SecondsRemaining = Math.Max(0, timeoutSec - (int)e.TotalSeconds),
                PercentComplete = Math.Min(100, (int)(100 * e.TotalSeconds / timeoutSec)),
            }
            : new ProgressRecord(id, activity, "Done") { RecordType = ProgressRecordType.Completed });

    /// <summary>Runs <paramref name="action"/> for one VM, turning the library's exceptions into errors on that VM.</summary>
    internal void Try(string name, Action action)
    {
        try { action(); }
        catch (VmStoreException e) { WriteError(new ErrorRecord(e, "VMStoreError", ErrorCategory.InvalidOperation, name)); }
        catch (VmDefinitionException e) { WriteError(new ErrorRecord(e, "InvalidVMDefinition", ErrorCategory.InvalidArgument, name)); }
        catch (EngineException e) { WriteError(new ErrorRecord(e, "EngineError", ErrorCategory.InvalidOperation, name)); }
    }
}

/// <summary>Cmdlets that act on existing VMs: -Name (wildcards, position 0, pipeline) or -VM (pipeline), and -PassThru.</summary>
public abstract class XhyveVMActionCmdlet : XhyveCmdlet
{
    // VMName, as Hyper-V: a disk or adapter object piped in names its VM by that property.
    /// <summary>The names of the VMs. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Name", ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("VMName")]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = [];

    /// <summary>VM objects, as Get-XhyveVM and New-XhyveVM write them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "VM", ValueFromPipeline = true)]
    [ValidateNotNull]
    public XhyveVM[] VM { get; set; } = [];

    protected IEnumerable<string> TargetNames => ResolveNames(ParameterSetName == "VM" ? null : Name, ParameterSetName == "VM" ? VM : null);

    /// <summary>Runs <paramref name="body"/> for each target VM the user confirms (-WhatIf/-Confirm), with the
    /// library's errors reported on that VM and the loop going on.</summary>
    protected void ForEachTarget(string action, Action<string> body)
    {
        foreach (var name in TargetNames)
            if (ShouldProcess(name, action)) Try(name, () => body(name));
    }
}

/// <summary>Cmdlets for a VM's devices: -VMName (wildcards, position 0, by property name) or -VM (pipeline), as Hyper-V's.</summary>
public abstract class XhyveVMDeviceCmdlet : XhyveCmdlet
{
    /// <summary>The names of the VMs. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Name", ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] VMName { get; set; } = [];

    /// <summary>VM objects, as Get-XhyveVM and New-XhyveVM write them.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "VM", ValueFromPipeline = true)]
    [ValidateNotNull]
    public XhyveVM[] VM { get; set; } = [];

    protected IEnumerable<string> TargetNames => ResolveNames(ParameterSetName == "VM" ? null : VMName, ParameterSetName == "VM" ? VM : null);
}
