using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>How a bzImage is entered: decompressed by the host and loaded as ELF, or as-is with its own decompressor.</summary>
public enum KernelLoadMode
{
    /// <summary>Host decompression when the payload format allows it, else the bzImage path.</summary>
    Auto,
    /// <summary>Always decompress on the host (fails if the payload cannot be decompressed).</summary>
    HostDecompress,
    /// <summary>Always enter the bzImage and let the kernel decompress itself.</summary>
    BzImage,
}

/// <summary>What a loader leaves behind: the BSP's entry state and a description for the log.</summary>
public sealed record LoadedKernel(X86BootState EntryState, string Description, IReadOnlyList<E820Entry> MemoryMap);

/// <summary>Boots Linux with the x86 boot protocol (xhyve's -f kexec,KERNEL,INITRD,CMDLINE).</summary>
public sealed class LinuxLoader
{
    private readonly string _kernelPath;
    private readonly string? _initrdPath;
    private readonly string _commandLine;
    private readonly KernelLoadMode _mode;
    private readonly Func<long, long> _random;

    /// <summary>A loader for -f kexec,<paramref name="kernelPath"/>,<paramref name="initrdPath"/>,<paramref name="commandLine"/>
    /// in <paramref name="mode"/>; <paramref name="random"/> returns a value in [0, n) for KASLR's choices (the host's
    /// cryptographic RNG by default, as the kernel's decompressor mixes RDRAND/RDTSC; fixed in tests).</summary>
    public LinuxLoader(string kernelPath, string? initrdPath, string? commandLine, KernelLoadMode mode = KernelLoadMode.Auto, Func<long, long>? random = null)
    {
        _kernelPath = kernelPath;
        _initrdPath = string.IsNullOrEmpty(initrdPath) ? null : initrdPath;
        _commandLine = commandLine ?? "";
        _mode = mode;
        _random = random ?? (n => System.Security.Cryptography.RandomNumberGenerator.GetInt32((int)Math.Clamp(n, 1, int.MaxValue)));
    }

