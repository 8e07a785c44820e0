using System.Runtime.InteropServices;

namespace Xhyve.Engine.Runtime;

/// <summary>
/// The signals a running engine answers: SIGTERM, SIGHUP and SIGQUIT shut the VM down (the ACPI power button
/// first when the guest listens), SIGINT turns it off, SIGUSR1 pauses and SIGUSR2 resumes it.
/// </summary>
/// <remarks>
/// Registered once, before the pid file exists, and never unregistered: unregistering gives a signal back its
/// default action (SIGUSR1 and SIGHUP terminate, SIGTERM ends the process), so a signal during shutdown would
/// kill the engine before it writes its exit file and removes its pid file and socket. The runtime runs each
/// handler on its own thread-pool or new thread, so handlers only queue the signal; one thread applies the
/// queue in the order the handlers took it, never two at once.
/// </remarks>
internal sealed class EngineSignals
{
    public const PosixSignal SigUsr1 = (PosixSignal)10, SigUsr2 = (PosixSignal)12;

    private static readonly PosixSignal[] Handled =
        [PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP, PosixSignal.SIGQUIT, SigUsr1, SigUsr2];

    private readonly Queue<PosixSignal> _pending = new();
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _available = new(0);
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly TimeSpan _shutdownTimeout;
    private volatile EngineLifecycle? _runner;

    private EngineSignals(TimeSpan shutdownTimeout) => _shutdownTimeout = shutdownTimeout;

    /// <summary>Takes over the engine's signals for the rest of the process's life.</summary>
    public static EngineSignals Register(TimeSpan shutdownTimeout)
    {
        var signals = new EngineSignals(shutdownTimeout);
        foreach (var s in Handled)
            signals._registrations.Add(PosixSignalRegistration.Create(s, c => { c.Cancel = true; signals.Post(c.Signal); }));
        new Thread(signals.ApplyLoop) { Name = "signals", IsBackground = true }.Start();
        return signals;
    }

    /// <summary>From now on queued and new signals act on <paramref name="runner"/> (whichever boot of the machine runs);
    /// those that came before are applied first, in order.</summary>
    public void Attach(EngineLifecycle runner)
    {
        _runner = runner;
        _available.Release();   // wake the loop for signals that were waiting for a runner
    }

    private void Post(PosixSignal signal)
    {
        lock (_lock) _pending.Enqueue(signal);
        _available.Release();
    }

    private void ApplyLoop()
    {
        while (true)
        {
            _available.Wait();
            if (_runner is not { } runner) continue;   // kept queued until there is a VM to act on
            while (true)
            {
                PosixSignal signal;
                lock (_lock)
                {
                    if (!_pending.TryDequeue(out signal)) break;
                }
                // A host failure while acting on a signal (a KVM ioctl of the power button or a vCPU kick) must not
                // end this thread, and with it the process, without an exit file: the VM stops as an error instead.
                try { Apply(runner, signal); }
                catch (Exception e)
                {
                    try { runner.RequestStop(Xhyve.Vmm.VmExitStatus.Error, $"{signal} could not be applied: {e.Message}"); }
                    catch (Exception) { }
                }
            }
        }
    }

    private void Apply(EngineLifecycle runner, PosixSignal signal)
    {
        switch (signal)
        {
            case PosixSignal.SIGTERM: runner.RequestGracefulShutdown(_shutdownTimeout, "SIGTERM"); break;
            case PosixSignal.SIGHUP: runner.RequestGracefulShutdown(_shutdownTimeout, "SIGHUP"); break;
            case PosixSignal.SIGQUIT: runner.RequestGracefulShutdown(_shutdownTimeout, "SIGQUIT"); break;
            case PosixSignal.SIGINT: runner.RequestStop(Xhyve.Vmm.VmExitStatus.PoweredOff, "turned off (SIGINT)"); break;
            case SigUsr1: runner.Pause(); break;
            case SigUsr2: runner.Resume(); break;
        }
    }
}
