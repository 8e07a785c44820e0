using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>New-XhyveVM: defines a VM in the store (it does not start it).</summary>
[Cmdlet(VerbsCommon.New, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Kernel")]
[OutputType(typeof(XhyveVM))]
public sealed class NewXhyveVMCommand : XhyveCmdlet
{
    /// <summary>The VM's name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit. It names the VM's folder in the store. Names are case-insensitive (a VM 'Web' cannot be added beside 'web') and keep the case they are given.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "";

    /// <summary>The guest's memory in bytes (default 256MB, as xhyve's); at most the host's physical memory.</summary>
    [Parameter] [ValidateRange(2L << 20, long.MaxValue)]
    public long MemoryStartupBytes { get; set; } = VirtualMachine.DefaultMemoryStartupBytes;

    /// <summary>The number of virtual processors (default 1).</summary>
    [Parameter] [ValidateRange(1, 255)]
    public int ProcessorCount { get; set; } = 1;

    /// <summary>A Linux kernel (bzImage or ELF vmlinux) to boot with the Linux boot protocol, as xhyve's -f kexec.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Kernel")] [ValidateNotNullOrEmpty]
    public string KernelPath { get; set; } = "";

    /// <summary>The initial ramdisk the kernel gets.</summary>
    [Parameter(ParameterSetName = "Kernel")] [ValidateNotNullOrEmpty]
    public string? InitrdPath { get; set; }

    /// <summary>The kernel's command line (for a Linux kernel or a multiboot kernel).</summary>
    [Parameter] [AllowEmptyString]
    public string? KernelCommandLine { get; set; }

    /// <summary>A multiboot (v1) kernel to boot, as xhyve's -f multiboot.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Multiboot")] [ValidateNotNullOrEmpty]
    public string MultibootPath { get; set; } = "";

    /// <summary>Modules for the multiboot kernel: a path, optionally followed by a space and the module's command line.</summary>
    [Parameter(ParameterSetName = "Multiboot")] [ValidateNotNullOrEmpty]
    public string[] MultibootModule { get; set; } = [];

    /// <summary>Boot from firmware, as Hyper-V's generations: 1 boots SeaBIOS (/usr/share/seabios/bios.bin, Debian's seabios package), 2 boots UEFI (OVMF's /usr/share/OVMF/OVMF_CODE_4M.fd, Debian's ovmf package) with the VM's own copy of the variable store template /usr/share/OVMF/OVMF_VARS_4M.fd, made in the VM's folder. For other firmware files use -BootRomPath.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Generation")] [ValidateRange(1, 2)]
    public short Generation { get; set; }

    /// <summary>A firmware ROM to boot instead of a kernel (the engine's -l bootrom): SeaBIOS's bios.bin, or a UEFI code image with -UefiVariablesTemplatePath.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "BootRom")] [ValidateNotNullOrEmpty]
    public string BootRomPath { get; set; } = "";

    /// <summary>For UEFI firmware given with -BootRomPath: the variable store template (e.g. OVMF_VARS_4M.fd) the VM's own store is copied from. The VM is then a generation 2 VM.</summary>
    [Parameter(ParameterSetName = "BootRom")] [ValidateNotNullOrEmpty]
    public string? UefiVariablesTemplatePath { get; set; }

    /// <summary>Boot without ACPI tables (xhyve without -A). ACPI is on by default, and Stop-XhyveVM's graceful shutdown needs it.</summary>
    [Parameter]
    public SwitchParameter NoAcpi { get; set; }

    /// <summary>The VM's UUID, which the guest sees in SMBIOS. By default, a new random one.</summary>
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
        else if (ParameterSetName is "Generation" or "BootRom")
        {
            if (!ResolveFirmware(vm, Generation, ParameterSetName == "BootRom" ? BootRomPath : null, UefiVariablesTemplatePath)) return;
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
        if (!CheckHostMemory(MemoryStartupBytes, Name)) return;
        CreateVm(vm);
    }
}

/// <summary>Get-XhyveVM: the stored VMs with their runtime state.</summary>
// The Id set is the default, with -Id optional (no id: every VM, as with no -Name): in pipeline binding PowerShell
// tries the default set first, and a piped network adapter has a VMId and also a Name of its own ("Network
// Adapter") that is no VM's name. Anything else (a name, a pattern, an object with only VMName) still binds -Name.
[Cmdlet(VerbsCommon.Get, "XhyveVM", DefaultParameterSetName = "Id")]
[OutputType(typeof(XhyveVM))]
public sealed class GetXhyveVMCommand : XhyveCmdlet
{
    /// <summary>The ids (UUIDs) of the VMs to get. Objects with a VMId property (network adapters, VM objects) pipe in by it.</summary>
    [Parameter(ParameterSetName = "Id", ValueFromPipelineByPropertyName = true)]
    [Alias("VMId")]
    public Guid[] Id { get; set; } = [];

    /// <summary>The names of the VMs to get (case-insensitive). Wildcards are allowed. By default, all VMs.</summary>
    [Parameter(Position = 0, ParameterSetName = "Name", ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("VMName")]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VMNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = ["*"];

    protected override void ProcessRecord()
    {
        if (ParameterSetName == "Id" && Id.Length > 0)
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
        foreach (var name in ResolveNames(ParameterSetName == "Id" ? null : Name, null))
            Try(name, () => WriteObject(Snapshot(name)));
    }
}

/// <summary>Set-XhyveVM: changes a VM that is off.</summary>
[Cmdlet(VerbsCommon.Set, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class SetXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>The guest's memory in bytes; at most the host's physical memory.</summary>
    [Parameter] [ValidateRange(2L << 20, long.MaxValue)]
    public long MemoryStartupBytes { get; set; }

    /// <summary>The number of virtual processors.</summary>
    [Parameter] [ValidateRange(1, 255)]
    public int ProcessorCount { get; set; }

    /// <summary>A Linux kernel to boot. A multiboot kernel the VM had is replaced.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? KernelPath { get; set; }

    /// <summary>The initial ramdisk for the Linux kernel.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? InitrdPath { get; set; }

    /// <summary>Boot from firmware instead, as Hyper-V's generations: 1 is SeaBIOS, 2 is UEFI (OVMF) with the VM's own variable store copied into its folder (see New-XhyveVM). A kernel the VM had is replaced; a VM that already has a store keeps it (and its variables) while the template stays the same.</summary>
    [Parameter] [ValidateRange(1, 2)]
    public short Generation { get; set; }

    /// <summary>A firmware ROM to boot instead of a kernel. A kernel the VM had is replaced; a UEFI VM keeps its variable store.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? BootRomPath { get; set; }

    /// <summary>The UEFI variable store template the VM's own store is copied from; a new template replaces the store (and the variables in it). Needs a boot ROM.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? UefiVariablesTemplatePath { get; set; }

    /// <summary>The kernel's command line. An empty string removes it.</summary>
    [Parameter] [AllowEmptyString]
    public string? KernelCommandLine { get; set; }

    /// <summary>Whether the VM gets ACPI tables (xhyve's -A).</summary>
    [Parameter]
    public bool Acpi { get; set; }

    /// <summary>Further xhyve arguments, kept verbatim (e.g. '-u', '-s', '5,virtio-rnd'). They replace the VM's previous ones and are checked against the engine's command line; options the VM object owns (-c, -m, -A, -U, -f, --name, -l com1, -F, --control-socket, --exit-file, its slots) are refused.</summary>
    [Parameter] [AllowEmptyCollection]
    public string[]? ExtraArguments { get; set; }

    /// <summary>Write the changed VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        string? kernel = KernelPath != null ? ResolveExistingFile(KernelPath, nameof(KernelPath)) : null;
        string? initrd = InitrdPath != null ? ResolveExistingFile(InitrdPath, nameof(InitrdPath)) : null;
        if ((KernelPath != null && kernel == null) || (InitrdPath != null && initrd == null)) return;
        bool generation = MyInvocation.BoundParameters.ContainsKey(nameof(Generation));
        bool firmware = generation || BootRomPath != null || UefiVariablesTemplatePath != null;
        if (firmware && KernelPath != null)
        {
            WriteError(new ErrorRecord(new ArgumentException("-KernelPath and a boot ROM (-Generation, -BootRomPath, -UefiVariablesTemplatePath): a VM boots one way; give one of them."),
                "ConflictingBoot", ErrorCategory.InvalidArgument, KernelPath));
            return;
        }
        var rom = new VirtualMachine { Name = "firmware" };   // the resolved firmware files, applied to each VM below
        if (generation || BootRomPath != null)
        {
            if (!ResolveFirmware(rom, generation ? Generation : (short)0, BootRomPath, UefiVariablesTemplatePath)) return;
        }
        else if (UefiVariablesTemplatePath != null && (rom.UefiVariablesTemplatePath = ResolveExistingFile(UefiVariablesTemplatePath, nameof(UefiVariablesTemplatePath))) == null) return;
        if (MyInvocation.BoundParameters.ContainsKey(nameof(MemoryStartupBytes)) && !CheckHostMemory(MemoryStartupBytes, MemoryStartupBytes)) return;
        ForEachTarget("Set VM", name =>
        {
            var vm = ChangeStoppedVm(name, vm =>
            {
                var bound = MyInvocation.BoundParameters;
                if (bound.ContainsKey(nameof(MemoryStartupBytes))) vm.MemoryStartupBytes = MemoryStartupBytes;
                if (bound.ContainsKey(nameof(ProcessorCount))) vm.ProcessorCount = ProcessorCount;
                if (kernel != null) { vm.KernelPath = kernel; vm.MultibootPath = null; vm.MultibootModules.Clear(); vm.BootRomPath = null; vm.UefiVariablesTemplatePath = null; }
                if (rom.BootRomPath != null)
                {
                    (vm.KernelPath, vm.InitrdPath, vm.KernelCommandLine, vm.MultibootPath) = (null, null, null, null);
                    vm.MultibootModules.Clear();
                    vm.BootRomPath = rom.BootRomPath;
                    // -Generation says which firmware the VM has; -BootRomPath alone keeps a UEFI VM's store.
                    if (generation || rom.UefiVariablesTemplatePath != null) vm.UefiVariablesTemplatePath = rom.UefiVariablesTemplatePath;
                }
                else if (rom.UefiVariablesTemplatePath != null) vm.UefiVariablesTemplatePath = rom.UefiVariablesTemplatePath;
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

/// <summary>Remove-XhyveVM: deletes a VM that is off (its folder; disk images stay).</summary>
[Cmdlet(VerbsCommon.Remove, "XhyveVM", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class RemoveXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>Remove without asking for confirmation (unless -Confirm is given), and turn off a VM that is running first.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Write the removed VM, as it was, to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    // -Force means no prompt, as in Hyper-V's Remove-VM: not even when $ConfirmPreference is at or below this
    // cmdlet's High impact. -WhatIf still only reports, and an explicit -Confirm still asks.
    protected override bool ConfirmAction(string name, string action)
    {
        if (!Force || ConfirmRequested || WhatIfRequested) return ShouldProcess(name, action);
        return true;
    }

    private bool ConfirmRequested => MyInvocation.BoundParameters.TryGetValue("Confirm", out var c) && c is SwitchParameter { IsPresent: true };

    private bool WhatIfRequested => MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w)
        ? w is SwitchParameter { IsPresent: true }
        : LanguagePrimitives.IsTrue(GetVariableValue("WhatIfPreference"));

    protected override void ProcessRecord() => ForEachTarget("Remove VM", name =>
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
