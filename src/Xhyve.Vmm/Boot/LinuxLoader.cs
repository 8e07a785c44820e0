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
        byte[] file = BootFiles.Read(_kernelPath, "kernel");
        BzImage? bz = null;
        ElfImage? elf = null;
        byte[] elfData = file;
        string how;
        if (ElfImage.HasElfMagic(file))
        {
            elf = ElfImage.Parse(file, _kernelPath);
            how = "ELF vmlinux";
        }
        else
        {
            bz = BzImage.Parse(file, _kernelPath);
            how = $"bzImage, boot protocol {bz.Protocol >> 8}.{bz.Protocol & 0xFF:D2}";
            if (_mode != KernelLoadMode.BzImage)
            {
                try
                {
                    if (bz.PayloadLength == 0) throw new BootImageException($"{_kernelPath}: boot protocol before 2.08 has no payload to decompress");
                    var format = KernelPayload.Detect(bz.Payload.Span);
                    elfData = KernelPayload.Decompress(bz.Payload.Span, _kernelPath);
                    elf = ElfImage.Parse(elfData, $"{_kernelPath} (decompressed payload)");
                    if (!elf.Is64) throw new BootImageException($"{_kernelPath}: decompressed payload is not a 64-bit kernel");
                    how += $", {format} payload decompressed on the host";
                }
                catch (BootImageException) when (_mode == KernelLoadMode.Auto)
                {
                    elf = null;
                    how += ", self-decompressing";
                }
            }
            else how += ", self-decompressing";
        }

        ulong lowEnd = memory.Regions[0].End;
        // The initrd goes at the top of low RAM (below the kernel's limit); a randomly placed kernel must stay below it.
        byte[]? initrd = _initrdPath != null ? BootFiles.Read(_initrdPath, "initrd") : null;
        ulong initrdAddress = 0;
        if (initrd != null)
        {
            ulong max = Math.Min((ulong)(bz?.InitrdAddressMax ?? 0x37FF_FFFF), lowEnd - 1);
            if ((ulong)initrd.Length > max)
                throw new BootImageException($"{_initrdPath}: initrd ({initrd.Length >> 20} MiB) does not fit in guest RAM below 0x{max + 1:X}; add memory with -m");
            initrdAddress = (max + 1 - (ulong)initrd.Length) & ~0xFFFUL;
        }

        ulong kernelEnd;
        ulong entry;
        bool kaslr = false;
        if (elf != null)
        {
            if (!elf.Is64) throw new BootImageException($"{_kernelPath}: a 32-bit ELF kernel cannot use the 64-bit boot protocol (use -f multiboot)");
            ulong physicalOffset = 0, virtualOffset = 0;
            KernelRelocations? relocations = null;
            if (bz != null)
            {
                // Host decompression does what the kernel's decompressor would: KASLR unless `nokaslr`, for a kernel
                // built relocatable (its payload then ends with the relocation table).
                if (!bz.Relocatable) how += ", not relocatable (no KASLR)";
                else if (KaslrDisabled(_commandLine)) how += ", KASLR off (nokaslr)";
                else if (bz.PreferredAddress != elf.LowestAddress || bz.InitSize == 0)
                    how += $", KASLR off (the payload is linked at 0x{elf.LowestAddress:X}, the header prefers 0x{bz.PreferredAddress:X})";
                else if (!TryReadRelocations(elfData, elf, out relocations, out string why)) how += $", KASLR off ({why})";
                else
                {
                    var placement = KaslrPlacement.Choose(bz.PreferredAddress, bz.KernelAlignment, bz.InitSize, initrd != null ? initrdAddress : lowEnd, _random);
                    physicalOffset = placement.PhysicalAddress - bz.PreferredAddress;
                    virtualOffset = placement.VirtualOffset;
                    kaslr = true;
                    how += $", KASLR: physical 0x{placement.PhysicalAddress:X}, virtual offset 0x{virtualOffset:X}";
                }
            }
            elf.Load(memory, elfData, _kernelPath, physicalOffset);
            relocations?.Apply(memory, bz!.PreferredAddress, elf.LowestAddress + physicalOffset, elf.EndAddress + physicalOffset, virtualOffset, _kernelPath);
            entry = elf.Entry + physicalOffset;
            kernelEnd = elf.EndAddress + physicalOffset;
            if (bz != null) kernelEnd = Math.Max(kernelEnd, elf.LowestAddress + physicalOffset + bz.InitSize);
        }
        else
        {
            var pm = bz!.ProtectedModeKernel.Span;
            ulong need = Math.Max((ulong)pm.Length, bz.InitSize);
            if (X86Layout.KernelLoad + need > lowEnd)
                throw new BootImageException($"{_kernelPath}: kernel needs {need >> 20} MiB above 1 MiB; guest RAM ({memory.Size >> 20} MiB) is too small");
            memory.WriteExactly(new GuestAddress(X86Layout.KernelLoad), pm);
            entry = X86Layout.KernelLoad + 0x200;  // 64-bit entry: startup_64 at +0x200
            kernelEnd = X86Layout.KernelLoad + need;
        }

        var bootParams = new BootParams(bz);
        if (kaslr) bootParams.SetKaslr();
        int maxCmdline = (int)Math.Min(bz?.CommandLineSize ?? (uint)(X86Layout.CommandLineMax - 1), (uint)(X86Layout.CommandLineMax - 1));
        var cmdline = new KernelCommandLine(_commandLine, maxCmdline);
        memory.WriteExactly(new GuestAddress(X86Layout.CommandLine), cmdline.ToBytes());
        bootParams.SetCommandLine(X86Layout.CommandLine);

        if (initrd != null)
        {
            if (initrdAddress < AlignUp(kernelEnd, 0x1000))
                throw new BootImageException($"{_initrdPath}: initrd ({initrd.Length >> 20} MiB) does not fit in guest RAM below 0x{initrdAddress + (ulong)initrd.Length:X} above the kernel; add memory with -m");
            memory.WriteExactly(new GuestAddress(initrdAddress), initrd);
            bootParams.SetRamdisk(initrdAddress, (ulong)initrd.Length);
            how += $", initrd {initrd.Length} bytes at 0x{initrdAddress:X}";
        }

        var e820 = E820Map.Build(memory);
        bootParams.SetE820(e820);
        bootParams.WriteTo(memory, new GuestAddress(X86Layout.ZeroPage));
        PageTables.WriteIdentityMap4G(memory);
        PageTables.WriteGdt(memory, PageTables.LinuxGdt);
        return new LoadedKernel(EntryState.Long64(entry, X86Layout.ZeroPage), $"{_kernelPath}: {how}, entry 0x{entry:X}", e820);
    }

    /// <summary>The relocation table after vmlinux in the payload; false with the reason when there is none (a kernel
    /// without CONFIG_RANDOMIZE_BASE has none and would not randomise itself either) or it is malformed: the kernel
    /// then boots where it was linked.</summary>
    private bool TryReadRelocations(byte[] payload, ElfImage elf, out KernelRelocations? relocations, out string why)
    {
        try
        {
            relocations = KernelRelocations.Parse(payload, (int)Math.Min(elf.FileEnd, (ulong)payload.Length), _kernelPath);
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

internal static class BootFiles
{
    /// <summary>Reads a boot file, turning I/O failures into one message naming the file.</summary>
    public static byte[] Read(string path, string what)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new BootImageException($"{what} {path}: file not found");
            if (info.Length == 0) throw new BootImageException($"{what} {path}: file is empty");
            if (info.Length > int.MaxValue) throw new BootImageException($"{what} {path}: file is too large ({info.Length} bytes)");
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException($"{what} {path}: cannot read: {Native.SystemErrors.Describe(e)}", e);
        }
    }
}
