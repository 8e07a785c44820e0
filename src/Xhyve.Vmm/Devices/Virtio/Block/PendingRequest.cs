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
