using System.Runtime.InteropServices;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>How a raw image or host block device is opened.</summary>
/// <param name="ReadOnly">ro: opened O_RDONLY with a shared lock; writes are refused.</param>
/// <param name="WriteThrough">sync/direct: O_DSYNC, every write is durable when it completes.</param>
/// <param name="NoCache">nocache: O_DIRECT; guest buffers that are not aligned go through a bounce buffer.</param>
/// <param name="CreateSize">size=: create the file with this size when it does not exist (and require it when it does).</param>
public sealed record RawImageOptions(bool ReadOnly = false, bool WriteThrough = false, bool NoCache = false, long? CreateSize = null);

/// <summary>
/// A raw disk image file or a host block device, read and written with preadv/pwritev straight between
/// the file and the caller's scatter/gather list (guest RAM), from any number of threads at once.
/// The file is locked with flock: exclusively when writable, so a second engine cannot open it read-write.
/// </summary>
public sealed unsafe class RawImage : IBlockBackend
{
    /// <summary>Memory alignment O_DIRECT is given (the largest logical block size in common use).</summary>
    public const int DirectAlignment = 4096;
    private const int BounceSize = 1 << 20;

    private readonly int _fd;
    private readonly bool _direct;
    private bool _disposed;

    public string Path { get; }
    public long Size { get; }
    public int LogicalSectorSize => 512;
    public bool ReadOnly { get; }
    public bool IsBlockDevice { get; }

    private RawImage(string path, int fd, long size, bool readOnly, bool direct, bool blockDevice)
    {
        Path = path; _fd = fd; Size = size; ReadOnly = readOnly; _direct = direct; IsBlockDevice = blockDevice;
    }

    /// <summary>Opens (or with <see cref="RawImageOptions.CreateSize"/> creates) the image. Every failure is a
    /// <see cref="StorageException"/> naming the path; nothing is created or changed when opening fails.</summary>
    public static RawImage Open(string path, RawImageOptions options)
    {
        int flags = (options.ReadOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC
            | (options.WriteThrough ? LibC.O_DSYNC : 0) | (options.NoCache ? LibC.O_DIRECT : 0);
        // Checked before open(2), which would wait forever for a writer on a FIFO.
        Stat pre;
        if (LibC.StatPath(path, &pre) == 0 && (pre.Mode & LibC.S_IFMT) != LibC.S_IFDIR) FileHandles.RequireDiskFile(path, pre.Mode);
        bool create = options.CreateSize != null && !options.ReadOnly && !File.Exists(path) && !Directory.Exists(path);
        int fd = create ? LibC.Open(path, flags | LibC.O_CREAT | LibC.O_EXCL, 0x1A4 /* 0644 */) : LibC.Open(path, flags);
        if (fd < 0) throw OpenError(path, LibC.LastErrno, options);
        try
        {
            Stat st;
            if (LibC.FStat(fd, &st) != 0) throw new StorageException($"{path}: cannot stat: {LibC.StrError(LibC.LastErrno)}");
            uint type = st.Mode & LibC.S_IFMT;
            FileHandles.RequireDiskFile(path, st.Mode);
            int lockOp = (options.ReadOnly ? LibC.LOCK_SH : LibC.LOCK_EX) | LibC.LOCK_NB;
            if (LibC.Flock(fd, lockOp) != 0)
                throw new StorageException(LibC.LastErrno == LibC.EWOULDBLOCK
                    ? $"{path}: the image is in use by another process (it holds the lock{(options.ReadOnly ? " read-write" : "")})"
                    : $"{path}: cannot lock: {LibC.StrError(LibC.LastErrno)}");
            long size = type == LibC.S_IFBLK ? LibC.LSeek(fd, 0, LibC.SEEK_END) : st.Size;
            if (create)
            {
                size = options.CreateSize!.Value;
                if (LibC.FTruncate(fd, size) != 0) throw new StorageException($"{path}: cannot set the size to {size}: {LibC.StrError(LibC.LastErrno)}");
            }
            else if (options.CreateSize is { } wanted && wanted != size)
                throw new StorageException($"{path}: the image is {size} bytes but size= asks for {wanted}");
            if (size < 512) throw new StorageException($"{path}: the image is {size} bytes; a disk needs at least one 512-byte sector");
            return new RawImage(path, fd, size - size % 512, options.ReadOnly, options.NoCache, type == LibC.S_IFBLK);
        }
        catch
        {
            LibC.Close(fd);
            if (create) File.Delete(path);
            throw;
        }
    }

    /// <summary>Bytes the host file system stores for <paramref name="path"/> (st_blocks), 0 when it cannot say.</summary>
    public static long AllocatedBytes(string path)
    {
        Stat st;
        int fd = LibC.Open(path, LibC.O_RDONLY | LibC.O_CLOEXEC);
        if (fd < 0) return 0;
        try { return LibC.FStat(fd, &st) == 0 ? st.Blocks * 512 : 0; }
        finally { LibC.Close(fd); }
    }

    private static StorageException OpenError(string path, int errno, RawImageOptions options) => errno switch
    {
        LibC.ENOENT => new StorageException($"{path}: image file not found{(options.CreateSize == null ? " (give size= to create one)" : "")}"),
        LibC.EISDIR => new StorageException($"{path}: is a directory"),
        LibC.EACCES or LibC.EROFS or LibC.EPERM when !options.ReadOnly =>
            new StorageException($"{path}: cannot open read-write: {LibC.StrError(errno)} (add ,ro for a read-only disk)"),
        LibC.EINVAL when options.NoCache => new StorageException($"{path}: nocache: the file system does not support O_DIRECT"),
        _ => new StorageException($"{path}: cannot open: {LibC.StrError(errno)}"),
    };

    private void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new StorageException($"{Path}: range {offset}+{length} is outside the {Size}-byte disk");
    }

