namespace Xhyve.Vmm.Devices.Ahci;

/// <summary>
/// The AHCI controller's I/O threads: several command slots (NCQ tags) of every port run at once, so the
/// guest's queue depth reaches the host. A fixed ring of preallocated slots and a monitor: nothing is
/// allocated per command. The ring holds every slot of every port, so a submit never finds it full.
/// </summary>
internal sealed class AhciIoPool : IDisposable
{
    private readonly AhciSlot?[] _ring;
    private readonly Thread[] _threads;
    private readonly Action<AhciSlot> _execute;
    private readonly object _lock = new();   // Monitor.Wait/Pulse need a monitor
    private int _head, _count;
    private bool _stopping;

    public AhciIoPool(string name, int threads, int capacity, Action<AhciSlot> execute)
    {
        _ring = new AhciSlot?[capacity];
        _execute = execute;
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"{name} I/O {i}" };
            _threads[i].Start();
        }
    }

    public bool TrySubmit(AhciSlot slot)
    {
        lock (_lock)
        {
            if (_count == _ring.Length || _stopping) return false;
            _ring[(_head + _count++) % _ring.Length] = slot;
            Monitor.Pulse(_lock);
            return true;
        }
    }

    private void Run()
    {
        while (true)
        {
            AhciSlot slot;
            lock (_lock)
            {
                while (_count == 0 && !_stopping) Monitor.Wait(_lock);
                if (_stopping) return;
                slot = _ring[_head]!;
                _ring[_head] = null;
                _head = (_head + 1) % _ring.Length;
                _count--;
            }
            _execute(slot);   // catches everything itself: a worker never dies
        }
    }

    public void Dispose()
    {
        lock (_lock) { _stopping = true; Monitor.PulseAll(_lock); }
        foreach (var t in _threads) t.Join();
    }
}
