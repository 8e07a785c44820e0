using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Virtio;

/// <summary>The driver side of a split queue in a byte-addressed guest memory, for building rings by hand.</summary>
internal sealed class DriverQueue : IDisposable
{
    public const ulong Desc = 0x1000, Avail = 0x2000, Used = 0x3000, Buffers = 0x10000, RamSize = 1 << 20;
    public GuestMemory Memory { get; }
    public ushort Size { get; }
    private ushort _availIdx;

    /// <param name="ramSize">Guest RAM; reserved, not committed, so gigabytes cost nothing until touched.</param>
    public DriverQueue(ushort size, ulong ramSize = RamSize)
    {
        Size = size;
        Memory = new([new MemoryRegion(new GuestAddress(0), ramSize)]);
    }

    public SplitQueue Device(bool eventIdx = false, bool indirect = true) =>
        new(Memory, Size, new GuestAddress(Desc), new GuestAddress(Avail), new GuestAddress(Used), eventIdx, indirect);

    public void Descriptor(ulong table, int index, ulong addr, uint len, ushort flags, ushort next)
    {
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), len);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(12), flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(14), next);
        Memory.WriteExactly(new GuestAddress(table + 16UL * (ulong)index), d);
    }

    public void Publish(ushort head)
    {
        U16(Avail + 4 + 2UL * (ushort)(_availIdx % Size), head);
        U16(Avail + 2, unchecked(++_availIdx));
    }

    public void SetAvailIdx(ushort idx) { _availIdx = idx; U16(Avail + 2, idx); }
    // Stack buffers: the allocation test publishes through these.
    public void U16(ulong at, ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); Memory.WriteExactly(new GuestAddress(at), b); }
    public ushort ReadU16(ulong at) { Span<byte> b = stackalloc byte[2]; Memory.ReadExactly(new GuestAddress(at), b); return BinaryPrimitives.ReadUInt16LittleEndian(b); }
    public (uint Id, uint Len) UsedElem(int i) { var b = new byte[8]; Memory.ReadExactly(new GuestAddress(Used + 4 + 8UL * (ulong)(i % Size)), b); return (BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(4))); }
    public void Dispose() => Memory.Dispose();
}

public sealed class SplitQueueTests
{
    private readonly ChainSegment[] _segments = new ChainSegment[64];

