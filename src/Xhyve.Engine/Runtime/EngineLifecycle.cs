using Xhyve.Vmm;

namespace Xhyve.Engine.Runtime;

/// <summary>--on-reset: what the engine does when the guest resets the machine.</summary>
public enum OnReset
{
    /// <summary>xhyve's behaviour: the engine exits with status 2 and its caller may start it again.</summary>
    Exit,
    /// <summary>The engine builds the machine again from the same specification and runs it, in the same process
    /// (control socket, pid file and console log stay), as a reboot keeps a Hyper-V VM Running.</summary>
    Restart,
}

/// <summary>What the engine does after one boot of the machine ended.</summary>
/// <param name="Restart">Build the machine again and run it.</param>
/// <param name="Status">When the engine ends: its exit status.</param>
/// <param name="Reason">When the engine ends: why (the exit file's reason).</param>
/// <param name="Delay">Before a restart: the back-off against a reset storm.</param>
public readonly record struct BootOutcome(bool Restart, VmExitStatus Status, string? Reason, TimeSpan Delay);

/// <summary>
/// The engine's life across boots of its machine: which machine and runner are current (so control commands and
/// signals reach the one that runs now), requests that outlive one boot (turn off while the machine is rebuilt,
/// reset, reboot through the power button) and the reset count and reset-storm guard.
/// </summary>
/// <remarks>
/// Reset storm: a guest that resets within <see cref="FastBoot"/> of starting, <see cref="StormLimit"/> times in a
/// row, is not booting; restarting it forever would burn a host core and grow the console log without end. After
/// <see cref="FreeFastResets"/> such resets each restart waits (doubling from 50 ms, at most 1 s), and at the limit the
/// engine ends with exit status 2 (the guest asked for a reset, as xhyve reports it) and a reason naming the storm.
/// A boot that lasts longer than <see cref="FastBoot"/> starts the count again, so a guest that reboots now and then
/// never meets the guard.
/// </remarks>
public sealed class EngineLifecycle(OnReset onReset)
{
    public static readonly TimeSpan FastBoot = TimeSpan.FromSeconds(1);
    public const int FreeFastResets = 3, StormLimit = 10;
    private static readonly TimeSpan FirstBackOff = TimeSpan.FromMilliseconds(50), LastBackOff = TimeSpan.FromSeconds(1);

    /// <summary>One boot: the machine and the runner that runs it; <see cref="Ended"/> fires when it stops.</summary>
    public sealed record Boot(Machine Machine, VmRunner Runner, CancellationTokenSource Ended);

    private readonly Lock _lock = new();
    private volatile Boot? _current;
    private (VmExitStatus Status, string Reason)? _end;
    private bool _resetRequested, _rebootOnPowerOff, _paused, _rebuilding;
    private int _fastResets;
    private volatile int _resets;
    private TaskCompletionSource _changed = NewSignal();

    /// <summary>Completes at the next change of the VM's state (a boot attached, the BSP entering the guest, a stop
    /// asked for, a boot finished, the engine ending). Read it before looking at the state, then await it: a change in
    /// between has completed it already, so no change is missed and no one polls.</summary>
    public Task Changed => Volatile.Read(ref _changed).Task;

    // Continuations run on the thread pool: the BSP signals just before it enters the guest and must not run them.
    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void Signal() => Interlocked.Exchange(ref _changed, NewSignal()).TrySetResult();

    public OnReset OnReset => onReset;
    /// <summary>The boot that runs now; null while the machine is built (or rebuilt) and after the engine's end.</summary>
    public Boot? Current => _current;
    /// <summary>How many times the machine was reset and built again in this engine: counted once the new machine is
    /// attached, so a rebuild that failed is not a reset done.</summary>
    public int Resets => _resets;
    /// <summary>The engine has been asked to end (turned off, or shut down while no machine ran).</summary>
    public bool Ending { get { lock (_lock) return _end != null; } }
    /// <summary>Whether, after a boot ended, the engine is building the next one (or has attached it): a console session
    /// then goes on with the new machine rather than ending.</summary>
    public bool Restarting { get { lock (_lock) return _end == null && (_rebuilding || _current != null); } }
    /// <summary>Once the engine has been asked to end: the status and reason it ends with; else null.</summary>
    public (VmExitStatus Status, string Reason)? End { get { lock (_lock) return _end; } }

