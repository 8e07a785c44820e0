using System.Buffers.Binary;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>
/// virtio-net (virtio 1.2 §5.1): queue 0 receives, queue 1 sends, queue 2 takes control commands. Frames move
/// between the queues and an <see cref="INetBackend"/> on the device's worker thread: received frames when the
/// backend's fd is readable and the guest has buffers (none: the frame stays in the backend and the worker stops
/// reading until the driver adds buffers), sent frames when the driver notifies the send queue (the backend full:
/// the frame is held and the worker waits until it can write). Up to <see cref="Batch"/> frames per wake-up in each
/// direction, one interrupt per batch. Every chain and header from the guest is checked; a bad one drops that frame
/// and is counted by reason. No allocation per frame.
/// </summary>
public sealed class VirtioNet : IVirtioDevice, IDeviceCounters, IPolledVirtioDevice, IConfigChangeNotifier
{
    public const int RxQueue = 0, TxQueue = 1, ControlQueue = 2;
    public const ushort QueueSize = 256;
    /// <summary>Frames per direction per wake-up before the other direction gets a turn.</summary>
    public const int Batch = 64;
    private const int ConfigBytes = 10;   // mac[6], status, max_virtqueue_pairs
    private const int ControlMax = 8 + 2 * 6 * RxFilter.TableEntries + 64;

    private readonly INetBackend _backend;
    private readonly ulong _configuredMac;
    private readonly RateLimitedLog _log;
    private readonly Lock _lock = new();
    private readonly RxFilter _filter = new();
    private readonly ChainSegment[] _segments = new ChainSegment[QueueSize];
    private readonly ChainSegment[] _firstChain = new ChainSegment[QueueSize];
    private readonly (ushort Head, uint Length)[] _rxUsed = new (ushort, uint)[QueueSize];
    // A sent frame is gathered here: room for a 12-byte header in front of whatever header the guest used.
    private readonly byte[] _tx = new byte[NetHeader.Size + EthernetFrame.MaximumSize];
    private readonly byte[] _control = new byte[ControlMax];
    private ulong _mac;
    private IGuestMemory? _memory;
    private Virtqueue? _rxq, _txq, _ctrlq;
    private ulong _features;
    private int _headerSize = NetHeader.Size;
    private bool _mergeable;
    private bool _rxWaitsForBuffers, _rxMore, _txMore;
    private int _txHeldStart, _txHeldLength;
    private volatile bool _linkUp = true;
    private Action? _configChanged;

    private long _rxPackets, _rxBytes, _txPackets, _txBytes, _rxFiltered, _rxTooBig, _rxOffload, _rxBadChains, _rxNoBuffers, _txTooBig, _txTooShort,
        _txBadHeader, _txOffload, _txLinkDown, _txBackendDropped, _ctrlCommands, _ctrlErrors;

    // name: "virtio-net 0:2:0" for messages; log: where the link-down line goes.
    public VirtioNet(string name, MacAddress mac, INetBackend backend, RateLimitedLog? log = null)
    {
        Name = name;
        _backend = backend;
        _configuredMac = _mac = mac.Value;
        _log = log ?? new RateLimitedLog();
    }

    public string Name { get; }
    public ushort DeviceType => Virtio.Net;
    public (byte Class, byte Subclass) PciClass => (0x02, 0x00);   // network controller, Ethernet
    public ulong Features => NetFeatures.Mac | NetFeatures.Status | NetFeatures.MrgRxbuf | NetFeatures.CtrlVq | NetFeatures.CtrlRx
        | NetFeatures.CtrlMacAddr | NetFeatures.Csum | _backend.Offloads;
    public int QueueCount => 3;
    public ushort MaxQueueSize => QueueSize;
    public int ConfigSize => ConfigBytes;
    public bool LinkUp => _linkUp;
    public MacAddress Mac => new(Interlocked.Read(ref _mac));
    public INetBackend Backend => _backend;
    Action? IConfigChangeNotifier.ConfigChanged { set => _configChanged = value; }

