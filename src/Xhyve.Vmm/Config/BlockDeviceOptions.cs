using System.Globalization;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Config;

/// <summary>
/// The options of a block device: -s N,virtio-blk,PATH[,ro][,sync|direct][,nocache][,sectorsize=L[/P]]
/// [,size=SIZE][,split=SIZE][,sparse]. One parser for the engine, the disk tool and the management library.
/// </summary>
public sealed record BlockDeviceOptions
{
    public required string Path { get; init; }
    public bool ReadOnly { get; init; }
    /// <summary>sync/direct: every write reaches stable storage before it completes (O_DSYNC).</summary>
    public bool WriteThrough { get; init; }
    /// <summary>nocache: bypass the host page cache (O_DIRECT).</summary>
    public bool NoCache { get; init; }
    public int LogicalSectorSize { get; init; } = 512;
    public int PhysicalSectorSize { get; init; } = 512;
    /// <summary>True when sectorsize= was given, so it is checked against an image that records its own.</summary>
    public bool SectorSizeGiven { get; init; }
    public long? Size { get; init; }
    public long? SplitSize { get; init; }
    public bool Sparse { get; init; }

    /// <summary>The split/sparse layout when split= or sparse is given (size 0 until size= is given or read from the
    /// image by <see cref="ImageGeometry.Resolve"/>); null for a raw image or block device.</summary>
    public SplitImageLayout? SplitLayout =>
        SplitSize != null || Sparse ? new SplitImageLayout(Size ?? 0, SplitSize, Sparse, LogicalSectorSize) : null;

    /// <summary>Parses "PATH,opt,opt..." (the part after the emulation name).</summary>
    /// <exception cref="FormatException">Names the option and what is wrong with it.</exception>
    public static BlockDeviceOptions Parse(string? text)
    {
        var items = (text ?? "").Split(',');
        if (items[0].Length == 0) throw new FormatException("no image path given (e.g. virtio-blk,disk.img)");
        return ParseOptions(items[0], items.AsSpan(1));
    }

    /// <summary>Parses the options alone, for a path given separately (the disk tool, the module). split= and
    /// sparse need no size=: an existing image has its own (<see cref="ImageGeometry.Resolve"/>), and creating one asks for it.</summary>
    public static BlockDeviceOptions ParseOptions(string path, ReadOnlySpan<string> items)
    {
        var o = new BlockDeviceOptions { Path = path };
        // Each option once: a repeated one (split=1M,split=2M) would leave the user guessing which one counts.
        var seen = new Dictionary<string, string>();
        foreach (var item in items)
        {
            if (item.Length == 0) continue;
            int eq = item.IndexOf('=');
            string key = eq < 0 ? item : item[..eq], value = eq < 0 ? "" : item[(eq + 1)..];
            bool flag = eq < 0;
            string slot = key == "direct" ? "sync" : key;   // synonyms: sync,direct is the same option twice
            if (seen.TryGetValue(slot, out string? first))
                throw new FormatException($"{item}: {first} was already given (each block option may appear once)");
            seen[slot] = item;
            o = key switch
            {
                "ro" when flag => o with { ReadOnly = true },
                "sync" or "direct" when flag => o with { WriteThrough = true },
                "nocache" when flag => o with { NoCache = true },
                "sparse" when flag => o with { Sparse = true },
                "size" when !flag => o with { Size = Bytes(item, value) },
                "split" when !flag => o with { SplitSize = Bytes(item, value) },
                "sectorsize" when !flag => ParseSectorSize(o, item, value),
                _ => throw new FormatException($"{item}: unknown block option (ro, sync, direct, nocache, sectorsize=L[/P], size=, split=, sparse)"),
            };
        }
        if (o.Size != null && o.SplitLayout is { } layout && layout.Validate() is { Count: > 0 } problems) throw new FormatException(string.Join("; ", problems));
        if (o.Size == null && o.SplitSize is { } split && split % o.LogicalSectorSize != 0)
            throw new FormatException($"split={split}: must be a positive multiple of the {o.LogicalSectorSize}-byte sector");
        if (o.Size is { } size && size % o.LogicalSectorSize != 0) throw new FormatException($"size={size}: not a multiple of the {o.LogicalSectorSize}-byte sector");
        return o;
    }

    private static BlockDeviceOptions ParseSectorSize(BlockDeviceOptions o, string item, string value)
    {
        var parts = value.Split('/');
        if (parts.Length > 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int logical)
            || (parts.Length == 2 ? !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int physical) : (physical = logical) < 0))
            throw new FormatException($"{item}: expected sectorsize=LOGICAL[/PHYSICAL]");
        if (Storage.SectorSize.Problem(logical, physical) is { } problem) throw new FormatException($"{item}: {problem}");
        return o with { LogicalSectorSize = logical, PhysicalSectorSize = physical, SectorSizeGiven = true };
    }

    private static long Bytes(string item, string value)
    {
        if (!SizeParser.TryParse(value, out ulong bytes, smallBareNumbersAreMiB: false) || bytes == 0 || bytes > long.MaxValue)
            throw new FormatException($"{item}: not a size (e.g. 20G, 512M)");
        return (long)bytes;
    }

    /// <summary>The option string that parses back to this record (for the management library).</summary>
    public override string ToString()
    {
        var parts = new List<string> { Path };
        if (ReadOnly) parts.Add("ro");
        if (WriteThrough) parts.Add("sync");
        if (NoCache) parts.Add("nocache");
        if (SectorSizeGiven || LogicalSectorSize != 512 || PhysicalSectorSize != 512)
            parts.Add(PhysicalSectorSize == LogicalSectorSize ? $"sectorsize={LogicalSectorSize}" : $"sectorsize={LogicalSectorSize}/{PhysicalSectorSize}");
        if (Size != null) parts.Add($"size={Size}");
        if (SplitSize != null) parts.Add($"split={SplitSize}");
        if (Sparse) parts.Add("sparse");
        return string.Join(',', parts);
    }
}
