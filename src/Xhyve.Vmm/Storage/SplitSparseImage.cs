using System.Buffers;
using System.Buffers.Binary;

namespace Xhyve.Vmm.Storage;

/// <summary>How a split/sparse image is laid out (the options of -s N,virtio-blk,PATH,...).</summary>
/// <param name="Size">Virtual disk size in bytes (size=).</param>
/// <param name="SplitSize">Segment size (split=), or null for one segment named PATH.</param>
/// <param name="Sparse">Only written, non-zero sectors are stored, through PATH.lut.</param>
/// <param name="SectorSize">The logical sector size: the allocation unit of sparse images.</param>
public sealed record SplitImageLayout(long Size, long? SplitSize, bool Sparse, int SectorSize)
{
    public long SegmentSize => SplitSize ?? Size;
    /// <summary>ceil(Size / SegmentSize), without the overflow of Size + SegmentSize - 1 for sizes near long.MaxValue;
    /// checked, so a layout <see cref="Validate"/> would refuse throws rather than wrapping to a wrong count.</summary>
    public int SegmentCount => checked((int)CeilingDivide(Size, SegmentSize));
    internal static long CeilingDivide(long value, long divisor) => value / divisor + (value % divisor != 0 ? 1 : 0);
    public long Sectors => Size / SectorSize;

    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (!Storage.SectorSize.IsValidLogical(SectorSize)) problems.Add($"sectorsize={SectorSize}: must be a power of two from {Storage.SectorSize.Min} to {Storage.SectorSize.Max}");
        if (Size <= 0) problems.Add("size=: the disk size must be positive");
        else if (Size % SectorSize != 0) problems.Add($"size={Size}: not a multiple of the {SectorSize}-byte sector");
        // Its descriptor could not be read back (ImageGeometry.MaxImageSize says why the bound).
        else if (Size > ImageGeometry.MaxImageSize) problems.Add($"size={Size}: larger than the largest disk an image may be ({ImageGeometry.Human(ImageGeometry.MaxImageSize)})");
        if (SplitSize is { } split)
        {
            if (split <= 0 || split % SectorSize != 0) problems.Add($"split={split}: must be a positive multiple of the {SectorSize}-byte sector");
            else if (Size > 0 && CeilingDivide(Size, split) > 9999) problems.Add($"split={split}: more than 9999 segments");
        }
        if (Sparse && SegmentSize / SectorSize > uint.MaxValue) problems.Add("split=: a sparse segment may hold at most 2^32-1 sectors");
        return problems;
    }
}

/// <summary>
/// xhyve's split and sparse disk images (../shared/reference/sparse-disk.md). Segment files PATH.0000,
/// PATH.0001, ... (or PATH alone without split=) hold the data; with sparse, PATH.lut maps every logical
/// sector of the disk to a sector index inside its segment (0xFFFFFFFF: never written, reads as zeroes).
/// A newly written sector is appended to its segment, made durable, and only then entered in the LUT,
/// so a crash leaves each sector with its old or its new content. Allocation is serialised per segment.
/// </summary>
public sealed class SplitSparseImage : IBlockBackend
{
    public const uint Unallocated = 0xFFFF_FFFF;

    private readonly SplitImageLayout _layout;
    private readonly ImageFile[] _segments;
    private readonly string[] _segmentPaths;
    private readonly long[] _segmentSectors;       // sparse: sectors stored in each segment so far
    private readonly Lock[] _segmentLocks;
    // Every change of a LUT entry updates memory and file under this lock, so both see the changes in one order.
    private readonly Lock _lutLock = new();
    private readonly ImageFile? _lutHandle;
    private readonly SparseLut _lut = SparseLut.Empty;
    private readonly string _lutPath;

    public string Path { get; }
    public long Size => _layout.Size;
    public int LogicalSectorSize => _layout.SectorSize;
    public bool ReadOnly { get; }

    /// <summary>Segment file name i: PATH.0000 style with split=, PATH itself without.</summary>
    public static string SegmentPath(string path, SplitImageLayout layout, int i) => layout.SplitSize == null ? path : $"{path}.{i:D4}";

    public static string LutPath(string path) => path + ".lut";

