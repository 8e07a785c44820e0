using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Storage;

/// <summary>preadv/pwritev of whole scatter/gather lists, shared by raw images and split/sparse segments.</summary>
internal static unsafe class VectoredIo
{
    [ThreadStatic] private static IoBuffer[]? t_scratch;

    /// <summary>This thread's iovec array, at least <paramref name="length"/> entries (grown once, then reused): a request
    /// builds its system calls' lists here instead of allocating. One user at a time: a caller fills and consumes it
    /// before calling anything else that takes it.</summary>
    public static Span<IoBuffer> ThreadScratch(int length)
    {
        var a = t_scratch;
        if (a == null || a.Length < length) t_scratch = a = new IoBuffer[Math.Max(length, 256)];
        return a.AsSpan(0, length);
    }

    /// <summary>Transfers the whole of <paramref name="iov"/> at <paramref name="offset"/> of <paramref name="fd"/>,
    /// continuing where a call stopped (they may transfer less than asked, and take at most IOV_MAX buffers); the
    /// list is changed on the way. Returns the bytes transferred: less than the list only for a read reaching the end
    /// of the file. Failures name <paramref name="path"/>.</summary>
    public static long Transfer(int fd, Span<IoBuffer> iov, long offset, bool write, string path)
    {
        long done = 0;
        int first = 0;
        while (first < iov.Length)
        {
            if (iov[first].Length == 0) { first++; continue; }
            int count = Math.Min(iov.Length - first, LibC.IovMax);
            nint n;
            fixed (IoBuffer* v = &iov[first])
                n = write ? LibC.PWriteV(fd, v, count, offset + done) : LibC.PReadV(fd, v, count, offset + done);
            if (n < 0)
            {
                if (LibC.LastErrno == LibC.EINTR) continue;
                throw new StorageException($"{path}: {(write ? "write" : "read")} at {offset + done} failed: {LibC.StrError(LibC.LastErrno)}");
            }
            if (n == 0)
            {
                if (write) throw new StorageException($"{path}: write at {offset + done} made no progress");
                return done;
            }
            done += n;
            while (n > 0 && first < iov.Length)
            {
                nint len = (nint)iov[first].Length;
                if (n >= len) { n -= len; first++; continue; }
                iov[first] = new IoBuffer(iov[first].Address + n, (int)(len - n));
                n = 0;
            }
        }
        return done;
    }
}

/// <summary>Walks a scatter/gather list in order: each piece of a request (a run of sectors) takes the next bytes of
/// the caller's buffers, whatever their boundaries. A value type over the caller's span: copying it marks a place.</summary>
internal ref struct ScatterCursor(ReadOnlySpan<IoBuffer> buffers)
{
    private readonly ReadOnlySpan<IoBuffer> _buffers = buffers;
    private int _index;
    private long _within;

    /// <summary>The next <paramref name="bytes"/> as entries of <paramref name="into"/> (the first and last may be parts
    /// of a buffer); returns the entries used. <paramref name="into"/> needs at most as many entries as the list.</summary>
    public int Take(long bytes, Span<IoBuffer> into)
    {
        int used = 0;
        while (bytes > 0)
        {
            var p = Piece(bytes);
            into[used++] = p;
            bytes -= (long)p.Length;
        }
        return used;
    }

    /// <summary>Moves past the next <paramref name="bytes"/>.</summary>
    public void Skip(long bytes)
    {
        while (bytes > 0) bytes -= (long)Piece(bytes).Length;
    }

    /// <summary>Zeroes the next <paramref name="bytes"/> (a read of never-written sectors: no I/O).</summary>
    public void Clear(long bytes)
    {
        while (bytes > 0)
        {
            var p = Piece(bytes);
            p.AsSpan().Clear();
            bytes -= (long)p.Length;
        }
    }

    /// <summary>True when the next <paramref name="bytes"/> are all zero; moves past them either way.</summary>
    public bool NextIsZero(long bytes)
    {
        bool zero = true;
        while (bytes > 0)
        {
            var p = Piece(bytes);
            zero = zero && !p.AsSpan().ContainsAnyExcept((byte)0);
            bytes -= (long)p.Length;
        }
        return zero;
    }

    /// <summary>The longest piece of at most <paramref name="limit"/> bytes at the cursor, within one buffer; moves past it.</summary>
    private IoBuffer Piece(long limit)
    {
        while (_index < _buffers.Length && (long)_buffers[_index].Length == _within) { _index++; _within = 0; }
        if (_index == _buffers.Length) throw new ArgumentException("the scatter/gather list is shorter than the request");
        var b = _buffers[_index];
        long n = Math.Min((long)b.Length - _within, limit);
        var piece = new IoBuffer(b.Address + (nint)_within, (int)n);
        _within += n;
        return piece;
    }
}
