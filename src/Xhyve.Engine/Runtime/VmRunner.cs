using Xhyve.Vmm;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Memory;

namespace Xhyve.Engine.Runtime;

/// <summary>
/// Runs a built <see cref="Machine"/>: one dedicated thread per vCPU, stop on the first terminal event
/// (reset, power off, triple fault, unhandled exit, signal), pause/resume by kicking every vCPU out of
/// the guest.
/// </summary>
public sealed class VmRunner : IPlatformEvents
{
    private readonly IReadOnlyDictionary<int, int> _pinning;
    private readonly ManualResetEventSlim _stopped = new(false);
    private readonly ManualResetEventSlim _running = new(true);
    private readonly Lock _stopLock = new();
    private Machine? _machine;
    private Thread[] _threads = [];
    private volatile bool _stopRequested;
    private int _powerButtonPressed;
    private Timer? _hardOffTimer;
    private long _unknownMsrAccesses;
    private long _startedTicks;

    public VmExitStatus Status { get; private set; } = VmExitStatus.PoweredOff;
    public string? StopReason { get; private set; }
    /// <summary>When the BSP entered the guest (set immediately before its first KVM_RUN); default until then, so a
    /// runner whose vCPUs are still being set up (or were paused or stopped before they ran) is not reported Running.</summary>
    public DateTime StartedUtc => new(Interlocked.Read(ref _startedTicks), DateTimeKind.Utc);
    /// <summary>Called (on the thread that made the change, so it must not block) when the BSP enters the guest and
    /// when a stop is requested: the lifecycle wakes whoever waits for the VM's state.</summary>
    public Action? StateChanged { get; set; }
    public bool Paused => !_running.IsSet;
    /// <summary>A terminal event happened; the VM is on its way off.</summary>
    public bool StopRequested => _stopRequested;
    /// <summary>-w: reads and writes of MSRs the hypervisor does not know.</summary>
    public long UnknownMsrAccesses => Interlocked.Read(ref _unknownMsrAccesses);

    /// <summary>The runner exists before the machine: devices are built with it as their <see cref="IPlatformEvents"/>.</summary>
    public VmRunner(IReadOnlyDictionary<int, int> pinning) => _pinning = pinning;

    private Machine Machine => _machine ?? throw new InvalidOperationException("No machine attached");

    public void Start(Machine machine)
    {
        _machine = machine;
        _threads = Machine.Vcpus.Select(v => new Thread(() => VcpuLoop(v), 256 * 1024)
        {
            Name = $"vcpu{v.Id}", IsBackground = true,
        }).ToArray();
        foreach (var t in _threads) t.Start();
    }

    /// <summary>Blocks until the VM stops; returns the exit status.</summary>
    public VmExitStatus WaitForExit()
    {
        _stopped.Wait();
        foreach (var t in _threads) t.Join(TimeSpan.FromSeconds(5));
        return Status;
    }

    public void RequestStop(VmExitStatus status, string reason)
    {
        lock (_stopLock)
        {
            if (_stopRequested) return;
            _stopRequested = true;
            Status = status;
            StopReason = reason;
        }
        _running.Set();
        foreach (var v in _machine?.Vcpus ?? []) v.Kick();
        _stopped.Set();
        StateChanged?.Invoke();
    }

    /// <summary>
    /// SIGTERM (SIGHUP, SIGQUIT): with ACPI, press the power button so the guest shuts down and writes S5; a
    /// second request, or <paramref name="timeout"/> passing, turns the VM off. A guest that never enabled the
    /// power-button event (no ACPI OS listening) is turned off at once.
    /// </summary>
    public void RequestGracefulShutdown(TimeSpan timeout, string signal = "SIGTERM")
    {
        var machine = _machine;
        if (_stopRequested) return;
        if (machine == null || !machine.Acpi || !machine.Power.PowerButtonEnabled || Interlocked.Exchange(ref _powerButtonPressed, 1) == 1)
        {
            RequestStop(VmExitStatus.PoweredOff, $"turned off ({signal})");
            return;
        }
        machine.Power.PressPowerButton();
        _hardOffTimer = new Timer(_ => RequestStop(VmExitStatus.PoweredOff, $"turned off: the guest did not shut down within {timeout.TotalSeconds:F0} s of the power button"),
            null, timeout, Timeout.InfiniteTimeSpan);
    }

    public void Pause()
    {
        lock (_stopLock)
        {
            // A stopping VM stays released: its vCPU threads must reach their end, not wait for a resume.
            if (_stopRequested) return;
            _running.Reset();
        }
        foreach (var v in _machine?.Vcpus ?? []) v.Kick();
    }

    public void Resume() => _running.Set();

