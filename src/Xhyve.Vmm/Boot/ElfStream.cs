using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// An ELF image loaded from a <see cref="PayloadReader"/> in one pass (issue 16): the headers come first, then each
/// PT_LOAD segment in file order is read straight into its place in guest RAM, so neither the file nor a decompressed
/// kernel is ever held whole. Only the program headers (at most <see cref="ElfImage.MaxStreamedHeaders"/>) and, when
/// asked for, the bytes after the image (a kernel's relocation table) are buffered, in scratch mappings freed on
/// <see cref="Dispose"/>.
/// </summary>
internal sealed class ElfStream : IDisposable
{
    /// <summary>At most this much of what follows the image is kept (a kernel's relocation table is well under 1 MiB);
    /// beyond it the trailer is dropped and <see cref="Trailer"/> says so.</summary>
    public const int TrailerLimit = 16 << 20;

    private readonly PayloadReader _reader;
    private readonly string _name;
    private readonly ScratchBuffer _head;
    private readonly int _headLength;
    private ScratchBuffer? _trailer;
    private int _trailerLength;
    private ulong _trailerStart, _end;
    private bool _trailerDropped;

    public ElfImage Image { get; }

    private ElfStream(PayloadReader reader, string name, ScratchBuffer head, int headLength, ElfImage image) =>
        (_reader, _name, _head, _headLength, Image) = (reader, name, head, headLength, image);

    /// <summary>Reads the ELF and program headers from the start of <paramref name="reader"/> (not owned);
    /// <paramref name="fileLength"/> is the image's size when known (a file), else the most it can be (a decompressed
    /// payload: <see cref="KernelPayload.MaxDecompressedSize"/>), so that every segment's file offset is bounded.</summary>
    public static ElfStream Open(PayloadReader reader, string name, ulong fileLength)
    {
        var head = new ScratchBuffer(ElfImage.MaxStreamedHeaders);
        try
        {
            var span = head.Span;
            int length = reader.Read(span[..0x40]);
            // Parse refuses a short or foreign header with its own messages; a streamed one must hold its program headers.
            if (length == 0x40 && ElfImage.HasElfMagic(span))
            {
                int end = ElfImage.HeadersEnd(span[..0x40], name);
                if (end > length) length += reader.Read(span[length..end]);
            }
            var image = ElfImage.Parse(span[..length], fileLength, name);
            return new ElfStream(reader, name, head, length, image);
        }
        catch
        {
            head.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Streams the segments into <paramref name="memory"/>, each <paramref name="physicalOffset"/> above its address,
    /// with the rest of each segment's memory zeroed; then, when <paramref name="keepTrailer"/>, reads the payload to
    /// its end and keeps what follows the image. Every destination is checked before anything is written; segments
    /// must not share file bytes (as no linker writes them). When the payload turns out corrupt or short, the segments
    /// written so far are zeroed again before the error is thrown: nothing half-loaded looks like a kernel.
    /// </summary>
    public void Load(IGuestMemory memory, ulong physicalOffset, bool keepTrailer)
    {
        Image.CheckPlacement(memory, _name, physicalOffset);
        var order = Image.InFileOrder;
        ulong previousEnd = 0;
        foreach (var s in order)
        {
            if (s.FileSize == 0) continue;
            if (s.FileOffset < previousEnd)
                throw new BootImageException($"{_name}: segments share file bytes at 0x{s.FileOffset:X}; the image cannot be loaded in one pass");
            previousEnd = s.FileOffset + s.FileSize;
        }

        var head = _head.Span[.._headLength];
        ulong position = (ulong)_headLength;
        int started = 0;
        try
        {
            foreach (var s in order)
            {
                var target = ElfImage.Target(memory, s, physicalOffset, _name);
                started++;
                string what = $"the segment at 0x{s.PhysicalAddress:X}";
                ulong end = s.FileOffset + s.FileSize;
                if (s.FileSize > 0 && s.FileOffset < position)
                {
                    // Its first bytes came with the headers.
                    int fromHead = (int)(Math.Min(end, position) - s.FileOffset);
                    head.Slice((int)s.FileOffset, fromHead).CopyTo(target);
                }
                else if (s.FileSize > 0)
                {
                    _reader.Skip((long)(s.FileOffset - position), _head.Span, $"the gap before {what}");
                    position = s.FileOffset;
                }
                // A segment with no file bytes (all .bss) reads nothing, wherever its p_offset points.
                if (s.FileSize > 0 && end > position)
                {
                    _reader.ReadExactly(target[(int)(position - s.FileOffset)..(int)s.FileSize], what);
                    position = end;
                }
                target[(int)s.FileSize..].Clear();
            }
            _end = position;
            if (keepTrailer) ReadTrailer(position);
        }
        catch
        {
            for (int i = 0; i < started; i++) ElfImage.Target(memory, order[i], physicalOffset, _name).Clear();
            throw;
        }
    }

    /// <summary>The payload's bytes after the image (from <see cref="ElfImage.FileEndWithin"/> to the end), or null
    /// when more than <see cref="TrailerLimit"/> followed it.</summary>
    public ReadOnlySpan<byte> Trailer
    {
        get
        {
            if (_trailer == null || _trailerDropped) return default;
            ulong fileEnd = Image.FileEndWithin(_end);
            return fileEnd >= _trailerStart && fileEnd - _trailerStart <= (ulong)_trailerLength
                ? _trailer.Span[(int)(fileEnd - _trailerStart).._trailerLength] : default;
        }
    }

    /// <summary>Whether a trailer was kept (false when it outgrew <see cref="TrailerLimit"/>).</summary>
    public bool HasTrailer => _trailer != null && !_trailerDropped;

    /// <summary>The payload's length, once <see cref="Load"/> has read it to the end.</summary>
    public ulong Length => _end;

    private void ReadTrailer(ulong start)
    {
        _trailer = new ScratchBuffer(64 << 10);
        _trailerStart = start;
        ulong sections = Image.SectionHeadersEnd;
        while (true)
        {
            if (_trailerDropped)
            {
                int skipped = _reader.Read(_head.Span);
                if (skipped == 0) break;
                _end += (ulong)skipped;
                continue;
            }
            if (_trailer.Capacity - _trailerLength < 16 << 10) _trailer.Grow(_trailer.Capacity * 2, _trailerLength);
            int n = _reader.Read(_trailer.Span[_trailerLength..]);
            if (n == 0) break;
            _trailerLength += n;
            _end = _trailerStart + (ulong)_trailerLength;
            // Past the section headers, the bytes before their end (symbols, say) cannot be the trailer: drop them.
            if (sections > _trailerStart && _end >= sections)
            {
                int drop = (int)(sections - _trailerStart);
                _trailer.Span[drop.._trailerLength].CopyTo(_trailer.Span);
                _trailerLength -= drop;
                _trailerStart = sections;
            }
            if (_trailerLength > TrailerLimit) _trailerDropped = true;
        }
    }

    public void Dispose()
    {
        _head.Dispose();
        _trailer?.Dispose();
    }
}