    public IEnumerable<KeyValuePair<string, long>> Counters =>
    [
        new("link_up", _linkUp ? 1 : 0),
        new("rx_packets", Interlocked.Read(ref _rxPackets)), new("rx_bytes", Interlocked.Read(ref _rxBytes)),
        new("tx_packets", Interlocked.Read(ref _txPackets)), new("tx_bytes", Interlocked.Read(ref _txBytes)),
        new("rx_waits_for_buffers", Interlocked.Read(ref _rxNoBuffers)),
        new("rx_dropped_filtered", Interlocked.Read(ref _rxFiltered)), new("rx_dropped_too_big", Interlocked.Read(ref _rxTooBig)),
        new("rx_dropped_offload", Interlocked.Read(ref _rxOffload)), new("rx_unusable_chains", Interlocked.Read(ref _rxBadChains)),
        new("tx_dropped_too_big", Interlocked.Read(ref _txTooBig)), new("tx_dropped_too_short", Interlocked.Read(ref _txTooShort)),
        new("tx_dropped_bad_header", Interlocked.Read(ref _txBadHeader)), new("tx_dropped_offload", Interlocked.Read(ref _txOffload)),
        new("tx_dropped_link_down", Interlocked.Read(ref _txLinkDown)), new("tx_dropped_by_host", Interlocked.Read(ref _txBackendDropped)),
        new("control_commands", Interlocked.Read(ref _ctrlCommands)), new("control_errors", Interlocked.Read(ref _ctrlErrors)),
    ];

