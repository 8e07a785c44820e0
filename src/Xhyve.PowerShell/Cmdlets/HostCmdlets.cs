using System.Management.Automation;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>One finding of Test-XhyveHost.</summary>
public sealed record XhyveHostCheck(string Check, bool Passed, string Detail, string? Advice);

/// <summary>Test-XhyveHost: can this machine run VMs, and how well? One object per check, with advice where a check fails.</summary>
[Cmdlet(VerbsDiagnostic.Test, "XhyveHost")]
[OutputType(typeof(XhyveHostCheck), typeof(bool))]
public sealed class TestXhyveHostCommand : XhyveCmdlet
{
    /// <summary>Only $true or $false: whether VMs can run (KVM opens, the engine is there and the VM store is usable).</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        var checks = new List<XhyveHostCheck>();
        bool present = KvmHypervisor.IsPresent;
        checks.Add(new("KVM device", present, present ? KvmHypervisor.DevicePath : $"{KvmHypervisor.DevicePath} does not exist",
            present ? null : "Load the KVM module (modprobe kvm_intel or kvm_amd) and enable virtualization in the firmware settings."));
        if (present)
        {
            try
            {
                using var kvm = KvmHypervisor.Open();
                checks.Add(new("KVM API", true, $"API {KvmHypervisor.ApiVersion}, up to {kvm.MaxVcpus} vCPUs per VM ({kvm.RecommendedVcpus} recommended)", null));
                foreach (var (name, has) in kvm.Capabilities())
                    checks.Add(new(name, has, has ? "present" : "missing", has ? null : "Some engine features fall back or are unavailable; a newer kernel has it."));
                string module = KvmHypervisor.Module();
                bool hardware = module is "kvm_intel" or "kvm_amd";
                checks.Add(new("Hardware-assisted", hardware, module switch
                {
                    "kvm_intel" => "VT-x (kvm_intel)", "kvm_amd" => "AMD-V (kvm_amd)",
                    "kvm_pvm" => "kvm_pvm: software nesting, guest kernel code is emulated (~650 ns per instruction)",
                    _ => "unknown KVM module",
                }, hardware ? null : "Guests run, but slowly, and Linux stops early on kvm_pvm; use a host with VT-x or AMD-V for real workloads."));
            }
            catch (HypervisorException e)
            {
                checks.Add(new("KVM access", false, e.Message, $"Add your user to the group that owns {KvmHypervisor.DevicePath} (usually 'kvm'), then log in again."));
            }
        }
        bool tun = File.Exists("/dev/net/tun");
        checks.Add(new("TUN device", tun, tun ? "/dev/net/tun" : "/dev/net/tun does not exist", tun ? null : "virtio-tap adapters need it: modprobe tun."));
        // User-mode adapters run passt beside the engine, found as the engine finds it.
        string? passt = PasstBackend.FindPasst();
        checks.Add(new("passt", passt != null, passt ?? "not found ($XHYVE_PASST, or passt on PATH)",
            passt != null ? null : "Network adapters in User mode need it: apt-get install passt, or set XHYVE_PASST to the passt program."));
        // Not this cmdlet's Store/Engines: an unusable store is a finding here, not an error that stops the test.
        var store = VmStore.OpenDefault();
        string engine = new EngineHost(store).EnginePath;
        bool hasEngine = File.Exists(engine);
        checks.Add(new("Engine host", hasEngine, engine, hasEngine ? null : "Reinstall the module, or set XHYVE_ENGINE to the xhyve executable."));
        string? storeProblem = null;
        try { store.CheckAvailable(probeWrite: true); }
        catch (VmStoreUnavailableException e) { storeProblem = e.Message; }
        checks.Add(new("VM store", storeProblem == null, storeProblem ?? store.Root, storeProblem == null ? null
            : "Set XHYVE_HOME to a folder you can write (or unset it for ~/.local/share/xhyve), in your profile so that every session uses it."));
        // VMs can run when KVM opened (which checks the API and the capabilities the engine requires) and the engine exists.
        if (Quiet) WriteObject(checks.Any(c => c.Check == "KVM API") && hasEngine && storeProblem == null);
        else WriteObject(checks, enumerateCollection: true);
    }
}

