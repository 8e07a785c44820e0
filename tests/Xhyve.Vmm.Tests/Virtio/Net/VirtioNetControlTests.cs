using System.Buffers.Binary;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>virtio-net's control queue, configuration space, reset, and the steady state that allocates nothing.</summary>
public sealed class VirtioNetControlTests : IDisposable
{
    private readonly NetRig _rig = new();
    public void Dispose() => _rig.Dispose();

    private static readonly byte[] Listed = [0x02, 0x00, 0x00, 0x00, 0x00, 0x07];
    private static readonly byte[] Stranger = [0x02, 0x00, 0x00, 0x00, 0x00, 0x08];
    private static readonly byte[] NewMac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    private static byte[] Tables(byte[][] unicast, byte[][] multicast)
    {
        var b = new List<byte>();
        foreach (var table in new[] { unicast, multicast })
        {
            var n = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)table.Length);
            b.AddRange(n);
            foreach (var e in table) b.AddRange(e);
        }
        return b.ToArray();
    }

    [Fact]
    public void PromiscuousOff_AndAUnicastTable_FilterReceivedFrames()
    {
        _rig.Activate();
        Assert.Equal((byte)NetControl.Ok, _rig.Control(NetControl.ClassRx, NetControl.RxPromisc, [0]));
        Assert.Equal((byte)NetControl.Ok, _rig.Control(NetControl.ClassMac, NetControl.MacTableSet, Tables([Listed], [])));
        var frames = new[] { NetPackets.GuestMac, Listed, Stranger, NetPackets.Broadcast, new byte[] { 0x01, 0, 0x5E, 0, 0, 1 } };
        foreach (var d in frames) { _rig.Backend.Incoming.Enqueue(NetPackets.Frame(60, d)); }
        for (int i = 0; i < frames.Length; i++) _rig.PostRx(2048);
        _rig.Device.Process(VirtioNet.RxQueue);
        var got = _rig.ReceivedFrames();
        Assert.Equal([NetPackets.GuestMac, Listed, NetPackets.Broadcast], got.Select(g => g.Frame[..6]));
        Assert.Equal(2, _rig.Counter("rx_dropped_filtered"));
        Assert.Equal(2, _rig.Counter("control_commands"));
        Assert.Equal(0, _rig.Counter("control_errors"));
    }

    [Fact]
    public void MacAddrSet_ChangesTheConfigMac_AndWhichFramesAreOurs()
    {
        _rig.Activate();
        Assert.Equal(NetPackets.GuestMac, _rig.ConfigBytes(0, 6));
        Assert.Equal((byte)NetControl.Ok, _rig.Control(NetControl.ClassMac, NetControl.MacAddrSet, NewMac));
        Assert.Equal(NewMac, _rig.ConfigBytes(0, 6));
        Assert.Equal(new MacAddress(RxFilter.Mac(NewMac)), _rig.Net.Mac);
        _rig.Control(NetControl.ClassRx, NetControl.RxPromisc, [0]);
        _rig.Backend.Incoming.Enqueue(NetPackets.Frame(60, NetPackets.GuestMac));
        _rig.Backend.Incoming.Enqueue(NetPackets.Frame(60, NewMac));
        _rig.PostRx(2048);
        _rig.PostRx(2048);
        _rig.Device.Process(VirtioNet.RxQueue);
        Assert.Equal([NewMac], _rig.ReceivedFrames().Select(g => g.Frame[..6]));
    }

    public static TheoryData<string, byte, byte, byte[], ulong> Malformed => new()
    {
        { "RX with two data bytes", NetControl.ClassRx, NetControl.RxPromisc, [0, 0], NetRig.Modern },
        { "RX with no data", NetControl.ClassRx, NetControl.RxPromisc, [], NetRig.Modern },
        { "RX value 2", NetControl.ClassRx, NetControl.RxAllMulti, [2], NetRig.Modern },
        { "unknown RX command", NetControl.ClassRx, 9, [1], NetRig.Modern },
        { "unknown class", 7, 0, [0], NetRig.Modern },
        { "announce (not offered)", NetControl.ClassAnnounce, NetControl.AnnounceAck, [], NetRig.Modern },
        { "unknown MAC command", NetControl.ClassMac, 5, [1, 2, 3, 4, 5, 6], NetRig.Modern },
        { "MAC_ADDR_SET of five bytes", NetControl.ClassMac, NetControl.MacAddrSet, [2, 0, 0, 0, 1], NetRig.Modern },
        { "MAC_ADDR_SET of seven bytes", NetControl.ClassMac, NetControl.MacAddrSet, [2, 0, 0, 0, 1, 2, 3], NetRig.Modern },
        { "MAC_ADDR_SET multicast", NetControl.ClassMac, NetControl.MacAddrSet, [1, 0, 0x5E, 0, 0, 1], NetRig.Modern },
        { "MAC table with a trailing byte", NetControl.ClassMac, NetControl.MacTableSet, [0, 0, 0, 0, 0, 0, 0, 0, 9], NetRig.Modern },
        { "MAC table, count wraps in 32 bits", NetControl.ClassMac, NetControl.MacTableSet, [0xAB, 0xAA, 0xAA, 0x2A, 0, 0, 0, 0, 0, 0], NetRig.Modern },
        { "RX without CTRL_RX", NetControl.ClassRx, NetControl.RxPromisc, [0], NetRig.Modern & ~NetFeatures.CtrlRx },
        { "MAC table without CTRL_RX", NetControl.ClassMac, NetControl.MacTableSet, [0, 0, 0, 0, 0, 0, 0, 0], NetRig.Modern & ~NetFeatures.CtrlRx },
        { "MAC_ADDR_SET without CTRL_MAC_ADDR", NetControl.ClassMac, NetControl.MacAddrSet, [2, 0, 0, 0, 0, 1], NetRig.Modern & ~NetFeatures.CtrlMacAddr },
        { "longer than any command", NetControl.ClassMac, NetControl.MacTableSet, new byte[2000], NetRig.Modern },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedCommand_IsAckedWithError_AndChangesNothing(string scenario, byte cls, byte command, byte[] data, ulong features)
    {
        _rig.Activate(features);
        Assert.True((byte)NetControl.Error == _rig.Control(cls, command, data), scenario);
        Assert.Equal(1, _rig.Counter("control_errors"));
        Assert.Equal(NetPackets.GuestMac, _rig.ConfigBytes(0, 6));
        // Still promiscuous: a frame for a stranger is delivered.
        Assert.Single(_rig.ReceiveOne(NetPackets.Frame(60, Stranger)));
    }

    [Fact]
    public void CommandOfOneByte_IsAckedWithError()
    {
        _rig.Activate();
        ulong cmd = _rig.Alloc(1), ack = _rig.Alloc(1);
        _rig.Write(cmd, [NetControl.ClassRx]);
        _rig.Ctrl.Post((cmd, 1, false), (ack, 1, true));
        _rig.Device.Process(VirtioNet.ControlQueue);
        Assert.Equal(1u, Assert.Single(_rig.Ctrl.TakeUsed()).Len);
        Assert.Equal((byte)NetControl.Error, _rig.Read(ack, 1)[0]);
    }

    [Fact]
    public void ChainWithoutAWritableByte_ComesBackEmpty_AndRunsNothing()
    {
        _rig.Activate();
        Assert.Null(_rig.Control(NetControl.ClassRx, NetControl.RxPromisc, [0], writableAck: false));
        Assert.Equal(0, _rig.Counter("control_commands"));
        Assert.Equal(0, _rig.Counter("control_errors"));
        Assert.Single(_rig.ReceiveOne(NetPackets.Frame(60, Stranger)));                          // still promiscuous
    }

    [Fact]
    public void Ack_GoesToTheLastByteOfTheLastWritableBuffer()
    {
        _rig.Activate();
        ulong cmd = _rig.Alloc(3), a = _rig.Alloc(4), b = _rig.Alloc(4);
        _rig.Write(cmd, [NetControl.ClassRx, NetControl.RxPromisc, 0]);
        _rig.Write(a, [0xEE, 0xEE, 0xEE, 0xEE]);
        _rig.Write(b, [0xEE, 0xEE, 0xEE, 0xEE]);
        _rig.Ctrl.Post((cmd, 3, false), (a, 4, true), (b, 4, true));
        _rig.Device.Process(VirtioNet.ControlQueue);
        Assert.Equal(1u, Assert.Single(_rig.Ctrl.TakeUsed()).Len);
        Assert.Equal(new byte[] { 0xEE, 0xEE, 0xEE, 0xEE }, _rig.Read(a, 4));
        Assert.Equal(new byte[] { 0xEE, 0xEE, 0xEE, NetControl.Ok }, _rig.Read(b, 4));
    }

    [Fact]
    public void HostileControlChain_ComesBackEmpty_AndTheNextCommandRuns()
    {
        _rig.Activate();
        _rig.Ctrl.Descriptor(60, _rig.Alloc(16), 16, 1, 61);
        _rig.Ctrl.Descriptor(61, _rig.Alloc(16), 16, 1 | 2, 60);
        _rig.Ctrl.Publish(60);
        _rig.Device.Process(VirtioNet.ControlQueue);
        Assert.Equal(0u, Assert.Single(_rig.Ctrl.TakeUsed()).Len);
        Assert.Equal((byte)NetControl.Ok, _rig.Control(NetControl.ClassRx, NetControl.RxPromisc, [0]));
    }

    [Fact]
    public void Config_ReadsMacStatusAndOnePair_AndZerosPastTheEnd()
    {
        _rig.Activate();
        Assert.Equal([.. NetPackets.GuestMac, 1, 0, 1, 0], _rig.ConfigBytes());
        Assert.Equal(new byte[] { 0x56, 1, 0 }, _rig.ConfigBytes(5, 3));
        Assert.Equal(new byte[] { 0, 0, 0, 0 }, _rig.ConfigBytes(10, 4));
        Assert.Equal(new byte[] { 0, 0 }, _rig.ConfigBytes(-1, 2));
        Assert.Equal(new byte[] { 1, 0, 0, 0 }, _rig.ConfigBytes(8, 4));   // the part past the end reads 0
    }

    [Fact]
    public void LegacyConfigWrite_SetsTheMac_AndTouchesNothingElse()
    {
        _rig.Activate(NetFeatures.Mac);
        _rig.Device.WriteConfig(0, NewMac);
        Assert.Equal(NewMac, _rig.ConfigBytes(0, 6));
        _rig.Device.WriteConfig(4, [0xAB, 0xCD]);
        Assert.Equal([.. NewMac[..4], 0xAB, 0xCD], _rig.ConfigBytes(0, 6));
        _rig.Device.WriteConfig(6, [0, 0]);                            // status is read-only
        _rig.Device.WriteConfig(5, [1, 2]);                            // straddles into status: ignored whole
        _rig.Device.WriteConfig(-1, [1, 2]);
        Assert.Equal([.. NewMac[..4], 0xAB, 0xCD, 1, 0, 1, 0], _rig.ConfigBytes());
    }

    [Fact]
    public void Features_OfferTheBackendsOffloads_OnTopOfTheDevicesOwn()
    {
        ulong plain = _rig.Device.Features;
        Assert.Equal(NetFeatures.Mac | NetFeatures.Status | NetFeatures.MrgRxbuf | NetFeatures.CtrlVq | NetFeatures.CtrlRx
            | NetFeatures.CtrlMacAddr | NetFeatures.Csum, plain);
        using var tap = new NetRig(new FakeNetBackend(12, NetFeatures.TapOffloads));
        Assert.Equal(plain | NetFeatures.TapOffloads, tap.Device.Features);
        Assert.Equal(3, tap.Device.QueueCount);
        Assert.Equal(10, tap.Device.ConfigSize);
        Assert.Equal((0x02, 0x00), ((byte, byte))tap.Device.PciClass);
        Assert.Equal(tap.Backend.Fd, tap.Polled.PollFd);
    }

    [Fact]
    public void Reset_ForgetsTheFilterTheMacAndTheHeldFrame()
    {
        _rig.Activate();
        _rig.Control(NetControl.ClassRx, NetControl.RxPromisc, [0]);
        _rig.Control(NetControl.ClassMac, NetControl.MacAddrSet, NewMac);
        _rig.Backend.SendResult = NetIo.WouldBlock;
        _rig.PostTx(NetRig.WithHeader(NetPackets.Frame(60, seed: 1)));
        _rig.Device.Process(VirtioNet.TxQueue);
        Assert.NotEqual(0, _rig.Polled.PollEvents & PollFd.PollOut);

        _rig.Device.Reset();
        Assert.Equal(0, _rig.Polled.PollEvents);                       // no queues: nothing to wait for
        Assert.False(_rig.Polled.HasPendingWork);
        _rig.Polled.PollReady(PollFd.PollIn | PollFd.PollOut);         // a late wake-up touches nothing
        Assert.Equal(NetPackets.GuestMac, _rig.ConfigBytes(0, 6));
        _rig.Rx.Restart(); _rig.Tx.Restart(); _rig.Ctrl.Restart();
        _rig.Activate();
        _rig.Backend.SendResult = null;
        Assert.Equal(0, _rig.Polled.PollEvents & PollFd.PollOut);
        _rig.Polled.PollReady(PollFd.PollOut);
        Assert.Empty(_rig.Backend.Sent);                               // the held frame went with the reset

        Assert.Single(_rig.ReceiveOne(NetPackets.Frame(60, Stranger)));                          // promiscuous again
    }

    [Fact]
    public void Dispose_DisposesTheBackend()
    {
        var backend = new FakeNetBackend();
        var rig = new NetRig(backend);
        rig.Dispose();
        Assert.True(backend.Disposed);
    }

    [Fact]
    public void SteadyStateReceiveAndSend_AllocateNothingPerFrame()
    {
        var backend = new FakeNetBackend { Repeat = NetPackets.Frame(1514) };
        using var rig = new NetRig(backend);
        rig.Activate();
        ulong rxBuffer = rig.Alloc(2048);
        ushort rxHead = rig.Rx.Build((rxBuffer, 2048, true));
        var packet = NetRig.WithHeader(NetPackets.Frame(1514, seed: 1));
        ulong txBuffer = rig.Alloc(packet.Length);
        rig.Write(txBuffer, packet);
        ushort txHead = rig.Tx.Build((txBuffer, 12, false), (txBuffer + 12, (uint)packet.Length - 12, false));

        void Round()
        {
            backend.RepeatCount = 1;
            rig.Rx.Publish(rxHead);
            rig.Device.Process(VirtioNet.RxQueue);
            rig.Tx.Publish(txHead);
            rig.Device.Process(VirtioNet.TxQueue);
        }
        for (int i = 0; i < 100; i++) Round();
        long before = GC.GetAllocatedBytesForCurrentThread();
        const int frames = 4000;
        for (int i = 0; i < frames; i++) Round();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(100 + frames, rig.Counter("rx_packets"));
        Assert.Equal(100 + frames, rig.Counter("tx_packets"));
        // One 24-byte object per frame would be 96,000 bytes; the bound leaves room for the runtime's own (tiered JIT).
        Assert.True(allocated < frames, $"{allocated} bytes for {frames} frames each way");
    }
}