    // ---- configuration (vCPU threads) ----

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> config = stackalloc byte[ConfigBytes];
        Mac.CopyTo(config);
        BinaryPrimitives.WriteUInt16LittleEndian(config[6..], _linkUp ? NetFeatures.StatusLinkUp : (ushort)0);
        BinaryPrimitives.WriteUInt16LittleEndian(config[8..], 1);
        data.Clear();
        if ((uint)offset < ConfigBytes) config[offset..Math.Min(ConfigBytes, offset + data.Length)].CopyTo(data);
    }

    /// <summary>Legacy drivers without CTRL_MAC_ADDR set the address by writing it here; the rest is read-only.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset + data.Length > 6) return;
        Span<byte> mac = stackalloc byte[6];
        Mac.CopyTo(mac);
        data.CopyTo(mac[offset..]);
        Interlocked.Exchange(ref _mac, RxFilter.Mac(mac));
    }

    // ---- lifecycle (transport thread) ----

    public void Activate(IGuestMemory memory, ulong negotiatedFeatures, IReadOnlyList<Virtqueue?> queues)
    {
        lock (_lock)
        {
            _memory = memory;
            _features = negotiatedFeatures;
            _rxq = queues[RxQueue]; _txq = queues[TxQueue]; _ctrlq = queues[ControlQueue];
            _mergeable = (negotiatedFeatures & NetFeatures.MrgRxbuf) != 0;
            // Legacy drivers without MRG_RXBUF use the 10-byte header (§5.1.6.1).
            _headerSize = (negotiatedFeatures & (Virtio.FeatureVersion1 | NetFeatures.MrgRxbuf)) != 0 ? NetHeader.Size : NetHeader.LegacySize;
            _rxWaitsForBuffers = _rxMore = _txMore = false;
            _backend.SetOffloads(negotiatedFeatures);
        }
    }

    public void Reset()
    {
        lock (_lock)
        {
            _memory = null;
            _rxq = _txq = _ctrlq = null;
            _txHeldLength = 0;
            _filter.Reset();
            Interlocked.Exchange(ref _mac, _configuredMac);
        }
    }

    public void Dispose()
    {
        Reset();
        _backend.Dispose();
    }

    // ---- the worker ----

    public int PollFd => _backend.Fd;

    public short PollEvents
    {
        get
        {
            lock (_lock)
            {
                if (_rxq == null || !_linkUp) return 0;
                short events = 0;
                if (!_rxWaitsForBuffers) events |= Native.PollFd.PollIn;
                if (_txHeldLength > 0 || _backend.HasQueuedOutput) events |= Native.PollFd.PollOut;
                return events;
            }
        }
    }

    public bool HasPendingWork { get { lock (_lock) return _rxq != null && (_rxMore || _txMore); } }

    public void PollReady(short revents)
    {
        lock (_lock)
        {
            if (_rxq == null) return;
            if ((revents & Native.PollFd.PollOut) != 0 || _txMore) Transmit();
            if ((revents & (Native.PollFd.PollIn | Native.PollFd.PollHup | Native.PollFd.PollErr)) != 0 || _rxMore) Receive();
        }
    }

    public void Process(int queue)
    {
        lock (_lock)
        {
            switch (queue)
            {
                case RxQueue when _rxq != null:
                    _rxWaitsForBuffers = false;   // the driver added buffers: frames waiting in the backend can go
                    Receive();
                    break;
                case TxQueue when _txq != null: Transmit(); break;
                case ControlQueue when _ctrlq != null: Control(); break;
            }
        }
    }

    // ---- receive: backend -> guest ----

    private void Receive()
    {
        var q = _rxq!;
        int handled = 0;
        bool returned = false;
        _rxMore = false;
        while (_linkUp)
        {
            // Dropped and filtered frames count too: a flood of them must not keep the worker from sending.
            if (handled++ == Batch) { _rxMore = true; break; }
            var r = _backend.Peek(out var packet);
            if (r == NetIo.WouldBlock) break;
            if (r == NetIo.Closed) { LinkDown(); break; }
            var frame = packet[_backend.VnetHeaderSize..];
            if (frame.Length < EthernetFrame.MinimumSize || !_filter.Accepts(frame[..6], Interlocked.Read(ref _mac)))
            {
                if (frame.Length >= EthernetFrame.MinimumSize) Interlocked.Increment(ref _rxFiltered);
                _backend.Consume();
                continue;
            }
            var outcome = Deliver(q, packet);
            if (outcome == RxOutcome.NoBuffers)
            {
                _rxWaitsForBuffers = true;   // the frame stays in the backend until the driver adds buffers
                Interlocked.Increment(ref _rxNoBuffers);
                break;
            }
            _backend.Consume();
            returned = true;
            if (outcome == RxOutcome.Delivered)
            {
                Interlocked.Increment(ref _rxPackets);
                Interlocked.Add(ref _rxBytes, frame.Length);
            }
        }
        if (returned) q.NotifyIfNeeded();
    }

    private enum RxOutcome { Delivered, NoBuffers, Dropped }

    /// <summary>Copies one packet into the guest's receive buffers: one chain, or with MRG_RXBUF as many as it takes
    /// (num_buffers tells the driver how many). Chains are returned only once the whole frame is placed; when the
    /// buffers run out first they are put back and the frame waits.</summary>
    private RxOutcome Deliver(Virtqueue q, ReadOnlySpan<byte> packet)
    {
        Span<byte> header = stackalloc byte[NetHeader.Size];
        int vnet = _backend.VnetHeaderSize;
        header.Clear();
        if (vnet > 0)
        {
            // What the host kernel says about the frame, held to what the driver negotiated (TUNSETOFFLOAD keeps it
            // there; a frame that still asks for more is dropped rather than handed over wrong).
            var h = NetHeader.Read(packet[..NetHeader.Size]);
            if (!ReceiveOffloadAllowed(h)) { Interlocked.Increment(ref _rxOffload); return RxOutcome.Dropped; }
            byte flags = (_features & NetFeatures.GuestCsum) != 0 ? h.Flags : (byte)0;
            (h with { Flags = flags, NumBuffers = 0 }).Write(header);
        }
        var frame = packet[vnet..];
        var head = header[.._headerSize];
        int total = _headerSize + frame.Length, placed = 0, chains = 0, firstCount = 0, unusable = 0;
        while (placed < total)
        {
            if (chains == q.Size)
            {
                // Even the driver's whole queue of these buffers cannot hold the frame: waiting would stall every
                // frame behind it.
                q.Unpop(chains);
                Interlocked.Increment(ref _rxTooBig);
                return RxOutcome.Dropped;
            }
            if (!q.TryPop(_segments, out ushort id, out int count, out var error))
            {
                q.Unpop(chains);
                return RxOutcome.NoBuffers;
            }
            int n = error == QueueError.None ? Scatter(_segments.AsSpan(0, count), placed, head, frame) : 0;
            if (n == 0)
            {
                // A broken chain (counted by the transport as queue_*) or one with no writable byte: it goes back
                // unused. Taken first, the frame tries the next chain; taken after others, those cannot be put back
                // behind it, so they go back empty too and the frame is dropped.
                Interlocked.Increment(ref _rxBadChains);
                for (int i = 0; i < chains; i++) q.AddUsed(_rxUsed[i].Head, 0);
                q.AddUsed(id, 0);
                if (chains > 0 || ++unusable == q.Size) return RxOutcome.Dropped;
                continue;
            }
            if (chains == 0) { _segments.AsSpan(0, count).CopyTo(_firstChain); firstCount = count; }
            _rxUsed[chains++] = (id, (uint)n);
            placed += n;
            if (placed < total && !_mergeable)
            {
                // Without MRG_RXBUF a frame must fit one chain (Linux posts big enough ones when it takes large frames).
                q.Unpop(chains);
                Interlocked.Increment(ref _rxTooBig);
                return RxOutcome.Dropped;
            }
        }
        if (_headerSize == NetHeader.Size)
        {
            Span<byte> num = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(num, (ushort)chains);
            WriteAt(_firstChain.AsSpan(0, firstCount), 10, num);
        }
        for (int i = 0; i < chains; i++) q.AddUsed(_rxUsed[i].Head, _rxUsed[i].Length);
        return RxOutcome.Delivered;
    }

    private bool ReceiveOffloadAllowed(in NetHeader h)
    {
        if (h.NeedsChecksum && (_features & NetFeatures.GuestCsum) == 0) return false;
        ulong needed = h.GsoKind switch
        {
            NetHeader.GsoNone => 0,
            NetHeader.GsoTcpV4 => NetFeatures.GuestTso4,
            NetHeader.GsoTcpV6 => NetFeatures.GuestTso6,
            _ => ulong.MaxValue,
        };
        if (needed == ulong.MaxValue || (_features & needed) != needed) return false;
        return (h.GsoType & NetHeader.GsoEcn) == 0 || (_features & NetFeatures.GuestEcn) != 0;
    }

    /// <summary>Writes the stream (header, then frame) from its byte <paramref name="from"/> on into the chain's
    /// writable buffers; returns how many bytes went in.</summary>
    private int Scatter(ReadOnlySpan<ChainSegment> segments, int from, ReadOnlySpan<byte> header, ReadOnlySpan<byte> frame)
    {
        int written = 0, at = from;
        int end = header.Length + frame.Length;
        foreach (var s in segments)
        {
            if (at >= end) break;
            if (!s.DeviceWritable || !_memory!.TryGetSpan(s.Address, (int)s.Length, out var span)) continue;
            while (span.Length > 0 && at < end)
            {
                int n;
                if (at < header.Length)
                {
                    var part = header[at..];
                    n = Math.Min(part.Length, span.Length);
                    part[..n].CopyTo(span);
                }
                else
                {
                    var part = frame[(at - header.Length)..];
                    n = Math.Min(part.Length, span.Length);
                    part[..n].CopyTo(span);
                }
                span = span[n..];
                at += n; written += n;
            }
        }
        return written;
    }

    /// <summary>Writes <paramref name="data"/> at byte <paramref name="offset"/> of the chain's writable space (num_buffers
    /// into a header already placed, wherever the driver's buffers split it).</summary>
    private void WriteAt(ReadOnlySpan<ChainSegment> segments, int offset, ReadOnlySpan<byte> data)
    {
        foreach (var s in segments)
        {
            if (data.IsEmpty) return;
            if (!s.DeviceWritable || !_memory!.TryGetSpan(s.Address, (int)s.Length, out var span)) continue;
            if (offset >= span.Length) { offset -= span.Length; continue; }
            span = span[offset..];
            offset = 0;
            int n = Math.Min(span.Length, data.Length);
            data[..n].CopyTo(span);
            data = data[n..];
        }
    }

    // ---- transmit: guest -> backend ----

    private void Transmit()
    {
        var q = _txq!;
        int taken = 0;
        _txMore = false;
        if (_txHeldLength > 0)
        {
            if (!SendHeld()) { q.NotifyIfNeeded(); return; }
            taken++;
        }
        while (true)
        {
            if (taken >= Batch) { _txMore = true; break; }
            if (!q.TryPop(_segments, out ushort id, out int count, out var error)) break;
            int length = error == QueueError.None ? Gather(_segments.AsSpan(0, count)) : 0;
            // The frame is copied out: the buffers go back to the driver now, whatever becomes of the frame.
            q.AddUsed(id, 0);
            taken++;
            if (error != QueueError.None) continue;   // counted by the transport
            if (length < 0) { Interlocked.Increment(ref _txTooBig); continue; }
            if (!Prepare(length, out int start, out int packetLength)) continue;
            if (!_linkUp) { Interlocked.Increment(ref _txLinkDown); continue; }
            _txHeldStart = start; _txHeldLength = packetLength;
            if (!SendHeld()) break;
        }
        if (_linkUp && _backend.Flush() == NetIo.Closed) LinkDown();
        q.NotifyIfNeeded();
    }

    /// <summary>Copies the chain's readable buffers to _tx after a gap, so the guest's header ends at offset 12 whatever
    /// its size. Returns the bytes copied, or -1 when they exceed the largest frame.</summary>
    private int Gather(ReadOnlySpan<ChainSegment> segments)
    {
        int gap = NetHeader.Size - _headerSize, length = 0;
        foreach (var s in segments)
        {
            if (s.DeviceWritable) break;   // the driver's writable buffers, if any, have no meaning for a send
            if (s.Length > (uint)(_tx.Length - gap - length)) return -1;
            if (!_memory!.TryGetSpan(s.Address, (int)s.Length, out var span)) return -1;
            span.CopyTo(_tx.AsSpan(gap + length));
            length += (int)s.Length;
        }
        return length;
    }

    /// <summary>Checks the header and frame gathered in _tx and lays the packet out for the backend: a 12-byte header
    /// then the frame for a TAP, the frame alone (its checksum completed here if asked) for passt.</summary>
    private bool Prepare(int length, out int start, out int packetLength)
    {
        start = packetLength = 0;
        int frameLength = length - _headerSize;
        if (frameLength < EthernetFrame.MinimumSize) { Interlocked.Increment(ref _txTooShort); return false; }
        var header = NetHeader.Read(_tx.AsSpan(NetHeader.Size - _headerSize, _headerSize));
        var error = NetHeader.Check(header, frameLength, _features);
        if (error != TxHeaderError.None)
        {
            Interlocked.Increment(ref error == TxHeaderError.OffloadNotNegotiated ? ref _txOffload : ref _txBadHeader);
            return false;
        }
        var frame = _tx.AsSpan(NetHeader.Size, frameLength);
        if (_backend.VnetHeaderSize > 0)
        {
            // num_buffers means nothing on send (§5.1.6.2): the host gets a clean 12-byte header.
            (header with { NumBuffers = 0 }).Write(_tx.AsSpan(0, NetHeader.Size));
            packetLength = NetHeader.Size + frameLength;
            return true;
        }
        if (header.GsoKind != NetHeader.GsoNone) { Interlocked.Increment(ref _txOffload); return false; }
        if (header.NeedsChecksum) NetHeader.CompleteChecksum(frame, header.CsumStart, header.CsumOffset);
        start = NetHeader.Size;
        packetLength = frameLength;
        return true;
    }

    /// <summary>Hands the held packet to the backend; false when it has to wait for room (it stays held).</summary>
    private bool SendHeld()
    {
        var packet = _tx.AsSpan(_txHeldStart, _txHeldLength);
        int frameLength = _txHeldLength - _backend.VnetHeaderSize;
        switch (_backend.Send(packet))
        {
            case NetIo.WouldBlock: return false;
            case NetIo.Closed: Interlocked.Increment(ref _txLinkDown); LinkDown(); break;
            case NetIo.Dropped: Interlocked.Increment(ref _txBackendDropped); break;
            default:
                Interlocked.Increment(ref _txPackets);
                Interlocked.Add(ref _txBytes, frameLength);
                break;
        }
        _txHeldLength = 0;
        return true;
    }

    // ---- link ----

    /// <summary>The backend is gone: the guest sees the link go down (STATUS) and keeps running; one line says why.</summary>
    private void LinkDown()
    {
        if (!_linkUp) return;
        _linkUp = false;
        _txHeldLength = 0;
        _log.Write($"xhyve: {Name}: {_backend.Description}: {_backend.CloseReason ?? "closed"}; the link is down, the guest keeps running");
        _configChanged?.Invoke();
    }

    // ---- control queue ----

    private void Control()
    {
        var q = _ctrlq!;
        while (q.TryPop(_segments, out ushort id, out int count, out var error))
        {
            uint written = 0;
            if (error == QueueError.None && TryControl(_segments.AsSpan(0, count), out byte ack, out var ackAt))
            {
                Span<byte> status = [ack];
                written = _memory!.TryWrite(ackAt, status) ? 1u : 0u;
            }
            q.AddUsed(id, written);
        }
        q.NotifyIfNeeded();
    }

    /// <summary>Runs one command: the readable buffers hold class, command and data; the last writable byte of the
    /// chain takes the ack. False when the chain has no writable byte to answer in.</summary>
    private bool TryControl(ReadOnlySpan<ChainSegment> segments, out byte ack, out GuestAddress ackAt)
    {
        ack = 0; ackAt = default;
        int length = 0;
        GuestAddress? last = null;
        bool tooLong = false;
        foreach (var s in segments)
        {
            if (s.DeviceWritable)
            {
                if (s.Length > 0 && s.Address.TryAdd(s.Length - 1, out var lastByte)) last = lastByte;
                continue;
            }
            if (s.Length > (uint)(_control.Length - length)) { tooLong = true; continue; }
            if (!_memory!.TryRead(s.Address, _control.AsSpan(length, (int)s.Length))) { tooLong = true; continue; }
            length += (int)s.Length;
        }
        if (last is not { } at) return false;
        Interlocked.Increment(ref _ctrlCommands);
        bool ok = !tooLong && length >= 2 && Execute(_control[0], _control[1], _control.AsSpan(2, length - 2));
        if (!ok) Interlocked.Increment(ref _ctrlErrors);
        ack = ok ? NetControl.Ok : NetControl.Error;
        ackAt = at;
        return true;
    }

    private bool Execute(byte cls, byte command, ReadOnlySpan<byte> data)
    {
        switch (cls)
        {
            case NetControl.ClassRx when (_features & NetFeatures.CtrlRx) != 0:
                return _filter.SetMode(command, data);
            case NetControl.ClassMac when command == NetControl.MacTableSet && (_features & NetFeatures.CtrlRx) != 0:
                return _filter.SetTables(data);
            case NetControl.ClassMac when command == NetControl.MacAddrSet && (_features & NetFeatures.CtrlMacAddr) != 0:
                if (data.Length != 6 || (data[0] & 1) != 0 || RxFilter.Mac(data) == 0) return false;
                Interlocked.Exchange(ref _mac, RxFilter.Mac(data));
                return true;
            default:
                return false;
        }
    }
}
