using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Devices.Virtio.Queue;

/// <summary>One guest buffer of a descriptor chain, already checked to lie inside guest RAM.</summary>
public readonly record struct ChainSegment(GuestAddress Address, uint Length, bool DeviceWritable);

/// <summary>Why a chain, or the whole queue, is unusable. Guest errors never throw.</summary>
public enum QueueError
{
    None,
    /// <summary>A descriptor index (head or next) is not below the queue size.</summary>
    DescriptorIndexOutOfRange,
    /// <summary>The chain is longer than the queue (or indirect table) allows: a loop or a runaway.</summary>
    ChainTooLong,
    /// <summary>A buffer, an indirect table or a ring lies (partly) outside guest RAM.</summary>
    OutsideGuestMemory,
    /// <summary>An indirect table with a bad length, nested INDIRECT, or INDIRECT without the feature.</summary>
    BadIndirectTable,
    /// <summary>A device-readable buffer after a device-writable one (virtio 1.2 §2.7.4.2).</summary>
    ReadableAfterWritable,
    /// <summary>The available index moved more than a queue size ahead: the queue needs a reset.</summary>
    AvailIndexTooFar,
    /// <summary>The buffers of a chain add up to more than 4 GiB - 1, which the used ring's 32-bit length cannot describe.</summary>
    ChainTooLarge,
    /// <summary>A ring address without the alignment the spec requires (virtio 1.2 §2.7: 16, 2 and 4 bytes).</summary>
    RingMisaligned,
}

/// <summary>
/// The device side of a split virtqueue (virtio 1.2 §2.7): pops descriptor chains from the available ring
/// and returns them through the used ring, with indirect descriptors and EVENT_IDX. Every index, address
/// and length read from the guest is checked; each ring field is read once into a local and never re-read.
/// Not thread-safe: one worker owns a queue.
/// </summary>
public sealed class SplitQueue
{
    public const ushort DescNext = 1, DescWrite = 2, DescIndirect = 4;
    public const ushort AvailNoInterrupt = 1;
    private const int DescriptorSize = 16;
    /// <summary>Ring alignment of a split queue (virtio 1.2 §2.7, table "Virtqueue Part Alignment").</summary>
    public const int DescriptorAlignment = 16, AvailAlignment = 2, UsedAlignment = 4;
    /// <summary>The largest queue the spec allows; no indirect table needs more entries than that.</summary>
    public const int MaxSize = 32768;

    private readonly IGuestMemory _memory;
    private ushort _nextAvail, _nextUsed, _lastSignalledUsed;

    public ushort Size { get; }
    public GuestAddress DescriptorTable { get; }
    public GuestAddress AvailRing { get; }
    public GuestAddress UsedRing { get; }
    public bool EventIdx { get; }
    public bool IndirectDescriptors { get; }
    /// <summary>Set when the guest broke the queue so badly that the device must ask for a reset.</summary>
    public bool Broken { get; private set; }

    public SplitQueue(IGuestMemory memory, ushort size, GuestAddress descriptors, GuestAddress avail, GuestAddress used, bool eventIdx, bool indirect)
    {
        if (size == 0 || (size & (size - 1)) != 0 || size > MaxSize) throw new ArgumentOutOfRangeException(nameof(size), "queue size must be a power of two up to 32768");
        _memory = memory;
        Size = size;
        DescriptorTable = descriptors;
        AvailRing = avail;
        UsedRing = used;
        EventIdx = eventIdx;
        IndirectDescriptors = indirect;
    }

    /// <summary>Whether the rings are aligned and lie in guest RAM (checked when the driver enables the queue).</summary>
    public bool RingsValid => CheckRings(_memory, Size, DescriptorTable, AvailRing, UsedRing) == QueueError.None;

    /// <summary>
    /// Why rings the driver placed at these addresses cannot be used, or None: each must have the alignment of
    /// virtio 1.2 §2.7 and lie wholly in guest RAM, event fields included. Callers check before they enable a queue,
    /// so a bad ring never reaches a worker.
    /// </summary>
    public static QueueError CheckRings(IGuestMemory memory, ushort size, GuestAddress descriptors, GuestAddress avail, GuestAddress used)
    {
        if (descriptors.Value % DescriptorAlignment != 0 || avail.Value % AvailAlignment != 0 || used.Value % UsedAlignment != 0)
            return QueueError.RingMisaligned;
        // Sizes are at most 16 * 32768 bytes: no overflow; TryGetSpan refuses a range that wraps or leaves RAM.
        if (!memory.TryGetSpan(descriptors, DescriptorSize * size, out _) ||
            !memory.TryGetSpan(avail, 6 + 2 * size, out _) ||
            !memory.TryGetSpan(used, 6 + 8 * size, out _))
            return QueueError.OutsideGuestMemory;
        return QueueError.None;
    }

    private bool TryReadU16(GuestAddress a, ulong offset, out ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        value = 0;
        if (!a.TryAdd(offset, out var at) || !_memory.TryRead(at, b)) return false;
        value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        return true;
    }

    private bool TryWrite(GuestAddress a, ulong offset, ReadOnlySpan<byte> data) =>
        a.TryAdd(offset, out var at) && _memory.TryWrite(at, data);

