using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>A multiboot module: a file and its command line.</summary>
public sealed record MultibootModule(string Path, string? CommandLine);

/// <summary>
/// Multiboot specification 0.6.96 (v1) loader, HyperKit's -f multiboot,KERNEL,MODULES,CMDLINE:
/// ELF32 or a.out-kludge kernels, modules, a memory map; entered in 32-bit flat protected mode.
/// </summary>
public sealed class MultibootLoader
{
    public const uint HeaderMagic = 0x1BAD_B002;
    public const uint BootloaderMagic = 0x2BAD_B002;
    private const int SearchLimit = 8192;
    private const uint FlagPageAlign = 1 << 0, FlagMemoryInfo = 1 << 1, FlagVideo = 1 << 2, FlagAddresses = 1 << 16;
    private const uint InfoMemory = 1 << 0, InfoCmdline = 1 << 2, InfoMods = 1 << 3, InfoMmap = 1 << 6, InfoLoaderName = 1 << 9;

    private readonly string _kernelPath;
    private readonly IReadOnlyList<MultibootModule> _modules;
    private readonly string _commandLine;

    public MultibootLoader(string kernelPath, IReadOnlyList<MultibootModule> modules, string? commandLine)
    {
        _kernelPath = kernelPath;
        _modules = modules;
        _commandLine = commandLine ?? "";
    }

