using Xhyve.Vmm.Config;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>Opens the backend a block device's options describe: split/sparse images through
/// <see cref="SplitSparseImage"/>, everything else (raw files, host block devices) through <see cref="RawImage"/>.</summary>
public static class BlockBackends
{
    /// <summary>Opens the image as <paramref name="options"/> describe it (resolve them first with
    /// <see cref="ImageGeometry.Resolve"/> to take the geometry from the image). An image this creates
    /// (none of its files existed) gets its descriptor, so it later opens by path alone.</summary>
    public static IBlockBackend Open(BlockDeviceOptions options)
    {
        bool creating = !options.ReadOnly && options.Size is { } && !DiskImages.FilesOf(options).Any(f => OutputFiles.LStat(f) != null);
        var backend = OpenBackend(options);
        if (!creating) return backend;
        try
        {
            var layout = options.SplitLayout;
            var format = layout == null ? DiskImageFormat.Raw
                : layout.Sparse ? (layout.SplitSize != null ? DiskImageFormat.SplitSparse : DiskImageFormat.Sparse) : DiskImageFormat.Split;
            // After the image's own files are durable: a crash before this leaves an image without a descriptor,
            // which is inferred from its files as the original xhyve's are.
            backend.Flush();
            ImageGeometry.WriteDescriptor(options.Path, format, backend.Size, options.SplitSize, options.LogicalSectorSize);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
        return backend;
    }

    private static IBlockBackend OpenBackend(BlockDeviceOptions options)
    {
        if (options.SplitLayout is { } layout)
        {
            if (options.NoCache) throw new StorageException($"{options.Path}: nocache is supported for raw images and block devices only");
            var image = SplitSparseImage.Open(options.Path, layout, options.ReadOnly);
            return options.WriteThrough && !options.ReadOnly ? new WriteThroughBackend(image) : image;
        }
        return RawImage.Open(options.Path, new RawImageOptions(options.ReadOnly, options.WriteThrough, options.NoCache, options.Size));
    }
}

/// <summary>sync/direct for backends without O_DSYNC (split/sparse images): every write is followed by a flush
/// before it completes.</summary>
internal sealed class WriteThroughBackend(IBlockBackend inner) : IBlockBackend
{
    public string Path => inner.Path;
    public long Size => inner.Size;
    public int LogicalSectorSize => inner.LogicalSectorSize;
    public bool ReadOnly => inner.ReadOnly;
    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);
    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers) => inner.ReadVectored(offset, buffers);
    public void Write(long offset, ReadOnlySpan<byte> data) { inner.Write(offset, data); inner.Flush(); }
    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers) { inner.WriteVectored(offset, buffers); inner.Flush(); }
    public void WriteZeroes(long offset, long length) { inner.WriteZeroes(offset, length); inner.Flush(); }
    public void Discard(long offset, long length) { inner.Discard(offset, length); inner.Flush(); }
    public void Flush() => inner.Flush();
    public void Dispose() => inner.Dispose();
}