    public void Read(long offset, Span<byte> buffer) => ScatterGather.Read(this, offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data) => ScatterGather.Write(this, offset, data);

    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers) => Transfer(offset, buffers, write: false);

    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        if (ReadOnly) throw new StorageException($"{Path}: the disk is read-only");
        Transfer(offset, buffers, write: true);
    }

    private void Transfer(long offset, ReadOnlySpan<IoBuffer> buffers, bool write)
    {
        int total = ScatterGather.Total(buffers);
        CheckRange(offset, total);
        if (_direct && !Aligned(buffers)) { Bounced(offset, buffers, write); return; }
        var iov = VectoredIo.ThreadScratch(buffers.Length);
        buffers.CopyTo(iov);
        long done = VectoredIo.Transfer(_fd, iov, offset, write, Path);
        if (!write && done < total)
        {
            // Past the end of a shrunk file: zeroes.
            var rest = new ScatterCursor(buffers);
            rest.Skip(done);
            rest.Clear(total - done);
        }
    }

    private static bool Aligned(ReadOnlySpan<IoBuffer> buffers)
    {
        foreach (var b in buffers)
            if ((b.Address & (DirectAlignment - 1)) != 0 || (b.Length & 511) != 0) return false;
        return true;
    }

    [ThreadStatic] private static nint t_bounce;

    /// <summary>This thread's aligned 1 MiB buffer (allocated once per I/O thread, never freed).</summary>
    private static nint ThreadBuffer => t_bounce != 0 ? t_bounce : t_bounce = (nint)NativeMemory.AlignedAlloc(BounceSize, DirectAlignment);

    /// <summary>O_DIRECT with guest buffers that are not aligned: through a per-thread aligned buffer.</summary>
    private void Bounced(long offset, ReadOnlySpan<IoBuffer> buffers, bool write)
    {
        nint buffer = ThreadBuffer;
        var bounce = new Span<byte>((void*)buffer, BounceSize);
        int total = ScatterGather.Total(buffers), done = 0, index = 0, within = 0;
        while (done < total)
        {
            int chunk = Math.Min(BounceSize, total - done);
            var piece = bounce[..chunk];
            var one = new IoBuffer(buffer, chunk);
            if (write)
            {
                Copy(buffers, ref index, ref within, piece, gather: true);
                Transfer(offset + done, new ReadOnlySpan<IoBuffer>(&one, 1), write: true);
            }
            else
            {
                Transfer(offset + done, new ReadOnlySpan<IoBuffer>(&one, 1), write: false);
                Copy(buffers, ref index, ref within, piece, gather: false);
            }
            done += chunk;
        }
    }

    private static void Copy(ReadOnlySpan<IoBuffer> buffers, ref int index, ref int within, Span<byte> bounce, bool gather)
    {
        int at = 0;
        while (at < bounce.Length)
        {
            var b = buffers[index].AsSpan()[within..];
            int n = Math.Min(b.Length, bounce.Length - at);
            if (gather) b[..n].CopyTo(bounce[at..]); else bounce.Slice(at, n).CopyTo(b);
            at += n; within += n;
            if (within == (int)buffers[index].Length) { index++; within = 0; }
        }
    }

    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (ReadOnly) return;
        if (LibC.FdataSync(_fd) != 0) throw new StorageException($"{Path}: fdatasync failed: {LibC.StrError(LibC.LastErrno)}");
    }

    public void WriteZeroes(long offset, long length)
    {
        if (ReadOnly) throw new StorageException($"{Path}: the disk is read-only");
        CheckRange(offset, length);
        if (length == 0) return;
        // The file system zeroes the range without data writes where it can; otherwise write zeroes.
        if (LibC.Fallocate(_fd, LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE, offset, length) == 0) return;
        if (!IsBlockDevice && LibC.Fallocate(_fd, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length) == 0) return;
        // The thread's aligned buffer, cleared (should an odd length make the transfer bounce, it copies zeroes onto themselves).
        nint zeros = ThreadBuffer;
        NativeMemory.Clear((void*)zeros, BounceSize);
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(BounceSize, length - done);
            var one = new IoBuffer(zeros, n);
            Transfer(offset + done, new ReadOnlySpan<IoBuffer>(&one, 1), write: true);
            done += n;
        }
    }

    public void Discard(long offset, long length)
    {
        if (ReadOnly) throw new StorageException($"{Path}: the disk is read-only");
        CheckRange(offset, length);
        // A hint: a file system or device that cannot punch holes keeps the data, which is allowed.
        if (length > 0) LibC.Fallocate(_fd, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        LibC.Close(_fd);   // also drops the flock
    }
}