    [Fact]
    public void Chain_IsReturnedInOrder_WithReadableThenWritableBuffers()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 16, SplitQueue.DescNext, 3);
        q.Descriptor(DriverQueue.Desc, 3, DriverQueue.Buffers + 0x100, 512, SplitQueue.DescNext | SplitQueue.DescWrite, 5);
        q.Descriptor(DriverQueue.Desc, 5, DriverQueue.Buffers + 0x400, 1, SplitQueue.DescWrite, 0);
        q.Publish(0);
        var dev = q.Device();
        Assert.True(dev.TryPop(_segments, out ushort head, out int count, out var error));
        Assert.Equal(QueueError.None, error);
        Assert.Equal(0, head);
        Assert.Equal(3, count);
        Assert.Equal(new ChainSegment(new GuestAddress(DriverQueue.Buffers), 16, false), _segments[0]);
        Assert.Equal(new ChainSegment(new GuestAddress(DriverQueue.Buffers + 0x100), 512, true), _segments[1]);
        Assert.False(dev.TryPop(_segments, out _, out _, out _));           // ring empty now
    }

    [Fact]
    public void UsedRing_GetsTheHeadAndLength_AndAdvancesItsIndex()
    {
        using var q = new DriverQueue(4);
        q.Descriptor(DriverQueue.Desc, 2, DriverQueue.Buffers, 8, SplitQueue.DescWrite, 0);
        q.Publish(2);
        var dev = q.Device();
        dev.TryPop(_segments, out ushort head, out _, out _);
        dev.AddUsed(head, 8);
        Assert.Equal((2u, 8u), q.UsedElem(0));
        Assert.Equal(1, q.ReadU16(DriverQueue.Used + 2));
        Assert.True(dev.ShouldNotify());
    }

    [Fact]
    public void AvailAndUsedIndices_WrapAround_Past65535()
    {
        using var q = new DriverQueue(4);
        q.Descriptor(DriverQueue.Desc, 1, DriverQueue.Buffers, 8, SplitQueue.DescWrite, 0);
        var dev = q.Device();
        for (int n = 0; n < 65540; n++)                                      // real requests, past the 16-bit wrap
        {
            q.Publish(1);
            Assert.True(dev.TryPop(_segments, out ushort head, out _, out var error), $"request {n}");
            Assert.Equal(QueueError.None, error);
            Assert.Equal(1, head);
            dev.AddUsed(head, (uint)n);
        }
        Assert.Equal(unchecked((ushort)65540), q.ReadU16(DriverQueue.Used + 2));   // 65540 mod 65536 = 4
        Assert.Equal((1u, 65539u), q.UsedElem(65539));
        Assert.False(dev.TryPop(_segments, out _, out _, out _));
    }

    [Fact]
    public void IndirectTable_ReplacesTheChain()
    {
        using var q = new DriverQueue(8);
        const ulong table = DriverQueue.Buffers + 0x8000;
        q.Descriptor(table, 0, DriverQueue.Buffers, 16, SplitQueue.DescNext, 1);
        q.Descriptor(table, 1, DriverQueue.Buffers + 0x200, 64, SplitQueue.DescWrite, 0);
        q.Descriptor(DriverQueue.Desc, 4, table, 32, SplitQueue.DescIndirect, 0);
        q.Publish(4);
        var dev = q.Device();
        Assert.True(dev.TryPop(_segments, out ushort head, out int count, out var error));
        Assert.Equal(QueueError.None, error);
        Assert.Equal(4, head);
        Assert.Equal(2, count);
        Assert.True(_segments[1].DeviceWritable);
    }

    [Fact]
    public void EventIdx_SuppressesInterruptsUntilUsedEventIsCrossed_AndPublishesAvailEvent()
    {
        using var q = new DriverQueue(8);
        for (int i = 0; i < 4; i++) q.Descriptor(DriverQueue.Desc, i, DriverQueue.Buffers, 8, SplitQueue.DescWrite, 0);
        var dev = q.Device(eventIdx: true);
        q.U16(DriverQueue.Avail + 4 + 2 * 8, 2);                            // used_event = 2: interrupt after the third
        for (ushort i = 0; i < 4; i++) q.Publish(i);
        var notified = new List<bool>();
        for (int i = 0; i < 4; i++)
        {
            dev.TryPop(_segments, out ushort head, out _, out _);
            dev.AddUsed(head, 0);
            notified.Add(dev.ShouldNotify());
        }
        Assert.Equal(new[] { false, false, true, false }, notified);
        Assert.Equal(4, q.ReadU16(DriverQueue.Used + 4 + 8 * 8));           // avail_event: the next index wanted
    }

    [Fact]
    public void NoInterruptFlag_SuppressesWithoutEventIdx()
    {
        using var q = new DriverQueue(4);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 8, 0, 0);
        q.U16(DriverQueue.Avail, SplitQueue.AvailNoInterrupt);
        q.Publish(0);
        var dev = q.Device();
        dev.TryPop(_segments, out ushort head, out _, out _);
        dev.AddUsed(head, 0);
        Assert.False(dev.ShouldNotify());
    }

    // Hostile drivers: each case is reported for that chain, nothing outside guest memory is touched,
    // and no exception escapes.

    [Fact]
    public void DescriptorLoop_EndsAsChainTooLong()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 8, SplitQueue.DescNext, 1);
        q.Descriptor(DriverQueue.Desc, 1, DriverQueue.Buffers, 8, SplitQueue.DescNext, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out int count, out var error));
        Assert.Equal(QueueError.ChainTooLong, error);
        Assert.Equal(0, count);
    }

    [Fact]
    public void NextOutOfRange_AndHeadOutOfRange_AreReported()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 8, SplitQueue.DescNext, 99);
        q.Publish(0);
        q.Publish(200);
        var dev = q.Device();
        Assert.True(dev.TryPop(_segments, out _, out _, out var e1));
        Assert.Equal(QueueError.DescriptorIndexOutOfRange, e1);
        Assert.True(dev.TryPop(_segments, out _, out _, out var e2));
        Assert.Equal(QueueError.DescriptorIndexOutOfRange, e2);
    }

    [Theory]
    [InlineData(DriverQueue.RamSize - 4, 8u)]          // straddles the end of RAM
    [InlineData(0x4000_0000UL, 8u)]                    // beyond RAM
    [InlineData(DriverQueue.Buffers, 0xFFFF_FFFFu)]    // huge length
    [InlineData(ulong.MaxValue - 2, 8u)]               // address wraps
    public void BufferOutsideGuestMemory_IsReported(ulong addr, uint len)
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, addr, len, SplitQueue.DescWrite, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.OutsideGuestMemory, error);
    }

    [Fact]
    public void ZeroLengthBuffer_IsAcceptedAsAnEmptySegment()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 0, 0, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out int count, out var error));
        Assert.Equal(QueueError.None, error);
        Assert.Equal(0u, _segments[0].Length);
        Assert.Equal(1, count);
    }

    [Fact]
    public void MoreDescriptorsThanTheCallerCanTake_IsChainTooLong()
    {
        using var q = new DriverQueue(16);
        for (int i = 0; i < 10; i++) q.Descriptor(DriverQueue.Desc, i, DriverQueue.Buffers, 8, SplitQueue.DescNext, (ushort)(i + 1));
        q.Descriptor(DriverQueue.Desc, 10, DriverQueue.Buffers, 8, 0, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments.AsSpan(0, 4), out _, out _, out var error));
        Assert.Equal(QueueError.ChainTooLong, error);
    }

    [Fact]
    public void AvailIndexRunningAhead_BreaksTheQueue()
    {
        using var q = new DriverQueue(8);
        q.SetAvailIdx(9);
        var dev = q.Device();
        Assert.False(dev.TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.AvailIndexTooFar, error);
        Assert.True(dev.Broken);
        dev.Reset();
        Assert.False(dev.Broken);
    }

    [Theory]
    [InlineData(0u, SplitQueue.DescIndirect)]                                      // empty table
    [InlineData(20u, SplitQueue.DescIndirect)]                                     // not a multiple of 16
    [InlineData(32u, SplitQueue.DescIndirect | SplitQueue.DescNext)]               // INDIRECT with NEXT
    public void MalformedIndirectTable_IsReported(uint len, ushort flags)
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers + 0x8000, len, flags, 1);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.BadIndirectTable, error);
    }

    [Fact]
    public void NestedIndirect_AndIndirectWithoutTheFeature_AreReported()
    {
        using var q = new DriverQueue(8);
        const ulong table = DriverQueue.Buffers + 0x8000;
        q.Descriptor(table, 0, table, 16, SplitQueue.DescIndirect, 0);
        q.Descriptor(DriverQueue.Desc, 0, table, 16, SplitQueue.DescIndirect, 0);
        q.Publish(0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var nested));
        Assert.Equal(QueueError.BadIndirectTable, nested);
        var noFeature = q.Device(indirect: false);
        Assert.True(noFeature.TryPop(_segments, out _, out _, out var without));
        Assert.Equal(QueueError.BadIndirectTable, without);
    }

    [Fact]
    public void IndirectTableLoop_IsBoundedByTheTableSize()
    {
        using var q = new DriverQueue(8);
        const ulong table = DriverQueue.Buffers + 0x8000;
        q.Descriptor(table, 0, DriverQueue.Buffers, 8, SplitQueue.DescNext, 1);
        q.Descriptor(table, 1, DriverQueue.Buffers, 8, SplitQueue.DescNext, 0);
        q.Descriptor(DriverQueue.Desc, 0, table, 32, SplitQueue.DescIndirect, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.ChainTooLong, error);
    }

    [Fact]
    public void ReadableAfterWritable_IsReported()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 8, SplitQueue.DescNext | SplitQueue.DescWrite, 1);
        q.Descriptor(DriverQueue.Desc, 1, DriverQueue.Buffers, 8, 0, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.ReadableAfterWritable, error);
    }

    [Fact]
    public void RingsOutsideMemory_AreDetected_AndBreakInsteadOfThrowing()
    {
        using var q = new DriverQueue(8);
        var dev = new SplitQueue(q.Memory, 8, new GuestAddress(DriverQueue.Desc), new GuestAddress(DriverQueue.RamSize - 2), new GuestAddress(DriverQueue.Used), false, false);
        Assert.False(dev.RingsValid);
        Assert.False(dev.TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.OutsideGuestMemory, error);
        Assert.True(dev.Broken);
    }

    // Caps the model VMMs apply (rust-vmm virtio-queue chain.rs, Firecracker queue.rs).

    [Fact]
    public void ChainWhoseLengthsSumPast4GiB_IsRefusedAsTooLarge_NotWrapped()
    {
        // 2 GiB + 2 MiB of reserved RAM: three overlapping 2 GiB buffers add up to 6 GiB without touching a page.
        using var q = new DriverQueue(8, ramSize: (2UL << 30) + (2UL << 20));
        const uint big = int.MaxValue;
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, big, SplitQueue.DescNext, 1);
        q.Descriptor(DriverQueue.Desc, 1, DriverQueue.Buffers, big, SplitQueue.DescNext, 2);
        q.Descriptor(DriverQueue.Desc, 2, DriverQueue.Buffers, 2, 0, 0);          // 2 * (2^31 - 1) + 2 = 2^32: one too many
        q.Descriptor(DriverQueue.Desc, 4, DriverQueue.Buffers, big, SplitQueue.DescNext, 5);
        q.Descriptor(DriverQueue.Desc, 5, DriverQueue.Buffers, big, SplitQueue.DescNext, 6);
        q.Descriptor(DriverQueue.Desc, 6, DriverQueue.Buffers, 1, 0, 0);          // exactly 2^32 - 1: still describable
        q.Publish(0);
        q.Publish(4);
        var dev = q.Device();
        Assert.True(dev.TryPop(_segments, out _, out int count, out var error));
        Assert.Equal(QueueError.ChainTooLarge, error);
        Assert.Equal(0, count);
        Assert.True(dev.TryPop(_segments, out _, out count, out error));
        Assert.Equal(QueueError.None, error);
        Assert.Equal(3, count);
    }

    [Fact]
    public void IndirectChainLongerThanTheQueue_IsChainTooLong()
    {
        using var q = new DriverQueue(8);
        const ulong table = DriverQueue.Buffers + 0x8000;
        for (int i = 0; i < 8; i++) q.Descriptor(table, i, DriverQueue.Buffers, 8, SplitQueue.DescNext, (ushort)(i + 1));
        q.Descriptor(table, 8, DriverQueue.Buffers, 8, 0, 0);                     // nine buffers in a queue of eight
        q.Descriptor(DriverQueue.Desc, 0, table, 16 * 9, SplitQueue.DescIndirect, 0);
        q.Descriptor(table + 0x400, 7, DriverQueue.Buffers, 8, 0, 0);
        for (int i = 0; i < 7; i++) q.Descriptor(table + 0x400, i, DriverQueue.Buffers, 8, SplitQueue.DescNext, (ushort)(i + 1));
        q.Descriptor(DriverQueue.Desc, 1, table + 0x400, 16 * 8, SplitQueue.DescIndirect, 0);
        q.Publish(0);
        q.Publish(1);
        var dev = q.Device();
        Assert.True(dev.TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.ChainTooLong, error);
        Assert.True(dev.TryPop(_segments, out _, out int count, out error));   // eight is the limit, not beyond it
        Assert.Equal(QueueError.None, error);
        Assert.Equal(8, count);
    }

    [Fact]
    public void IndirectTableWithMoreEntriesThanTheLargestQueue_IsReported()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.Buffers, 16 * (SplitQueue.MaxSize + 1), SplitQueue.DescIndirect, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.BadIndirectTable, error);
    }

    [Fact]
    public void IndirectTableOutsideGuestMemory_IsReported()
    {
        using var q = new DriverQueue(8);
        q.Descriptor(DriverQueue.Desc, 0, DriverQueue.RamSize - 16, 32, SplitQueue.DescIndirect, 0);
        q.Publish(0);
        Assert.True(q.Device().TryPop(_segments, out _, out _, out var error));
        Assert.Equal(QueueError.OutsideGuestMemory, error);
    }

    [Theory]
    [InlineData(DriverQueue.Desc + 8, DriverQueue.Avail, DriverQueue.Used)]     // descriptor table: 16
    [InlineData(DriverQueue.Desc, DriverQueue.Avail + 1, DriverQueue.Used)]     // available ring: 2
    [InlineData(DriverQueue.Desc, DriverQueue.Avail, DriverQueue.Used + 2)]     // used ring: 4
    public void RingsWithoutTheSpecAlignment_AreNotValid(ulong desc, ulong avail, ulong used)
    {
        using var q = new DriverQueue(8);
        var dev = new SplitQueue(q.Memory, 8, new GuestAddress(desc), new GuestAddress(avail), new GuestAddress(used), false, false);
        Assert.False(dev.RingsValid);
        Assert.Equal(QueueError.RingMisaligned, SplitQueue.CheckRings(q.Memory, 8, new GuestAddress(desc), new GuestAddress(avail), new GuestAddress(used)));
    }

    [Fact]
    public void RingsEndingPastGuestMemory_AreReportedAsOutside()
    {
        using var q = new DriverQueue(8);
        // Aligned, starts in RAM, but the used ring's event field runs past the end.
        Assert.Equal(QueueError.OutsideGuestMemory, SplitQueue.CheckRings(q.Memory, 8, new GuestAddress(DriverQueue.Desc),
            new GuestAddress(DriverQueue.Avail), new GuestAddress(DriverQueue.RamSize - 64)));
        Assert.Equal(QueueError.None, SplitQueue.CheckRings(q.Memory, 8, new GuestAddress(DriverQueue.Desc),
            new GuestAddress(DriverQueue.Avail), new GuestAddress(DriverQueue.RamSize - 72)));
    }
}
