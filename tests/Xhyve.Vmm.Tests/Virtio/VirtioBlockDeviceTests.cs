using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;
using V = Xhyve.Vmm.Devices.Virtio.Virtio;
using Xhyve.Vmm.Devices.Virtio.Block;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Storage;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Virtio;

/// <summary>
/// virtio-blk behind the virtio-pci transport, driven only through its BARs as a guest driver would, with
/// rings built by hand in guest memory: negotiation, requests, interrupts, and hostile requests that must
/// complete with an error status (or not at all) without touching memory outside their buffers.
/// </summary>
public sealed class VirtioBlockDeviceTests : IDisposable
{
    private const ulong Header = 0x20000, Data = 0x30000, Status = 0x40000;
    private const long DiskSize = 1 << 20;
    private DriverQueue _q = new(16);
    private readonly RecordingMsi _msi = new();
    private readonly RecordingInterruptLine _intx = new();
    private readonly string _image = Path.GetTempFileName();
    private VirtioPciDevice _device;
    private int _usedSeen;

    public VirtioBlockDeviceTests()
    {
        File.WriteAllBytes(_image, Enumerable.Range(0, (int)DiskSize).Select(i => unchecked((byte)(i / 512))).ToArray());
        var block = new VirtioBlock(RawImage.Open(_image, new RawImageOptions()), 512, 512, ioThreads: 2);
        _device = new VirtioPciDevice(block, _q.Memory, _msi, _intx, new NoDoorbells());
    }

    public void Dispose()
    {
        _device.Dispose();
        _q.Dispose();
        File.Delete(_image);
    }

    private sealed class RecordingMsi : IMsiSink
    {
        public int Count;
        public int LastVector = -1;
        public uint LastData;
        public void Signal(int vector, ulong address, uint data)
        {
            (LastVector, LastData) = (vector, data);
            Interlocked.Increment(ref Count);
        }
    }