    private SplitSparseImage(string path, SplitImageLayout layout, bool readOnly, ImageFileSystem files)
    {
        Path = path;
        _layout = layout;
        ReadOnly = readOnly;
        _lutPath = LutPath(path);
        int n = layout.SegmentCount;
        _segments = new ImageFile[n];
        _segmentPaths = Enumerable.Range(0, n).Select(i => SegmentPath(path, layout, i)).ToArray();
        _segmentSectors = new long[n];
        _segmentLocks = Enumerable.Range(0, n).Select(_ => new Lock()).ToArray();
        // Only an image of which no file exists is created: a missing segment or LUT of an existing image
        // is damage, and a fresh empty file in its place would let the guest run on an empty disk.
        var imageFiles = layout.Sparse ? [.. _segmentPaths, _lutPath] : _segmentPaths;
        var missing = imageFiles.Where(f => !files.Exists(f)).ToList();
        bool creating = missing.Count == imageFiles.Length;
        if (creating && readOnly) throw new StorageException($"{path}: image does not exist (a read-only disk cannot be created)");
        if (!creating && missing.Count > 0)
            throw new StorageException($"{missing[0]}: missing from the existing image {path} (its other files are there); not creating an empty one in its place");
        try
        {
            for (int i = 0; i < n; i++)
            {
                _segments[i] = files.Open(_segmentPaths[i], readOnly, create: creating);
                long length = _segments[i].Length;
                if (layout.Sparse) _segmentSectors[i] = length / layout.SectorSize;  // a partial tail sector is dropped below, once all is checked
                else if (length < layout.SegmentSize && readOnly)
                    throw new StorageException($"{_segmentPaths[i]}: segment is {length} bytes, expected {layout.SegmentSize}");
            }
            if (layout.Sparse)
            {
                _lutHandle = files.Open(_lutPath, readOnly, create: creating);
                _lut = LoadLut(creating);
            }
            // Every check passed: only now may the files change (a refused image is left byte-for-byte as it was).
            if (!readOnly)
                for (int i = 0; i < n; i++)
                {
                    long length = _segments[i].Length;
                    if (layout.Sparse && length % layout.SectorSize != 0)
                        // A crash mid-append leaves a partial sector no LUT entry points at: drop it.
                        _segments[i].SetLength(length - length % layout.SectorSize);
                    else if (!layout.Sparse && length < layout.SegmentSize)
                        _segments[i].SetLength(layout.SegmentSize); // sparse on the host filesystem
                }
            // The new files' names must survive a power cut too, or the image would reopen with files missing.
            if (creating) files.SyncFolderOf(path);
        }
        catch
        {
            Dispose();
            // A new image that could not be made whole (ENOSPC writing the LUT, ...) is removed again.
            if (creating)
                foreach (var f in imageFiles) files.Delete(f);
            throw;
        }
    }

    /// <summary>Opens the image at <paramref name="path"/>, creating it when none of its files exist (and not read-only).
    /// A missing segment or LUT, a LUT of the wrong size, one pointing past the end of a segment or giving two
    /// sectors the same place, is refused and the files are left untouched.</summary>
    public static SplitSparseImage Open(string path, SplitImageLayout layout, bool readOnly) =>
        Open(path, layout, readOnly, HostImageFiles.Instance);

    /// <summary>As <see cref="Open(string, SplitImageLayout, bool)"/>, through <paramref name="files"/>: tests
    /// record the writes and syncs there to simulate power cuts.</summary>
    internal static SplitSparseImage Open(string path, SplitImageLayout layout, bool readOnly, ImageFileSystem files)
    {
        var problems = layout.Validate();
        if (problems.Count > 0) throw new StorageException($"{path}: {string.Join("; ", problems)}");
        return new SplitSparseImage(path, layout, readOnly, files);
    }

