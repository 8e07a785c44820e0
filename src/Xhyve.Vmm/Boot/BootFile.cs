using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Boot;

/// <summary>
/// A boot file (kernel, initrd, module) open for reading at offsets. Loaders read what they need straight into guest
/// RAM or a small buffer instead of holding the whole file in a managed array that outlives the boot (issue 16). I/O
/// failures become one <see cref="BootImageException"/> naming the file.
/// </summary>
internal sealed class BootFile : IDisposable
{
    private readonly SafeFileHandle _handle;

    public string Path { get; }
    /// <summary>What the file is, for messages ("kernel", "initrd").</summary>
    public string What { get; }
    public long Length { get; }

    private BootFile(string path, string what, SafeFileHandle handle, long length) => (Path, What, _handle, Length) = (path, what, handle, length);

    /// <summary>Opens <paramref name="path"/>; refused when missing, empty or over 2 GiB (guest RAM is written in
    /// spans of at most that).</summary>
    public static BootFile Open(string path, string what)
    {
        SafeFileHandle? handle = null;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new BootImageException($"{what} {path}: file not found");
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            long length = RandomAccess.GetLength(handle);
            if (length == 0) throw new BootImageException($"{what} {path}: file is empty");
            if (length > int.MaxValue) throw new BootImageException($"{what} {path}: file is too large ({length} bytes)");
            return new BootFile(path, what, handle, length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            handle?.Dispose();
            throw new BootImageException($"{what} {path}: cannot read: {SystemErrors.Describe(e)}", e);
        }
        catch
        {
            handle?.Dispose();
            throw;
        }
    }

    /// <summary>Reads up to <paramref name="destination"/>'s length from <paramref name="offset"/>; fewer bytes only at
    /// the end of the file.</summary>
    public int Read(long offset, Span<byte> destination)
    {
        int total = 0;
        try
        {
            while (total < destination.Length)
            {
                int n = RandomAccess.Read(_handle, destination[total..], offset + total);
                if (n == 0) break;
                total += n;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException($"{What} {Path}: cannot read: {SystemErrors.Describe(e)}", e);
        }
        return total;
    }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>; a file that got shorter since it
    /// was opened is refused.</summary>
    public void ReadExactly(long offset, Span<byte> destination)
    {
        if (Read(offset, destination) != destination.Length)
            throw new BootImageException($"{What} {Path}: changed while it was read (ends before byte {offset + destination.Length})");
    }

    /// <summary>A read-only stream over bytes [<paramref name="offset"/>, +<paramref name="length"/>) of the file,
    /// for the payload decoders; it does not own the file.</summary>
    public Stream Window(long offset, long length) => new WindowStream(this, offset, length);

    public void Dispose() => _handle.Dispose();

    private sealed class WindowStream(BootFile file, long offset, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => _position = Math.Clamp(value, 0, length); }

        public override int Read(Span<byte> buffer)
        {
            int n = file.Read(offset + _position, buffer[..(int)Math.Min(buffer.Length, length - _position)]);
            _position += n;
            return n;
        }

        public override int Read(byte[] buffer, int index, int count) => Read(buffer.AsSpan(index, count));

        public override int ReadByte()
        {
            Span<byte> one = stackalloc byte[1];
            return Read(one) == 1 ? one[0] : -1;
        }

        public override long Seek(long to, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => to,
            SeekOrigin.Current => _position + to,
            _ => length + to,
        };

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int index, int count) => throw new NotSupportedException();
    }
}
