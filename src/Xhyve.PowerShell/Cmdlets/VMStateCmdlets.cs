using System.Management.Automation;
using System.Text.RegularExpressions;
using Xhyve.Management.Engine;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>Start-XhyveVM: starts each VM in its own engine host and waits until it runs.</summary>
[Cmdlet(VerbsLifecycle.Start, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class StartXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>Write the started VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Start VM", name =>
    {
        var vm = Store.Get(name);
        Engines.Start(vm, TimeSpan.FromSeconds(30));
        if (PassThru) WriteObject(Snapshot(vm));
    });
}

/// <summary>What Stop-XhyveVM and Restart-XhyveVM share: the ACPI power button with a timeout, -TurnOff and -Force.</summary>
public abstract class XhyveVMShutdownCmdlet : XhyveVMActionCmdlet
{
    /// <summary>Turn the VM off at once, as if pulling the plug, instead of pressing the power button.</summary>
    [Parameter]
    public SwitchParameter TurnOff { get; set; }

    /// <summary>Turn off a guest that does not react to the power button, or does not finish shutting down within -TimeoutSec.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How long the guest gets to shut down after the power button (default 60).</summary>
    [Parameter] [ValidateRange(1, 86400)]
    public int TimeoutSec { get; set; } = 60;

    /// <summary>Shuts the VM down (or turns it off) unless it is off already, showing progress while the guest shuts down.</summary>
    protected void ShutDown(string name)
    {
        if (Engines.GetStatus(name).State == VmState.Off) return;
        string activity = $"{MyInvocation.MyCommand.Name} {name}";
        if (TurnOff) Engines.TurnOff(name);
        else Engines.Stop(name, TimeSpan.FromSeconds(TimeoutSec), Force, elapsed => WaitProgress(1, activity, "Waiting for the guest to shut down", elapsed, TimeoutSec));
        WaitProgress(1, activity, "", null, TimeoutSec);
    }
}

/// <summary>Stop-XhyveVM: shuts down through the ACPI power button (the guest's own shutdown) and waits;
/// -TurnOff pulls the plug; -Force turns off a guest that does not listen or does not finish in time.</summary>
[Cmdlet(VerbsLifecycle.Stop, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class StopXhyveVMCommand : XhyveVMShutdownCmdlet
{
    /// <summary>Write the stopped VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget(TurnOff ? "Turn off VM" : "Shut down VM", name =>
    {
        ShutDown(name);
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>Restart-XhyveVM: shuts down (or with -TurnOff, turns off) and starts again.</summary>
[Cmdlet(VerbsLifecycle.Restart, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class RestartXhyveVMCommand : XhyveVMShutdownCmdlet
{
    /// <summary>Write the restarted VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Restart VM", name =>
    {
        ShutDown(name);
        var vm = Store.Get(name);
        Engines.Start(vm, TimeSpan.FromSeconds(30));
        if (PassThru) WriteObject(Snapshot(vm));
    });
}

/// <summary>Suspend-XhyveVM: pauses every vCPU (the engine keeps the VM in memory).</summary>
[Cmdlet(VerbsLifecycle.Suspend, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class SuspendXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>Write the paused VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Pause VM", name =>
    {
        Engines.Control(name, "pause");
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>Resume-XhyveVM: lets a paused VM run again.</summary>
[Cmdlet(VerbsLifecycle.Resume, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class ResumeXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>Write the resumed VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Resume VM", name =>
    {
        Engines.Control(name, "resume");
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>What Wait-XhyveVM waits for.</summary>
public enum XhyveWaitFor { Running, Off, ConsoleText }

/// <summary>Wait-XhyveVM: waits until each VM runs, is off, or printed text matching -Pattern on its console.
/// Passes the VMs on, so it ends a pipeline that starts them.</summary>
[Cmdlet(VerbsLifecycle.Wait, "XhyveVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class WaitXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>What to wait for: Running (the default), Off, or ConsoleText (a -Pattern match on the console).</summary>
    [Parameter]
    public XhyveWaitFor For { get; set; } = XhyveWaitFor.Running;

    /// <summary>With -For ConsoleText: a regular expression to find in what the guest printed.</summary>
    [Parameter] [ValidateNotNullOrEmpty]
    public string? Pattern { get; set; }

    /// <summary>How long to wait (default 60). On timeout the cmdlet writes an OperationTimeout error for the VM.</summary>
    [Parameter] [ValidateRange(1, 86400)]
    public int TimeoutSec { get; set; } = 60;

    protected override void BeginProcessing()
    {
        if (For == XhyveWaitFor.ConsoleText && Pattern == null)
            ThrowTerminatingError(new ErrorRecord(new ArgumentException("-For ConsoleText needs -Pattern (a regular expression to find in the console output)."), "PatternMissing", ErrorCategory.InvalidArgument, For));
    }

    protected override void ProcessRecord()
    {
        var timeout = TimeSpan.FromSeconds(TimeoutSec);
        foreach (var name in TargetNames)
        {
            Try(name, () =>
            {
                void Progress(TimeSpan elapsed) => WaitProgress(2, $"Wait-XhyveVM {name}", $"Waiting for {For}", elapsed, TimeoutSec);
                bool reached = For switch
                {
                    XhyveWaitFor.ConsoleText => Engines.WaitForConsole(name, new Regex(Pattern!, RegexOptions.Multiline), timeout, Progress) != null,
                    XhyveWaitFor.Off => Engines.WaitFor(name, s => s.State == VmState.Off, timeout, Progress) != null,
                    _ => Engines.WaitFor(name, s => s.State is VmState.Running or VmState.Paused, timeout, Progress) != null,
                };
                WaitProgress(2, $"Wait-XhyveVM {name}", "", null, TimeoutSec);
                if (!reached)
                {
                    // Say where it is instead, and how its last run ended when it is off (a guest that stopped early).
                    var now = Engines.GetStatus(name);
                    string ended = now.State == VmState.Off && now.ExitReason != null
                        ? $" (exit status {now.ExitCode?.ToString() ?? "unknown"}: {now.ExitReason})" : "";
                    WriteError(new ErrorRecord(new TimeoutException($"VM '{name}' did not reach {For} within {TimeoutSec} s; it is {now.State}{ended}."), "WaitTimeout", ErrorCategory.OperationTimeout, name));
                }
                else WriteObject(Snapshot(name));
            });
        }
    }
}
