using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Rom;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// A boot ROM (-l bootrom,ROM: SeaBIOS, OVMF's code volume) in its own host memory, outside guest RAM so that no
/// device can DMA into it. It is mapped read-only so that it ends at 4 GiB, where the CPU's reset vector fetches
/// its first instruction, and its last 256 KiB (all of a smaller ROM) are copied into RAM ending at 1 MiB, where a
/// BIOS expects its real-mode image (and may shadow itself: that RAM stays writable).
/// </summary>
public sealed unsafe class BootRom : IDisposable
{
    /// <summary>KVM memory slots are page-granular; OVMF's code volumes are page multiples but not all of 64 KiB
    /// (OVMF_CODE_4M.fd is 0x37C000 bytes).</summary>
    public const ulong SizeAlignment = X86Layout.PageSize;

    private nint _host;

    public string Path { get; }
    public ulong Size { get; }

    /// <summary>Where the ROM starts in guest-physical memory: 4 GiB minus its size.</summary>
    public ulong GuestAddress => X86Layout.FourGiB - Size;

    /// <summary>The guest-physical start of the ROM's low copy; it ends at 1 MiB.</summary>
    public ulong LowCopyAddress => X86Layout.BiosLowCopyStart + X86Layout.BiosLowCopySize - LowCopySize;

    /// <summary>How many of the ROM's last bytes are copied below 1 MiB: 256 KiB, or all of a smaller ROM.</summary>
    public ulong LowCopySize => Math.Min(Size, X86Layout.BiosLowCopySize);

    /// <summary>The ROM's bytes (host memory; the guest cannot change them).</summary>
    public ReadOnlySpan<byte> Bytes => _host == 0 ? default : new ReadOnlySpan<byte>((void*)_host, (int)Size);

    /// <summary>The host address of the ROM's bytes, for the hypervisor's read-only slot.</summary>
    public nint HostAddress => _host;

    private BootRom(string path, ulong size, nint host) { Path = path; Size = size; _host = host; }

    /// <summary>What is wrong with <paramref name="path"/> as a boot ROM, or null when it can be used: it must be a
    /// readable file of a whole number of 4 KiB pages, at most 16 MiB.</summary>
    public static string? Problem(string path)
    {
        if (string.IsNullOrEmpty(path)) return "bootrom: no ROM path given";
        string what = $"bootrom: ROM {path}";
        try
        {
            if (Directory.Exists(path)) return $"{what}: is a directory";
            var info = new FileInfo(path);
            if (!info.Exists) return $"{what}: file not found";
            if (info.Length == 0) return $"{what}: file is empty";
            if ((ulong)info.Length > X86Layout.BootRomMaxSize)
                return $"{what}: {info.Length} bytes is larger than the {X86Layout.BootRomMaxSize >> 20} MiB a boot ROM may have below 4 GiB";
            if ((ulong)info.Length % SizeAlignment != 0)
                return $"{what}: {info.Length} bytes is not a multiple of 4 KiB (a ROM image is mapped in whole pages)";
            using (File.OpenHandle(path, FileMode.Open, FileAccess.Read)) { }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{what}: cannot read: {SystemErrors.Describe(e)}";
        }
    }

    /// <summary>Reads the ROM into host memory; throws <see cref="BootImageException"/> naming the file when it cannot
    /// be used (see <see cref="Problem"/>).</summary>
    public static BootRom Load(string path)
    {
        if (Problem(path) is { } problem) throw new BootImageException(problem);
        // Read straight into the ROM's own mapping: no managed copy of the image outlives the load.
        using var file = BootFile.Open(path, "bootrom: ROM");
        // The file may have changed since it was checked.
        if ((ulong)file.Length > X86Layout.BootRomMaxSize || (ulong)file.Length % SizeAlignment != 0)
            throw new BootImageException($"bootrom: ROM {path}: changed while it was read ({file.Length} bytes now)");
        nint host = LibC.Mmap(0, (nuint)file.Length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
        if (host == LibC.MapFailed)
            throw new BootImageException($"bootrom: ROM {path}: cannot allocate {file.Length} bytes of host memory: {LibC.StrError(LibC.LastErrno)}");
        try { file.ReadExactly(0, new Span<byte>((void*)host, (int)file.Length)); }
        catch
        {
            LibC.Munmap(host, (nuint)file.Length);
            throw;
        }
        return new BootRom(path, (ulong)file.Length, host);
    }

    /// <summary>
    /// Puts the ROM where a CPU out of reset finds it: memory slot <paramref name="slot"/> mapped read-only at
    /// <see cref="GuestAddress"/>, the same range on <paramref name="mmio"/> as a device that drops the guest's
    /// writes (they exit there), and the low copy written into <paramref name="ram"/>. Returns what the BSP starts
    /// with: the reset vector.
    /// </summary>
    public LoadedKernel MapInto(IVirtualMachine vm, int slot, DeviceBus mmio, IGuestMemory ram)
    {
        ObjectDisposedException.ThrowIf(_host == 0, this);
        vm.MapMemory(slot, GuestAddress, _host, Size, readOnly: true);
        mmio.Register(GuestAddress, Size, new RomWindow(() => Bytes), "boot ROM");
        ram.WriteExactly(new GuestAddress(LowCopyAddress), Bytes[(int)(Size - LowCopySize)..]);
        return new LoadedKernel(EntryState.ResetVector(),
            $"{Path}: boot ROM, {Size} bytes at 0x{GuestAddress:X}, last {LowCopySize >> 10} KiB copied to 0x{LowCopyAddress:X}",
            E820Map.Build(ram));
    }

    public void Dispose()
    {
        nint host = Interlocked.Exchange(ref _host, 0);
        if (host != 0) LibC.Munmap(host, (nuint)Size);
    }
}
