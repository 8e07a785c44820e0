using System.Management.Automation;
using Xhyve.Management.Model;
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
    /// <summary>Only $true or $false: whether VMs can run.</summary>
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
        string engine = Engines.EnginePath;
        bool hasEngine = File.Exists(engine);
        checks.Add(new("Engine host", hasEngine, engine, hasEngine ? null : "Reinstall the module, or set XHYVE_ENGINE to the xhyve executable."));
        checks.Add(new("VM store", true, Store.Root, null));
        // VMs can run when KVM opened (which checks the API and the capabilities the engine requires) and the engine exists.
        if (Quiet) WriteObject(checks.Any(c => c.Check == "KVM API") && hasEngine);
        else WriteObject(checks, enumerateCollection: true);
    }
}

/// <summary>ConvertFrom-XhyveCommandLine: an xhyverun.sh argument list (or line) becomes a VM object to inspect,
/// or, with -Save, a stored VM as New-XhyveVM makes.</summary>
[Cmdlet(VerbsData.ConvertFrom, "XhyveCommandLine", SupportsShouldProcess = true)]
[OutputType(typeof(XhyveVM))]
public sealed class ConvertFromXhyveCommandLineCommand : XhyveCmdlet
{
    /// <summary>The arguments, one per element ("-m", "1G", ...), or a whole line in one string (split as a shell would, honouring quotes).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromRemainingArguments = true)]
    [ValidateNotNullOrEmpty]
    public string[] CommandLine { get; set; } = [];

    /// <summary>The VM's name. By default, the line's --name, or else "xhyve".</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Also store the VM (as New-XhyveVM does).</summary>
    [Parameter]
    public SwitchParameter Save { get; set; }

    private readonly List<string> _args = [];

    protected override void ProcessRecord()
    {
        try
        {
            foreach (var item in CommandLine)
                _args.AddRange(CommandLine.Length == 1 && item.Contains(' ') ? ShellWords.Split(item) : [item]);
        }
        catch (VmDefinitionException e)
        {
            ThrowTerminatingError(new ErrorRecord(e, "InvalidXhyveCommandLine", ErrorCategory.InvalidArgument, CommandLine));
        }
    }

    protected override void EndProcessing()
    {
        ConvertedVm converted;
        try { converted = VmArguments.FromArguments(_args, Name ?? "xhyve"); }
        catch (VmDefinitionException e)
        {
            WriteError(new ErrorRecord(e, "InvalidXhyveCommandLine", ErrorCategory.InvalidArgument, string.Join(" ", _args)));
            return;
        }
        foreach (var warning in converted.Warnings) WriteWarning(warning);
        var vm = converted.Vm;
        if (Save)
        {
            if (!ShouldProcess(vm.Name, "Create VM")) return;
            Try(vm.Name, () => WriteObject(Snapshot(Store.Create(vm))));
        }
        else WriteObject(new XhyveVM(vm, new Management.Engine.VmStatus(Management.Engine.VmState.Off), ""));
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
            else if (c == '\\' && i + 1 < line.Length) { word.Append(line[++i]); inWord = true; }
            else if (char.IsWhiteSpace(c)) { if (inWord) { words.Add(word.ToString()); word.Clear(); inWord = false; } }
            else { word.Append(c); inWord = true; }
        }
        if (quote != '\0') throw new VmDefinitionException($"unterminated {quote} quote in: {line}");
        if (inWord) words.Add(word.ToString());
        return words;
    }
}
