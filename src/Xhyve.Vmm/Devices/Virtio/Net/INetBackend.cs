namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>What a backend call did.</summary>
public enum NetIo
{
    /// <summary>Done (a frame is there, or was taken).</summary>
    Ok,
    /// <summary>Nothing to receive, or no room to send: wait for the backend's fd.</summary>
    WouldBlock,
    /// <summary>The backend is gone (passt exited, the TAP vanished): the link is down for good.</summary>
    Closed,
    /// <summary>The host refused this one packet (the kernel found it malformed); others go on.</summary>
    Dropped,
}

/// <summary>
/// The host side of a network adapter. Non-blocking: the device's worker polls <see cref="Fd"/> for
/// <see cref="NetIo.WouldBlock"/> results and never waits inside a call. Packets are a virtio_net_hdr of
/// <see cref="VnetHeaderSize"/> bytes (0: none) followed by the Ethernet frame. Used by one thread at a time.
/// </summary>
public interface INetBackend : IDisposable
{
    /// <summary>For messages: "passt (pid 123)", "TAP tap0".</summary>
    string Description { get; }
    /// <summary>The fd to poll: readable when a frame may be there, writable when sends may go on; -1 once closed.</summary>
    int Fd { get; }
    /// <summary>12 when packets carry a virtio_net_hdr (TAP with IFF_VNET_HDR), else 0.</summary>
    int VnetHeaderSize { get; }
    /// <summary>The offload features the backend can take (<see cref="NetFeatures"/>); 0 for plain frames.</summary>
    ulong Offloads { get; }
    /// <summary>The driver accepted these features: turn on the receive offloads among them.</summary>
    void SetOffloads(ulong negotiated);
    /// <summary>The next received packet, left in place until <see cref="Consume"/> (so a guest with no buffers
    /// loses nothing); the span stays valid until then.</summary>
    NetIo Peek(out ReadOnlySpan<byte> packet);
    /// <summary>Drops the packet <see cref="Peek"/> returned.</summary>
    void Consume();
    /// <summary>Sends or queues one packet. WouldBlock: not taken, try again when <see cref="Fd"/> is writable.</summary>
    NetIo Send(ReadOnlySpan<byte> packet);
    /// <summary>Pushes queued packets out (a batch of sends ends with one Flush). WouldBlock: some are still queued.</summary>
    NetIo Flush();
    /// <summary>Whether queued packets wait for <see cref="Fd"/> to become writable.</summary>
    bool HasQueuedOutput { get; }
    /// <summary>Why the backend closed, once it has (for the log line).</summary>
    string? CloseReason { get; }
}

/// <summary>A backend cannot be set up: the message names the device's option and the problem.</summary>
public sealed class NetBackendException(string message) : Exception(message);
