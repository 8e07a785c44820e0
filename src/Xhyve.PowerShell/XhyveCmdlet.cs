using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;
using Xhyve.PowerShell.Cmdlets;

namespace Xhyve.PowerShell;

/// <summary>What every Xhyve cmdlet shares: the store and engine host, VM lookup by name (with wildcards)
/// or by object, and errors as ErrorRecords with a category and the object they concern.</summary>
public abstract class XhyveCmdlet : PSCmdlet
{
    private VmStore? _store;
    private EngineHost? _host;

    /// <summary>The store ($XHYVE_HOME), checked once per command: a store that cannot be used stops the command with
    /// a VMStoreUnavailable error naming its path, before anything is read or written.</summary>
    internal VmStore Store
    {
        get
        {
            if (_store != null) return _store;
            var store = VmStore.OpenDefault();
            try { store.CheckAvailable(); }
            catch (VmStoreUnavailableException e) { ThrowTerminatingError(StoreUnavailable(e)); }
            return _store = store;
        }
    }

    internal static ErrorRecord StoreUnavailable(VmStoreUnavailableException e) =>
        new(e, "VMStoreUnavailable", e.PermissionDenied ? ErrorCategory.PermissionDenied : ErrorCategory.ResourceUnavailable, e.Path);

    internal EngineHost Engines => _host ??= new EngineHost(Store);

    internal XhyveVM Snapshot(string name) => new(Store.Get(name), Engines.GetStatus(name), Store.FolderOf(name));

    internal XhyveVM Snapshot(VirtualMachine vm) => Snapshot(vm, Engines.GetStatus(vm.Name));

    /// <summary>With a status the engine has just given (a start, a wait): no second query for the same answer.</summary>
    internal XhyveVM Snapshot(VirtualMachine vm, VmStatus status) => new(vm, status, Store.FolderOf(vm.Name));