    private SparseLut LoadLut(bool creating)
    {
        long expected = _layout.Sectors * 4;
        long length = _lutHandle!.Length;
        if (creating && length == 0)
        {
            var fresh = new SparseLut(_layout.Sectors);
            var ones = new byte[(int)Math.Min(expected, 1 << 20)];
            ones.AsSpan().Fill(0xFF);
            for (long at = 0; at < expected; at += ones.Length)
                _lutHandle.Write(ones.AsSpan(0, (int)Math.Min(ones.Length, expected - at)), at);
            _lutHandle.DataSync();
            return fresh;
        }
        if (length != expected)
            throw new StorageException($"{_lutPath}: LUT is {length} bytes; a {_layout.Size}-byte disk of {_layout.SectorSize}-byte sectors needs {expected}");
        var lut = new SparseLut(_layout.Sectors);
        // One bit per stored sector of each segment: two LUT entries naming the same one would make
        // writes to either sector overwrite the other.
        var used = new ulong[_segments.Length][];
        var raw = new byte[(int)Math.Min(expected, 1 << 20)];
        for (long at = 0; at < expected; at += raw.Length)
        {
            var chunk = raw.AsSpan(0, (int)Math.Min(raw.Length, expected - at));
            for (int done = 0; done < chunk.Length;)
            {
                int got = _lutHandle.Read(chunk[done..], at + done);
                if (got == 0) throw new StorageException($"{_lutPath}: short read");
                done += got;
            }
            for (int i = 0; i < chunk.Length; i += 4)
            {
                long s = (at + i) / 4;
                uint v = BinaryPrimitives.ReadUInt32LittleEndian(chunk[i..]);
                if (v == Unallocated) continue;
                int seg = SegmentOf(s);
                if (v >= _segmentSectors[seg])
                    throw new StorageException($"{_lutPath}: entry for sector {s} points to sector {v} of {_segmentPaths[seg]}, which holds only {_segmentSectors[seg]}");
                var bits = used[seg] ??= new ulong[(_segmentSectors[seg] + 63) / 64];
                if ((bits[v >> 6] & (1UL << (int)(v & 63))) != 0)
                    throw new StorageException($"{_lutPath}: entry for sector {s} points to sector {v} of {_segmentPaths[seg]}, which another sector's entry already uses");
                bits[v >> 6] |= 1UL << (int)(v & 63);
                lut[s] = v;
            }
        }
        return lut;
    }

