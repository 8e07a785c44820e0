using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Virtio.Block;

/// <summary>virtio-blk request types (virtio 1.2 §5.2.6). Other values are kept as they came and refused.</summary>
public enum BlockRequestType : uint
{
    In = 0, Out = 1, Flush = 4, GetId = 8, Discard = 11, WriteZeroes = 13,
}

/// <summary>
/// Why a virtio-blk request failed; each has its own counter. Parse errors come from
/// <see cref="BlockRequest.Parse"/> before anything runs; <see cref="IoFailed"/> and <see cref="DeviceFault"/>
/// happen while a valid request runs. Values are stable (fuzz corpora and reports name them).
/// </summary>
public enum BlockRequestError : byte
{
    None,
    /// <summary>The queue refused the chain (loop, index or buffer out of range, ...): no status can be written.</summary>
    BadChain,
    /// <summary>No device-writable buffer at the end of the chain for the status byte: nothing can be reported.</summary>
    StatusMissing,
    /// <summary>The last buffer is device-writable but empty: no room for the status byte.</summary>
    StatusTooShort,
    /// <summary>Fewer than 16 device-readable bytes before the first writable one.</summary>
    HeaderTooShort,
    /// <summary>The data length or the starting sector is not a whole number of logical sectors.</summary>
    NotSectorAligned,
    /// <summary>The request starts or ends past the disk's capacity.</summary>
    BeyondCapacity,
    /// <summary>A write, discard or write-zeroes to a read-only disk.</summary>
    WriteToReadOnly,
    /// <summary>A request type this device does not implement (status UNSUPP).</summary>
    UnsupportedType,
    /// <summary>More data than one request may carry (<see cref="BlockRequest.MaxDataBytes"/>).</summary>
    LengthOverflow,
    /// <summary>DISCARD / WRITE_ZEROES payload that is empty, not whole 16-byte ranges, or more ranges than offered (UNSUPP).</summary>
    BadRangeList,
    /// <summary>A range flag that is undefined for the request type (UNSUPP, §5.2.6.2).</summary>
    UnsupportedRangeFlags,
    /// <summary>A range of more sectors than max_discard_sectors / max_write_zeroes_sectors (UNSUPP).</summary>
    RangeTooLarge,
    /// <summary>The backend reported an I/O error for a valid request.</summary>
    IoFailed,
    /// <summary>An unexpected exception while serving: the request fails and the device asks for a reset.</summary>
    DeviceFault,
}

/// <summary>One DISCARD / WRITE_ZEROES range, copied out of guest memory once (struct virtio_blk_discard_write_zeroes).</summary>
public readonly record struct BlockRange(ulong Sector, uint Sectors, uint Flags);

/// <summary>What the parser checks a request against: the disk size in bytes (a multiple of the logical sector
/// size), the logical sector size and whether the disk is read-only.</summary>
public readonly record struct BlockDiskLimits(long Capacity, int LogicalSectorSize, bool ReadOnly);

