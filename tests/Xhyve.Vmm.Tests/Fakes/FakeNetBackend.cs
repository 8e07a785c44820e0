using Xhyve.Vmm.Devices.Virtio.Net;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>
/// A network backend in memory: packets queued in <see cref="Incoming"/> are what the host "receives", packets the
/// device sends land in <see cref="Sent"/>. Switches make the next calls answer WouldBlock, Closed or Dropped.
/// With <see cref="Repeat"/> set it serves that packet <see cref="RepeatCount"/> times and only counts sends, so a
/// steady-state loop allocates nothing here.
/// </summary>
internal sealed class FakeNetBackend(int vnetHeaderSize = 0, ulong offloads = 0) : INetBackend
{
    public Queue<byte[]> Incoming { get; } = new();
    public List<byte[]> Sent { get; } = new();
    /// <summary>While set, Peek answers this instead of looking at <see cref="Incoming"/>.</summary>
    public NetIo? PeekResult;
    /// <summary>While set, Send answers this and takes nothing.</summary>
    public NetIo? SendResult;
    public NetIo FlushResult = NetIo.Ok;
    public bool QueuedOutput;
    public byte[]? Repeat;
    public int RepeatCount;
    public int Peeks, Consumes, SendCalls, SentCount, Flushes;
    public ulong? OffloadsSet;
    public bool Disposed;

    public string Description => "fake backend";
    public int Fd { get; set; } = 1234;
    public int VnetHeaderSize => vnetHeaderSize;
    public ulong Offloads => offloads;
    public void SetOffloads(ulong negotiated) => OffloadsSet = negotiated;
    public bool HasQueuedOutput => QueuedOutput;
    public string? CloseReason { get; set; }

    public NetIo Peek(out ReadOnlySpan<byte> packet)
    {
        Peeks++;
        packet = default;
        if (PeekResult is { } r) return r;
        if (Repeat != null)
        {
            if (RepeatCount == 0) return NetIo.WouldBlock;
            packet = Repeat;
            return NetIo.Ok;
        }
        if (Incoming.Count == 0) return NetIo.WouldBlock;
        packet = Incoming.Peek();
        return NetIo.Ok;
    }

    public void Consume()
    {
        Consumes++;
        if (Repeat != null) { if (RepeatCount > 0) RepeatCount--; }
        else Incoming.Dequeue();
    }

    public NetIo Send(ReadOnlySpan<byte> packet)
    {
        SendCalls++;
        if (SendResult is { } r) return r;
        SentCount++;
        if (Repeat == null) Sent.Add(packet.ToArray());
        return NetIo.Ok;
    }

    public NetIo Flush() { Flushes++; return FlushResult; }

    public void Dispose() => Disposed = true;
}
