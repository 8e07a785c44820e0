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

    public void Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        if (!_layout.Sparse)
        {
            for (int pos = 0; pos < buffer.Length;)
            {
                var (seg, inSeg, n) = Piece(offset + pos, buffer.Length - pos);
                ReadExactly(seg, inSeg, buffer.Slice(pos, n));
                pos += n;
            }
            return;
        }
        int ss = LogicalSectorSize;
        for (int pos = 0; pos < buffer.Length; pos += ss)
        {
            long sector = (offset + pos) / ss;
            uint index = _lut[sector];
            var dest = buffer.Slice(pos, ss);
            if (index == Unallocated) dest.Clear();
            else ReadExactly(SegmentOf(sector), (long)index * ss, dest);
        }
    }

    private void ReadExactly(int seg, long at, Span<byte> dest)
    {
        int done = 0;
        while (done < dest.Length)
        {
            int n = _segments[seg].Read(dest[done..], at + done);
            if (n == 0) { dest[done..].Clear(); return; } // past the end of a host-sparse segment: zeroes
            done += n;
        }
    }

    /// <summary>The part of a request at disk offset <paramref name="at"/> that lies in one segment:
    /// requests crossing a segment boundary are split.</summary>
    private (int Segment, long InSegment, int Length) Piece(long at, int remaining)
    {
        int seg = (int)(at / _layout.SegmentSize);
        long inSeg = at % _layout.SegmentSize;
        return (seg, inSeg, (int)Math.Min(remaining, _layout.SegmentSize - inSeg));
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (ReadOnly) throw new InvalidOperationException($"{Path}: the disk is read-only");
        CheckRange(offset, data.Length);
        if (!_layout.Sparse)
        {
            for (int pos = 0; pos < data.Length;)
            {
                var (seg, inSeg, n) = Piece(offset + pos, data.Length - pos);
                _segments[seg].Write(data.Slice(pos, n), inSeg);
                pos += n;
            }
            return;
        }
        int ss = LogicalSectorSize;
        var allocated = new List<(long Sector, uint Index, int At)>();
        var touched = new HashSet<int>();
        for (int pos = 0; pos < data.Length; pos += ss)
        {
            long sector = (offset + pos) / ss;
            int seg = SegmentOf(sector);
            var chunk = data.Slice(pos, ss);
            uint index = _lut[sector];
            if (index != Unallocated)
            {
                _segments[seg].Write(chunk, (long)index * ss);
                continue;
            }
            if (!chunk.ContainsAnyExcept((byte)0)) continue;      // never-written zero sector: store nothing
            lock (_segmentLocks[seg])
            {
                index = (uint)_segmentSectors[seg];
                _segments[seg].Write(chunk, (long)index * ss);
                _segmentSectors[seg]++;
            }
            allocated.Add((sector, index, pos));
            touched.Add(seg);
        }
        if (allocated.Count == 0) return;
        // Data first, durably; then the LUT entries that point at it.
        foreach (int seg in touched) _segments[seg].DataSync();
        Span<byte> entry = stackalloc byte[4];
        foreach (var (sector, index, at) in allocated)
            lock (_lutLock)
            {
                uint now = _lut[sector];
                if (now != Unallocated)
                {
                    // A concurrent request gave the sector a slot while ours was syncing: ours stays unused
                    // (an offline compact reclaims it) and the data goes where the LUT points.
                    _segments[SegmentOf(sector)].Write(data.Slice(at, ss), (long)now * ss);
                    continue;
                }
                _lut[sector] = index;
                BinaryPrimitives.WriteUInt32LittleEndian(entry, index);
                _lutHandle!.Write(entry, sector * 4);
            }
    }

    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers) => ScatterGather.Read(this, offset, buffers);

    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers) => ScatterGather.Write(this, offset, buffers);

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
        // Unmapping: the sectors read as zeroes again; their space is reclaimed by an offline compact.
        Span<byte> entry = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, Unallocated);
        for (long sector = offset / LogicalSectorSize; sector < (offset + length) / LogicalSectorSize; sector++)
        {
            lock (_lutLock)
            {
                if (_lut[sector] == Unallocated) continue;
                _lut[sector] = Unallocated;
                _lutHandle!.Write(entry, sector * 4);
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

    public long CountAllocated()
    {
        long n = 0;
        foreach (var chunk in _chunks)
            if (chunk != null) n += chunk.Length - chunk.AsSpan().Count(SplitSparseImage.Unallocated);
        return n;
    }
}