    /// <summary>Makes <paramref name="runner"/> current, before it starts; a turn-off or pause asked for while no machine
    /// ran applies to it now. A reset or reboot of the previous machine is done once this one is attached.</summary>
    public Boot Attach(Machine machine, VmRunner runner)
    {
        var boot = new Boot(machine, runner, new CancellationTokenSource());
        runner.StateChanged = Signal;
        lock (_lock)
        {
            _current = boot;
            // Requests for the machine that was reset were refused while none was attached, but a leftover would
            // restart this new boot at its end.
            _resetRequested = _rebootOnPowerOff = false;
            if (_rebuilding) { _rebuilding = false; _resets++; }
            if (_end is { } end) runner.RequestStop(end.Status, end.Reason);
            else if (_paused) runner.Pause();
        }
        Signal();
        return boot;
    }

    /// <summary>After the current boot stopped with <paramref name="status"/>: ends it (console sessions on it end too)
    /// and decides whether the engine builds the machine again or ends.</summary>
    public BootOutcome Finish(VmExitStatus status, string? reason, TimeSpan ran)
    {
        Boot? boot;
        bool restart;
        lock (_lock)
        {
            boot = _current;
            _current = null;
            if (_end is { } end)
            {
                // Asked to end: that request, not a reset that raced with it, says why.
                if (status == VmExitStatus.Reset) (status, reason) = end;
                restart = false;
            }
            else restart = _resetRequested
                || (status == VmExitStatus.Reset && onReset == OnReset.Restart)
                || (status == VmExitStatus.PoweredOff && _rebootOnPowerOff);
            bool asked = _resetRequested || (status == VmExitStatus.PoweredOff && _rebootOnPowerOff);
            _resetRequested = _rebootOnPowerOff = false;
            if (restart)
            {
                // Resets the host asked for are not the guest's storm.
                _fastResets = asked || ran >= FastBoot ? 0 : _fastResets + 1;
                if (_fastResets >= StormLimit)
                {
                    restart = false;
                    status = VmExitStatus.Reset;
                    reason = $"reset storm: the guest reset {StormLimit} times in a row, each within {FastBoot.TotalSeconds:F0} s of starting " +
                        $"(last: {reason}); the engine stopped restarting it";
                }
                else _rebuilding = true;
            }
            // No next boot: the engine ends with this status, and says so (Stopping) while it tears the machine down.
            if (!restart) _end ??= (status, reason ?? $"the VM stopped ({status})");
        }
        boot?.Ended.Cancel();
        Signal();
        if (!restart) return new BootOutcome(false, status, reason, TimeSpan.Zero);
        var delay = _fastResets <= FreeFastResets ? TimeSpan.Zero
            : TimeSpan.FromTicks(Math.Min(LastBackOff.Ticks, FirstBackOff.Ticks << Math.Min(_fastResets - FreeFastResets - 1, 10)));
        return new BootOutcome(true, status, reason, delay);
    }

    /// <summary>Whether the boot of <paramref name="runner"/>, which is stopping, will be followed by another (as
    /// <see cref="Finish"/> will decide, the reset-storm guard included).</summary>
    public bool WillRestart(VmRunner runner)
    {
        lock (_lock)
        {
            if (_end != null) return false;
            if (_resetRequested || (runner.Status == VmExitStatus.PoweredOff && _rebootOnPowerOff)) return true;
            if (runner.Status != VmExitStatus.Reset || onReset != OnReset.Restart) return false;
            // The guest's own reset: the storm guard ends the engine at the limit (the boot's length as Finish sees it;
            // a runner stopped before it started ran for no time).
            bool fast = runner.StartedUtc == default || DateTime.UtcNow - runner.StartedUtc < FastBoot;
            return !fast || _fastResets + 1 < StormLimit;
        }
    }

