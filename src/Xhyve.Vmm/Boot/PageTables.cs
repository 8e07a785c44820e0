using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// The identity map of the first 4 GiB (2 MiB pages) that a 64-bit boot entry needs, plus the
/// flat GDT, written where <see cref="X86Layout"/> says.
/// </summary>
public static class PageTables
{
    private const ulong Present = 1, Writable = 2, PageSize = 0x80;

    /// <summary>Builds the four levels in a byte image of PML4 + PDPT + 4 PDs (6 pages).</summary>
    public static byte[] BuildIdentityMap4G()
    {
        var image = new byte[6 * 4096];
        var span = image.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(span, X86Layout.Pdpt | Present | Writable);
        for (int i = 0; i < 4; i++)
        {
            ulong pd = X86Layout.PageDirectories + (ulong)i * 4096;
            BinaryPrimitives.WriteUInt64LittleEndian(span[(4096 + i * 8)..], pd | Present | Writable);
            for (int j = 0; j < 512; j++)
            {
                ulong address = ((ulong)i << 30) | ((ulong)j << 21);
                BinaryPrimitives.WriteUInt64LittleEndian(span[(8192 + i * 4096 + j * 8)..], address | Present | Writable | PageSize);
            }
        }
        return image;
    }

    public static void WriteIdentityMap4G(IGuestMemory memory) => memory.WriteExactly(new GuestAddress(X86Layout.Pml4), BuildIdentityMap4G());

    // Descriptors: null, null, 64-bit code (0x10, Linux's __BOOT_CS), data (0x18, __BOOT_DS);
    // multiboot uses 0x08 (32-bit code) and 0x10... so it gets its own table.
    public static readonly ulong[] LinuxGdt = [0, 0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
    public static readonly ulong[] FlatGdt32 = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

    public static void WriteGdt(IGuestMemory memory, ReadOnlySpan<ulong> descriptors)
    {
        Span<byte> bytes = stackalloc byte[descriptors.Length * 8];
        for (int i = 0; i < descriptors.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes[(i * 8)..], descriptors[i]);
        memory.WriteExactly(new GuestAddress(X86Layout.BootGdt), bytes);
        memory.WriteExactly(new GuestAddress(X86Layout.BootIdt), stackalloc byte[8]);
    }
}
