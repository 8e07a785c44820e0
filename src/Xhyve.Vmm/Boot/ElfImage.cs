using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>One PT_LOAD segment: file bytes copied to a physical address, the rest of memsz zeroed.</summary>
public readonly record struct ElfSegment(ulong PhysicalAddress, ulong FileOffset, ulong FileSize, ulong MemorySize);

/// <summary>
/// An ELF executable (ELF32 i386 or ELF64 x86-64) reduced to what a loader needs. Every offset and
/// size is checked against the file before use.
/// </summary>
public sealed class ElfImage
{
    public bool Is64 { get; }
    public ulong Entry { get; }
    public IReadOnlyList<ElfSegment> Segments { get; }
    /// <summary>Lowest and one-past-highest physical addresses the segments occupy.</summary>
    public ulong LowestAddress { get; }
    public ulong EndAddress { get; }
    /// <summary>Where the ELF file ends: after its last segment bytes, program headers or section headers (a kernel
    /// payload may carry more after it, e.g. the relocation table).</summary>
    public ulong FileEnd => FileEndWithin(_fileLength);

    private ulong _fileLength, _headersEnd, _segmentsEnd, _sectionsStart, _sectionsLength;

    private const uint PtLoad = 1;
    private const int MaxSegments = 128;

    /// <summary>How far into a streamed image its program headers may reach: they are read before anything else.</summary>
    public const int MaxStreamedHeaders = 64 << 10;

    public static bool HasElfMagic(ReadOnlySpan<byte> data) =>
        data.Length >= 4 && data[0] == 0x7F && data[1] == (byte)'E' && data[2] == (byte)'L' && data[3] == (byte)'F';

    /// <summary>The segments in file order (the order a streamed image delivers them), an array so that loading needs
    /// no generic code over <see cref="ElfSegment"/> beyond it (ReadyToRun compiles none of the framework's for our
    /// structs: it would be JIT-compiled at start).</summary>
    internal ElfSegment[] InFileOrder { get; }

    private ElfImage(bool is64, ulong entry, ElfSegment[] segments, int count)
    {
        Is64 = is64; Entry = entry;
        Segments = segments.AsSpan(0, count).ToArray();
        LowestAddress = ulong.MaxValue;
        for (int i = 0; i < count; i++)
        {
            var s = segments[i];
            LowestAddress = Math.Min(LowestAddress, s.PhysicalAddress);
            EndAddress = Math.Max(EndAddress, s.PhysicalAddress + s.MemorySize);
        }
        // Insertion sort: at most 128 segments, and usually already in order.
        var ordered = segments.AsSpan(0, count).ToArray();
        for (int i = 1; i < ordered.Length; i++)
        {
            var s = ordered[i];
            int j = i - 1;
            for (; j >= 0 && ordered[j].FileOffset > s.FileOffset; j--) ordered[j + 1] = ordered[j];
            ordered[j + 1] = s;
        }
        InFileOrder = ordered;
    }

    /// <param name="data">The whole file.</param>
    /// <param name="name">The file name, for messages.</param>
    public static ElfImage Parse(ReadOnlySpan<byte> data, string name) => Parse(data, (ulong)data.Length, name);

