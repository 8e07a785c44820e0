using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Virtio.Block;

/// <summary>
/// virtio-blk (virtio 1.2 §5.2): read, write, flush, get-id, discard and write-zeroes over one queue,
/// served by a pool of I/O threads with vectored positional I/O straight between the image and guest RAM.
/// Every chain is parsed into a typed request (<see cref="BlockRequest.Parse"/>) before anything runs; a bad one
/// completes with IOERR or UNSUPP, is counted by its reason (<see cref="Failures"/>), and the device carries on.
/// </summary>
public sealed class VirtioBlock : IVirtioDevice, IDeviceCounters
{
    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8, TypeDiscard = 11, TypeWriteZeroes = 13;
    public const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupported = 2;
    public const ulong FeatureSegMax = 1UL << 2, FeatureRo = 1UL << 5, FeatureBlkSize = 1UL << 6, FeatureFlush = 1UL << 9,
        FeatureTopology = 1UL << 10, FeatureDiscard = 1UL << 13, FeatureWriteZeroes = 1UL << 14;
    public const ushort QueueSize = 256;
    public const int SegMax = QueueSize - 2;          // header and status take a descriptor each
    public const int MaxDiscardSegments = 32, IdLength = BlockRequest.IdLength;
    private const uint MaxDiscardSectors = BlockRequest.MaxRangeSectors;

    private readonly IBlockBackend _backend;
    private readonly int _physicalSectorSize;
    private readonly byte[] _config;
    private readonly byte[] _id;
    private readonly IoWorkerPool<PendingRequest> _pool;
    private readonly Stack<PendingRequest> _free = new();
    private readonly BlockDiskLimits _limits;
    private readonly long[] _failures = new long[FailureReasons.Length];
    private readonly Lock _processLock = new();
    private IGuestMemory? _memory;
    private volatile Virtqueue? _queue;
    private int _inFlight;
    private long _reads, _writes, _flushes, _errors, _bytesRead, _bytesWritten;

