using Xhyve.Vmm.Devices;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>MQ (virtio 1.2 §5.1.6.5.5): one queue pair per backend (the queues of one multiqueue TAP); the driver uses
/// one pair until VQ_PAIRS_SET, and the pairs it does not use have their backend queues detached.</summary>
public sealed class VirtioNetMultiqueueTests : IDisposable
{
    private const int Pairs = 3;
    private readonly GuestMemory _memory = new([new MemoryRegion(new GuestAddress(0), NetRig.RamSize)]);
    private readonly FakeNetBackend[] _backends = Enumerable.Range(0, Pairs).Select(_ => new FakeNetBackend(NetHeader.Size, NetFeatures.TapOffloads)).ToArray();
    private readonly DriverRing[] _rings;
    private readonly VirtioNet _net;
    private ulong _next = NetRig.BufferBase;

    public VirtioNetMultiqueueTests()
    {
        _rings = Enumerable.Range(0, 2 * Pairs + 1).Select(i => new DriverRing(_memory, 0x10000 + 0x4000UL * (ulong)i, 64)).ToArray();
        _net = new VirtioNet("virtio-net 0:2:0", NetRig.DeviceMac, _backends, new RateLimitedLog(TextWriter.Null));
    }

    public void Dispose() => _net.Dispose();

    private DriverRing Control => _rings[2 * Pairs];

    private void Activate(ulong features = NetRig.Modern | NetFeatures.Mq) => ((IVirtioDevice)_net).Activate(_memory, features,
        _rings.Select((r, i) => new Virtqueue(i, r.Device(), _ => { }, _ => { })).ToList());

    private ulong Alloc(int length) { ulong at = _next; _next += ((ulong)length + 15) & ~15UL; return at; }

    private byte? PairsSet(ushort pairs)
    {
        ulong cmd = Alloc(4), ack = Alloc(1);
        _memory.WriteExactly(new GuestAddress(cmd), [NetControl.ClassMq, NetControl.MqVqPairsSet, (byte)pairs, (byte)(pairs >> 8)]);
        Control.Post((cmd, 4, false), (ack, 1, true));
        _net.Process(2 * Pairs);
        var used = Assert.Single(Control.TakeUsed());
        if (used.Len == 0) return null;
        var b = new byte[1];
        _memory.ReadExactly(new GuestAddress(ack), b);
        return b[0];
    }

    [Fact]
    public void SeveralBackends_OfferMq_WithAQueuePairEach_AndTheControlQueueLast()
    {
        Assert.NotEqual(0UL, _net.Features & NetFeatures.Mq);
        Assert.Equal(2 * Pairs + 1, _net.QueueCount);
        var config = new byte[10];
        _net.ReadConfig(0, config);
        Assert.Equal(Pairs, BitConverter.ToUInt16(config, 8));   // max_virtqueue_pairs
        using var single = new VirtioNet("one", NetRig.DeviceMac, new FakeNetBackend(), new RateLimitedLog(TextWriter.Null));
        Assert.Equal(0UL, single.Features & NetFeatures.Mq);
        Assert.Equal(3, single.QueueCount);
    }

    [Fact]
    public void AfterActivation_OnePairIsUsed_UntilTheDriverSetsMore_AndTheOthersAreDetached()
    {
        Activate();
        Assert.Equal(1, _net.ActiveQueuePairs);
        Assert.Equal([true, false, false], _backends.Select(b => b.QueueEnabled!.Value));
        Assert.NotEqual(0, _net.PollEvents(0));
        Assert.Equal(0, _net.PollEvents(1));   // a detached pair's socket is not waited on

        Assert.Equal(NetControl.Ok, PairsSet(Pairs));
        Assert.Equal(Pairs, _net.ActiveQueuePairs);
        Assert.All(_backends, b => Assert.True(b.QueueEnabled));
        Assert.NotEqual(0, _net.PollEvents(2));

        Assert.Equal(NetControl.Ok, PairsSet(2));
        Assert.Equal([true, true, false], _backends.Select(b => b.QueueEnabled!.Value));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(Pairs + 1)]
    [InlineData(0xFFFF)]
    public void PairsOutsideOneToMax_AreRefused_AndChangeNothing(int pairs)
    {
        Activate();
        Assert.Equal(NetControl.Error, PairsSet((ushort)pairs));
        Assert.Equal(1, _net.ActiveQueuePairs);
    }

    [Fact]
    public void VqPairsSet_WithoutMqNegotiated_IsRefused()
    {
        Activate(NetRig.Modern);
        Assert.Equal(NetControl.Error, PairsSet(2));
        Assert.Equal(1, _net.ActiveQueuePairs);
    }

    [Fact]
    public void EachPair_MovesFramesBetweenItsOwnQueuesAndItsOwnBackend()
    {
        Activate();
        Assert.Equal(NetControl.Ok, PairsSet(Pairs));
        for (int pair = 0; pair < Pairs; pair++)
        {
            // Send: a frame posted on pair K's send queue reaches backend K only.
            var frame = NetPackets.Frame(60 + pair, seed: pair);
            var packet = new byte[NetHeader.Size + frame.Length];
            frame.CopyTo(packet, NetHeader.Size);
            ulong tx = Alloc(packet.Length);
            _memory.WriteExactly(new GuestAddress(tx), packet);
            _rings[2 * pair + 1].Post((tx, (uint)packet.Length, false));
            _net.Process(2 * pair + 1);
            Assert.Equal(frame, Assert.Single(_backends[pair].Sent)[NetHeader.Size..]);

            // Receive: backend K's frame lands in pair K's receive queue.
            var incoming = new byte[NetHeader.Size + 64];
            NetPackets.Frame(64, seed: 10 + pair).CopyTo(incoming, NetHeader.Size);
            _backends[pair].Incoming.Enqueue(incoming);
            ulong rx = Alloc(2048);
            _rings[2 * pair].Post((rx, 2048, true));
            _net.PollReady(pair, 1 /* POLLIN */);
            Assert.Equal((uint)incoming.Length, Assert.Single(_rings[2 * pair].TakeUsed()).Len);
        }
        Assert.All(_backends, b => Assert.Single(b.Sent));
        Assert.Equal(Pairs, ((IDeviceCounters)_net).Counters.Single(c => c.Key == "rx_packets").Value);
    }

    [Fact]
    public void Reset_GoesBackToOnePair()
    {
        Activate();
        Assert.Equal(NetControl.Ok, PairsSet(Pairs));
        _net.Reset();
        Assert.Equal(1, _net.ActiveQueuePairs);
        Assert.Equal([true, false, false], _backends.Select(b => b.QueueEnabled!.Value));
    }
}
