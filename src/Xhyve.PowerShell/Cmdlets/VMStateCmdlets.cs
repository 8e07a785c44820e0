using System.Management.Automation;
using System.Text.RegularExpressions;
using Xhyve.Management.Engine;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>
/// What the state cmdlets share: a VM in a state the cmdlet cannot act on is an error that says which cmdlet or switch
/// to use (with its own error id, and the VM as target object); a VM already in the wanted state is a warning.
/// </summary>
public abstract class XhyveVMStateCmdlet : XhyveVMActionCmdlet
{
    /// <summary>Writes the state-conflict error for <paramref name="name"/>; false, so callers can <c>return</c> it.</summary>
    internal bool Conflict(string name, string errorId, ErrorCategory category, string message)
    {
        WriteError(new ErrorRecord(new InvalidOperationException(message), errorId, category, name));
        return false;
    }

    /// <summary>The error for a VM that is off when it must run.</summary>
    internal bool NotRunning(string name, VmStatus status) => Conflict(name, "VMNotRunning", ErrorCategory.InvalidOperation,
        $"VM '{name}' is Off{LastRun(status)}; start it with Start-XhyveVM.");

    /// <summary>The error for an engine that does not answer its control socket.</summary>
    internal bool NotResponding(string name, VmStatus status) => Conflict(name, "VMNotResponding", ErrorCategory.ResourceUnavailable,
        $"VM '{name}' is not responding (engine pid {status.ProcessId}: its control socket does not answer); turn it off with Stop-XhyveVM -TurnOff, or remove it with Remove-XhyveVM -Force.");

    /// <summary>" (exit status N: reason)" for a VM whose last run ended with a status, else "".</summary>
    internal static string LastRun(VmStatus status) => status.State == VmState.Off && (status.ExitReason != null || status.ExitCode != null)
        ? $" (exit status {status.ExitCode?.ToString() ?? "unknown"}: {status.ExitReason ?? "no reason given"})" : "";

    /// <summary>A VM that must be running (or paused) for the action: true when it is; else the error or warning is written.</summary>
    internal bool RequireRunning(string name, VmStatus status) => status.State switch
    {
        VmState.Running or VmState.Paused or VmState.Starting => true,
        VmState.Off => NotRunning(name, status),
        VmState.NotResponding => NotResponding(name, status),
        _ => Conflict(name, "VMStopping", ErrorCategory.InvalidOperation,
            $"VM '{name}' is Stopping; wait for it with Wait-XhyveVM -For Off, then start it with Start-XhyveVM."),
    };

    internal void AlreadyInState(string name, VmState state) => WriteWarning($"VM '{name}' is already {state}.");
}