    public VirtioBlock(IBlockBackend backend, int logicalSectorSize, int physicalSectorSize, string name = "virtio-blk", int ioThreads = 4)
    {
        if (SectorSize.Problem(logicalSectorSize, physicalSectorSize) is { } problem) throw new ArgumentException($"{backend.Path}: {problem}");
        if (backend.Size % logicalSectorSize != 0)
            throw new StorageException($"{backend.Path}: the image size {backend.Size} is not a multiple of the {logicalSectorSize}-byte sector");
        _backend = backend;
        Name = name;
        LogicalSectorSize = logicalSectorSize;
        _physicalSectorSize = physicalSectorSize;
        _config = BuildConfig();
        _id = Encoding.ASCII.GetBytes($"XHYVE-{StableHash.Fnv1a(backend.Path) & 0x00FF_FFFF_FFFF_FFFF:X14}");   // exactly 20 bytes: no NUL needed
        _limits = new BlockDiskLimits(backend.Size, logicalSectorSize, backend.ReadOnly);
        _pool = new IoWorkerPool<PendingRequest>(name, ioThreads, QueueSize, Execute, e => _queue?.Fail(e));
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

    public IEnumerable<KeyValuePair<string, long>> Counters
    {
        get
        {
            yield return new("reads", Reads);
            yield return new("writes", Writes);
            yield return new("flushes", Flushes);
            yield return new("errors", Errors);
            yield return new("read_bytes", BytesRead);
            yield return new("written_bytes", BytesWritten);
            foreach (var c in FailureCounters) yield return c;
        }
    }

    /// <summary>The reasons a request can fail, indexed by value (0 is None), in a fixed order.</summary>
    public static readonly BlockRequestError[] FailureReasons = Enum.GetValues<BlockRequestError>();
    private static readonly string[] FailureNames = FailureReasons.Select(CounterName).ToArray();

    /// <summary>Requests that failed for <paramref name="reason"/> since the device was made.</summary>
    public long Failures(BlockRequestError reason) => Interlocked.Read(ref _failures[(int)reason]);

    /// <summary>Per-reason failure counters as report lines want them ("failed_beyond_capacity"), fixed order.</summary>
    public IEnumerable<KeyValuePair<string, long>> FailureCounters
    {
        get
        {
            for (int i = 1; i < FailureReasons.Length; i++) yield return new(FailureNames[i], Failures(FailureReasons[i]));
        }
    }

    private static string CounterName(BlockRequestError reason)
    {
        var name = new StringBuilder("failed");
        foreach (char c in reason.ToString())
        {
            if (char.IsUpper(c)) name.Append('_');
            name.Append(char.ToLowerInvariant(c));
        }
        return name.ToString();
    }

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
            PendingRequest? first = null;
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

    private PendingRequest Rent()
    {
        lock (_free) return _free.Count > 0 ? _free.Pop() : new PendingRequest(QueueSize);
    }

    private void Return(PendingRequest r)
    {
        r.Queue = null!;
        lock (_free) _free.Push(r);
    }

    /// <summary>Parses, runs and completes one chain on whichever thread has it. Every outcome but success is
    /// counted by reason; the request always completes and leaves the in-flight count (a reset waits on it), and an
    /// unexpected exception is reported to the transport afterwards, which asks the driver for a reset.</summary>
    private void Execute(PendingRequest r)
    {
        Exception? fault = null;
        var queue = r.Queue;
        try
        {
            var chain = r.Segments.AsSpan(0, r.Count);
            var request = r.Error != QueueError.None
                ? BlockRequest.Refused(BlockRequestError.BadChain)
                : BlockRequest.Parse(chain, _memory!, _limits, r.Ranges);
            var outcome = request.Error;
            uint written = 0;
            if (request.IsValid)
            {
                try { outcome = Run(request, r, out written); }
                // Only the host's I/O failing is an I/O error: the request was checked before it ran, so a backend
                // refusing its arguments (ArgumentException, a read-only refusal) is our bug, a device fault.
                catch (Exception e) when (e is StorageException or IOException)
                {
                    outcome = BlockRequestError.IoFailed;
                }
                catch (Exception e)
                {
                    outcome = BlockRequestError.DeviceFault;
                    fault = e;
                }
            }
            if (outcome != BlockRequestError.None)
            {
                written = 0;
                Interlocked.Increment(ref _failures[(int)outcome]);
                Interlocked.Increment(ref _errors);
            }
            if (request.StatusAt is { } at)
            {
                Span<byte> status = [BlockRequest.StatusFor(outcome)];
                if (_memory!.TryWrite(at, status)) written++;   // checked by the parser; a failure leaves the driver to time out
            }
            queue.Complete(r.Head, written);
        }
        catch (Exception e) { fault ??= e; }
        finally
        {
            // Reported while still in flight, so a reset that waits for this request cannot be hit by it afterwards;
            // reporting must not skip the bookkeeping below (a reset would wait for this request forever).
            if (fault != null) try { queue.Fail(fault); } catch (Exception) { }
            Return(r);
            Interlocked.Decrement(ref _inFlight);
        }
    }

    /// <summary>Runs a parsed, valid request: its outcome and the bytes written to the driver's buffers (without the
    /// status byte). Backend exceptions propagate to <see cref="Execute"/>.</summary>
    private BlockRequestError Run(in BlockRequest request, PendingRequest r, out uint written)
    {
        written = 0;
        var chain = r.Segments.AsSpan(0, r.Count);
        switch (request.Type)
        {
            case BlockRequestType.In:
            {
                int n = request.GatherData(chain, _memory!, r.Data);
                if (n < 0) return BlockRequestError.BadChain;
                _backend.ReadVectored(request.Offset, r.Data.AsSpan(0, n));
                Interlocked.Increment(ref _reads);
                Interlocked.Add(ref _bytesRead, request.DataLength);
                written = (uint)request.DataLength;   // at most MaxDataBytes: fits
                return BlockRequestError.None;
            }
            case BlockRequestType.Out:
            {
                int n = request.GatherData(chain, _memory!, r.Data);
                if (n < 0) return BlockRequestError.BadChain;
                _backend.WriteVectored(request.Offset, r.Data.AsSpan(0, n));
                Interlocked.Increment(ref _writes);
                Interlocked.Add(ref _bytesWritten, request.DataLength);
                return BlockRequestError.None;
            }
            case BlockRequestType.Flush:
                _backend.Flush();
                Interlocked.Increment(ref _flushes);
                return BlockRequestError.None;
            case BlockRequestType.GetId:
            {
                int n = request.GatherData(chain, _memory!, r.Data);
                if (n < 0) return BlockRequestError.BadChain;
                int copied = 0;
                foreach (var b in r.Data.AsSpan(0, n))
                {
                    int take = (int)b.Length;
                    _id.AsSpan(copied, take).CopyTo(b.AsSpan());
                    copied += take;
                }
                written = (uint)copied;
                return BlockRequestError.None;
            }
            case BlockRequestType.Discard:
            case BlockRequestType.WriteZeroes:
                foreach (var range in r.Ranges.AsSpan(0, request.RangeCount))
                {
                    long offset = (long)range.Sector * 512, length = (long)range.Sectors * 512;   // checked inside the disk
                    if (request.Type == BlockRequestType.WriteZeroes) _backend.WriteZeroes(offset, length);
                    else _backend.Discard(offset, length);
                }
                return BlockRequestError.None;
            default:
                return BlockRequestError.UnsupportedType;   // the parser refuses these; kept for completeness
        }
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
