namespace Xhyve.Vmm.Devices;

/// <summary>
/// A small pool of I/O threads, so several requests of one device are in flight at once and the guest's queue
/// depth reaches the host (virtio-blk requests, AHCI command slots). A fixed ring of the device's preallocated
/// work items and a monitor: nothing is allocated per request.
/// </summary>
/// <typeparam name="T">The device's pooled work item.</typeparam>
internal sealed class IoWorkerPool<T> : IDisposable where T : class
{
    private readonly T?[] _ring;
    private readonly Thread[] _threads;
    private readonly Action<T> _execute;
    private readonly Action<Exception>? _fault;
    private readonly object _lock = new();   // Monitor.Wait/Pulse need a monitor
    private int _head, _count;
    private bool _stopping;

    /// <param name="name">Thread names: "NAME I/O n".</param>
    /// <param name="threads">How many requests run at once.</param>
    /// <param name="capacity">How many requests may wait.</param>
    /// <param name="execute">Runs one request on an I/O thread.</param>
    /// <param name="fault">Receives what <paramref name="execute"/> let escape; a worker never dies of it. Null when
    /// <paramref name="execute"/> catches everything itself.</param>
    public IoWorkerPool(string name, int threads, int capacity, Action<T> execute, Action<Exception>? fault = null)
    {
        _ring = new T?[capacity];
        _execute = execute;
        _fault = fault;
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"{name} I/O {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>Queues a request; false when the ring is full or the pool is being disposed (the caller then runs
    /// the request itself, or drops it).</summary>
    public bool TrySubmit(T request)
    {
        lock (_lock)
        {
            if (_count == _ring.Length || _stopping) return false;
            _ring[(_head + _count++) % _ring.Length] = request;
            Monitor.Pulse(_lock);
            return true;
        }
    }

    private void Run()
    {
        while (true)
        {
            T request;
            lock (_lock)
            {
                while (_count == 0 && !_stopping) Monitor.Wait(_lock);
                if (_stopping) return;
                request = _ring[_head]!;
                _ring[_head] = null;
                _head = (_head + 1) % _ring.Length;
                _count--;
            }
            try { _execute(request); }
            catch (Exception e) when (_fault != null)
            {
                // The device completes its own requests and reports its faults; whatever still escapes must not end the engine.
                try { _fault(e); } catch (Exception) { }
            }
        }
    }

    public void Dispose()
    {
        lock (_lock) { _stopping = true; Monitor.PulseAll(_lock); }
        foreach (var t in _threads) t.Join();
    }
}
