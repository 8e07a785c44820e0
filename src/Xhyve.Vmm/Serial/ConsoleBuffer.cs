namespace Xhyve.Vmm.Serial;

/// <summary>
/// The recent output of a serial port (a ring of <see cref="Capacity"/> bytes, each byte numbered from the
/// start) for readers that attach at any time: the control API's console stream. Appending is what the
/// vCPU thread does for every byte, so it takes a lock, stores the byte and, only when someone waits,
/// wakes them.
/// </summary>
public sealed class ConsoleBuffer
{
    public const int Capacity = 64 * 1024;
    private readonly byte[] _ring = new byte[Capacity];
    private readonly Lock _lock = new();
    private long _written;
    private TaskCompletionSource? _waiters;

    /// <summary>How many bytes were ever appended (the number of the next byte).</summary>
    public long Position { get { lock (_lock) return _written; } }

    public void Append(byte value)
    {
        TaskCompletionSource? wake;
        lock (_lock)
        {
            _ring[_written % Capacity] = value;
            _written++;
            wake = _waiters;
            _waiters = null;
        }
        wake?.TrySetResult();
    }

    /// <summary>Copies bytes from number <paramref name="from"/> on into <paramref name="destination"/>; returns how many
    /// and the number to ask for next. Bytes that have left the ring are skipped (<paramref name="lost"/> says how many).</summary>
    public int Read(long from, Span<byte> destination, out long next, out long lost)
    {
        lock (_lock)
        {
            long oldest = Math.Max(0, _written - Capacity);
            lost = from < oldest ? oldest - from : 0;
            from = Math.Clamp(from, oldest, _written);
            int count = (int)Math.Min(destination.Length, _written - from);
            for (int i = 0; i < count;)
            {
                int at = (int)((from + i) % Capacity);
                int run = Math.Min(count - i, Capacity - at);
                _ring.AsSpan(at, run).CopyTo(destination[i..]);
                i += run;
            }
            next = from + count;
            return count;
        }
    }

    /// <summary>Completes once a byte numbered <paramref name="position"/> or later exists.</summary>
    public Task WaitBeyondAsync(long position, CancellationToken cancel)
    {
        lock (_lock)
        {
            if (_written > position) return Task.CompletedTask;
            _waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiters.Task.WaitAsync(cancel);
        }
    }
}
