using System.Globalization;
using Xhyve.Engine.Cli;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Disk;

/// <summary>
/// `xhyve disk`: create split/sparse images, show their allocation, check a sparse image's LUT, and a
/// stress writer for crash-consistency tests. The image options are those of -s N,virtio-blk,PATH,OPTIONS.
/// </summary>
public static class DiskCommand
{
    public const string Usage = """
        Usage: xhyve disk create PATH OPTIONS     create a split/sparse image (OPTIONS: size=SIZE[,split=SIZE][,sparse][,sectorsize=512|4096])
               xhyve disk info PATH OPTIONS       show allocated and stored sectors
               xhyve disk check PATH OPTIONS      open read-only and validate the LUT
               xhyve disk stress PATH OPTIONS SEED  write random sectors forever, printing "durable N" after each flush
        """;

    public static int Run(IReadOnlyList<string> args)
    {
        if (args.Count < 3) { Console.Error.Write(Usage); return 1; }
        SplitImageLayout layout;
        try { layout = ParseLayout(args[2]); }
        catch (CliException e) { Console.Error.WriteLine($"xhyve disk: {e.Message}"); return 1; }
        string path = args[1];
        try
        {
            switch (args[0])
            {
                case "create":
                    using (var img = SplitSparseImage.Open(path, layout, readOnly: false)) img.Flush();
                    Console.Out.WriteLine($"{path}: {layout.Size} bytes, {layout.SegmentCount} segment(s){(layout.Sparse ? ", sparse" : "")}, {layout.SectorSize}-byte sectors");
                    return 0;
                case "info":
                case "check":
                    using (var img = SplitSparseImage.Open(path, layout, readOnly: true))
                    {
                        Console.Out.WriteLine($"{path}: {img.AllocatedSectors} of {layout.Sectors} sectors allocated; stored per segment: {string.Join(" ", img.StoredSectors)}");
                        if (args[0] == "check") Console.Out.WriteLine($"{path}: ok");
                    }
                    return 0;
                case "stress" when args.Count >= 4 && int.TryParse(args[3], out int seed):
                    return Stress(path, layout, seed);
                default:
                    Console.Error.Write(Usage);
                    return 1;
            }
        }
        catch (StorageException e)
        {
            Console.Error.WriteLine($"xhyve disk: {e.Message}");
            return 1;
        }
    }

    /// <summary>size=SIZE[,split=SIZE][,sparse][,sectorsize=N]</summary>
    public static SplitImageLayout ParseLayout(string options)
    {
        long? size = null, split = null;
        bool sparse = false;
        int sectorSize = 512;
        foreach (var item in options.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = item.IndexOf('=');
            string key = eq < 0 ? item : item[..eq], value = eq < 0 ? "" : item[(eq + 1)..];
            switch (key)
            {
                case "size": size = Bytes(item, value); break;
                case "split": split = Bytes(item, value); break;
                case "sparse" when eq < 0: sparse = true; break;
                case "sectorsize":
                    if (!int.TryParse(value.Split('/')[0], NumberStyles.None, CultureInfo.InvariantCulture, out sectorSize))
                        throw new CliException($"{item}: not a sector size");
                    break;
                default: throw new CliException($"{item}: unknown image option (size=, split=, sparse, sectorsize=)");
            }
        }
        if (size == null) throw new CliException($"{options}: size= is required for a split or sparse image");
        return new SplitImageLayout(size.Value, split, sparse, sectorSize);
    }

    private static long Bytes(string item, string value)
    {
        if (!SizeParser.TryParse(value, out ulong bytes, smallBareNumbersAreMiB: false) || bytes > long.MaxValue)
            throw new CliException($"{item}: not a size");
        return (long)bytes;
    }

    /// <summary>Writes runs of 1-8 random sectors with contents derived from (seed, write number), prints
    /// "write N SECTOR COUNT" before each and "durable N" after every fourth, once Flush returned.</summary>
    private static int Stress(string path, SplitImageLayout layout, int seed)
    {
        using var img = SplitSparseImage.Open(path, layout, readOnly: false);
        var rng = new Random(seed);
        int ss = layout.SectorSize;
        var buffer = new byte[8 * ss];
        for (long n = 0; ; n++)
        {
            int count = rng.Next(1, 9);
            long sector = rng.NextInt64(0, layout.Sectors - count + 1);
            FillPattern(buffer.AsSpan(0, count * ss), seed, n);
            Console.Out.WriteLine($"write {n} {sector} {count}");
            img.Write(sector * ss, buffer.AsSpan(0, count * ss));
            if (n % 4 == 3)
            {
                img.Flush();
                Console.Out.WriteLine($"durable {n}");
            }
        }
    }

    /// <summary>The bytes write <paramref name="n"/> of a stress run stores (never all zero per sector).</summary>
    public static void FillPattern(Span<byte> data, int seed, long n)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + (int)n)); // seeded Random is the same in every process
        rng.NextBytes(data);
        for (int i = 0; i < data.Length; i += 512) data[i] |= 1;
    }
}
