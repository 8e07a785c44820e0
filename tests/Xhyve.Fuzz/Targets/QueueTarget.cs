using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;

namespace Xhyve.Fuzz;

/// <summary>
/// The split-virtqueue walker over guest RAM the input fills. Input: queue size (log2), flags
/// (bit 0 EVENT_IDX, bit 1 INDIRECT), descriptor/avail/used ring addresses (u32 each: bit 31 moves the
/// address to the top of the 64-bit space, for the overflow paths), the segment capacity, then the
/// bytes of guest RAM from address 0. Nothing may throw; every chain it returns must lie in RAM.
/// </summary>
internal static class QueueTarget
{
    public const int RamSize = 64 << 10;

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        var (ring, memory, capacity) = Build(ref input);
        var segments = new ChainSegment[capacity];
        Drain(ring, memory, segments);
    }

    /// <summary>The ring and RAM the header describes (shared with the virtio-blk target).</summary>
    public static (SplitQueue Ring, PinnedGuestMemory Memory, int Capacity) Build(ref InputReader input)
    {
        ushort size = (ushort)(1 << (input.U8() % 16));
        byte flags = input.U8();
        ulong desc = Address(input.U32()), avail = Address(input.U32()), used = Address(input.U32());
        int capacity = 1 + input.U8();
        var memory = new PinnedGuestMemory(RamSize, input.Rest);
        var ring = new SplitQueue(memory, size, new GuestAddress(desc), new GuestAddress(avail), new GuestAddress(used),
            eventIdx: (flags & 1) != 0, indirect: (flags & 2) != 0);
        return (ring, memory, capacity);
    }

    private static ulong Address(uint v) => (v & 0x8000_0000) != 0 ? ulong.MaxValue - (v & 0xFFFF) : v & 0x7FFF_FFFF;

    private static void Drain(SplitQueue ring, PinnedGuestMemory memory, ChainSegment[] segments)
    {
        // Used-ring writes may land on the avail ring (the guest laid them over each other), so the ring can refill:
        // bound the loop, as a device worker is bounded by its notifications.
        for (int i = 0; i < 4 * ring.Size + 16; i++)
        {
            if (!ring.TryPop(segments, out ushort head, out int count, out var error)) break;
            if (count < 0 || count > segments.Length) throw new FuzzBugException($"chain of {count} segments in a span of {segments.Length}");
            if (error != QueueError.None && count != 0) throw new FuzzBugException($"failed chain ({error}) still has {count} segments");
            if (head >= ring.Size) throw new FuzzBugException($"head {head} returned for a queue of {ring.Size}");
            ulong written = 0;
            foreach (var s in segments.AsSpan(0, count))
            {
                if (!memory.TryGetSpan(s.Address, (int)s.Length, out _)) throw new FuzzBugException($"segment {s} is outside guest RAM");
                if (s.DeviceWritable) written += s.Length;
            }
            ring.AddUsed(head, (uint)Math.Min(written, uint.MaxValue));
            ring.ShouldNotify();
        }
    }
}