    private void VcpuLoop(IVcpu vcpu)
    {
        try
        {
            vcpu.AttachToCurrentThread();
            if (_pinning.TryGetValue(vcpu.Id, out int hostCpu)) HostThread.PinCurrentThread(hostCpu);
            int idleSleepMs = 1;
            var dispatcher = Machine.Dispatcher;
            // The BSP reports the VM Running just before its first KVM_RUN, not after its first exit: a guest may run
            // long without one (on hardware virtualization a compute loop exits only for interrupts), and everything
            // that can fail before the guest runs (thread, vCPU attach, pinning, a pause or stop) is behind us here.
            bool announce = vcpu.Id == 0;
            while (!_stopRequested)
            {
                if (!_running.IsSet) { _running.Wait(); continue; }
                if (announce)
                {
                    announce = false;
                    Interlocked.Exchange(ref _startedTicks, DateTime.UtcNow.Ticks);
                    StateChanged?.Invoke();
                }
                var exit = vcpu.Run();
                switch (exit.Reason)
                {
                    case VcpuExitReason.Io:
                    case VcpuExitReason.Mmio:
                        if (dispatcher.Dispatch(exit) == DispatchResult.UnhandledAccess)
                            RequestStop(VmExitStatus.UnhandledExit, DescribeUnhandledAccess(vcpu, exit));
                        break;
                    case VcpuExitReason.Interrupted:
                        break;
                    case VcpuExitReason.MsrRead:
                        exit.Data.Clear();          // -w: unknown MSRs read as zero
                        Interlocked.Increment(ref _unknownMsrAccesses);
                        break;
                    case VcpuExitReason.MsrWrite:
                        Interlocked.Increment(ref _unknownMsrAccesses); // -w: and writes are dropped
                        break;
                    case VcpuExitReason.WaitingForStartup:
                        // An AP waiting for INIT/SIPI (some hosts return instead of blocking): back off.
                        Thread.Sleep(idleSleepMs);
                        idleSleepMs = Math.Min(idleSleepMs * 2, 20);
                        continue;
                    case VcpuExitReason.Halt:
                        break;
                    case VcpuExitReason.Shutdown:
                        // A PC resets on a triple fault (firmware and OSes use it as a last way to reboot); a loaded
                        // kernel has no firmware to come back to, so there it ends the VM as xhyve does.
                        if (Machine.Rom != null) RequestStop(VmExitStatus.Reset, $"vCPU {vcpu.Id}: triple fault (shutdown), a reset for a machine booted from a ROM {DescribeRip(vcpu)}");
                        else RequestStop(VmExitStatus.TripleFault, $"vCPU {vcpu.Id}: triple fault (shutdown) {DescribeRip(vcpu)}");
                        break;
                    case VcpuExitReason.SystemReset:
                        RequestStop(VmExitStatus.Reset, $"vCPU {vcpu.Id}: system reset");
                        break;
                    case VcpuExitReason.SystemShutdown:
                        RequestStop(VmExitStatus.PoweredOff, $"vCPU {vcpu.Id}: system shutdown");
                        break;
                    case VcpuExitReason.InternalError:
                        RequestStop(VmExitStatus.UnhandledExit, $"vCPU {vcpu.Id}: {DescribeInternalError(exit.Detail)} {DescribeRip(vcpu)}{Advice(exit.Detail)}");
                        break;
                    case VcpuExitReason.FailEntry:
                        RequestStop(VmExitStatus.UnhandledExit, $"vCPU {vcpu.Id}: VM entry failed (hardware reason 0x{exit.Detail:X}) {DescribeRip(vcpu)}");
                        break;
                    default:
                        RequestStop(VmExitStatus.UnhandledExit, $"vCPU {vcpu.Id}: unhandled exit (reason {exit.RawReason}) {DescribeRip(vcpu)}");
                        break;
                }
                idleSleepMs = 1;
            }
        }
        catch (Exception e)
        {
            RequestStop(VmExitStatus.Error, $"vCPU {vcpu.Id}: {Xhyve.Vmm.Native.SystemErrors.Describe(e)}");
        }
        finally
        {
            // Only now may the vCPU's run area and fd go (Machine.Dispose keeps them while a thread is attached).
            vcpu.DetachFromCurrentThread();
        }
    }

    private static string DescribeInternalError(ulong suberror) => suberror switch
    {
        1 => "KVM internal error: instruction emulation failed",
        2 => "KVM internal error: simultaneous exceptions",
        3 => "KVM internal error: delivery event failed",
        _ => $"KVM internal error (suberror {suberror})",
    };

    private static string Advice(ulong suberror) => suberror == 1
        ? Environment.NewLine + "  The host's KVM could not emulate this instruction. Software-nested KVM (e.g. kvm_pvm) emulates all guest kernel code and lacks some instructions; run on a host with VT-x or AMD-V."
        : "";

    private string DescribeUnhandledAccess(IVcpu vcpu, in VcpuExit exit)
    {
        string kind = exit.Reason == VcpuExitReason.Io ? $"I/O port 0x{exit.Port:X4}" : $"MMIO address 0x{exit.Address:X}";
        return $"vCPU {vcpu.Id}: unhandled {(exit.IsWrite ? "write to" : "read from")} {kind} ({exit.Size} bytes) with -e {DescribeRip(vcpu)}";
    }

    /// <summary>RIP and the instruction bytes there, for diagnosing an exit the engine cannot handle.</summary>
    private string DescribeRip(IVcpu vcpu)
    {
        var (rip, physical) = vcpu.GetInstructionPointer();
        if (physical is not { } pa) return $"at RIP 0x{rip:X} (not mapped)";
        Span<byte> bytes = stackalloc byte[16];
        int n = 16;
        while (n > 0 && !Machine.Memory.TryRead(new GuestAddress(pa), bytes[..n])) n--;
        // Firmware runs from its ROM, which is not guest RAM.
        if (n == 0 && Machine.Rom is { } rom && pa >= rom.GuestAddress && pa - rom.GuestAddress < rom.Size)
        {
            var from = rom.Bytes[(int)(pa - rom.GuestAddress)..];
            n = Math.Min(16, from.Length);
            from[..n].CopyTo(bytes);
        }
        return $"at RIP 0x{rip:X} (physical 0x{pa:X}), instruction bytes: {Convert.ToHexString(bytes[..n]).ToLowerInvariant()}";
    }
}