    /// <summary>`nokaslr` as the kernel reads it: a whole word of the command line.</summary>
    public static bool KaslrDisabled(string commandLine) =>
        commandLine.Split((char[])[' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries).Contains("nokaslr");

    public LoadedKernel Load(IGuestMemory memory)
    {
        using var file = BootFile.Open(_kernelPath, "kernel");
        Span<byte> head = stackalloc byte[BzImage.HeadBytes];
        head = head[..file.Read(0, head)];
        BzImage? bz = null;
        string how;
        bool isElf = ElfImage.HasElfMagic(head);
        if (isElf) how = "ELF vmlinux";
        else
        {
            bz = BzImage.Parse(head, file.Length, _kernelPath);
            how = $"bzImage, boot protocol {bz.Protocol >> 8}.{bz.Protocol & 0xFF:D2}";
        }

        ulong lowEnd = memory.Regions[0].End;
        // The initrd goes at the top of low RAM (below the kernel's limit); a randomly placed kernel must stay below it.
        using var initrd = _initrdPath != null ? BootFile.Open(_initrdPath, "initrd") : null;
        ulong initrdAddress = 0;
        if (initrd != null)
        {
            ulong max = Math.Min((ulong)(bz?.InitrdAddressMax ?? 0x37FF_FFFF), lowEnd - 1);
            if ((ulong)initrd.Length > max)
                throw new BootImageException($"{_initrdPath}: initrd ({initrd.Length >> 20} MiB) does not fit in guest RAM below 0x{max + 1:X}; add memory with -m");
            initrdAddress = (max + 1 - (ulong)initrd.Length) & ~0xFFFUL;
        }
        ulong ceiling = initrd != null ? initrdAddress : lowEnd;

        KernelPlacement placed;
        if (isElf)
        {
            using var stream = file.Window(0, file.Length);
            using var reader = KernelPayload.Uncompressed(stream, _kernelPath);
            placed = LoadElf(memory, reader, null, ceiling, (ulong)file.Length);
        }
        else if (_mode == KernelLoadMode.BzImage)
        {
            how += ", self-decompressing";
            placed = LoadSelfDecompressing(memory, file, bz!);
        }
        else
        {
            try
            {
                if (bz!.PayloadLength == 0) throw new BootImageException($"{_kernelPath}: boot protocol before 2.08 has no payload to decompress");
                using var stream = file.Window(bz.PayloadFileOffset, bz.PayloadLength);
                using var reader = KernelPayload.Open(stream, _kernelPath);
                // The decompressed length is not known before the stream ends, but it cannot exceed the decoders' limit: a
                // segment said to lie beyond it is refused by name instead of being read from whatever bytes follow.
                placed = LoadElf(memory, reader, bz, ceiling, KernelPayload.MaxDecompressedSize);
                how += $", {reader.Format} payload decompressed on the host";
            }
            catch (BootImageException) when (_mode == KernelLoadMode.Auto)
            {
                how += ", self-decompressing";
                placed = LoadSelfDecompressing(memory, file, bz!);
            }
        }
        how += placed.Note;

        var bootParams = new BootParams(bz);
        if (placed.Kaslr) bootParams.SetKaslr();
        int maxCmdline = (int)Math.Min(bz?.CommandLineSize ?? (uint)(X86Layout.CommandLineMax - 1), (uint)(X86Layout.CommandLineMax - 1));
        var cmdline = new KernelCommandLine(_commandLine, maxCmdline);
        memory.WriteExactly(new GuestAddress(X86Layout.CommandLine), cmdline.ToBytes());
        bootParams.SetCommandLine(X86Layout.CommandLine);

        if (initrd != null)
        {
            if (initrdAddress < AlignUp(placed.End, 0x1000))
                throw new BootImageException($"{_initrdPath}: initrd ({initrd.Length >> 20} MiB) does not fit in guest RAM below 0x{initrdAddress + (ulong)initrd.Length:X} above the kernel; add memory with -m");
            // Straight from the file into guest RAM: no copy of the initrd stays behind in the engine.
            if (!memory.TryGetSpan(new GuestAddress(initrdAddress), (int)initrd.Length, out var target))
                throw new BootImageException($"{_initrdPath}: initrd ({initrd.Length} bytes) does not fit in guest RAM at 0x{initrdAddress:X}");
            initrd.ReadExactly(0, target);
            bootParams.SetRamdisk(initrdAddress, (ulong)initrd.Length);
            how += $", initrd {initrd.Length} bytes at 0x{initrdAddress:X}";
        }

        var e820 = E820Map.Build(memory);
        bootParams.SetE820(e820);
        bootParams.WriteTo(memory, new GuestAddress(X86Layout.ZeroPage));
        PageTables.WriteIdentityMap4G(memory);
        PageTables.WriteGdt(memory, PageTables.LinuxGdt);
        return new LoadedKernel(EntryState.Long64(placed.Entry, X86Layout.ZeroPage), $"{_kernelPath}: {how}, entry 0x{placed.Entry:X}", e820);
    }

    /// <summary>Where a kernel went: its entry, the end of the memory it needs, whether KASLR moved it, and what to add
    /// to the description.</summary>
    private readonly record struct KernelPlacement(ulong Entry, ulong End, bool Kaslr, string Note);

    /// <summary>The bzImage as it is, at 1 MiB, entered at its 64-bit entry to decompress itself.</summary>
    private KernelPlacement LoadSelfDecompressing(IGuestMemory memory, BootFile file, BzImage bz)
    {
        ulong need = Math.Max((ulong)bz.ProtectedModeLength, bz.InitSize);
        if (X86Layout.KernelLoad + need > memory.Regions[0].End || !memory.TryGetSpan(new GuestAddress(X86Layout.KernelLoad), (int)bz.ProtectedModeLength, out var target))
            throw new BootImageException($"{_kernelPath}: kernel needs {need >> 20} MiB above 1 MiB; guest RAM ({memory.Size >> 20} MiB) is too small");
        file.ReadExactly(bz.SetupBytes, target);
        return new KernelPlacement(X86Layout.KernelLoad + 0x200, X86Layout.KernelLoad + need, false, "");   // startup_64 at +0x200
    }

    /// <summary>An ELF kernel streamed from <paramref name="reader"/> into guest RAM (a vmlinux file, or a bzImage's
    /// payload decompressed on the host, which also gets what the kernel's own decompressor would do: KASLR unless
    /// `nokaslr`, for a kernel built relocatable, whose payload then ends with the relocation table).</summary>
    private KernelPlacement LoadElf(IGuestMemory memory, PayloadReader reader, BzImage? bz, ulong ceiling, ulong fileLength)
    {
        string name = bz == null ? _kernelPath : $"{_kernelPath} (decompressed payload)";
        using var stream = ElfStream.Open(reader, name, fileLength);
        var elf = stream.Image;
        if (!elf.Is64)
            throw new BootImageException(bz == null ? $"{_kernelPath}: a 32-bit ELF kernel cannot use the 64-bit boot protocol (use -f multiboot)"
                : $"{_kernelPath}: decompressed payload is not a 64-bit kernel");
        ulong physicalOffset = 0, virtualOffset = 0;
        string note = "";
        bool kaslr = false;
        if (bz != null)
        {
            if (!bz.Relocatable) note = ", not relocatable (no KASLR)";
            else if (KaslrDisabled(_commandLine)) note = ", KASLR off (nokaslr)";
            else if (bz.PreferredAddress != elf.LowestAddress || bz.InitSize == 0)
                note = $", KASLR off (the payload is linked at 0x{elf.LowestAddress:X}, the header prefers 0x{bz.PreferredAddress:X})";
            else if (MissingRelocations(reader, elf) is { } why) note = $", KASLR off ({why})";
            else
            {
                // Placed before the segments stream in (they go straight to their final place); the table itself is read
                // after them, at the payload's end.
                var placement = KaslrPlacement.Choose(bz.PreferredAddress, bz.KernelAlignment, bz.InitSize, ceiling, _random);
                physicalOffset = placement.PhysicalAddress - bz.PreferredAddress;
                virtualOffset = placement.VirtualOffset;
                kaslr = true;
            }
        }
        stream.Load(memory, physicalOffset, keepTrailer: kaslr);
        if (kaslr)
        {
            ulong load = elf.LowestAddress + physicalOffset;
            if (TryReadRelocations(stream, out var relocations, out string why))
            {
                relocations!.Apply(memory, bz!.PreferredAddress, load, elf.EndAddress + physicalOffset, virtualOffset, _kernelPath);
                note = $", KASLR: physical 0x{load:X}, virtual offset 0x{virtualOffset:X}";
            }
            else
            {
                // The appended size promised a table that is not there: the virtual base stays; a relocatable kernel runs
                // at any aligned physical address (boot.rst, relocatable_kernel), so the image stays where it streamed to.
                kaslr = false;
                note = $", KASLR off ({why}), loaded at 0x{load:X}";
            }
        }
        ulong end = elf.EndAddress + physicalOffset;
        if (bz != null) end = Math.Max(end, elf.LowestAddress + physicalOffset + bz.InitSize);
        return new KernelPlacement(elf.Entry + physicalOffset, end, kaslr, note);
    }

    /// <summary>Why the payload cannot carry a relocation table, judged before it streams from the size the kernel
    /// build appended (the table fills the rest of the payload after vmlinux); null when it may (the table itself is
    /// checked after loading). A kernel without CONFIG_RANDOMIZE_BASE has none, and would not randomise itself either.</summary>
    private static string? MissingRelocations(PayloadReader reader, ElfImage elf)
    {
        if (reader.DeclaredSize == 0) return null;
        ulong fileEnd = elf.FileEndWithin((ulong)reader.DeclaredSize);
        long rest = reader.DeclaredSize - (long)fileEnd;
        return rest < 12 || rest % 4 != 0 ? $"no relocation table follows vmlinux ({rest} bytes)" : null;
    }

    /// <summary>The relocation table after vmlinux in the payload; false with the reason when there is none or it is
    /// malformed: the kernel then keeps its link-time virtual base.</summary>
    private bool TryReadRelocations(ElfStream stream, out KernelRelocations? relocations, out string why)
    {
        if (!stream.HasTrailer)
        {
            (relocations, why) = (null, $"more than {ElfStream.TrailerLimit >> 20} MiB follow vmlinux");
            return false;
        }
        try
        {
            relocations = KernelRelocations.Parse(stream.Trailer, 0, _kernelPath);
            why = "";
            return true;
        }
        catch (BootImageException e)
        {
            relocations = null;
            why = e.Message[(_kernelPath.Length + 2)..];
            return false;
        }
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}
