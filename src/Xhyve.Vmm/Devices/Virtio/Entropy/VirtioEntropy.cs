using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio.Entropy;

/// <summary>
/// virtio-rng ("-s N,virtio-rnd", virtio 1.2 §5.4): fills every device-writable buffer the driver offers
/// with bytes from the host's getrandom(2). No configuration, one queue.
/// </summary>
public sealed unsafe class VirtioEntropy : IVirtioDevice, IDeviceCounters
{
    public const ushort QueueSize = 64;
    private readonly ChainSegment[] _segments = new ChainSegment[QueueSize];
    private readonly Lock _lock = new();
    private IGuestMemory? _memory;
    private Virtqueue? _queue;
    private long _bytes;

    public string Name => "virtio-rnd";
    public ushort DeviceType => Virtio.Entropy;
    public (byte Class, byte Subclass) PciClass => (0xFF, 0x00);
    public ulong Features => 0;
    public int QueueCount => 1;
    public ushort MaxQueueSize => QueueSize;
    public int ConfigSize => 0;
    public long BytesProvided => Interlocked.Read(ref _bytes);
    public IEnumerable<KeyValuePair<string, long>> Counters => [new("bytes", BytesProvided)];

    public void ReadConfig(int offset, Span<byte> data) => data.Clear();
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }

    public void Activate(IGuestMemory memory, ulong negotiatedFeatures, IReadOnlyList<Virtqueue?> queues)
    {
        lock (_lock) { _memory = memory; _queue = queues[0]; }
    }

    public void Process(int queue)
    {
        lock (_lock)
        {
            if (_queue is not { } q) return;
            while (q.TryPop(_segments, out ushort head, out int count, out var error))
            {
                uint written = 0;
                if (error == QueueError.None)
                    foreach (var s in _segments.AsSpan(0, count))
                    {
                        // Device-readable buffers have no meaning here and are left alone.
                        if (!s.DeviceWritable || !_memory!.TryGetSpan(s.Address, (int)s.Length, out var span)) continue;
                        written += Fill(span);
                    }
                Interlocked.Add(ref _bytes, written);
                q.Complete(head, written);
            }
        }
    }

    private static uint Fill(Span<byte> span)
    {
        int done = 0;
        fixed (byte* p = span)
            while (done < span.Length)
            {
                nint n = LibC.GetRandom(p + done, (nuint)(span.Length - done), 0);
                if (n < 0) { if (LibC.LastErrno == LibC.EINTR) continue; break; }
                done += (int)n;
            }
        return (uint)done;
    }

    public void Reset() { lock (_lock) _queue = null; }

    public void Dispose() => Reset();
}
