namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>
/// One line per event to stderr, at most one per <see cref="Interval"/>; lines dropped in between are counted and
/// the next line says how many. A guest that makes a device fail in a loop cannot flood the engine's log
/// (Firecracker's rate-limited error! beside a metric).
/// </summary>
public sealed class RateLimitedLog(TextWriter? writer = null, TimeSpan? interval = null, Func<long>? clockMilliseconds = null)
{
    private readonly TextWriter _writer = writer ?? Console.Error;
    private readonly Func<long> _clock = clockMilliseconds ?? (static () => Environment.TickCount64);
    private readonly Lock _lock = new();
    private long _lastTicks = long.MinValue;
    private long _suppressed;

    public TimeSpan Interval { get; } = interval ?? TimeSpan.FromSeconds(10);

    /// <summary>Writes <paramref name="message"/> unless a line went out less than <see cref="Interval"/> ago; true if written.</summary>
    public bool Write(string message)
    {
        long now = _clock();
        lock (_lock)
        {
            if (_lastTicks != long.MinValue && now - _lastTicks < (long)Interval.TotalMilliseconds)
            {
                _suppressed++;
                return false;
            }
            _lastTicks = now;
            long dropped = _suppressed;
            _suppressed = 0;
            try { _writer.WriteLine(dropped == 0 ? message : $"{message} ({dropped} more since the last report)"); }
            catch (IOException) { }   // a closed stderr must not turn a logged fault into a crash
            catch (ObjectDisposedException) { }
            return true;
        }
    }
}
