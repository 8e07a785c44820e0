using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>How an image stores the disk.</summary>
public enum DiskImageFormat
{
    /// <summary>One file (or host block device) holding the disk byte for byte.</summary>
    Raw,
    /// <summary>Segment files PATH.0000, PATH.0001, ... of split= bytes each.</summary>
    Split,
    /// <summary>One file PATH holding only written sectors, mapped by PATH.lut.</summary>
    Sparse,
    /// <summary>Segment files holding only written sectors, mapped by PATH.lut.</summary>
    SplitSparse,
}

/// <summary>Why an image's geometry could not be settled.</summary>
public enum DiskImageProblem
{
    /// <summary>None of the image's files exist.</summary>
    NotFound,
    /// <summary>An option given contradicts the image.</summary>
    Conflict,
    /// <summary>The descriptor, or a file it describes, is damaged or does not match.</summary>
    Damaged,
    /// <summary>An image without a descriptor whose geometry cannot be inferred: an option must be given.</summary>
    OptionNeeded,
}

/// <summary>A geometry problem: <see cref="File"/> is the file at fault (the image, its descriptor or its LUT).</summary>
public sealed class DiskImageException(DiskImageProblem problem, string file, string message) : StorageException(message)
{
    public DiskImageProblem Problem { get; } = problem;
    public string File { get; } = file;
}

/// <summary>An image's geometry as found on disk. <paramref name="SplitSize"/> is null unless split;
/// <paramref name="Size"/> is null for a host block device; <paramref name="SectorSize"/> is null when the image
/// does not record it (an image without a descriptor: any sector size may be given). <paramref name="Evidence"/>
/// says where the size came from, for messages ("its web.img.lut has 2097152 sectors").</summary>
public sealed record DiskGeometry(DiskImageFormat Format, long? Size, long? SplitSize, int? SectorSize, string Evidence, bool FromDescriptor)
{
    public bool Sparse => Format is DiskImageFormat.Sparse or DiskImageFormat.SplitSparse;
}

/// <summary>
/// Reads an image's geometry from the image itself, so a disk attaches by path alone. The xhyve split/sparse format
/// has no header, so images this code creates get a descriptor beside them (<see cref="DescriptorPath"/>: JSON,
/// written atomically, at most <see cref="MaxDescriptorBytes"/>, strictly checked); images without one (the original
/// xhyve's) are inferred where the files say it unambiguously, and otherwise the error names the option to give.
/// </summary>
public static class ImageGeometry
{
    /// <summary>A descriptor is a few dozen bytes; anything much larger is not one, and is not read into memory.</summary>
    public const int MaxDescriptorBytes = 4096;
    /// <summary>The largest disk an image may describe: 2^53 bytes (8 PiB). Far beyond any real disk, it is the
    /// largest whole number a JSON reader keeping numbers as doubles holds exactly (the descriptor is JSON), and it
    /// leaves a long room for the arithmetic on it (size plus a segment, sectors times 4 for the LUT) not to overflow.</summary>
    public const long MaxImageSize = 1L << 53;
    private const int Version = 1;

    /// <summary>PATH.desc: the descriptor of the image at <paramref name="path"/>.</summary>
    public static string DescriptorPath(string path) => path + ".desc";

