using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;

namespace Xhyve.Fuzz;

/// <summary>
/// virtio-net through its device entry, as the PCI transport drives it: the guest's rings are read as the send
/// queue, the control queue and the receive queue in turn (three queues over the same guest RAM), while a fake
/// backend offers frames. Input: device options (bit 0: MRG_RXBUF, bit 1: a TAP-like backend with a 12-byte header,
/// bit 2: a legacy driver without VERSION_1, bit 3: the guest's checksum and segmentation offloads, bit 4: CTRL_RX
/// and CTRL_MAC_ADDR, bit 5: the backend full at first), the received frame's length (u16) and its first 16 bytes,
/// then the "queue" input. A packet handed to the backend outside its size limits, or any exception, is a crash.
/// </summary>
internal static class NetTarget
{
    private const short PollIn = 1, PollOut = 4;   // poll(2)

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        byte options = input.U8();
        int frameLength = input.U16();
        var frameStart = input.Take(16).ToArray();
        var (ring, memory, _) = QueueTarget.Build(ref input);
        if (!ring.RingsValid) return;   // the transport refuses to activate such a queue
        var backend = new FakeBackend((options & 2) != 0, frameLength, frameStart, blockedAtFirst: (options & 32) != 0);
        using var net = new VirtioNet("fuzz", new Xhyve.Vmm.Config.MacAddress(0x02_00_00_00_00_01), backend, new RateLimitedLog(TextWriter.Null));
        Exception? fault = null;
        Virtqueue Queue(int index) => new(index, new SplitQueue(memory, ring.Size, ring.DescriptorTable, ring.AvailRing, ring.UsedRing, ring.EventIdx, ring.IndirectDescriptors),
            _ => { }, _ => { }, (_, e) => fault ??= e);
        ulong features = net.Features & ~(NetFeatures.MrgRxbuf | NetFeatures.TapOffloads | NetFeatures.CtrlRx | NetFeatures.CtrlMacAddr);
        if ((options & 1) != 0) features |= NetFeatures.MrgRxbuf;
        if ((options & 8) != 0) features |= net.Features & NetFeatures.TapOffloads;
        if ((options & 16) != 0) features |= NetFeatures.CtrlRx | NetFeatures.CtrlMacAddr;
        if ((options & 4) == 0) features |= Virtio.FeatureVersion1;
        if (ring.EventIdx) features |= Virtio.FeatureEventIdx;
        if (ring.IndirectDescriptors) features |= Virtio.FeatureIndirectDesc;
        net.Activate(memory, features, [Queue(VirtioNet.RxQueue), Queue(VirtioNet.TxQueue), Queue(VirtioNet.ControlQueue)]);
        net.Process(VirtioNet.TxQueue);
        net.Process(VirtioNet.ControlQueue);
        backend.BlockedAtFirst = false;
        net.PollReady(PollIn | PollOut);
        net.Process(VirtioNet.RxQueue);
        for (int i = 0; i < 8 && net.HasPendingWork; i++) net.PollReady(0);
        net.Reset();
        if (fault != null) throw new FuzzBugException($"virtio-net met an unexpected exception: {fault}");
        if (Program.Verbose) Console.WriteLine($"  {string.Join(", ", net.Counters.Where(c => c.Value != 0).Select(c => $"{c.Key}={c.Value}"))}");
    }

    /// <summary>Offers three copies of one frame, then nothing; takes every packet it may (checking its size).</summary>
    private sealed class FakeBackend(bool vnetHeader, int frameLength, byte[] frameStart, bool blockedAtFirst) : INetBackend
    {
        private readonly byte[] _frame = Frame(vnetHeader, frameLength, frameStart);
        private int _left = 3;
        public bool BlockedAtFirst = blockedAtFirst;
        public string Description => "fuzz backend";
        public int Fd => -1;
        public int VnetHeaderSize => vnetHeader ? NetHeader.Size : 0;
        public ulong Offloads => vnetHeader ? NetFeatures.TapOffloads : 0;
        public bool HasQueuedOutput => false;
        public string? CloseReason => null;
        public void SetOffloads(ulong negotiated) { }

        private static byte[] Frame(bool vnetHeader, int length, byte[] start)
        {
            // The frame's bytes, the TAP's header included, come from the input: the device must not trust them.
            var f = new byte[Math.Min(length, EthernetFrame.MaximumSize + NetHeader.Size)];
            start.AsSpan(0, Math.Min(start.Length, f.Length)).CopyTo(f);
            return f;
        }

        public NetIo Peek(out ReadOnlySpan<byte> packet)
        {
            packet = _frame;
            if (_left == 0) return NetIo.WouldBlock;
            // A TAP packet shorter than its header never reaches the device (the backend skips it); mirror that.
            return _frame.Length > VnetHeaderSize ? NetIo.Ok : NetIo.Closed;
        }

        public void Consume() { if (_left > 0) _left--; }

        public NetIo Send(ReadOnlySpan<byte> packet)
        {
            if (BlockedAtFirst) return NetIo.WouldBlock;
            int frame = packet.Length - VnetHeaderSize;
            if (frame < EthernetFrame.MinimumSize || frame > EthernetFrame.MaximumSize)
                throw new FuzzBugException($"the device sent a {packet.Length}-byte packet ({frame}-byte frame)");
            return NetIo.Ok;
        }

        public NetIo Flush() => NetIo.Ok;
        public void Dispose() { }
    }
}
