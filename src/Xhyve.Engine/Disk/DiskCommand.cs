using Xhyve.Vmm.Native;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Disk;

/// <summary>
/// `xhyve disk`: create raw/split/sparse images, show their allocation, check a sparse image's LUT,
/// convert between formats (all through <see cref="DiskImages"/>), and a stress writer for crash-consistency tests. The image options are those of -s N,virtio-blk,PATH,OPTIONS.
/// </summary>
public static class DiskCommand
{
    public const string Usage = """
        Usage: xhyve disk create PATH OPTIONS         create an image (OPTIONS: size=SIZE[,split=SIZE][,sparse][,sectorsize=512..65536])
                                                      and its descriptor PATH.desc, so it later opens by path alone
               xhyve disk info PATH [OPTIONS]         show the format, size and what is stored
               xhyve disk check PATH [OPTIONS]        open read-only and validate a sparse image's LUT
               xhyve disk convert SRC DST [OPTIONS] [--from SRCOPTIONS]
                                                      copy SRC into a new image DST (raw, or split/sparse by OPTIONS)
               xhyve disk stress PATH OPTIONS SEED    write random sectors forever, printing "durable N" after each flush
        OPTIONS are those of -s N,virtio-blk,PATH,OPTIONS, separated by commas. The geometry (size=, split=, sparse,
        sectorsize=) of an existing image is read from it; options given must agree with it.
        """;

    public static int Run(IReadOnlyList<string> args)
    {
        if (args.Count < 2) { Console.Error.Write(Usage); return 1; }
        try
        {
            switch (args[0])
            {
                case "create" when args.Count == 3:
                    Print(DiskImages.Create(Options(args[1], args[2])));
                    return 0;
                case "info" when args.Count is 2 or 3:
                case "check" when args.Count is 2 or 3:
                    Print(DiskImages.Inspect(Options(args[1], args.Count == 3 ? args[2] : "")));
                    if (args[0] == "check") Console.Out.WriteLine($"{args[1]}: ok");
                    return 0;
                case "convert" when args.Count >= 3:
                    return Convert(args);
                case "stress" when args.Count == 4 && int.TryParse(args[3], out int seed):
                    return Stress(ImageGeometry.Resolve(Options(args[1], args[2])), seed);
                default:
                    Console.Error.Write(Usage);
                    return 1;
            }
        }
        catch (FormatException e)
        {
            Console.Error.WriteLine($"xhyve disk: {e.Message}");
            return 1;
        }
        catch (StorageException e)
        {
            Console.Error.WriteLine($"xhyve disk: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OverflowException or OutOfMemoryException)
        {
            // What the storage code did not turn into a StorageException: one line naming the image, never a trace.
            Console.Error.WriteLine($"xhyve disk: {SystemErrors.Describe(args[1], e)}");
            return 1;
        }
    }

    /// <summary>PATH and the comma-separated options of -s N,virtio-blk,PATH,OPTIONS.</summary>
    public static BlockDeviceOptions Options(string path, string options) =>
        BlockDeviceOptions.ParseOptions(path, options.Split(','));

    private static int Convert(IReadOnlyList<string> args)
    {
        string? targetOptions = null, sourceOptions = null;
        for (int i = 3; i < args.Count; i++)
        {
            if (args[i] == "--from" && i + 1 < args.Count) sourceOptions = args[++i];
            else if (targetOptions == null && !args[i].StartsWith("--", StringComparison.Ordinal)) targetOptions = args[i];
            else { Console.Error.Write(Usage); return 1; }
        }
        var target = BlockDeviceOptions.ParseOptions(args[2], (targetOptions ?? "").Split(','));
        var info = DiskImages.Convert(Options(args[1], sourceOptions ?? ""), target);
        Print(info);
        return 0;
    }

    private static void Print(DiskImageInfo info) =>
        Console.Out.WriteLine($"{info.Path}: {info.Format}, {info.Size} bytes, {info.SectorSize}-byte sectors, {info.AllocatedBytes} bytes stored in {info.Files.Count} file(s)");

    /// <summary>Writes runs of 1-8 random sectors with contents derived from (seed, write number), prints
    /// "write N SECTOR COUNT" before each and "durable N" after every fourth, once Flush returned.</summary>
    private static int Stress(BlockDeviceOptions options, int seed)
    {
        var layout = options.SplitLayout ?? throw new FormatException("stress needs a split or sparse image (split=, sparse)");
        using var img = SplitSparseImage.Open(options.Path, layout, readOnly: false);
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