    /// <summary>Fills in the geometry options left out (size=, split=, sparse, sectorsize=) from the image at
    /// <paramref name="given"/>'s path, and refuses options that contradict it. An image that does not exist is
    /// returned unchanged when size= asks for a new one. Reads only: nothing is created or changed.</summary>
    /// <exception cref="DiskImageException">Names the file and the option at fault.</exception>
    public static BlockDeviceOptions Resolve(BlockDeviceOptions given)
    {
        var found = Detect(given.Path, given);
        if (found == null)
        {
            if (given.Size != null) return given;   // a new image, made by whoever opens it
            throw new DiskImageException(DiskImageProblem.NotFound, given.Path, $"{given.Path}: the image does not exist (give size= to create one)");
        }
        var problems = new List<string>();
        string image = $"the image {given.Path}";
        if (given.Size is { } size && found.Size is { } actual && size != actual)
            problems.Add($"size={Option(size)}: {image} is {Human(actual)} ({found.Evidence})");
        if (given.SplitSize is { } split)
        {
            if (found.SplitSize == null) problems.Add($"split={Option(split)}: {image} is not split (there is no {Name(given.Path)}.0000)");
            else if (found.SplitSize != split) problems.Add($"split={Option(split)}: {image} has segments of {Human(found.SplitSize.Value)}");
        }
        if (given.Sparse && !found.Sparse) problems.Add($"sparse: {image} is not sparse (there is no {Name(given.Path)}.lut)");
        if (given.SectorSizeGiven && found.SectorSize is { } ss && ss != given.LogicalSectorSize)
            problems.Add($"sectorsize={given.LogicalSectorSize}: {image} has {ss}-byte sectors (its {Name(DescriptorPath(given.Path))} records them)");
        if (problems.Count > 0) throw new DiskImageException(DiskImageProblem.Conflict, given.Path, string.Join("; ", problems));

        int logical = found.SectorSize ?? given.LogicalSectorSize;
        var resolved = given with
        {
            LogicalSectorSize = logical,
            PhysicalSectorSize = Math.Max(given.PhysicalSectorSize, logical),
            // size= stays as given for raw images: there it means "create with this size", which no longer applies.
            Size = found.Format == DiskImageFormat.Raw ? given.Size : found.Size,
            SplitSize = found.SplitSize,
            Sparse = found.Sparse,
        };
        if (resolved.SplitLayout?.Validate() is { Count: > 0 } invalid)
            throw new DiskImageException(DiskImageProblem.Damaged, given.Path, $"{given.Path}: {string.Join("; ", invalid)}");
        return resolved;
    }

    /// <summary>The geometry of the image at <paramref name="path"/>, or null when none of its files exist.
    /// <paramref name="given"/>'s split= and sectorsize= are used where the files cannot say (an image without a
    /// descriptor), and checked against them.</summary>
    /// <exception cref="DiskImageException">A damaged descriptor, or an image whose geometry needs an option.</exception>
    public static DiskGeometry? Detect(string path, BlockDeviceOptions? given = null)
    {
        try
        {
            if (OutputFiles.LStat(DescriptorPath(path)) != null)
            {
                var recorded = ReadDescriptor(path);
                CheckFiles(path, recorded);
                return recorded;
            }
            return Infer(path, given);
        }
        catch (Exception e) when (e is OverflowException or ArgumentOutOfRangeException)
        {
            // The checks above bound every number first; should one still slip through, it is the image's numbers
            // that are wrong, reported as such rather than as a .NET exception.
            throw new DiskImageException(DiskImageProblem.Damaged, path, $"{path}: the image's geometry is out of range ({e.Message})");
        }
    }

    /// <summary>Writes the descriptor of a new image: to a new file beside it, synced, then renamed into place.</summary>
    public static void WriteDescriptor(string path, DiskImageFormat format, long size, long? splitSize, int sectorSize)
    {
        // ReadDescriptor refuses larger sizes: a descriptor it could not read back is not written.
        if (size > MaxImageSize) throw new StorageException($"{path}: {size} bytes is larger than the largest disk an image may be ({Human(MaxImageSize)})");
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            w.WriteString("format", FormatName(format));
            w.WriteNumber("size", size);
            if (splitSize is { } split) w.WriteNumber("split", split);
            w.WriteNumber("sectorSize", sectorSize);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        try { OutputFiles.WriteReplacing(DescriptorPath(path), buffer.ToArray(), "descriptor"); }
        catch (IOException e) { throw new StorageException(e.Message, e); }
    }

