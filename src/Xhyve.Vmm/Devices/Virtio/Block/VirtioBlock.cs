using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Virtio.Block;

/// <summary>
/// virtio-blk (virtio 1.2 §5.2): read, write, flush, get-id, discard and write-zeroes over one queue,
/// served by a pool of I/O threads with vectored positional I/O straight between the image and guest RAM.
/// Every request is checked against the disk's capacity and sector size; a bad one completes with
/// IOERR or UNSUPP and the device carries on.
/// </summary>
public sealed class VirtioBlock : IVirtioDevice
{
    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8, TypeDiscard = 11, TypeWriteZeroes = 13;
    public const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupported = 2;
    public const ulong FeatureSegMax = 1UL << 2, FeatureRo = 1UL << 5, FeatureBlkSize = 1UL << 6, FeatureFlush = 1UL << 9,
        FeatureTopology = 1UL << 10, FeatureDiscard = 1UL << 13, FeatureWriteZeroes = 1UL << 14;
    public const ushort QueueSize = 256;
    public const int SegMax = QueueSize - 2;          // header and status take a descriptor each
    public const int MaxDiscardSegments = 32, IdLength = 20;
    private const int HeaderSize = 16, DiscardSegmentSize = 16;
    private const uint MaxDiscardSectors = 1u << 22;  // 2 GiB per segment

    private readonly IBlockBackend _backend;
    private readonly int _physicalSectorSize;
    private readonly byte[] _config;
    private readonly byte[] _id;
    private readonly BlockIoPool _pool;
    private readonly Stack<BlockRequest> _free = new();
    private readonly Lock _processLock = new();
    private IGuestMemory? _memory;
    private Virtqueue? _queue;
    private int _inFlight;
    private long _reads, _writes, _flushes, _errors, _bytesRead, _bytesWritten;

    public VirtioBlock(IBlockBackend backend, int logicalSectorSize, int physicalSectorSize, string name = "virtio-blk", int ioThreads = 4)
    {
        if (logicalSectorSize is not (512 or 4096) || physicalSectorSize < logicalSectorSize)
            throw new ArgumentException($"{backend.Path}: sector sizes {logicalSectorSize}/{physicalSectorSize} are not supported");
        if (backend.Size % logicalSectorSize != 0)
            throw new StorageException($"{backend.Path}: the image size {backend.Size} is not a multiple of the {logicalSectorSize}-byte sector");
        _backend = backend;
        Name = name;
        LogicalSectorSize = logicalSectorSize;
        _physicalSectorSize = physicalSectorSize;
        _config = BuildConfig();
        _id = Encoding.ASCII.GetBytes($"XHYVE-{Fnv1a(backend.Path):X14}");   // exactly 20 bytes: no NUL needed
        _pool = new BlockIoPool(name, ioThreads, QueueSize, Execute);
    }

    public string Name { get; }
    public int LogicalSectorSize { get; }
    public ushort DeviceType => Virtio.Block;
    public (byte Class, byte Subclass) PciClass => (0x01, 0x00);    // mass storage, as QEMU's virtio-blk-pci
    public int QueueCount => 1;
    public ushort MaxQueueSize => QueueSize;
    public int ConfigSize => _config.Length;
    public ulong Features => FeatureSegMax | FeatureBlkSize | FeatureFlush | FeatureTopology | FeatureDiscard | FeatureWriteZeroes
        | (_backend.ReadOnly ? FeatureRo : 0);

