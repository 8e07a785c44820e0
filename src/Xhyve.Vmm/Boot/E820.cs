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
    public static IReadOnlyList<E820Entry> FixedReservations { get; } =
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

        // RAM wins where a layout would put it over a device window: the window is unreachable there,
        // and a reserved entry over RAM would make the guest lose that RAM.
        var ram = memory.Regions.Select(r => (Start: r.Start.Value, r.End)).OrderBy(r => r.Start).ToList();
        foreach (var reservation in FixedReservations)
            entries.AddRange(OutsideRam(reservation, ram));

        return Normalize(entries);
    }

    private static IEnumerable<E820Entry> OutsideRam(E820Entry e, List<(ulong Start, ulong End)> ram)
    {
        ulong at = e.Address;
        foreach (var r in ram)
        {
            if (r.End <= at || r.Start >= e.End) continue;
            if (r.Start > at) yield return e with { Address = at, Size = r.Start - at };
            at = Math.Max(at, r.End);
        }
        if (at < e.End) yield return e with { Address = at, Size = e.End - at };
    }

    /// <summary>Sorts by address and merges touching or overlapping entries of the same type; entries of
    /// different types must not overlap (that is a layout bug, not something to resolve silently).</summary>
    private static List<E820Entry> Normalize(List<E820Entry> entries)
    {
        var sorted = entries.Where(e => e.Size > 0).OrderBy(e => e.Address).ToList();
        var result = new List<E820Entry>();
        foreach (var e in sorted)
        {
            if (result.Count > 0)
            {
                var last = result[^1];
                if (e.Address < last.End && e.Type != last.Type)
                    throw new InvalidOperationException($"e820 entries overlap: {last} and {e}");
                if (e.Address <= last.End && e.Type == last.Type)
                {
                    result[^1] = last with { Size = Math.Max(last.End, e.End) - last.Address };
                    continue;
                }
            }
            result.Add(e);
        }
        return result;
    }

    /// <summary>Writes entries in the 20-byte boot_e820_entry / multiboot layout (addr, size, type).</summary>
    public static void Write(Span<byte> destination, E820Entry e)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, e.Address);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], e.Size);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], (uint)e.Type);
    }
}