/// <summary>
/// A virtio-blk request parsed from a descriptor chain (virtio 1.2 §5.2.6): the header read once, every length,
/// sector and range checked against the disk, so that running it needs no further checks, or the reason it is bad.
/// Framing is free (§2.6.4): the header may share buffers with data, and the status byte is the last byte of the
/// last, device-writable buffer. A value type, and the parser allocates nothing.
/// </summary>
public readonly struct BlockRequest
{
    public const int HeaderSize = 16, RangeSize = 16, IdLength = 20;
    /// <summary>A request moves at most 2 GiB - 1 bytes: vectored I/O counts in int, and no driver asks for more.</summary>
    public const long MaxDataBytes = int.MaxValue;
    /// <summary>Largest range of DISCARD and WRITE_ZEROES, in 512-byte sectors (2 GiB), as the configuration offers.</summary>
    public const uint MaxRangeSectors = 1u << 22;
    public const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupported = 2;

    private BlockRequest(BlockRequestError error, BlockRequestType type, GuestAddress? statusAt, ulong sector = 0, long offset = 0, long dataLength = 0, int rangeCount = 0)
    {
        Error = error; Type = type; StatusAt = statusAt; Sector = sector; Offset = offset; DataLength = dataLength; RangeCount = rangeCount;
    }

    public BlockRequestError Error { get; }
    public bool IsValid => Error == BlockRequestError.None;
    public BlockRequestType Type { get; }
    /// <summary>Where the status byte goes; null when the chain has nowhere to put it (the request then completes empty).</summary>
    public GuestAddress? StatusAt { get; }
    /// <summary>The header's sector, in 512-byte units whatever the logical sector size (§5.2.6).</summary>
    public ulong Sector { get; }
    /// <summary>IN/OUT: the disk byte offset, checked to be inside the disk.</summary>
    public long Offset { get; }
    /// <summary>IN/OUT: bytes moved; GET_ID: bytes of buffer offered.</summary>
    public long DataLength { get; }
    /// <summary>DISCARD/WRITE_ZEROES: how many ranges were copied into the caller's span, each checked.</summary>
    public int RangeCount { get; }

    /// <summary>The status byte for a request that failed with <paramref name="error"/>.</summary>
    public static byte StatusFor(BlockRequestError error) => error switch
    {
        BlockRequestError.None => StatusOk,
        BlockRequestError.UnsupportedType or BlockRequestError.BadRangeList or BlockRequestError.UnsupportedRangeFlags
            or BlockRequestError.RangeTooLarge => StatusUnsupported,
        _ => StatusIoErr,
    };

    /// <summary>A request refused for <paramref name="error"/> with its status going to <paramref name="statusAt"/> (if any).</summary>
    public static BlockRequest Refused(BlockRequestError error, GuestAddress? statusAt = null) => new(error, default, statusAt);

    /// <summary>
    /// Parses one chain, as the queue returned it, into a request or the reason it is bad. Nothing is trusted: the
    /// segments may come from anywhere (a fuzzer included), so their order, lengths and guest addresses are checked
    /// again; the header and ranges are read once into copies. Never throws on guest input.
    /// </summary>
    /// <param name="chain">The chain's buffers in order.</param>
    /// <param name="memory">Guest memory the buffers point into.</param>
    /// <param name="disk">Capacity, sector size and read-only flag to check against.</param>
    /// <param name="ranges">Receives DISCARD/WRITE_ZEROES ranges; its length is the most ranges accepted.</param>
    public static BlockRequest Parse(ReadOnlySpan<ChainSegment> chain, IGuestMemory memory, in BlockDiskLimits disk, Span<BlockRange> ranges)
    {
        // Readable buffers, then writable ones (§2.7.4.2); the lengths summed wide so nothing wraps.
        ulong readable = 0, writable = 0;
        bool seenWritable = false;
        foreach (var s in chain)
        {
            if (s.DeviceWritable) { seenWritable = true; writable += s.Length; }
            else if (seenWritable) return Refused(BlockRequestError.BadChain);
            else readable += s.Length;
        }
        if (chain.IsEmpty || !chain[^1].DeviceWritable) return Refused(BlockRequestError.StatusMissing);
        var last = chain[^1];
        if (last.Length == 0) return Refused(BlockRequestError.StatusTooShort);
        if (!last.Address.TryAdd(last.Length - 1, out var statusAt) || !memory.TryGetSpan(statusAt, 1, out _))
            return Refused(BlockRequestError.BadChain);

        Span<byte> header = stackalloc byte[HeaderSize];
        if (readable < HeaderSize) return Refused(BlockRequestError.HeaderTooShort, statusAt);
        if (!CopyReadable(chain, memory, 0, header)) return Refused(BlockRequestError.BadChain, statusAt);
        var type = (BlockRequestType)BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong payload = readable - HeaderSize, inData = writable - 1;   // the status byte is not data

        switch (type)
        {
            case BlockRequestType.In:
            case BlockRequestType.Out:
            {
                if (type == BlockRequestType.Out && disk.ReadOnly) return Refused(BlockRequestError.WriteToReadOnly, statusAt);
                ulong length = type == BlockRequestType.In ? inData : payload;
                var error = CheckExtent(disk, sector, length, MaxDataBytes, out long offset);
                if (error != BlockRequestError.None) return Refused(error, statusAt);
                return new BlockRequest(BlockRequestError.None, type, statusAt, sector, offset, (long)length);
            }
            case BlockRequestType.Flush:
                return new BlockRequest(BlockRequestError.None, type, statusAt, sector);
            case BlockRequestType.GetId:
                return new BlockRequest(BlockRequestError.None, type, statusAt, sector, dataLength: (long)Math.Min(inData, IdLength));
            case BlockRequestType.Discard:
            case BlockRequestType.WriteZeroes:
            {
                if (disk.ReadOnly) return Refused(BlockRequestError.WriteToReadOnly, statusAt);
                if (payload == 0 || payload % RangeSize != 0 || payload / RangeSize > (ulong)ranges.Length)
                    return Refused(BlockRequestError.BadRangeList, statusAt);
                int count = (int)(payload / RangeSize);
                Span<byte> raw = stackalloc byte[RangeSize];
                for (int i = 0; i < count; i++)
                {
                    if (!CopyReadable(chain, memory, HeaderSize + (ulong)i * RangeSize, raw)) return Refused(BlockRequestError.BadChain, statusAt);
                    var range = new BlockRange(BinaryPrimitives.ReadUInt64LittleEndian(raw), BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]),
                        BinaryPrimitives.ReadUInt32LittleEndian(raw[12..]));
                    // Only write-zeroes has a flag (unmap, bit 0); anything else is a request we do not understand.
                    uint allowed = type == BlockRequestType.WriteZeroes ? 1u : 0u;
                    if ((range.Flags & ~allowed) != 0) return Refused(BlockRequestError.UnsupportedRangeFlags, statusAt);
                    if (range.Sectors > MaxRangeSectors) return Refused(BlockRequestError.RangeTooLarge, statusAt);
                    var error = CheckExtent(disk, range.Sector, (ulong)range.Sectors * 512, (ulong)MaxRangeSectors * 512, out _);
                    if (error != BlockRequestError.None) return Refused(error, statusAt);
                    ranges[i] = range;
                }
                return new BlockRequest(BlockRequestError.None, type, statusAt, sector, rangeCount: count);
            }
            default:
                return new BlockRequest(BlockRequestError.UnsupportedType, type, statusAt, sector);
        }
    }

    /// <summary>The byte offset of <paramref name="length"/> bytes at 512-byte sector <paramref name="sector"/>, if they
    /// are whole logical sectors inside the disk. All arithmetic is checked against overflow first.</summary>
    private static BlockRequestError CheckExtent(in BlockDiskLimits disk, ulong sector, ulong length, ulong maxLength, out long offset)
    {
        offset = 0;
        if (length > maxLength) return BlockRequestError.LengthOverflow;
        ulong capacity = (ulong)Math.Max(disk.Capacity, 0);
        if (sector > capacity / 512) return BlockRequestError.BeyondCapacity;   // also keeps sector * 512 from overflowing
        ulong start = sector * 512;
        ulong sectorSize = (ulong)Math.Max(disk.LogicalSectorSize, 1);
        if (start % sectorSize != 0 || length % sectorSize != 0) return BlockRequestError.NotSectorAligned;
        if (length > capacity - start) return BlockRequestError.BeyondCapacity;
        offset = (long)start;
        return BlockRequestError.None;
    }

    /// <summary>Copies device-readable bytes from <paramref name="skip"/> on; false unless all of <paramref name="into"/> was filled.</summary>
    private static bool CopyReadable(ReadOnlySpan<ChainSegment> chain, IGuestMemory memory, ulong skip, Span<byte> into)
    {
        int copied = 0;
        foreach (var s in chain)
        {
            if (s.DeviceWritable || copied == into.Length) break;
            if (skip >= s.Length) { skip -= s.Length; continue; }
            int take = (int)Math.Min(s.Length - skip, (ulong)(into.Length - copied));
            if (!s.Address.TryAdd(skip, out var at) || !memory.TryRead(at, into.Slice(copied, take))) return false;
            copied += take;
            skip = 0;
        }
        return copied == into.Length;
    }

    /// <summary>
    /// The data buffers of a valid IN, OUT or GET_ID request as host pointers into guest RAM: for IN and GET_ID the
    /// writable bytes before the status byte, for OUT the readable bytes after the header. How many were filled, or
    /// -1 if a buffer is not in guest memory or there are more than <paramref name="into"/> holds.
    /// </summary>
    public int GatherData(ReadOnlySpan<ChainSegment> chain, IGuestMemory memory, Span<IoBuffer> into)
    {
        bool writable = Type != BlockRequestType.Out;
        ulong skip = writable ? 0UL : HeaderSize, left = (ulong)DataLength;
        int count = 0;
        foreach (var s in chain)
        {
            if (left == 0) break;
            if (s.DeviceWritable != writable) continue;
            if (skip >= s.Length) { skip -= s.Length; continue; }
            ulong take = Math.Min(s.Length - skip, left);
            if (count == into.Length || !s.Address.TryAdd(skip, out var at) || !memory.TryGetSpan(at, (int)take, out var span)) return -1;
            unsafe
            {
                // Guest RAM is a fixed host mapping for the life of the VM: the pointer outlives the fixed block.
                fixed (byte* p = span) into[count++] = new IoBuffer((nint)p, span.Length);
            }
            left -= take;
            skip = 0;
        }
        return left == 0 ? count : -1;
    }
}
