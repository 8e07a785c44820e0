using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>A disk as block devices see it: byte-addressed, sector-aligned for sparse images.
/// Implementations are safe for concurrent requests.</summary>
public interface IBlockBackend : IDisposable
{
    string Path { get; }
    long Size { get; }
    int LogicalSectorSize { get; }
    bool ReadOnly { get; }
    void Read(long offset, Span<byte> buffer);
    void Write(long offset, ReadOnlySpan<byte> data);
    /// <summary>Makes every completed write durable (fdatasync).</summary>
    void Flush();
    /// <summary>The range reads as zeroes afterwards (sparse images give the space back to the LUT).</summary>
    void WriteZeroes(long offset, long length);
}

/// <summary>A disk image that cannot be opened or used; the message names the file and the problem.</summary>
public sealed class StorageException(string message, Exception? inner = null) : Exception(message, inner);

internal static class FileHandles
{
    /// <summary>Opens an image file read-write with an exclusive lock (a second engine cannot open it),
    /// or read-only with a shared one. A file the user cannot write is an error unless read-only was asked.</summary>
    public static SafeFileHandle Open(string path, bool readOnly, bool create)
    {
        try
        {
            var mode = create ? FileMode.OpenOrCreate : FileMode.Open;
            return File.OpenHandle(path, mode, readOnly ? FileAccess.Read : FileAccess.ReadWrite,
                readOnly ? FileShare.Read : FileShare.None);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new StorageException($"{path}: cannot open {(readOnly ? "for reading" : "read-write (add ,ro for a read-only disk)")}: {e.Message}", e);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new StorageException($"{path}: cannot open: {e.Message} (is another engine using it?)", e);
        }
        catch (IOException e)
        {
            throw new StorageException($"{path}: cannot open: {e.Message}", e);
        }
    }

    public static void DataSync(SafeFileHandle handle, string path)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (LibC.FdataSync(handle.DangerousGetHandle()) != 0)
                throw new StorageException($"{path}: fdatasync failed: {LibC.StrError(LibC.LastErrno)}");
        }
        finally { if (added) handle.DangerousRelease(); }
    }
}