    /// <summary>
    /// Takes the next available chain. Returns false when the ring is empty (or the queue is broken).
    /// On true, <paramref name="head"/> must be returned with <see cref="AddUsed"/> even when
    /// <paramref name="error"/> is not None (the request then completes with an error status);
    /// <paramref name="segments"/> receives the buffers (its capacity bounds the chain) and
    /// <paramref name="count"/> how many.
    /// </summary>
    public bool TryPop(Span<ChainSegment> segments, out ushort head, out int count, out QueueError error)
    {
        head = 0; count = 0; error = QueueError.None;
        if (Broken) return false;
        if (!TryReadU16(AvailRing, 2, out ushort availIdx)) { Break(); error = QueueError.OutsideGuestMemory; return false; }
        ushort pending = (ushort)(availIdx - _nextAvail);
        if (pending == 0) return false;
        if (pending > Size) { Break(); error = QueueError.AvailIndexTooFar; return false; }

        if (!TryReadU16(AvailRing, 4 + 2UL * (ushort)(_nextAvail % Size), out head)) { Break(); error = QueueError.OutsideGuestMemory; return false; }
        _nextAvail++;
        if (head >= Size) { error = QueueError.DescriptorIndexOutOfRange; head = 0; return true; }
        error = Walk(head, segments, out count);
        if (error != QueueError.None) count = 0;
        if (EventIdx) TryPublishAvailEvent();
        return true;
    }

    private QueueError Walk(ushort head, Span<ChainSegment> segments, out int count)
    {
        count = 0;
        Span<byte> d = stackalloc byte[DescriptorSize];
        GuestAddress table = DescriptorTable;
        uint tableSize = Size;
        uint index = head;
        bool inIndirect = false, seenWritable = false;
        ulong total = 0;
        // Every descriptor is visited at most once per table, so a loop ends at the table size (the TTL).
        int ttl = (int)tableSize;
        while (true)
        {
            if (ttl-- <= 0) return QueueError.ChainTooLong;
            if (index >= tableSize) return QueueError.DescriptorIndexOutOfRange;
            if (!table.TryAdd((ulong)index * DescriptorSize, out var at) || !_memory.TryRead(at, d)) return QueueError.OutsideGuestMemory;
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);

            if ((flags & DescIndirect) != 0)
            {
                // An indirect table replaces the rest of the chain (§2.7.5.3): no nesting, no NEXT alongside,
                // whole descriptors only, and no more entries than the largest queue (no chain may be longer).
                if (!IndirectDescriptors || inIndirect || (flags & DescNext) != 0 || len == 0 || len % DescriptorSize != 0
                    || len / DescriptorSize > MaxSize)
                    return QueueError.BadIndirectTable;
                if (!_memory.TryGetSpan(new GuestAddress(addr), (int)len, out _))
                    return QueueError.OutsideGuestMemory;
                table = new GuestAddress(addr);
                tableSize = len / DescriptorSize;
                ttl = (int)tableSize;
                index = 0;
                inIndirect = true;
                continue;
            }

            bool writable = (flags & DescWrite) != 0;
            if (!writable && seenWritable) return QueueError.ReadableAfterWritable;
            seenWritable |= writable;
            if (len > int.MaxValue || !_memory.TryGetSpan(new GuestAddress(addr), (int)len, out _)) return QueueError.OutsideGuestMemory;
            // No chain longer than the queue (§2.7.5.3.1), even through an indirect table, nor than the caller can hold.
            if (count >= Size || count >= segments.Length) return QueueError.ChainTooLong;
            // Summed in 64 bits: the used ring reports a chain's bytes in 32, so a larger chain cannot be served.
            total += len;
            if (total > uint.MaxValue) return QueueError.ChainTooLarge;
            segments[count++] = new ChainSegment(new GuestAddress(addr), len, writable);
            if ((flags & DescNext) == 0) return QueueError.None;
            index = next;
        }
    }

    /// <summary>Returns chain <paramref name="head"/> with <paramref name="written"/> bytes written to its buffers.</summary>
    public void AddUsed(ushort head, uint written)
    {
        if (Broken) return;
        Span<byte> elem = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(elem, head);
        BinaryPrimitives.WriteUInt32LittleEndian(elem[4..], written);
        Span<byte> idx = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(idx, (ushort)(_nextUsed + 1));
        // The element first, then the index that publishes it.
        if (!TryWrite(UsedRing, 4 + 8UL * (ushort)(_nextUsed % Size), elem)) { Break(); return; }
        Thread.MemoryBarrier();
        if (!TryWrite(UsedRing, 2, idx)) { Break(); return; }
        _nextUsed++;
    }

    /// <summary>Whether the driver wants an interrupt for the used entries added since the last call
    /// (EVENT_IDX: used_event crossed, §2.7.10; otherwise unless VIRTQ_AVAIL_F_NO_INTERRUPT).</summary>
    public bool ShouldNotify()
    {
        if (Broken) return false;
        Thread.MemoryBarrier();
        ushort old = _lastSignalledUsed, now = _nextUsed;
        _lastSignalledUsed = now;
        if (old == now) return false;
        if (EventIdx)
        {
            if (!TryReadU16(AvailRing, 4 + 2UL * Size, out ushort usedEvent)) return true;
            return (ushort)(now - usedEvent - 1) < (ushort)(now - old);
        }
        return !TryReadU16(AvailRing, 0, out ushort flags) || (flags & AvailNoInterrupt) == 0;
    }

    /// <summary>EVENT_IDX: tell the driver which available index should trigger the next notification.</summary>
    private void TryPublishAvailEvent()
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, _nextAvail);
        TryWrite(UsedRing, 4 + 8UL * Size, b);
    }

    /// <summary>Takes back the last <paramref name="count"/> pops that were not returned (rust-vmm's go_to_previous_position).</summary>
    public void Unpop(int count)
    {
        if (count < 0 || count > Size) throw new ArgumentOutOfRangeException(nameof(count));
        _nextAvail = (ushort)(_nextAvail - count);
    }

    private void Break() => Broken = true;

    /// <summary>Device reset: forget all ring positions.</summary>
    public void Reset()
    {
        _nextAvail = _nextUsed = _lastSignalledUsed = 0;
        Broken = false;
    }
}
