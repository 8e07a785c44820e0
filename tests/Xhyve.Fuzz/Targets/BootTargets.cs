using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Fuzz;

/// <summary>
/// The kernel loaders on a file that is the input: "bzimage" through the Linux loader in each mode (host
/// decompression with fallback, as-is, host decompression only), "elf" through the multiboot loader and the Linux loader's ELF path. A file
/// that cannot be booted is a BootImageException naming it; anything else is a crash.
/// </summary>
internal static class BootTargets
{
    // 64 MiB of guest RAM, mapped once (pages are committed on first touch).
    private static readonly Lazy<GuestMemory> Ram = new(() => new GuestMemory(X86Layout.RamRegions(64UL << 20)));

    public static void BzImage(byte[] data)
    {
        string kernel = Scratch.File("bzImage", data);
        Expect(() => new LinuxLoader(kernel, null, "console=ttyS0", KernelLoadMode.Auto).Load(Ram.Value));
        Expect(() => new LinuxLoader(kernel, null, "console=ttyS0", KernelLoadMode.BzImage).Load(Ram.Value));
        Expect(() => new LinuxLoader(kernel, null, "console=ttyS0", KernelLoadMode.HostDecompress).Load(Ram.Value));
    }

    public static void Elf(byte[] data)
    {
        string kernel = Scratch.File("kernel.elf", data);
        Expect(() => new MultibootLoader(kernel, [], "console=com1").Load(Ram.Value));
        if (ElfImage.HasElfMagic(data)) Expect(() => new LinuxLoader(kernel, null, "console=ttyS0").Load(Ram.Value));
    }

    private static void Expect(Action load)
    {
        try { load(); }
        catch (BootImageException e) { Program.Expected(e); }
    }
}