    private int SegmentOf(long sector) => (int)(sector * _layout.SectorSize / _layout.SegmentSize);

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: range {offset}+{length} is outside the {Size}-byte disk");
        if (_layout.Sparse && (offset % LogicalSectorSize != 0 || length % LogicalSectorSize != 0))
            throw new ArgumentException($"{Path}: sparse images take whole {LogicalSectorSize}-byte sectors (offset {offset}, length {length})");
    }

    public void Read(long offset, Span<byte> buffer) => ScatterGather.Read(this, offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data) => ScatterGather.Write(this, offset, data);

    /// <summary>One preadv per run of the request: a piece of one segment (split), or sectors that are allocated and
    /// stored one after the other in one segment (sparse). Never-written sectors are zeroed without I/O.</summary>
    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        long length = ScatterGather.Total(buffers);
        CheckRange(offset, length);
        var cursor = new ScatterCursor(buffers);
        var iov = VectoredIo.ThreadScratch(buffers.Length);
        if (!_layout.Sparse)
        {
            for (long pos = 0; pos < length;)
            {
                var (seg, inSeg, n) = Piece(offset + pos, length - pos);
                ReadRun(seg, inSeg, ref cursor, n, iov);
                pos += n;
            }
            return;
        }
        int ss = LogicalSectorSize;
        long end = (offset + length) / ss;
        for (long sector = offset / ss; sector < end;)
        {
            uint index = _lut[sector];
            long n;
            if (index == Unallocated)
            {
                n = _lut.RunLength(sector, end - sector);
                cursor.Clear(n * ss);
            }
            else
            {
                int seg = SegmentOf(sector);
                n = _lut.RunLength(sector, Math.Min(end, (seg + 1) * SectorsPerSegment) - sector);
                ReadRun(seg, (long)index * ss, ref cursor, n * ss, iov);
            }
            sector += n;
        }
    }

    private long SectorsPerSegment => _layout.SegmentSize / _layout.SectorSize;

    /// <summary>The next <paramref name="bytes"/> of the request from segment <paramref name="seg"/> at
    /// <paramref name="at"/>, in one preadv; past the end of a host-sparse segment reads zeroes.</summary>
    private void ReadRun(int seg, long at, ref ScatterCursor cursor, long bytes, Span<IoBuffer> iov)
    {
        var start = cursor;
        int used = cursor.Take(bytes, iov);
        long got = _segments[seg].ReadVectored(iov[..used], at);
        if (got < bytes)
        {
            start.Skip(got);
            start.Clear(bytes - got);
        }
    }

    /// <summary>The part of a request at disk offset <paramref name="at"/> that lies in one segment:
    /// requests crossing a segment boundary are split.</summary>
    private (int Segment, long InSegment, long Length) Piece(long at, long remaining)
    {
        int seg = (int)(at / _layout.SegmentSize);
        long inSeg = at % _layout.SegmentSize;
        return (seg, inSeg, Math.Min(remaining, _layout.SegmentSize - inSeg));
    }

    /// <summary>
    /// One pwritev per run (see <see cref="ReadVectored"/>). On a sparse image the never-written sectors with data are
    /// given slots together, consecutively at the end of their segment (so reading them back is one run again), their
    /// data written and each such segment synced, and only then are their LUT entries entered, in one write of the
    /// LUT range the request covers (docs/storage-durability.md, rule 1).
    /// </summary>
    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        if (ReadOnly) throw new InvalidOperationException($"{Path}: the disk is read-only");
        long length = ScatterGather.Total(buffers);
        CheckRange(offset, length);
        var iov = VectoredIo.ThreadScratch(buffers.Length);
        if (!_layout.Sparse)
        {
            var cursor = new ScatterCursor(buffers);
            for (long pos = 0; pos < length;)
            {
                var (seg, inSeg, n) = Piece(offset + pos, length - pos);
                WriteRun(seg, inSeg, ref cursor, n, iov);
                pos += n;
            }
            return;
        }
        int ss = LogicalSectorSize;
        long first = offset / ss;
        int sectors = (int)(length / ss);
        if (sectors == 0) return;
        var plan = ArrayPool<Run>.Shared.Rent(sectors);
        try
        {
            var runs = plan.AsSpan(0, Plan(first, sectors, buffers, plan));
            bool allocates = Reserve(runs);
            var cursor = new ScatterCursor(buffers);
            for (int i = 0; i < runs.Length;)
            {
                var run = runs[i];
                if (run.Kind == RunKind.Skipped) { cursor.Skip((long)run.Count * ss); i++; continue; }
                // A sector overwritten in place may be stored just before the request's new ones: one write for both.
                long count = run.Count;
                int j = i + 1;
                while (j < runs.Length && runs[j].Kind != RunKind.Skipped && runs[j].Segment == run.Segment && runs[j].Index == run.Index + count)
                    count += runs[j++].Count;
                WriteRun(run.Segment, (long)run.Index * ss, ref cursor, count * ss, iov);
                i = j;
            }
            if (allocates) Publish(runs, buffers);
        }
        finally { ArrayPool<Run>.Shared.Return(plan); }
    }

    private void WriteRun(int seg, long at, ref ScatterCursor cursor, long bytes, Span<IoBuffer> iov)
    {
        int used = cursor.Take(bytes, iov);
        _segments[seg].WriteVectored(iov[..used], at);
    }

    private enum RunKind : byte
    {
        /// <summary>Allocated: overwritten where the LUT points.</summary>
        Stored,
        /// <summary>Never written, with data: needs a new slot.</summary>
        New,
        /// <summary>Never written and written with zeroes: nothing is stored.</summary>
        Skipped,
    }

    /// <summary>Consecutive sectors of a write request handled alike: <see cref="Index"/> is the slot of the first (for
    /// <see cref="RunKind.Stored"/> runs the next sectors' slots follow it; <see cref="RunKind.New"/> runs get theirs in
    /// <see cref="Reserve"/>).</summary>
    private struct Run
    {
        public long Sector;
        public int Count;
        public int Segment;
        public uint Index;
        public RunKind Kind;
    }

    /// <summary>Splits a sparse write of <paramref name="sectors"/> sectors from <paramref name="first"/> into runs;
    /// returns how many.</summary>
    private int Plan(long first, int sectors, ReadOnlySpan<IoBuffer> buffers, Run[] plan)
    {
        int ss = LogicalSectorSize, runs = 0;
        var cursor = new ScatterCursor(buffers);
        for (long sector = first; sector < first + sectors; sector++)
        {
            uint index = _lut[sector];
            int seg = SegmentOf(sector);
            RunKind kind;
            if (index != Unallocated) { kind = RunKind.Stored; cursor.Skip(ss); }
            else kind = cursor.NextIsZero(ss) ? RunKind.Skipped : RunKind.New;
            if (runs > 0 && plan[runs - 1] is var last && last.Kind == kind
                && (kind == RunKind.Skipped || last.Segment == seg && (kind == RunKind.New || index == last.Index + (uint)last.Count)))
            {
                plan[runs - 1].Count++;
                continue;
            }
            plan[runs++] = new Run { Sector = sector, Count = 1, Segment = seg, Index = index, Kind = kind };
        }
        return runs;
    }

    /// <summary>Gives the new runs their slots: per segment, all the request needs there in one block at its end, taken
    /// under the segment's lock so concurrent writers never share a slot. False when nothing is new.</summary>
    private bool Reserve(Span<Run> runs)
    {
        bool any = false;
        // Runs are in sector order, so their segments never decrease: a segment's runs are consecutive.
        for (int i = 0; i < runs.Length;)
        {
            int seg = runs[i].Segment, j = i;
            long needed = 0;
            for (; j < runs.Length && runs[j].Segment == seg; j++)
                if (runs[j].Kind == RunKind.New) needed += runs[j].Count;
            if (needed > 0)
            {
                long slot;
                lock (_segmentLocks[seg])
                {
                    slot = _segmentSectors[seg];
                    // Slots are never reused (rule 5), so discards and rewrites can use up a segment's index space.
                    if (slot + needed > Unallocated)
                        throw new StorageException($"{_segmentPaths[seg]}: no sector slot left (the LUT's indexes are 32-bit); compact the image");
                    _segmentSectors[seg] = slot + needed;
                }
                for (int k = i; k < j; k++)
                    if (runs[k].Kind == RunKind.New) { runs[k].Index = (uint)slot; slot += runs[k].Count; }
                any = true;
            }
            i = j;
        }
        return any;
    }

    /// <summary>After the new runs' data is written: syncs their segments, then enters their slots in the LUT with one
    /// write of the LUT range from the first new sector to the last (the entries between as memory has them).</summary>
    private void Publish(ReadOnlySpan<Run> runs, ReadOnlySpan<IoBuffer> buffers)
    {
        int synced = -1;
        long lo = -1, hi = 0;
        foreach (var run in runs)
        {
            if (run.Kind != RunKind.New) continue;
            if (run.Segment != synced) _segments[synced = run.Segment].DataSync();
            if (lo < 0) lo = run.Sector;
            hi = run.Sector + run.Count;
        }
        int bytes = checked((int)((hi - lo) * 4));
        byte[]? rented = null;
        Span<byte> entries = bytes <= 1024 ? stackalloc byte[1024] : (rented = ArrayPool<byte>.Shared.Rent(bytes));
        try
        {
            lock (_lutLock)
            {
                foreach (var run in runs)
                {
                    if (run.Kind != RunKind.New) continue;
                    for (int k = 0; k < run.Count; k++)
                    {
                        long sector = run.Sector + k;
                        uint now = _lut[sector];
                        if (now == Unallocated) { _lut[sector] = run.Index + (uint)k; continue; }
                        // A concurrent request gave the sector a slot while ours was syncing: ours stays unused
                        // (an offline compact reclaims it) and the data goes where the LUT points.
                        var cursor = new ScatterCursor(buffers);
                        cursor.Skip((sector - runs[0].Sector) * LogicalSectorSize);
                        WriteRun(SegmentOf(sector), (long)now * LogicalSectorSize, ref cursor, LogicalSectorSize, VectoredIo.ThreadScratch(buffers.Length));
                    }
                }
                for (long s = lo; s < hi; s++) BinaryPrimitives.WriteUInt32LittleEndian(entries[(int)((s - lo) * 4)..], _lut[s]);
                _lutHandle!.Write(entries[..bytes], lo * 4);
            }
        }
        finally { if (rented != null) ArrayPool<byte>.Shared.Return(rented); }
    }

    /// <summary>Sparse images unmap the range (as write-zeroes does); fully allocated ones keep their data.</summary>
    public void Discard(long offset, long length)
    {
        if (_layout.Sparse) WriteZeroes(offset, length);
        else CheckRange(offset, length);
    }

    public void WriteZeroes(long offset, long length)
    {
        if (ReadOnly) throw new InvalidOperationException($"{Path}: the disk is read-only");
        CheckRange(offset, length);
        if (!_layout.Sparse)
        {
            var zeros = new byte[Math.Min(length, 1 << 20)];
            for (long done = 0; done < length; done += zeros.Length)
                Write(offset + done, zeros.AsSpan(0, (int)Math.Min(zeros.Length, length - done)));
            return;
        }
        // Unmapping: the sectors read as zeroes again; their space is reclaimed by an offline compact. One LUT write
        // per batch of entries, from its first allocated sector to its last.
        const int Batch = 1024;
        Span<byte> entries = stackalloc byte[Batch * 4];
        entries.Fill(0xFF);
        long end = (offset + length) / LogicalSectorSize;
        for (long start = offset / LogicalSectorSize; start < end; start += Batch)
        {
            lock (_lutLock)
            {
                long lo = -1, hi = 0;
                for (long sector = start; sector < Math.Min(end, start + Batch); sector++)
                {
                    if (_lut[sector] == Unallocated) continue;
                    _lut[sector] = Unallocated;
                    if (lo < 0) lo = sector;
                    hi = sector + 1;
                }
                if (lo >= 0) _lutHandle!.Write(entries[..(int)((hi - lo) * 4)], lo * 4);
            }
        }
    }

    public void Flush()
    {
        if (ReadOnly) return;
        // Segments (in-place overwrites) and then the LUT entries written since the last flush: a flush
        // that returns has made every completed write durable, whichever file holds it.
        for (int i = 0; i < _segments.Length; i++) _segments[i].DataSync();
        _lutHandle?.DataSync();
    }

    /// <summary>Allocated sectors per segment (for the disk tool and tests).</summary>
    public IReadOnlyList<long> StoredSectors => _segmentSectors;

    public long AllocatedSectors => _layout.Sparse ? _lut.CountAllocated() : _layout.Sectors;

    public void Dispose()
    {
        foreach (var h in _segments) h?.Dispose();
        _lutHandle?.Dispose();
    }
}

