using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>New-XhyveVM: defines a VM in the store (it does not start it).</summary>
[Cmdlet(VerbsCommon.New, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Kernel")]
[OutputType(typeof(XhyveVM))]
public sealed class NewXhyveVMCommand : XhyveCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "";

    [Parameter] [ValidateRange(2L << 20, long.MaxValue)]
    public long MemoryStartupBytes { get; set; } = VirtualMachine.DefaultMemoryStartupBytes;

    [Parameter] [ValidateRange(1, 255)]
    public int ProcessorCount { get; set; } = 1;

    [Parameter(Mandatory = true, ParameterSetName = "Kernel")] [ValidateNotNullOrEmpty]
    public string KernelPath { get; set; } = "";

    [Parameter(ParameterSetName = "Kernel")] [ValidateNotNullOrEmpty]
    public string? InitrdPath { get; set; }

    [Parameter] [AllowEmptyString]
    public string? KernelCommandLine { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = "Multiboot")] [ValidateNotNullOrEmpty]
    public string MultibootPath { get; set; } = "";

    [Parameter(ParameterSetName = "Multiboot")] [ValidateNotNullOrEmpty]
    public string[] MultibootModule { get; set; } = [];

    [Parameter]
    public SwitchParameter NoAcpi { get; set; }

    [Parameter]
    public Guid Uuid { get; set; }

    protected override void ProcessRecord()
    {
        var vm = new VirtualMachine
        {
            Name = Name, MemoryStartupBytes = MemoryStartupBytes, ProcessorCount = ProcessorCount, Acpi = !NoAcpi,
            KernelCommandLine = string.IsNullOrEmpty(KernelCommandLine) ? null : KernelCommandLine,
        };
        if (Uuid != Guid.Empty) vm.Id = Uuid;
        if (ParameterSetName == "Kernel")
        {
            vm.KernelPath = ResolveExistingFile(KernelPath, nameof(KernelPath));
            if (vm.KernelPath == null) return;
            if (InitrdPath != null && (vm.InitrdPath = ResolveExistingFile(InitrdPath, nameof(InitrdPath))) == null) return;
        }
        else
        {
            vm.MultibootPath = ResolveExistingFile(MultibootPath, nameof(MultibootPath));
            if (vm.MultibootPath == null) return;
            foreach (var module in MultibootModule)
            {
                // PATH or "PATH ARGS": the module's own command line follows the first space, as in GRUB.
                int space = module.IndexOf(' ');
                string? path = ResolveExistingFile(space < 0 ? module : module[..space], nameof(MultibootModule));
                if (path == null) return;
                vm.MultibootModules.Add(new MultibootModuleDefinition(path, space < 0 ? null : module[(space + 1)..]));
            }
        }
        var problems = vm.Validate();
        if (problems.Count > 0)
        {
            foreach (var p in problems)
                WriteError(new ErrorRecord(new ArgumentException(p), "InvalidVMDefinition", ErrorCategory.InvalidArgument, Name));
            return;
        }
        if (Store.Exists(Name))
        {
            WriteError(new ErrorRecord(new InvalidOperationException($"A VM named '{Name}' already exists."), "VMExists", ErrorCategory.ResourceExists, Name));
            return;
        }
        if (!ShouldProcess(Name, "Create VM")) return;
        Try(Name, () => WriteObject(Snapshot(Store.Create(vm))));
    }
}

