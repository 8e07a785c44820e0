using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Block;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Virtio;

/// <summary>
/// BlockRequest.Parse on hand-made chains: a request is a typed value or a typed reason before anything runs,
/// whatever the segments say (the parser trusts no order, length, sector or address).
/// </summary>
public sealed class BlockRequestTests : IDisposable
{
    private const ulong Header = 0x1000, Data = 0x2000, Status = 0x9000, RamSize = 1 << 20;
    private static readonly BlockDiskLimits Disk = new(1 << 20, 512, ReadOnly: false);
    private readonly GuestMemory _memory = new([new MemoryRegion(new GuestAddress(0), RamSize)]);
    private readonly BlockRange[] _ranges = new BlockRange[VirtioBlock.MaxDiscardSegments];

    public void Dispose() => _memory.Dispose();

    private static ChainSegment R(ulong at, uint len) => new(new GuestAddress(at), len, false);
    private static ChainSegment W(ulong at, uint len) => new(new GuestAddress(at), len, true);

    private void WriteHeader(uint type, ulong sector, ulong at = Header)
    {
        var h = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(h, type);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), sector);
        _memory.WriteExactly(new GuestAddress(at), h);
    }

    private void WriteRanges(params (ulong Sector, uint Count, uint Flags)[] ranges)
    {
        var b = new byte[16 * ranges.Length];
        for (int i = 0; i < ranges.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16 * i), ranges[i].Sector);
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16 * i + 8), ranges[i].Count);
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16 * i + 12), ranges[i].Flags);
        }
        _memory.WriteExactly(new GuestAddress(Data), b);
    }

    private BlockRequest Parse(BlockDiskLimits disk, params ChainSegment[] chain) => BlockRequest.Parse(chain, _memory, disk, _ranges);
    private BlockRequest Parse(params ChainSegment[] chain) => Parse(Disk, chain);

    [Fact]
    public void Read_IsParsedIntoOffsetLengthAndStatusAddress()
    {
        WriteHeader(VirtioBlock.TypeIn, 3);
        var r = Parse(R(Header, 16), W(Data, 1024), W(Status, 1));
        Assert.True(r.IsValid);
        Assert.Equal(BlockRequestType.In, r.Type);
        Assert.Equal(3 * 512L, r.Offset);
        Assert.Equal(1024L, r.DataLength);
        Assert.Equal(new GuestAddress(Status), r.StatusAt);
        var buffers = new IoBuffer[4];
        Assert.Equal(1, r.GatherData([R(Header, 16), W(Data, 1024), W(Status, 1)], _memory, buffers));
        Assert.Equal((nuint)1024, buffers[0].Length);
    }

    [Fact]
    public void FreeFraming_HeaderSplitAcrossBuffers_AndStatusSharingTheDataBuffer_IsAccepted()
    {
        WriteHeader(VirtioBlock.TypeOut, 8);
        // The header's last 8 bytes share a buffer with the 512 data bytes; the status is the last byte of a writable one.
        var chain = new[] { R(Header, 8), R(Header + 8, 8 + 512), W(Status, 4) };
        var r = Parse(chain);
        Assert.True(r.IsValid);
        Assert.Equal(512L, r.DataLength);
        Assert.Equal(new GuestAddress(Status + 3), r.StatusAt);
        var buffers = new IoBuffer[4];
        Assert.Equal(1, r.GatherData(chain, _memory, buffers));
        Assert.Equal((nuint)512, buffers[0].Length);
    }

    public static TheoryData<string, BlockRequestError, byte?> Refusals => new()
    {
        { "no writable status", BlockRequestError.StatusMissing, null },
        { "empty status buffer", BlockRequestError.StatusTooShort, null },
        { "status outside RAM", BlockRequestError.BadChain, null },
        { "readable after writable", BlockRequestError.BadChain, null },
        { "short header", BlockRequestError.HeaderTooShort, VirtioBlock.StatusIoErr },
        { "writable header", BlockRequestError.HeaderTooShort, VirtioBlock.StatusIoErr },
        { "data not whole sectors", BlockRequestError.NotSectorAligned, VirtioBlock.StatusIoErr },
        { "4K disk, odd 512-byte sector", BlockRequestError.NotSectorAligned, VirtioBlock.StatusIoErr },
        { "one past the last sector", BlockRequestError.BeyondCapacity, VirtioBlock.StatusIoErr },
        { "runs off the end", BlockRequestError.BeyondCapacity, VirtioBlock.StatusIoErr },
        { "sector * 512 overflows", BlockRequestError.BeyondCapacity, VirtioBlock.StatusIoErr },
        { "data over 2 GiB", BlockRequestError.LengthOverflow, VirtioBlock.StatusIoErr },
        { "data over 4 GiB", BlockRequestError.LengthOverflow, VirtioBlock.StatusIoErr },
        { "write to read-only", BlockRequestError.WriteToReadOnly, VirtioBlock.StatusIoErr },
        { "discard on read-only", BlockRequestError.WriteToReadOnly, VirtioBlock.StatusIoErr },
        { "unknown type", BlockRequestError.UnsupportedType, VirtioBlock.StatusUnsupported },
        { "discard without ranges", BlockRequestError.BadRangeList, VirtioBlock.StatusUnsupported },
        { "discard with a partial range", BlockRequestError.BadRangeList, VirtioBlock.StatusUnsupported },
        { "discard with 33 ranges", BlockRequestError.BadRangeList, VirtioBlock.StatusUnsupported },
        { "discard with unmap", BlockRequestError.UnsupportedRangeFlags, VirtioBlock.StatusUnsupported },
        { "write-zeroes with an unknown flag", BlockRequestError.UnsupportedRangeFlags, VirtioBlock.StatusUnsupported },
        { "range over max sectors", BlockRequestError.RangeTooLarge, VirtioBlock.StatusUnsupported },
        { "range past the end", BlockRequestError.BeyondCapacity, VirtioBlock.StatusIoErr },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void BadRequest_IsRefusedWithItsReason_BeforeAnythingRuns(string scenario, BlockRequestError reason, byte? status)
    {
        var disk = Disk;
        ChainSegment[] chain;
        WriteHeader(VirtioBlock.TypeIn, 0);
        switch (scenario)
        {
            case "no writable status": chain = [R(Header, 16), R(Data, 512)]; break;
            case "empty status buffer": chain = [R(Header, 16), W(Data, 512), W(Status, 0)]; break;
            case "status outside RAM": chain = [R(Header, 16), W(RamSize, 1)]; break;
            case "readable after writable": chain = [R(Header, 16), W(Data, 512), R(Data, 512), W(Status, 1)]; break;
            case "short header": chain = [R(Header, 10), W(Status, 1)]; break;
            case "writable header": chain = [W(Header, 16), W(Status, 1)]; break;
            case "data not whole sectors": chain = [R(Header, 16), W(Data, 100), W(Status, 1)]; break;
            case "4K disk, odd 512-byte sector":
                disk = new BlockDiskLimits(1 << 20, 4096, false);
                WriteHeader(VirtioBlock.TypeIn, 1);
                chain = [R(Header, 16), W(Data, 4096), W(Status, 1)];
                break;
            case "one past the last sector": WriteHeader(VirtioBlock.TypeIn, 2048); chain = [R(Header, 16), W(Data, 512), W(Status, 1)]; break;
            case "runs off the end": WriteHeader(VirtioBlock.TypeIn, 2047); chain = [R(Header, 16), W(Data, 1024), W(Status, 1)]; break;
            case "sector * 512 overflows": WriteHeader(VirtioBlock.TypeIn, ulong.MaxValue / 256); chain = [R(Header, 16), W(Data, 512), W(Status, 1)]; break;
            case "data over 2 GiB":
                disk = new BlockDiskLimits(8L << 30, 512, false);
                chain = [R(Header, 16), W(Data, 1u << 30), W(Data, 1u << 30), W(Status, 1)];   // lengths only: never touched
                break;
            case "data over 4 GiB":
                disk = new BlockDiskLimits(8L << 30, 512, false);
                chain = [R(Header, 16), W(Data, int.MaxValue), W(Data, int.MaxValue), W(Data, 4), W(Status, 1)];
                break;
            case "write to read-only":
                disk = Disk with { ReadOnly = true };
                WriteHeader(VirtioBlock.TypeOut, 0);
                chain = [R(Header, 16), R(Data, 512), W(Status, 1)];
                break;
            case "discard on read-only":
                disk = Disk with { ReadOnly = true };
                WriteHeader(VirtioBlock.TypeDiscard, 0);
                WriteRanges((0, 1, 0));
                chain = [R(Header, 16), R(Data, 16), W(Status, 1)];
                break;
            case "unknown type": WriteHeader(77, 0); chain = [R(Header, 16), W(Data, 512), W(Status, 1)]; break;
            case "discard without ranges": WriteHeader(VirtioBlock.TypeDiscard, 0); chain = [R(Header, 16), W(Status, 1)]; break;
            case "discard with a partial range": WriteHeader(VirtioBlock.TypeDiscard, 0); chain = [R(Header, 16), R(Data, 20), W(Status, 1)]; break;
            case "discard with 33 ranges": WriteHeader(VirtioBlock.TypeDiscard, 0); chain = [R(Header, 16), R(Data, 16 * 33), W(Status, 1)]; break;
            case "discard with unmap":
                WriteHeader(VirtioBlock.TypeDiscard, 0);
                WriteRanges((0, 1, 0), (4, 1, 1));
                chain = [R(Header, 16), R(Data, 32), W(Status, 1)];
                break;
            case "write-zeroes with an unknown flag":
                WriteHeader(VirtioBlock.TypeWriteZeroes, 0);
                WriteRanges((0, 1, 2));
                chain = [R(Header, 16), R(Data, 16), W(Status, 1)];
                break;
            case "range over max sectors":
                WriteHeader(VirtioBlock.TypeWriteZeroes, 0);
                WriteRanges((0, BlockRequest.MaxRangeSectors + 1, 0));
                chain = [R(Header, 16), R(Data, 16), W(Status, 1)];
                break;
            case "range past the end":
                WriteHeader(VirtioBlock.TypeDiscard, 0);
                WriteRanges((2040, 9, 0));
                chain = [R(Header, 16), R(Data, 16), W(Status, 1)];
                break;
            default: throw new ArgumentException(scenario);
        }
        var r = Parse(disk, chain);
        Assert.False(r.IsValid);
        Assert.Equal(reason, r.Error);
        Assert.Equal(status.HasValue, r.StatusAt.HasValue);
        if (status is { } s) Assert.Equal(s, BlockRequest.StatusFor(r.Error));
    }

    [Fact]
    public void DiscardRanges_AreCopiedOnce_AndCheckedInsideTheDisk()
    {
        WriteHeader(VirtioBlock.TypeWriteZeroes, 0);
        WriteRanges((0, 8, 1), (2040, 8, 0));   // up to the very last sector
        var r = Parse(R(Header, 16), R(Data, 32), W(Status, 1));
        Assert.True(r.IsValid);
        Assert.Equal(2, r.RangeCount);
        _memory.WriteExactly(new GuestAddress(Data), new byte[32]);   // the guest changes its mind afterwards
        Assert.Equal(new BlockRange(2040, 8, 0), _ranges[1]);
        Assert.Equal(new BlockRange(0, 8, 1), _ranges[0]);
    }

    [Fact]
    public void RangeOfExactlyMaxSectors_IsAccepted()
    {
        WriteHeader(VirtioBlock.TypeDiscard, 0);
        WriteRanges((8, BlockRequest.MaxRangeSectors, 0));      // 2 GiB: one more byte than a data request may move
        var r = Parse(new BlockDiskLimits(4L << 30, 512, false), R(Header, 16), R(Data, 16), W(Status, 1));
        Assert.Equal(BlockRequestError.None, r.Error);
        Assert.Equal(new BlockRange(8, BlockRequest.MaxRangeSectors, 0), _ranges[0]);
    }

    [Fact]
    public void GetId_OffersAtMostTwentyBytes()
    {
        WriteHeader(VirtioBlock.TypeGetId, 0);
        var r = Parse(R(Header, 16), W(Data, 512), W(Status, 1));
        Assert.True(r.IsValid);
        Assert.Equal(20L, r.DataLength);
    }

    [Fact]
    public void RandomChains_NeverThrow()
    {
        // A cheap stand-in for the fuzzer: arbitrary segments and header bytes give a request or a reason, never an exception.
        var random = new Random(11);
        var chain = new ChainSegment[6];
        var bytes = new byte[64];
        for (int i = 0; i < 20_000; i++)
        {
            random.NextBytes(bytes);
            _memory.WriteExactly(new GuestAddress(Header), bytes);
            int n = random.Next(chain.Length + 1);
            for (int k = 0; k < n; k++)
            {
                ulong at = random.Next(4) == 0 ? (ulong)random.NextInt64() : Header + (ulong)random.Next(0x3000);
                uint len = random.Next(4) == 0 ? (uint)random.NextInt64(uint.MaxValue + 1L) : (uint)random.Next(1100);
                chain[k] = new ChainSegment(new GuestAddress(at), len, random.Next(2) == 0);
            }
            var r = BlockRequest.Parse(chain.AsSpan(0, n), _memory, Disk, _ranges);
            if (r.IsValid && r.Type != BlockRequestType.Discard && r.Type != BlockRequestType.WriteZeroes && r.Type != BlockRequestType.Flush)
                r.GatherData(chain.AsSpan(0, n), _memory, new IoBuffer[8]);
        }
    }
}
