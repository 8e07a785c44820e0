using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>
/// A disk of any size that keeps only its first <see cref="Stored"/> bytes (reads past them leave the buffer
/// alone, writes past them are dropped): counts every call, can throw on demand, and allocates nothing per call.
/// </summary>
internal sealed class FakeBlockBackend(long size, bool readOnly = false, int stored = 1 << 20) : IBlockBackend
{
    private readonly byte[] _data = new byte[Math.Min(size, stored)];
    public string Path => "fake.img";
    public long Size => size;
    public int LogicalSectorSize => 512;
    public bool ReadOnly => readOnly;
    public int Stored => _data.Length;

    public int Reads, Writes, Flushes, Zeroes, Discards;
    public long LastOffset, LastLength;
    /// <summary>Thrown by the next I/O calls while set (a backend bug or a host failure).</summary>
    public volatile Exception? Throw;

    private void Record(ref int counter, long offset, long length)
    {
        if (Throw is { } e) throw e;
        Interlocked.Increment(ref counter);
        LastOffset = offset;
        LastLength = length;
    }

    public void Read(long offset, Span<byte> buffer)
    {
        Record(ref Reads, offset, buffer.Length);
        if (offset >= 0 && offset + buffer.Length <= _data.Length) _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer);
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        Record(ref Writes, offset, data.Length);
        if (offset >= 0 && offset + data.Length <= _data.Length) data.CopyTo(_data.AsSpan((int)offset));
    }

    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        Record(ref Reads, offset, Total(buffers));
        foreach (var b in buffers)
        {
            if (offset >= 0 && offset + (long)b.Length <= _data.Length) _data.AsSpan((int)offset, (int)b.Length).CopyTo(b.AsSpan());
            offset += (long)b.Length;
        }
    }

    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        Record(ref Writes, offset, Total(buffers));
        foreach (var b in buffers)
        {
            if (offset >= 0 && offset + (long)b.Length <= _data.Length) b.AsSpan().CopyTo(_data.AsSpan((int)offset));
            offset += (long)b.Length;
        }
    }

    public void Flush() => Record(ref Flushes, 0, 0);
    public void WriteZeroes(long offset, long length) => Record(ref Zeroes, offset, length);
    public void Discard(long offset, long length) => Record(ref Discards, offset, length);
    public void Dispose() { }

    private static long Total(ReadOnlySpan<IoBuffer> buffers)
    {
        long total = 0;
        foreach (var b in buffers) total += (long)b.Length;
        return total;
    }
}
