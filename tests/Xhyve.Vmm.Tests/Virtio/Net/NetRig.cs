using System.Buffers.Binary;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>The driver side of one split queue at its own place in guest memory (virtio-net has three).</summary>
internal sealed class DriverRing(GuestMemory memory, ulong baseAddress, ushort size)
{
    public readonly ulong DescTable = baseAddress, Avail = baseAddress + 0x1000, Used = baseAddress + 0x2000;
    public ushort Size => size;
    private ushort _availIdx, _nextDesc, _usedSeen;

    public SplitQueue Device() => new(memory, size, new GuestAddress(DescTable), new GuestAddress(Avail), new GuestAddress(Used), false, true);

    public void Descriptor(int index, ulong addr, uint len, ushort flags, ushort next)
    {
        Span<byte> d = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
        memory.WriteExactly(new GuestAddress(DescTable + 16UL * (ulong)index), d);
    }

    /// <summary>Writes a chain of buffers into the next free descriptors (NEXT-linked) and returns its head, unpublished.</summary>
    public ushort Build(params (ulong Addr, uint Len, bool Writable)[] buffers)
    {
        ushort head = _nextDesc;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort index = (ushort)((head + i) % size), next = (ushort)((head + i + 1) % size);
            bool last = i == buffers.Length - 1;
            Descriptor(index, buffers[i].Addr, buffers[i].Len,
                (ushort)((last ? 0 : SplitQueue.DescNext) | (buffers[i].Writable ? SplitQueue.DescWrite : 0)), last ? (ushort)0 : next);
        }
        _nextDesc = (ushort)((head + buffers.Length) % size);
        return head;
    }

    public ushort Post(params (ulong Addr, uint Len, bool Writable)[] buffers)
    {
        ushort head = Build(buffers);
        Publish(head);
        return head;
    }

    public void Publish(ushort head)
    {
        U16(Avail + 4 + 2UL * (ushort)(_availIdx % size), head);
        U16(Avail + 2, unchecked(++_availIdx));
    }

    public ushort UsedIdx => ReadU16(Used + 2);

    /// <summary>The used entries added since the last call.</summary>
    public List<(uint Id, uint Len)> TakeUsed()
    {
        var list = new List<(uint, uint)>();
        ushort now = UsedIdx;
        Span<byte> b = stackalloc byte[8];
        for (; _usedSeen != now; _usedSeen++)
        {
            memory.ReadExactly(new GuestAddress(Used + 4 + 8UL * (ulong)(_usedSeen % size)), b);
            list.Add((BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[4..])));
        }
        return list;
    }

    /// <summary>After a device reset: the driver starts its rings afresh.</summary>
    public void Restart()
    {
        _availIdx = _nextDesc = _usedSeen = 0;
        U16(Avail + 2, 0);
        U16(Used + 2, 0);
    }

    private void U16(ulong at, ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); memory.WriteExactly(new GuestAddress(at), b); }
    private ushort ReadU16(ulong at) { Span<byte> b = stackalloc byte[2]; memory.ReadExactly(new GuestAddress(at), b); return BinaryPrimitives.ReadUInt16LittleEndian(b); }
}

/// <summary>
/// A <see cref="VirtioNet"/> driven through <see cref="IVirtioDevice"/> and <see cref="IPolledVirtioDevice"/> as the
/// transport and worker would, over a <see cref="FakeNetBackend"/>, with the driver's three queues in fake guest RAM.
/// </summary>
internal sealed class NetRig : IDisposable
{
    public static readonly MacAddress DeviceMac = new(0x5254_0012_3456);
    public const ulong RamSize = 8 << 20, BufferBase = 0x100000;
    public const ulong Modern = Xhyve.Vmm.Devices.Virtio.Virtio.FeatureVersion1 | NetFeatures.Mac | NetFeatures.Status | NetFeatures.MrgRxbuf
        | NetFeatures.CtrlVq | NetFeatures.CtrlRx | NetFeatures.CtrlMacAddr | NetFeatures.Csum;
    public readonly GuestMemory Memory = new([new MemoryRegion(new GuestAddress(0), RamSize)]);
    public readonly DriverRing Rx, Tx, Ctrl;
    public readonly FakeNetBackend Backend;
    public readonly VirtioNet Net;
    public readonly StringWriter Log = new();
    public readonly int[] Interrupts = new int[3];
    public int ConfigChanges, BrokenQueues;
    private ulong _nextBuffer = BufferBase;
    private readonly Dictionary<ushort, (ulong Addr, uint Len)[]> _rxChains = new();

    public NetRig(FakeNetBackend? backend = null, ushort rxQueueSize = 256, ushort txQueueSize = 256)
    {
        Backend = backend ?? new FakeNetBackend();
        Rx = new DriverRing(Memory, 0x10000, rxQueueSize);
        Tx = new DriverRing(Memory, 0x20000, txQueueSize);
        Ctrl = new DriverRing(Memory, 0x30000, 64);
        Net = new VirtioNet("virtio-net 0:2:0", DeviceMac, Backend, new RateLimitedLog(Log, TimeSpan.FromHours(1)));
        ((IConfigChangeNotifier)Net).ConfigChanged = () => ConfigChanges++;
    }

    public IVirtioDevice Device => Net;
    public IPolledVirtioDevice Polled => Net;

    public void Activate(ulong features = Modern) => Device.Activate(Memory, features,
    [
        new Virtqueue(VirtioNet.RxQueue, Rx.Device(), i => Interrupts[i]++, _ => BrokenQueues++),
        new Virtqueue(VirtioNet.TxQueue, Tx.Device(), i => Interrupts[i]++, _ => BrokenQueues++),
        new Virtqueue(VirtioNet.ControlQueue, Ctrl.Device(), i => Interrupts[i]++, _ => BrokenQueues++),
    ]);