    private sealed class NoDoorbells : IDoorbells
    {
        public bool TryAttach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => false;
        public void Detach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) { }
    }

    /// <summary>Rebuilds the device over <paramref name="backend"/> (and, given a size, over fresh guest RAM).</summary>
    private VirtioBlock UseBackend(IBlockBackend backend, ulong? ramSize = null, RateLimitedLog? log = null)
    {
        _device.Dispose();
        if (ramSize is { } size) { _q.Dispose(); _q = new DriverQueue(16, size); }
        var block = new VirtioBlock(backend, 512, 512, ioThreads: 2);
        _device = new VirtioPciDevice(block, _q.Memory, _msi, _intx, new NoDoorbells(), log: log);
        return block;
    }

    private VirtioBlock Block => (VirtioBlock)_device.Device;

    private IBusDevice Modern => _device.Bars.Single(b => b.Index == VirtioPciDevice.ModernBar).Handler;

    private void W(ulong offset, uint value, int width)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Modern.Write(offset, b[..width]);
    }

    private uint R(ulong offset, int width)
    {
        Span<byte> b = stackalloc byte[4];
        b.Clear();
        Modern.Read(offset, b[..width]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <summary>The driver's side of initialisation (virtio 1.2 §3.1.1) with queue 0 at the DriverQueue rings.</summary>
    private byte Start(uint featuresHigh = 1, ulong desc = DriverQueue.Desc)
    {
        W(0x14, 0, 1);
        W(0x14, V.StatusAcknowledge | V.StatusDriver, 1);
        W(0x08, 0, 4); W(0x0C, (uint)(VirtioBlock.FeatureFlush | VirtioBlock.FeatureDiscard | VirtioBlock.FeatureWriteZeroes), 4);
        W(0x08, 1, 4); W(0x0C, featuresHigh, 4);
        W(0x14, V.StatusAcknowledge | V.StatusDriver | V.StatusFeaturesOk, 1);
        if ((R(0x14, 1) & V.StatusFeaturesOk) == 0) return (byte)R(0x14, 1);
        W(0x16, 0, 2);
        W(0x18, _q.Size, 2);
        W(0x20, (uint)desc, 4); W(0x24, (uint)(desc >> 32), 4);
        W(0x28, (uint)DriverQueue.Avail, 4); W(0x30, (uint)DriverQueue.Used, 4);
        W(0x1C, 1, 2);
        W(0x14, V.StatusAcknowledge | V.StatusDriver | V.StatusFeaturesOk | V.StatusDriverOk, 1);
        return (byte)R(0x14, 1);
    }

    private void Kick() => W(VirtioPciDevice.NotifyOffset, 0, 2);

    private (uint Id, uint Len) WaitUsed()
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (_q.ReadU16(DriverQueue.Used + 2) == _usedSeen)
        {
            Assert.True(DateTime.UtcNow < deadline, "the device did not complete the request");
            Thread.Sleep(1);
        }
        return _q.UsedElem(_usedSeen++);
    }

    private void WriteHeader(uint type, ulong sector)
    {
        var h = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(h, type);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), sector);
        _q.Memory.WriteExactly(new GuestAddress(Header), h);
        _q.Memory.WriteExactly(new GuestAddress(Status), [0xEE]);
    }

    private byte StatusByte() { var b = new byte[1]; _q.Memory.ReadExactly(new GuestAddress(Status), b); return b[0]; }

    /// <summary>header / data / status, the layout every driver uses.</summary>
    private (uint Id, uint Len) Request(uint type, ulong sector, uint dataLength, bool dataWritable, ulong dataAddress = Data)
    {
        WriteHeader(type, sector);
        _q.Descriptor(DriverQueue.Desc, 0, Header, 16, 1, 1);
        _q.Descriptor(DriverQueue.Desc, 1, dataAddress, dataLength, (ushort)(1 | (dataWritable ? 2 : 0)), 2);
        _q.Descriptor(DriverQueue.Desc, 2, Status, 1, 2, 0);
        _q.Publish(0);
        Kick();
        return WaitUsed();
    }

    [Fact]
    public void Negotiation_RefusesFeaturesOk_WhenTheDriverAcceptsAFeatureNeverOffered()
    {
        byte status = Start(featuresHigh: 1u | (1u << 30));   // VERSION_1 plus an unoffered high bit
        Assert.Equal(0, status & V.StatusFeaturesOk);
    }

    [Fact]
    public void Read_FillsTheBuffer_AndCompletesWithDataPlusStatusLength()
    {
        Assert.Equal(0x0F, Start());
        var (id, len) = Request(VirtioBlock.TypeIn, 3, 1024, dataWritable: true);
        Assert.Equal(0u, id);
        Assert.Equal(1025u, len);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
        var data = new byte[1024];
        _q.Memory.ReadExactly(new GuestAddress(Data), data);
        Assert.All(data[..512], b => Assert.Equal((byte)3, b));
        Assert.All(data[512..], b => Assert.Equal((byte)4, b));
        // The interrupt follows the used-ring update on the device's thread, so give it a moment.
        Assert.True(SpinWait.SpinUntil(() => _intx.Level, 5000), "without MSI-X the used buffer is announced on INTx");
        Assert.Equal((byte)1, Modern.ReadIsr());
        Assert.False(_intx.Level, "reading the ISR deasserts INTx");
    }

    [Fact]
    public void Write_ThenFlush_ReachesTheImage()
    {
        Start();
        _q.Memory.WriteExactly(new GuestAddress(Data), Enumerable.Repeat((byte)0xA5, 512).ToArray());
        Assert.Equal(1u, Request(VirtioBlock.TypeOut, 7, 512, dataWritable: false).Len);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
        Request(VirtioBlock.TypeFlush, 0, 0, dataWritable: false);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
        _device.Dispose();
        var bytes = File.ReadAllBytes(_image);
        Assert.All(bytes[(7 * 512)..(8 * 512)], b => Assert.Equal(0xA5, b));
        Assert.All(bytes[(8 * 512)..(9 * 512)], b => Assert.Equal(8, b));
    }

    [Theory]
    [InlineData(VirtioBlock.TypeIn, 2048UL, 512u, VirtioBlock.StatusIoErr)]            // one past the last sector
    [InlineData(VirtioBlock.TypeIn, 2047UL, 1024u, VirtioBlock.StatusIoErr)]           // runs off the end
    [InlineData(VirtioBlock.TypeIn, ulong.MaxValue, 512u, VirtioBlock.StatusIoErr)]    // sector * 512 overflows
    [InlineData(VirtioBlock.TypeIn, 0UL, 100u, VirtioBlock.StatusIoErr)]               // not whole sectors
    [InlineData(77u, 0UL, 512u, VirtioBlock.StatusUnsupported)]                        // unknown request type
    public void BadRequest_CompletesWithAnErrorStatus_AndTheDeviceCarriesOn(uint type, ulong sector, uint length, byte expected)
    {
        Start();
        Request(type, sector, length, dataWritable: true);
        Assert.Equal(expected, StatusByte());
        Request(VirtioBlock.TypeIn, 1, 512, dataWritable: true);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
        Assert.Equal(0x0Fu, R(0x14, 1));
    }

    [Fact]
    public void ChainWithoutAWritableStatusByte_CompletesEmpty_AndWritesNothing()
    {
        Start();
        WriteHeader(VirtioBlock.TypeIn, 0);
        _q.Memory.WriteExactly(new GuestAddress(Data), Enumerable.Repeat((byte)0x55, 512).ToArray());
        _q.Descriptor(DriverQueue.Desc, 0, Header, 16, 1, 1);
        _q.Descriptor(DriverQueue.Desc, 1, Data, 512, 0, 0);           // read-only "status": nowhere to report
        _q.Publish(0);
        Kick();
        Assert.Equal(0u, WaitUsed().Len);
        var data = new byte[512];
        _q.Memory.ReadExactly(new GuestAddress(Data), data);
        Assert.All(data, b => Assert.Equal(0x55, b));
    }

    [Fact]
    public void DiscardWithUnknownFlags_IsUnsupported_AndWriteZeroesZeroes()
    {
        Start();
        var range = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(range, 5);
        BinaryPrimitives.WriteUInt32LittleEndian(range.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(range.AsSpan(12), 1);  // "unmap": defined for write-zeroes only
        _q.Memory.WriteExactly(new GuestAddress(Data), range);
        Request(VirtioBlock.TypeDiscard, 0, 16, dataWritable: false);
        Assert.Equal(VirtioBlock.StatusUnsupported, StatusByte());
        Request(VirtioBlock.TypeWriteZeroes, 0, 16, dataWritable: false);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
        Request(VirtioBlock.TypeIn, 5, 1024, dataWritable: true);
        var data = new byte[1024];
        _q.Memory.ReadExactly(new GuestAddress(Data), data);
        Assert.All(data, b => Assert.Equal(0, b));
    }

    [Fact]
    public void AvailIndexRunningAhead_SetsNeedsReset_AndAResetRevivesTheDevice()
    {
        Start();
        _q.SetAvailIdx(1000);                  // more than a queue's worth of new buffers: the ring is garbage
        Kick();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((R(0x14, 1) & V.StatusNeedsReset) == 0) { Assert.True(DateTime.UtcNow < deadline, "no NEEDS_RESET"); Thread.Sleep(1); }
        Assert.Equal(2, Modern.ReadIsr() & 2);          // configuration-change interrupt
        RestartAndServeOneRead();
    }

    [Fact]
    public void RingsOutsideGuestRam_AreRefusedAtDriverOk()
    {
        byte status = Start(desc: DriverQueue.RamSize + 0x1000);
        Assert.NotEqual(0, status & V.StatusNeedsReset);
    }

    [Fact]
    public void QueueEnable_WithAMisalignedDescriptorTable_LeavesTheQueueDisabled_AndSetsNeedsReset()
    {
        byte status = Start(desc: DriverQueue.Desc + 8);   // 8-aligned: the spec asks for 16
        Assert.NotEqual(0, status & V.StatusNeedsReset);
        W(0x16, 0, 2);
        Assert.Equal(0u, R(0x1C, 2));                       // queue_enable reads back 0
        Assert.Equal(2, Modern.ReadIsr() & 2);              // the driver hears about it through a configuration change
        _q.Descriptor(DriverQueue.Desc + 8, 0, Header, 16, 0, 0);
        _q.Publish(0);
        Kick();
        Thread.Sleep(50);
        Assert.Equal(0, _q.ReadU16(DriverQueue.Used + 2));  // nothing was walked
        _q.SetAvailIdx(0);                                  // the driver starts its ring afresh with the reset
        Assert.Equal(0x0F, Start());                        // a reset with good rings brings it back
        Request(VirtioBlock.TypeIn, 1, 512, dataWritable: true);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
    }

    [Fact]
    public void QueueSizeThatIsNotAPowerOfTwo_IsIgnored()
    {
        W(0x16, 0, 2);
        W(0x18, 100, 2);
        Assert.Equal((uint)VirtioBlock.QueueSize, R(0x18, 2));
        W(0x18, 64, 2);
        Assert.Equal(64u, R(0x18, 2));
    }

    [Fact]
    public void MsixVector_IsUsedForTheQueue_OnceMsixIsOn()
    {
        var table = _device.Bars.Single(b => b.Index == VirtioPciDevice.MsixBar).Handler;
        Span<byte> entry = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 0xFEE0_0000); table.Write(0, entry);
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 0x40); table.Write(8, entry);
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 0); table.Write(12, entry);         // unmask vector 0
        int cap = 0x40;                                                                      // MSI-X is the first capability
        Assert.Equal(PciInterrupts.MsixCapabilityId, (byte)_device.Config.Read(cap, 1));
        _device.Config.Write(cap + 2, 2, 0x8000);
        Start();
        W(0x16, 0, 2);
        W(0x1A, 0, 2);
        Request(VirtioBlock.TypeIn, 0, 512, dataWritable: true);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (Volatile.Read(ref _msi.Count) == 0) { Assert.True(DateTime.UtcNow < deadline, "no MSI-X message"); Thread.Sleep(1); }
        Assert.False(_intx.Level);
    }

    [Fact]
    public void MinusW_OffersOneMsiMessageInsteadOfMsix_AndEveryInterruptUsesIt()
    {
        _device.Dispose();
        var block = new VirtioBlock(RawImage.Open(_image, new RawImageOptions()), 512, 512, ioThreads: 2);
        _device = new VirtioPciDevice(block, _q.Memory, _msi, _intx, new NoDoorbells(), singleVectorMsi: true);
        Assert.DoesNotContain(_device.Bars, b => b.Index == VirtioPciDevice.MsixBar);
        int cap = 0x40;                                                                      // MSI is the first capability
        Assert.Equal(PciInterrupts.MsiCapabilityId, (byte)_device.Config.Read(cap, 1));
        Assert.Equal(0u, (_device.Config.Read(cap + 2, 2) >> 1) & 7);                       // one message
        _device.Config.Write(cap + 4, 4, 0xFEE0_0000);
        _device.Config.Write(cap + 12, 2, 0x41);
        _device.Config.Write(cap + 2, 2, 1);                                                 // MSI enable
        Start();
        Request(VirtioBlock.TypeIn, 0, 512, dataWritable: true);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (Volatile.Read(ref _msi.Count) == 0) { Assert.True(DateTime.UtcNow < deadline, "no MSI message"); Thread.Sleep(1); }
        Assert.Equal((0, 0x41u), (_msi.LastVector, _msi.LastData));                         // no MSI-X vector: message 0
        Assert.False(_intx.Level);
    }

    // Typed requests: every failure counted by its reason, refused before the backend sees it.

    [Fact]
    public void BadRequests_AreCountedByReason()
    {
        Start();
        Request(VirtioBlock.TypeIn, 2048, 512, dataWritable: true);
        Request(77, 0, 512, dataWritable: true);
        Request(VirtioBlock.TypeIn, 0, 100, dataWritable: true);
        Request(VirtioBlock.TypeIn, 2047, 1024, dataWritable: true);
        Assert.Equal(2, Block.Failures(BlockRequestError.BeyondCapacity));
        Assert.Equal(1, Block.Failures(BlockRequestError.UnsupportedType));
        Assert.Equal(1, Block.Failures(BlockRequestError.NotSectorAligned));
        Assert.Equal(4, Block.Errors);
        var counters = Block.FailureCounters.ToDictionary(c => c.Key, c => c.Value);
        Assert.Equal(2, counters["failed_beyond_capacity"]);
        Assert.Equal(0, counters["failed_device_fault"]);
        Assert.DoesNotContain("failed_none", counters.Keys);
    }

    [Fact]
    public void BadChainsAndRings_AreCountedByTheirQueueError()
    {
        Start(desc: DriverQueue.Desc + 8);
        Assert.Equal(1, _device.ChainErrors(QueueError.RingMisaligned));
        _q.SetAvailIdx(0);
        Start();
        _q.Descriptor(DriverQueue.Desc, 0, Header, 16, 1, 1);
        _q.Descriptor(DriverQueue.Desc, 1, Data, 512, 1, 0);       // a loop back to the head
        _q.Publish(0);
        Kick();
        Assert.Equal(0u, WaitUsed().Len);
        Assert.Equal(1, _device.ChainErrors(QueueError.ChainTooLong));
        Assert.Equal(1, Block.Failures(BlockRequestError.BadChain));
        var counters = _device.ChainErrorCounters.ToDictionary(c => c.Key, c => c.Value);
        Assert.Equal(1, counters["queue_chain_too_long"]);
        Assert.Equal(1, counters["queue_ring_misaligned"]);
    }

    [Fact]
    public void Counters_GiveTheTransportsThenTheDevicesInAFixedOrder()
    {
        Start();
        Request(VirtioBlock.TypeIn, 0, 512, dataWritable: true);
        var names = _device.Counters.Select(c => c.Key).ToList();
        Assert.Equal(["notifications", "interrupts", "faults"], names.Take(3));
        Assert.Equal(_device.ChainErrorCounters.Select(c => c.Key), names.Skip(3).Take(_device.ChainErrorCounters.Count()));
        Assert.Equal(((IDeviceCounters)Block).Counters.Select(c => c.Key), names.TakeLast(((IDeviceCounters)Block).Counters.Count()));
        Assert.Equal(["reads", "writes", "flushes", "errors", "read_bytes", "written_bytes"], ((IDeviceCounters)Block).Counters.Select(c => c.Key).Take(6));
        var values = _device.Counters.ToDictionary(c => c.Key, c => c.Value);
        Assert.Equal(1, values["reads"]);
        Assert.Equal(512, values["read_bytes"]);
        Assert.True(values["notifications"] >= 1);
    }

    [Fact]
    public void DiscardWithMoreRangesThanOffered_IsUnsupported_AndDiscardsNothing()
    {
        var backend = new FakeBlockBackend(DiskSize);
        UseBackend(backend);
        Start();
        var ranges = new byte[16 * (VirtioBlock.MaxDiscardSegments + 1)];
        for (int i = 0; i <= VirtioBlock.MaxDiscardSegments; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(ranges.AsSpan(16 * i), (ulong)i);
            BinaryPrimitives.WriteUInt32LittleEndian(ranges.AsSpan(16 * i + 8), 1);
        }
        _q.Memory.WriteExactly(new GuestAddress(Data), ranges);
        Request(VirtioBlock.TypeDiscard, 0, (uint)ranges.Length, dataWritable: false);
        Assert.Equal(VirtioBlock.StatusUnsupported, StatusByte());
        Assert.Equal(0, backend.Discards);                    // not the first 32 of them either
        Assert.Equal(1, Block.Failures(BlockRequestError.BadRangeList));
    }

    [Fact]
    public void ReadChainOver4GiB_IsRefusedBeforeTheBackendRuns_InsteadOfWrappingTheUsedLength()
    {
        // 2 GiB + 1 MiB of reserved RAM (never touched) and an 8 GiB disk that keeps nothing past its first MiB.
        var backend = new FakeBlockBackend(8L << 30);
        UseBackend(backend, ramSize: (2UL << 30) + (1UL << 20));
        Start();
        WriteHeader(VirtioBlock.TypeIn, 0);
        const uint big = 0x7FFF_FE00;                         // 2 GiB - 512: whole sectors
        _q.Descriptor(DriverQueue.Desc, 0, Header, 16, 1, 1);
        _q.Descriptor(DriverQueue.Desc, 1, Data, big, 3, 2);
        _q.Descriptor(DriverQueue.Desc, 2, Data, big, 3, 3);
        _q.Descriptor(DriverQueue.Desc, 3, Status, 1025, 2, 0);    // 1024 data bytes, then the status: 4 GiB of data in all
        _q.Publish(0);
        Kick();
        Assert.Equal(0u, WaitUsed().Len);
        Assert.Equal(0, backend.Reads);
        Assert.Equal(1, Block.Failures(BlockRequestError.BadChain));
        Assert.Equal(0xEE, StatusByte());                       // a chain the queue refused gets no status
    }

    // Device faults: an exception the device did not expect asks the driver for a reset; the engine runs on.

    [Fact]
    public void BackendThatThrows_FailsTheRequests_SetsNeedsResetAndLogsOnce_AndAResetRevivesTheDevice()
    {
        var backend = new FakeBlockBackend(DiskSize) { Throw = new NotSupportedException("backend bug") };
        var log = new StringWriter();
        UseBackend(backend, log: new RateLimitedLog(log, TimeSpan.FromHours(1)));
        WriteHeader(VirtioBlock.TypeIn, 0);
        const ulong status2 = Status + 0x100;
        _q.Memory.WriteExactly(new GuestAddress(status2), [0xEE]);
        for (int c = 0; c < 2; c++)                                // two requests in one kick: both hit the bug
        {
            int d = 3 * c;
            _q.Descriptor(DriverQueue.Desc, d, Header, 16, 1, (ushort)(d + 1));
            _q.Descriptor(DriverQueue.Desc, d + 1, Data + 0x1000UL * (ulong)c, 512, 3, (ushort)(d + 2));
            _q.Descriptor(DriverQueue.Desc, d + 2, c == 0 ? Status : status2, 1, 2, 0);
            _q.Publish((ushort)d);
        }
        Start();                                                   // both are there when DRIVER_OK looks at the queue
        WaitUsed();
        WaitUsed();
        Assert.Equal(VirtioBlock.StatusIoErr, StatusByte());     // each request completes, with IOERR
        var b = new byte[1];
        _q.Memory.ReadExactly(new GuestAddress(status2), b);
        Assert.Equal(VirtioBlock.StatusIoErr, b[0]);
        Assert.True(SpinWait.SpinUntil(() => _device.Faults == 2, 5000));
        Assert.NotEqual(0u, R(0x14, 1) & V.StatusNeedsReset);
        Assert.Equal(2, Modern.ReadIsr() & 2);
        Assert.Equal(2, Block.Failures(BlockRequestError.DeviceFault));
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);                                       // rate-limited: one line for two faults
        Assert.Contains("NotSupportedException: backend bug", lines[0]);

        backend.Throw = null;
        RestartAndServeOneRead();
    }

    /// <summary>After a driver reset, clears the rings, brings the device up again and proves it serves a read.</summary>
    private void RestartAndServeOneRead()
    {
        _q.SetAvailIdx(0);
        _q.U16(DriverQueue.Used + 2, 0);
        _usedSeen = 0;
        Assert.Equal(0x0F, Start());
        Request(VirtioBlock.TypeIn, 1, 512, dataWritable: true);
        Assert.Equal(VirtioBlock.StatusOk, StatusByte());
    }

    [Fact]
    public void HotPath_ReadRequests_AllocateNothingPerRequest()
    {
        using var q = new DriverQueue(16);
        using var block = new VirtioBlock(new FakeBlockBackend(DiskSize), 512, 512, ioThreads: 1);
        int completions = 0;
        block.Activate(q.Memory, 0, [new Virtqueue(0, q.Device(), _ => completions++, _ => { })]);
        var h = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(h, VirtioBlock.TypeIn);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), 8);
        q.Memory.WriteExactly(new GuestAddress(Header), h);
        q.Descriptor(DriverQueue.Desc, 0, Header, 16, 1, 1);
        q.Descriptor(DriverQueue.Desc, 1, Data, 4096, 3, 2);
        q.Descriptor(DriverQueue.Desc, 2, Status, 1, 2, 0);
        // One request per Process call: it runs on this thread, so this thread's allocation counter sees all of it.
        for (int i = 0; i < 100; i++) { q.Publish(0); block.Process(0); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        const int requests = 4000;
        for (int i = 0; i < requests; i++) { q.Publish(0); block.Process(0); }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(100 + requests, completions);
        Assert.Equal(100 + requests, block.Reads);
        // The smallest object is 24 bytes, so one per request would show as 96,000; the runtime itself now and then
        // allocates a few KB on a thread (tiered JIT), which is what the bound leaves room for.
        Assert.True(allocated < requests, $"{allocated} bytes for {requests} requests");
    }
}

internal static class BusDeviceExtensions
{
    public static byte ReadIsr(this IBusDevice modern)
    {
        Span<byte> b = stackalloc byte[1];
        modern.Read(VirtioPciDevice.IsrOffset, b);
        return b[0];
    }
}