    /// <summary>Where a streamed image's program headers end, from its first 64 bytes (the ELF header): how much a
    /// loader reads before <see cref="Parse(ReadOnlySpan{byte}, ulong, string)"/>. Refused past
    /// <see cref="MaxStreamedHeaders"/>.</summary>
    public static int HeadersEnd(ReadOnlySpan<byte> header, string name)
    {
        if (!HasElfMagic(header) || header.Length < 0x40) throw new BootImageException($"{name}: not an ELF file");
        bool is64 = header[4] == 2;
        ulong phoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..]) : BinaryPrimitives.ReadUInt32LittleEndian(header[0x1C..]);
        ulong size = (ulong)BinaryPrimitives.ReadUInt16LittleEndian(header[(is64 ? 0x36 : 0x2A)..]) * BinaryPrimitives.ReadUInt16LittleEndian(header[(is64 ? 0x38 : 0x2C)..]);
        if (phoff > MaxStreamedHeaders || size > MaxStreamedHeaders - phoff)
            throw new BootImageException($"{name}: program headers at 0x{phoff:X} end past the first {MaxStreamedHeaders >> 10} KiB, where a streamed image must have them");
        return (int)Math.Max(phoff + size, 0x40);
    }

    /// <summary>Parses the headers in <paramref name="data"/> (the file's first bytes: at least its program headers)
    /// of a file of <paramref name="fileLength"/> bytes (<see cref="ulong.MaxValue"/> when a stream's length is not
    /// known yet: the stream itself then proves that the segments are there).</summary>
    public static ElfImage Parse(ReadOnlySpan<byte> data, ulong fileLength, string name)
    {
        if (!HasElfMagic(data) || data.Length < 0x34)
            throw new BootImageException($"{name}: not an ELF file");
        if (data[5] != 1) throw new BootImageException($"{name}: ELF file is not little-endian");
        bool is64 = data[4] switch
        {
            1 => false,
            2 => true,
            _ => throw new BootImageException($"{name}: unknown ELF class {data[4]}"),
        };
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(data[0x10..]);
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(data[0x12..]);
        if (type != 2) throw new BootImageException($"{name}: ELF type {type} is not an executable");
        if (is64 ? machine != 62 : machine != 3)
            throw new BootImageException($"{name}: ELF machine {machine} is not {(is64 ? "x86-64" : "i386")}");
        if (is64 && data.Length < 0x40) throw new BootImageException($"{name}: truncated ELF header");

        ulong entry = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(data[0x18..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[0x18..]);
        ulong phoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(data[0x20..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[0x1C..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x36 : 0x2A)..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x38 : 0x2C)..]);
        int expected = is64 ? 56 : 32;
        if (phentsize != expected) throw new BootImageException($"{name}: program header size {phentsize}, expected {expected}");
        if (phnum == 0 || phnum > MaxSegments) throw new BootImageException($"{name}: {phnum} program headers (1..{MaxSegments} allowed)");
        if (phoff > fileLength || (ulong)(phnum * phentsize) > fileLength - phoff)
            throw new BootImageException($"{name}: program headers lie outside the file (truncated?)");
        if (phoff > (ulong)data.Length || (ulong)(phnum * phentsize) > (ulong)data.Length - phoff)
            throw new BootImageException($"{name}: program headers at 0x{phoff:X} lie past the first {data.Length} bytes");

        var segments = new ElfSegment[phnum];
        int count = 0;
        for (int i = 0; i < phnum; i++)
        {
            var ph = data.Slice((int)phoff + i * phentsize, phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != PtLoad) continue;
            ulong offset, paddr, filesz, memsz;
            if (is64)
            {
                offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
                paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
                filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
                memsz = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            }
            else
            {
                offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
                paddr = BinaryPrimitives.ReadUInt32LittleEndian(ph[12..]);
                filesz = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
                memsz = BinaryPrimitives.ReadUInt32LittleEndian(ph[20..]);
            }
            if (filesz > memsz) throw new BootImageException($"{name}: segment {i} has file size 0x{filesz:X} > memory size 0x{memsz:X}");
            if (offset > fileLength || filesz > fileLength - offset)
                throw new BootImageException($"{name}: segment {i} (offset 0x{offset:X}, size 0x{filesz:X}) lies outside the file (truncated?)");
            if (paddr + memsz < paddr) throw new BootImageException($"{name}: segment {i} wraps the address space");
            if (memsz == 0) continue;
            segments[count++] = new ElfSegment(paddr, offset, filesz, memsz);
        }
        if (count == 0) throw new BootImageException($"{name}: no loadable segments");
        ulong shoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(data[0x28..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[0x20..]);
        ulong shentsize = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x3A : 0x2E)..]);
        ulong shnum = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x3C : 0x30)..]);
        ulong segmentsEnd = 0;
        for (int i = 0; i < count; i++) segmentsEnd = Math.Max(segmentsEnd, segments[i].FileOffset + segments[i].FileSize);
        return new ElfImage(is64, entry, segments, count)
        {
            _fileLength = fileLength, _headersEnd = phoff + (ulong)(phnum * phentsize), _segmentsEnd = segmentsEnd,
            _sectionsStart = shoff, _sectionsLength = shnum * shentsize,
        };
    }

    /// <summary>Where the ELF file ends if the file (a stream) is <paramref name="fileLength"/> bytes long: section
    /// headers count only when they lie in it (they are not needed to load it).</summary>
    public ulong FileEndWithin(ulong fileLength)
    {
        ulong end = Math.Max(_segmentsEnd, _headersEnd);
        if (_sectionsLength > 0 && _sectionsStart <= fileLength && _sectionsLength <= fileLength - _sectionsStart) end = Math.Max(end, _sectionsStart + _sectionsLength);
        return end;
    }

    /// <summary>Where the section headers end, or 0 without any: bytes before it are never part of what follows the
    /// image.</summary>
    internal ulong SectionHeadersEnd => _sectionsLength > 0 ? _sectionsStart + _sectionsLength : 0;

    /// <summary>Copies the segments into guest RAM, each <paramref name="physicalOffset"/> bytes above its physical
    /// address (a relocated kernel); a segment outside RAM is an error naming the file.</summary>
    public void Load(IGuestMemory memory, ReadOnlySpan<byte> data, string name, ulong physicalOffset = 0)
    {
        CheckPlacement(memory, name, physicalOffset);
        foreach (var s in InFileOrder)
        {
            var target = Target(memory, s, physicalOffset, name);
            data.Slice((int)s.FileOffset, (int)s.FileSize).CopyTo(target);
            target[(int)s.FileSize..].Clear();
        }
    }

    /// <summary>Refuses a placement <paramref name="physicalOffset"/> above the link addresses where any segment
    /// would reach below 1 MiB or outside guest RAM, before anything is written.</summary>
    internal void CheckPlacement(IGuestMemory memory, string name, ulong physicalOffset)
    {
        if (LowestAddress + physicalOffset < X86Layout.HighMemoryStart)
            throw new BootImageException($"{name}: segment at 0x{LowestAddress + physicalOffset:X} is below 1 MiB, where the loader keeps boot data");
        foreach (var s in InFileOrder) Target(memory, s, physicalOffset, name);
    }

    /// <summary>The guest RAM a segment occupies when loaded <paramref name="physicalOffset"/> above its address.</summary>
    internal static Span<byte> Target(IGuestMemory memory, ElfSegment s, ulong physicalOffset, string name)
    {
        ulong at = s.PhysicalAddress + physicalOffset;
        if (s.MemorySize > int.MaxValue || at < s.PhysicalAddress || !memory.TryGetSpan(new GuestAddress(at), (int)s.MemorySize, out var target))
            throw new BootImageException($"{name}: segment at 0x{at:X} (0x{s.MemorySize:X} bytes) does not fit in guest RAM ({memory.Size >> 20} MiB)");
        return target;
    }
}
