using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>One host buffer of a scatter/gather list, laid out exactly as struct iovec so a list of them
/// goes to preadv/pwritev unchanged. Block devices point these into guest RAM.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct IoBuffer(nint address, int length)
{
    public readonly nint Address = address;
    public readonly nuint Length = (nuint)length;
    public unsafe Span<byte> AsSpan() => new((void*)Address, (int)Length);
}

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
    /// <summary>Reads into a scatter list starting at disk <paramref name="offset"/>.</summary>
    void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers);
    /// <summary>Writes a gather list starting at disk <paramref name="offset"/>.</summary>
    void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers);
    /// <summary>Makes every completed write durable (fdatasync).</summary>
    void Flush();
    /// <summary>The range reads as zeroes afterwards (sparse images give the space back to the LUT).</summary>
    void WriteZeroes(long offset, long length);
    /// <summary>The guest no longer needs the range: the host may reclaim it (its contents become undefined).</summary>
    void Discard(long offset, long length);
}

/// <summary>Helpers for scatter/gather lists of requests.</summary>
internal static unsafe class ScatterGather
{
    /// <summary><see cref="IBlockBackend.Read"/> as a one-buffer <see cref="IBlockBackend.ReadVectored"/>.</summary>
    public static void Read(IBlockBackend backend, long offset, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            var one = new IoBuffer((nint)p, buffer.Length);
            backend.ReadVectored(offset, new ReadOnlySpan<IoBuffer>(&one, 1));
        }
    }

    /// <summary><see cref="IBlockBackend.Write"/> as a one-buffer <see cref="IBlockBackend.WriteVectored"/>.</summary>
    public static void Write(IBlockBackend backend, long offset, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var one = new IoBuffer((nint)p, data.Length);
            backend.WriteVectored(offset, new ReadOnlySpan<IoBuffer>(&one, 1));
        }
    }

    /// <summary>The bytes of the list; a request is under 2 GiB (virtio-blk and ATA limit theirs far below).</summary>
    public static int Total(ReadOnlySpan<IoBuffer> buffers)
    {
        long total = 0;
        foreach (var b in buffers) total += (long)b.Length;
        if (total > int.MaxValue) throw new ArgumentException("a request of 2 GiB or more");
        return (int)total;
    }
}

/// <summary>A disk image that cannot be opened or used; the message names the file and the problem.</summary>
public class StorageException(string message, Exception? inner = null) : Exception(message, inner);

internal static class FileHandles
{
    /// <summary>Opens an image file read-write with an exclusive lock (a second engine cannot open it),
    /// or read-only with a shared one. A file the user cannot write is an error unless read-only was asked.</summary>
    public static unsafe SafeFileHandle Open(string path, bool readOnly, bool create)
    {
        // Checked before open(2): opening a FIFO waits for a writer, which hung the engine and `disk info`.
        Stat st;
        if (LibC.StatPath(path, &st) == 0) RequireDiskFile(path, st.Mode);
        try
        {
            // create: only a file that is not there yet (an existing image is never silently replaced or grown into).
            var handle = File.OpenHandle(path, create ? FileMode.CreateNew : FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite,
                readOnly ? FileShare.Read : FileShare.None);
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                if (LibC.FStat((int)handle.DangerousGetHandle(), &st) == 0) RequireDiskFile(path, st.Mode);
            }
            catch { handle.Dispose(); throw; }
            finally { if (added) handle.DangerousRelease(); }
            return handle;
        }
        catch (UnauthorizedAccessException e)
        {
            throw new StorageException($"{path}: cannot open {(readOnly ? "for reading" : "read-write (add ,ro for a read-only disk)")}: {Native.SystemErrors.Describe(e)}", e);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new StorageException($"{path}: cannot open: {Native.SystemErrors.Describe(e)} (is another engine using it?)", e);
        }
        catch (IOException e)
        {
            throw new StorageException($"{path}: cannot open: {Native.SystemErrors.Describe(e)}", e);
        }
    }

    /// <summary>Only regular files and block devices hold disks: anything else (a FIFO, a terminal, a socket) is refused.</summary>
    public static void RequireDiskFile(string path, uint mode)
    {
        uint type = mode & LibC.S_IFMT;
        if (type != LibC.S_IFREG && type != LibC.S_IFBLK)
            throw new StorageException($"{path}: is {OutputFiles.Describe(mode)}, not a regular file or block device");
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
