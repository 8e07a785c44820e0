using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// Linux's struct boot_params ("zero page"), built in a 4 KiB buffer and then written to guest
/// memory. Offsets from Documentation/x86/zero-page.rst and boot.rst.
/// </summary>
public sealed class BootParams
{
    public const int Size = 4096;
    private const int ExtRamdiskImage = 0x0C0, ExtRamdiskSize = 0x0C4, ExtCmdLinePtr = 0x0C8;
    private const int E820Entries = 0x1E8, E820Table = 0x2D0, E820Max = 128;
    private const int VidMode = 0x1FA, BootFlag = 0x1FE, Header = 0x202, TypeOfLoader = 0x210, LoadFlags = 0x211;
    private const int RamdiskImage = 0x218, RamdiskSize = 0x21C, HeapEndPtr = 0x224, CmdLinePtr = 0x228;
    private const int KernelAlignment = 0x230, CmdLineSize = 0x238;

    private readonly byte[] _page = new byte[Size];
    public ReadOnlySpan<byte> Bytes => _page;

    /// <summary>Starts from a bzImage's setup header, or from a minimal one for a plain vmlinux.</summary>
    public BootParams(BzImage? image)
    {
        var p = _page.AsSpan();
        if (image != null)
        {
            image.SetupHeader.Span.CopyTo(p[0x1F1..]);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(p[BootFlag..], 0xAA55);
            BinaryPrimitives.WriteUInt32LittleEndian(p[Header..], 0x5372_6448);
            BinaryPrimitives.WriteUInt32LittleEndian(p[KernelAlignment..], 0x0100_0000);
            BinaryPrimitives.WriteUInt32LittleEndian(p[CmdLineSize..], X86Layout.CommandLineMax - 1);
        }
        p[TypeOfLoader] = 0xFF;                                   // "undefined" boot loader
        p[LoadFlags] |= 0x01 | 0x80;                              // LOADED_HIGH | CAN_USE_HEAP
        BinaryPrimitives.WriteUInt16LittleEndian(p[VidMode..], 0xFFFF); // "normal" text mode
        BinaryPrimitives.WriteUInt16LittleEndian(p[HeapEndPtr..], 0xFE00);
    }

    /// <summary>loadflags KASLR_FLAG (bit 1): the loader placed the kernel at a random offset, as the kernel's own
    /// decompressor records it; the kernel then randomises its memory regions too and reports the offset.</summary>
    public void SetKaslr() => _page[LoadFlags] |= 0x02;

    public void SetCommandLine(ulong address)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(CmdLinePtr), (uint)address);
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(ExtCmdLinePtr), (uint)(address >> 32));
    }

    public void SetRamdisk(ulong address, ulong size)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(RamdiskImage), (uint)address);
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(RamdiskSize), (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(ExtRamdiskImage), (uint)(address >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(_page.AsSpan(ExtRamdiskSize), (uint)(size >> 32));
    }

    public void SetE820(IReadOnlyList<E820Entry> entries)
    {
        if (entries.Count > E820Max) throw new ArgumentException($"Too many e820 entries ({entries.Count} > {E820Max})");
        _page[E820Entries] = (byte)entries.Count;
        for (int i = 0; i < entries.Count; i++)
            E820Map.Write(_page.AsSpan(E820Table + i * E820Map.EntrySize), entries[i]);
    }

    public void WriteTo(IGuestMemory memory, GuestAddress address) => memory.WriteExactly(address, _page);
}
