using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>passt's framed stream (32-bit big-endian length, then the frame): the reader and writer on their own,
/// and <see cref="PasstBackend"/> over a real socketpair with the test playing passt on the other end.</summary>
public sealed unsafe class PasstStreamTests
{
    private static byte[] Record(byte[] frame)
    {
        var r = new byte[4 + frame.Length];
        BinaryPrimitives.WriteUInt32BigEndian(r, (uint)frame.Length);
        frame.CopyTo(r, 4);
        return r;
    }

    private static byte[] Stream(params byte[][] frames) => frames.SelectMany(Record).ToArray();

    private static void Append(StreamFrameReader reader, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var room = reader.FreeSpace;
            Assert.False(room.IsEmpty, "the reader has no room");
            int n = Math.Min(room.Length, bytes.Length);
            bytes[..n].CopyTo(room);
            reader.Appended(n);
            bytes = bytes[n..];
        }
    }

    private static List<byte[]> TakeAll(StreamFrameReader reader)
    {
        var frames = new List<byte[]>();
        while (reader.TryTake(out var f) == StreamFrameReader.Result.Frame)
        {
            frames.Add(f.ToArray());
            reader.Consume();
        }
        return frames;
    }

    private static readonly byte[][] ThreeFrames = [NetPackets.Frame(60, seed: 1), NetPackets.Frame(14, seed: 2), NetPackets.Frame(1514, seed: 3)];

    [Fact]
    public void Reader_FramesSplitAcrossReadsAtEveryByte_ComeOutWhole()
    {
        var stream = Stream(ThreeFrames);
        for (int split = 0; split <= stream.Length; split++)
        {
            var reader = new StreamFrameReader(4096);
            Append(reader, stream.AsSpan(0, split));
            var frames = TakeAll(reader);
            Assert.Equal(StreamFrameReader.Result.NeedMore, reader.TryTake(out _));
            Append(reader, stream.AsSpan(split));
            frames.AddRange(TakeAll(reader));
            Assert.Equal(ThreeFrames.Length, frames.Count);
            for (int i = 0; i < frames.Count; i++) Assert.Equal(ThreeFrames[i], frames[i]);
        }
    }

    [Fact]
    public void Reader_ByteAtATime_GivesEachFrameExactlyWhenItsLastByteArrives()
    {
        var stream = Stream(ThreeFrames);
        var reader = new StreamFrameReader(2048);
        var ends = new List<int>();
        int at = 0;
        foreach (var f in ThreeFrames) { at += 4 + f.Length; ends.Add(at); }
        var got = new List<byte[]>();
        for (int i = 0; i < stream.Length; i++)
        {
            Append(reader, stream.AsSpan(i, 1));
            var frames = TakeAll(reader);
            if (ends.Contains(i + 1)) Assert.Single(frames);
            else Assert.Empty(frames);
            got.AddRange(frames);
        }
        Assert.Equal(ThreeFrames, got);
    }

    [Fact]
    public void Reader_ManyFramesInOneRead_AllComeOut_InOrder()
    {
        var frames = Enumerable.Range(0, 500).Select(i => NetPackets.Frame(14 + i % 97, seed: i)).ToArray();
        var reader = new StreamFrameReader(PasstBackend.BufferSize);
        Append(reader, Stream(frames));
        Assert.Equal(frames, TakeAll(reader));
        Assert.Equal(StreamFrameReader.Result.NeedMore, reader.TryTake(out _));
    }

    [Fact]
    public void Reader_KeepsTheFrameUntilConsumed()
    {
        var reader = new StreamFrameReader(1024);
        Append(reader, Stream(ThreeFrames[0], ThreeFrames[1]));
        Assert.Equal(StreamFrameReader.Result.Frame, reader.TryTake(out var a));
        Assert.Equal(ThreeFrames[0], a.ToArray());
        Assert.Equal(StreamFrameReader.Result.Frame, reader.TryTake(out var again));
        Assert.Equal(ThreeFrames[0], again.ToArray());                 // peeked again, not the next one
        reader.Consume();
        Assert.Equal(StreamFrameReader.Result.Frame, reader.TryTake(out var b));
        Assert.Equal(ThreeFrames[1], b.ToArray());
        reader.Consume();
        reader.Consume();                                              // nothing taken: no effect
        Assert.Equal(StreamFrameReader.Result.NeedMore, reader.TryTake(out _));
    }

    [Fact]
    public void Reader_CompactsAPartialFrameToTheFront_WhenTheBufferEndIsReached()
    {
        // 100-byte buffer: a 50-byte record, then 50 bytes of a 60-byte record; the rest only fits after compaction.
        var first = NetPackets.Frame(46, seed: 1);
        var second = NetPackets.Frame(56, seed: 2);
        var stream = Stream(first, second);
        var reader = new StreamFrameReader(100);
        Append(reader, stream.AsSpan(0, 100));
        Assert.Equal([first], TakeAll(reader));
        Append(reader, stream.AsSpan(100));
        Assert.Equal([second], TakeAll(reader));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData((uint)EthernetFrame.MaximumSize + 1)]
    [InlineData(0x8000_0000u)]
    [InlineData(uint.MaxValue)]
    public void Reader_ZeroOrOversizeLength_IsBadLength(uint length)
    {
        var reader = new StreamFrameReader(1024);
        var bytes = new byte[4 + 20];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, length);
        Append(reader, bytes);
        Assert.Equal(StreamFrameReader.Result.BadLength, reader.TryTake(out _));
        Assert.Equal(length, reader.BadLength);
    }

    [Fact]
    public void Reader_BadLengthAfterGoodFrames_ComesOnlyAfterThem()
    {
        var reader = new StreamFrameReader(1024);
        Append(reader, [.. Stream(ThreeFrames[0]), 0, 0, 0, 0]);
        Assert.Equal([ThreeFrames[0]], TakeAll(reader));
        Assert.Equal(StreamFrameReader.Result.BadLength, reader.TryTake(out _));
    }

    [Fact]
    public void Reader_TakesAFrameOfTheMaximumSize()
    {
        var big = NetPackets.Frame(EthernetFrame.MaximumSize);
        var reader = new StreamFrameReader(PasstBackend.BufferSize);
        Append(reader, Stream(big, ThreeFrames[0]));
        Assert.Equal([big, ThreeFrames[0]], TakeAll(reader));
    }

    [Fact]
    public void Writer_QueuesRecords_AndSaysFullWithoutTakingPartOfAFrame()
    {
        var writer = new StreamFrameWriter(100);
        var f = NetPackets.Frame(40);
        Assert.True(writer.TryAppend(f));
        Assert.True(writer.TryAppend(f));
        Assert.Equal(88, writer.Pending);
        Assert.False(writer.TryAppend(NetPackets.Frame(14)));            // 18 bytes do not fit in 12
        Assert.Equal(88, writer.Pending);
        Assert.True(writer.TryAppend(new byte[8]));                      // exactly 12 do
        Assert.Equal(100, writer.Pending);
        Assert.Equal(Stream(f, f, new byte[8]), writer.PendingBytes.ToArray());
    }

    [Fact]
    public void Writer_PartialSends_LeaveTheRestInOrder_AndFreedSpaceIsReused()
    {
        var writer = new StreamFrameWriter(100);
        var a = NetPackets.Frame(40, seed: 1);
        var b = NetPackets.Frame(40, seed: 2);
        var c = NetPackets.Frame(40, seed: 3);
        writer.TryAppend(a);
        writer.TryAppend(b);
        var expected = Stream(a, b);
        writer.Sent(1);
        writer.Sent(3);
        Assert.Equal(expected[4..], writer.PendingBytes.ToArray());
        writer.Sent(40);                                                 // record a gone
        Assert.Equal(44, writer.Pending);
        Assert.True(writer.TryAppend(c));                                // fits only once b is moved to the front
        Assert.Equal(Stream(b, c), writer.PendingBytes.ToArray());
        writer.Sent(10);
        Assert.False(writer.TryAppend(c));                               // 10 free at the front + 12 at the end: not 44
        Assert.Equal(Stream(b, c)[10..], writer.PendingBytes.ToArray());
        writer.Sent(78);
        Assert.Equal(0, writer.Pending);
        Assert.True(writer.TryAppend(c));                                // empty again: the whole buffer is free
        Assert.True(writer.TryAppend(c));
        Assert.Equal(Stream(c, c), writer.PendingBytes.ToArray());
    }

    [Fact]
    public void Writer_FrameLargerThanTheBuffer_IsRefused()
    {
        var writer = new StreamFrameWriter(64);
        Assert.False(writer.TryAppend(new byte[61]));
        Assert.True(writer.TryAppend(new byte[60]));
    }

    // ---- PasstBackend over a socketpair: the test is passt ----

    private sealed class SocketPair : IDisposable
    {
        public readonly PasstBackend Backend;
        public int Peer;

        public SocketPair()
        {
            int* fds = stackalloc int[2];
            Assert.Equal(0, LibC.SocketPair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, fds));
            Backend = PasstBackend.OverSocket("test passt", fds[0]);
            Peer = fds[1];
        }

        public void Write(byte[] bytes)
        {
            fixed (byte* p = bytes)
            {
                int at = 0;
                while (at < bytes.Length)
                {
                    nint n = LibC.Send(Peer, p + at, (nuint)(bytes.Length - at), LibC.MSG_NOSIGNAL);
                    Assert.True(n > 0, $"send failed: {LibC.LastErrno}");
                    at += (int)n;
                }
            }
        }

        /// <summary>Everything the backend has written so far (without waiting for more).</summary>
        public byte[] ReadAvailable()
        {
            var all = new List<byte>();
            var buffer = new byte[65536];
            while (true)
            {
                nint n;
                fixed (byte* p = buffer) n = LibC.Recv(Peer, p, (nuint)buffer.Length, LibC.MSG_DONTWAIT);
                if (n <= 0) return all.ToArray();
                all.AddRange(buffer.AsSpan(0, (int)n).ToArray());
            }
        }

        public void ClosePeer()
        {
            if (Peer >= 0) LibC.Close(Peer);
            Peer = -1;
        }

        public void Dispose()
        {
            Backend.Dispose();
            ClosePeer();
        }
    }

    private static List<byte[]> Receive(PasstBackend backend, int max = int.MaxValue)
    {
        var frames = new List<byte[]>();
        while (frames.Count < max && backend.Peek(out var packet) == NetIo.Ok)
        {
            frames.Add(packet.ToArray());
            backend.Consume();
        }
        return frames;
    }

    [Fact]
    public void OverSocket_DescribesItself_AndTakesPlainFrames()
    {
        using var s = new SocketPair();
        Assert.Equal("test passt", s.Backend.Description);
        Assert.Equal(0, s.Backend.VnetHeaderSize);
        Assert.Equal(0UL, s.Backend.Offloads);
        Assert.True(s.Backend.Fd >= 0);
        Assert.Equal(NetIo.WouldBlock, s.Backend.Peek(out _));
    }

    [Fact]
    public void OverSocket_FramesFromPasst_ArriveManyPerWrite_AndSplitWritesAreJoined()
    {
        using var s = new SocketPair();
        s.Write(Stream(ThreeFrames));
        Assert.Equal(ThreeFrames, Receive(s.Backend));
        Assert.Equal(NetIo.WouldBlock, s.Backend.Peek(out _));

        var record = Record(ThreeFrames[2]);
        s.Write(record[..3]);                                          // not even the whole length
        Assert.Equal(NetIo.WouldBlock, s.Backend.Peek(out _));
        s.Write(record[3..700]);
        Assert.Equal(NetIo.WouldBlock, s.Backend.Peek(out _));
        s.Write(record[700..]);
        Assert.Equal([ThreeFrames[2]], Receive(s.Backend));
    }

    [Fact]
    public void OverSocket_PeekWithoutConsume_GivesTheSameFrameAgain()
    {
        using var s = new SocketPair();
        s.Write(Stream(ThreeFrames[0], ThreeFrames[1]));
        Assert.Equal(NetIo.Ok, s.Backend.Peek(out var first));
        Assert.Equal(ThreeFrames[0], first.ToArray());
        Assert.Equal(NetIo.Ok, s.Backend.Peek(out var again));
        Assert.Equal(ThreeFrames[0], again.ToArray());
        s.Backend.Consume();
        Assert.Equal([ThreeFrames[1]], Receive(s.Backend));
    }

    [Fact]
    public void OverSocket_FramesToPasst_AreQueued_ThenFlushedAsRecords()
    {
        using var s = new SocketPair();
        foreach (var f in ThreeFrames) Assert.Equal(NetIo.Ok, s.Backend.Send(f));
        Assert.True(s.Backend.HasQueuedOutput);
        Assert.Empty(s.ReadAvailable());                               // nothing goes out before Flush
        Assert.Equal(NetIo.Ok, s.Backend.Flush());
        Assert.False(s.Backend.HasQueuedOutput);
        Assert.Equal(Stream(ThreeFrames), s.ReadAvailable());
    }

    [Fact]
    public void OverSocket_WhenPasstStopsReading_SendSaysWouldBlock_AndEverythingArrivesOnceItReads()
    {
        using var s = new SocketPair();
        var frames = new List<byte[]>();
        NetIo r = NetIo.Ok;
        for (int i = 0; i < 200 && r == NetIo.Ok; i++)
        {
            var f = NetPackets.Frame(60000, seed: i);
            r = s.Backend.Send(f);
            if (r == NetIo.Ok) frames.Add(f);
        }
        Assert.Equal(NetIo.WouldBlock, r);                             // socket and writer buffer both full
        Assert.True(s.Backend.HasQueuedOutput);
        Assert.Equal(NetIo.WouldBlock, s.Backend.Flush());
        var received = new List<byte>();
        for (int round = 0; round < 1000 && s.Backend.HasQueuedOutput; round++)
        {
            received.AddRange(s.ReadAvailable());
            Assert.NotEqual(NetIo.Closed, s.Backend.Flush());
        }
        Assert.False(s.Backend.HasQueuedOutput);
        received.AddRange(s.ReadAvailable());
        Assert.Equal(Stream([.. frames]), received.ToArray());
    }

    [Fact]
    public void OverSocket_PeerClose_IsClosed_ForPeekSendAndFlush()
    {
        using var s = new SocketPair();
        s.Write(Stream(ThreeFrames[0]));
        s.ClosePeer();
        Assert.Equal([ThreeFrames[0]], Receive(s.Backend, 1));         // what was sent before the close still arrives
        Assert.Equal(NetIo.Closed, s.Backend.Peek(out _));
        Assert.Contains("closed its socket", s.Backend.CloseReason);
        Assert.Equal(-1, s.Backend.Fd);
        Assert.Equal(NetIo.Closed, s.Backend.Peek(out _));
        Assert.Equal(NetIo.Closed, s.Backend.Send(ThreeFrames[0]));
    }

    [Fact]
    public void OverSocket_PeerCloseWhileSending_IsClosedOnFlush()
    {
        using var s = new SocketPair();
        s.ClosePeer();
        Assert.Equal(NetIo.Ok, s.Backend.Send(ThreeFrames[0]));         // only queued
        Assert.Equal(NetIo.Closed, s.Backend.Flush());                  // EPIPE, without a SIGPIPE
        Assert.Contains("closed its socket", s.Backend.CloseReason);
        Assert.Equal(-1, s.Backend.Fd);
    }

    [Fact]
    public void OverSocket_ZeroLengthRecord_ClosesTheBackendNamingTheLength()
    {
        using var s = new SocketPair();
        s.Write([.. Stream(ThreeFrames[0]), 0, 0, 0, 0]);
        Assert.Equal([ThreeFrames[0]], Receive(s.Backend, 1));
        Assert.Equal(NetIo.Closed, s.Backend.Peek(out _));
        Assert.Contains("frame length of 0 bytes", s.Backend.CloseReason);
    }

    [Fact]
    public void OverSocket_OversizeRecord_ClosesTheBackend()
    {
        using var s = new SocketPair();
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, 0x0100_0000);
        s.Write(bytes);
        Assert.Equal(NetIo.Closed, s.Backend.Peek(out _));
        Assert.Contains($"frame length of {0x0100_0000} bytes", s.Backend.CloseReason);
    }
}