/// <summary>Start-XhyveVM: starts each VM in its own engine host and waits until it runs.</summary>
[Cmdlet(VerbsLifecycle.Start, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class StartXhyveVMCommand : XhyveVMStateCmdlet
{
    /// <summary>Write the started VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Start VM", name =>
    {
        var vm = Store.Get(name);
        var now = Engines.GetStatus(name);
        VmStatus? started = null;
        switch (now.State)
        {
            case VmState.Running: AlreadyInState(name, now.State); break;
            case VmState.Paused:
                Conflict(name, "VMAlreadyRunning", ErrorCategory.InvalidOperation, $"VM '{name}' is Paused; resume it with Resume-XhyveVM.");
                return;
            case VmState.Starting:
                Conflict(name, "VMAlreadyRunning", ErrorCategory.InvalidOperation, $"VM '{name}' is Starting already; wait for it with Wait-XhyveVM.");
                return;
            case VmState.Stopping:
                Conflict(name, "VMStopping", ErrorCategory.InvalidOperation, $"VM '{name}' is Stopping; wait for it with Wait-XhyveVM -For Off, then start it.");
                return;
            case VmState.NotResponding: NotResponding(name, now); return;
            default:
                started = Engines.Start(vm, TimeSpan.FromSeconds(30));
                // The guest ran and went off before the start was seen through (powered off, or reset in a storm).
                if (started.State == VmState.Off) WriteWarning($"VM '{name}' started, but is Off again{LastRun(started)}.");
                break;
        }
        // The status the start ended with is the engine's answer of a moment ago.
        if (PassThru) WriteObject(started is { } status ? Snapshot(vm, status) : Snapshot(vm));
    });
}

/// <summary>Stop-XhyveVM's shutdown: the ACPI power button with a timeout, -TurnOff and -Force.</summary>
public abstract class XhyveVMShutdownCmdlet : XhyveVMStateCmdlet
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

    /// <summary>Shuts the VM down (or turns it off) unless it is off already (a warning), showing progress while the
    /// guest shuts down. An engine that does not respond can only be turned off (-TurnOff, or -Force).</summary>
    protected void ShutDown(string name)
    {
        var now = Engines.GetStatus(name);
        if (now.State == VmState.Off) { AlreadyInState(name, now.State); return; }
        if (now.State == VmState.NotResponding && !TurnOff && !Force) { NotResponding(name, now); return; }
        string activity = $"{MyInvocation.MyCommand.Name} {name}";
        if (TurnOff || now.State == VmState.NotResponding) Engines.TurnOff(name);
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

/// <summary>How Restart-XhyveVM restarts a VM.</summary>
public enum XhyveRestartType
{
    /// <summary>A hard reset, like the reset button: the machine is built again at once, without the guest's shutdown.</summary>
    Reset,
    /// <summary>A graceful restart: the ACPI power button, the guest shuts down, and the machine starts again.</summary>
    Reboot,
}

/// <summary>Restart-XhyveVM: as Hyper-V's Restart-VM, a hard reset by default; -Type Reboot shuts the guest down through
/// the ACPI power button and starts it again. Either way the engine (and its pid) stays and the VM ends Running.</summary>
[Cmdlet(VerbsLifecycle.Restart, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class RestartXhyveVMCommand : XhyveVMStateCmdlet
{
    /// <summary>Reset (the default): a hard reset, like the reset button. Reboot: the ACPI power button, so the guest
    /// shuts down on its own, and then the machine starts again.</summary>
    [Parameter]
    public XhyveRestartType Type { get; set; } = XhyveRestartType.Reset;

    /// <summary>With -Type Reboot: reset a guest that does not listen to the power button, or is not running again within -TimeoutSec.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How long the restart may take until the VM runs again (default 60): with -Type Reboot, the guest's shutdown included.</summary>
    [Parameter] [ValidateRange(1, 86400)]
    public int TimeoutSec { get; set; } = 60;

    /// <summary>Write the restarted VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget(Type == XhyveRestartType.Reset ? "Reset VM" : "Reboot VM", name =>
    {
        var before = Engines.GetStatus(name);
        if (!RequireRunning(name, before)) return;
        if (Type == XhyveRestartType.Reboot && before.State == VmState.Paused)
        {
            Conflict(name, "VMNotRunning", ErrorCategory.InvalidOperation,
                $"VM '{name}' is Paused, so its guest cannot shut down; resume it with Resume-XhyveVM, or restart it with Restart-XhyveVM -Type Reset.");
            return;
        }
        string activity = $"Restart-XhyveVM {name}";
        var status = Engines.Restart(name, Type == XhyveRestartType.Reboot, TimeSpan.FromSeconds(TimeoutSec), Force,
            elapsed => WaitProgress(1, activity, "Waiting for the VM to run again", elapsed, TimeoutSec));
        WaitProgress(1, activity, "", null, TimeoutSec);
        if (status.State == VmState.Off) WriteWarning($"VM '{name}' restarted, but is Off again{LastRun(status)}.");
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>Suspend-XhyveVM: pauses every vCPU (the engine keeps the VM in memory).</summary>
[Cmdlet(VerbsLifecycle.Suspend, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class SuspendXhyveVMCommand : XhyveVMStateCmdlet
{
    /// <summary>Write the paused VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Pause VM", name =>
    {
        var now = Engines.GetStatus(name);
        if (now.State == VmState.Paused) AlreadyInState(name, now.State);
        else if (!RequireRunning(name, now)) return;
        else Engines.Control(name, "pause");
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>Resume-XhyveVM: lets a paused VM run again.</summary>
[Cmdlet(VerbsLifecycle.Resume, "XhyveVM", SupportsShouldProcess = true, DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class ResumeXhyveVMCommand : XhyveVMStateCmdlet
{
    /// <summary>Write the resumed VM to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachTarget("Resume VM", name =>
    {
        var now = Engines.GetStatus(name);
        if (now.State == VmState.Running) AlreadyInState(name, now.State);
        else if (!RequireRunning(name, now)) return;
        else Engines.Control(name, "resume");
        if (PassThru) WriteObject(Snapshot(name));
    });
}

/// <summary>What Wait-XhyveVM waits for.</summary>
public enum XhyveWaitFor { Running, Off, ConsoleText }

/// <summary>Wait-XhyveVM: waits until each VM runs, is off, or printed text matching -Pattern on its console.
/// Passes the VMs on, so it ends a pipeline that starts them.</summary>
[Cmdlet(VerbsLifecycle.Wait, "XhyveVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(XhyveVM))]
public sealed class WaitXhyveVMCommand : XhyveVMStateCmdlet
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
                // Each wait ends as soon as what it waits for can no longer come: a VM that is (or goes) off will not
                // run, nor print, until someone starts it.
                VmStatus? running = null;
                bool reached = For switch
                {
                    XhyveWaitFor.ConsoleText => Engines.WaitForConsole(name, new Regex(Pattern!, RegexOptions.Multiline), timeout, Progress, untilOff: true) != null,
                    XhyveWaitFor.Off => Engines.WaitFor(name, s => s.State == VmState.Off, timeout, Progress) != null,
                    // Blocking in the engine until its BSP entered the guest, not polling the state.
                    _ => (running = Engines.WaitForRunning(name, timeout, Progress)) is { State: VmState.Running or VmState.Paused },
                };
                WaitProgress(2, $"Wait-XhyveVM {name}", "", null, TimeoutSec);
                if (!reached && Engines.GetStatus(name) is { State: VmState.Off } off)
                {
                    string what = For == XhyveWaitFor.ConsoleText ? $"its console log holds no match for '{Pattern}'" : "it will not reach Running";
                    Conflict(name, "VMNotRunning", ErrorCategory.InvalidOperation, $"VM '{name}' is Off{LastRun(off)}, so {what}; start it with Start-XhyveVM.");
                }
                else if (!reached)
                {
                    // Say where it is instead, and how its last run ended when it is off (a guest that stopped early).
                    var now = Engines.GetStatus(name);
                    string ended = now.State == VmState.Off && now.ExitReason != null
                        ? $" (exit status {now.ExitCode?.ToString() ?? "unknown"}: {now.ExitReason})" : "";
                    WriteError(new ErrorRecord(new TimeoutException($"VM '{name}' did not reach {For} within {TimeoutSec} s; it is {now.State}{ended}."), "WaitTimeout", ErrorCategory.OperationTimeout, name));
                }
                else WriteObject(running is { } status ? Snapshot(Store.Get(name), status) : Snapshot(name));
            });
        }
    }
}