    public long Counter(string name) => ((IDeviceCounters)Net).Counters.Single(c => c.Key == name).Value;

    public ulong Alloc(int length)
    {
        ulong at = _nextBuffer;
        _nextBuffer += ((ulong)length + 15) & ~15UL;
        Assert.True(_nextBuffer <= RamSize, "the test ran out of guest RAM");
        return at;
    }

    public byte[] Read(ulong addr, int length) { var b = new byte[length]; Memory.ReadExactly(new GuestAddress(addr), b); return b; }
    public void Write(ulong addr, ReadOnlySpan<byte> data) => Memory.WriteExactly(new GuestAddress(addr), data);

    /// <summary>Posts one receive chain of writable buffers of these sizes (filled with 0xEE) and returns its head.</summary>
    public ushort PostRx(params uint[] lengths)
    {
        var buffers = lengths.Select(l => (Addr: Alloc((int)l), Len: l, Writable: true)).ToArray();
        foreach (var b in buffers) Write(b.Addr, Enumerable.Repeat((byte)0xEE, (int)b.Len).ToArray());
        ushort head = Rx.Post(buffers);
        _rxChains[head] = buffers.Select(b => (b.Addr, b.Len)).ToArray();
        return head;
    }

    /// <summary>The first <paramref name="length"/> bytes of a posted receive chain, across its buffers.</summary>
    public byte[] RxBytes(uint head, uint length)
    {
        var bytes = new List<byte>();
        foreach (var (addr, len) in _rxChains[(ushort)head])
        {
            int n = (int)Math.Min(len, length - (uint)bytes.Count);
            bytes.AddRange(Read(addr, n));
            if (bytes.Count == length) break;
        }
        Assert.Equal((int)length, bytes.Count);
        return bytes.ToArray();
    }

    /// <summary>Everything delivered since the last call: each frame as the driver reassembles it (MRG_RXBUF: the
    /// first chain's num_buffers says how many chains the frame spans).</summary>
    public List<(NetHeader Header, byte[] Frame, int Chains)> ReceivedFrames(int headerSize = NetHeader.Size)
    {
        var used = Rx.TakeUsed();
        var frames = new List<(NetHeader, byte[], int)>();
        for (int i = 0; i < used.Count;)
        {
            var first = RxBytes(used[i].Id, used[i].Len);
            var header = NetHeader.Read(first.AsSpan(0, headerSize));
            int chains = headerSize == NetHeader.Size ? header.NumBuffers : 1;
            Assert.True(chains >= 1 && i + chains <= used.Count, $"num_buffers {chains} with {used.Count - i} used entries");
            var bytes = new List<byte>(first[headerSize..]);
            for (int k = 1; k < chains; k++) bytes.AddRange(RxBytes(used[i + k].Id, used[i + k].Len));
            frames.Add((header, bytes.ToArray(), chains));
            i += chains;
        }
        return frames;
    }

    /// <summary>Offers one frame from the backend with one receive chain of these buffer sizes (one of 2048 bytes if
    /// none are given) and returns what the driver got.</summary>
    public List<(NetHeader Header, byte[] Frame, int Chains)> ReceiveOne(byte[] frame, params uint[] chain)
    {
        Backend.Incoming.Enqueue(frame);
        PostRx(chain.Length > 0 ? chain : [2048]);
        Device.Process(VirtioNet.RxQueue);
        return ReceivedFrames();
    }

    /// <summary>Posts a send chain holding <paramref name="packet"/> split into readable buffers of these sizes
    /// (the rest in one more buffer) and returns its head.</summary>
    public ushort PostTx(byte[] packet, params int[] split)
    {
        var buffers = new List<(ulong, uint, bool)>();
        int at = 0;
        int rest = packet.Length - split.Sum();
        foreach (int n in rest > 0 || split.Length == 0 ? split.Append(rest) : split)
        {
            ulong addr = Alloc(Math.Max(n, 1));
            Write(addr, packet.AsSpan(at, n));
            buffers.Add((addr, (uint)n, false));
            at += n;
        }
        return Tx.Post([.. buffers]);
    }

    /// <summary>A virtio_net_hdr of <paramref name="headerSize"/> bytes followed by the frame.</summary>
    public static byte[] WithHeader(byte[] frame, NetHeader header = default, int headerSize = NetHeader.Size)
    {
        var p = new byte[headerSize + frame.Length];
        header.Write(p.AsSpan(0, headerSize));
        frame.CopyTo(p, headerSize);
        return p;
    }

    /// <summary>Sends one control command (class, command, data; one writable ack byte) and returns the ack byte,
    /// or null when the chain came back with nothing written.</summary>
    public byte? Control(byte cls, byte command, byte[] data, bool writableAck = true)
    {
        ulong cmd = Alloc(2), body = Alloc(Math.Max(1, data.Length)), ack = Alloc(1);
        Write(cmd, [cls, command]);
        Write(body, data);
        Write(ack, [0xEE]);
        var buffers = new List<(ulong, uint, bool)> { (cmd, 2, false) };
        if (data.Length > 0) buffers.Add((body, (uint)data.Length, false));
        buffers.Add((ack, 1, writableAck));
        Ctrl.Post([.. buffers]);
        Device.Process(VirtioNet.ControlQueue);
        var used = Ctrl.TakeUsed();
        Assert.Single(used);
        if (used[0].Len == 0) return null;
        Assert.Equal(1u, used[0].Len);
        return Read(ack, 1)[0];
    }

    public byte[] ConfigBytes(int offset = 0, int length = 10)
    {
        var b = new byte[length];
        Device.ReadConfig(offset, b);
        return b;
    }

    public void Dispose()
    {
        Net.Dispose();
        Memory.Dispose();
    }
}