/// <summary>The in-memory copy of a sparse LUT, in chunks of 1 Mi entries: a disk of the largest size the
/// format allows has far more entries than one managed array can hold (2 GiB). A chunk is allocated only
/// when one of its entries is first set, so the never-written parts of a huge disk cost no memory.</summary>
internal sealed class SparseLut
{
    private const int ChunkBits = 20;
    private const int ChunkMask = (1 << ChunkBits) - 1;
    public static readonly SparseLut Empty = new(0);
    private readonly uint[]?[] _chunks;

    public long Length { get; }

    public SparseLut(long length)
    {
        Length = length;
        _chunks = new uint[(length + ChunkMask) >> ChunkBits][];
    }

    /// <summary>Entries are read and replaced whole by concurrent requests (volatile, as a uint is atomic).</summary>
    public uint this[long index]
    {
        get
        {
            var chunk = Volatile.Read(ref _chunks[index >> ChunkBits]);
            return chunk == null ? SplitSparseImage.Unallocated : Volatile.Read(ref chunk[index & ChunkMask]);
        }
        set
        {
            var chunk = Volatile.Read(ref _chunks[index >> ChunkBits]);
            if (chunk == null)
            {
                if (value == SplitSparseImage.Unallocated) return;
                chunk = Allocate(index >> ChunkBits);
            }
            Volatile.Write(ref chunk[index & ChunkMask], value);
        }
    }

