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
    public ulong FileEnd { get; private init; }

    private const uint PtLoad = 1;
    private const int MaxSegments = 128;

    public static bool HasElfMagic(ReadOnlySpan<byte> data) =>
        data.Length >= 4 && data[0] == 0x7F && data[1] == (byte)'E' && data[2] == (byte)'L' && data[3] == (byte)'F';

    private ElfImage(bool is64, ulong entry, List<ElfSegment> segments)
    {
        Is64 = is64; Entry = entry; Segments = segments;
        LowestAddress = segments.Min(s => s.PhysicalAddress);
        EndAddress = segments.Max(s => s.PhysicalAddress + s.MemorySize);
    }

    /// <param name="data">The whole file.</param>
    /// <param name="name">The file name, for messages.</param>
    public static ElfImage Parse(ReadOnlySpan<byte> data, string name)
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
        if (phoff > (ulong)data.Length || (ulong)(phnum * phentsize) > (ulong)data.Length - phoff)
            throw new BootImageException($"{name}: program headers lie outside the file (truncated?)");

        var segments = new List<ElfSegment>();
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
            if (offset > (ulong)data.Length || filesz > (ulong)data.Length - offset)
                throw new BootImageException($"{name}: segment {i} (offset 0x{offset:X}, size 0x{filesz:X}) lies outside the file (truncated?)");
            if (paddr + memsz < paddr) throw new BootImageException($"{name}: segment {i} wraps the address space");
            if (memsz == 0) continue;
            segments.Add(new ElfSegment(paddr, offset, filesz, memsz));
        }
        if (segments.Count == 0) throw new BootImageException($"{name}: no loadable segments");
        ulong shoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(data[0x28..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[0x20..]);
        ulong shentsize = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x3A : 0x2E)..]);
        ulong shnum = BinaryPrimitives.ReadUInt16LittleEndian(data[(is64 ? 0x3C : 0x30)..]);
        ulong end = Math.Max(segments.Max(s => s.FileOffset + s.FileSize), phoff + (ulong)(phnum * phentsize));
        // Section headers count only when they lie in the file (they are not needed to load it).
        if (shnum > 0 && shoff <= (ulong)data.Length && shnum * shentsize <= (ulong)data.Length - shoff) end = Math.Max(end, shoff + shnum * shentsize);
        return new ElfImage(is64, entry, segments) { FileEnd = end };
    }

    /// <summary>Copies the segments into guest RAM, each <paramref name="physicalOffset"/> bytes above its physical
    /// address (a relocated kernel); a segment outside RAM is an error naming the file.</summary>
    public void Load(IGuestMemory memory, ReadOnlySpan<byte> data, string name, ulong physicalOffset = 0)
    {
        if (LowestAddress + physicalOffset < X86Layout.HighMemoryStart)
            throw new BootImageException($"{name}: segment at 0x{LowestAddress + physicalOffset:X} is below 1 MiB, where the loader keeps boot data");
        foreach (var s in Segments)
        {
            ulong at = s.PhysicalAddress + physicalOffset;
            if (s.MemorySize > int.MaxValue || at < s.PhysicalAddress || !memory.TryGetSpan(new GuestAddress(at), (int)s.MemorySize, out var target))
                throw new BootImageException($"{name}: segment at 0x{at:X} (0x{s.MemorySize:X} bytes) does not fit in guest RAM ({memory.Size >> 20} MiB)");
            data.Slice((int)s.FileOffset, (int)s.FileSize).CopyTo(target);
            target[(int)s.FileSize..].Clear();
        }
    }
}
