using System.Buffers.Binary;
using Xhyve.Vmm.Firmware.Acpi;
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

    /// <summary>
    /// The fixed device windows below 4 GiB that firmware reports as reserved, so the guest neither
    /// treats them as free address space for PCI BARs nor rejects ECAM (Linux uses MMCONFIG only if its
    /// window is reserved in e820 or by an ACPI motherboard device).
    /// </summary>
    public static IReadOnlyList<E820Entry> FixedReservations => Reservations;

    private static readonly E820Entry[] Reservations =
    [
        new(PlatformLayout.EcamBase, PlatformLayout.EcamSize, E820Type.Reserved),   // the whole range PciEcam decodes
        new(X86Layout.IoapicBase, X86Layout.PageSize, E820Type.Reserved),
        new(PlatformLayout.HpetBase, X86Layout.PageSize, E820Type.Reserved),
        new(X86Layout.LapicBase, X86Layout.PageSize, E820Type.Reserved),
        new(X86Layout.KvmIdentityMapAddress, X86Layout.KvmPrivatePagesEnd - X86Layout.KvmIdentityMapAddress, E820Type.Reserved),
    ];

    /// <summary>RAM below the EBDA, the EBDA and BIOS area reserved, RAM from 1 MiB, RAM above 4 GiB, and the
    /// <see cref="FixedReservations"/>; sorted, with touching entries of one type merged as Linux's
    /// sanitizer would (so the list equals the "BIOS-e820" lines Linux prints).</summary>
    public static IReadOnlyList<E820Entry> Build(IGuestMemory memory)
    {
        // Loops over a stack buffer rather than LINQ and lists: E820Entry is our struct, and generic code over it is
        // JIT-compiled at start. At most 4 entries per region, and each reservation cut around every region.
        var regions = memory.Regions;
        Span<E820Entry> entries = stackalloc E820Entry[4 * regions.Count + Reservations.Length * (regions.Count + 1)];
        int n = 0;
        for (int i = 0; i < regions.Count; i++)
        {
            ulong start = regions[i].Start.Value, end = regions[i].End;
            if (start < X86Layout.HighMemoryStart)
            {
                ulong conventionalEnd = Math.Min(end, X86Layout.EbdaStart);
                entries[n++] = new E820Entry(start, conventionalEnd - start, E820Type.Ram);
                if (end > X86Layout.EbdaStart)
                    entries[n++] = new E820Entry(X86Layout.EbdaStart, X86Layout.LowRamEnd - X86Layout.EbdaStart, E820Type.Reserved);
                if (end > X86Layout.BiosStart)
                    entries[n++] = new E820Entry(X86Layout.BiosStart, X86Layout.HighMemoryStart - X86Layout.BiosStart, E820Type.Reserved);
                start = X86Layout.HighMemoryStart;
                if (end <= start) continue;
            }
            entries[n++] = new E820Entry(start, end - start, E820Type.Ram);
        }

        // RAM wins where a layout would put it over a device window: the window is unreachable there,
        // and a reserved entry over RAM would make the guest lose that RAM. (Regions come lowest first.)
        foreach (var e in Reservations)
        {
            ulong at = e.Address;
            for (int i = 0; i < regions.Count; i++)
            {
                ulong ramStart = regions[i].Start.Value, ramEnd = regions[i].End;
                if (ramEnd <= at || ramStart >= e.End) continue;
                if (ramStart > at) entries[n++] = e with { Address = at, Size = ramStart - at };
                at = Math.Max(at, ramEnd);
            }
            if (at < e.End) entries[n++] = e with { Address = at, Size = e.End - at };
        }
        return Normalize(entries[..n]);
    }

    /// <summary>Sorts by address and merges touching or overlapping entries of the same type; entries of
    /// different types must not overlap (that is a layout bug, not something to resolve silently).</summary>
    private static E820Entry[] Normalize(Span<E820Entry> entries)
    {
        // A stable insertion sort: a dozen entries.
        for (int i = 1; i < entries.Length; i++)
        {
            var e = entries[i];
            int j = i - 1;
            for (; j >= 0 && entries[j].Address > e.Address; j--) entries[j + 1] = entries[j];
            entries[j + 1] = e;
        }
        var result = new E820Entry[entries.Length];
        int count = 0;
        foreach (var e in entries)
        {
            if (e.Size == 0) continue;
            if (count > 0)
            {
                var last = result[count - 1];
                if (e.Address < last.End && e.Type != last.Type)
                    throw new InvalidOperationException($"e820 entries overlap: {last} and {e}");
                if (e.Address <= last.End && e.Type == last.Type)
                {
                    result[count - 1] = last with { Size = Math.Max(last.End, e.End) - last.Address };
                    continue;
                }
            }
            result[count++] = e;
        }
        return result[..count];
    }

    /// <summary>Writes entries in the 20-byte boot_e820_entry / multiboot layout (addr, size, type).</summary>
    public static void Write(Span<byte> destination, E820Entry e)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, e.Address);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], e.Size);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], (uint)e.Type);
    }
}
