using Microsoft.Win32.SafeHandles;

namespace Xhyve.Vmm.Devices.FwCfg;

/// <summary>The contents of one fw_cfg item: a fixed length and bytes read at an offset. Reads never
/// allocate, because the guest reads items one byte per port access.</summary>
public abstract class FwCfgItem
{
    /// <summary>The item's length in bytes; reads past it see zeros.</summary>
    public abstract long Length { get; }

    /// <summary>Copies bytes from <paramref name="offset"/> into <paramref name="destination"/>, which the caller
    /// has already limited to the item's length; bytes the backing store cannot supply read as zero.</summary>
    public abstract void Read(long offset, Span<byte> destination);

    public static FwCfgItem FromBytes(byte[] bytes) => new BytesItem(bytes);

    /// <summary>A slice of a file read on demand, so a kernel or initrd is not held in memory twice.</summary>
    public static FwCfgItem FromFile(SafeFileHandle file, long offset, long length) => new FileSliceItem(file, offset, length);

    private sealed class BytesItem(byte[] bytes) : FwCfgItem
    {
        public override long Length => bytes.Length;
        public override void Read(long offset, Span<byte> destination) =>
            bytes.AsSpan((int)offset, destination.Length).CopyTo(destination);
    }

    private sealed class FileSliceItem(SafeFileHandle file, long start, long length) : FwCfgItem
    {
        public override long Length => length;

        public override void Read(long offset, Span<byte> destination)
        {
            int done = 0;
            try
            {
                while (done < destination.Length)
                {
                    int n = RandomAccess.Read(file, destination[done..], start + offset + done);
                    if (n <= 0) break;
                    done += n;
                }
            }
            catch (IOException) { }          // a file that shrank or failed reads as zeros, never as a guest-visible fault
            catch (ObjectDisposedException) { }
            destination[done..].Clear();
        }
    }
}