    /// <summary>The VMs that -Name (wildcards allowed) or -VM name, as the store spells them: names are
    /// case-insensitive, as in PowerShell and Hyper-V. A name without wildcards that matches nothing is an
    /// ObjectNotFound error; a pattern that matches nothing is not.</summary>
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
                continue;
            }
            var matches = all.Where(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)).ToList();
            if (matches.Count == 1) yield return matches[0];
            else if (matches.Count == 0)
                WriteError(new ErrorRecord(new ItemNotFoundException($"No VM named '{name}' exists in {Store.Root}."), "VMNotFound", ErrorCategory.ObjectNotFound, name));
            else
                WriteError(new ErrorRecord(new InvalidOperationException($"VM '{name}' is ambiguous: the store has {string.Join(" and ", matches.Select(m => Path.Combine(Store.Root, "vms", m)))}, which differ only in case (VM names are case-insensitive); rename or remove all but one."),
                    "VMNameAmbiguous", ErrorCategory.InvalidData, name));
        }
    }

    /// <summary>A file the user named: resolved against the current location; an error naming it when it does not exist.</summary>
    internal string? ResolveExistingFile(string path, string parameter) => ResolveExistingFile(path, parameter, "-" + parameter + " " + path);

    /// <summary>As above, with the error naming the file as <paramref name="given"/> (e.g. the command-line flag it came from).</summary>
    internal string? ResolveExistingFile(string path, string parameter, string given)
    {
        string full = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
        if (File.Exists(full)) return full;
        WriteError(new ErrorRecord(new FileNotFoundException($"{given}: the file does not exist ({full}).", full), "FileNotFound", ErrorCategory.ObjectNotFound, path));
        return null;
    }

    /// <summary>Sets a VM's firmware: -Generation 1 (SeaBIOS) or 2 (OVMF and its variable store template), or a ROM
    /// given with -BootRomPath and, for UEFI, -UefiVariablesTemplatePath. A file that is missing is a FileNotFound error
    /// naming it (and the package that has it); false then, and nothing is set.</summary>
    internal bool ResolveFirmware(VirtualMachine vm, short generation, string? bootRomPath, string? varsTemplatePath)
    {
        if (generation != 0 && (bootRomPath != null || varsTemplatePath != null))
        {
            WriteError(new ErrorRecord(new ArgumentException("-Generation picks the firmware files itself; for other firmware give -BootRomPath (and -UefiVariablesTemplatePath for UEFI) without -Generation."),
                "ConflictingFirmware", ErrorCategory.InvalidArgument, generation));
            return false;
        }
        string? rom, vars = null;
        if (generation != 0)
        {
            var files = FirmwareFiles.ForGeneration(generation);
            rom = ResolveExistingFile(files.Rom, "Generation", $"-Generation {generation} needs {files.Description} {files.Rom} ({files.Package})");
            if (rom == null) return false;
            if (files.VarsTemplate != null
                && (vars = ResolveExistingFile(files.VarsTemplate, "Generation", $"-Generation {generation} needs OVMF's variable store template {files.VarsTemplate} ({files.Package})")) == null)
                return false;
        }
        else
        {
            rom = ResolveExistingFile(bootRomPath!, "BootRomPath");
            if (rom == null) return false;
            if (varsTemplatePath != null && (vars = ResolveExistingFile(varsTemplatePath, "UefiVariablesTemplatePath")) == null) return false;
        }
        // The engine's own rules for a ROM image (whole 4 KiB pages, at most 16 MiB), now rather than at the first start.
        if (Vmm.Boot.BootRom.Problem(rom) is { } problem)
        {
            WriteError(new ErrorRecord(new ArgumentException(problem), "InvalidBootRom", ErrorCategory.InvalidArgument, rom));
            return false;
        }
        (vm.BootRomPath, vm.UefiVariablesTemplatePath) = (rom, vars);
        return true;
    }

    /// <summary>Stores a new VM and writes it (New-XhyveVM, ConvertFrom-XhyveCommandLine -Save): a name taken in any
    /// case is a VMExists error (Hyper-V's names are case-insensitive too), and -WhatIf/-Confirm are asked.</summary>
    internal void CreateVm(VirtualMachine vm) => Try(vm.Name, () =>
    {
        if (Store.Exists(vm.Name))
        {
            WriteError(new ErrorRecord(new InvalidOperationException($"A VM named '{Store.Find(vm.Name) ?? vm.Name}' already exists (VM names are case-insensitive)."),
                "VMExists", ErrorCategory.ResourceExists, vm.Name));
            return;
        }
        if (ShouldProcess(vm.Name, "Create VM")) WriteObject(Snapshot(Store.Create(vm)));
    });

    /// <summary>Refuses (as a MemoryExceedsHost error naming both sizes) memory above the host's physical memory.</summary>
    internal bool CheckHostMemory(long memoryBytes, object target)
    {
        if (HostFacts.MemoryProblem(memoryBytes, HostFacts.MemoryTotalBytes()) is not { } problem) return true;
        WriteError(new ErrorRecord(new ArgumentException(problem + "."), "MemoryExceedsHost", ErrorCategory.InvalidArgument, target));
        return false;
    }

    internal string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>Changes a stored VM that is off (a running engine's machine is fixed for its lifetime); one that is not
    /// is a VMRunning error naming Stop-XhyveVM, with the VM as target.</summary>
    internal VirtualMachine ChangeStoppedVm(string name, Action<VirtualMachine> change)
    {
        if (Engines.GetStatus(name).State is var state and not VmState.Off)
            throw new DeviceErrorException(new ErrorRecord(new InvalidOperationException($"VM '{name}' is {state}; stop it with Stop-XhyveVM before changing it."),
                "VMRunning", ErrorCategory.InvalidOperation, name));
        return Store.Update(name, change);
    }

    /// <summary>Progress of a wait with a timeout; <paramref name="elapsed"/> null completes the record, if one was
    /// shown: most waits end before the first report, and a completion record alone costs the host ~0.6 ms.</summary>
    internal void WaitProgress(int id, string activity, string status, TimeSpan? elapsed, int timeoutSec)
    {
        if (elapsed is TimeSpan e)
        {
            _progressShown.Add(id);
            WriteProgress(new ProgressRecord(id, activity, status)
            {
                SecondsRemaining = Math.Max(0, timeoutSec - (int)e.TotalSeconds),
                PercentComplete = Math.Min(100, (int)(100 * e.TotalSeconds / timeoutSec)),
            });
        }
        else if (_progressShown.Remove(id))
            WriteProgress(new ProgressRecord(id, activity, "Done") { RecordType = ProgressRecordType.Completed });
    }

    private readonly HashSet<int> _progressShown = [];

    /// <summary>Runs <paramref name="action"/> for one VM, turning the library's exceptions into errors on that VM.</summary>
    internal void Try(string name, Action action)
    {
        try { action(); }
        catch (DeviceErrorException e) { WriteError(e.ErrorRecord); }
        catch (VmStoreUnavailableException e) { WriteError(StoreUnavailable(e)); }
        catch (VmExistsException e) { WriteError(new ErrorRecord(e, "VMExists", ErrorCategory.ResourceExists, name)); }
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
            if (ConfirmAction(name, action)) Try(name, () => body(name));
    }

    /// <summary>Whether to go ahead with <paramref name="action"/> on a VM: ShouldProcess (-WhatIf, -Confirm and
    /// $ConfirmPreference against the cmdlet's ConfirmImpact).</summary>
    protected virtual bool ConfirmAction(string name, string action) => ShouldProcess(name, action);
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