    /// <summary>Finds the multiboot header: 4-byte aligned in the first 8 KiB, with a checksum summing to zero.</summary>
    public static int FindHeader(ReadOnlySpan<byte> file)
    {
        int limit = Math.Min(file.Length, SearchLimit) - 12;
        for (int i = 0; i <= limit; i += 4)
        {
            uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file[i..]);
            if (magic != HeaderMagic) continue;
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(file[(i + 4)..]);
            uint checksum = BinaryPrimitives.ReadUInt32LittleEndian(file[(i + 8)..]);
            if (unchecked(magic + flags + checksum) == 0) return i;
        }
        return -1;
    }

    public LoadedKernel Load(IGuestMemory memory)
    {
        using var file = BootFile.Open(_kernelPath, "multiboot kernel");
        // The header lies in the first 8 KiB; the a.out kludge's fields run 32 bytes into it.
        Span<byte> head = stackalloc byte[SearchLimit + 32];
        head = head[..file.Read(0, head)];
        int header = FindHeader(head);
        if (header < 0) throw new BootImageException($"{_kernelPath}: no multiboot header in the first 8 KiB");
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(head[(header + 4)..]);
        uint unknownRequired = flags & 0xFFFF & ~(FlagPageAlign | FlagMemoryInfo | FlagVideo);
        if (unknownRequired != 0)
            throw new BootImageException($"{_kernelPath}: multiboot header requires unsupported features (flags 0x{unknownRequired:X})");

        ulong entry, kernelEnd;
        if ((flags & FlagAddresses) != 0 && !ElfImage.HasElfMagic(head))
            (entry, kernelEnd) = LoadAout(memory, file, head, header);
        else
        {
            // Streamed from the file into guest RAM, segment by segment (no copy of the file stays behind).
            using var stream = file.Window(0, file.Length);
            using var reader = KernelPayload.Uncompressed(stream, _kernelPath);
            using var elf = ElfStream.Open(reader, _kernelPath, (ulong)file.Length);
            if (elf.Image.Is64) throw new BootImageException($"{_kernelPath}: multiboot kernels must be ELF32");
            elf.Load(memory, 0, keepTrailer: false);
            entry = elf.Image.Entry;
            kernelEnd = elf.Image.EndAddress;
        }

        var e820 = E820Map.Build(memory);
        ulong lowEnd = memory.Regions[0].End;
        var scratch = new ScratchArea(memory, X86Layout.MultibootScratch, X86Layout.MultibootScratchEnd);

        // Modules go page-aligned after the kernel.
        ulong next = AlignUp(kernelEnd, 0x1000);
        Span<byte> modList = stackalloc byte[16];
        ulong modsAddr = _modules.Count > 0 ? scratch.Reserve(16 * _modules.Count, 16) : 0;
        for (int i = 0; i < _modules.Count; i++)
        {
            var m = _modules[i];
            using var module = BootFile.Open(m.Path, "multiboot module");
            if (next + (ulong)module.Length > lowEnd || !memory.TryGetSpan(new GuestAddress(next), (int)module.Length, out var target))
                throw new BootImageException($"multiboot module {m.Path}: {module.Length} bytes do not fit in guest RAM after the kernel; add memory with -m");
            module.ReadExactly(0, target);
            ulong cmd = scratch.AddString(m.CommandLine ?? m.Path);
            BinaryPrimitives.WriteUInt32LittleEndian(modList, (uint)next);
            BinaryPrimitives.WriteUInt32LittleEndian(modList[4..], (uint)(next + (ulong)module.Length));
            BinaryPrimitives.WriteUInt32LittleEndian(modList[8..], (uint)cmd);
            BinaryPrimitives.WriteUInt32LittleEndian(modList[12..], 0);
            memory.WriteExactly(new GuestAddress(modsAddr + (ulong)(16 * i)), modList);
            next = AlignUp(next + (ulong)module.Length, 0x1000);
        }

        // Memory map: each entry is [size=20][base][length][type].
        ulong mmapAddr = scratch.Reserve(24 * e820.Count, 8);
        Span<byte> entry24 = stackalloc byte[24];
        for (int i = 0; i < e820.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(entry24, 20);
            E820Map.Write(entry24[4..], e820[i]);
            memory.WriteExactly(new GuestAddress(mmapAddr + (ulong)(24 * i)), entry24);
        }

        var cmdline = new KernelCommandLine(_commandLine, X86Layout.CommandLineMax - 1);
        memory.WriteExactly(new GuestAddress(X86Layout.CommandLine), cmdline.ToBytes());
        ulong loaderName = scratch.AddString("xhyve");

        Span<byte> info = stackalloc byte[88];
        info.Clear();
        uint infoFlags = InfoMemory | InfoCmdline | InfoMmap | InfoLoaderName | (_modules.Count > 0 ? InfoMods : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(info, infoFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(info[4..], (uint)(X86Layout.EbdaStart / 1024));             // mem_lower, KiB
        BinaryPrimitives.WriteUInt32LittleEndian(info[8..], (uint)((lowEnd - X86Layout.HighMemoryStart) / 1024)); // mem_upper, KiB
        BinaryPrimitives.WriteUInt32LittleEndian(info[16..], (uint)X86Layout.CommandLine);
        BinaryPrimitives.WriteUInt32LittleEndian(info[20..], (uint)_modules.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(info[24..], (uint)modsAddr);
        BinaryPrimitives.WriteUInt32LittleEndian(info[44..], (uint)(24 * e820.Count));
        BinaryPrimitives.WriteUInt32LittleEndian(info[48..], (uint)mmapAddr);
        BinaryPrimitives.WriteUInt32LittleEndian(info[64..], (uint)loaderName);
        memory.WriteExactly(new GuestAddress(X86Layout.MultibootInfo), info);

        PageTables.WriteGdt(memory, PageTables.FlatGdt32);
        var state = EntryState.Protected32(entry, BootloaderMagic, (uint)X86Layout.MultibootInfo);
        return new LoadedKernel(state, $"{_kernelPath}: multiboot, entry 0x{entry:X}, {_modules.Count} module(s)", e820);
    }

    /// <summary>The a.out kludge: header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr in the header.</summary>
    private (ulong Entry, ulong End) LoadAout(IGuestMemory memory, BootFile file, ReadOnlySpan<byte> head, int header)
    {
        if (header + 32 > head.Length) throw new BootImageException($"{_kernelPath}: multiboot header is truncated");
        var h = head[header..];
        uint headerAddr = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
        uint loadAddr = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
        uint loadEnd = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
        uint bssEnd = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
        uint entry = BinaryPrimitives.ReadUInt32LittleEndian(h[28..]);
        if (loadAddr > headerAddr || headerAddr - loadAddr > (uint)header)
            throw new BootImageException($"{_kernelPath}: multiboot load_addr 0x{loadAddr:X} is inconsistent with header_addr 0x{headerAddr:X}");
        long fileOffset = header - (headerAddr - loadAddr);
        long length = loadEnd == 0 ? file.Length - fileOffset : (long)loadEnd - loadAddr;
        if (length <= 0 || fileOffset + length > file.Length)
            throw new BootImageException($"{_kernelPath}: multiboot load range 0x{loadAddr:X}-0x{loadEnd:X} lies outside the file");
        if (loadAddr < X86Layout.HighMemoryStart)
            throw new BootImageException($"{_kernelPath}: multiboot load address 0x{loadAddr:X} is below 1 MiB");
        ulong end = bssEnd == 0 ? loadAddr + (ulong)length : bssEnd;
        if (end < loadAddr + (ulong)length) throw new BootImageException($"{_kernelPath}: multiboot bss_end_addr 0x{bssEnd:X} is before load_end_addr");
        if (!memory.TryGetSpan(new GuestAddress(loadAddr), (int)(end - loadAddr), out var target))
            throw new BootImageException($"{_kernelPath}: multiboot image at 0x{loadAddr:X}-0x{end:X} does not fit in guest RAM");
        file.ReadExactly(fileOffset, target[..(int)length]);
        target[(int)length..].Clear();
        if (entry < loadAddr || entry >= end) throw new BootImageException($"{_kernelPath}: multiboot entry 0x{entry:X} is outside the loaded image");
        return (entry, end);
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <summary>A bump allocator over the low scratch area for multiboot strings and tables.</summary>
    private sealed class ScratchArea(IGuestMemory memory, ulong start, ulong end)
    {
        private ulong _next = start;

        public ulong Reserve(int bytes, int alignment)
        {
            ulong at = AlignUp(_next, (ulong)alignment);
            if (at + (ulong)bytes > end) throw new BootImageException("Multiboot boot information does not fit in its area (too many modules or too long command lines)");
            _next = at + (ulong)bytes;
            return at;
        }

        public ulong AddString(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s + "\0");
            ulong at = Reserve(bytes.Length, 1);
            memory.WriteExactly(new GuestAddress(at), bytes);
            return at;
        }
    }
}
