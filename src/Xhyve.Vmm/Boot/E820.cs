using System.Buffers.Binary;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Boot;

public enum E820Type : uint { Ram = 1, Reserved = 2, Acpi = 3, Nvs = 4 }

public readonly record struct E820Entry(ulong Address, ulong Size, E820Type Type)
{
    public ulong End => Address + Size;
    public override string ToString() => $"[mem 0x{Address:x16}-0x{End - 1:x16}] {Type}";
}

/// <summary>Builds the BIOS memory map (e820) the guest is told about.</summary>
public static class E820Map
{
    public const int EntrySize = 20;

    /// <summary>RAM below the EBDA, the EBDA and BIOS area reserved, RAM from 1 MiB, RAM above 4 GiB.</summary>
    public static IReadOnlyList<E820Entry> Build(IGuestMemory memory)
    {
        var entries = new List<E820Entry>();
        foreach (var region in memory.Regions)
        {
            ulong start = region.Start.Value, end = region.End;
            if (start < X86Layout.HighMemoryStart)
            {
                ulong conventionalEnd = Math.Min(end, X86Layout.EbdaStart);
                entries.Add(new E820Entry(start, conventionalEnd - start, E820Type.Ram));
                if (end > X86Layout.EbdaStart)
                    entries.Add(new E820Entry(X86Layout.EbdaStart, X86Layout.LowRamEnd - X86Layout.EbdaStart, E820Type.Reserved));
                if (end > X86Layout.BiosStart)
                    entries.Add(new E820Entry(X86Layout.BiosStart, X86Layout.HighMemoryStart - X86Layout.BiosStart, E820Type.Reserved));
                start = X86Layout.HighMemoryStart;
                if (end <= start) continue;
            }
            entries.Add(new E820Entry(start, end - start, E820Type.Ram));
        }
        return entries;
    }

    /// <summary>Writes entries in the 20-byte boot_e820_entry / multiboot layout (addr, size, type).</summary>
    public static void Write(Span<byte> destination, E820Entry e)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, e.Address);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], e.Size);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], (uint)e.Type);
    }
}
