using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Virtio.Block;

/// <summary>One popped virtio-blk chain on its way through the I/O pool. Pooled: the arrays are sized for
/// the largest chain once and reused, so a request costs no allocation.</summary>
internal sealed class PendingRequest(int maxSegments)
{
    public readonly ChainSegment[] Segments = new ChainSegment[maxSegments];
    public readonly IoBuffer[] Data = new IoBuffer[maxSegments];
    public readonly BlockRange[] Ranges = new BlockRange[VirtioBlock.MaxDiscardSegments];
    public Virtqueue Queue = null!;
    public ushort Head;
    public int Count;
    public QueueError Error;
}

/// <summary>
/// A small pool of I/O threads so several requests are in flight at once (the guest's queue depth reaches
/// the host). A fixed ring and a monitor: nothing is allocated per request.
/// </summary>
internal sealed class BlockIoPool : IDisposable
{
    private readonly PendingRequest?[] _ring;
    private readonly Thread[] _threads;
    private readonly Action<PendingRequest> _execute;
    private readonly Action<Exception> _fault;
    private readonly object _lock = new();   // Monitor.Wait/Pulse need a monitor
    private int _head, _count;
    private bool _stopping;

    public BlockIoPool(string name, int threads, int capacity, Action<PendingRequest> execute, Action<Exception> fault)
    {
        _fault = fault;
        _ring = new PendingRequest?[capacity];
        _execute = execute;
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"{name} I/O {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>Queues a request; false when the ring is full (the caller then runs it itself).</summary>
    public bool TrySubmit(PendingRequest request)
    {
        lock (_lock)
        {
            if (_count == _ring.Length) return false;
            _ring[(_head + _count++) % _ring.Length] = request;
            Monitor.Pulse(_lock);
            return true;
        }
    }

    private void Run()
    {
        while (true)
        {
            PendingRequest request;
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
            catch (Exception e)
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
