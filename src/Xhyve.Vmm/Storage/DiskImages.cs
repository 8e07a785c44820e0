using Xhyve.Vmm.Config;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>What an image holds: its format (raw, split, sparse, split+sparse), virtual size, sector size,
/// the bytes actually stored, and the files it consists of (segments, LUT).</summary>
public sealed record DiskImageInfo(string Path, string Format, long Size, int SectorSize, long AllocatedBytes, IReadOnlyList<string> Files);

/// <summary>
/// Image operations shared by `xhyve disk` and the management library: create raw, split and sparse
/// images, inspect them (opening read-only, which validates a sparse LUT), and convert between formats.
/// </summary>
public static class DiskImages
{
    /// <summary>Creates a new image; refuses to touch an existing one.</summary>
    public static DiskImageInfo Create(BlockDeviceOptions options)
    {
        if (options.Size is not { } size) throw new StorageException($"{options.Path}: size= is required to create an image");
        var existing = FilesOf(options).Where(f => OutputFiles.LStat(f) != null).ToList();
        if (existing.Count > 0) throw new StorageException($"{existing[0]}: already exists; not overwriting it");
        try
        {
            using (var image = BlockBackends.Open(options with { ReadOnly = false })) image.Flush();
        }
        catch (Exception e)
        {
            throw Failed(options.Path, e, DeleteFiles(options));
        }
        return Inspect(options);
    }

    /// <summary>Opens the image read-only (checking a sparse image's LUT) and reports its allocation. Geometry
    /// options left out are read from the image (<see cref="ImageGeometry.Resolve"/>).</summary>
    public static DiskImageInfo Inspect(BlockDeviceOptions options)
    {
        options = ImageGeometry.Resolve(options);
        using var image = BlockBackends.Open(options with { ReadOnly = true, NoCache = false });
        var files = FilesOf(options).Where(File.Exists).ToList();
        long allocated = image is SplitSparseImage s && options.Sparse
            ? s.AllocatedSectors * options.LogicalSectorSize
            : files.Where(f => f != ImageGeometry.DescriptorPath(options.Path)).Sum(RawImage.AllocatedBytes);
        string format = options.SplitLayout is { } l ? (l.Sparse ? (l.SplitSize != null ? "split+sparse" : "sparse") : "split") : "raw";
        return new DiskImageInfo(options.Path, format, image.Size, options.LogicalSectorSize, allocated, files);
    }

    /// <summary>Copies <paramref name="source"/> into a new image described by <paramref name="target"/>
    /// (size= defaults to the source's). All-zero blocks are skipped, so sparse targets stay sparse.
    /// On failure the partial target is removed.</summary>
    public static DiskImageInfo Convert(BlockDeviceOptions source, BlockDeviceOptions target, IProgress<double>? progress = null)
    {
        using var from = BlockBackends.Open(ImageGeometry.Resolve(source) with { ReadOnly = true, NoCache = false });
        target = target with { Size = target.Size ?? from.Size, ReadOnly = false };
        if (target.Size != from.Size) throw new StorageException($"{target.Path}: size={target.Size} differs from the source's {from.Size} bytes");
        if (target.SplitLayout?.Validate() is { Count: > 0 } problems) throw new StorageException($"{target.Path}: {string.Join("; ", problems)}");
        var existing = FilesOf(target).Where(f => OutputFiles.LStat(f) != null).ToList();
        if (existing.Count > 0) throw new StorageException($"{existing[0]}: already exists; not overwriting it");
        try
        {
            using (var to = BlockBackends.Open(target))
            {
                var buffer = new byte[1 << 20];
                for (long at = 0; at < from.Size; at += buffer.Length)
                {
                    var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, from.Size - at));
                    from.Read(at, chunk);
                    if (chunk.ContainsAnyExcept((byte)0)) to.Write(at, chunk);
                    progress?.Report((double)(at + chunk.Length) / from.Size);
                }
                to.Flush();
            }
        }
        catch (Exception e)
        {
            throw Failed(target.Path, e, DeleteFiles(target));
        }
        return Inspect(target);
    }

    /// <summary>A failure writing a new image (ENOSPC, EIO, ...) as one message naming it, saying that the
    /// output is gone: the runtime's own message may name only a segment, and the disk tool would name the source.</summary>
    private static Exception Failed(string path, Exception e, bool removed) => e switch
    {
        IOException or UnauthorizedAccessException =>
            new StorageException($"{path}: {SystemErrors.Describe(e).Replace(" : '", ": '")}; the partial image was removed", e),
        StorageException when removed => new StorageException($"{e.Message}; the partial image was removed", e),
        _ => e,
    };

    /// <summary>Every file the image consists of (existing or not), its descriptor last.</summary>
    public static IReadOnlyList<string> FilesOf(BlockDeviceOptions options)
    {
        if (options.SplitLayout is not { } layout) return [options.Path, ImageGeometry.DescriptorPath(options.Path)];
        var files = Enumerable.Range(0, layout.Size > 0 ? layout.SegmentCount : 1).Select(i => SplitSparseImage.SegmentPath(options.Path, layout, i)).ToList();
        if (layout.Sparse) files.Add(SplitSparseImage.LutPath(options.Path));
        files.Add(ImageGeometry.DescriptorPath(options.Path));
        return files;
    }

    /// <summary>Removes the files of a new image that failed; true when there was something to remove.</summary>
    private static bool DeleteFiles(BlockDeviceOptions options)
    {
        bool any = false;
        foreach (var f in FilesOf(options))
        {
            if (OutputFiles.LStat(f) == null) continue;
            any = true;
            try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return any;
    }
}