    public long Reads => Interlocked.Read(ref _reads);
    public long Writes => Interlocked.Read(ref _writes);
    public long Flushes => Interlocked.Read(ref _flushes);
    public long Errors => Interlocked.Read(ref _errors);
    public long BytesRead => Interlocked.Read(ref _bytesRead);
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>struct virtio_blk_config up to write_zeroes_may_unmap (60 bytes).</summary>
    private byte[] BuildConfig()
    {
        var c = new byte[60];
        var s = c.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(s[0..], (ulong)(_backend.Size / 512));      // capacity, 512-byte units
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], SegMax);
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], (uint)LogicalSectorSize);           // blk_size
        c[24] = (byte)Math.Log2(_physicalSectorSize / LogicalSectorSize);                     // physical_block_exp
        BinaryPrimitives.WriteUInt16LittleEndian(s[26..], (ushort)(_physicalSectorSize / LogicalSectorSize)); // min_io_size
        BinaryPrimitives.WriteUInt16LittleEndian(s[34..], 1);                                 // num_queues
        BinaryPrimitives.WriteUInt32LittleEndian(s[36..], MaxDiscardSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(s[40..], MaxDiscardSegments);
        BinaryPrimitives.WriteUInt32LittleEndian(s[44..], (uint)(_physicalSectorSize / 512));  // discard_sector_alignment
        BinaryPrimitives.WriteUInt32LittleEndian(s[48..], MaxDiscardSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(s[52..], MaxDiscardSegments);
        c[56] = 1;                                                                            // write_zeroes_may_unmap
        return c;
    }

    private static ulong Fnv1a(string text)
    {
        ulong h = 0xCBF29CE484222325;
        foreach (char ch in text) { h ^= ch; h *= 0x100000001B3; }
        return h & 0x00FF_FFFF_FFFF_FFFF;
    }

    public void ReadConfig(int offset, Span<byte> data) => _config.AsSpan(offset, data.Length).CopyTo(data);

    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }   // nothing in it is writable without CONFIG_WCE

    public void Activate(IGuestMemory memory, ulong negotiatedFeatures, IReadOnlyList<Virtqueue?> queues)
    {
        lock (_processLock)
        {
            _memory = memory;
            _queue = queues[0];
        }
    }

    public void Process(int queue)
    {
        lock (_processLock)
        {
            if (_queue is not { } q) return;
            // Pop everything available; one request runs right here, more go to the pool in parallel.
            BlockRequest? first = null;
            while (true)
            {
                var r = Rent();
                if (!q.TryPop(r.Segments, out r.Head, out r.Count, out r.Error)) { Return(r); break; }
                r.Queue = q;
                Interlocked.Increment(ref _inFlight);
                if (first == null) { first = r; continue; }
                if (!_pool.TrySubmit(first)) Execute(first);   // only a driver re-queuing heads fills the pool
                first = r;
            }
            if (first != null) Execute(first);
        }
    }

    private BlockRequest Rent()
    {
        lock (_free) return _free.Count > 0 ? _free.Pop() : new BlockRequest(QueueSize);
    }

    private void Return(BlockRequest r)
    {
        r.Queue = null!;
        lock (_free) _free.Push(r);
    }

    private void Execute(BlockRequest r)
    {
        var (status, written, statusAt) = Serve(r);
        if (statusAt is { } at)
        {
            Span<byte> s = [status];
            _memory!.TryWrite(at, s);   // checked when the chain was walked; a failure leaves the driver to time out
            written++;
        }
        if (status != StatusOk) Interlocked.Increment(ref _errors);
        r.Queue.Complete(r.Head, written);
        Return(r);
        Interlocked.Decrement(ref _inFlight);
    }

    /// <summary>Runs one request: its status, the bytes written to the driver's buffers (without the status
    /// byte) and where the status byte goes (null when the chain has no writable byte for it).</summary>
    private (byte Status, uint Written, GuestAddress? StatusAt) Serve(BlockRequest r)
    {
        if (r.Error != QueueError.None || r.Count == 0) return (StatusIoErr, 0, null);
        var segs = r.Segments.AsSpan(0, r.Count);
        var last = segs[^1];
        if (!last.DeviceWritable || last.Length == 0) return (StatusIoErr, 0, null);
        var statusAt = new GuestAddress(last.Address.Value + last.Length - 1);

        Span<byte> header = stackalloc byte[HeaderSize];
        if (CopyReadable(segs, 0, header) != HeaderSize) return (StatusIoErr, 0, statusAt);
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        try
        {
            switch (type)
            {
                case TypeIn:
                {
                    if (!Gather(segs, writable: true, skip: 0, trimLast: 1, r.Data, out int n, out long bytes)) return (StatusIoErr, 0, statusAt);
                    if (!InRange(sector, bytes, out long offset)) return (StatusIoErr, 0, statusAt);
                    _backend.ReadVectored(offset, r.Data.AsSpan(0, n));
                    Interlocked.Increment(ref _reads);
                    Interlocked.Add(ref _bytesRead, bytes);
                    return (StatusOk, (uint)bytes, statusAt);
                }
                case TypeOut:
                {
                    if (_backend.ReadOnly) return (StatusIoErr, 0, statusAt);
                    if (!Gather(segs, writable: false, skip: HeaderSize, trimLast: 0, r.Data, out int n, out long bytes)) return (StatusIoErr, 0, statusAt);
                    if (!InRange(sector, bytes, out long offset)) return (StatusIoErr, 0, statusAt);
                    _backend.WriteVectored(offset, r.Data.AsSpan(0, n));
                    Interlocked.Increment(ref _writes);
                    Interlocked.Add(ref _bytesWritten, bytes);
                    return (StatusOk, 0, statusAt);
                }
                case TypeFlush:
                    _backend.Flush();
                    Interlocked.Increment(ref _flushes);
                    return (StatusOk, 0, statusAt);
                case TypeGetId:
                {
                    if (!Gather(segs, writable: true, skip: 0, trimLast: 1, r.Data, out int n, out long bytes)) return (StatusIoErr, 0, statusAt);
                    int copied = 0;
                    foreach (var b in r.Data.AsSpan(0, n))
                    {
                        int take = Math.Min((int)b.Length, IdLength - copied);
                        _id.AsSpan(copied, take).CopyTo(b.AsSpan());
                        copied += take;
                        if (copied == IdLength) break;
                    }
                    return (StatusOk, (uint)copied, statusAt);
                }
                case TypeDiscard:
                case TypeWriteZeroes:
                    return (Ranges(segs, type == TypeWriteZeroes), 0, statusAt);
                default:
                    return (StatusUnsupported, 0, statusAt);
            }
        }
        catch (Exception e) when (e is StorageException or IOException or ArgumentException or InvalidOperationException)
        {
            return (StatusIoErr, 0, statusAt);
        }
    }

    /// <summary>The disk byte offset of a request of <paramref name="bytes"/> at 512-byte sector
    /// <paramref name="sector"/>, if it is whole logical sectors inside the disk.</summary>
    private bool InRange(ulong sector, long bytes, out long offset)
    {
        offset = 0;
        if (sector > (ulong)(_backend.Size / 512)) return false;
        offset = (long)sector * 512;
        return bytes % LogicalSectorSize == 0 && offset % LogicalSectorSize == 0 && bytes <= _backend.Size - offset;
    }

    /// <summary>DISCARD / WRITE_ZEROES: up to <see cref="MaxDiscardSegments"/> ranges after the header.</summary>
    private byte Ranges(ReadOnlySpan<ChainSegment> segs, bool zeroes)
    {
        if (_backend.ReadOnly) return StatusIoErr;
        Span<byte> ranges = stackalloc byte[MaxDiscardSegments * DiscardSegmentSize];
        int length = CopyReadable(segs, HeaderSize, ranges);
        if (length == 0 || length % DiscardSegmentSize != 0) return StatusUnsupported;
        for (int i = 0; i < length; i += DiscardSegmentSize)
        {
            ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(ranges[i..]);
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(ranges[(i + 8)..]);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(ranges[(i + 12)..]);
            // Only write-zeroes has a flag (unmap); anything else is a request we do not understand.
            if ((flags & ~(zeroes ? 1u : 0u)) != 0 || count > MaxDiscardSectors) return StatusUnsupported;
            if (!InRange(sector, (long)count * 512, out long offset)) return StatusIoErr;
            if (zeroes) _backend.WriteZeroes(offset, (long)count * 512);
            else _backend.Discard(offset, (long)count * 512);
        }
        return StatusOk;
    }

    /// <summary>Copies the device-readable bytes from <paramref name="skip"/> on into <paramref name="into"/>;
    /// how many there were (at most its length).</summary>
    private int CopyReadable(ReadOnlySpan<ChainSegment> segs, int skip, Span<byte> into)
    {
        int copied = 0;
        foreach (var s in segs)
        {
            if (s.DeviceWritable || copied == into.Length) break;
            int len = (int)s.Length;
            if (skip >= len) { skip -= len; continue; }
            int take = Math.Min(len - skip, into.Length - copied);
            if (!_memory!.TryRead(new GuestAddress(s.Address.Value + (ulong)skip), into.Slice(copied, take))) return 0;
            copied += take;
            skip = 0;
        }
        return copied;
    }

    /// <summary>The data buffers of a request as host pointers into guest RAM: the readable (or writable)
    /// segments, less <paramref name="skip"/> leading bytes and <paramref name="trimLast"/> trailing ones.</summary>
    private bool Gather(ReadOnlySpan<ChainSegment> segs, bool writable, int skip, int trimLast, IoBuffer[] into, out int count, out long bytes)
    {
        count = 0; bytes = 0;
        int lastIndex = -1;
        for (int i = 0; i < segs.Length; i++) if (segs[i].DeviceWritable == writable) lastIndex = i;
        for (int i = 0; i <= lastIndex; i++)
        {
            var s = segs[i];
            if (s.DeviceWritable != writable) continue;
            long start = 0, end = s.Length;
            if (skip > 0) { long k = Math.Min(skip, end); start = k; skip -= (int)k; }
            if (i == lastIndex) end -= trimLast;
            if (end <= start) continue;
            if (count == SegMax || !_memory!.TryGetSpan(new GuestAddress(s.Address.Value + (ulong)start), (int)(end - start), out var span)) return false;
            unsafe
            {
                fixed (byte* p = span) into[count++] = new IoBuffer((nint)p, span.Length);   // guest RAM never moves
            }
            bytes += end - start;
        }
        return skip == 0 && (trimLast == 0 || lastIndex >= 0);
    }

    public void Reset()
    {
        lock (_processLock)
        {
            // Requests in the pool finish against the old rings before they are forgotten (resets are rare).
            while (Volatile.Read(ref _inFlight) != 0) Thread.Sleep(1);
            _queue = null;
        }
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Reset();
        _pool.Dispose();
        _backend.Dispose();
    }
}