/// <summary>ConvertFrom-XhyveCommandLine: an xhyverun.sh argument list (or line) becomes a VM object to inspect,
/// or, with -Save, a stored VM as New-XhyveVM makes.</summary>
[Cmdlet(VerbsData.ConvertFrom, "XhyveCommandLine", SupportsShouldProcess = true)]
[OutputType(typeof(XhyveVM))]
public sealed class ConvertFromXhyveCommandLineCommand : XhyveCmdlet
{
    /// <summary>The arguments, one per element ("-m", "1G", ...), or a whole line in one string (split as a shell would, honouring quotes), or the lines of a shell script's command with backslash-newline continuations (in one string, or one line per element or pipeline item). A leading xhyve (or a path ending in /xhyve) is skipped.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromRemainingArguments = true)]
    [ValidateNotNullOrEmpty]
    public string[] CommandLine { get; set; } = [];

    /// <summary>The VM's name. By default, the line's --name, or else "xhyve".</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Also store the VM, as New-XhyveVM does: the files the line names (kernel, initrd, multiboot kernel and modules, boot ROM and UEFI variable store, disks, DVD drives' ISO images) are made absolute from the current location and must exist, except a disk with size=, which the engine creates. The variable store of -l bootrom,CODE,VARS is copied into the VM's folder: the stored VM's firmware writes its own copy, never VARS.</summary>
    [Parameter]
    public SwitchParameter Save { get; set; }

    private readonly List<string> _args = [];
    private readonly List<string> _given = [];   // the command's input as written: what its errors name and target
    private bool _pending;     // input taken since the last command was converted
    private bool _lines;       // some of that input was a line to split (not a single argument)
    private bool _continued;   // the previous element or pipeline item ended with a backslash: this one is its next line
    private VmDefinitionException? _unsplit;   // a line of the command that could not be split (an unterminated quote)

    protected override void ProcessRecord()
    {
        foreach (var item in CommandLine)
        {
            // A line to split: the whole line in one string, or a line of a script's command (one that ends with a
            // backslash continuation, or follows one). Other elements are single arguments, spaces and all.
            bool endsContinued = ShellWords.EndsWithContinuation(item);
            bool isLine = (CommandLine.Length == 1 && item.Any(char.IsWhiteSpace)) || endsContinued || _continued;
            _given.Add(item);
            _pending = true;
            _lines |= isLine;
            if (!isLine) _args.Add(item);
            else if (_unsplit == null)
            {
                try { _args.AddRange(ShellWords.Split(item)); }
                catch (VmDefinitionException e) { _unsplit = e; }
            }
            _continued = endsContinued;
            // A line that does not continue ends its command: converted now, so that in a pipeline of several lines
            // each gets its VM or its own error and the next one goes on.
            if (isLine && !endsContinued) ConvertCommand();
        }
    }

    /// <summary>Whether <paramref name="word"/> names the xhyve program (as a pasted line starts), not an argument.</summary>
    private static bool IsProgram(string word) => word == "xhyve" || word.EndsWith("/xhyve", StringComparison.Ordinal);

    // Arguments given one per element or pipeline item form one command, converted at the end.
    protected override void EndProcessing()
    {
        if (_pending) ConvertCommand();
    }

    /// <summary>Converts the command the input so far makes (writing it, or storing it with -Save), and starts the next.
    /// Its errors are non-terminating, with the command line as written as their target.</summary>
    private void ConvertCommand()
    {
        string given = string.Join(_lines ? "\n" : " ", _given);
        var args = _args.ToList();
        var unsplit = _unsplit;
        _args.Clear();
        _given.Clear();
        _pending = _lines = _continued = false;
        _unsplit = null;
        if (unsplit != null)
        {
            WriteError(new ErrorRecord(unsplit, "UnterminatedQuote", ErrorCategory.InvalidArgument, given));
            return;
        }
        if (args.Count > 0 && IsProgram(args[0])) args.RemoveAt(0);
        ConvertedVm converted;
        try { converted = VmArguments.FromArguments(args, Name ?? "xhyve"); }
        catch (VmDefinitionException e)
        {
            WriteError(new ErrorRecord(e, "InvalidXhyveCommandLine", ErrorCategory.InvalidArgument, given));
            return;
        }
        foreach (var warning in converted.Warnings) WriteWarning(warning);
        var vm = converted.Vm;
        // A stored VM's engine runs in the VM's folder, not here: its relative paths are made absolute from the current
        // location. The object to inspect shows the line as written.
        if (Save)
        {
            if (AbsolutePaths(vm) && CheckHostMemory(vm.MemoryStartupBytes, vm.Name)) CreateVm(vm);
        }
        else WriteObject(new XhyveVM(vm, new Management.Engine.VmStatus(Management.Engine.VmState.Off), ""));
    }

