using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Flash;

/// <summary>
/// A flash chip's contents: the file (a UEFI variable store) read into page-aligned host memory that the platform
/// can map into the guest, and kept open so every change the guest makes is written through to the file and
/// survives the VM. The memory belongs to this object; the file is never resized.
/// </summary>
public sealed unsafe class FlashImage : IDisposable
{
    private readonly SafeFileHandle _file;
    private nint _memory;

    private FlashImage(string path, SafeFileHandle file, nint memory, int length)
    {
        Path = path;
        _file = file;
        _memory = memory;
        Length = length;
    }

    /// <summary>The file the image persists to.</summary>
    public string Path { get; }

    /// <summary>The image's size in bytes (a whole number of pages).</summary>
    public int Length { get; }

    /// <summary>Where the image lives in this process (page-aligned), for mapping it into the guest.</summary>
    public nint HostAddress => _memory;

    /// <summary>The image's bytes.</summary>
    public Span<byte> Bytes => new((void*)_memory, Length);

    /// <summary>Opens <paramref name="path"/> for reading and writing and loads it. Throws <see cref="IOException"/>
    /// naming the file when it cannot be opened or read, or is not a whole number of 4 KiB pages.</summary>
    public static FlashImage Open(string path)
    {
        SafeFileHandle file;
        // FileShare.None takes an exclusive lock (flock): two VMs writing one store would each overwrite the other's changes.
        try { file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None); }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new IOException($"flash {path}: cannot be opened for reading and writing: {e.Message}", e);
        }
        try
        {
            long length = RandomAccess.GetLength(file);
            if (length <= 0 || length % 4096 != 0 || length > int.MaxValue)
                throw new IOException($"flash {path}: {length} bytes is not a whole number of 4 KiB pages");
            nint memory = LibC.Mmap(0, (nuint)length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
            if (memory == LibC.MapFailed) throw new IOException($"flash {path}: cannot allocate {length} bytes: {LibC.StrError(LibC.LastErrno)}");
            var image = new FlashImage(path, file, memory, (int)length);
            try
            {
                int read = 0;
                while (read < length)
                {
                    int n = RandomAccess.Read(file, image.Bytes[read..], read);
                    if (n <= 0) throw new IOException($"flash {path}: the file ended at {read} of {length} bytes while loading");
                    read += n;
                }
            }
            catch { image.Dispose(); throw; }
            return image;
        }
        catch { file.Dispose(); throw; }
    }

    /// <summary>Writes <paramref name="length"/> bytes of the image at <paramref name="offset"/> to the file.
    /// False (nothing thrown) when the host refuses, so a full disk becomes a flash error the guest sees.</summary>
    public bool WriteThrough(int offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length - length) return false;
        try
        {
            RandomAccess.Write(_file, Bytes.Slice(offset, length), offset);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException) { return false; }
    }

    public void Dispose()
    {
        if (_memory != 0) LibC.Munmap(_memory, (nuint)Length);
        _memory = 0;
        _file.Dispose();
    }
}