/// <summary>Get-XhyveVM: the stored VMs with their runtime state.</summary>
[Cmdlet(VerbsCommon.Get, "XhyveVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class GetXhyveVMCommand : XhyveCmdlet
{
    [Parameter(Position = 0, ParameterSetName = "Name", ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = ["*"];

    [Parameter(Mandatory = true, ParameterSetName = "Id")]
    public Guid[] Id { get; set; } = [];

    protected override void ProcessRecord()
    {
        if (ParameterSetName == "Id")
        {
            foreach (var id in Id)
            {
                string? match = null;
                foreach (var name in Store.Names())
                    Try(name, () => { if (Store.Get(name).Id == id) match = name; });
                if (match != null) Try(match, () => WriteObject(Snapshot(match)));
                else WriteError(new ErrorRecord(new ItemNotFoundException($"No VM has the id {id}."), "VMNotFound", ErrorCategory.ObjectNotFound, id));
            }
            return;
        }
        foreach (var name in ResolveNames(Name, null))
            Try(name, () => WriteObject(Snapshot(name)));
    }
}

/// <summary>Set-XhyveVM: changes a VM that is off.</summary>
[Cmdlet(VerbsCommon.Set, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class SetXhyveVMCommand : XhyveVMActionCmdlet
{
    [Parameter] [ValidateRange(2L << 20, long.MaxValue)]
    public long MemoryStartupBytes { get; set; }

    [Parameter] [ValidateRange(1, 255)]
    public int ProcessorCount { get; set; }

    [Parameter] [ValidateNotNullOrEmpty]
    public string? KernelPath { get; set; }

    [Parameter] [ValidateNotNullOrEmpty]
    public string? InitrdPath { get; set; }

    [Parameter] [AllowEmptyString]
    public string? KernelCommandLine { get; set; }

    [Parameter]
    public bool Acpi { get; set; }

    [Parameter] [AllowEmptyCollection]
    public string[]? ExtraArguments { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        string? kernel = KernelPath != null ? ResolveExistingFile(KernelPath, nameof(KernelPath)) : null;
        string? initrd = InitrdPath != null ? ResolveExistingFile(InitrdPath, nameof(InitrdPath)) : null;
        if ((KernelPath != null && kernel == null) || (InitrdPath != null && initrd == null)) return;
        foreach (var name in TargetNames)
        {
            if (!ShouldProcess(name, "Set VM")) continue;
            Try(name, () =>
            {
                if (Engines.GetStatus(name).State != VmState.Off)
                    throw new EngineException($"VM '{name}' is running; stop it before changing it");
                var vm = Store.Update(name, vm =>
                {
                    var bound = MyInvocation.BoundParameters;
                    if (bound.ContainsKey(nameof(MemoryStartupBytes))) vm.MemoryStartupBytes = MemoryStartupBytes;
                    if (bound.ContainsKey(nameof(ProcessorCount))) vm.ProcessorCount = ProcessorCount;
                    if (kernel != null) { vm.KernelPath = kernel; vm.MultibootPath = null; vm.MultibootModules.Clear(); }
                    if (initrd != null) vm.InitrdPath = initrd;
                    if (bound.ContainsKey(nameof(KernelCommandLine))) vm.KernelCommandLine = string.IsNullOrEmpty(KernelCommandLine) ? null : KernelCommandLine;
                    if (bound.ContainsKey(nameof(Acpi))) vm.Acpi = Acpi;
                    if (ExtraArguments != null) vm.ExtraArguments = [.. ExtraArguments];
                    VmArguments.ToArguments(vm, null);   // refuses extra arguments the engine would not take
                });
                if (PassThru) WriteObject(Snapshot(vm));
            });
        }
    }
}

/// <summary>Remove-XhyveVM: deletes a VM that is off (its folder; disk images stay).</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveVM", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class RemoveXhyveVMCommand : XhyveVMActionCmdlet
{
    [Parameter]
    public SwitchParameter Force { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var name in TargetNames)
        {
            if (!ShouldProcess(name, "Remove VM")) continue;
            Try(name, () =>
            {
                var snapshot = Snapshot(name);
                if (snapshot.State != VmState.Off)
                {
                    if (!Force) throw new EngineException($"VM '{name}' is {snapshot.State}; stop it first, or use -Force to turn it off");
                    Engines.TurnOff(name);
                }
                Store.Remove(name);
                if (PassThru) WriteObject(snapshot);
            });
        }
    }
}