    /// <summary>Reads and checks PATH.desc: a regular file (never a symlink), at most <see cref="MaxDescriptorBytes"/>,
    /// holding exactly the members <see cref="WriteDescriptor"/> writes, each once, with values that make a valid layout.</summary>
    public static DiskGeometry ReadDescriptor(string path)
    {
        string desc = DescriptorPath(path);
        byte[] bytes = ReadSmallFile(desc);
        var format = (DiskImageFormat?)null;
        long? size = null, split = null;
        int? sectorSize = null, version = null;
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 2 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Damaged(desc, "not a JSON object");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(p.Name)) throw Damaged(desc, $"\"{p.Name}\" appears twice");
                switch (p.Name)
                {
                    case "version": version = Int(desc, p); break;
                    case "format":
                        format = p.Value.ValueKind == JsonValueKind.String ? ParseFormat(p.Value.GetString()!) : null;
                        if (format == null) throw Damaged(desc, "\"format\" must be \"raw\", \"split\", \"sparse\" or \"split+sparse\"");
                        break;
                    case "size": size = Long(desc, p); break;
                    case "split": split = Long(desc, p); break;
                    case "sectorSize": sectorSize = Int(desc, p); break;
                    default: throw Damaged(desc, $"unknown member \"{p.Name}\"");
                }
            }
        }
        catch (JsonException e) { throw Damaged(desc, $"not valid JSON ({e.Message})"); }
        if (version != Version) throw Damaged(desc, version == null ? "\"version\" is missing" : $"version {version} is not supported (this engine reads version {Version})");
        if (format == null || size == null || sectorSize == null)
            throw Damaged(desc, $"\"{(format == null ? "format" : size == null ? "size" : "sectorSize")}\" is missing");
        bool isSplit = format is DiskImageFormat.Split or DiskImageFormat.SplitSparse;
        if (isSplit != (split != null)) throw Damaged(desc, isSplit ? "\"split\" is missing" : $"\"split\" given for a {FormatName(format.Value)} image");
        if (!SectorSize.IsValidLogical(sectorSize.Value)) throw Damaged(desc, $"sectorSize {sectorSize}: must be a power of two from {SectorSize.Min} to {SectorSize.Max}");
        if (size <= 0 || size % sectorSize != 0) throw Damaged(desc, $"size {size}: not a positive multiple of the {sectorSize}-byte sector");
        if (size > MaxImageSize) throw Damaged(desc, $"size {size}: larger than the largest disk an image may be ({Human(MaxImageSize)})");
        bool sparse = format is DiskImageFormat.Sparse or DiskImageFormat.SplitSparse;
        if (format != DiskImageFormat.Raw && new SplitImageLayout(size.Value, split, sparse, sectorSize.Value).Validate() is { Count: > 0 } problems)
            throw Damaged(desc, string.Join("; ", problems));
        return new DiskGeometry(format.Value, size, split, sectorSize, $"as its {Name(desc)} records", FromDescriptor: true);
    }

    /// <summary>The descriptor must describe the files that are there: a LUT of another size, a raw file of another
    /// length or no image files at all mean the descriptor is not this image's (or the image was changed).</summary>
    private static void CheckFiles(string path, DiskGeometry g)
    {
        string desc = DescriptorPath(path);
        long size = g.Size!.Value;
        if (g.Format == DiskImageFormat.Raw)
        {
            if (StatFollowing(path) is not { } st)
                throw new DiskImageException(DiskImageProblem.Damaged, path, $"{path}: the image does not exist (only its descriptor {Name(desc)} does)");
            if ((st.Mode & LibC.S_IFMT) == LibC.S_IFREG && st.Size != size)
                throw new DiskImageException(DiskImageProblem.Damaged, desc,
                    $"{desc}: records a {Human(size)} image, but {path} is {Human(st.Size)} (if it was resized on purpose, delete {Name(desc)})");
            return;
        }
        var layout = new SplitImageLayout(size, g.SplitSize, g.Sparse, g.SectorSize!.Value);
        bool anyData = Enumerable.Range(0, layout.SegmentCount).Any(i => OutputFiles.LStat(SplitSparseImage.SegmentPath(path, layout, i)) != null);
        string lut = SplitSparseImage.LutPath(path);
        var lutStat = StatImageFile(lut);
        if (!anyData && lutStat == null)
            throw new DiskImageException(DiskImageProblem.Damaged, path, $"{path}: the image's files are missing (only its descriptor {Name(desc)} is there)");
        if (g.Sparse && lutStat is { } ls && (ls.Mode & LibC.S_IFMT) == LibC.S_IFREG && ls.Size != layout.Sectors * 4)
            throw new DiskImageException(DiskImageProblem.Damaged, lut,
                $"{lut}: has {ls.Size / 4} sectors ({ls.Size} bytes), but {Name(desc)} records a {Human(size)} disk of {layout.SectorSize}-byte sectors ({layout.Sectors} sectors)");
    }

    /// <summary>The geometry of an image without a descriptor, from its files: a LUT gives the sector count (sparse);
    /// segment files PATH.0000.. give split (a non-sparse split image's segments are pre-sized to it); a plain file
    /// alone is raw.</summary>
    private static DiskGeometry? Infer(string path, BlockDeviceOptions? given)
    {
        string lut = SplitSparseImage.LutPath(path);
        var lutStat = StatImageFile(lut);
        int segments = 0;
        while (segments < 10000 && OutputFiles.LStat($"{path}.{segments:D4}") != null) segments++;
        string segmentNames = segments == 1 ? $"{Name(path)}.0000" : $"{Name(path)}.0000 to {Name(path)}.{segments - 1:D4}";
        int? givenSectorSize = given is { SectorSizeGiven: true } ? given.LogicalSectorSize : null;
        // The format records no sector size; xhyve's default is 512.
        int ss = givenSectorSize ?? 512;

        if (lutStat is { } ls)
        {
            if ((ls.Mode & LibC.S_IFMT) != LibC.S_IFREG)
                throw new DiskImageException(DiskImageProblem.Damaged, lut, $"{lut}: is {OutputFiles.Describe(ls.Mode)}, not a regular file");
            if (ls.Size == 0 || ls.Size % 4 != 0)
                throw new DiskImageException(DiskImageProblem.Damaged, lut, $"{lut}: {ls.Size} bytes is not a whole number of 4-byte sector entries");
            long sectors = ls.Size / 4;
            // Checked: a huge sparse LUT (its length is only a number) must not wrap into a small or negative size.
            long size;
            try { size = checked(sectors * ss); }
            catch (OverflowException) { size = long.MaxValue; }
            if (size > MaxImageSize)
                throw new DiskImageException(DiskImageProblem.Damaged, lut,
                    $"{lut}: {sectors} sectors of {ss} bytes is larger than the largest disk an image may be ({Human(MaxImageSize)})");
            string evidence = $"its {Name(lut)} has {sectors} sectors";
            if (segments == 0)
            {
                if (OutputFiles.LStat(path) == null)
                    throw new DiskImageException(DiskImageProblem.Damaged, path, $"{path}: missing (its {Name(lut)} is there but no data file {Name(path)} or {Name(path)}.0000)");
                return new DiskGeometry(DiskImageFormat.Sparse, size, null, givenSectorSize, evidence, false);
            }
            // Sparse segments grow from empty, so only their number tells the split: one segment means every sector
            // is in it (any split >= size lays the disk out the same); more need split= (ceil(size/split) segments,
            // or size/split + 1 as xhyve makes them).
            if (given?.SplitSize is { } split)
            {
                if (!SegmentCountFits(path, size, split, segments))
                    throw new DiskImageException(DiskImageProblem.Conflict, path,
                        $"split={Option(split)}: the image {path} has {segments} segment files ({segmentNames}), which a split of {Human(split)} does not give for its {Human(size)} ({evidence})");
                return new DiskGeometry(DiskImageFormat.SplitSparse, size, split, givenSectorSize, evidence, false);
            }
            if (segments == 1) return new DiskGeometry(DiskImageFormat.SplitSparse, size, size, givenSectorSize, evidence, false);
            throw new DiskImageException(DiskImageProblem.OptionNeeded, path,
                $"{path}: a split sparse image of {segments} segment files ({segmentNames}) without a descriptor; give split=SIZE, the segment size it was made with");
        }
        if (segments > 0)
        {
            // Segments without a LUT are a split image, unless sparse was given: then the LUT is what is missing.
            if (given is { Sparse: true })
                throw new DiskImageException(DiskImageProblem.Damaged, lut, $"{lut}: missing from the existing image {path} (its segment files are there)");
            string first = $"{path}.0000";
            var firstStat = StatImageFile(first)!.Value;
            if ((firstStat.Mode & LibC.S_IFMT) != LibC.S_IFREG)
                throw new DiskImageException(DiskImageProblem.Damaged, first, $"{first}: is {OutputFiles.Describe(firstStat.Mode)}, not a regular file");
            long segmentSize = firstStat.Size;
            if (segmentSize <= 0 || segmentSize % ss != 0)
                throw new DiskImageException(DiskImageProblem.Damaged, first, $"{first}: {segmentSize} bytes is not a whole number of {ss}-byte sectors, so it is not a segment of a split image");
            if (given?.SplitSize is { } split && split != segmentSize)
                throw new DiskImageException(DiskImageProblem.Conflict, path, $"split={Option(split)}: the image {path} has segments of {Human(segmentSize)} ({Name(first)} is {segmentSize} bytes)");
            // Pre-sized segments give split; the disk's size is anywhere in the last segment (and xhyve adds a spare one).
            if (given?.Size is not { } size)
                throw new DiskImageException(DiskImageProblem.OptionNeeded, path,
                    $"{path}: a split image of {segments} segment files of {Human(segmentSize)} ({segmentNames}) without a descriptor; give size=SIZE, the disk size it was made with");
            if (!SegmentCountFits(path, size, segmentSize, segments))
                throw new DiskImageException(DiskImageProblem.Conflict, path,
                    $"size={Option(size)}: the image {path} has {segments} segment files of {Human(segmentSize)} ({segmentNames}), which do not make a {Human(size)} disk");
            return new DiskGeometry(DiskImageFormat.Split, size, segmentSize, givenSectorSize, $"its {segments} segment files of {Human(segmentSize)}", false);
        }
        if (StatFollowing(path) is not { } st) return null;
        bool regular = (st.Mode & LibC.S_IFMT) == LibC.S_IFREG;
        return new DiskGeometry(DiskImageFormat.Raw, regular ? st.Size : null, null, null, $"the file is {st.Size} bytes", false);
    }

    /// <summary>Our images have ceil(size/split) segments; xhyve's have size/split + 1. Fewer, with the last one
    /// there, is a missing segment, which opening the image reports naming it.</summary>
    private static bool SegmentCountFits(string path, long size, long split, int segments)
    {
        long needed = SplitImageLayout.CeilingDivide(size, split);   // size + split - 1 would overflow for a huge split=
        if (segments == needed || segments == size / split + 1) return true;
        return segments < needed && needed <= 10000 && OutputFiles.LStat($"{path}.{needed - 1:D4}") != null;
    }

    /// <summary>A segment's or LUT's status as opening the image sees it: SplitSparseImage opens them following a
    /// symlink, so a symlinked one is measured by its target, not by the link. Null when there is no such name; a
    /// link to nothing is an error naming it (opening it would fail, or create a file where the link points).</summary>
    private static Stat? StatImageFile(string path)
    {
        if (OutputFiles.LStat(path) == null) return null;
        return StatFollowing(path) ?? throw new DiskImageException(DiskImageProblem.Damaged, path,
            $"{path}: a symbolic link to {(TryReadLink(path) is { } target ? $"'{target}', which" : "a file that")} does not exist");
    }

    private static string? TryReadLink(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static unsafe Stat? StatFollowing(string path)
    {
        Stat st;
        return LibC.StatPath(path, &st) == 0 ? st : null;
    }

    /// <summary>The whole of a small regular file, opened without following a symlink and without blocking on a FIFO.</summary>
    private static unsafe byte[] ReadSmallFile(string file)
    {
        if (OutputFiles.LStat(file) is { } l && (l.Mode & LibC.S_IFMT) != LibC.S_IFREG)
            throw Damaged(file, $"is {OutputFiles.Describe(l.Mode)}; a descriptor must be a regular file");
        int fd = LibC.Open(file, LibC.O_RDONLY | LibC.O_NOFOLLOW | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0) throw Damaged(file, $"cannot open: {LibC.StrError(LibC.LastErrno)}");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        Stat st;
        if (LibC.FStat(fd, &st) != 0) throw Damaged(file, $"cannot stat: {LibC.StrError(LibC.LastErrno)}");
        if ((st.Mode & LibC.S_IFMT) != LibC.S_IFREG) throw Damaged(file, $"is {OutputFiles.Describe(st.Mode)}; a descriptor must be a regular file");
        if (st.Size > MaxDescriptorBytes) throw Damaged(file, $"{st.Size} bytes; a descriptor is at most {MaxDescriptorBytes}");
        // One byte more than allowed, so a file that grew since the fstat is still caught.
        var buffer = new byte[MaxDescriptorBytes + 1];
        int total = 0;
        for (int n; total < buffer.Length && (n = RandomAccess.Read(handle, buffer.AsSpan(total), total)) > 0;) total += n;
        if (total > MaxDescriptorBytes) throw Damaged(file, $"more than {MaxDescriptorBytes} bytes; a descriptor is at most {MaxDescriptorBytes}");
        return buffer[..total];
    }

    private static long Long(string desc, JsonProperty p) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long v) && v > 0 ? v
            : throw Damaged(desc, $"\"{p.Name}\" must be a positive whole number of bytes");

    private static int Int(string desc, JsonProperty p) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int v) ? v : throw Damaged(desc, $"\"{p.Name}\" must be a whole number");

    private static DiskImageException Damaged(string desc, string problem) =>
        new(DiskImageProblem.Damaged, desc, $"{desc}: damaged disk descriptor: {problem}");

    private static string FormatName(DiskImageFormat f) => f switch
    {
        DiskImageFormat.Raw => "raw",
        DiskImageFormat.Split => "split",
        DiskImageFormat.Sparse => "sparse",
        _ => "split+sparse",
    };

    private static DiskImageFormat? ParseFormat(string s) => s switch
    {
        "raw" => DiskImageFormat.Raw,
        "split" => DiskImageFormat.Split,
        "sparse" => DiskImageFormat.Sparse,
        "split+sparse" => DiskImageFormat.SplitSparse,
        _ => null,
    };

    private static string Name(string path) => Path.GetFileName(path);

    private static string Option(long bytes) => CommandLineFormatter.FormatSize((ulong)bytes);

    /// <summary>"1 GiB", "512 MiB", or exact bytes when no binary unit divides the size.</summary>
    public static string Human(long bytes)
    {
        foreach (var (shift, unit) in new[] { (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB") })
            if (bytes != 0 && bytes % (1L << shift) == 0) return (bytes >> shift).ToString(CultureInfo.InvariantCulture) + " " + unit;
        return bytes.ToString(CultureInfo.InvariantCulture) + " bytes";
    }
}