    /// <summary>Two writers may set entries of the same new chunk at once: one allocates it, both use it.</summary>
    private uint[] Allocate(long c)
    {
        lock (_chunks)
        {
            if (_chunks[c] is { } existing) return existing;
            var chunk = new uint[Math.Min(1L << ChunkBits, Length - (c << ChunkBits))];
            Array.Fill(chunk, SplitSparseImage.Unallocated);
            Volatile.Write(ref _chunks[c], chunk);
            return chunk;
        }
    }

    /// <summary>How many entries from <paramref name="index"/> (at least 1, at most <paramref name="max"/>) continue its
    /// run: unallocated ones after an unallocated entry, else slots counting up from its slot. A request's reads walk
    /// thousands of entries, so this looks each chunk up once.</summary>
    public long RunLength(long index, long max)
    {
        uint first = this[index];
        max = Math.Min(max, Length - index);   // past the end there is no entry (and no progress)
        long n = 1;
        while (n < max)
        {
            long at = index + n;
            var chunk = Volatile.Read(ref _chunks[at >> ChunkBits]);
            int i = (int)(at & ChunkMask);
            int end = (int)Math.Min(i + (max - n), Math.Min(1L << ChunkBits, Length - (at & ~(long)ChunkMask)));
            if (chunk == null)
            {
                if (first != SplitSparseImage.Unallocated) return n;
                n += end - i;
                continue;
            }
            for (; i < end; i++, n++)
            {
                uint v = Volatile.Read(ref chunk[i]);
                if (first == SplitSparseImage.Unallocated ? v != first : v == SplitSparseImage.Unallocated || v != first + (uint)n) return n;
            }
        }
        return n;
    }

    public long CountAllocated()
    {
        long n = 0;
        foreach (var chunk in _chunks)
            if (chunk != null) n += chunk.Length - chunk.AsSpan().Count(SplitSparseImage.Unallocated);
        return n;
    }
}
