using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>
/// The few file operations a split/sparse image performs, behind one seam so tests can record every
/// write and sync and replay only what a power cut would keep (docs/storage-durability.md). The engine
/// uses <see cref="HostImageFiles"/>; a virtual call is nothing beside the system call it wraps.
/// </summary>
internal abstract class ImageFileSystem
{
    /// <summary>True when something (of any type) is at <paramref name="path"/>; symlinks are not followed.</summary>
    public abstract bool Exists(string path);

    /// <summary>Opens a segment or LUT; with <paramref name="create"/> only a file that is not there yet.</summary>
    public abstract ImageFile Open(string path, bool readOnly, bool create);

    public abstract void Delete(string path);

    /// <summary>fsync of the folder holding <paramref name="path"/>: a file's own fdatasync does not make its
    /// name durable (POSIX fsync(2)), so a new image's files could vanish in a power cut without it.</summary>
    public abstract void SyncFolderOf(string path);
}

/// <summary>One open segment or LUT file.</summary>
internal abstract class ImageFile : IDisposable
{
    public abstract long Length { get; }
    /// <summary>pread: fewer bytes than asked only at the end of the file (0 past it).</summary>
    public abstract int Read(Span<byte> buffer, long offset);
    /// <summary>pwrite of all of <paramref name="data"/>; durable only after <see cref="DataSync"/>.</summary>
    public abstract void Write(ReadOnlySpan<byte> data, long offset);
    /// <summary>preadv into the list (one system call unless it stops short; the list may be changed): returns the bytes
    /// read, fewer than asked only at the end of the file.</summary>
    public abstract long ReadVectored(Span<IoBuffer> buffers, long offset);
    /// <summary>pwritev of the whole list (the list may be changed); durable only after <see cref="DataSync"/>.</summary>
    public abstract void WriteVectored(Span<IoBuffer> buffers, long offset);
    /// <summary>ftruncate: shrinks, or extends with a hole.</summary>
    public abstract void SetLength(long length);
    /// <summary>fdatasync: every write and size change before it is durable when it returns.</summary>
    public abstract void DataSync();
    public abstract void Dispose();
}

/// <summary>The real files, as the engine uses them.</summary>
internal sealed class HostImageFiles : ImageFileSystem
{
    public static readonly HostImageFiles Instance = new();

    public override bool Exists(string path) => OutputFiles.LStat(path) != null;

    public override ImageFile Open(string path, bool readOnly, bool create) => new HostImageFile(FileHandles.Open(path, readOnly, create), path);

    public override void Delete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public override void SyncFolderOf(string path)
    {
        if (OutputFiles.SyncFolderOf(path, out string folder, out bool opened) is var errno and not 0)
            throw new StorageException(opened ? $"{folder}: fsync failed: {LibC.StrError(errno)}"
                : $"{folder}: cannot open the folder to sync it: {LibC.StrError(errno)}");
    }
}

internal sealed class HostImageFile(SafeFileHandle handle, string path) : ImageFile
{
    public override long Length => RandomAccess.GetLength(handle);
    public override int Read(Span<byte> buffer, long offset) => RandomAccess.Read(handle, buffer, offset);
    public override void Write(ReadOnlySpan<byte> data, long offset) => RandomAccess.Write(handle, data, offset);
    public override long ReadVectored(Span<IoBuffer> buffers, long offset) => Transfer(buffers, offset, write: false);
    public override void WriteVectored(Span<IoBuffer> buffers, long offset) => Transfer(buffers, offset, write: true);

    /// <summary>RandomAccess's vectored calls take a list of Memory&lt;byte&gt; (an allocation per request): preadv/pwritev
    /// straight on the descriptor instead, held open by a reference for the call.</summary>
    private long Transfer(Span<IoBuffer> buffers, long offset, bool write)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return VectoredIo.Transfer((int)handle.DangerousGetHandle(), buffers, offset, write, path);
        }
        finally { if (added) handle.DangerousRelease(); }
    }
    public override void SetLength(long length) => RandomAccess.SetLength(handle, length);
    public override void DataSync() => FileHandles.DataSync(handle, path);
    public override void Dispose() => handle.Dispose();
}