    /// <summary>Turns the VM off at once and ends the engine, whether a machine runs now or is being rebuilt.</summary>
    public void RequestStop(VmExitStatus status, string reason)
    {
        lock (_lock)
        {
            _end ??= (status, reason);
            _rebootOnPowerOff = false;
            _current?.Runner.RequestStop(status, reason);
        }
        Signal();
    }

    /// <summary>The engine is ending (for <paramref name="reason"/>, unless an end was asked for or decided before):
    /// whoever waits for the VM to run is told it will not.</summary>
    public void Close(string reason)
    {
        lock (_lock) _end ??= (VmExitStatus.Error, reason);
        Signal();
    }

    /// <summary>SIGTERM and the like: the power button when a machine runs (see <see cref="VmRunner.RequestGracefulShutdown"/>);
    /// while the machine is being rebuilt no guest is there to shut down, so the engine ends.</summary>
    public void RequestGracefulShutdown(TimeSpan timeout, string signal)
    {
        lock (_lock)
        {
            _rebootOnPowerOff = false;
            if (_current is { Runner.StopRequested: false } boot) boot.Runner.RequestGracefulShutdown(timeout, signal);
            else _end ??= (VmExitStatus.PoweredOff, $"turned off ({signal})");
        }
        Signal();
    }

    /// <summary>The control API's "reset": the machine is reset and built again in place (whatever --on-reset says,
    /// since the host asked for it). Null when done, else why not (the VM is being turned off, or no machine runs
    /// that has not already been told to stop). <paramref name="resetsBefore"/>: <see cref="Resets"/> before this
    /// reset, read with the request, so a caller waits for the count to pass it.</summary>
    public string? RequestReset(string reason, out int resetsBefore)
    {
        lock (_lock)
        {
            resetsBefore = _resets;
            if (_end != null) return "the VM is being turned off";
            // A reset asked for while none runs would outlive the rebuild and restart the next boot at its end.
            if (_current is not { } boot || boot.Runner.StopRequested) return "the VM is restarting already";
            _resetRequested = true;
            _paused = false;   // a reset machine starts running, as after a reset button
            boot.Runner.RequestStop(VmExitStatus.Reset, reason);
            return null;
        }
    }

    /// <summary>The control API's "reboot": presses the power button and builds the machine again once the guest
    /// has shut down. Null when done, else why not (no ACPI, or no guest listening to the button).
    /// <paramref name="resetsBefore"/> as for <see cref="RequestReset"/>.</summary>
    public string? RequestReboot(out int resetsBefore)
    {
        lock (_lock)
        {
            resetsBefore = _resets;
            if (_end != null) return "the VM is being turned off";
            if (_current is not { } boot || boot.Runner.StopRequested) return "the VM is restarting already";
            if (PowerButtonProblem(boot.Machine) is { } problem) return problem + "; use 'reset'";
            _rebootOnPowerOff = true;
            boot.Machine.Power.PressPowerButton();
            return null;
        }
    }

    /// <summary>The control API's "powerbutton": a shutdown, so a reboot asked for earlier is forgotten.</summary>
    public string? PressPowerButton()
    {
        lock (_lock)
        {
            if (_current is not { } boot) return "the VM is restarting; use 'stop' to turn it off";
            if (PowerButtonProblem(boot.Machine) is { } problem) return problem + "; use 'stop'";
            _rebootOnPowerOff = false;
            boot.Machine.Power.PressPowerButton();
            return null;
        }
    }

    private static string? PowerButtonProblem(Machine machine) =>
        !machine.Acpi ? "the VM has no ACPI tables (-A), so it has no power button"
        : !machine.Power.PowerButtonEnabled ? "the guest has not enabled the power-button event (no ACPI OS listening yet)"
        : null;

    public void Pause()
    {
        lock (_lock)
        {
            _paused = true;
            _current?.Runner.Pause();
        }
    }

    public void Resume()
    {
        lock (_lock)
        {
            _paused = false;
            _current?.Runner.Resume();
        }
    }
}