    /// <summary>Makes the VM's file paths absolute, writing a FileNotFound error naming the flag and path for each missing
    /// one (a disk with size= excepted); false if there was any.</summary>
    private bool AbsolutePaths(VirtualMachine vm)
    {
        bool ok = true;
        string? File(string? path, string given, bool required = true)
        {
            if (path == null) return null;
            if (!required) return ResolvePath(path);
            string? full = ResolveExistingFile(path, "CommandLine", given);
            ok &= full != null;
            return full ?? path;
        }
        vm.KernelPath = File(vm.KernelPath, $"-f kexec kernel {vm.KernelPath}");
        vm.InitrdPath = File(vm.InitrdPath, $"-f kexec initrd {vm.InitrdPath}");
        vm.MultibootPath = File(vm.MultibootPath, $"-f multiboot kernel {vm.MultibootPath}");
        vm.BootRomPath = File(vm.BootRomPath, $"-l bootrom ROM {vm.BootRomPath}");
        vm.UefiVariablesTemplatePath = File(vm.UefiVariablesTemplatePath, $"-l bootrom variable store {vm.UefiVariablesTemplatePath}");
        for (int i = 0; i < vm.MultibootModules.Count; i++)
        {
            var m = vm.MultibootModules[i];
            vm.MultibootModules[i] = m with { Path = File(m.Path, $"-f multiboot module {m.Path}")! };
        }
        foreach (var disk in vm.Disks)
        {
            // size= makes the engine create the image on first start; without it the image must be there.
            bool created = disk.Options?.Split(',').Any(o => o.StartsWith("size=", StringComparison.Ordinal)) == true;
            disk.Path = File(disk.Path, $"-s {disk.Slot},{disk.Emulation},{disk.Path}", required: !created)!;
        }
        foreach (var drive in vm.DvdDrives) drive.Path = File(drive.Path, $"-s {drive.Slot},ahci-cd,{drive.Path}");
        return ok;
    }
}

/// <summary>Splits a command line as a POSIX shell would for plain words and quotes (no expansion).</summary>
internal static class ShellWords
{
    public static List<string> Split(string line)
    {
        var words = new List<string>();
        var word = new System.Text.StringBuilder();
        bool inWord = false;
        char quote = '\0';
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (quote != '\0')
            {
                if (c == quote) quote = '\0';
                else if (c == '\\' && quote == '"' && i + 1 < line.Length && line[i + 1] is '"' or '\\' or '$') word.Append(line[++i]);
                else word.Append(c);
            }
            else if (c is '\'' or '"') { quote = c; inWord = true; }
            // Backslash-newline joins lines (a script's continuation; blanks pasted after the backslash are let go), and
            // one at the very end continues on the next line.
            else if (c == '\\' && BlankToLineEnd(line, i + 1) is int end) i = end;
            else if (c == '\\') { word.Append(line[++i]); inWord = true; }
            else if (char.IsWhiteSpace(c)) { if (inWord) { words.Add(word.ToString()); word.Clear(); inWord = false; } }
            else { word.Append(c); inWord = true; }
        }
        if (quote != '\0') throw new VmDefinitionException($"unterminated {quote} quote in: {line}");
        if (inWord) words.Add(word.ToString());
        return words;
    }

    /// <summary>The index of the newline (or the last index) if only blanks follow <paramref name="start"/> up to the end
    /// of its line; else null.</summary>
    private static int? BlankToLineEnd(string line, int start)
    {
        for (int i = start; i < line.Length; i++)
        {
            if (line[i] == '\n') return i;
            if (line[i] is not (' ' or '\t' or '\r')) return null;
        }
        return line.Length - 1;
    }

    /// <summary>Whether <paramref name="line"/> ends in an unescaped backslash (trailing blanks aside): a shell line that
    /// continues on the next.</summary>
    public static bool EndsWithContinuation(string line)
    {
        string trimmed = line.TrimEnd(' ', '\t', '\r', '\n');
        int backslashes = trimmed.Length - trimmed.TrimEnd('\\').Length;
        return backslashes % 2 == 1;
    }
}
