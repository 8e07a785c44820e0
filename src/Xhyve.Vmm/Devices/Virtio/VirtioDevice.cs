using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>Numbers from the virtio 1.2 specification.</summary>
public static class Virtio
{
    public const ushort PciVendor = 0x1AF4;
    /// <summary>Device types (§5).</summary>
    public const ushort Net = 1, Block = 2, Console = 3, Entropy = 4;
    /// <summary>Transport feature bits (§6).</summary>
    public const ulong FeatureIndirectDesc = 1UL << 28, FeatureEventIdx = 1UL << 29, FeatureVersion1 = 1UL << 32;
    /// <summary>Device status bits (§2.1).</summary>
    public const byte StatusAcknowledge = 1, StatusDriver = 2, StatusDriverOk = 4, StatusFeaturesOk = 8,
        StatusNeedsReset = 0x40, StatusFailed = 0x80;
    /// <summary>"No MSI-X vector" (§4.1.5.1.2).</summary>
    public const ushort NoVector = 0xFFFF;
    /// <summary>The PCI device id of a transitional device (§4.1.2.3) by device type.</summary>
    public static ushort TransitionalPciDeviceId(ushort type) => type switch
    {
        Net => 0x1000, Block => 0x1001, Console => 0x1003, Entropy => 0x1005,
        _ => throw new ArgumentOutOfRangeException(nameof(type), $"virtio type {type} has no transitional id"),
    };
}

/// <summary>
/// A virtio device model (block, entropy, ...) as the PCI transport drives it. The device sees its queues
/// and guest memory, never the transport's registers; <see cref="Process"/> and <see cref="Reset"/> are
/// called on the device's worker thread and the transport's thread respectively, never at once.
/// </summary>
public interface IVirtioDevice : IDisposable
{
    string Name { get; }
    ushort DeviceType { get; }
    /// <summary>PCI class code, subclass.</summary>
    (byte Class, byte Subclass) PciClass { get; }
    /// <summary>Device-specific feature bits offered (the transport adds its own).</summary>
    ulong Features { get; }
    int QueueCount { get; }
    ushort MaxQueueSize { get; }
    /// <summary>Size of the device configuration structure.</summary>
    int ConfigSize { get; }
    void ReadConfig(int offset, Span<byte> data);
    void WriteConfig(int offset, ReadOnlySpan<byte> data);
    /// <summary>The driver set DRIVER_OK: from now on queues may be notified.</summary>
    void Activate(IGuestMemory memory, ulong negotiatedFeatures, IReadOnlyList<Virtqueue?> queues);
    /// <summary>The driver notified queue <paramref name="queue"/> (worker thread).</summary>
    void Process(int queue);
    /// <summary>Device reset: returns once no request is in flight; afterwards no queue or guest memory is touched.</summary>
    void Reset();
}

/// <summary>
/// A device that also waits on a host fd (a network backend's socket) on its worker thread, besides its queues'
/// notifications. The worker asks for <see cref="PollEvents"/> before every wait, so a device stops asking for input
/// it has no room for; every call comes from the worker thread.
/// </summary>
public interface IPolledVirtioDevice
{
    /// <summary>The fd to wait on, or -1 for none.</summary>
    int PollFd { get; }
    /// <summary>poll(2) events wanted now (0: none).</summary>
    short PollEvents { get; }
    /// <summary>Work is left from the last call (a batch limit was reached): call again without waiting.</summary>
    bool HasPendingWork { get; }
    /// <summary>The fd reported <paramref name="revents"/> (0 when called for pending work).</summary>
    void PollReady(short revents);
}

/// <summary>A device whose configuration changes on its own (a network link going down): the transport sets the
/// callback that raises the configuration-change interrupt.</summary>
public interface IConfigChangeNotifier
{
    Action? ConfigChanged { set; }
}

/// <summary>
/// An activated queue as a device uses it: the split ring, serialised (a worker pops while I/O threads
/// complete), and the interrupt that tells the driver about used buffers.
/// </summary>
public sealed class Virtqueue
{
    private readonly Lock _lock = new();
    private readonly Action<int> _interrupt;
    private readonly Action<int> _broken;
    private readonly Action<int, Exception>? _fault;
    private readonly long[]? _errors;

    public int Index { get; }
    public SplitQueue Ring { get; }

    // fault: told about an unexpected exception while serving this queue (the transport logs it and sets
    // NEEDS_RESET); without it the queue is reported broken.
    // errors: counters indexed by QueueError, shared with the transport so they outlive this activation.
    public Virtqueue(int index, SplitQueue ring, Action<int> interrupt, Action<int> broken, Action<int, Exception>? fault = null, long[]? errors = null)
    {
        Index = index; Ring = ring; _interrupt = interrupt; _broken = broken; _fault = fault; _errors = errors;
    }

    /// <summary>The device met an exception it did not expect while serving this queue (a bug or a host failure,
    /// never guest input): it cannot vouch for its state, so the driver is asked to reset it.</summary>
    public void Fail(Exception e)
    {
        if (_fault != null) _fault(Index, e);
        else _broken(Index);
    }

    public ushort Size => Ring.Size;

    /// <summary>Pops the next chain (see <see cref="SplitQueue.TryPop"/>); a queue the guest broke reports
    /// NEEDS_RESET to the driver once.</summary>
    public bool TryPop(Span<ChainSegment> segments, out ushort head, out int count, out QueueError error)
    {
        bool popped;
        lock (_lock) popped = Ring.TryPop(segments, out head, out count, out error);
        if (error != QueueError.None && _errors != null && (uint)error < (uint)_errors.Length) Interlocked.Increment(ref _errors[(int)error]);
        if (!popped && Ring.Broken) _broken(Index);
        return popped;
    }

    /// <summary>Returns a chain to the driver and interrupts it if it asked to be told.</summary>
    public void Complete(ushort head, uint written)
    {
        lock (_lock) Ring.AddUsed(head, written);
        NotifyIfNeeded();
    }

    /// <summary>Returns a chain without an interrupt yet: a batch ends with <see cref="NotifyIfNeeded"/>.</summary>
    public void AddUsed(ushort head, uint written)
    {
        lock (_lock) Ring.AddUsed(head, written);
    }

    /// <summary>Interrupts the driver if it asked to be told about the chains returned since the last interrupt.</summary>
    public void NotifyIfNeeded()
    {
        bool notify;
        lock (_lock) notify = Ring.ShouldNotify();
        if (notify) _interrupt(Index);
        else if (Ring.Broken) _broken(Index);
    }

    /// <summary>Puts the last <paramref name="count"/> popped chains back, unused, to be popped again (a frame that
    /// did not fit the buffers there were waits for more).</summary>
    public void Unpop(int count)
    {
        lock (_lock) Ring.Unpop(count);
    }
}
