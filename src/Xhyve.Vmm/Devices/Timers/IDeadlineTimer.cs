namespace Xhyve.Vmm.Devices.Timers;

/// <summary>A one-shot host timer a device arms for its next event; the owner calls the device back
/// when the deadline passes. Devices never create threads or timers themselves.</summary>
public interface IDeadlineTimer
{
    /// <summary>Calls back at <paramref name="deadlineNs"/> on the device clock (replacing any earlier arm).</summary>
    void Arm(long deadlineNs);
    void Cancel();
}

/// <summary>The monotonic clock devices read (nanoseconds), and a deadline timer on it.</summary>
public sealed class HostDeadlineTimer : IDeadlineTimer, IDisposable
{
    private readonly Timer _timer;
    private readonly Func<long> _nowNs;

    public HostDeadlineTimer(Func<long> nowNs, Action expired)
    {
        _nowNs = nowNs;
        _timer = new Timer(_ => Fire(expired), null, Timeout.Infinite, Timeout.Infinite);
    }

    private long _failures;
    /// <summary>Callbacks that threw (a device bug); counted rather than allowed to end the process.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    private void Fire(Action expired)
    {
        try { expired(); }
        catch (Exception e)
        {
            // An exception on a timer thread would terminate the engine; a timer device misbehaving must not.
            if (Interlocked.Increment(ref _failures) == 1) Console.Error.WriteLine($"xhyve: device timer failed: {e.Message}");
        }
    }

    public static long MonotonicNs() => (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1e9 / System.Diagnostics.Stopwatch.Frequency));

    public void Arm(long deadlineNs)
    {
        // Deadlines come from guest-programmed values: clamp rather than let Timer refuse them.
        const long maxDueMs = 0xFFFF_FFFE;
        long remaining = deadlineNs - _nowNs();
        long dueMs = remaining <= 0 ? 0 : Math.Min(remaining / 1_000_000 + 1, maxDueMs);
        _timer.Change(dueMs, Timeout.Infinite);
    }

    public void Cancel() => _timer.Change(Timeout.Infinite, Timeout.Infinite);

    public void Dispose() => _timer.Dispose();
}
